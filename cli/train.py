"""``avfr-codec train``: train AVFR-GAN on prepared clips, resumable, within a wall-clock budget; under
``torchrun`` the same command trains with DistributedDataParallel (:mod:`avfr.codec.train.distributed`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "train",
        help="train the AVFR-GAN model (resumable checkpoints, dev validation)",
        description="Train the generator and discriminator on the train split and validate on the dev split "
        "(L1, PSNR, SSIM, LMD). RUN_DIR receives log.csv, val.csv, ckpt-last.pt (exact resume), ckpt-best.pt "
        "and weights-best.pt (best dev PSNR). Under torchrun (e.g. `torchrun --nproc-per-node 4 -m avfr.cli train "
        "...`) it trains with DistributedDataParallel: --batch per process, rank 0 validating and writing.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", type=Path,
                     help="data folder with manifest.json (clips are prepared into the cache when missing)")
    src.add_argument("--arrays", metavar="DIR", type=Path,
                     help="a training bundle (avfr.codec.data.bundle) instead of --data, for a box without "
                     "mediapipe or PyAV")
    p.add_argument("--clips", metavar="ID,ID", default=None,
                   help="with --data: only these clips (comma-separated ids), e.g. for a quick check")
    p.add_argument("--release", metavar="N,N", default=None,
                   help="train only on clips of these data releases (manifest `release`; dev unchanged), e.g. 1 "
                   "for the first 52 clips")
    p.add_argument("--config", default="small", help="model config name (default: small)")
    p.add_argument("--out", metavar="RUN_DIR", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/ckpt-last.pt if it exists")
    p.add_argument("--steps", type=int, default=None, help="total steps of the run (default: 20000)")
    p.add_argument("--batch", type=int, default=None, help="batch size, per process under torchrun (default: 4)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate of G and D (default: 2e-4)")
    p.add_argument("--gan-warmup", type=int, default=None, metavar="STEPS",
                   help="steps without the GAN terms (default: 2000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--cache", metavar="DIR", type=Path, default=None,
                   help="clip cache of --data (default: $XDG_CACHE_HOME/avfr-codec or ~/.cache/avfr-codec)")
    p.add_argument("--time-limit-min", type=float, default=0.0, metavar="M",
                   help="stop cleanly, checkpoint written, before M minutes of wall clock (0: no limit)")
    p.add_argument("--checkpoint-min", type=float, default=None, metavar="M",
                   help="checkpoint + validate every M minutes (default: 15)")
    p.add_argument("--val-every", type=int, default=None, metavar="STEPS",
                   help="also validate every N steps (default: only at checkpoints)")
    p.add_argument("--val-frames", type=int, default=None, metavar="N",
                   help="driving frames validated per dev clip (default: 16)")
    p.add_argument("--schedule", choices=("multistep", "cosine", "constant"), default=None,
                   help="learning-rate schedule after the warm-up (default: multistep)")
    p.add_argument("--snapshot-every", type=int, default=None, metavar="STEPS",
                   help="also write the generator (fp16) as RUN_DIR/weights-step<N>.pt every STEPS steps")
    p.add_argument("--init", metavar="CKPT", default=None,
                   help="start a new run from this training checkpoint's G and D, or from a weights file's G "
                   "(e.g. models/avfr-small-*.pt; fresh discriminator) (fine-tuning)")
    p.add_argument("--init-detector", metavar="CKPT", default=None,
                   help="take the keypoint detector from this checkpoint or weights file (any config with the same "
                   "detector: e.g. --config wide --init-detector models/avfr-small-*.pt); needs --freeze-detector, "
                   "so the new generator reads the shipped sender's keypoint stream")
    p.add_argument("--mouth-l1", type=float, default=None, metavar="W",
                   help="weight of an extra L1 term inside the driving mouth box (default: 0, off)")
    p.add_argument("--wire-noise", type=float, default=None, metavar="P",
                   help="share of samples whose driving keypoints get the call's wire error (7-bit keypoints with "
                   "0.75-step hysteresis, 7-bit jacobians in [-3, 3); default: 0)")
    p.add_argument("--hold-kp", type=float, default=None, metavar="P",
                   help="share of samples rendered from driving keypoints held 1..--hold-max-lag frames back, as the "
                   "receiver does when keypoint packets are lost (the speech must carry the mouth; default: 0)")
    p.add_argument("--hold-max-lag", type=int, default=None, metavar="FRAMES",
                   help="longest hold of --hold-kp, in 40 ms frames (default: 4)")
    p.add_argument("--audio-mouth", type=float, default=None, metavar="W",
                   help="weight of a training-only head that reads the driving mouth's shape (lip gaps, width) from "
                   "the audio features alone (default: 0, no head)")
    p.add_argument("--audio-lr-mult", type=float, default=None, metavar="X",
                   help="learning rate of the audio branch (audio and attention encoders, mouth head, hold layers) "
                   "times X (default: 1)")
    p.add_argument("--freeze-detector", action="store_true",
                   help="keep the keypoint detector fixed (no equivariance terms; the sender graph is unchanged)")
    p.add_argument("--no-audio", action="store_true", help="ablation: no audio encoders, silent mel")
    p.add_argument("--no-priors", action="store_true", help="ablation: zero mesh and mask channels")
    p.add_argument("--no-augment", action="store_true", help="no flip/colour/affine/Opus augmentation")
    p.add_argument("--causal", action="store_true", help="past-only audio windows (latency mode)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast of the training step on CUDA and on CPUs with native bf16 (AVX512-BF16, "
                        "AMX; ~1.4x faster there); validation on a CPU stays fp32 (default: on)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator loss (CUDA or CPU; the first steps compile for minutes)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=None, help="seed of the run (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _shared_copy(bundle: Path) -> Path:
    """Node-local folder where local rank 0 puts a decoded bundle for the other ranks of its node (one per run:
    the key holds the host, the bundle and the run's rendezvous)."""
    parts = [socket.gethostname(), str(bundle.resolve())]
    parts += [os.environ.get(k, "") for k in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "GROUP_RANK")]
    return Path(tempfile.gettempdir()) / f"avfr-bundle-{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:16]}"


