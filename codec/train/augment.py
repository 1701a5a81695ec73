"""On-device augmentation of training pairs: one draw per pair, applied to its frames alike.

A draw flips, zooms/shifts (one affine warp of all five channels via ``grid_sample``) and jitters the colour
of the RGB channels (brightness, contrast, saturation, a hue rotation about the grey axis). Lip boxes follow
the flip and the warp (:func:`augment_boxes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """On-device augmentation; every pair gets one draw applied to source and driving alike.

    Factors are drawn uniformly in [1 - x, 1 + x]; ``hue_deg`` rotates RGB about the grey axis by up to
    that many degrees; ``scale`` and ``shift_frac`` (fraction of the image side) drive one affine warp
    of all five channels.
    """

    flip_prob: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue_deg: float = 6.0
    scale: float = 0.05
    shift_frac: float = 0.04
    opus_prob: float = 1.0  # share of samples whose mel is an Opus round trip (else clean)


@dataclass(frozen=True)
class AugmentDraw:
    """Per-pair augmentation parameters (all (B,) or (B, 2) float32 CPU tensors)."""

    flip: Tensor  # bool
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue_rad: Tensor
    scale: Tensor
    shift: Tensor  # (B, 2) in normalised [-1, 1] units


def augment_draw(augment: AugmentConfig | None, u: Tensor) -> AugmentDraw:
    """Per-pair parameters from uniform draws.

    Args:
        augment: the settings; None gives the identity draw (no flip, factors 1, no warp).
        u: (B, 8) float32 uniform in [-1, 1) (flip, brightness, contrast, saturation, hue, scale, shift x, y).
    """
    a = augment
    if a is None:
        a = AugmentConfig(flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue_deg=0.0,
                          scale=0.0, shift_frac=0.0, opus_prob=0.0)
    return AugmentDraw(
        flip=(u[:, 0] + 1) / 2 < a.flip_prob,
        brightness=1 + a.brightness * u[:, 1], contrast=1 + a.contrast * u[:, 2],
        saturation=1 + a.saturation * u[:, 3], hue_rad=math.radians(a.hue_deg) * u[:, 4],
        scale=1 + a.scale * u[:, 5], shift=2 * a.shift_frac * u[:, 6:8])


def apply_augment(draw: AugmentDraw, *images: Tensor) -> tuple[Tensor, ...]:
    """Apply one draw per pair to every image batch alike (all five channels warped, RGB jittered).

    Args:
        draw: the batch's augmentation parameters.
        images: (B, 5, H, W) batches of the same pairs (source, driving, ...).

    Returns:
        the augmented batches, in order.
    """
    b = images[0].shape[0]
    dev = images[0].device
    n = len(images)

    def twice(t: Tensor) -> Tensor:  # (B, ...) -> (nB, ...) on the device
        return torch.cat([t] * n, 0).to(dev)

    x = torch.cat(images, 0)  # (nB, 5, H, W)
    flip = twice(draw.flip)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    # affine: output pixel p samples input at p / scale + shift (zoom in for scale > 1)
    inv = 1.0 / twice(draw.scale)  # (nB,)
    shift = twice(draw.shift)  # (nB, 2)
    zero = torch.zeros_like(inv)
    theta = torch.stack([torch.stack([inv, zero, shift[:, 0]], -1),
                         torch.stack([zero, inv, shift[:, 1]], -1)], 1)  # (nB, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (nB, H, W, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    rgb = _colour_jitter(x[:, :3], twice(draw.brightness), twice(draw.contrast), twice(draw.saturation),
                         twice(draw.hue_rad))
    x = torch.cat([rgb, x[:, 3:].clamp(0, 1)], 1)
    return tuple(x[k * b:(k + 1) * b] for k in range(n))


def augment_boxes(boxes: Tensor, draw: AugmentDraw) -> Tensor:
    """Boxes after the draw's flip, then zoom/shift (what :func:`apply_augment` does to the image).

    Args:
        boxes: (B, 4) float32 (x0, y0, x1, y1) in [-1, 1] grid coordinates (align_corners=False).
        draw: the batch's augmentation parameters.

    Returns:
        (B, 4) float32 boxes in the same coordinates of the augmented frame.
    """
    flip = draw.flip.bool()
    x0 = torch.where(flip, -boxes[:, 2], boxes[:, 0])
    x1 = torch.where(flip, -boxes[:, 0], boxes[:, 2])
    out = torch.stack([x0, boxes[:, 1], x1, boxes[:, 3]], 1)
    # the augmentation's output point p samples the input at q = p / scale + shift: p = (q - shift) * scale
    scale = draw.scale.float()[:, None]
    shift = draw.shift.float().repeat(1, 2)  # (B, 4) as (sx, sy, sx, sy)
    return (out - shift) * scale


def _colour_jitter(rgb: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor,
                   hue_rad: Tensor) -> Tensor:
    """Brightness, contrast, saturation and a hue rotation about the grey axis.

    Args:
        rgb: (N, 3, H, W) in [0, 1].
        brightness, contrast, saturation: (N,) factors (1 = unchanged).
        hue_rad: (N,) rotation angle in radians.

    Returns:
        (N, 3, H, W) in [0, 1].
    """
    luma = torch.tensor(_LUMA, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    x = rgb * brightness.view(-1, 1, 1, 1)
    mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)  # (N, 1, 1, 1) mean grey
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
    grey = (x * luma).sum(1, keepdim=True)  # (N, 1, H, W)
    x = (x - grey) * saturation.view(-1, 1, 1, 1) + grey
    # Rodrigues rotation about k = (1, 1, 1) / sqrt(3): R = cos I + sin [k]x + (1 - cos) k k^T
    cos, sin = torch.cos(hue_rad), torch.sin(hue_rad)  # (N,)
    k = 1.0 / math.sqrt(3.0)
    eye = torch.eye(3, device=rgb.device, dtype=rgb.dtype)
    cross = torch.tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]], device=rgb.device, dtype=rgb.dtype)
    outer = torch.full((3, 3), k * k, device=rgb.device, dtype=rgb.dtype)
    rot = (cos.view(-1, 1, 1) * eye + sin.view(-1, 1, 1) * cross
           + (1 - cos).view(-1, 1, 1) * outer)  # (N, 3, 3)
    x = torch.einsum("nij,njhw->nihw", rot, x)
    return x.clamp(0.0, 1.0)
