"""Validation of a training run on the dev clips: L1, PSNR, SSIM and LMD (:mod:`avfr.codec.train.metrics`).

The pairs (same identity, deterministic): for each dev clip, its first face frame is the source and up to
``val_max_per_clip`` face frames spread evenly over the clip (about one every ``val_stride``) are driven, with
the mel of the highest-bitrate Opus round trip (what a call hears). LMD needs mediapipe and is skipped (NaN,
logged once) where it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from avfr.codec.train.config import TrainConfig, autocast_for
from avfr.codec.train.metrics import LandmarkDistance, ValMetrics, pixel_metrics, summarise
from avfr.codec.train.trainset import PairIndex, TrainSet


def _chunks(idx: PairIndex, size: int) -> Iterator[PairIndex]:
    """Consecutive slices of at most ``size`` pairs."""
    n = idx.clip.shape[0]
    for start in range(0, n, size):
        sl = slice(start, start + size)
        yield PairIndex(clip=idx.clip[sl], source=idx.source[sl], driving=idx.driving[sl],
                        variant=idx.variant[sl])


@torch.no_grad()
def validate(model: nn.Module, devset: TrainSet, cfg: TrainConfig,
             lmd: LandmarkDistance | None) -> ValMetrics:
    """Same-identity reconstruction metrics on the fixed dev pairs (see module docstring).

    Args:
        model: ``AvfrModel`` (switched to eval for the call, then back).
        devset: the dev clips (no augmentation).
        cfg: validation sizes, amp.
        lmd: landmark distance, or None to skip LMD.
    """
    pairs = devset.fixed_pairs(cfg.val_max_per_clip, cfg.val_stride, devset.default_val_variant())
    was_training = model.training
    model.eval()
    l1s: list[float] = []
    psnrs: list[float] = []
    ssims: list[float] = []
    lmd_px: list[float] = []
    lmd_iod: list[float] = []
    mouth_px: list[float] = []
    try:
        for idx in _chunks(pairs, cfg.val_batch):
            src, drv, mel = devset.batch(idx)
            with autocast_for(devset.device, cfg, cpu=False):
                generated = model(src, drv, mel)[0]
            generated = generated.float().clamp(0, 1)
            l1, psnr, ssim = pixel_metrics(generated, drv[:, :3])
            l1s += l1.tolist()
            psnrs += psnr.tolist()
            ssims += ssim.tolist()
            if lmd is not None:
                rgb = (generated * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B,H,W,3)
                pairs_cf = zip(idx.clip.tolist(), idx.driving.tolist(), strict=True)
                ref = np.stack([devset.landmarks[c][f] for c, f in pairs_cf])  # (B, 478, 2)
                px, iod, mouth = lmd(rgb, ref)
                lmd_px += px.tolist()
                lmd_iod += iod.tolist()
                mouth_px += mouth.tolist()
    finally:
        model.train(was_training)
    return summarise(l1s, psnrs, ssims, lmd_px, lmd_iod, mouth_px)
