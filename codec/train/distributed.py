"""Distributed training: ``avfr-codec train`` under ``torchrun`` with PyTorch DistributedDataParallel.

Outside torchrun (no ``RANK`` / ``WORLD_SIZE`` in the environment) everything here is a no-op: one process, rank 0
of 1, and :func:`avfr.codec.train.loop.train` runs as it always did. Under ``torchrun --nproc-per-node N
[--nnodes M ...]`` :func:`setup` joins the process group: NCCL with each rank on ``cuda:LOCAL_RANK``, or gloo on
the CPU (``--device cpu``). With one process (``--nproc-per-node 1``) the run goes through the same DDP code and
draws exactly what a plain one-process run draws.

What the training loop does with it:

- **networks**: initialised from ``--seed`` on every rank (alike; DDP also broadcasts rank 0's at the start).
  The generator and the discriminator are each wrapped in DDP through an :class:`Objective` (the network as its
  only submodule, its loss terms called inside: the losses call several of the network's parts, and the
  generator loss runs the discriminator, whose parameters must not join the generator's reducer). Gradients are
  averaged over the ranks at every backward. Every trainable parameter gets a gradient in every step (the frozen
  detector of ``--freeze-detector`` is not trainable, the training-only heads exist only when their loss is on),
  so ``find_unused_parameters`` stays off. BatchNorm keeps per-rank batch statistics (over the per-rank batch,
  as in a one-process run; PyTorch's SyncBatchNorm has no CPU path) and rank 0's running statistics, which DDP
  broadcasts before every forward and checkpoints save.
- **seeds and sampling**: each rank draws its own stream of training pairs (sampling with replacement, no epochs)
  and its own augmentation and loss randomness from its own seed, :func:`rank_seed`: ``--seed`` on rank 0 (so one
  process, or rank 0 of many, draws what a plain run draws), a ``numpy.random.SeedSequence`` of (seed, rank)
  elsewhere. The seeds are logged and stored in checkpoints.
- **batch and learning rate**: ``--batch`` is per rank; the global batch is batch x world size (logged, and a
  ``global_batch`` column of log.csv). ``--lr`` is used as given, not scaled with the world size: Adam's step size
  does not grow with the batch as SGD's does, and the GAN's balance (G and D at the same rate) was tuned on
  small batches; pass a larger ``--lr`` to scale it.
- **rank 0 alone** validates, logs (log.csv, val.csv, the progress bar) and writes checkpoints and snapshots; the
  decisions taken by the clock (a checkpoint is due, the time limit is near) are rank 0's, broadcast, so all
  ranks checkpoint and stop at the same step; the others wait at a barrier while rank 0 validates and writes.
  A non-finite loss skips the step on every rank when it is non-finite on any.
- **checkpoints** hold the unwrapped modules (no ``module.`` prefixes), the optimisers, the step and every rank's
  RNG and sampler states (``rng_ranks``, gathered on rank 0; ``rng`` is rank 0's, as one-process checkpoints
  have it). A run resumed with the same world size restores each rank's own states and continues bit for bit;
  with another world size (one process included) each rank restarts its streams from ``rank_seed(seed, rank,
  step)``, deterministically, and the log says so.
- **data**: :meth:`Dist.in_turn` runs the loading first on rank 0, then on local rank 0 of the other nodes, then
  on the rest (barriers between), so a clip cache is prepared once per node, never concurrently; the CLI shares a
  decoded training bundle between the ranks of a node through memory-mapped files.

Test hook: with ``AVFR_TRAIN_HASHES=1`` in the environment each rank appends ``step <G hash> <D hash>`` (sha256 of
the parameters, 16 hex digits) to ``RUN_DIR/hashes-rank<R>.txt`` after every step (tests/test_train_distributed.py).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from avfr.codec.train.config import resolve_device

T = TypeVar("T")
HASH_ENV = "AVFR_TRAIN_HASHES"
TIMEOUT = datetime.timedelta(minutes=60)  # longest wait at a collective: rank 0 validating, data being prepared


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: rank ``rank`` of ``world_size``; ``backend`` "" when alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """In a process group (under torchrun), even of one process."""
        return bool(self.backend)

    @property
    def main(self) -> bool:
        """Rank 0: validates, logs and writes."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The training device of ``--device name``: ``cuda:LOCAL_RANK`` on CUDA in a process group."""
        device = resolve_device(name)
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.enabled else device

    def _tensor(self, values: list[float] | Tensor) -> Tensor:
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        return torch.as_tensor(values, dtype=torch.float64).to(device)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)

    def rank0(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's values of ``flags`` on every rank (decisions taken by rank 0's clock or files)."""
        if not self.enabled:
            return flags
        t = self._tensor([float(f) for f in flags])
        dist.broadcast(t, src=0)
        return tuple(bool(v) for v in t.tolist())

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        if not self.enabled:
            return flag
        t = self._tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def mean(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The mean over the ranks of scalar tensors (every rank passes the same keys)."""
        if not self.enabled or not values:
            return dict(values)
        keys = sorted(values)
        t = self._tensor(torch.stack([values[k].detach().double().reshape(()) for k in keys]))
        dist.all_reduce(t)
        return {k: v / self.world_size for k, v in zip(keys, t.cpu(), strict=True)}

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj`` in rank order on rank 0 (picklable), None elsewhere."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: T | None) -> T:
        """Rank 0's ``obj`` on every rank (picklable; the others pass None)."""
        if not self.enabled:
            return obj  # type: ignore[return-value]
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def wrap(self, objective: nn.Module, device: torch.device) -> nn.Module:
        """``objective`` in DistributedDataParallel (itself when alone)."""
        if not self.enabled:
            return objective
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)

    def in_turn(self, load: Callable[[], T]) -> T:
        """``load()`` on every rank in three turns with barriers between: rank 0, then local rank 0 of every other
        node, then all other ranks. What the first of a node writes (a prepared clip cache, a decoded bundle) the
        others of the node read, never at the same time; a cache on a disk shared by the nodes is written once."""
        turn = 0 if self.rank == 0 else 1 if self.local_rank == 0 else 2
        result: T | None = None
        for t in range(3 if self.enabled else 1):
            if t == turn:
                result = load()
            self.barrier()
        return result  # type: ignore[return-value]


