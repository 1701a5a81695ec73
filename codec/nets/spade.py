"""SPADE (spatially-adaptive normalisation, Park et al. 2019) blocks used by the identity-aware generator.

The "label" map that modulates the features is a picture of the (warped) source: its RGB, mesh and mask
channels plus the occlusion map, resized to the feature resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SpadeConfig:
    hidden: int = 128  # channels of the shared label embedding
    label_kernel: int = 3  # kernel of the shared label conv
    param_kernel: int = 3  # kernel of the gamma / beta convs (1 is much cheaper at 128/256 px)


class Spade(nn.Module):
    """x (B, C, H, W), label (B, L, H, W) -> InstanceNorm(x) * (1 + gamma(label)) + beta(label)."""

    def __init__(self, channels: int, label_channels: int, config: SpadeConfig) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Conv2d(
            label_channels, config.hidden, config.label_kernel, padding=config.label_kernel // 2
        )
        pk = config.param_kernel
        self.gamma = nn.Conv2d(config.hidden, channels, pk, padding=pk // 2)
        self.beta = nn.Conv2d(config.hidden, channels, pk, padding=pk // 2)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        h = F.relu(self.shared(label))  # (B, hidden, H, W)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SpadeResBlock(nn.Module):
    """SPADE residual block: (B, cin, H, W) -> (B, cout, H, W), two 3x3 convs, 1x1 learned shortcut."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, config: SpadeConfig) -> None:
        super().__init__()
        self.spade0 = Spade(in_channels, label_channels, config)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.spade1 = Spade(out_channels, label_channels, config)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        h = self.conv0(F.leaky_relu(self.spade0(x, label), 0.2))
        h = self.conv1(F.leaky_relu(self.spade1(h, label), 0.2))
        return self.shortcut(x) + h


class SpadeConvBlock(nn.Module):
    """One 3x3 conv -> SPADE -> LeakyReLU: (B, cin, H, W) -> (B, cout, H, W) (cheap block for 128/256 px)."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, config: SpadeConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.spade = Spade(out_channels, label_channels, config)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        return F.leaky_relu(self.spade(self.conv(x), label), 0.2)
