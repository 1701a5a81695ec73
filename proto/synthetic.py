"""Synthetic keypoint streams for tests and benchmarks (no model needed): smooth, bounded random walks."""

from __future__ import annotations

import numpy as np

__all__ = ["random_walk_keypoints"]

PIXELS_PER_UNIT = 128.0  # [-1, 1] spans a 256 px frame


def random_walk_keypoints(
    num_frames: int,
    num_kp: int = 10,
    rms_step_px: float = 1.0,
    jac_rms_step: float = 0.01,
    shared_fraction: float = 0.7,
    smoothness: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A talking-head-like keypoint track: shared head motion plus per-keypoint motion, both smooth.

    Velocities are AR(1) processes (coefficient `smoothness`), positions integrate them with a weak pull
    towards a fixed face layout so the track stays in range. The velocity is scaled so that the RMS
    per-frame step of one coordinate is `rms_step_px` pixels at 256 px (mediapipe landmarks of the
    project's talking-head clips move 1.2..2.4 px RMS per frame, mouth included; FOMM keypoints are
    smoother). Jacobians are identity plus a smooth walk with RMS per-frame step `jac_rms_step`.

    Args:
        num_frames: T.
        num_kp: K.
        rms_step_px: RMS per-frame step of one keypoint coordinate, pixels at 256 px.
        jac_rms_step: RMS per-frame step of one jacobian entry.
        shared_fraction: share of the motion variance common to all keypoints (head motion).
        smoothness: AR(1) coefficient of the velocities, in [0, 1).
        seed: numpy Generator seed.

    Returns:
        kp float32 (T, K, 2) in [-1, 1], jac float32 (T, K, 2, 2).
    """
    rng = np.random.default_rng(seed)
    pull = 0.02

    def velocities(shape: tuple[int, ...]) -> np.ndarray:
        # unit-RMS AR(1) velocity per trajectory, shared part + own part
        noise = rng.standard_normal((num_frames, 1, *shape[1:])) * np.sqrt(shared_fraction)
        noise = noise + rng.standard_normal((num_frames, *shape)) * np.sqrt(1.0 - shared_fraction)
        v = np.empty_like(noise)
        state = noise[0]
        for t in range(num_frames):
            state = smoothness * state + np.sqrt(1.0 - smoothness**2) * noise[t]
            v[t] = state
        return v

    def integrate(base: np.ndarray, v: np.ndarray) -> np.ndarray:
        x = np.empty_like(v)
        pos = base.copy()
        for t in range(num_frames):
            pos = pos + v[t] - pull * (pos - base)
            x[t] = pos
        return x

    base_kp = rng.uniform(-0.5, 0.5, (num_kp, 2))
    kp = integrate(base_kp, velocities((num_kp, 2)) * (rms_step_px / PIXELS_PER_UNIT))
    base_jac = np.broadcast_to(np.eye(2).reshape(1, 4), (num_kp, 4))
    jac = integrate(base_jac, velocities((num_kp, 4)) * jac_rms_step)
    kp = np.clip(kp, -1.0, 1.0)
    return kp.astype(np.float32), jac.reshape(num_frames, num_kp, 2, 2).astype(np.float32)