def current() -> Dist:
    """This process's place in the initialised process group (the one-process ``Dist`` without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(),
                local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)), backend=str(dist.get_backend()))


def setup(device_name: str) -> Dist:
    """Join the process group torchrun describes in the environment (once: later calls return the same):
    NCCL on ``cuda:LOCAL_RANK`` when ``device_name`` resolves to CUDA, gloo otherwise. Without torchrun: the
    one-process ``Dist``.

    Raises:
        ValueError: more processes on this node than CUDA devices.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = resolve_device(device_name).type == "cuda"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but {torch.cuda.device_count()} CUDA devices: "
                             "--nproc-per-node must not exceed the GPUs of a node")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return current()


def teardown() -> None:
    """Leave the process group (when in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of a rank's sampler and RNGs: ``seed`` itself on rank 0 of a new run (a one-process run is rank 0),
    else a 32-bit number drawn from (seed, rank, step) by ``numpy.random.SeedSequence`` (``step`` > 0: streams
    restarted when a checkpoint is resumed with another world size)."""
    if rank == 0 and step == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1)[0])


def seed_all(seed: int, trainset: Any = None) -> None:
    """Seed python's, numpy's and torch's global generators (CUDA's too) and a ``TrainSet``'s streams."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if trainset is not None:
        trainset.reseed(seed)


class Objective(nn.Module):
    """What DDP wraps: ``net`` as the only submodule, ``losses[which](*args)`` as the forward.

    The losses hold ``net`` (and, for the generator's GAN terms, the discriminator): kept out of the module tree
    (a tuple), so that DDP syncs the gradients of ``net``'s parameters only, once per backward, whichever of
    ``net``'s parts the loss calls and how often.
    """

    def __init__(self, net: nn.Module, *losses: nn.Module) -> None:
        super().__init__()
        self.net = net
        self._losses = losses

    def forward(self, which: int, *args: Any) -> Any:
        return self._losses[which](*args)


def hash_file(out_dir: Path, rank: int) -> Path | None:
    """Where this rank records its parameter hashes when ``AVFR_TRAIN_HASHES=1`` asks for it (None: it does not)."""
    return out_dir / f"hashes-rank{rank}.txt" if os.environ.get(HASH_ENV) == "1" else None


def record_hashes(path: Path | None, step: int, *modules: nn.Module) -> None:
    """Append ``step`` and a sha256 (16 hex digits) of each module's parameters to ``path`` (no-op for None)."""
    if path is None:
        return
    digests = []
    for module in modules:
        h = hashlib.sha256()
        for name, p in module.named_parameters():
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        digests.append(h.hexdigest()[:16])
    with path.open("a") as f:
        f.write(f"{step} {' '.join(digests)}\n")
