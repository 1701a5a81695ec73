"""Landmark and lip-sync metrics of the rate-quality benchmark (``avfr-codec bench``), on mediapipe's 478
face-mesh landmarks (:class:`LandmarkTracker`: one frame at a time, static mode), px in a 256x256 frame.

- :func:`landmark_distance`: LMD, the mean Euclidean distance between the landmarks of a frame and of its
  original (FOMM's "average keypoint distance", with mediapipe as the detector), over the frames where both
  faces were found; :func:`lip_indices` restricts it to the lip landmarks (mouth LMD).
- :func:`landmark_jitter`: mean norm of the landmarks' second difference over time, px / frame^2 (temporal
  shake; a steady face has ~0.3-0.6 px from mediapipe's own noise). No reference needed.
- :func:`motion_distance`: LMD of landmark *motion* (each frame minus the first), for cross-identity runs.
- :func:`sync_proxy`: correlation of the mouth opening (inner-lip gap / face height) with the speech envelope
  (:func:`speech_envelope_db`, per-frame RMS in dB), each with its 1 s moving mean removed, best over lags of
  +-4 frames; returns the peak correlation and its lag (lag > 0: the audio comes after the mouth). A coarse,
  weight-free proxy, not a SyncNet score (no lip-sync scorer with weights can be had offline here). No
  reference needed.
"""

from __future__ import annotations

import math

import numpy as np

from avfr.codec.data import mouth_opening

SYNC_MAX_LAG_FRAMES = 4
SYNC_DETREND_FRAMES = 25  # 1 s moving mean removed from both signals
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def lip_indices() -> np.ndarray:
    """Sorted landmark indices of mediapipe's FACEMESH_LIPS (40 points: outer and inner lip contours)."""
    from avfr.codec.data import LIP_LANDMARKS

    return LIP_LANDMARKS.copy()


class LandmarkTracker:
    """mediapipe face mesh (refined, 478 points, static mode) over whole videos; one graph kept open."""

    def __init__(self) -> None:
        from avfr.codec.data import PriorExtractor

        self._extractor = PriorExtractor(mesh=True, mask=False)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Landmarks of every frame.

        Args:
            frames: uint8 (T, H, W, 3) RGB.

        Returns:
            float32 (T, 478, 2) px, NaN rows where no face was found.
        """
        return np.stack([self._extractor.face_landmarks(np.ascontiguousarray(f))[0] for f in frames])

    def close(self) -> None:
        self._extractor.close()

    def __enter__(self) -> LandmarkTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def landmark_distance(test_lm: np.ndarray, reference_lm: np.ndarray,
                      indices: np.ndarray | None = None) -> tuple[float, float]:
    """LMD: mean distance between corresponding landmarks.

    Args:
        test_lm, reference_lm: float (T, N, 2) px, NaN rows for missed faces.
        indices: subset of landmarks (e.g. :func:`lip_indices`), None for all.

    Returns:
        (mean distance in px over frames where both faces were found (NaN if none),
         share of reference-face frames where the test face was missed).
    """
    a, b = np.asarray(test_lm, np.float64), np.asarray(reference_lm, np.float64)
    if indices is not None:
        a, b = a[:, indices], b[:, indices]
    ok_ref = np.isfinite(b).all(axis=(1, 2))
    ok = ok_ref & np.isfinite(a).all(axis=(1, 2))
    miss = float(1.0 - ok.sum() / ok_ref.sum()) if ok_ref.any() else math.nan
    if not ok.any():
        return math.nan, miss
    return float(np.linalg.norm(a[ok] - b[ok], axis=-1).mean()), miss


def landmark_jitter(lm: np.ndarray) -> float:
    """Temporal jitter: mean norm of the second difference ``lm[t+1] - 2 lm[t] + lm[t-1]`` in px.

    Args:
        lm: float (T, N, 2) px, NaN rows skipped (triples with a missed frame are left out).

    Returns:
        px per frame^2, NaN with fewer than 3 consecutive found frames.
    """
    x = np.asarray(lm, np.float64)
    if len(x) < 3:
        return math.nan
    acc = x[2:] - 2.0 * x[1:-1] + x[:-2]  # (T-2, N, 2)
    ok = np.isfinite(acc).all(axis=(1, 2))
    return float(np.linalg.norm(acc[ok], axis=-1).mean()) if ok.any() else math.nan


def motion_distance(test_lm: np.ndarray, driver_lm: np.ndarray) -> float:
    """Cross-identity landmark motion error: LMD of (lm[t] - lm[first found]) between test and driver, px.

    Returns:
        px, NaN when no frame has both faces.
    """
    def _rel(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        found = np.flatnonzero(np.isfinite(x).all(axis=(1, 2)))
        return x - x[found[0]] if len(found) else x

    return landmark_distance(_rel(test_lm), _rel(driver_lm))[0]


def speech_envelope_db(pcm: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame speech envelope: RMS in dB of the 40 ms of audio of each video frame.

    Args:
        pcm: float32 (N,) 16 kHz mono; frame i = samples [640 i, 640 (i + 1)).
        num_frames: T.

    Returns:
        float64 (T,) dBFS (floored at -100).
    """
    x = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float64)
    n = min(len(x), len(pcm))
    x[:n] = np.asarray(pcm[:n], np.float64)
    rms = np.sqrt(np.mean(x.reshape(num_frames, SAMPLES_PER_FRAME) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def _detrend(x: np.ndarray, width: int) -> np.ndarray:
    """x minus its centred moving mean (NaN-aware), NaN kept."""
    finite = np.isfinite(x)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    counts = np.concatenate([[0.0], np.cumsum(finite)])
    t = np.arange(len(x))
    lo, hi = np.maximum(t - width // 2, 0), np.minimum(t + width // 2 + 1, len(x))  # window [lo, hi) per sample
    mean = (sums[hi] - sums[lo]) / np.maximum(counts[hi] - counts[lo], 1.0)
    return np.where(finite, x - mean, np.nan)


def lagged_correlation(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Pearson correlation of a[t] and b[t + lag] over the samples finite in both (NaN if < 8 samples)."""
    if lag >= 0:
        x, y = a[: len(a) - lag], b[lag:]
    else:
        x, y = a[-lag:], b[: len(b) + lag]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 8 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return math.nan
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def sync_proxy(lm: np.ndarray, pcm: np.ndarray, max_lag_frames: int = SYNC_MAX_LAG_FRAMES) -> tuple[float, int]:
    """Lip-sync proxy: best correlation of mouth opening and speech envelope over small lags.

    Args:
        lm: float (T, 478, 2) px of the video.
        pcm: float32 (T * 640,) 16 kHz speech of the clip.
        max_lag_frames: lags searched, +-frames.

    Returns:
        (peak correlation, its lag in frames; lag > 0: the audio comes after the mouth); (NaN, 0) when the
        clip is too short, silent or faceless.
    """
    mouth = _detrend(mouth_opening(lm), SYNC_DETREND_FRAMES)
    env = _detrend(speech_envelope_db(pcm, len(mouth)), SYNC_DETREND_FRAMES)
    best, best_lag = math.nan, 0
    for lag in range(-max_lag_frames, max_lag_frames + 1):
        c = lagged_correlation(mouth, env, lag)
        if math.isfinite(c) and (not math.isfinite(best) or c > best):
            best, best_lag = c, lag
    return best, best_lag
