"""Settings of a training run: ``TrainConfig``, what a call did (``TrainSummary``), the learning-rate
schedule, the device and its autocast.

Learning rate: Adam (betas 0.5, 0.999) for both networks at ``lr`` = 2e-4, linear warm-up over
``warmup_steps``, then "multistep" (x ``gamma`` at 60 % and 90 % of ``steps``, the paper's epochs 60 and 90
of 100) or "cosine" (to 1 % of ``lr``). The paper's 1e-3 is for a batch of 10 on 4 GPUs for 10 days; 2e-4
is the usual rate of FOMM-family models trained with GAN terms, safer with the small batches here. The
schedule follows the ``steps`` of the current call, so resuming with a larger ``steps`` stretches it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from avfr.codec.train.metrics import ValMetrics


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs beside the data (frozen; saved in every checkpoint)."""

    config: str = "small"  # name in avfr.codec.nets.model.CONFIGS
    batch_size: int = 4
    steps: int = 20000  # total optimiser steps (a resumed run continues up to this)
    lr: float = 2e-4  # generator
    lr_disc: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    schedule: str = "multistep"  # "multistep" | "cosine" | "constant"
    milestones: tuple[float, ...] = (0.6, 0.9)  # multistep: fractions of ``steps``
    gamma: float = 0.1  # multistep factor
    warmup_steps: int = 200  # linear lr warm-up
    gan_warmup_steps: int = 2000  # GAN weight 0 (and no discriminator step) before this step
    grad_clip: float = 0.0  # max global grad norm of the generator, 0 = off
    checkpoint_minutes: float = 15.0
    val_every: int = 0  # also validate every N steps (0: only at checkpoints and at the end)
    val_max_per_clip: int = 16
    val_stride: int = 5
    val_batch: int = 8
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    amp: bool = True  # bf16 autocast of training steps: CUDA, and CPUs with native bf16 (`cpu_bf16_native`)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the generator loss (optional; the first steps compile)
    num_threads: int = 0  # torch CPU threads inside train(); 0 keeps torch's default
    causal: bool = False  # past-only mel windows
    use_audio: bool = True
    use_priors: bool = True
    augment: bool = True
    mouth_l1: float = 0.0  # weight of the auxiliary mouth-box L1 term (0: the paper's terms only)
    wire_noise: float = 0.0  # share of samples trained on the call's keypoint-wire error (7/7 bits, 0.75 steps)
    hold_kp: float = 0.0  # share of samples rendered from keypoints held 1..hold_max_lag frames (packet loss)
    hold_max_lag: int = 4  # frames (40 ms each)
    audio_mouth: float = 0.0  # weight of the audio encoder's mouth-shape head (training only; 0 = no head)
    audio_lr_mult: float = 1.0  # learning rate of the audio branch (encoders, mouth head, hold layers) x this
    freeze_detector: bool = False  # keypoint detector fixed (eval mode, no equivariance): the sender graph stays
    init_from: str = ""  # a new run starts from this checkpoint's G and D weights, or a weights file's G (fine-tuning)
    init_detector: str = ""  # a new run takes its keypoint detector from this checkpoint / weights file (any config
    # with the same detector, e.g. small's for "wide"); needs freeze_detector: the keypoint stream stays the same
    snapshot_every: int = 0  # also write the generator alone (fp16) as weights-step<N>.pt every N steps; 0 = off
    time_limit_min: float = 0.0  # stop cleanly (checkpoint written) before this wall-clock budget; 0 = none

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.steps < 0 or self.log_every < 1:
            raise ValueError("batch_size and log_every must be >= 1, steps >= 0")
        if self.schedule not in ("multistep", "cosine", "constant"):
            raise ValueError(f"schedule {self.schedule!r}: expected multistep, cosine or constant")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device {self.device!r}: expected auto, cpu or cuda")
        if not 0.0 <= self.hold_kp <= 1.0 or self.hold_max_lag < 1:
            raise ValueError("hold_kp must be in [0, 1] and hold_max_lag >= 1")
        if self.init_detector and not self.freeze_detector:
            raise ValueError("init_detector needs freeze_detector (the detector must stay the one the sender runs)")
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0")


@dataclass(frozen=True)
class TrainSummary:
    """What a call of :func:`avfr.codec.train.loop.train` did."""

    step: int  # global step reached
    steps_run: int  # steps in this call
    stopped_by: str  # "steps" | "time_limit" | "stop_after"
    wall_s: float  # cumulative wall time of the run, all calls
    train_s: float  # time spent in training steps in this call
    samples_per_s: float  # training throughput of this call (validation and checkpoints excluded)
    losses: dict[str, float]  # last logged loss terms
    val: ValMetrics | None  # last validation
    best_psnr_db: float
    device: str
    out_dir: str


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): warm-up, then the schedule."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.schedule == "constant" or cfg.steps <= 0:
        return warm
    if cfg.schedule == "multistep":
        passed = sum(step >= round(m * cfg.steps) for m in cfg.milestones)
        return warm * cfg.gamma**passed
    t = min(1.0, max(0.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))
    return warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def resolve_device(name: str) -> torch.device:
    """The torch device of a name; "auto" is cuda when available, else cpu.

    Raises:
        ValueError: "cuda" asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    return torch.device(name)


@functools.cache  # asked twice per training step; the CPU does not change
def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively in oneDNN (AVX512-BF16 or AMX): there, bf16 autocast makes a CPU
    training step 1.36x faster (`small`, batch 8, one thread, every loss on: 2.45 -> 1.80 s; the CPU fine-tune
    recipe: 2.1 -> 1.55 s); elsewhere it would be emulated (slower than fp32), so it stays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe, or without oneDNN
        return False


def autocast_for(device: torch.device, cfg: TrainConfig, cpu: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when ``cfg.amp``: on CUDA, and on a CPU with native bf16 unless ``cpu`` is False (validation
    keeps CPU figures in fp32, comparable with every earlier run); a no-op context otherwise. The losses that
    need the precision (SSIM) turn it off inside."""
    if cfg.amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if cfg.amp and cpu and device.type == "cpu" and cpu_bf16_native():
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
