"""Quality metrics of the rate-quality benchmark (``avfr-codec bench``), for decoded or generated video.

Full-reference (same identity: a frame and its original):

- :func:`l1`: mean absolute error of RGB in [0, 1] (the paper's L1).
- :func:`psnr_db`: PSNR of RGB in [0, 1], peak 1, per frame, averaged (identical frames: ``inf``).
- :func:`ssim` / :func:`ms_ssim` (both at once: :func:`ssim_frames`): torchmetrics' SSIM (Gaussian 11x11,
  sigma 1.5) and MS-SSIM (5 scales) definitions, per frame, averaged; computed with OpenCV's separable filter
  in float64 (torchmetrics' grouped 11x11 convolution took ~40 % of a bench run on CPU), pinned to
  torchmetrics by a test.
- :func:`vmaf`: libvmaf's built-in ``vmaf_v0.6.1`` model through the imageio-ffmpeg binary (both videos
  converted to yuv420p by FFmpeg), the mean of the per-frame scores.
- :func:`landmark_distance`: LMD, the mean Euclidean distance in px (256x256 frame) between mediapipe's 478
  face-mesh landmarks of a frame and of its original (FOMM's "average keypoint distance", with mediapipe as
  the detector), over the frames where both faces were found; ``mouth`` restricts it to the lip landmarks.

No-reference (also for cross-identity reenactment):

- :func:`sync_proxy`: correlation of the mouth opening (inner-lip gap / face height) with the speech envelope
  (per-frame RMS in dB), each with its 1 s moving mean removed, best over lags of +-4 frames; returns the
  peak correlation and its lag (lag > 0: the audio comes after the mouth). A coarse, weight-free proxy, not a
  SyncNet score (no lip-sync scorer with weights can be had offline here).
- :func:`landmark_jitter`: mean norm of the landmarks' second difference over time, px / frame^2 (temporal
  shake; a steady face has ~0.3-0.6 px from mediapipe's own noise).
- :func:`motion_distance`: LMD of landmark *motion* (each frame minus the first), for cross-identity runs.
- :class:`IdentityEmbedder`: dlib's 128-d face-recognition embedding (``face_recognition_models``, optional
  ``[bench]`` extra); distance < 0.6 is dlib's "same person" threshold. :func:`identity_backend` says whether
  it can run, and why not.

Landmarks come from :func:`face_landmarks` (mediapipe face mesh, one frame at a time, static mode).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avfr.codec.data import mouth_opening

logger = logging.getLogger(__name__)

VMAF_MODEL = "vmaf_v0.6.1"
SYNC_MAX_LAG_FRAMES = 4
SYNC_DETREND_FRAMES = 25  # 1 s moving mean removed from both signals
FPS = 25
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def _as_float(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 in [0, 1]; float input is taken as already in [0, 1]."""
    x = np.asarray(frames)
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x.astype(np.float32)


def _as_float64(frame: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1] (exact /255); float input is taken as already in [0, 1]."""
    x = np.asarray(frame)
    return x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _check_pair(test: np.ndarray, reference: np.ndarray) -> None:
    if np.shape(test) != np.shape(reference) or np.ndim(test) != 4 or np.shape(test)[-1] != 3:
        raise ValueError(f"expected two (T, H, W, 3) videos of one shape, got {np.shape(test)}, {np.shape(reference)}")


def l1(test: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute RGB error in [0, 1] units.

    Args:
        test, reference: (T, H, W, 3) uint8 (or float in [0, 1]).

    Raises:
        ValueError: shapes differ or are not videos.
    """
    _check_pair(test, reference)
    return float(np.mean([np.abs(_as_float(a) - _as_float(b)).mean() for a, b in zip(test, reference, strict=True)]))


