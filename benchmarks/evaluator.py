"""Metrics of one row of the rate-quality benchmark, with the metric tools kept open across a run.

:meth:`Evaluator.full_reference`: every same-identity metric of a decoded or generated video against the original
(pixel, landmark, lip-sync and identity metrics); :meth:`Evaluator.no_reference`: the cross-identity ones.
:func:`identity_status` says whether rows get an identity distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avfr.benchmarks.identity import IdentityEmbedder, identity_backend
from avfr.benchmarks.landmark_metrics import (
    LandmarkTracker,
    landmark_distance,
    landmark_jitter,
    lip_indices,
    motion_distance,
    sync_proxy,
)
from avfr.benchmarks.pixel_metrics import l1, psnr_db, ssim_frames, vmaf

METRICS_VERSION = 2  # 2: SSIM / MS-SSIM in float64 (OpenCV; 1: torchmetrics in float32); part of the resume key
ID_SAMPLES = 10  # frames per row for the identity embedding (~0.1 s each)


def identity_status(use_identity: bool = True) -> tuple[bool, str]:
    """Whether rows get an identity distance (dlib available and not switched off), and the report's note."""
    ok, note = identity_backend()
    if ok and not use_identity:
        return False, "identity distance switched off (--no-identity)"
    return ok, note


@dataclass
class Evaluator:
    """Metric tools kept open across a run (mediapipe graph, dlib models)."""

    tracker: LandmarkTracker
    embedder: IdentityEmbedder | None
    id_note: str
    lips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def create(cls, use_identity: bool = True) -> Evaluator:
        ok, note = identity_status(use_identity)
        return cls(LandmarkTracker(), IdentityEmbedder() if ok else None, note,
                   lip_indices())

    def close(self) -> None:
        self.tracker.close()

    def identity(self, frames: np.ndarray, source_rgb: np.ndarray) -> float | None:
        if self.embedder is None:
            return None
        idx = np.unique(np.linspace(0, len(frames) - 1, min(ID_SAMPLES, len(frames))).round().astype(int))
        return self.embedder.distance([frames[i] for i in idx], source_rgb)

    def full_reference(self, test: np.ndarray, reference: np.ndarray, reference_lm: np.ndarray, pcm: np.ndarray,
                       source_rgb: np.ndarray, test_lm: np.ndarray | None = None) -> dict:
        """Every same-identity metric of one decoded/generated video against the original.

        Args:
            test_lm: the test video's landmarks when already known (e.g. a still: one picture's, repeated).
        """
        lm = self.tracker(test) if test_lm is None else test_lm
        lmd, miss = landmark_distance(lm, reference_lm)
        sync, lag = sync_proxy(lm, pcm)
        ssim, ms_ssim = ssim_frames(test, reference)
        return {
            "psnr": psnr_db(test, reference), "ssim": float(ssim.mean()),
            "ms_ssim": float(ms_ssim.mean()), "vmaf": vmaf(test, reference),
            "l1": l1(test, reference), "lmd": lmd, "lmd_miss": miss,
            "mouth_lmd": landmark_distance(lm, reference_lm, self.lips)[0],
            "sync_corr": sync, "sync_lag_frames": lag, "jitter": landmark_jitter(lm),
            "id_dist": self.identity(test, source_rgb),
        }

    def no_reference(self, test: np.ndarray, driver_lm: np.ndarray, pcm: np.ndarray, source_rgb: np.ndarray,
                     test_lm: np.ndarray | None = None) -> dict:
        """Cross-identity metrics: identity to the source, landmark motion to the driver, sync proxy, jitter."""
        lm = self.tracker(test) if test_lm is None else test_lm
        sync, lag = sync_proxy(lm, pcm)
        return {"id_dist": self.identity(test, source_rgb), "motion_lmd": motion_distance(lm, driver_lm),
                "sync_corr": sync, "sync_lag_frames": lag, "jitter": landmark_jitter(lm)}
