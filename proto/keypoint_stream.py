"""The keypoint stream around the packets: `KeypointEncoder` (quantise, hysteresis, predict, KEY packets) and
`KeypointDecoder` (reference history, broken-chain detection and concealment).

A lost packet breaks the chain of the deltas after it: `KeypointDecoder` detects the missing reference,
conceals (flags) or drops those frames, and asks for a KEY packet (periodic, or on `Refresh`) through
`needs_key`.

Shapes: K = session.num_kp; kp (K, 2) as (x, y) in [-1, 1]; jac (K, 2, 2).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from avfr.proto.errors import ProtocolError
from avfr.proto.hello import Session
from avfr.proto.keypoint_coding import decode_keypoints, encode_keypoints
from avfr.proto.keypoint_packets import (
    MAX_REF_DISTANCE,
    MAX_TS_OFFSET_90K,
    NUM_COMPONENTS,
    TS_MODULUS,
    Keypoints,
    KeypointsDelta,
    KeypointsKey,
    KeypointsPacket,
    as_components,
    check_against_session,
    residual_limit,
    seq_diff,
)
from avfr.proto.quant import dequantise_keypoints, quantise_keypoints

__all__ = ["KeypointEncoder", "KeypointDecoder"]

logger = logging.getLogger(__name__)


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
                res = as_components(kp_q - ref_kp, jac_q - ref_jac)  # (K, 6)
                common = np.sort(res, axis=0)[(k - 1) // 2]  # lower median per component: shared motion
                limits = np.array([residual_limit(c, self.session) for c in range(NUM_COMPONENTS)])
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
                valid range (which sets `needs_key`: the frame is not decoded; not counted in `broken`).
        """
        check_against_session(packet, self.session)
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
                    self.needs_key = True  # the frame is lost to the chain: the deltas after it will break
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
        """`decode_keypoints` then `decode`; a DELTA's seq is extended next to the newest frame held."""
        near = (next(reversed(self._history)) + 1) & 0xFFFF if self._history else 0
        return self.decode(decode_keypoints(data, self.session, near))
