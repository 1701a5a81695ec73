"""AVFR-GAN generator side as one module: configs, :class:`AvfrModel`, weight files.

``AvfrModel`` = keypoint detector (M_kp) + dense motion + audio / attention encoders + identity-aware
generator. The discriminator is separate (:mod:`avfr.codec.nets.discriminator`) and never shipped.

Named configs (:data:`CONFIGS`):

- ``"small"``: narrow widths sized for a 2-core CPU receiver (ONNX Runtime) and a few hours of training.
- ``"wide"``: small's keypoint detector with a ~4x wider dense motion and generator, for receivers with a GPU
  (the same keypoint stream: trained with small's detector frozen, ``train --init-detector``).
- ``"paper"``: FOMM / paper-scale widths (K=10, 256 px); builds, trains a step and exports, no weights.

Ablation switches: ``use_audio=False`` builds no audio encoders (Enc_aud and Enc_attn are zeros, the
``mel`` input is ignored); ``use_priors=False`` zeroes the mesh and mask channels of every 5-channel input
(FOMM-like, RGB only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avfr.codec.nets.audio_encoder import AttentionEncoder, AudioEncoder, AudioEncoderConfig
from avfr.codec.nets.dense_motion import DenseMotionConfig, DenseMotionNetwork
from avfr.codec.nets.discriminator import DiscriminatorConfig
from avfr.codec.nets.generator import GeneratorConfig, IdentityAwareGenerator
from avfr.codec.nets.keypoint_detector import KeypointDetector, KeypointDetectorConfig
from avfr.codec.nets.spade import SpadeConfig

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "avfr-weights/1"


@dataclass(frozen=True)
class AvfrConfig:
    name: str = "paper"
    num_kp: int = 10  # K
    image_size: int = 256
    use_audio: bool = True
    use_priors: bool = True
    kp: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    dense: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        if self.kp.num_kp != self.num_kp or self.dense.num_kp != self.num_kp:
            raise ValueError(
                f"num_kp mismatch: {self.num_kp}, kp {self.kp.num_kp}, dense {self.dense.num_kp}"
            )
        if self.image_size != 256 or self.kp.image_size != 256 or self.generator.image_size != 256:
            raise ValueError("only 256x256 frames are supported")
        if self.dense.size * 4 != self.image_size or self.audio.out_size != self.dense.size:
            raise ValueError("dense motion and Enc_aud must run at image_size / 4")
        if self.kp.image_size // self.kp.scale_factor != self.dense.size:
            raise ValueError("keypoint detector must run at image_size / 4")
        if self.audio.query_channels != self.generator.motion_channels:
            raise ValueError(
                f"Enc_query has {self.audio.query_channels} channels, "
                f"Enc_motion {self.generator.motion_channels}"
            )
        if self.audio.feature_channels != self.generator.audio_channels:
            raise ValueError("Enc_aud channels differ between audio encoder and generator")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (nested dataclasses become dicts, tuples lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AvfrConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown or malformed fields.
        """
        return _build_dataclass(cls, data)


_NESTED: dict[str, type] = {
    "kp": KeypointDetectorConfig,
    "dense": DenseMotionConfig,
    "audio": AudioEncoderConfig,
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "spade": SpadeConfig,
    "spade_hi": SpadeConfig,
}


