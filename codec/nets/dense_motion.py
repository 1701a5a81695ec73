"""FOMM dense motion network (AVFR-GAN §3: keypoint differences -> dense flow + occlusion) at 64x64."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avfr.codec.nets.hourglass import Hourglass
from avfr.codec.nets.keypoints import coordinate_grid, inverse_2x2, kp_to_gaussian, matmul_2x2, matvec_2x2


@dataclass(frozen=True)
class DenseMotionConfig:
    num_kp: int = 10
    in_channels: int = 5  # channels of the (downsampled) source image
    size: int = 64  # working resolution (h/4)
    block_expansion: int = 64
    num_blocks: int = 5
    max_features: int = 1024
    kp_variance: float = 0.01
    head_kernel: int = 7


class DenseMotionNetwork(nn.Module):
    """Sparse motions from keypoints (first-order, with jacobians) -> soft masks -> dense flow + occlusion.

    For keypoint k, ``T_k(z) = kp_s + J_s J_d^-1 (z - kp_d)`` maps a driving-frame coordinate to the source;
    k = 0 is the identity (background). The hourglass sees heatmap differences and the source deformed by each
    T_k and predicts K+1 softmax masks and an occlusion map.
    """

    def __init__(self, config: DenseMotionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        in_ch = (c.num_kp + 1) * (c.in_channels + 1)  # heatmaps + deformed sources
        self.hourglass = Hourglass(in_ch, c.block_expansion, c.num_blocks, c.max_features)
        pad = c.head_kernel // 2
        self.mask_head = nn.Conv2d(self.hourglass.out_channels, c.num_kp + 1, c.head_kernel, padding=pad)
        self.occlusion_head = nn.Conv2d(self.hourglass.out_channels, 1, c.head_kernel, padding=pad)

    def sparse_motions(
        self, kp_driving: Tensor, jac_driving: Tensor, kp_source: Tensor, jac_source: Tensor
    ) -> Tensor:
        """(B, K, 2), (B, K, 2, 2) x2 -> (B, K+1, h, w, 2) sampling grids into the source."""
        s = self.config.size
        b, k, _ = kp_driving.shape
        grid = coordinate_grid((s, s), kp_driving)  # (h, w, 2)
        jac = matmul_2x2(jac_source, inverse_2x2(jac_driving))  # (B, K, 2, 2)
        rel = grid[None, None] - kp_driving[:, :, None, None, :]  # (B, K, h, w, 2)
        motion = matvec_2x2(jac[:, :, None, None], rel) + kp_source[:, :, None, None, :]  # (B, K, h, w, 2)
        identity = grid[None, None].expand(b, 1, s, s, 2)
        return torch.cat([identity, motion], dim=1)  # (B, K+1, h, w, 2)

    def forward(
        self, source: Tensor, kp_driving: Tensor, jac_driving: Tensor, kp_source: Tensor, jac_source: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Dense motion from keypoints.

        Args:
            source: (B, C, 64, 64) source image at the working resolution.
            kp_driving, kp_source: (B, K, 2) in [-1, 1].
            jac_driving, jac_source: (B, K, 2, 2).

        Returns:
            flow (B, 64, 64, 2) sampling grid into the source, occlusion (B, 1, 64, 64) in [0, 1].
        """
        c = self.config
        s = c.size
        b = source.shape[0]
        k1 = c.num_kp + 1
        kp_driving = kp_driving.float()
        kp_source = kp_source.float()
        heat = kp_to_gaussian(kp_driving, (s, s), c.kp_variance) - kp_to_gaussian(
            kp_source, (s, s), c.kp_variance
        )  # (B, K, h, w)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1)  # (B, K+1, h, w)
        motions = self.sparse_motions(kp_driving, jac_driving.float(), kp_source, jac_source.float())
        src_rep = source.unsqueeze(1).expand(b, k1, c.in_channels, s, s).reshape(b * k1, c.in_channels, s, s)
        deformed = F.grid_sample(
            src_rep,
            motions.reshape(b * k1, s, s, 2).to(source.dtype),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        ).view(b, k1, c.in_channels, s, s)  # (B, K+1, C, h, w)
        x = torch.cat([heat.unsqueeze(2).to(deformed.dtype), deformed], dim=2).view(b, -1, s, s)
        feat = self.hourglass(x)  # (B, be + in_ch, h, w)
        mask = F.softmax(self.mask_head(feat).float(), dim=1)  # (B, K+1, h, w)
        flow = (mask.unsqueeze(-1) * motions).sum(1)  # (B, h, w, 2)
        occlusion = torch.sigmoid(self.occlusion_head(feat).float())  # (B, 1, h, w)
        return flow, occlusion
