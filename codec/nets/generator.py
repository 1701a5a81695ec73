"""Identity-aware generator of AVFR-GAN (§3 "Identity-Aware Generator").

Two halves, split so the receiver runs the first once per call and the second per frame:

- :meth:`IdentityAwareGenerator.encode` (identity encoder, once per source image):
  source (B, 5, 256, 256) -> source pyramid (64, 128 px), identity features at 64x64 and skips at 128 / 256.
- :meth:`IdentityAwareGenerator.decode` (per frame): dense flow + occlusion + audio ->
  Enc_motion = warp(identity features, flow) * occlusion, Enc_attn (eq. 2),
  Enc_dec = concat(Enc_motion, Enc_aud, Enc_attn) joined with the identity features, then a UNet-shaped
  decoder 64 -> 128 -> 256 whose skips are the encoder skips *warped by the resized flow* (unwarped skips
  would copy the source pose), SPADE blocks modulated by the warped source, and a residual on top of the
  pixel-space warped source:  F_gen = sigmoid(logit(warp(source_rgb)) + delta).
  ``delta`` starts near 0, so an untrained generator already outputs the warped source (fast convergence).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avfr.codec.nets.attention import audio_visual_attention
from avfr.codec.nets.hourglass import AntiAliasDownsample
from avfr.codec.nets.keypoints import resize_flow, warp
from avfr.codec.nets.spade import SpadeConfig, SpadeConvBlock, SpadeResBlock


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int = 5  # RGB + mesh + mask
    image_size: int = 256
    enc_channels: tuple[int, int, int] = (64, 128, 256)  # identity encoder widths at 256, 128, 64 px
    enc_blocks: int = 2  # SPADE res blocks of the identity encoder at 64 px
    dec_channels: tuple[int, int, int] = (256, 128, 64)  # decoder widths at 64, 128, 256 px
    dec_blocks: tuple[int, int, int] = (3, 1, 1)  # SPADE res blocks after each decoder stage (64, 128, 256)
    audio_channels: int = 64  # channels of Enc_aud
    hold_input: bool = False  # per-frame input: frames the receiver has held the keypoints (packet loss)
    spade: SpadeConfig = field(default_factory=SpadeConfig)
    spade_hi: SpadeConfig = field(default_factory=SpadeConfig)  # SPADE used at 128 / 256 px

    @property
    def motion_channels(self) -> int:
        """c of Enc_motion (= identity features at 64 px)."""
        return self.enc_channels[2]


HOLD_MAX_FRAMES = 8  # held_frames is clamped to this (longer holds look like 8 frames to the network)
HOLD_SCALE_FRAMES = 4.0  # held_frames / this is the network's input


def _logit(p: Tensor, eps: float = 1e-3) -> Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


class IdentityAwareGenerator(nn.Module):
    """Identity encoder + UNet decoder with warped skips, SPADE blocks and a pixel-warp residual output."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        e256, e128, e64 = c.enc_channels
        d64, d128, d256 = c.dec_channels
        lab = c.in_channels + 1  # label = warped source (5) + occlusion (1)
        # identity encoder
        self.down2 = AntiAliasDownsample(c.in_channels, 2)
        self.down4 = AntiAliasDownsample(c.in_channels, 4)
        self.enc256 = nn.Conv2d(c.in_channels, e256, 3, padding=1)
        self.enc128 = nn.Conv2d(e256, e128, 3, stride=2, padding=1)
        self.enc64 = nn.Conv2d(e128, e64, 3, stride=2, padding=1)
        self.enc_blocks = nn.ModuleList(
            [SpadeResBlock(e64, e64, c.in_channels, c.spade) for _ in range(c.enc_blocks)]
        )
        # decoder at 64 px: Enc_dec (motion + audio + attention) joined with the identity features
        self.fuse = nn.Conv2d(e64 + c.audio_channels + 1 + e64, d64, 1)
        if c.hold_input:
            # zero init: a model fine-tuned with this input starts exactly where its checkpoint was
            self.hold_fuse = nn.Linear(1, d64)  # hold -> bias of Enc_dec
            self.hold_audio_gain = nn.Linear(1, c.audio_channels, bias=False)  # hold -> weight of Enc_aud
            for layer in (self.hold_fuse, self.hold_audio_gain):
                nn.init.zeros_(layer.weight)
            nn.init.zeros_(self.hold_fuse.bias)
        self.dec64 = nn.ModuleList([SpadeResBlock(d64, d64, lab, c.spade) for _ in range(c.dec_blocks[0])])
        # 128 px stage
        self.reduce128 = nn.Conv2d(d64, d128, 1)
        self.up128 = SpadeConvBlock(d128 + e128, d128, lab, c.spade_hi)
        self.dec128 = nn.ModuleList(
            [SpadeResBlock(d128, d128, lab, c.spade_hi) for _ in range(c.dec_blocks[1])]
        )
        # 256 px stage (+ warped source RGB + occlusion as inputs)
        self.reduce256 = nn.Conv2d(d128, d256, 1)
        self.up256 = SpadeConvBlock(d256 + e256 + 4, d256, lab, c.spade_hi)
        self.dec256 = nn.ModuleList(
            [SpadeResBlock(d256, d256, lab, c.spade_hi) for _ in range(c.dec_blocks[2])]
        )
        self.out = nn.Conv2d(d256, 3, 3, padding=1)
        # near-zero init: the untrained generator outputs the warped source, and (unlike an exact zero)
        # gradients reach the decoder, audio and attention branches from the first step
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Identity encoder (once per source image).

        Args:
            source: (B, 5, 256, 256) in [0, 1].

        Returns:
            src64 (B, 5, 64, 64), src128 (B, 5, 128, 128), source (B, 5, 256, 256),
            feat64 (B, e64, 64, 64), skip128 (B, e128, 128, 128), skip256 (B, e256, 256, 256).
        """
        src128 = self.down2(source)  # (B, 5, 128, 128)
        src64 = self.down4(source)  # (B, 5, 64, 64)
        skip256 = F.leaky_relu(self.enc256(source), 0.2)  # (B, e256, 256, 256)
        skip128 = F.leaky_relu(self.enc128(skip256), 0.2)  # (B, e128, 128, 128)
        feat64 = F.leaky_relu(self.enc64(skip128), 0.2)  # (B, e64, 64, 64)
        for block in self.enc_blocks:
            feat64 = block(feat64, src64)
        return src64, src128, source, feat64, skip128, skip256

    def decode(
        self,
        src64: Tensor,
        src128: Tensor,
        source: Tensor,
        feat64: Tensor,
        skip128: Tensor,
        skip256: Tensor,
        flow: Tensor,
        occlusion: Tensor,
        enc_aud: Tensor,
        query: Tensor | None,
        held_frames: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Per-frame decoder.

        Args:
            src64 .. skip256: the outputs of :meth:`encode`.
            flow: (B, 64, 64, 2) sampling grid into the source, [-1, 1].
            occlusion: (B, 1, 64, 64) in [0, 1].
            enc_aud: (B, audio_channels, 64, 64) Enc_aud (zeros when audio is off).
            query: (B, e64, 1, 1) Enc_query, or None when audio is off (Enc_attn is then zeros).
            held_frames: (B, 1) frames for which the driving keypoints have been held (0: the frame's own;
                used by ``hold_input`` models only, None = 0).

        Returns:
            image (B, 3, 256, 256) in (0, 1), warped_rgb (B, 3, 256, 256) the pixel-space warped source.
        """
        size = self.config.image_size
        dt = feat64.dtype
        flow = flow.to(dt)
        occlusion = occlusion.to(dt)
        # 64 px: Enc_motion, Enc_attn, Enc_dec
        e64 = feat64.shape[1]
        warped64 = warp(torch.cat([feat64, src64], dim=1), flow)  # one grid_sample per resolution
        motion = warped64[:, :e64] * occlusion  # (B, e64, 64, 64)  Enc_motion
        if query is None:
            attn = torch.zeros_like(occlusion)  # (B, 1, 64, 64)
        else:
            attn = audio_visual_attention(query.to(dt), motion)  # (B, 1, 64, 64)  Enc_attn
        label64 = torch.cat([warped64[:, e64:], occlusion], dim=1)  # (B, 6, 64, 64)
        enc_aud = enc_aud.to(dt)
        hold = None
        if self.config.hold_input:
            if held_frames is None:
                held_frames = feat64.new_zeros(feat64.shape[0], 1)
            hold = (held_frames.to(dt).clamp(0, HOLD_MAX_FRAMES) / HOLD_SCALE_FRAMES).view(-1, 1)  # (B, 1)
            enc_aud = enc_aud * (1 + self.hold_audio_gain(hold)[:, :, None, None])
        x = self.fuse(torch.cat([motion, enc_aud, attn, feat64], dim=1))  # (B, d64, 64, 64)
        if hold is not None:
            x = x + self.hold_fuse(hold)[:, :, None, None]
        for block in self.dec64:
            x = block(x, label64)
        # 128 px
        flow128 = resize_flow(flow, (size // 2, size // 2))  # (B, 128, 128, 2)
        occ128 = F.interpolate(occlusion, size=(size // 2, size // 2), mode="bilinear", align_corners=False)
        e128 = skip128.shape[1]
        warped128 = warp(torch.cat([skip128, src128], dim=1), flow128)  # (B, e128 + 5, 128, 128)
        label128 = torch.cat([warped128[:, e128:], occ128], dim=1)  # (B, 6, 128, 128)
        x = F.interpolate(self.reduce128(x), scale_factor=2.0, mode="nearest")  # (B, d128, 128, 128)
        x = self.up128(torch.cat([x, warped128[:, :e128] * occ128], dim=1), label128)
        for block in self.dec128:
            x = block(x, label128)
        # 256 px
        flow256 = resize_flow(flow, (size, size))  # (B, 256, 256, 2)
        occ256 = F.interpolate(occlusion, size=(size, size), mode="bilinear", align_corners=False)
        e256 = skip256.shape[1]
        # border padding: the pixel-space warp repeats edge pixels instead of inventing black borders
        warped256 = warp(torch.cat([skip256, source], dim=1), flow256, padding_mode="border")
        warped_src = warped256[:, e256:]  # (B, 5, 256, 256)
        warped_rgb = warped_src[:, :3]
        label256 = torch.cat([warped_src, occ256], dim=1)  # (B, 6, 256, 256)
        x = F.interpolate(self.reduce256(x), scale_factor=2.0, mode="nearest")  # (B, d256, 256, 256)
        x = torch.cat([x, warped256[:, :e256] * occ256, warped_rgb, occ256], dim=1)
        x = self.up256(x, label256)
        for block in self.dec256:
            x = block(x, label256)
        delta = self.out(x).float()  # (B, 3, 256, 256)
        image = torch.sigmoid(_logit(warped_rgb.float()) + delta)
        return image, warped_rgb
