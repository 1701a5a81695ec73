"""Training loop of AVFR-GAN: Adam on generator and discriminator, checkpoints, exact resume, validation.

One run lives in ``out_dir``:

- ``log.csv``: one row every ``log_every`` steps: step, wall_s (cumulative over resumed runs), lr, the mean of
  every loss term over those steps (generator terms as the loss returns them plus ``g_total``, discriminator
  terms ``d_*``, empty before the GAN starts; means over the ranks of a distributed run), samples_per_s (all
  ranks), global_batch;
- ``val.csv``: one row per validation (step, wall_s, L1, PSNR, SSIM, LMD, see :mod:`avfr.codec.train.metrics`);
- ``ckpt-last.pt``: everything needed to continue bit for bit (model, discriminator, both optimisers, step,
  the RNG states of torch, numpy, python and the training set); written every ``checkpoint_minutes``, at
  the end and before a ``time_limit_min`` runs out;
- ``ckpt-best.pt``: the same, from the validation with the best dev PSNR so far;
- ``weights-best.pt``: the best model alone in :func:`avfr.codec.nets.model.save_weights` format (float16);
- ``weights-step<N>.pt``: the model alone at every ``snapshot_every``-th step (same format), when asked.

GAN: before ``gan_warmup_steps`` the generator trains on its reconstruction terms alone (GAN weight 0) and the
discriminator does not train (no compute spent on it); after, both train every step.

Settings and the learning-rate schedule: :mod:`avfr.codec.train.config`; networks, losses and optimisers:
:mod:`avfr.codec.train.networks`; checkpoint format, exact resume and ``--init``:
:mod:`avfr.codec.train.checkpoint`; validation: :mod:`avfr.codec.train.validation`; under torchrun
(DistributedDataParallel, rank 0 alone validating and writing): :mod:`avfr.codec.train.distributed`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from avfr.codec.data import ClipArrays
from avfr.codec.train.augment import AugmentConfig
from avfr.codec.train.checkpoint import (
    LAST_CKPT,
    LOG_CSV,
    VAL_CSV,
    CsvLog,
    init_detector,
    init_weights,
    load_checkpoint,
    restore_training_state,
    rng_state,
    save_checkpoint,
    snapshot_name,
    training_state,
)
from avfr.codec.train.config import TrainConfig, TrainSummary, autocast_for, lr_factor
from avfr.codec.train.distributed import Dist, Objective, hash_file, rank_seed, record_hashes, seed_all, setup
from avfr.codec.train.mels import OPUS_BITRATES_BPS
from avfr.codec.train.metrics import LandmarkDistance, ValMetrics, mediapipe_available
from avfr.codec.train.networks import build_losses, build_networks, build_optimisers
from avfr.codec.train.trainset import TrainSet
from avfr.codec.train.validation import validate

log = logging.getLogger(__name__)

_MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up


def _as_float(terms: Mapping[str, Tensor | float]) -> dict[str, Tensor]:
    return {k: (v.detach().float() if isinstance(v, Tensor) else torch.tensor(float(v)))
            for k, v in terms.items()}


class _Trainer:
    """State of one ``train`` call (kept in one object so checkpointing sees everything)."""

    def __init__(self, cfg: TrainConfig, clips_train: Sequence[ClipArrays], clips_dev: Sequence[ClipArrays],
                 out_dir: Path, opus_mels: Mapping[str, Sequence[np.ndarray]] | None,
                 opus_bitrates_bps: Sequence[int], dist: Dist) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.dist = dist
        self.device = dist.device(cfg.device)
        cuda = self.device.type == "cuda"
        # seeds first: network initialisation draws from the global generators (alike on every rank)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.seeds = [rank_seed(cfg.seed, r) for r in range(dist.world_size)]  # each rank's pairs and draws
        augment = AugmentConfig() if cfg.augment else None
        self.trainset = TrainSet(clips_train, self.device, seed=self.seeds[dist.rank], causal=cfg.causal,
                                 use_audio=cfg.use_audio, use_priors=cfg.use_priors, augment=augment,
                                 opus_mels=opus_mels, opus_bitrates_bps=opus_bitrates_bps)
        self.devset = (TrainSet(clips_dev, self.device, seed=cfg.seed, causal=cfg.causal,
                                use_audio=cfg.use_audio, use_priors=cfg.use_priors, augment=None,
                                opus_mels=opus_mels, opus_bitrates_bps=opus_bitrates_bps)
                       if clips_dev and dist.main else None)  # rank 0 alone validates
        self.has_dev = bool(clips_dev)
        self.model, self.disc = build_networks(cfg)
        self.model.to(self.device)
        self.disc.to(self.device)
        self.memory_format = torch.channels_last if (cuda and cfg.channels_last) else torch.contiguous_format
        if self.memory_format is torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.disc.to(memory_format=torch.channels_last)
        self.g_loss_warm, self.g_loss_gan, self.d_loss = build_losses(
            self.model, self.disc, cfg.mouth_l1, equivariance=not cfg.freeze_detector, wire_noise=cfg.wire_noise,
            audio_mouth=cfg.audio_mouth)
        if cfg.freeze_detector:
            self.model.kp_detector.requires_grad_(False)
        for m in (self.g_loss_warm, self.g_loss_gan, self.d_loss):
            m.to(self.device)
        if cfg.compile:  # CUDA; a CPU too (measured 1.2x per step after ~3-6 min of compiling: long runs only)
            self.g_loss_warm = torch.compile(self.g_loss_warm)
            self.g_loss_gan = torch.compile(self.g_loss_gan)
        self.opt_g, self.opt_d = build_optimisers(cfg, self.model, self.disc)
        # what DDP wraps (in run, after a resume): G with its warm-up and GAN losses, D with its loss
        self.g_obj: nn.Module = Objective(self.model, self.g_loss_warm, self.g_loss_gan)
        self.d_obj: nn.Module = Objective(self.disc, self.d_loss)
        if self.seeds[dist.rank] != cfg.seed:
            seed_all(self.seeds[dist.rank])  # this rank's own augmentation and loss draws
        self.hashes = hash_file(out_dir, dist.rank)
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

    def train_mode(self) -> None:
        """Both networks in training mode, except a frozen detector (its BatchNorm statistics stay fixed)."""
        self.model.train()
        if self.cfg.freeze_detector:
            self.model.kp_detector.eval()
        self.disc.train()

    def checkpoint(self, validate_first: bool, new_best: bool = False) -> None:
        """Validate (optionally), write ckpt-last.pt, and ckpt-best.pt / weights-best.pt on a new best. Called on
        every rank: rank 0 validates and writes, with every rank's RNG states; the others wait for it.

        Args:
            validate_first: run the validation first (it decides ``new_best``).
            new_best: the model is a new best already (validated by the caller).
        """
        if validate_first and self.devset is not None:  # rank 0 alone holds the dev set
            new_best = self.run_validation()
        rngs = self.dist.gather(rng_state(self.device, self.trainset))
        if rngs is not None:
            t = time.perf_counter()
            state = training_state(self.cfg, self.model, self.disc, self.opt_g, self.opt_d, rngs, self.seeds,
                                   step=self.step, wall_s=self.wall_s_before + (time.perf_counter() - self.t0),
                                   best_psnr_db=self.best_psnr, val=self.last_val)
            save_checkpoint(state, self.out_dir, self.model, new_best)
            self.ckpt_s = time.perf_counter() - t
            log.info("step %d: checkpoint written (%.1f s)", self.step, self.ckpt_s)
        self.dist.barrier()

    def snapshot(self) -> None:
        """Write the generator alone (fp16) as ``weights-step<step>.pt`` (rank 0): models at fixed steps
        (ablations compared at the same step whatever the time limit let each run reach)."""
        from avfr.codec.nets import save_weights

        if self.dist.main:
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
        self.disc.requires_grad_(False)
        with autocast_for(self.device, cfg):  # the warm-up loss (0) or the GAN one (1)
            total, generated, terms = self.g_obj(int(gan_on), src, drv, mel, mouth, kp_img, held, shape)
        self.opt_g.zero_grad(set_to_none=True)
        if not self.dist.all_true(bool(torch.isfinite(total))):  # every rank skips, or none
            return None
        total.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt_g.step()
        out = _as_float(terms)
        out["g_total"] = total.detach().float()
        if gan_on:
            self.disc.requires_grad_(True)
            with autocast_for(self.device, cfg):
                d_total, d_terms = self.d_obj(0, drv[:, :3], generated.detach())
            self.opt_d.zero_grad(set_to_none=True)
            if self.dist.all_true(bool(torch.isfinite(d_total))):
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
        d = self.dist
        last_path = self.out_dir / LAST_CKPT
        resumed = resume and d.rank0(last_path.exists())[0]
        if resumed:  # rank 0 reads the checkpoint (the run directory need not be shared by the nodes)
            self.step, self.wall_s_before, self.best_psnr, self.seeds = restore_training_state(
                d.broadcast(load_checkpoint(last_path) if d.main else None), cfg, self.model, self.disc,
                self.opt_g, self.opt_d, self.device, self.trainset, d.rank, d.world_size)
            log.info("resumed %s at step %d", last_path, self.step)
        elif resume:
            log.warning("resume: no %s yet, starting a new run", last_path)
        if not resumed and cfg.init_from:
            init_weights(Path(cfg.init_from), cfg, self.model, self.disc)
        if not resumed and cfg.init_detector:
            init_detector(Path(cfg.init_detector), self.model)
        self.disc.requires_grad_(True)  # DDP's reducer takes the parameters that need a gradient now
        self.g_obj, self.d_obj = d.wrap(self.g_obj, self.device), d.wrap(self.d_obj, self.device)
        if d.enabled and d.main:
            log.info("distributed: %d processes (%s), batch %d per rank, global batch %d, lr %g (G) %g (D) as "
                     "given, not scaled with the world size; rank seeds %s", d.world_size, d.backend,
                     cfg.batch_size, cfg.batch_size * d.world_size, cfg.lr, cfg.lr_disc, self.seeds)
        self.loss_log = CsvLog(self.out_dir / LOG_CSV, self.step if resumed else None, write=d.main)
        self.val_log = CsvLog(self.out_dir / VAL_CSV, self.step if resumed else None, write=d.main)
        start = self.step
        global_batch = cfg.batch_size * d.world_size
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
            means = d.mean({k: sums[k] / counts[k] for k in sums})  # over the ranks
            last_losses = {k: float(v) for k, v in means.items()}
            sps = interval[1] * global_batch / max(interval[0], 1e-9)
            self.loss_log.append({"step": self.step, "wall_s": self.wall_s_before + time.perf_counter() - self.t0,
                                  "lr": cfg.lr * lr_factor(cfg, self.step - 1), **last_losses,
                                  "samples_per_s": sps, "global_batch": global_batch})
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
                near_limit, ckpt_due = d.rank0(elapsed + 2 * mean_step + reserve > limit_s,  # rank 0's clock
                                               self.step > start and time.perf_counter() - last_ckpt_t
                                               >= cfg.checkpoint_minutes * 60.0)
                if near_limit:
                    stopped_by = "time_limit"
                    log.info("time limit of %.1f min near: stopping at step %d", cfg.time_limit_min,
                             self.step)
                    break
                if ckpt_due:
                    self.checkpoint(validate_first=True)
                    last_ckpt_t = time.perf_counter()
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
                record_hashes(self.hashes, self.step, self.model, self.disc)
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
                if cfg.val_every > 0 and self.step % cfg.val_every == 0 and self.has_dev:
                    if d.rank0(self.devset is not None and self.run_validation())[0]:  # a new best
                        self.checkpoint(validate_first=False, new_best=True)
                        last_ckpt_t = time.perf_counter()
            if interval[1] > 0:  # stopped between log rows
                log_row()
        finally:
            bar.close()
        steps_run = self.step - start
        if steps_run > 0 or not d.rank0(last_path.exists())[0]:
            self.checkpoint(validate_first=True)
        if self.lmd is not None:
            self.lmd.close()
        sps = steps_run * global_batch / train_s if train_s > 0 else math.nan
        log.info("%d steps in %.1f s of training: %.2f samples/s", steps_run, train_s, sps)
        return TrainSummary(step=self.step, steps_run=steps_run, stopped_by=stopped_by,
                            wall_s=self.wall_s_before + time.perf_counter() - self.t0, train_s=train_s,
                            samples_per_s=sps, losses=last_losses, val=self.last_val,
                            best_psnr_db=self.best_psnr, device=str(self.device), out_dir=str(self.out_dir))


def train(cfg: TrainConfig, clips_train: Sequence[ClipArrays], clips_dev: Sequence[ClipArrays],
          out_dir: str | Path, resume: bool = False, progress: bool = True, *,
          opus_mels: Mapping[str, Sequence[np.ndarray]] | None = None,
          opus_bitrates_bps: Sequence[int] = OPUS_BITRATES_BPS,
          stop_after_steps: int | None = None) -> TrainSummary:
    """Train (or continue training) AVFR-GAN on prepared clips.

    Args:
        cfg: run settings.
        clips_train: training clips (``avfr.codec.data.load_clips(..., split="train")``).
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
    dist = setup(cfg.device)  # torchrun: join the process group (no-op in one process)
    if not resume and dist.rank0((out / LAST_CKPT).exists())[0]:
        raise FileExistsError(f"{out / LAST_CKPT} exists: resume the run or choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    old_benchmark = torch.backends.cudnn.benchmark
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels (CUDA only)
    try:
        trainer = _Trainer(cfg, clips_train, clips_dev, out, opus_mels, opus_bitrates_bps, dist)
        return trainer.run(resume, progress and dist.main, stop_after_steps)
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_benchmark
