"""Keypoint packets (SPEC.md, "KEYPOINTS_KEY" and "KEYPOINTS_DELTA") and the stream coder around them.

A KEY packet carries every level at fixed length and decodes on its own. A DELTA packet carries the
difference to a reference frame (normally the previous one, named by its seq): a distance, a timestamp
offset, six common shifts (one per component: the shared head motion) and the per-keypoint residuals, all
coded with the adaptive binary arithmetic coder of `avfr.proto.entropy`. A lost packet breaks the chain of
the deltas after it: `KeypointDecoder` detects the missing reference, conceals (flags) or drops those
frames, and asks for a KEY packet (periodic, or on `Refresh`) through `needs_key`.

Shapes: K = session.num_kp; kp (K, 2) as (x, y) in [-1, 1]; jac (K, 2, 2).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from avfr.proto.entropy import PROB_MAX, PROB_MIN, BinDecoder, BinEncoder
from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import MessageType, make_tag, parse_tag
from avfr.proto.hello import Session
from avfr.proto.quant import dequantise_keypoints, quantise_keypoints

__all__ = [
    "SEQ_MODULUS",
    "TS_MODULUS",
    "MAX_REF_DISTANCE",
    "MAX_TS_OFFSET_90K",
    "KEY_HEADER_BYTES",
    "DELTA_HEADER_BYTES",
    "seq_diff",
    "KeypointsKey",
    "KeypointsDelta",
    "KeypointsPacket",
    "Keypoints",
    "encode_keypoints",
    "decode_keypoints",
    "KeypointEncoder",
    "KeypointDecoder",
]

logger = logging.getLogger(__name__)

SEQ_MODULUS = 1 << 16  # seq is uint16 and wraps; compare with `seq_diff`
TS_MODULUS = 1 << 32  # ts_90k is uint32 and wraps
MAX_REF_DISTANCE = 64  # a delta may reference any of the 64 frames before it (decoder history size)
MAX_TS_OFFSET_90K = 90_000  # |ts - nominal ts| carried by a delta packet (1 s); beyond: send a key
KEY_HEADER_BYTES = 7  # tag, seq (uint16), ts_90k (uint32)
DELTA_HEADER_BYTES = 3  # tag, seq (uint16)
NUM_COMPONENTS = 6  # per keypoint: x, y, j00, j01, j10, j11

# Contexts of the delta payload (SPEC.md, "Entropy coder"): first index of each group.
CTX_REF = 0  # 2 contexts: Exp-Golomb prefix of ref_distance - 1
CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG = 2, 3, 4  # ts offset: zero flag, sign, 2 prefix contexts
CTX_COMMON_ZERO = 6  # 6 contexts, one per component
CTX_COMMON_SIGN = 12  # 6
CTX_COMMON_MAG = 18  # 2 per class (kp, jac): 4
CTX_RES_ZERO = 22  # 2 per component (previous residual of the component zero / nonzero): 12
CTX_RES_SIGN = 34  # 3 per component (previous residual zero / positive / negative): 18
CTX_RES_MAG = 52  # 3 per class (kp, jac): 6
CTX_MOVED = 58  # 1: the frame differs from its prediction (common or residuals nonzero)
NUM_CONTEXTS = 59
PROB_LIMITS = (PROB_MIN, PROB_MAX)


# Initial P(bin = 0) * 2**16 of every context, reset at the start of each delta payload (SPEC.md table).
INITIAL_PROBS: tuple[int, ...] = (
    63570, 32768,  # 0-1 ref distance prefix: distance 1 is the rule
    63570, 32768, 32768, 32768,  # 2-5 ts offset: zero flag, sign, 2 prefix
    26214, 26214, 60948, 60948, 60948, 60948,  # 6-11 common zero flag: x, y, j00, j01, j10, j11
    29491, 29491, 26214, 26214, 26214, 26214,  # 12-17 common sign
    39322, 52429, 63570, 32768,  # 18-21 common magnitude prefix: kp 2, jac 2
    34079, 30802, 34079, 30802,  # 22-25 residual zero flag, x and y: previous zero / nonzero
    57672, 51118, 57672, 51118, 57672, 51118, 57672, 51118,  # 26-33 same for j00, j01, j10, j11
    37356, 39322, 37356, 37356, 39322, 37356,  # 34-39 residual sign, x and y: previous 0 / + / -
    36045, 56361, 13763, 36045, 56361, 13763,  # 40-45 same for j00, j01
    36045, 56361, 13763, 36045, 56361, 13763,  # 46-51 same for j10, j11
    47841, 57672, 63570,  # 52-54 residual magnitude prefix, kp
    63570, 58982, 58982,  # 55-57 residual magnitude prefix, jac
    6554,  # 58 moved: a still frame is the exception
)


def seq_diff(a: int, b: int) -> int:
    """Serial-number difference a - b of two uint16 seqs, in [-32768, 32767] (RFC 1982 style)."""
    return ((a - b + 32768) & 0xFFFF) - 32768


def _frozen_int_array(value: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ProtocolError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "iu":
        raise ProtocolError(f"{name} must hold integers, got dtype {arr.dtype}")
    out = arr.astype(np.int32)
    if not np.array_equal(out, arr):
        raise ProtocolError(f"{name} does not fit int32")
    out.setflags(write=False)
    return out


def _check_u(value: object, name: str, modulus: int) -> None:
    if type(value) is not int or not 0 <= value < modulus:
        raise ProtocolError(f"{name}={value!r} must be an int in [0, {modulus - 1}]")


class _ArrayEq:
    """Field-wise equality for frozen dataclasses that hold numpy arrays."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for name in self.__dataclass_fields__:  # type: ignore[attr-defined]
            a, b = getattr(self, name), getattr(other, name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class KeypointsKey(_ArrayEq):
    """An independently decodable keypoint packet: every level at fixed length.

    Attributes:
        seq: uint16 packet sequence number (wraps).
        ts_90k: uint32 media timestamp, 90 kHz, same clock as the audio.
        kp_q: int32 (K, 2) signed keypoint levels.
        jac_q: int32 (K, 2, 2) signed jacobian levels.
    """

    seq: int
    ts_90k: int
    kp_q: np.ndarray
    jac_q: np.ndarray

    def __post_init__(self) -> None:
        _check_u(self.seq, "seq", SEQ_MODULUS)
        _check_u(self.ts_90k, "ts_90k", TS_MODULUS)
        k = np.shape(self.kp_q)[0] if np.ndim(self.kp_q) == 2 else -1
        object.__setattr__(self, "kp_q", _frozen_int_array(self.kp_q, (k, 2), "kp_q"))
        object.__setattr__(self, "jac_q", _frozen_int_array(self.jac_q, (k, 2, 2), "jac_q"))


@dataclass(frozen=True, eq=False)
class KeypointsDelta(_ArrayEq):
    """A keypoint packet predicted from an earlier frame (its reference).

    Levels of this frame: ``ref + common[c] + residual[k, c]`` per keypoint k and component c
    (c = x, y, j00, j01, j10, j11); ts_90k = ref ts + distance * ts_step_90k + ts_offset_90k (mod 2**32).

    Attributes:
        seq: uint16 packet sequence number.
        ref_seq: seq of the reference, 1..MAX_REF_DISTANCE frames before seq.
        ts_offset_90k: deviation of ts_90k from the nominal frame clock, |.| <= MAX_TS_OFFSET_90K.
        common: int32 (6,) shift shared by all keypoints, per component.
        kp_res: int32 (K, 2) keypoint residuals.
        jac_res: int32 (K, 2, 2) jacobian residuals.
    """

    seq: int
    ref_seq: int
    ts_offset_90k: int
    common: np.ndarray
    kp_res: np.ndarray
    jac_res: np.ndarray

    def __post_init__(self) -> None:
        _check_u(self.seq, "seq", SEQ_MODULUS)
        _check_u(self.ref_seq, "ref_seq", SEQ_MODULUS)
        if not 1 <= self.ref_distance <= MAX_REF_DISTANCE:
            raise ProtocolError(
                f"ref_seq={self.ref_seq} is {self.ref_distance} frames before seq={self.seq}, "
                f"expected 1..{MAX_REF_DISTANCE}"
            )
        off = self.ts_offset_90k
        if type(off) is not int or not -MAX_TS_OFFSET_90K <= off <= MAX_TS_OFFSET_90K:
            raise ProtocolError(f"ts_offset_90k={off!r} must be an int in +-{MAX_TS_OFFSET_90K}")
        k = np.shape(self.kp_res)[0] if np.ndim(self.kp_res) == 2 else -1
        object.__setattr__(self, "common", _frozen_int_array(self.common, (NUM_COMPONENTS,), "common"))
        object.__setattr__(self, "kp_res", _frozen_int_array(self.kp_res, (k, 2), "kp_res"))
        object.__setattr__(self, "jac_res", _frozen_int_array(self.jac_res, (k, 2, 2), "jac_res"))

    @property
    def ref_distance(self) -> int:
        """Frames between the reference and this packet, (seq - ref_seq) mod 2**16."""
        return (self.seq - self.ref_seq) & 0xFFFF


KeypointsPacket = KeypointsKey | KeypointsDelta


@dataclass(frozen=True, eq=False)
class Keypoints(_ArrayEq):
    """One decoded keypoint frame, ready for the generator.

    Attributes:
        seq: uint16 sequence number of its packet.
        ts_90k: uint32 media timestamp (90 kHz, the audio's clock).
        kp: float32 (K, 2) keypoints in [-1, 1].
        jac: float32 (K, 2, 2) jacobians.
        key: True when it came from a KEY packet.
        exact: False when its prediction chain was broken and it was concealed (see KeypointDecoder).
    """

    seq: int
    ts_90k: int
    kp: np.ndarray
    jac: np.ndarray
    key: bool
    exact: bool = True


def _check_against_session(packet: KeypointsPacket, session: Session) -> None:
    k = session.num_kp
    q = session.quant
    if isinstance(packet, KeypointsKey):
        if packet.kp_q.shape[0] != k:
            raise ProtocolError(f"key packet has K={packet.kp_q.shape[0]}, session K={k}")
        for name, arr, bits in (("kp_q", packet.kp_q, q.kp_bits), ("jac_q", packet.jac_q, q.jac_bits)):
            half = 1 << (bits - 1)
            if arr.size and (arr.min() < -half or arr.max() > half - 1):
                raise ProtocolError(f"{name} outside the {bits}-bit level range [{-half}, {half - 1}]")
    else:
        if packet.kp_res.shape[0] != k:
            raise ProtocolError(f"delta packet has K={packet.kp_res.shape[0]}, session K={k}")
        values = np.concatenate([packet.common[None, :], _components(packet.kp_res, packet.jac_res)])
        for c in range(NUM_COMPONENTS):
            limit = _res_limit(c, session)
            if np.abs(values[:, c]).max() > limit:
                raise ProtocolError(f"delta component {c} exceeds +-{limit}")


def _res_limit(component: int, session: Session) -> int:
    bits = session.quant.kp_bits if component < 2 else session.quant.jac_bits
    return (1 << bits) - 1  # the difference of two levels


def _components(kp: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """(K, 2) and (K, 2, 2) -> (K, 6) as x, y, j00, j01, j10, j11."""
    return np.concatenate([kp, jac.reshape(kp.shape[0], 4)], axis=1)


def encode_keypoints(packet: KeypointsPacket, session: Session) -> bytes:
    """KeypointsKey / KeypointsDelta -> bytes (SPEC.md byte tables).

    Raises:
        ProtocolError: the packet does not fit the session (K, level ranges).
    """
    _check_against_session(packet, session)
    if isinstance(packet, KeypointsKey):
        return _encode_key(packet, session)
    return _encode_delta(packet, session)


def _encode_key(packet: KeypointsKey, session: Session) -> bytes:
    kb, jb = session.quant.kp_bits, session.quant.jac_bits
    acc = 0
    for v in (packet.kp_q.astype(np.int64) + (1 << (kb - 1))).ravel().tolist():
        acc = (acc << kb) | v
    for v in (packet.jac_q.astype(np.int64) + (1 << (jb - 1))).ravel().tolist():
        acc = (acc << jb) | v
    nbits = session.num_kp * (2 * kb + 4 * jb)
    pad = -nbits % 8
    header = bytes([make_tag(MessageType.KEYPOINTS_KEY)]) + packet.seq.to_bytes(2, "big")
    return header + packet.ts_90k.to_bytes(4, "big") + (acc << pad).to_bytes((nbits + pad) // 8, "big")


def _encode_delta(packet: KeypointsDelta, session: Session) -> bytes:
    enc = BinEncoder()
    probs = list(INITIAL_PROBS)
    enc.put_ueg(packet.ref_distance - 1, probs, CTX_REF, 2)
    enc.put_signed(packet.ts_offset_90k, probs, CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG, 2)
    moved = bool(packet.common.any() or packet.kp_res.any() or packet.jac_res.any())
    enc.put(int(moved), probs, CTX_MOVED)
    header = bytes([make_tag(MessageType.KEYPOINTS_DELTA)]) + packet.seq.to_bytes(2, "big")
    if not moved:
        return header + enc.finish()
    for c, v in enumerate(packet.common.tolist()):
        enc.put_signed(v, probs, CTX_COMMON_ZERO + c, CTX_COMMON_SIGN + c, CTX_COMMON_MAG + 2 * (c >= 2), 2)
    columns = _components(packet.kp_res, packet.jac_res).T.tolist()  # (6, K), coded component-major
    for c, column in enumerate(columns):
        zero_ctx, sign_ctx, mag_ctx = CTX_RES_ZERO + 2 * c, CTX_RES_SIGN + 3 * c, CTX_RES_MAG + 3 * (c >= 2)
        state = 0  # previous residual of this component: 0 zero, 1 positive, 2 negative
        for v in column:
            enc.put_signed(v, probs, zero_ctx + (state != 0), sign_ctx + state, mag_ctx, 3)
            state = 0 if v == 0 else (1 if v > 0 else 2)
    return header + enc.finish()


def decode_keypoints(data: bytes, session: Session) -> KeypointsPacket:
    """bytes -> KeypointsKey / KeypointsDelta (stateless: references are resolved by KeypointDecoder).

    Args:
        data: one message from the unordered channel.
        session: the call's session (K, bit depths).

    Raises:
        ProtocolError: anything malformed (length, version, type, levels, entropy-coded payload).
    """
    msg_type = parse_tag(data)
    if msg_type == MessageType.KEYPOINTS_KEY:
        return _decode_key(bytes(data), session)
    if msg_type == MessageType.KEYPOINTS_DELTA:
        return _decode_delta(bytes(data), session)
    raise ProtocolError(f"expected a keypoints packet, got {msg_type.name}", ErrorCode.UNEXPECTED_MESSAGE)


def _decode_key(data: bytes, session: Session) -> KeypointsKey:
    k, kb, jb = session.num_kp, session.quant.kp_bits, session.quant.jac_bits
    nbits = k * (2 * kb + 4 * jb)
    pad = -nbits % 8
    expected = KEY_HEADER_BYTES + (nbits + pad) // 8
    if len(data) != expected:
        raise ProtocolError(
            f"KEYPOINTS_KEY is {len(data)} bytes, expected {expected} for K={k}, {kb}/{jb} bits"
        )
    seq = int.from_bytes(data[1:3], "big")
    ts_90k = int.from_bytes(data[3:7], "big")
    acc = int.from_bytes(data[7:], "big")
    if acc & ((1 << pad) - 1):
        raise ProtocolError("KEYPOINTS_KEY padding bits are not zero")
    acc >>= pad
    jac = np.empty(4 * k, dtype=np.int64)
    for i in range(4 * k - 1, -1, -1):
        jac[i] = acc & ((1 << jb) - 1)
        acc >>= jb
    kp = np.empty(2 * k, dtype=np.int64)
    for i in range(2 * k - 1, -1, -1):
        kp[i] = acc & ((1 << kb) - 1)
        acc >>= kb
    kp_q = (kp - (1 << (kb - 1))).reshape(k, 2)
    jac_q = (jac - (1 << (jb - 1))).reshape(k, 2, 2)
    return KeypointsKey(seq, ts_90k, kp_q, jac_q)


def _decode_delta(data: bytes, session: Session) -> KeypointsDelta:
    if len(data) < DELTA_HEADER_BYTES + 1:
        raise ProtocolError(f"KEYPOINTS_DELTA is {len(data)} bytes, minimum {DELTA_HEADER_BYTES + 1}")
    k = session.num_kp
    seq = int.from_bytes(data[1:3], "big")
    dec = BinDecoder(data[3:], "KEYPOINTS_DELTA payload")
    probs = list(INITIAL_PROBS)
    distance = dec.get_ueg(probs, CTX_REF, 2) + 1
    if distance > MAX_REF_DISTANCE:
        raise ProtocolError(f"KEYPOINTS_DELTA reference distance {distance} exceeds {MAX_REF_DISTANCE}")
    ts_offset = dec.get_signed(probs, CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG, 2)
    if abs(ts_offset) > MAX_TS_OFFSET_90K:
        raise ProtocolError(f"KEYPOINTS_DELTA ts offset {ts_offset} exceeds +-{MAX_TS_OFFSET_90K}")
    limits = [_res_limit(c, session) for c in range(NUM_COMPONENTS)]
    values = np.zeros((NUM_COMPONENTS, k), dtype=np.int64)
    common = [0] * NUM_COMPONENTS
    if dec.get(probs, CTX_MOVED):
        _decode_moved(dec, probs, limits, common, values)
        if not any(common) and not values.any():
            raise ProtocolError("KEYPOINTS_DELTA flags a moved frame but carries no change")
    dec.finish()
    values = values.T  # (K, 6)
    ref_seq = (seq - distance) & 0xFFFF
    jac_res = values[:, 2:].reshape(k, 2, 2)
    return KeypointsDelta(seq, ref_seq, ts_offset, np.array(common), values[:, :2], jac_res)


def _decode_moved(dec: BinDecoder, probs: list[int], limits: list[int], common: list[int],
                  values: np.ndarray) -> None:
    """Common shifts and residuals of a moved frame, into `common` (6,) and `values` (6, K)."""
    k = values.shape[1]
    for c in range(NUM_COMPONENTS):
        v = dec.get_signed(probs, CTX_COMMON_ZERO + c, CTX_COMMON_SIGN + c, CTX_COMMON_MAG + 2 * (c >= 2), 2)
        if abs(v) > limits[c]:
            raise ProtocolError(f"KEYPOINTS_DELTA common shift {v} of component {c} exceeds +-{limits[c]}")
        common[c] = v
    for c in range(NUM_COMPONENTS):
        zero_ctx, sign_ctx, mag_ctx = CTX_RES_ZERO + 2 * c, CTX_RES_SIGN + 3 * c, CTX_RES_MAG + 3 * (c >= 2)
        state = 0
        limit = limits[c]
        for i in range(k):
            v = dec.get_signed(probs, zero_ctx + (state != 0), sign_ctx + state, mag_ctx, 3)
            if abs(v) > limit:
                raise ProtocolError(f"KEYPOINTS_DELTA residual {v} of component {c} exceeds +-{limit}")
            values[c, i] = v
            state = 0 if v == 0 else (1 if v > 0 else 2)


class KeypointEncoder:
    """Sender side of the keypoint stream: float keypoints in, packets out.

    Each frame is quantised and predicted from the previous frame; a KEY packet goes out first, every
    `session.key_interval_frames` frames, after `request_key()` (on a peer's Refresh), and whenever a delta
    could not express the frame (timestamp jump).

    Hysteresis (an encoder choice; the format does not see it): a value keeps its previous level while it
    stays within `*_hysteresis_steps` steps of it. 0.5 is plain rounding (error <= step/2); larger values
    trade a larger error bound (hysteresis x step) for fewer level changes: no +-1 flicker of a value that
    hovers on a level boundary, and fewer bits.

    Args:
        session: the call's session.
        first_seq: seq of the first packet (uint16).
        kp_hysteresis_steps: keypoint hysteresis in steps, >= 0.5.
        jac_hysteresis_steps: jacobian hysteresis in steps, >= 0.5.
    """

    def __init__(
        self,
        session: Session,
        first_seq: int = 0,
        kp_hysteresis_steps: float = 0.5,
        jac_hysteresis_steps: float = 0.5,
    ) -> None:
        if not (kp_hysteresis_steps >= 0.5 and jac_hysteresis_steps >= 0.5):
            raise ValueError("hysteresis must be >= 0.5 steps (0.5 is plain rounding)")
        self.session = session
        self.kp_hysteresis_steps = float(kp_hysteresis_steps)
        self.jac_hysteresis_steps = float(jac_hysteresis_steps)
        self._seq = first_seq & 0xFFFF
        self._ref: tuple[int, int, np.ndarray, np.ndarray] | None = None  # seq, ts_90k, kp_q, jac_q
        self._since_key = 0
        self._key_requested = False

    def request_key(self) -> None:
        """Make the next packet a KEY packet."""
        self._key_requested = True

    def packet(self, kp: np.ndarray, jac: np.ndarray, ts_90k: int) -> KeypointsPacket:
        """Quantise and predict one frame.

        Args:
            kp: (K, 2) keypoints in [-1, 1], finite.
            jac: (K, 2, 2) jacobians, finite (clamped to the session range).
            ts_90k: uint32 media timestamp of the frame.

        Returns:
            The packet (its seq is taken from the encoder's counter).

        Raises:
            ValueError: wrong shapes, non-finite values, ts_90k not a uint32.
        """
        k = self.session.num_kp
        if np.shape(kp) != (k, 2) or np.shape(jac) != (k, 2, 2):
            raise ValueError(f"expected kp ({k}, 2) and jac ({k}, 2, 2), got {np.shape(kp)}, {np.shape(jac)}")
        ts_90k = int(ts_90k)
        if not 0 <= ts_90k < TS_MODULUS:
            raise ValueError(f"ts_90k={ts_90k} is not a uint32")
        kp_q, jac_q = quantise_keypoints(kp, jac, self.session.quant)
        seq = self._seq
        if self._ref is not None:
            quant = self.session.quant
            kp_q = _hold(kp, kp_q, self._ref[2], quant.kp_step, self.kp_hysteresis_steps)
            jac_q = _hold(jac, jac_q, self._ref[3], quant.jac_step, self.jac_hysteresis_steps)
        packet: KeypointsPacket | None = None
        key_due = self._key_requested or self._since_key >= self.session.key_interval_frames
        if self._ref is not None and not key_due:
            ref_seq, ref_ts, ref_kp, ref_jac = self._ref
            offset = ts_90k - (ref_ts + self.session.ts_step_90k * ((seq - ref_seq) & 0xFFFF))
            offset = (offset + (1 << 31)) % TS_MODULUS - (1 << 31)
            if abs(offset) <= MAX_TS_OFFSET_90K:
                res = _components(kp_q - ref_kp, jac_q - ref_jac)  # (K, 6)
                common = np.sort(res, axis=0)[(k - 1) // 2]  # lower median per component: shared motion
                limits = np.array([_res_limit(c, self.session) for c in range(NUM_COMPONENTS)])
                fits = np.all(np.abs(res - common) <= limits, axis=0)  # opposite extreme jumps may not fit
                common = np.where(fits, common, 0)
                res = res - common
                packet = KeypointsDelta(seq, ref_seq, offset, common, res[:, :2], res[:, 2:].reshape(k, 2, 2))
        if packet is None:
            packet = KeypointsKey(seq, ts_90k, kp_q, jac_q)
            self._since_key = 0
            self._key_requested = False
        self._since_key += 1
        self._ref = (seq, ts_90k, kp_q, jac_q)
        self._seq = (seq + 1) & 0xFFFF
        return packet

    def encode(self, kp: np.ndarray, jac: np.ndarray, ts_90k: int) -> bytes:
        """`packet()` then `encode_keypoints()`: the bytes to send for this frame."""
        return encode_keypoints(self.packet(kp, jac, ts_90k), self.session)


def _hold(x: np.ndarray, q: np.ndarray, prev: np.ndarray, step: float, hysteresis: float) -> np.ndarray:
    """Keep `prev` levels where x is within `hysteresis` steps of them (clamped levels always follow q)."""
    if hysteresis <= 0.5:
        return q
    keep = np.abs(np.asarray(x, dtype=np.float64) / step - prev) <= hysteresis
    return np.where(keep, prev, q).astype(np.int32)


class KeypointDecoder:
    """Receiver side of the keypoint stream: packets in (in seq order), `Keypoints` out.

    Keeps the last MAX_REF_DISTANCE decoded frames as references. A delta packet whose reference is not
    among them (lost, late, or evicted) is a broken prediction chain: it is counted in `broken` and
    `needs_key` is set until a KEY packet is decoded (send a `Refresh(want_key=True)` meanwhile). What
    `decode` returns for it depends on `conceal_broken`:

    - False: None (the packet is dropped, and so is every delta that chains from it).
    - True (default): a delta carries the whole difference to its reference, so it is applied to the
      newest frame held before the missing reference instead. The result is flagged ``exact=False`` and is
      off by the motion of the missing frame(s) (about one frame's motion per lost packet), without drift,
      until the next KEY packet; every frame predicted from it is flagged too.

    Args:
        session: the call's session.
        conceal_broken: decode broken-chain deltas approximately (True) or drop them (False).
    """

    def __init__(self, session: Session, conceal_broken: bool = True) -> None:
        self.session = session
        self.conceal_broken = conceal_broken
        # seq -> (ts_90k, kp_q, jac_q, exact), oldest first
        self._history: OrderedDict[int, tuple[int, np.ndarray, np.ndarray, bool]] = OrderedDict()
        self.needs_key = False
        self.broken = 0

    def has_reference(self, packet: KeypointsPacket) -> bool:
        """True for KEY packets and for deltas whose reference frame is held (exact or not)."""
        return isinstance(packet, KeypointsKey) or packet.ref_seq in self._history

    def _stand_in(self, ref_seq: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """Newest held frame before `ref_seq`, as (its distance to ref_seq, ts, kp_q, jac_q)."""
        best = None
        for seq, (ts, kp_q, jac_q, _) in self._history.items():
            gap = seq_diff(ref_seq, seq)
            if 0 < gap and (best is None or gap < best[0]):
                best = (gap, ts, kp_q, jac_q)
        return best

    def decode(self, packet: KeypointsPacket) -> Keypoints | None:
        """Reconstruct one frame.

        Returns:
            The frame (``exact=False`` when concealed), or None for a broken-chain delta that is dropped
            (conceal_broken=False, or nothing decoded yet to stand in for its reference).

        Raises:
            ProtocolError: the packet does not fit the session, or an exactly predicted level leaves the
                valid range.
        """
        _check_against_session(packet, self.session)
        q = self.session.quant
        if isinstance(packet, KeypointsKey):
            ts_90k, kp_q, jac_q, exact = packet.ts_90k, packet.kp_q, packet.jac_q, True
        else:
            ref = self._history.get(packet.ref_seq)
            distance = packet.ref_distance
            if ref is not None:
                ref_ts, ref_kp, ref_jac, exact = ref
            else:
                self.broken += 1
                self.needs_key = True
                stand_in = self._stand_in(packet.ref_seq) if self.conceal_broken else None
                logger.debug("seq %d: reference %d missing, %s", packet.seq, packet.ref_seq,
                             "concealed" if stand_in else "dropped")
                if stand_in is None:
                    return None
                gap, ref_ts, ref_kp, ref_jac = stand_in
                ref_ts = (ref_ts + gap * self.session.ts_step_90k) % TS_MODULUS  # the missing frame's clock
                exact = False
            kp_q = ref_kp + packet.common[:2] + packet.kp_res
            jac_q = ref_jac + packet.common[2:].reshape(2, 2) + packet.jac_res
            for name, arr, bits in (("keypoint", kp_q, q.kp_bits), ("jacobian", jac_q, q.jac_bits)):
                half = 1 << (bits - 1)
                if exact and (arr.min() < -half or arr.max() > half - 1):
                    raise ProtocolError(
                        f"delta packet seq={packet.seq}: {name} level outside [{-half}, {half - 1}]"
                    )
                np.clip(arr, -half, half - 1, out=arr)  # only an approximate frame can need it
            ts_90k = (ref_ts + self.session.ts_step_90k * distance + packet.ts_offset_90k) % TS_MODULUS
            kp_q.setflags(write=False)
            jac_q.setflags(write=False)
        is_key = isinstance(packet, KeypointsKey)
        if is_key:
            self.needs_key = False
        self._history[packet.seq] = (ts_90k, kp_q, jac_q, exact)
        self._history.move_to_end(packet.seq)
        while len(self._history) > MAX_REF_DISTANCE:
            self._history.popitem(last=False)
        kp, jac = dequantise_keypoints(kp_q, jac_q, q)
        return Keypoints(packet.seq, ts_90k, kp, jac, is_key, exact)

    def decode_bytes(self, data: bytes) -> Keypoints | None:
        """`decode_keypoints` then `decode`."""
        return self.decode(decode_keypoints(data, self.session))
