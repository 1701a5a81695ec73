"""Keypoint and jacobian quantisation: b-bit signed fixed point (SPEC.md, "Quantisation").

A value range [-A, A) is cut into 2**b levels of width ``step = A / 2**(b-1)``; level q in
[-2**(b-1), 2**(b-1) - 1] stands for ``q * step``, so 0 (and, for power-of-two A, 1.0) is exact. Keypoints use
A = 1 (their [-1, 1] image coordinates), jacobian entries use A = `jac_abs_max` (a Hello parameter).

Error bound: for x in [-A - step/2, A - step/2] the reconstruction error is at most step/2 (float64 maths;
the float32 output adds at most |x| * 2**-24); values outside clamp to the nearest end level (-A or A - step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avfr.proto.errors import ProtocolError

__all__ = [
    "KP_ABS_MAX",
    "MIN_BITS",
    "MAX_BITS",
    "QuantParams",
    "quantise",
    "dequantise",
    "quantise_keypoints",
    "dequantise_keypoints",
]

KP_ABS_MAX = 1.0  # keypoints live in [-1, 1] (normalised image coordinates, FOMM convention)
MIN_BITS = 4
MAX_BITS = 16
MIN_JAC_ABS_MAX = 0.25
MAX_JAC_ABS_MAX = 64.0


@dataclass(frozen=True)
class QuantParams:
    """Bit depths and ranges of the keypoint stream; sent in the Hello, fixed for a session.

    Attributes:
        kp_bits: bits per keypoint coordinate, [-1, 1) in 2**kp_bits levels (8 -> 1 px steps at 256 px).
        jac_bits: bits per jacobian entry.
        jac_abs_max: jacobian entries are clamped to [-jac_abs_max, jac_abs_max - step].
    """

    kp_bits: int = 8
    jac_bits: int = 5
    jac_abs_max: float = 4.0

    def __post_init__(self) -> None:
        for name in ("kp_bits", "jac_bits"):
            value = getattr(self, name)
            if type(value) is not int or not MIN_BITS <= value <= MAX_BITS:
                raise ProtocolError(f"{name}={value!r} must be an int in [{MIN_BITS}, {MAX_BITS}]")
        a = self.jac_abs_max
        if type(a) is not float or not math.isfinite(a) or not MIN_JAC_ABS_MAX <= a <= MAX_JAC_ABS_MAX:
            raise ProtocolError(
                f"jac_abs_max={a!r} must be a finite float in [{MIN_JAC_ABS_MAX}, {MAX_JAC_ABS_MAX}]"
            )

    @property
    def kp_step(self) -> float:
        """Width of one keypoint level in [-1, 1] units (x 128 for pixels at 256 px)."""
        return KP_ABS_MAX / (1 << (self.kp_bits - 1))

    @property
    def jac_step(self) -> float:
        """Width of one jacobian level."""
        return self.jac_abs_max / (1 << (self.jac_bits - 1))


def quantise(x: np.ndarray, bits: int, abs_max: float) -> np.ndarray:
    """Float values -> signed levels ``clip(floor(x / step + 0.5), -2**(b-1), 2**(b-1) - 1)``.

    Args:
        x: any shape, finite.
        bits: b in [MIN_BITS, MAX_BITS].
        abs_max: A > 0; step = A / 2**(b-1).

    Returns:
        int32 levels, same shape.

    Raises:
        ValueError: non-finite input.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x64)):
        raise ValueError("cannot quantise non-finite values")
    half = 1 << (bits - 1)
    step = abs_max / half
    q = np.floor(x64 / step + 0.5)
    return np.clip(q, -half, half - 1).astype(np.int32)


def dequantise(q: np.ndarray, bits: int, abs_max: float) -> np.ndarray:
    """Signed levels -> float32 values ``q * step``, step = A / 2**(b-1)."""
    step = abs_max / (1 << (bits - 1))
    return (np.asarray(q, dtype=np.float64) * step).astype(np.float32)


def quantise_keypoints(
    kp: np.ndarray, jac: np.ndarray, params: QuantParams
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and jacobians -> integer levels.

    Args:
        kp: (K, 2) keypoints in [-1, 1] (x, y).
        jac: (K, 2, 2) jacobians.
        params: the session's bit depths and jacobian range.

    Returns:
        kp_q int32 (K, 2), jac_q int32 (K, 2, 2); error bounds in the module docstring.

    Raises:
        ValueError: wrong shapes or non-finite values.
    """
    kp = np.asarray(kp)
    jac = np.asarray(jac)
    if kp.ndim != 2 or kp.shape[1] != 2 or jac.shape != (kp.shape[0], 2, 2):
        raise ValueError(f"expected kp (K, 2) and jac (K, 2, 2), got {kp.shape} and {jac.shape}")
    return (
        quantise(kp, params.kp_bits, KP_ABS_MAX),
        quantise(jac, params.jac_bits, params.jac_abs_max),
    )


def dequantise_keypoints(
    kp_q: np.ndarray, jac_q: np.ndarray, params: QuantParams
) -> tuple[np.ndarray, np.ndarray]:
    """Integer levels -> float32 kp (K, 2) and jac (K, 2, 2)."""
    kp = dequantise(kp_q, params.kp_bits, KP_ABS_MAX)
    return kp, dequantise(jac_q, params.jac_bits, params.jac_abs_max)