def _read_bundle(bundle: Path, dist: Any) -> tuple[list, list, dict]:
    """``load_bundle`` once per node: with other ranks on the node, local rank 0 decodes it and writes memory-mapped
    arrays (``Dist.in_turn`` runs it first), which every rank of the node then opens."""
    from avfr.codec.data import load_bundle, open_mapped, save_mapped

    if dist.local_world_size <= 1:
        return load_bundle(bundle)
    if dist.local_rank == 0:
        train_clips, dev_clips, variants = load_bundle(bundle)
        save_mapped(_shared_copy(bundle), train_clips + dev_clips, variants)
    clips, variants = open_mapped(_shared_copy(bundle))
    return [c for c in clips if c.split != "dev"], [c for c in clips if c.split == "dev"], variants


def _load_data(args: argparse.Namespace, dist: Any) -> tuple[list, list, dict | None, tuple[int, ...] | None]:
    """(train clips, dev clips, Opus mels or None, their bitrates or None)."""
    if args.arrays is not None:
        train_clips, dev_clips, variants = _read_bundle(args.arrays, dist)
        meta = json.loads((args.arrays / "bundle.json").read_text())
        releases = {e["clip_id"]: e["release"] for e in meta["clips"] if "release" in e}
        return (_of_release(train_clips, releases, args.release), dev_clips, variants,
                tuple(int(b) for b in meta["opus_bitrates_bps"]))
    from avfr.codec.data import discover_clips, load_clips, manifest_releases, open_clip, prepare

    if args.clips:
        wanted = {c.strip() for c in args.clips.split(",") if c.strip()}
        sources = [s for s in discover_clips(args.data) if s.clip_id in wanted]
        unknown = wanted - {s.clip_id for s in sources}
        if unknown:
            raise ValueError(f"--clips: not in {args.data}: {', '.join(sorted(unknown))}")
        summary = prepare(args.data, args.cache, sources=sources, progress=False)
        clips = [open_clip(e) for e in summary.entries if not e.failed]
    else:
        clips = load_clips(args.data, args.cache, split=None)
    train_clips = [c for c in clips if c.split in ("train", "")]
    dev_clips = [c for c in clips if c.split == "dev"]
    return _of_release(train_clips, manifest_releases(args.data), args.release), dev_clips, None, None


