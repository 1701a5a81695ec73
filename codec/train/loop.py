"""Training loop of AVFR-GAN: Adam on generator and discriminator, checkpoints, exact resume, validation.

One run lives in ``out_dir``:

- ``log.csv``: one row every ``log_every`` steps: step, wall_s (cumulative over resumed runs), lr, the mean of
  every loss term over those steps (generator terms as the loss returns them plus ``g_total``, discriminator
  terms ``d_*``, empty before the GAN starts), samples_per_s;
- ``val.csv``: one row per validation (step, wall_s, L1, PSNR, SSIM, LMD, see :mod:`avfr.codec.train.metrics`);
- ``ckpt-last.pt``: everything needed to continue bit for bit (model, discriminator, both optimisers, step,
  the RNG states of torch, numpy, python and the training set); written every ``checkpoint_minutes``, at
  the end and before a ``time_limit_min`` runs out;
- ``ckpt-best.pt``: the same, from the validation with the best dev PSNR so far;
- ``weights-best.pt``: the best model alone in :func:`avfr.codec.nets.model.save_weights` format (float16);
- ``weights-step<N>.pt``: the model alone at every ``snapshot_every``-th step (same format), when asked.

Learning rate: Adam (betas 0.5, 0.999) for both networks at ``lr`` = 2e-4, linear warm-up over
``warmup_steps``, then "multistep" (x ``gamma`` at 60 % and 90 % of ``steps``, the paper's epochs 60 and 90
of 100) or "cosine" (to 1 % of ``lr``). The paper's 1e-3 is for a batch of 10 on 4 GPUs for 10 days; 2e-4
is the usual rate of FOMM-family models trained with GAN terms, safer with the small batches here. The
schedule follows the ``steps`` of the current call, so resuming with a larger ``steps`` stretches it.

GAN: before ``gan_warmup_steps`` the generator trains on its reconstruction terms alone (GAN weight 0) and the
discriminator does not train (no compute spent on it); after, both train every step.

Validation (same identity, deterministic): for each dev clip, its first face frame is the source and up to
``val_max_per_clip`` face frames spread evenly over the clip (about one every ``val_stride``) are driven, with
the mel of the highest-bitrate Opus round trip (what a call hears). LMD needs mediapipe and is skipped (NaN,
logged once) where it is missing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from avfr.codec.data import ClipArrays
from avfr.codec.train.metrics import LandmarkDistance, ValMetrics, mediapipe_available, pixel_metrics, summarise
from avfr.codec.train.trainset import OPUS_BITRATES_BPS, AugmentConfig, PairIndex, TrainSet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "avfr-train-ckpt/1"
LAST_CKPT = "ckpt-last.pt"
BEST_CKPT = "ckpt-best.pt"
BEST_WEIGHTS = "weights-best.pt"
LOG_CSV = "log.csv"
VAL_CSV = "val.csv"
_MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up


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
    amp: bool = True  # bf16 autocast (CUDA only; CPU always runs fp32)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the generator loss (CUDA only, optional)
    num_threads: int = 0  # torch CPU threads inside train(); 0 keeps torch's default
    causal: bool = False  # past-only mel windows
    use_audio: bool = True
    use_priors: bool = True
    augment: bool = True
    mouth_l1: float = 0.0  # weight of the auxiliary mouth-box L1 term (0: the paper's terms only)
    wire_noise: float = 0.0  # share of samples trained on the call's keypoint-wire error (7/6 bits, 0.75 steps)
    hold_kp: float = 0.0  # share of samples rendered from keypoints held 1..hold_max_lag frames (packet loss)
    hold_max_lag: int = 4  # frames (40 ms each)
    audio_mouth: float = 0.0  # weight of the audio encoder's mouth-shape head (training only; 0 = no head)
    audio_lr_mult: float = 1.0  # learning rate of the audio branch (encoders, mouth head, hold layers) x this
    freeze_detector: bool = False  # keypoint detector fixed (eval mode, no equivariance): the sender graph stays
    init_from: str = ""  # a new run starts from this checkpoint's G and D weights, or a weights file's G (fine-tuning)
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
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0")


@dataclass(frozen=True)
class TrainSummary:
    """What a call of :func:`train` did."""

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


# ---------------------------------------------------------------------------------------- networks


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
    return name.startswith(("audio_encoder.", "attention_encoder.")) or ".hold_" in name


def _build_losses(model: nn.Module, disc: nn.Module, mouth_l1: float = 0.0, equivariance: bool = True,
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


# ---------------------------------------------------------------------------------------- RNG state


def _rng_state(device: torch.device, trainset: TrainSet) -> dict[str, Any]:
    """RNG states as tensors and plain lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "trainset": trainset.state_dict(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device, trainset: TrainSet) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    trainset.load_state_dict(state["trainset"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------------------- files


def snapshot_name(step: int) -> str:
    """File name of the generator snapshot at ``step`` (``TrainConfig.snapshot_every``)."""
    return f"weights-step{step:06d}.pt"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain containers only: ``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a training checkpoint of this format.
    """
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def _read_init(path: str | Path) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None, dict[str, Any], str]:
    """(generator state, discriminator state or None, {config, use_audio, use_priors}, description) of a
    training checkpoint or a weights file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: neither format.
    """
    import json

    from avfr.codec.nets import WEIGHTS_FORMAT

    if not Path(path).is_file():
        raise FileNotFoundError(f"--init {path}: no such file")
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError) on bad files
        raise ValueError(f"{path}: not a readable checkpoint or weights file ({type(exc).__name__})") from exc
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        saved = data["train_config"]
        settings = {k: saved[k] for k in ("config", "use_audio", "use_priors")}
        return data["model"], data["discriminator"], settings, f"step {int(data['step'])} of that run"
    if isinstance(data, dict) and data.get("format") == WEIGHTS_FORMAT:
        config = json.loads(data["config"])
        settings = {"config": config["name"], "use_audio": config["use_audio"], "use_priors": config["use_priors"]}
        return data["state_dict"], None, settings, "weights file: generator only, fresh discriminator"
    raise ValueError(f"{path}: neither an {CHECKPOINT_FORMAT} checkpoint nor an {WEIGHTS_FORMAT} file")


def model_from_checkpoint(path: str | Path) -> nn.Module:
    """The generator (``AvfrModel``, eval mode, CPU) stored in a training checkpoint."""
    from avfr.codec.nets import AvfrConfig, AvfrModel

    ckpt = load_checkpoint(path)
    model = AvfrModel(AvfrConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


class _CsvLog:
    """Append-only CSV whose header grows when new columns appear (the file is then rewritten)."""

    def __init__(self, path: Path, keep_up_to_step: int | None) -> None:
        self.path = path
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] = []
        if keep_up_to_step is not None and path.exists():  # resumed: keep the rows up to the checkpoint
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = [r for r in reader if int(float(r["step"])) <= keep_up_to_step]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n")
            if self.columns:
                writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def append(self, row: Mapping[str, float | int]) -> None:
        text = {k: (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in row.items()}
        self.rows.append(text)
        new = [k for k in text if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n").writerow(text)


# ---------------------------------------------------------------------------------------- validation


def _chunks(idx: PairIndex, size: int) -> Iterator[PairIndex]:
    n = idx.clip.shape[0]
    for start in range(0, n, size):
        sl = slice(start, start + size)
        yield PairIndex(clip=idx.clip[sl], source=idx.source[sl], driving=idx.driving[sl],
                        variant=idx.variant[sl])


@torch.no_grad()
def validate(model: nn.Module, devset: TrainSet, cfg: TrainConfig,
             lmd: LandmarkDistance | None) -> ValMetrics:
    """Same-identity reconstruction metrics on the fixed dev pairs (see module docstring).

    Args:
        model: ``AvfrModel`` (switched to eval for the call, then back).
        devset: the dev clips (no augmentation).
        cfg: validation sizes, amp.
        lmd: landmark distance, or None to skip LMD.
    """
    pairs = devset.fixed_pairs(cfg.val_max_per_clip, cfg.val_stride, devset.default_val_variant())
    was_training = model.training
    model.eval()
    l1s: list[float] = []
    psnrs: list[float] = []
    ssims: list[float] = []
    lmd_px: list[float] = []
    lmd_iod: list[float] = []
    mouth_px: list[float] = []
    try:
        for idx in _chunks(pairs, cfg.val_batch):
            src, drv, mel = devset.batch(idx)
            with _autocast(devset.device, cfg):
                generated = model(src, drv, mel)[0]
            generated = generated.float().clamp(0, 1)
            l1, psnr, ssim = pixel_metrics(generated, drv[:, :3])
            l1s += l1.tolist()
            psnrs += psnr.tolist()
            ssims += ssim.tolist()
            if lmd is not None:
                rgb = (generated * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B,H,W,3)
                pairs_cf = zip(idx.clip.tolist(), idx.driving.tolist(), strict=True)
                ref = np.stack([devset.landmarks[c][f] for c, f in pairs_cf])  # (B, 478, 2)
                px, iod, mouth = lmd(rgb, ref)
                lmd_px += px.tolist()
                lmd_iod += iod.tolist()
                mouth_px += mouth.tolist()
    finally:
        model.train(was_training)
    return summarise(l1s, psnrs, ssims, lmd_px, lmd_iod, mouth_px)


# ---------------------------------------------------------------------------------------- training


def _autocast(device: torch.device, cfg: TrainConfig) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and cfg.amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _as_float(terms: Mapping[str, Tensor | float]) -> dict[str, Tensor]:
    return {k: (v.detach().float() if isinstance(v, Tensor) else torch.tensor(float(v)))
            for k, v in terms.items()}


class _Trainer:
    """State of one ``train`` call (kept in one object so checkpointing sees everything)."""

    def __init__(self, cfg: TrainConfig, clips_train: Sequence[ClipArrays], clips_dev: Sequence[ClipArrays],
                 out_dir: Path, opus_mels: Mapping[str, Sequence[np.ndarray]] | None,
                 opus_bitrates_bps: Sequence[int]) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.device = resolve_device(cfg.device)
        cuda = self.device.type == "cuda"
        # seeds first: network initialisation draws from the global generators
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        augment = AugmentConfig() if cfg.augment else None
        self.trainset = TrainSet(clips_train, self.device, seed=cfg.seed, causal=cfg.causal,
                                 use_audio=cfg.use_audio, use_priors=cfg.use_priors, augment=augment,
                                 opus_mels=opus_mels, opus_bitrates_bps=opus_bitrates_bps)
        self.devset = (TrainSet(clips_dev, self.device, seed=cfg.seed, causal=cfg.causal,
                                use_audio=cfg.use_audio, use_priors=cfg.use_priors, augment=None,
                                opus_mels=opus_mels, opus_bitrates_bps=opus_bitrates_bps)
                       if clips_dev else None)
        self.model, self.disc = build_networks(cfg)
        self.model.to(self.device)
        self.disc.to(self.device)
        self.memory_format = torch.channels_last if (cuda and cfg.channels_last) else torch.contiguous_format
        if self.memory_format is torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.disc.to(memory_format=torch.channels_last)
        self.g_loss_warm, self.g_loss_gan, self.d_loss = _build_losses(
            self.model, self.disc, cfg.mouth_l1, equivariance=not cfg.freeze_detector, wire_noise=cfg.wire_noise,
            audio_mouth=cfg.audio_mouth)
        if cfg.freeze_detector:
            self.model.kp_detector.requires_grad_(False)
        for m in (self.g_loss_warm, self.g_loss_gan, self.d_loss):
            m.to(self.device)
        if cfg.compile and cuda:
            self.g_loss_warm = torch.compile(self.g_loss_warm)
            self.g_loss_gan = torch.compile(self.g_loss_gan)
        # the audio branch (encoders, their mouth head, the hold layers) may learn faster than the rest (one
        # group otherwise, as in runs made before the option, so that they resume)
        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters()), "lr_mult": 1.0}]
        if cfg.audio_lr_mult != 1.0:
            named = list(self.model.named_parameters())
            groups = [{"params": [p for n, p in named if not _audio_branch(n)], "lr_mult": 1.0},
                      {"params": [p for n, p in named if _audio_branch(n)], "lr_mult": cfg.audio_lr_mult}]
        self.opt_g = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_disc, betas=cfg.betas)
        self.step = 0
        self.wall_s_before = 0.0  # wall time of earlier calls of this run
        self.best_psnr = -math.inf
        self.last_val: ValMetrics | None = None
        self.lmd: LandmarkDistance | None = None
        if self.devset is not None:
            if mediapipe_available():
                self.lmd = LandmarkDistance()
            else:
                log.warning("mediapipe is not importable: validation skips LMD")

    # -------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "train_config": _jsonable(dataclasses.asdict(self.cfg)),
            "model_config": _jsonable(self.model.config.to_dict()),  # type: ignore[operator]
            "model": self.model.state_dict(),
            "discriminator": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "wall_s": self.wall_s_before + (time.perf_counter() - self.t0),
            "best_psnr_db": self.best_psnr,
            "val": self.last_val.as_row() if self.last_val is not None else {},
            "rng": _rng_state(self.device, self.trainset),
        }

    def load(self, ckpt: Mapping[str, Any]) -> None:
        self.check_compatible(ckpt["train_config"], ("config", "use_audio", "use_priors", "causal"), "checkpoint")
        self.model.load_state_dict(ckpt["model"])
        self.disc.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.step = int(ckpt["step"])
        self.wall_s_before = float(ckpt["wall_s"])
        self.best_psnr = float(ckpt["best_psnr_db"])
        _set_rng_state(ckpt["rng"], self.device, self.trainset)

    def check_compatible(self, saved: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
        """Raise ValueError when the saved run settings ``keys`` (a checkpoint's ``train_config``) differ from
        this run's."""
        for key in keys:
            if saved[key] != getattr(self.cfg, key):
                raise ValueError(f"{what} was trained with {key}={saved[key]!r}, this run asks "
                                 f"{getattr(self.cfg, key)!r}")

    def train_mode(self) -> None:
        """Both networks in training mode, except a frozen detector (its BatchNorm statistics stay fixed)."""
        self.model.train()
        if self.cfg.freeze_detector:
            self.model.kp_detector.eval()
        self.disc.train()

    def init_weights(self, path: Path) -> None:
        """Start from another run's weights (optimisers and step start fresh): a training checkpoint gives
        the generator and the discriminator, a :func:`avfr.codec.nets.model.save_weights` file (e.g. the shipped
        model) the generator alone (the discriminator keeps its fresh initialisation).

        Raises:
            ValueError: the file is neither, or holds another model config or ablation.
        """
        model_state, disc_state, settings, what = _read_init(path)
        self.check_compatible(settings, ("config", "use_audio", "use_priors"), f"--init {path}")
        # a run with --hold-kp / --audio-mouth may start from one without: the new layers keep their init
        # (load_state_dict copies fp16 tensors of a weights file into the fp32 parameters)
        missing, unexpected = self.model.load_state_dict(model_state, strict=False)
        if unexpected or any(".hold_" not in k and ".mouth_head." not in k for k in missing):
            raise ValueError(f"--init {path}: weights do not fit this model (missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]})")
        if disc_state is not None:
            self.disc.load_state_dict(disc_state)
        log.info("initialised from %s (%s)", path, what)

    def checkpoint(self, validate_first: bool, new_best: bool = False) -> None:
        """Validate (optionally), write ckpt-last.pt, and ckpt-best.pt / weights-best.pt on a new best.

        Args:
            validate_first: run the validation first (it decides ``new_best``).
            new_best: the model is a new best already (validated by the caller).
        """
        from avfr.codec.nets import save_weights

        if validate_first and self.devset is not None:
            new_best = self.run_validation()
        t = time.perf_counter()
        _atomic_save(self.state(), self.out_dir / LAST_CKPT)
        if new_best:
            shutil.copyfile(self.out_dir / LAST_CKPT, self.out_dir / (BEST_CKPT + ".tmp"))
            os.replace(self.out_dir / (BEST_CKPT + ".tmp"), self.out_dir / BEST_CKPT)
            save_weights(self.model, self.out_dir / BEST_WEIGHTS)  # type: ignore[arg-type]
        self.ckpt_s = time.perf_counter() - t
        log.info("step %d: checkpoint written (%.1f s)", self.step, self.ckpt_s)

    def snapshot(self) -> None:
        """Write the generator alone (fp16) as ``weights-step<step>.pt``: models at fixed steps (ablations
        compared at the same step whatever the time limit let each run reach)."""
        from avfr.codec.nets import save_weights

        save_weights(self.model, self.out_dir / snapshot_name(self.step))  # type: ignore[arg-type]

    def run_validation(self) -> bool:
        """Validate, log to val.csv; returns True when dev PSNR is a new best."""
        assert self.devset is not None
        t = time.perf_counter()
        metrics = validate(self.model, self.devset, self.cfg, self.lmd)
        self.train_mode()
        self.val_s = time.perf_counter() - t
        self.last_val = metrics
        self.val_log.append({"step": self.step, "wall_s": self.wall_s_before + time.perf_counter() - self.t0,
                             **metrics.as_row(), "val_s": self.val_s})
        log.info("step %d: dev L1 %.4f PSNR %.2f dB SSIM %.3f LMD %.2f px (mouth %.2f) (%d frames, %.1f s)",
                 self.step, metrics.l1, metrics.psnr_db, metrics.ssim, metrics.lmd_px, metrics.mouth_lmd_px,
                 metrics.num_frames, self.val_s)
        if metrics.psnr_db > self.best_psnr:
            self.best_psnr = metrics.psnr_db
            return True
        return False

    # -------------------------------------------------------------- loop

    def train_step(self) -> dict[str, Tensor] | None:
        """One optimiser step of G (and of D after the GAN warm-up); None when the loss was not finite."""
        cfg = self.cfg
        for group, base in ((self.opt_g.param_groups, cfg.lr), (self.opt_d.param_groups, cfg.lr_disc)):
            for g in group:
                g["lr"] = base * g.get("lr_mult", 1.0) * lr_factor(cfg, self.step)
        mouth = kp_img = held = shape = None
        if cfg.hold_kp > 0 or cfg.audio_mouth > 0:
            tb = self.trainset.sample_batch(cfg.batch_size, cfg.hold_kp, cfg.hold_max_lag)
            src, drv, mel, mouth = tb.source, tb.driving, tb.mel, tb.mouth_box
            held, shape = tb.held_frames, tb.mouth_shape
            kp_img = tb.kp_image.contiguous(memory_format=self.memory_format) if cfg.hold_kp > 0 else None
        elif cfg.mouth_l1 > 0:
            src, drv, mel, mouth = self.trainset.sample_with_mouth(cfg.batch_size)
        else:
            src, drv, mel = self.trainset.sample(cfg.batch_size)
        src = src.contiguous(memory_format=self.memory_format)
        drv = drv.contiguous(memory_format=self.memory_format)
        gan_on = self.step >= cfg.gan_warmup_steps
        g_loss = self.g_loss_gan if gan_on else self.g_loss_warm
        self.disc.requires_grad_(False)
        with _autocast(self.device, cfg):
            total, generated, terms = g_loss(src, drv, mel, mouth, kp_img, held, shape)
        self.opt_g.zero_grad(set_to_none=True)
        if not torch.isfinite(total):
            return None
        total.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt_g.step()
        out = _as_float(terms)
        out["g_total"] = total.detach().float()
        if gan_on:
            self.disc.requires_grad_(True)
            with _autocast(self.device, cfg):
                d_total, d_terms = self.d_loss(drv[:, :3], generated.detach())
            self.opt_d.zero_grad(set_to_none=True)
            if torch.isfinite(d_total):
                d_total.backward()
                self.opt_d.step()
            out.update({(k if k.startswith("d_") else f"d_{k}"): v for k, v in _as_float(d_terms).items()})
            out["d_total"] = d_total.detach().float()
        return out

    def run(self, resume: bool, progress: bool, stop_after_steps: int | None) -> TrainSummary:
        from tqdm import tqdm

        cfg = self.cfg
        self.t0 = time.perf_counter()
        self.val_s = 0.0  # last validation and checkpoint times, guessed until measured
        if self.devset is not None:
            n_val = int(self.devset.fixed_pairs(cfg.val_max_per_clip, cfg.val_stride, 0).clip.shape[0])
            self.val_s = (0.25 if self.device.type == "cpu" else 0.05) * n_val
        self.ckpt_s = 2.0
        last_path = self.out_dir / LAST_CKPT
        resumed = resume and last_path.exists()
        if resumed:
            self.load(load_checkpoint(last_path))
            log.info("resumed %s at step %d", last_path, self.step)
        elif resume:
            log.warning("resume: no %s yet, starting a new run", last_path)
        if not resumed and cfg.init_from:
            self.init_weights(Path(cfg.init_from))
        self.loss_log = _CsvLog(self.out_dir / LOG_CSV, self.step if resumed else None)
        self.val_log = _CsvLog(self.out_dir / VAL_CSV, self.step if resumed else None)
        start = self.step
        limit_s = cfg.time_limit_min * 60.0 if cfg.time_limit_min > 0 else math.inf
        last_ckpt_t = time.perf_counter()
        train_s = 0.0
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        interval = [0.0, 0]  # training seconds and steps since the last log row
        bad = 0
        stopped_by = "steps"
        last_losses: dict[str, float] = {}
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)

        def log_row() -> None:
            nonlocal last_losses, sums, counts, interval
            last_losses = {k: float(sums[k]) / counts[k] for k in sums}
            sps = interval[1] * cfg.batch_size / max(interval[0], 1e-9)
            self.loss_log.append({"step": self.step, "wall_s": self.wall_s_before + time.perf_counter() - self.t0,
                                  "lr": cfg.lr * lr_factor(cfg, self.step - 1), **last_losses,
                                  "samples_per_s": sps})
            bar.set_postfix(loss=f"{last_losses.get('g_total', math.nan):.4f}", sps=f"{sps:.2f}")
            sums, counts, interval = {}, {}, [0.0, 0]

        self.train_mode()
        try:
            while self.step < cfg.steps:
                if stop_after_steps is not None and self.step - start >= stop_after_steps:
                    stopped_by = "stop_after"
                    break
                elapsed = time.perf_counter() - self.t0
                mean_step = train_s / max(1, self.step - start)
                reserve = 1.5 * (self.val_s + self.ckpt_s) + max(10.0, 0.01 * limit_s)  # final val + ckpt
                if elapsed + 2 * mean_step + reserve > limit_s:
                    stopped_by = "time_limit"
                    log.info("time limit of %.1f min near: stopping at step %d", cfg.time_limit_min,
                             self.step)
                    break
                t = time.perf_counter()
                terms = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t
                if terms is None:
                    bad += 1
                    log.warning("step %d: non-finite generator loss, step skipped", self.step)
                    if bad >= _MAX_BAD_STEPS:
                        raise RuntimeError(f"{bad} consecutive non-finite losses at step {self.step}")
                    continue
                bad = 0
                self.step += 1
                train_s += dt
                interval[0] += dt
                interval[1] += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                bar.update(1)
                if cfg.snapshot_every > 0 and self.step % cfg.snapshot_every == 0:
                    self.snapshot()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    log_row()
                if cfg.val_every > 0 and self.step % cfg.val_every == 0 and self.devset is not None:
                    if self.run_validation():
                        self.checkpoint(validate_first=False, new_best=True)
                        last_ckpt_t = time.perf_counter()
                if time.perf_counter() - last_ckpt_t >= cfg.checkpoint_minutes * 60.0:
                    self.checkpoint(validate_first=True)
                    last_ckpt_t = time.perf_counter()
            if interval[1] > 0:  # stopped between log rows
                log_row()
        finally:
            bar.close()
        steps_run = self.step - start
        if steps_run > 0 or not last_path.exists():
            self.checkpoint(validate_first=True)
        if self.lmd is not None:
            self.lmd.close()
        sps = steps_run * cfg.batch_size / train_s if train_s > 0 else math.nan
        log.info("%d steps in %.1f s of training: %.2f samples/s", steps_run, train_s, sps)
        return TrainSummary(step=self.step, steps_run=steps_run, stopped_by=stopped_by,
                            wall_s=self.wall_s_before + time.perf_counter() - self.t0, train_s=train_s,
                            samples_per_s=sps, losses=last_losses, val=self.last_val,
                            best_psnr_db=self.best_psnr, device=str(self.device), out_dir=str(self.out_dir))


def _jsonable(value: Any) -> Any:
    """Dataclass dicts with tuples as lists (plain containers for ``weights_only`` loading)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def train(cfg: TrainConfig, clips_train: Sequence[ClipArrays], clips_dev: Sequence[ClipArrays],
          out_dir: str | Path, resume: bool = False, progress: bool = True, *,
          opus_mels: Mapping[str, Sequence[np.ndarray]] | None = None,
          opus_bitrates_bps: Sequence[int] = OPUS_BITRATES_BPS,
          stop_after_steps: int | None = None) -> TrainSummary:
    """Train (or continue training) AVFR-GAN on prepared clips.

    Args:
        cfg: run settings.
        clips_train: training clips (``avfr.codec.data.cache.load_clips(..., split="train")``).
        clips_dev: dev clips for validation (may be empty: no validation, no best checkpoint).
        out_dir: run directory (created); see the module docstring for what it holds.
        resume: continue from ``out_dir/ckpt-last.pt`` when it exists (exactly: same batches, same numbers).
        progress: show a tqdm bar.
        opus_mels: precomputed Opus round-trip mels per clip id (a bundle's); None computes them (needs PyAV).
        opus_bitrates_bps: bitrates of those mels.
        stop_after_steps: stop after this many steps in this call (checkpoint written), e.g. to split a run.

    Returns:
        What the call did (steps, throughput, last losses and validation).

    Raises:
        FileExistsError: ``out_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: bad settings, or a checkpoint of another model config.
        RuntimeError: the loss stayed non-finite.
    """
    out = Path(out_dir)
    if not resume and (out / LAST_CKPT).exists():
        raise FileExistsError(f"{out / LAST_CKPT} exists: resume the run or choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    old_benchmark = torch.backends.cudnn.benchmark
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels (CUDA only)
    try:
        trainer = _Trainer(cfg, clips_train, clips_dev, out, opus_mels, opus_bitrates_bps)
        return trainer.run(resume, progress, stop_after_steps)
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_benchmark
