"""FOMM keypoint detector M_kp on the 5-channel input (AVFR-GAN §3, eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avfr.codec.nets.hourglass import AntiAliasDownsample, Hourglass
from avfr.codec.nets.keypoints import coordinate_grid


@dataclass(frozen=True)
class KeypointDetectorConfig:
    num_kp: int = 10  # K in the paper
    in_channels: int = 5  # RGB + mesh + mask
    image_size: int = 256  # input frames are image_size x image_size
    scale_factor: int = 4  # the hourglass runs at image_size / scale_factor (64x64)
    block_expansion: int = 32
    num_blocks: int = 5
    max_features: int = 1024
    temperature: float = 0.1  # softmax temperature of the heatmaps
    head_kernel: int = 7  # kernel of the heatmap / jacobian heads (FOMM: 7)


class KeypointDetector(nn.Module):
    """FOMM keypoint detector (AVFR-GAN §3.2): image -> K keypoints + 2x2 jacobians.

    Keypoints are the expectation of a softmax heatmap over the 64x64 pixel-centre grid; jacobians are
    per-pixel 2x2 predictions averaged under the same heatmap (initialised to identity).
    """

    def __init__(self, config: KeypointDetectorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.down = AntiAliasDownsample(c.in_channels, c.scale_factor)
        self.hourglass = Hourglass(c.in_channels, c.block_expansion, c.num_blocks, c.max_features)
        pad = c.head_kernel // 2
        self.kp_head = nn.Conv2d(self.hourglass.out_channels, c.num_kp, c.head_kernel, padding=pad)
        self.jac_head = nn.Conv2d(self.hourglass.out_channels, 4 * c.num_kp, c.head_kernel, padding=pad)
        nn.init.zeros_(self.jac_head.weight)
        with torch.no_grad():
            self.jac_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(c.num_kp))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, 5, 256, 256) in [0, 1] -> kp (B, K, 2) in [-1, 1], jac (B, K, 2, 2)."""
        k = self.config.num_kp
        x = self.down(image)  # (B, 5, 64, 64)
        feat = self.hourglass(x)  # (B, be + 5, 64, 64)
        b, _, h, w = feat.shape
        logits = self.kp_head(feat).float()  # (B, K, 64, 64)
        heat = F.softmax(logits.view(b, k, h * w) / self.config.temperature, dim=-1)  # (B, K, h*w)
        grid = coordinate_grid((h, w), heat).view(1, 1, h * w, 2)  # (1, 1, h*w, 2)
        kp = (heat.unsqueeze(-1) * grid).sum(2)  # (B, K, 2)
        jac_map = self.jac_head(feat).float().view(b, k, 4, h * w)  # (B, K, 4, h*w)
        jac = (jac_map * heat.unsqueeze(2)).sum(-1).view(b, k, 2, 2)  # (B, K, 2, 2)
        return kp, jac
