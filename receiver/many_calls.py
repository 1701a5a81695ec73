"""`BatchRenderer`: one generator drawing the frames of many calls at once (the receiver side of a gateway).

Each call registers once with its source (the 5-channel source input, or the identity encoder's 8 tensors
already computed): the backend runs the identity encoder and keeps the result on its device. Per-frame jobs
from every call go into one queue; a scheduler thread launches batches by dynamic batching with a deadline
(`avfr.receiver.batching`: full, or the most urgent job's playout time minus the measured render time of a
batch that size), gathers each job's call source into the batch, and resolves one `concurrent.futures.Future`
per job, each call's in submission order. A bad job (unknown call, wrong shapes, non-finite values) is refused
at `submit` with a ValueError and never reaches the scheduler; a batch that fails fails its futures only.

    renderer = BatchRenderer()                            # torch on CUDA (bf16, compiled) if present, else ORT
    renderer.register("alice", source5)                   # float32 (5, 256, 256): source_input(rgb, priors)
    fut = renderer.submit("alice", kp, jac, mel, deadline_s=playout_s)   # -> uint8 (256, 256, 3)
    fut = renderer.submit_frame("alice", frame_job, deadline_s)          # a Decoder's FrameJob -> ReceivedFrame
    renderer.close_call("alice")                          # waiting jobs cancelled, source tensors freed
    renderer.close()

Deadlines are on the renderer's clock (default ``time.perf_counter``). With ``skip_late``, a job still waiting
after its deadline is not drawn (None; `submit_frame`: the call's last picture, ``repeated``), as `ReceivingPeer`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from avfr.receiver.batching import DeadlineBatcher, PendingJob, RenderTimes
from avfr.receiver.config import FrameJob, ReceivedFrame

__all__ = ["BatchRenderer", "BatchStats"]

logger = logging.getLogger(__name__)

MEL_SHAPE = (80, 19)


@dataclass
class BatchStats:
    """Counters of a `BatchRenderer` (frames: drawn; late: drawn after their deadline; skipped: not drawn,
    late (skip_late); cancelled: their call closed or their future was cancelled; failed: in a batch that
    raised; refused: `submit` said no)."""

    batches: int = 0
    frames: int = 0
    late: int = 0
    skipped: int = 0
    cancelled: int = 0
    failed: int = 0
    refused: int = 0


class _Source:
    """One call's source on the backend's device (a job keeps the one it was submitted with)."""

    __slots__ = ("tensors", "kp", "jac", "source_id", "__weakref__")

    def __init__(self, tensors: Any, kp: np.ndarray, jac: np.ndarray, source_id: int) -> None:
        self.tensors, self.kp, self.jac, self.source_id = tensors, kp, jac, source_id


@dataclass
class _Call:
    source: _Source
    relative_motion: bool
    last_job: tuple[int, float] = (-1, -math.inf)  # seq, deadline: a job is never due before one still waiting
    last_rgb: np.ndarray | None = None  # its last picture drawn


@dataclass
class _Work:
    source: _Source
    kp: np.ndarray
    jac: np.ndarray
    mel: np.ndarray
    held: int
    future: Future
    wrap: Callable[[np.ndarray | None, float], Any] | None  # picture (None: skipped), done time -> result


class BatchRenderer:
    """Many calls, one generator (module doc).

    Args:
        backend: `OrtBatchBackend` / `TorchBatchBackend` (default: `default_backend()`, closed with the
            renderer; one passed in is the caller's to close).
        max_batch: most frames per batch (default: the backend's).
        margin_s: a batch is launched this much before the latest start that meets the most urgent deadline.
        max_wait_s: also launch once the oldest job waited this long (None: wait as long as deadlines allow;
            "backend": the backend's choice: 0 on ORT, where a batch draws no faster per frame than one item,
            None on torch).
        skip_late: do not draw a job still waiting after its deadline.
        clock: seconds, the clock deadlines are given on.
        start: run the scheduler thread (False: nothing runs until `step` is called; for tests).
        warmup: time a batch of each of the backend's warm-up sizes first (render-time estimates; a compiled
            backend compiles here).
    """

    def __init__(self, backend: Any = None, *, max_batch: int | None = None, margin_s: float = 0.005,
                 max_wait_s: float | None | str = "backend", skip_late: bool = False,
                 clock: Callable[[], float] = time.perf_counter, start: bool = True, warmup: bool = True) -> None:
        self._owns_backend = backend is None
        if backend is None:
            from avfr.receiver.batch_backends import default_backend

            backend = default_backend()
        self.backend = backend
        self.clock = clock
        self.times = RenderTimes()
        self.stats = BatchStats()
        if max_wait_s == "backend":
            max_wait_s = backend.max_wait_s
        self.batcher = DeadlineBatcher(max_batch or backend.max_batch, self.times, margin_s, max_wait_s, skip_late)
        self._calls: dict[Hashable, _Call] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        if warmup:
            self._warmup()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="avfr-batch-renderer", daemon=True)
            self._thread.start()

    @property
    def max_batch(self) -> int:
        return self.batcher.max_batch

    @property
    def calls(self) -> list[Hashable]:
        with self._cond:
            return list(self._calls)

    @property
    def pending(self) -> int:  # jobs waiting to be launched
        with self._cond:
            return len(self.batcher)

    # --- calls -------------------------------------------------------------------------------------------

    def register(self, call_id: Hashable, source: np.ndarray | None = None, *,
                 tensors: Mapping[str, Any] | None = None, source_id: int = 0, relative_motion: bool = False,
                 replace: bool = False) -> None:
        """Add a call, or give it a new source (``replace``: its jobs already submitted keep the old one).

        Args:
            call_id: any hashable id.
            source: float32 (5, 256, 256) in [0, 1], the source input (`avfr.codec.runtime.source_input`):
                the identity encoder runs on it here, on the calling thread.
            tensors: instead, the identity encoder's 8 outputs already computed (names of
                ``avfr.codec.runtime.SOURCE_OUTPUTS``, batch 1; e.g. `ReceiverModel.source_tensors`).
            source_id: the source image's id (`ReceivedFrame.source_id`).
            relative_motion: `submit_frame` drives this call's source with motion relative to the first frame.

        Raises:
            ValueError: neither or both of source / tensors, bad shapes, the call exists (without replace).
            RuntimeError: the renderer is closed.
        """
        if (source is None) == (tensors is None):
            raise ValueError("give a call either its source input or its source tensors")
        with self._cond:
            if call_id in self._calls and not replace:
                raise ValueError(f"call {call_id!r} is already registered")
        made = self.backend.encode(source) if tensors is None else self.backend.adopt(tensors)
        kp, jac = self.backend.keypoints(made)
        src = _Source(made, np.array(kp, np.float32), np.array(jac, np.float32), source_id)
        with self._cond:
            if self._closed:
                raise RuntimeError("the BatchRenderer is closed")
            call = self._calls.get(call_id)
            if call is not None and replace:
                call.source = src
            elif call is not None:
                raise ValueError(f"call {call_id!r} is already registered")
            else:
                self._calls[call_id] = _Call(src, relative_motion)

    def source_keypoints(self, call_id: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """kp (K, 2), jac (K, 2, 2) of the call's current source."""
        src = self._lookup(call_id).source
        return src.kp, src.jac

    def close_call(self, call_id: Hashable) -> int:
        """Forget a call: its waiting jobs are cancelled, its source tensors freed once no batch in flight uses
        them; returns the number of jobs cancelled. An unknown id is a no-op (returns 0)."""
        with self._cond:
            if self._calls.pop(call_id, None) is None:
                return 0
            taken = self.batcher.remove(call_id)
        for job in taken:
            job.payload.future.cancel()
        self.stats.cancelled += len(taken)
        return len(taken)

    # --- jobs --------------------------------------------------------------------------------------------

    def submit(self, call_id: Hashable, kp: np.ndarray, jac: np.ndarray, mel: np.ndarray,
               deadline_s: float | None = None, held_frames: int = 0) -> Future:
        """Queue one frame of a call.

        Args:
            kp: (K, 2) or (1, K, 2) driving keypoints (already relative-adapted if wanted); jac: (K, 2, 2) or
                (1, K, 2, 2); mel: (80, 19) or (1, 1, 80, 19) log-mel window.
            deadline_s: when the picture must be ready (the renderer's clock); None: as soon as possible.
            held_frames: for how many frames kp have been held (models with that input).

        Returns:
            A Future of uint8 (256, 256, 3) RGB (None: skipped as late), cancelled if the call closes first.

        Raises:
            ValueError: unknown call, wrong shapes or non-finite values (counted in stats.refused).
            RuntimeError: the renderer is closed.
        """
        return self._submit(call_id, kp, jac, mel, deadline_s, held_frames, None)

    def submit_frame(self, call_id: Hashable, job: FrameJob, deadline_s: float | None = None,
                     first_kp: tuple[np.ndarray, np.ndarray] | None = None) -> Future:
        """Queue a `Decoder`'s FrameJob (what `Renderer.frame` draws): the source pose when it has no
        keypoints, relative motion when the call was registered with it. Returns a Future of `ReceivedFrame`
        (skipped as late: the call's last picture, ``repeated``). Raises as `submit`."""
        call = self._lookup(call_id)
        src = call.source
        kp, jac = (src.kp, src.jac) if job.kp is None else (job.kp, job.jac)
        if job.kp is not None and first_kp is not None and call.relative_motion:
            from avfr.codec.runtime import relative_motion

            kp, jac = relative_motion(kp, jac, *first_kp, src.kp, src.jac)

        def wrap(rgb: np.ndarray | None, done_s: float) -> ReceivedFrame:
            repeated = rgb is None
            if repeated:
                rgb = call.last_rgb if call.last_rgb is not None else np.zeros((256, 256, 3), np.uint8)
            return ReceivedFrame(job.index, job.ts_90k, rgb, job.pcm, job.concealed, src.source_id, job.decided_s,
                                 done_s, job.held_frames, repeated=repeated)

        return self._submit(call_id, kp, jac, job.mel, deadline_s, job.held_frames, wrap)

    def _submit(self, call_id: Hashable, kp: Any, jac: Any, mel: Any, deadline_s: float | None, held: int,
                wrap: Callable | None) -> Future:
        try:
            k = self.backend.num_kp
            kp_a = _checked("kp", kp, (k, 2))
            jac_a = _checked("jac", jac, (k, 2, 2))
            mel_a = _checked("mel", mel, MEL_SHAPE)
            held = max(0, int(held))
            if deadline_s is not None and math.isnan(deadline_s):
                raise ValueError("deadline_s is NaN")
        except (TypeError, ValueError) as exc:
            self.stats.refused += 1
            raise ValueError(f"call {call_id!r}: job refused: {exc}") from None
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the BatchRenderer is closed")
            call = self._calls.get(call_id)
            if call is None:
                self.stats.refused += 1
                raise ValueError(f"job refused: no call {call_id!r} is registered")
            now = self.clock()
            due = now if deadline_s is None else float(deadline_s)
            due = max(due, call.last_job[1]) if self.batcher.waiting(call.last_job[0]) else due  # call's order
            seq = next(self._seq)
            call.last_job = (seq, due)
            work = _Work(call.source, kp_a, jac_a, mel_a, held, future, wrap)
            self.batcher.push(PendingJob(due, seq, call_id, now, work, deadline_s is not None))
            self._cond.notify()
        return future

    # --- scheduling ----------------------------------------------------------------------------------------

    def step(self) -> float | None:
        """One scheduling decision on this thread: resolve late jobs, draw a batch if one is due. Returns when
        to decide again if nothing was launched (None: once a job arrives, or a batch was drawn)."""
        with self._cond:
            decision = self.batcher.decide(self.clock())
        self._skip(decision.skipped)
        if decision.batch:
            self._draw(decision.batch)
        return decision.wake_s

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                decision = self.batcher.decide(self.clock())
                if not decision.batch and not decision.skipped:
                    wait = None if decision.wake_s is None else max(0.0, decision.wake_s - self.clock())
                    self._cond.wait(wait)
                    continue
            try:
                self._skip(decision.skipped)
                self._draw(decision.batch)
            except Exception:  # noqa: BLE001 - a bug here must not stop every call's frames
                logger.exception("batch scheduling failed")

    def _skip(self, jobs: list[PendingJob]) -> None:
        for job in jobs:
            work = job.payload
            if work.future.set_running_or_notify_cancel():
                self.stats.skipped += 1
                work.future.set_result(None if work.wrap is None else work.wrap(None, self.clock()))

    def _draw(self, batch: list[PendingJob]) -> None:
        jobs = [j for j in batch if j.payload.future.set_running_or_notify_cancel()]
        self.stats.cancelled += len(batch) - len(jobs)
        if not jobs:
            return
        works = [j.payload for j in jobs]
        t0 = time.perf_counter()
        try:
            rgb = self.backend.render(
                [w.source.tensors for w in works], np.stack([w.kp for w in works]), np.stack([w.jac for w in works]),
                np.stack([w.mel for w in works])[:, None], np.array([[w.held] for w in works], np.float32))
        except Exception as exc:  # noqa: BLE001 - the batch's futures carry it, the scheduler goes on
            logger.exception("a batch of %d frames failed", len(jobs))
            self.stats.failed += len(jobs)
            for w in works:
                w.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - t0
        done = self.clock()
        with self._cond:
            self.times.record(len(jobs), elapsed)
            self.stats.batches += 1
            self.stats.frames += len(jobs)
            self.stats.late += sum(j.skippable and done > j.deadline_s for j in jobs)
            for job, picture in zip(jobs, rgb, strict=True):
                call = self._calls.get(job.call_id)
                if call is not None:
                    call.last_rgb = picture
        for job, picture in zip(jobs, rgb, strict=True):
            work = job.payload
            try:
                work.future.set_result(picture if work.wrap is None else work.wrap(picture, done))
            except Exception as exc:  # noqa: BLE001 - e.g. a bad FrameJob field: that job only
                work.future.set_exception(exc)

    def _warmup(self) -> None:
        source = self.backend.encode(np.zeros((5, 256, 256), np.float32))
        k = self.backend.num_kp
        for size in self.backend.warmup_sizes(self.max_batch):
            args = ([source] * size, np.zeros((size, k, 2), np.float32),
                    np.tile(np.eye(2, dtype=np.float32), (size, k, 1, 1)),
                    np.full((size, 1, *MEL_SHAPE), -6.0, np.float32), np.zeros((size, 1), np.float32))
            if getattr(self.backend, "compiled", False):
                self.backend.render(*args)  # compiles
            t0 = time.perf_counter()
            self.backend.render(*args)
            self.times.record(size, time.perf_counter() - t0)

    def _lookup(self, call_id: Hashable) -> _Call:
        with self._cond:
            call = self._calls.get(call_id)
            if call is None:
                self.stats.refused += 1
                raise ValueError(f"job refused: no call {call_id!r} is registered")
            return call

    def close(self) -> None:
        """Stop the scheduler (the batch in flight finishes), cancel every waiting job, forget all calls."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            taken = self.batcher.remove()
            self._calls.clear()
            self._cond.notify_all()
        for job in taken:
            job.payload.future.cancel()
        self.stats.cancelled += len(taken)
        if self._thread is not None:
            self._thread.join(timeout=60.0)
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> BatchRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """float32 array of ``shape`` (leading 1s allowed), finite."""
    a = np.asarray(value, dtype=np.float32)
    core = a.shape[a.ndim - len(shape):] if a.ndim >= len(shape) else a.shape
    if a.ndim < len(shape) or core != shape or any(d != 1 for d in a.shape[:a.ndim - len(shape)]):
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return np.ascontiguousarray(a.reshape(shape))
