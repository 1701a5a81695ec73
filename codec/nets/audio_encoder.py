"""Audio encoders of AVFR-GAN §3 ("Audio-conditioned features", "Audio-Visual Attention").

- :class:`AudioEncoder`: 2D CNN on the 200 ms log-mel window -> Enc_aud (B, c, h/4, w/4).
- :class:`AttentionEncoder`: a second 2D CNN on the same window -> Enc_query (B, c_motion, 1, 1).

An 80x19 mel window has no image layout, so Enc_aud is built from a pooled audio code projected to an
8x8 learned map and bilinearly upsampled to 64x64: the network can place audio evidence where the mouth
usually is, at negligible cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AudioEncoderConfig:
    n_mels: int = 80
    n_frames: int = 19  # mel columns in the 200 ms window (10 ms hop)
    widths: tuple[int, ...] = (32, 64, 128, 256)  # conv widths; every conv after the first has stride 2
    feature_channels: int = 64  # c of Enc_aud
    query_channels: int = 256  # c of Enc_query, must equal the channels of Enc_motion
    map_size: int = 8  # Enc_aud is projected to map_size^2 then upsampled
    out_size: int = 64  # h/4
    mel_offset: float = 6.0  # network input = (log_mel + mel_offset) * mel_scale, roughly zero-mean
    mel_scale: float = 0.25
    mouth_head: bool = False  # training-only head: Enc_aud -> the mouth's shape (``AudioEncoder.mouth``)


MOUTH_MEASURES = 3  # inner-lip gap, outer-lip gap, mouth width; % of the face height
# their mean and standard deviation over the training split's frames with speech (5,750 frames): the head
# predicts standardised values, so that it starts at the mean and its loss is in standard deviations
MOUTH_MEAN_PCT = (3.63, 13.04, 28.43)
MOUTH_STD_PCT = (2.94, 3.27, 3.37)


class MelTrunk(nn.Module):
    """Conv stack on the mel window: (B, 1, 80, 19) -> (B, widths[-1]) audio code."""

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(config.widths):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.convs = nn.Sequential(*layers)
        h, w = config.n_mels, config.n_frames
        for _ in range(len(config.widths) - 1):
            h, w = (h + 1) // 2, (w + 1) // 2
        # a full-size depthwise "valid" conv pools the remaining (h, w) map with position-aware weights
        self.pool = nn.Conv2d(cin, cin, (h, w), groups=cin)
        self.out_channels = cin

    def forward(self, mel: Tensor) -> Tensor:
        c = self.config
        x = (mel + c.mel_offset) * c.mel_scale  # (B, 1, 80, 19)
        x = self.convs(x)  # (B, w, 10, 3) for 4 convs
        return F.relu(self.pool(x)).flatten(1)  # (B, w)


class AudioEncoder(nn.Module):
    """Enc_aud: mel (B, 1, 80, 19) -> (B, feature_channels, 64, 64)."""

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = MelTrunk(config)
        self.project = nn.Linear(self.trunk.out_channels, config.feature_channels * config.map_size**2)
        # auxiliary supervision (training only, not in the graphs): the speech alone has to tell the mouth's
        # shape from Enc_aud, so that Enc_aud carries it when the keypoints cannot (held keypoints)
        self.mouth_head = (nn.Linear(config.feature_channels * config.map_size**2, MOUTH_MEASURES)
                           if config.mouth_head else None)

    def _map(self, mel: Tensor) -> Tensor:
        c = self.config
        code = self.trunk(mel)  # (B, w)
        return self.project(code).view(-1, c.feature_channels, c.map_size, c.map_size)  # (B, c, 8, 8)

    def forward(self, mel: Tensor) -> Tensor:
        c = self.config
        x = F.interpolate(self._map(mel), size=(c.out_size, c.out_size), mode="bilinear", align_corners=False)
        return F.leaky_relu(x, 0.2)  # (B, c, 64, 64)

    def mouth(self, mel: Tensor) -> Tensor:
        """The mouth's shape read from Enc_aud: mel (B, 1, 80, 19) -> (B, 3) inner-lip gap, outer-lip gap and
        width in % of the face height (``mouth_head`` configs only).

        Raises:
            RuntimeError: the config has no mouth head.
        """
        if self.mouth_head is None:
            raise RuntimeError("this audio encoder has no mouth head (AudioEncoderConfig.mouth_head)")
        z = self.mouth_head(F.leaky_relu(self._map(mel), 0.2).flatten(1))  # (B, 3) standardised
        return z * z.new_tensor(MOUTH_STD_PCT) + z.new_tensor(MOUTH_MEAN_PCT)


class AttentionEncoder(nn.Module):
    """Enc_query: mel (B, 1, 80, 19) -> (B, query_channels, 1, 1)."""

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = MelTrunk(config)
        self.project = nn.Linear(self.trunk.out_channels, config.query_channels)

    def forward(self, mel: Tensor) -> Tensor:
        q = self.project(self.trunk(mel))  # (B, c)
        return q[:, :, None, None]  # (B, c, 1, 1)