def _of_release(clips: list, releases: dict[str, int], wanted: str | None) -> list:
    """The clips of the wanted releases ("1" or "1,2"; None: all).

    Raises:
        ValueError: a release is asked for but the data (or bundle) does not record releases.
    """
    if wanted is None:
        return clips
    keep = {int(r) for r in wanted.split(",") if r.strip()}
    if not releases:
        raise ValueError("--release: this data has no release field (manifest.json, or a bundle made before it)")
    return [c for c in clips if releases.get(c.clip_id) in keep]


def _train(args: argparse.Namespace) -> int:
    from avfr.cli import CliError
    from avfr.codec.train import LAST_CKPT, OPUS_BITRATES_BPS, TrainConfig, train
    from avfr.codec.train.distributed import setup, teardown

    overrides = {
        "config": args.config, "batch_size": args.batch, "steps": args.steps, "lr": args.lr,
        "lr_disc": args.lr, "gan_warmup_steps": args.gan_warmup, "device": args.device,
        "time_limit_min": args.time_limit_min, "checkpoint_minutes": args.checkpoint_min,
        "val_every": args.val_every, "val_max_per_clip": args.val_frames, "use_audio": not args.no_audio,
        "use_priors": not args.no_priors, "augment": not args.no_augment, "causal": args.causal,
        "amp": args.amp, "compile": args.compile, "num_threads": args.threads, "seed": args.seed,
        "schedule": args.schedule, "init_from": args.init, "init_detector": args.init_detector,
        "mouth_l1": args.mouth_l1,
        "freeze_detector": args.freeze_detector or None, "wire_noise": args.wire_noise,
        "hold_kp": args.hold_kp, "hold_max_lag": args.hold_max_lag, "audio_mouth": args.audio_mouth,
        "audio_lr_mult": args.audio_lr_mult, "snapshot_every": args.snapshot_every,
    }
    cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if not args.resume and (args.out / LAST_CKPT).exists():
        raise CliError(f"{args.out / LAST_CKPT} exists: pass --resume to continue it, or another --out")
    dist = setup(cfg.device)  # under torchrun: join the process group (nothing otherwise)
    try:
        if not dist.main:  # rank 0 speaks for the run
            logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
        # the cache is prepared (or the bundle decoded) once per node, by its first rank, before the others read it
        train_clips, dev_clips, opus_mels, bitrates = dist.in_turn(lambda: _load_data(args, dist))
        if args.arrays is not None and dist.local_rank == 0 and dist.local_world_size > 1:
            from avfr.codec.data import remove_mapped

            remove_mapped(_shared_copy(args.arrays))  # every rank of the node has mapped it
        if not train_clips:
            raise CliError("no training clips found")
        if dist.main:
            print(f"training {cfg.config} on {len(train_clips)} clips "
                  f"({sum(c.num_frames for c in train_clips)} frames), validating on {len(dev_clips)} dev clips")
        if dist.enabled and dist.main:
            print(f"distributed: {dist.world_size} processes ({dist.backend}), batch {cfg.batch_size} per process, "
                  f"global batch {cfg.batch_size * dist.world_size}, lr {cfg.lr:g} as given (not scaled with the "
                  "world size)")
        summary = train(cfg, train_clips, dev_clips, args.out, resume=args.resume, progress=not args.quiet,
                        opus_mels=opus_mels, opus_bitrates_bps=bitrates or OPUS_BITRATES_BPS)
    except FileExistsError as exc:
        raise CliError(str(exc)) from exc
    finally:
        teardown()
    if not dist.main:
        return 0
    print(f"step {summary.step} ({summary.steps_run} this run, stopped by {summary.stopped_by}) "
          f"on {summary.device}: {summary.samples_per_s:.2f} samples/s, {summary.train_s:.1f} s training, "
          f"{summary.wall_s:.1f} s wall in all")
    if summary.losses:
        print("losses: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.losses.items()))
    if summary.val is not None:
        v = summary.val
        print(f"dev: L1 {v.l1:.4f}, PSNR {v.psnr_db:.2f} dB, SSIM {v.ssim:.3f}, LMD {v.lmd_px:.2f} px, "
              f"mouth LMD {v.mouth_lmd_px:.2f} px ({v.num_frames} frames); best PSNR {summary.best_psnr_db:.2f} dB")
    print(f"run directory: {args.out}")
    return 0