def _build_dataclass(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(f"unknown field {cls.__name__}.{key}")
        if key in _NESTED:
            value = _build_dataclass(_NESTED[key], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _small_config() -> AvfrConfig:
    k = 10
    spade = SpadeConfig(hidden=16, label_kernel=3, param_kernel=3)
    spade_hi = SpadeConfig(hidden=16, label_kernel=3, param_kernel=1)
    return AvfrConfig(
        name="small",
        num_kp=k,
        kp=KeypointDetectorConfig(
            num_kp=k, block_expansion=24, num_blocks=5, max_features=192, head_kernel=5
        ),
        dense=DenseMotionConfig(num_kp=k, block_expansion=16, num_blocks=4, max_features=128, head_kernel=5),
        audio=AudioEncoderConfig(widths=(16, 32, 64, 128), feature_channels=16, query_channels=64),
        generator=GeneratorConfig(
            enc_channels=(8, 16, 64),
            enc_blocks=1,
            dec_channels=(64, 24, 12),
            dec_blocks=(1, 0, 0),
            audio_channels=16,
            spade=spade,
            spade_hi=spade_hi,
        ),
        discriminator=DiscriminatorConfig(
            scales=(0.5, 0.25), block_expansion=32, num_blocks=4, max_features=256
        ),
    )


def _wide_config() -> AvfrConfig:
    # a generator (and dense motion) for receivers with a GPU, on small's keypoint detector: the same keypoint
    # stream, so it is trained with that detector frozen (`train --init-detector`); per-frame MACs 6.85 G (small 1.31),
    # 6.3 M parameters: a training checkpoint (fp16, + discriminator) stays under the 16 MiB a GPU box returns
    small = _small_config()
    k = small.num_kp
    return dataclasses.replace(
        small,
        name="wide",
        audio=dataclasses.replace(small.audio, query_channels=128),  # = Enc_motion's channels
        dense=DenseMotionConfig(num_kp=k, block_expansion=32, num_blocks=4, max_features=192, head_kernel=5),
        generator=GeneratorConfig(
            enc_channels=(16, 32, 128),
            enc_blocks=2,
            dec_channels=(128, 48, 24),
            dec_blocks=(2, 1, 0),
            audio_channels=small.audio.feature_channels,
            spade=SpadeConfig(hidden=32, label_kernel=3, param_kernel=3),
            spade_hi=SpadeConfig(hidden=16, label_kernel=3, param_kernel=1),
        ),
    )


def _paper_config() -> AvfrConfig:
    # FOMM widths (kp: 32/1024/5 blocks, dense motion: 64/1024/5, generator 64-128-256 with 6 blocks at 64 px
    # counting encoder + decoder); SPADE uses a 64-channel label embedding to stay trainable.
    return AvfrConfig(
        name="paper",
        generator=GeneratorConfig(
            dec_blocks=(4, 1, 0), spade=SpadeConfig(hidden=64), spade_hi=SpadeConfig(hidden=64)
        ),
    )


CONFIGS: dict[str, AvfrConfig] = {"small": _small_config(), "wide": _wide_config(), "paper": _paper_config()}


# state-dict prefixes of AvfrModel's speech branch (the modules absent with use_audio=False)
SPEECH_PREFIXES: tuple[str, ...] = ("audio_encoder.", "attention_encoder.")


class AvfrModel(nn.Module):
    """AVFR-GAN generator M_Gen: (source, driving, mel) -> generated frame + keypoints.

    Inputs are 5-channel frames (R, G, B, mesh, mask) in [0, 1] at 256x256 and the 200 ms log-mel window
    (80 x 19) of the driving frame.
    """

    def __init__(self, config: AvfrConfig) -> None:
        super().__init__()
        self.config = config
        self.kp_detector = KeypointDetector(config.kp)
        self.dense_motion = DenseMotionNetwork(config.dense)
        self.generator = IdentityAwareGenerator(config.generator)
        self.audio_encoder: AudioEncoder | None = AudioEncoder(config.audio) if config.use_audio else None
        self.attention_encoder: AttentionEncoder | None = (
            AttentionEncoder(config.audio) if config.use_audio else None
        )
        prior_mask = torch.tensor(
            [1.0, 1.0, 1.0, 0.0 if not config.use_priors else 1.0, 0.0 if not config.use_priors else 1.0]
        )
        self.register_buffer("prior_mask", prior_mask.view(1, 5, 1, 1), persistent=False)

    def prepare(self, frame: Tensor) -> Tensor:
        """Apply the ``use_priors`` switch: (B, 5, H, W) -> (B, 5, H, W) (mesh/mask zeroed when off)."""
        if self.config.use_priors:
            return frame
        return frame * self.prior_mask.to(frame.dtype)

    def detect(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        """Sender: frame (B, 5, 256, 256) -> kp (B, K, 2), jac (B, K, 2, 2)."""
        return self.kp_detector(self.prepare(frame))

    def encode_source(
        self, source: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Receiver, once per source: source (B, 5, 256, 256) ->
        kp_source, jac_source, src64, src128, source, feat64, skip128, skip256 (see ``generator.encode``)."""
        source = self.prepare(source)
        kp, jac = self.kp_detector(source)
        return (kp, jac, *self.generator.encode(source))

    def render(
        self,
        kp_source: Tensor,
        jac_source: Tensor,
        src64: Tensor,
        src128: Tensor,
        source: Tensor,
        feat64: Tensor,
        skip128: Tensor,
        skip256: Tensor,
        kp_driving: Tensor,
        jac_driving: Tensor,
        mel: Tensor,
        held_frames: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Receiver, per frame: cached source tensors + driving kp/jac + mel (B, 1, 80, 19) [+ held_frames
        (B, 1): frames the keypoints have been held, ``generator.hold_input`` models] ->
        image (B, 3, 256, 256) in (0, 1), warped source RGB (B, 3, 256, 256), occlusion (B, 1, 64, 64)."""
        flow, occlusion = self.dense_motion(src64, kp_driving, jac_driving, kp_source, jac_source)
        b = kp_driving.shape[0]
        a = self.config.audio
        if self.audio_encoder is not None and self.attention_encoder is not None:
            enc_aud = self.audio_encoder(mel)  # (B, c, 64, 64)
            query = self.attention_encoder(mel)  # (B, c_motion, 1, 1)
        else:
            enc_aud = feat64.new_zeros(b, a.feature_channels, a.out_size, a.out_size)
            query = None
        image, warped_rgb = self.generator.decode(
            src64, src128, source, feat64, skip128, skip256, flow, occlusion, enc_aud, query, held_frames
        )
        return image, warped_rgb, occlusion

    def forward_train(
        self, source: Tensor, driving: Tensor, mel: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Like :meth:`forward` plus warped source RGB (B, 3, 256, 256) and occlusion (B, 1, 64, 64)."""
        kp_s, jac_s, *cache = self.encode_source(source)
        kp_d, jac_d = self.detect(driving)
        image, warped_rgb, occlusion = self.render(kp_s, jac_s, *cache, kp_d, jac_d, mel)
        return image, kp_s, jac_s, kp_d, jac_d, warped_rgb, occlusion

    def forward(
        self, source: Tensor, driving: Tensor, mel: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Reconstruct the driving frame from the source.

        Args:
            source: (B, 5, 256, 256) source frame F_s (+ mesh, mask) in [0, 1].
            driving: (B, 5, 256, 256) driving frame F_d.
            mel: (B, 1, 80, 19) log-mel window centred on the driving frame.

        Returns:
            generated (B, 3, 256, 256) in (0, 1), kp_source (B, K, 2), jac_source (B, K, 2, 2),
            kp_driving (B, K, 2), jac_driving (B, K, 2, 2).
        """
        image, kp_s, jac_s, kp_d, jac_d, _, _ = self.forward_train(source, driving, mel)
        return image, kp_s, jac_s, kp_d, jac_d


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model: AvfrModel, path: str | Path, half: bool = True) -> str:
    """Save config (JSON string) + state dict (tensors only) with ``torch.save``.

    Args:
        model: the model.
        path: output file (``.pt``).
        half: store floating tensors as float16 (loaded back as float32).

    Returns:
        SHA-256 hex digest of the written file.
    """
    state = {}
    for key, value in model.state_dict().items():
        t = value.detach().cpu()
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        state[key] = t.contiguous()
    payload = {"format": WEIGHTS_FORMAT, "config": json.dumps(model.config.to_dict()), "state_dict": state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    Path(path).write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    logger.info("saved %s (%d bytes, sha256 %s)", path, len(buf.getvalue()), digest[:8])
    return digest


def load_weights(
    path: str | Path, expected_sha256: str | None = None, map_location: str = "cpu"
) -> AvfrModel:
    """Load a file written by :func:`save_weights` (``torch.load(weights_only=True)``), in eval mode.

    Args:
        path: weight file.
        expected_sha256: when given, the file's SHA-256 hex digest (or a prefix of it, >= 8 chars) must match.
        map_location: torch device for the tensors.

    Returns:
        The model in eval mode, float32.

    Raises:
        ValueError: hash mismatch or malformed file.
        FileNotFoundError: no such file.
    """
    data = Path(path).read_bytes()
    if expected_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        exp = expected_sha256.lower()
        if len(exp) < 8 or not digest.startswith(exp):
            raise ValueError(f"{path}: sha256 {digest} does not match expected {expected_sha256}")
    payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not an {WEIGHTS_FORMAT} file")
    config = AvfrConfig.from_dict(json.loads(payload["config"]))
    model = AvfrModel(config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()
