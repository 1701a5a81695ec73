"""Validation metrics of generated frames against their driving frames (same-identity reenactment).

- ``l1``: mean absolute error of RGB in [0, 1] (the paper's L1).
- ``psnr_db``: PSNR of RGB in [0, 1] (peak 1), per frame, then averaged.
- ``ssim``: SSIM (torchmetrics, Gaussian 11x11, sigma 1.5) of RGB in [0, 1], per frame, then averaged.
- ``lmd_px``: landmark distance, the mean Euclidean distance between the 478 mediapipe face-mesh landmarks
  of the generated frame and those of the driving frame, in pixels of the 256x256 frame (the paper's LMD,
  FOMM's AKD, measured with mediapipe instead of the paper's detector), averaged over the frames where
  mediapipe finds a face in the generated frame; ``lmd_iod`` is the same distance divided by the driving
  frame's inter-ocular distance (outer eye corners, landmarks 33 and 263), so it does not depend on face size;
  ``lmd_miss`` is the share of generated frames where no face was found (a failure LMD alone would hide);
  ``mouth_lmd_px`` is the same distance over the 40 lip landmarks only (``avfr.codec.data.priors.LIP_LANDMARKS``).
  Needs mediapipe; where it is missing (a GPU training box) LMD is NaN.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

LEFT_EYE_OUTER = 33  # mediapipe face mesh landmark indices
RIGHT_EYE_OUTER = 263


@dataclass(frozen=True)
class ValMetrics:
    """Averages over the validation frames (NaN where not measured)."""

    l1: float
    psnr_db: float
    ssim: float
    lmd_px: float
    lmd_iod: float
    lmd_miss: float
    num_frames: int
    mouth_lmd_px: float = math.nan

    def as_row(self) -> dict[str, float]:
        """The metrics as a flat dict (CSV / JSON friendly)."""
        return {"l1": self.l1, "psnr_db": self.psnr_db, "ssim": self.ssim, "lmd_px": self.lmd_px,
                "lmd_iod": self.lmd_iod, "lmd_miss": self.lmd_miss, "num_frames": self.num_frames,
                "mouth_lmd_px": self.mouth_lmd_px}


def pixel_metrics(generated: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame L1, PSNR and SSIM of RGB images.

    Args:
        generated: (B, 3, H, W) in [0, 1] (clamped here).
        target: (B, 3, H, W) in [0, 1].

    Returns:
        l1 (B,), psnr_db (B,), ssim (B,), float32 on the inputs' device.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    gen = generated.float().clamp(0, 1)
    ref = target.float()
    l1 = (gen - ref).abs().mean((1, 2, 3))  # (B,)
    mse = (gen - ref).pow(2).mean((1, 2, 3)).clamp_min(1e-10)
    psnr = -10.0 * torch.log10(mse)  # peak 1
    ssim = structural_similarity_index_measure(gen, ref, data_range=1.0, reduction="none")  # (B,)
    return l1, psnr, ssim


def mediapipe_available() -> bool:
    """Whether mediapipe can be imported (LMD needs it)."""
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return True


class LandmarkDistance:
    """LMD of generated frames against reference landmarks, with one mediapipe face mesh kept open.

    Raises:
        ImportError: mediapipe is not installed.
    """

    def __init__(self) -> None:
        from avfr.codec.data import PriorExtractor

        self._extractor = PriorExtractor(mesh=True, mask=False)

    def __call__(self, generated_rgb: np.ndarray,
                 reference_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmark distances of a batch.

        Args:
            generated_rgb: uint8 (B, H, W, 3).
            reference_landmarks: float32 (B, 478, 2) px of the driving frames (NaN rows = no face).

        Returns:
            dist_px (B,), dist_iod (B,) and mouth_px (B,) (lip landmarks only) float64, NaN where either frame
            has no face.
        """
        from avfr.codec.data import LIP_LANDMARKS

        out_px = np.full(len(generated_rgb), np.nan)
        out_iod = np.full(len(generated_rgb), np.nan)
        out_mouth = np.full(len(generated_rgb), np.nan)
        for k, (rgb, ref) in enumerate(zip(generated_rgb, reference_landmarks, strict=True)):
            if not np.isfinite(ref).all():
                continue
            lm, n_faces = self._extractor.face_landmarks(rgb)
            if n_faces == 0:
                continue
            dist = np.linalg.norm(lm - ref, axis=-1)  # (478,) px
            out_px[k] = float(dist.mean())
            out_mouth[k] = float(dist[LIP_LANDMARKS].mean())
            iod = float(np.linalg.norm(ref[LEFT_EYE_OUTER] - ref[RIGHT_EYE_OUTER]))
            out_iod[k] = out_px[k] / iod if iod > 0 else math.nan
        return out_px, out_iod, out_mouth

    def close(self) -> None:
        """Release mediapipe."""
        self._extractor.close()


def summarise(l1: list[float], psnr: list[float], ssim: list[float], lmd_px: list[float],
              lmd_iod: list[float], mouth_px: list[float] | None = None) -> ValMetrics:
    """Average per-frame values; LMD over the frames where the generated face was found.

    Args:
        l1, psnr, ssim: per-frame values.
        lmd_px, lmd_iod, mouth_px: per-frame landmark distances, NaN for a missed face; empty lists (or None)
            when LMD was not measured.
    """
    n = len(l1)
    px = np.asarray(lmd_px, np.float64)
    found = np.isfinite(px)
    measured = len(px) > 0
    return ValMetrics(
        l1=float(np.mean(l1)) if n else math.nan,
        psnr_db=float(np.mean(psnr)) if n else math.nan,
        ssim=float(np.mean(ssim)) if n else math.nan,
        lmd_px=float(px[found].mean()) if found.any() else math.nan,
        lmd_iod=float(np.asarray(lmd_iod, np.float64)[found].mean()) if found.any() else math.nan,
        lmd_miss=float(1.0 - found.mean()) if measured else math.nan,
        num_frames=n,
        mouth_lmd_px=(float(np.asarray(mouth_px, np.float64)[found].mean())
                      if mouth_px is not None and len(mouth_px) == len(px) and found.any() else math.nan),
    )
