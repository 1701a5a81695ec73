"""Keypoint packet types (SPEC.md, "KEYPOINTS_KEY" and "KEYPOINTS_DELTA") and their checks against a session.

A KEY packet carries every level and decodes on its own; a DELTA packet carries the difference to a reference
frame (normally the previous one, named by its seq): a timestamp offset, six common shifts (one per component:
the shared head motion) and the per-keypoint residuals. `Keypoints` is one decoded frame.

Shapes: K = session.num_kp; kp (K, 2) as (x, y) in [-1, 1]; jac (K, 2, 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avfr.proto.errors import ProtocolError
from avfr.proto.hello import Session

__all__ = [
    "SEQ_MODULUS",
    "TS_MODULUS",
    "MAX_REF_DISTANCE",
    "MAX_TS_OFFSET_90K",
    "NUM_COMPONENTS",
    "seq_diff",
    "KeypointsKey",
    "KeypointsDelta",
    "KeypointsPacket",
    "Keypoints",
    "check_against_session",
    "residual_limit",
    "as_components",
]

SEQ_MODULUS = 1 << 16  # seq is uint16 and wraps; compare with `seq_diff`
TS_MODULUS = 1 << 32  # ts_90k is uint32 and wraps
MAX_REF_DISTANCE = 64  # a delta may reference any of the 64 frames before it (decoder history size)
MAX_TS_OFFSET_90K = 90_000  # |ts - nominal ts| carried by a delta packet (1 s); beyond: send a key
NUM_COMPONENTS = 6  # per keypoint: x, y, j00, j01, j10, j11


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


def check_against_session(packet: KeypointsPacket, session: Session) -> None:
    """Raise ProtocolError unless the packet has the session's K and its levels or differences fit the bit depths."""
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
        values = np.concatenate([packet.common[None, :], as_components(packet.kp_res, packet.jac_res)])
        for c in range(NUM_COMPONENTS):
            limit = residual_limit(c, session)
            if np.abs(values[:, c]).max() > limit:
                raise ProtocolError(f"delta component {c} exceeds +-{limit}")


def residual_limit(component: int, session: Session) -> int:
    """Largest |common shift| or |residual| of a component (0, 1: kp; 2-5: jac) at the session's bit depths."""
    bits = session.quant.kp_bits if component < 2 else session.quant.jac_bits
    return (1 << bits) - 1  # the difference of two levels


def as_components(kp: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """(K, 2) and (K, 2, 2) -> (K, 6) as x, y, j00, j01, j10, j11."""
    return np.concatenate([kp, jac.reshape(kp.shape[0], 4)], axis=1)
