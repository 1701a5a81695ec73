"""What a training run trains: the generator and discriminator with the run's ablation switches, their losses
and their optimisers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from avfr.codec.train.config import TrainConfig


def build_networks(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """Generator (``AvfrModel``) and discriminator of ``cfg.config`` with the run's ablation switches.

    Raises:
        ValueError: unknown config name.
    """
    from avfr.codec.nets import CONFIGS, AvfrModel, MultiScaleDiscriminator

    if cfg.config not in CONFIGS:
        raise ValueError(f"unknown model config {cfg.config!r}: expected one of {sorted(CONFIGS)}")
    base = CONFIGS[cfg.config]
    model_cfg = dataclasses.replace(base, use_audio=cfg.use_audio, use_priors=cfg.use_priors,
                                    generator=dataclasses.replace(base.generator, hold_input=cfg.hold_kp > 0),
                                    audio=dataclasses.replace(base.audio, mouth_head=cfg.audio_mouth > 0))
    return AvfrModel(model_cfg), MultiScaleDiscriminator(model_cfg.discriminator)


def _audio_branch(name: str) -> bool:
    """Whether a generator parameter belongs to the audio branch (``TrainConfig.audio_lr_mult``)."""
    from avfr.codec.nets import SPEECH_PREFIXES

    return name.startswith(SPEECH_PREFIXES) or ".hold_" in name


def build_losses(model: nn.Module, disc: nn.Module, mouth_l1: float = 0.0, equivariance: bool = True,
                  wire_noise: float = 0.0, audio_mouth: float = 0.0) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Generator loss without GAN term (warm-up), with it, and the discriminator loss."""
    from avfr.codec.train.losses import DiscriminatorLoss, GeneratorLoss, LossWeights, WireNoise

    weights = LossWeights(mouth_l1=mouth_l1, audio_mouth=audio_mouth)
    if not equivariance:
        weights = dataclasses.replace(weights, equivariance_kp=0.0, equivariance_jac=0.0)
    no_gan = dataclasses.replace(weights, gan=0.0, feature_matching=0.0)  # no discriminator in the warm-up
    noise = WireNoise(prob=wire_noise) if wire_noise > 0 else None
    return (GeneratorLoss(model, disc, no_gan, noise), GeneratorLoss(model, disc, weights, noise),
            DiscriminatorLoss(disc))


def build_optimisers(cfg: TrainConfig, model: nn.Module,
                     disc: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam of the generator (groups scaled by their ``lr_mult``, see ``TrainConfig.audio_lr_mult``) and of the
    discriminator."""
    # the audio branch (encoders, their mouth head, the hold layers) may learn faster than the rest (one
    # group otherwise, as in runs made before the option, so that they resume)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr_mult": 1.0}]
    if cfg.audio_lr_mult != 1.0:
        named = list(model.named_parameters())
        groups = [{"params": [p for n, p in named if not _audio_branch(n)], "lr_mult": 1.0},
                  {"params": [p for n, p in named if _audio_branch(n)], "lr_mult": cfg.audio_lr_mult}]
    opt_g = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_disc, betas=cfg.betas)
    return opt_g, opt_d