def psnr_frames(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (peak 1 on [0, 1] RGB); ``inf`` for identical frames.

    Returns:
        float64 (T,).
    """
    _check_pair(test, reference)
    out = np.empty(len(test))
    for k, (a, b) in enumerate(zip(test, reference, strict=True)):
        mse = float(np.mean((_as_float(a).astype(np.float64) - _as_float(b)) ** 2))
        out[k] = math.inf if mse == 0.0 else -10.0 * math.log10(mse)
    return out


def psnr_db(test: np.ndarray, reference: np.ndarray) -> float:
    """Mean over frames of :func:`psnr_frames` (``inf`` when every frame is identical)."""
    return float(np.mean(psnr_frames(test, reference)))


SSIM_SIGMA = 1.5  # torchmetrics' defaults (Wang et al. 2004): Gaussian window 11x11, sigma 1.5
SSIM_KERNEL = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # 5 scales, finest first


def _gaussian_window() -> np.ndarray:
    """1-D Gaussian of SSIM_KERNEL taps, sigma SSIM_SIGMA, sum 1 (torchmetrics' ``_gaussian``), float64."""
    dist = np.arange(SSIM_KERNEL, dtype=np.float64) - (SSIM_KERNEL - 1) / 2
    g = np.exp(-0.5 * (dist / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _ssim_maps(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """SSIM of one scale: (mean SSIM map, mean contrast-structure map without its border).

    Args:
        a, b: float64 (H, W, 3) in [0, 1].
        window: 1-D Gaussian (the separable 2-D window is its outer product).
    """
    import cv2

    def blur(x: np.ndarray) -> np.ndarray:  # reflect padding ("reflect" in torch = BORDER_REFLECT_101)
        return cv2.sepFilter2D(x, cv2.CV_64F, window, window, borderType=cv2.BORDER_REFLECT_101)

    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mu_a, mu_b = blur(a), blur(b)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = np.maximum(blur(a * a) - mu_aa, 0.0)
    var_b = np.maximum(blur(b * b) - mu_bb, 0.0)
    cov = blur(a * b) - mu_ab
    cs_map = (2.0 * cov + c2) / (var_a + var_b + c2)  # (H, W, 3)
    ssim_map = (2.0 * mu_ab + c1) / (mu_aa + mu_bb + c1) * cs_map
    pad = (SSIM_KERNEL - 1) // 2
    return float(ssim_map.mean()), float(cs_map[pad:-pad, pad:-pad].mean())


def _halve(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling (torch ``avg_pool2d(2)``: odd sizes drop the last row/column), (H, W, C)."""
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))


def ssim_frames(test: np.ndarray, reference: np.ndarray, multiscale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame SSIM and MS-SSIM of RGB in [0, 1], with torchmetrics' definitions, in float64.

    SSIM is torchmetrics' ``structural_similarity_index_measure(data_range=1.0)`` (Gaussian 11x11,
    sigma 1.5, reflect padding, mean over channels and pixels); MS-SSIM is its
    ``multiscale_structural_similarity_index_measure(data_range=1.0, normalize="relu")`` (5 scales, default
    betas, contrast-structure terms averaged without the 5 px border, negative terms clamped to 0). Both are
    computed here with OpenCV's separable filter in float64, one frame at a time: ~10x faster than
    torchmetrics on CPU and closer to exact (torchmetrics in float32 differs by ~1e-5; the tests pin this to
    torchmetrics in float64 within 1e-6).

    Args:
        test, reference: uint8 (T, H, W, 3) (or float in [0, 1]); H, W >= 176 for MS-SSIM.
        multiscale: also compute MS-SSIM (else its values are NaN).

    Returns:
        (ssim float64 (T,), ms_ssim float64 (T,)).

    Raises:
        ValueError: shapes differ or are not videos, or frames are too small for MS-SSIM.
    """
    _check_pair(test, reference)
    height, width = np.shape(test)[1:3]
    scales = len(MS_SSIM_BETAS)
    if multiscale and min(height, width) // 2 ** (scales - 1) < SSIM_KERNEL:
        raise ValueError(f"MS-SSIM needs frames of at least {SSIM_KERNEL * 2 ** (scales - 1)} px, got {height}x{width}")
    window = _gaussian_window()
    out_ssim, out_ms = np.empty(len(test)), np.full(len(test), math.nan)
    for k, (fa, fb) in enumerate(zip(test, reference, strict=True)):
        a, b = _as_float64(fa), _as_float64(fb)
        sim, cs = _ssim_maps(a, b, window)
        out_ssim[k] = sim
        if not multiscale:
            continue
        terms = [max(cs, 0.0)]
        for _ in range(scales - 1):
            a, b = _halve(a), _halve(b)
            sim, cs = _ssim_maps(a, b, window)
            terms.append(max(cs, 0.0))
        terms[-1] = max(sim, 0.0)  # the coarsest scale contributes its full SSIM
        out_ms[k] = float(np.prod([t**beta for t, beta in zip(terms, MS_SSIM_BETAS, strict=True)]))
    return out_ssim, out_ms


def ssim(test: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame SSIM of RGB in [0, 1] (torchmetrics' definition, see :func:`ssim_frames`)."""
    return float(ssim_frames(test, reference, multiscale=False)[0].mean())


def ms_ssim(test: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame MS-SSIM (torchmetrics' definition, see :func:`ssim_frames`); frames >= 176 px."""
    return float(ssim_frames(test, reference)[1].mean())


def ffmpeg_exe() -> str:
    """Path of the imageio-ffmpeg binary (libvmaf, libvvenc, libx265, libsvtav1, dav1d are built in)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def vmaf(test: np.ndarray, reference: np.ndarray, threads: int = 2) -> float:
    """VMAF (libvmaf built-in ``vmaf_v0.6.1``) of a video against its original, mean of per-frame scores.

    Args:
        test, reference: uint8 (T, H, W, 3) RGB at 25 fps.
        threads: libvmaf threads.

    Returns:
        Mean VMAF score (0..100; identical inputs give ~100).

    Raises:
        ValueError: bad shapes.
        RuntimeError: FFmpeg failed.
    """
    _check_pair(test, reference)
    height, width = np.shape(test)[1:3]
    with tempfile.TemporaryDirectory(prefix="avfr-vmaf-") as tmp:
        dist, ref, log = Path(tmp) / "dist.rgb", Path(tmp) / "ref.rgb", Path(tmp) / "vmaf.json"
        np.ascontiguousarray(test, dtype=np.uint8).tofile(dist)
        np.ascontiguousarray(reference, dtype=np.uint8).tofile(ref)
        raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(FPS)]
        graph = (f"[0:v]format=yuv420p[d];[1:v]format=yuv420p[r];[d][r]libvmaf=model=version={VMAF_MODEL}"
                 f":log_fmt=json:log_path={log}:n_threads={threads}")
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *raw, "-i", str(dist), *raw, "-i", str(ref),
               "-lavfi", graph, "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg libvmaf failed: {proc.stderr.decode(errors='replace')[-400:]}")
        data = json.loads(log.read_text())
    return float(data["pooled_metrics"]["vmaf"]["mean"])


# ---------------------------------------------------------------------------------------------------------
# Landmarks


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


# ---------------------------------------------------------------------------------------------------------
# Identity


def identity_backend() -> tuple[bool, str]:
    """Whether the dlib identity embedding can run here.

    Returns:
        (available, "dlib <version> + face_recognition_models" or the reason it is not).
    """
    if importlib.util.find_spec("dlib") is None:
        return False, ("dlib is not installed (optional extra [bench]: pip install dlib-bin 'setuptools<81' Click; "
                       "pip install --no-deps face_recognition_models)")
    if _dlib_models_dir() is None:
        return False, "face_recognition_models is not installed (pip install --no-deps face_recognition_models)"
    import dlib

    return True, f"dlib {dlib.__version__} + face_recognition_models (dlib_face_recognition_resnet_model_v1)"


def _dlib_models_dir() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")  # found without importing (it imports pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path if (path / "dlib_face_recognition_resnet_model_v1.dat").exists() else None


class IdentityEmbedder:
    """dlib ResNet face embedding (128-d, unit scale: same person < 0.6) of RGB frames.

    The face box comes from dlib's HOG detector, or the whole frame when it finds none (talking-head crops
    fill the frame); alignment uses dlib's 5-point shape predictor.

    Raises:
        ImportError: dlib or face_recognition_models is missing (see :func:`identity_backend`).
    """

    def __init__(self) -> None:
        ok, why = identity_backend()
        if not ok:
            raise ImportError(why)
        import dlib

        models = _dlib_models_dir()
        if models is None:  # identity_backend checked it; keeps type checkers happy
            raise ImportError("face_recognition_models is not installed")
        self._source: tuple[bytes, np.ndarray] | None = None  # (digest, embedding) of the last source image
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._dlib = dlib

    def embed(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float64 (128,) embedding."""
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        boxes = self._detector(image, 0)
        if len(boxes):
            box = max(boxes, key=lambda r: r.width() * r.height())
        else:
            box = self._dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)
        shape = self._shape(image, box)
        return np.array(self._net.compute_face_descriptor(image, shape), np.float64)

    def distance(self, frames: Sequence[np.ndarray], source: np.ndarray) -> float:
        """Mean embedding distance of frames to the source image.

        Args:
            frames: uint8 (H, W, 3) RGB frames (subsample long videos: ~0.1 s per frame).
            source: uint8 (H, W, 3) RGB source image.
        """
        image = np.ascontiguousarray(source, dtype=np.uint8)
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + repr(image.shape).encode()
        if self._source is None or self._source[0] != digest:  # one source serves every row of a clip
            self._source = (digest, self.embed(image))
        ref = self._source[1]
        return float(np.mean([np.linalg.norm(self.embed(f) - ref) for f in frames]))
