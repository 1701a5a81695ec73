"""Pixel metrics of the rate-quality benchmark (``avfr-codec bench``): a decoded or generated video against its
original (same identity), RGB frames compared pixel by pixel.

- :func:`l1`: mean absolute error of RGB in [0, 1] (the paper's L1).
- :func:`psnr_db`: PSNR of RGB in [0, 1], peak 1, per frame, averaged (identical frames: ``inf``).
- :func:`ssim` / :func:`ms_ssim` (both at once: :func:`ssim_frames`): torchmetrics' SSIM (Gaussian 11x11,
  sigma 1.5) and MS-SSIM (5 scales) definitions, per frame, averaged; computed with OpenCV's separable filter
  in float64 (torchmetrics' grouped 11x11 convolution took ~40 % of a bench run on CPU), pinned to
  torchmetrics by a test.
- :func:`vmaf`: libvmaf's built-in ``vmaf_v0.6.1`` model through the imageio-ffmpeg binary (:func:`ffmpeg_exe`;
  both videos converted to yuv420p by FFmpeg), the mean of the per-frame scores.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np

VMAF_MODEL = "vmaf_v0.6.1"
FPS = 25


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
