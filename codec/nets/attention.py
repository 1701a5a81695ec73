"""Audio-visual attention of AVFR-GAN (paper eq. 2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def audio_visual_attention(query: Tensor, motion: Tensor) -> Tensor:
    """Enc_attn(i, j) = sigmoid(Enc_query . Enc_motion(i, j) / sqrt(c)).

    The 1/sqrt(c) factor is ours (not in eq. 2): it keeps the dot product of c-dimensional features O(1) at
    initialisation, as in scaled dot-product attention, so the sigmoid does not saturate and still gets
    gradient early in training.

    Args:
        query: (B, c, 1, 1) Enc_query from the attention encoder.
        motion: (B, c, h, w) Enc_motion (warped identity features).

    Returns:
        (B, 1, h, w) attention map in (0, 1).
    """
    c = motion.shape[1]
    if query.shape[1] != c:
        raise ValueError(f"query has {query.shape[1]} channels, motion features have {c}")
    return torch.sigmoid((query * motion).sum(1, keepdim=True) / math.sqrt(c))
