"""Multi-scale patch discriminator M_Disc (AVFR-GAN §3 "Discriminator").

Conv2D stack with spectral normalisation and LeakyReLU, applied to the image at several scales; returns the
intermediate features of every scale (for feature matching) and the patch logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 3
    scales: tuple[float, ...] = (1.0, 0.5)  # image scales seen by the sub-discriminators (256 and 128 px)
    block_expansion: int = 64
    num_blocks: int = 4
    max_features: int = 512


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) -> features list (one per block), logits (B, 1, h, w)."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        blocks = []
        cin = config.in_channels
        for i in range(config.num_blocks):
            cout = min(config.max_features, config.block_expansion * 2**i)
            stride = 2 if i < config.num_blocks - 1 else 1
            blocks.append(spectral_norm(nn.Conv2d(cin, cout, 4, stride=stride, padding=1)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = spectral_norm(nn.Conv2d(cin, 1, 4, padding=1))

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        feats = []
        for block in self.blocks:
            x = F.leaky_relu(block(x), 0.2)
            feats.append(x)
        return feats, self.head(x)


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale (anti-aliased by area downsampling)."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.discs = nn.ModuleList([PatchDiscriminator(config) for _ in config.scales])

    def forward(self, image: Tensor) -> tuple[list[list[Tensor]], list[Tensor]]:
        """image (B, 3, 256, 256) in [0, 1] -> per-scale feature lists, per-scale logits (B, 1, h, w).

        Training only (lists are fine here: never exported).
        """
        feats, logits = [], []
        x = image * 2 - 1
        for scale, disc in zip(self.config.scales, self.discs, strict=True):
            xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="area")
            f, lg = disc(xs)
            feats.append(f)
            logits.append(lg)
        return feats, logits
