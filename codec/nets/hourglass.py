"""FOMM building blocks shared by the keypoint detector and the dense-motion network.

- :class:`Hourglass`: UNet-like encoder/decoder at 64x64 (conv3x3 + BatchNorm + ReLU, avg-pool down,
  nearest-upsample up, skip concatenation), output = decoder features concatenated with the input.
- :class:`AntiAliasDownsample`: fixed Gaussian blur + subsample (one strided depthwise conv), so the 64x64
  nets see an alias-free view of the 256x256 frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def hourglass_widths(block_expansion: int, num_blocks: int, max_features: int) -> list[int]:
    """Channels out of each encoder block of an :class:`Hourglass` (the decoder mirrors them)."""
    return [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]


class DownBlock(nn.Module):
    """conv3x3 -> BatchNorm -> ReLU -> 2x2 average pool: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock(nn.Module):
    """Nearest 2x upsample -> conv3x3 -> BatchNorm -> ReLU: (B, cin, H, W) -> (B, cout, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class Hourglass(nn.Module):
    """FOMM hourglass: (B, in_channels, H, W) -> (B, out_channels, H, W), H divisible by 2**num_blocks.

    Widths: encoder block i outputs ``min(max_features, block_expansion * 2**(i+1))``;
    ``out_channels = block_expansion + in_channels``.
    """

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = hourglass_widths(block_expansion, num_blocks, max_features)
        downs = []
        for i in range(num_blocks):
            downs.append(DownBlock(in_channels if i == 0 else widths[i - 1], widths[i]))
        self.down_blocks = nn.ModuleList(downs)
        ups = []
        for i in reversed(range(num_blocks)):
            cin = widths[i] if i == num_blocks - 1 else 2 * widths[i]
            cout = block_expansion if i == 0 else widths[i - 1]
            ups.append(UpBlock(cin, cout))
        self.up_blocks = nn.ModuleList(ups)
        self.out_channels = block_expansion + in_channels

    def forward(self, x: Tensor) -> Tensor:
        skips = [x]
        for block in self.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up_blocks:
            out = block(out)
            out = torch.cat([out, skips.pop()], dim=1)  # (B, c_up + c_skip, h, w)
        return out


class AntiAliasDownsample(nn.Module):
    """Gaussian blur + subsample by an integer factor as one strided depthwise conv.

    Output pixel i is centred on input position ``factor * i + (factor - 1) / 2`` (pixel-centre aligned,
    matching ``align_corners=False``). sigma = (factor - 1) / 2 as in FOMM's anti-aliasing.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"factor must be >= 2, got {factor}")
        sigma = (factor - 1) / 2.0
        half = int(math.ceil(2 * sigma))  # taps on each side of the centre
        size = factor + 2 * half  # even when factor is even: centred between pixels
        centre = (size - 1) / 2.0
        t = torch.arange(size, dtype=torch.float32) - centre
        k1 = torch.exp(-0.5 * (t / sigma) ** 2)
        k1 = k1 / k1.sum()
        kernel = (k1[:, None] * k1[None, :])[None, None].repeat(channels, 1, 1, 1)  # (C, 1, s, s)
        self.register_buffer("kernel", kernel, persistent=False)
        self.factor = factor
        self.padding = half  # centre of the taps lands on factor * i + (factor - 1) / 2
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H / factor, W / factor)."""
        x = F.pad(x, (self.padding,) * 4, mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.factor, groups=self.channels)
