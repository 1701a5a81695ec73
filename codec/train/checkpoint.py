"""Checkpoints of a training run and the other files of its run directory.

A checkpoint (``CHECKPOINT_FORMAT``) holds tensors and plain containers only (loadable with
``weights_only=True``): the run's settings, model config, generator, discriminator, both optimisers, step,
cumulative wall time, best dev PSNR, last validation and the RNG states of torch, numpy, python and the
training set, so that a resumed run continues bit for bit. A distributed run stores every rank's RNG states
(``rng_ranks``, ``rng`` being rank 0's), its ``world_size`` and the ranks' ``seeds``; resumed with another world
size, each rank restarts its streams from (seed, rank, step) (:mod:`avfr.codec.train.distributed`). The CSV logs
beside it are cut back to the checkpoint's step on resume.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from avfr.codec.train.config import TrainConfig
from avfr.codec.train.distributed import rank_seed, seed_all
from avfr.codec.train.metrics import ValMetrics
from avfr.codec.train.trainset import TrainSet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "avfr-train-ckpt/1"
LAST_CKPT = "ckpt-last.pt"
BEST_CKPT = "ckpt-best.pt"
BEST_WEIGHTS = "weights-best.pt"
LOG_CSV = "log.csv"
VAL_CSV = "val.csv"


# ---------------------------------------------------------------------------------------- RNG state


def rng_state(device: torch.device, trainset: TrainSet) -> dict[str, Any]:
    """This process's RNG states as tensors and plain lists (loadable with ``weights_only=True``)."""
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


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The contents of a training checkpoint or a weights file (``torch.load(weights_only=True)``), its
    ``format`` one of the two.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or neither format.
    """
    from avfr.codec.nets import WEIGHTS_FORMAT

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError) on bad files
        raise ValueError(f"{path}: not a readable checkpoint or weights file ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("format") not in (CHECKPOINT_FORMAT, WEIGHTS_FORMAT):
        raise ValueError(f"{path}: neither an {CHECKPOINT_FORMAT} checkpoint nor an {WEIGHTS_FORMAT} file")
    return data


def _read_init(path: str | Path) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None, dict[str, Any], str]:
    """(generator state, discriminator state or None, {config, use_audio, use_priors}, description) of a
    training checkpoint or a weights file (:func:`read_model_file`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: neither format.
    """
    import json

    if not Path(path).is_file():
        raise FileNotFoundError(f"--init {path}: no such file")
    data = read_model_file(path)
    if data["format"] == CHECKPOINT_FORMAT:
        saved = data["train_config"]
        settings = {k: saved[k] for k in ("config", "use_audio", "use_priors")}
        return data["model"], data["discriminator"], settings, f"step {int(data['step'])} of that run"
    config = json.loads(data["config"])
    settings = {"config": config["name"], "use_audio": config["use_audio"], "use_priors": config["use_priors"]}
    return data["state_dict"], None, settings, "weights file: generator only, fresh discriminator"


def model_from_checkpoint(path: str | Path) -> nn.Module:
    """The generator (``AvfrModel``, eval mode, CPU) stored in a training checkpoint."""
    from avfr.codec.nets import AvfrConfig, AvfrModel

    ckpt = load_checkpoint(path)
    model = AvfrModel(AvfrConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def _jsonable(value: Any) -> Any:
    """Dataclass dicts with tuples as lists (plain containers for ``weights_only`` loading)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------- a run's state


def training_state(cfg: TrainConfig, model: nn.Module, disc: nn.Module, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, rngs: list[dict[str, Any]], seeds: list[int], *, step: int,
                   wall_s: float, best_psnr_db: float, val: ValMetrics | None) -> dict[str, Any]:
    """The checkpoint of a run: its settings, networks (unwrapped), optimisers, step, cumulative wall time (s),
    best dev PSNR (dB), last validation, and every rank's RNG states (:func:`rng_state`, in rank order: one for a
    one-process run) with the seeds its streams started from."""
    return {
        "format": CHECKPOINT_FORMAT,
        "train_config": _jsonable(dataclasses.asdict(cfg)),
        "model_config": _jsonable(model.config.to_dict()),  # type: ignore[operator]
        "model": model.state_dict(),
        "discriminator": disc.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "step": step,
        "wall_s": wall_s,
        "best_psnr_db": best_psnr_db,
        "val": val.as_row() if val is not None else {},
        "rng": rngs[0],
        "rng_ranks": rngs,
        "world_size": len(rngs),
        "seeds": [int(s) for s in seeds],
    }


def restore_training_state(ckpt: Mapping[str, Any], cfg: TrainConfig, model: nn.Module, disc: nn.Module,
                           opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, device: torch.device,
                           trainset: TrainSet, rank: int = 0,
                           world_size: int = 1) -> tuple[int, float, float, list[int]]:
    """Load a checkpoint (:func:`training_state`) into the networks, optimisers and RNGs of a run's rank
    ``rank`` of ``world_size``: its own RNG states when the checkpoint has the same world size, else streams
    restarted from ``rank_seed(cfg.seed, rank, step)``.

    Returns:
        step, wall time of the earlier calls (s), best dev PSNR (dB), the ranks' seeds.

    Raises:
        ValueError: the checkpoint was trained with another config, ablation or mel timing.
    """
    check_compatible(ckpt["train_config"], cfg, ("config", "use_audio", "use_priors", "causal"), "checkpoint")
    model.load_state_dict(ckpt["model"])
    disc.load_state_dict(ckpt["discriminator"])
    opt_g.load_state_dict(ckpt["opt_g"])
    opt_d.load_state_dict(ckpt["opt_d"])
    step, wall_s, best_psnr_db = int(ckpt["step"]), float(ckpt["wall_s"]), float(ckpt["best_psnr_db"])
    saved = int(ckpt.get("world_size", 1))  # checkpoints of earlier code: one process
    if saved == world_size:
        _set_rng_state(ckpt["rng_ranks"][rank] if "rng_ranks" in ckpt else ckpt["rng"], device, trainset)
        seeds = [int(s) for s in ckpt.get("seeds", [rank_seed(cfg.seed, r) for r in range(world_size)])]
        return step, wall_s, best_psnr_db, seeds
    seeds = [rank_seed(cfg.seed, r, step) for r in range(world_size)]
    seed_all(seeds[rank], trainset)
    if rank == 0:
        log.warning("the checkpoint was written by %d process(es), this run has %d: each rank's sampler and RNGs "
                    "restart from (seed %d, rank, step %d), seeds %s", saved, world_size, cfg.seed, step, seeds)
    return step, wall_s, best_psnr_db, seeds


def check_compatible(saved: Mapping[str, Any], cfg: TrainConfig, keys: tuple[str, ...], what: str) -> None:
    """Raise ValueError when the saved run settings ``keys`` (a checkpoint's ``train_config``) differ from
    ``cfg``'s."""
    for key in keys:
        if saved[key] != getattr(cfg, key):
            raise ValueError(f"{what} was trained with {key}={saved[key]!r}, this run asks "
                             f"{getattr(cfg, key)!r}")


def init_weights(path: Path, cfg: TrainConfig, model: nn.Module, disc: nn.Module) -> None:
    """Start a run from another run's weights (optimisers and step start fresh): a training checkpoint gives
    the generator and the discriminator, a :func:`avfr.codec.nets.model.save_weights` file (e.g. the shipped
    model) the generator alone (the discriminator keeps its fresh initialisation).

    Raises:
        ValueError: the file is neither, or holds another model config or ablation (but a ``--no-audio`` run
            may start from a model with speech: its speech branch is dropped).
    """
    from avfr.codec.nets import SPEECH_PREFIXES

    model_state, disc_state, settings, what = _read_init(path)
    # the speech ablation from a trained model: a --no-audio run may start from one with speech, whose audio
    # and attention encoders are dropped (the rest starts where the full arm does)
    drop_audio = settings["use_audio"] and not cfg.use_audio
    if drop_audio:
        settings = {**settings, "use_audio": False}
        model_state = {k: v for k, v in model_state.items() if not k.startswith(SPEECH_PREFIXES)}
        log.info("--init %s: a --no-audio run, the audio and attention encoders are dropped", path)
    check_compatible(settings, cfg, ("config", "use_audio", "use_priors"), f"--init {path}")
    # a run with --hold-kp / --audio-mouth may start from one without: the new layers keep their init
    # (load_state_dict copies fp16 tensors of a weights file into the fp32 parameters)
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if unexpected or any(".hold_" not in k and ".mouth_head." not in k for k in missing):
        raise ValueError(f"--init {path}: weights do not fit this model (missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]})")
    if disc_state is not None:
        disc.load_state_dict(disc_state)
    log.info("initialised from %s (%s)", path, what)


def init_detector(path: Path, model: nn.Module) -> None:
    """Copy the keypoint detector of a checkpoint or weights file (of any config with the same detector, e.g.
    the shipped ``small`` into a ``wide`` run) into ``model``; the rest of ``model`` keeps its initialisation.

    Raises:
        ValueError: the file is neither format, or its detector does not fit this model's.
    """
    model_state = _read_init(path)[0]
    prefix = "kp_detector."
    state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    try:
        model.kp_detector.load_state_dict(state)  # type: ignore[union-attr]
    except RuntimeError as exc:  # missing / unexpected keys or other shapes
        raise ValueError(f"--init-detector {path}: its keypoint detector does not fit this config's: "
                         f"{str(exc).splitlines()[0]}") from exc
    log.info("keypoint detector from %s (%d tensors)", path, len(state))


def save_checkpoint(state: Mapping[str, Any], out_dir: Path, model: nn.Module, new_best: bool) -> None:
    """Write ``state`` as ckpt-last.pt (atomically); on a new best also as ckpt-best.pt, with the model alone
    as weights-best.pt."""
    from avfr.codec.nets import save_weights

    _atomic_save(state, out_dir / LAST_CKPT)
    if new_best:
        shutil.copyfile(out_dir / LAST_CKPT, out_dir / (BEST_CKPT + ".tmp"))
        os.replace(out_dir / (BEST_CKPT + ".tmp"), out_dir / BEST_CKPT)
        save_weights(model, out_dir / BEST_WEIGHTS)  # type: ignore[arg-type]


class CsvLog:
    """Append-only CSV whose header grows when new columns appear (the file is then rewritten)."""

    def __init__(self, path: Path, keep_up_to_step: int | None, write: bool = True) -> None:
        self.path = path
        self.write = write  # False: a log that writes nothing (ranks other than 0)
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] = []
        if not write:
            return
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
        if not self.write:
            return
        self.rows.append(text)
        new = [k for k in text if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n").writerow(text)
