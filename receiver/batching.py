"""Dynamic batching with a deadline: when a `BatchRenderer` launches a batch of frame jobs from many calls.

The policy only (no threads, no clock of its own: `DeadlineBatcher.decide(now)` is all of it, so a test drives
it with any clock). A batch is launched

- when it is full (``max_batch`` jobs wait), or
- when waiting longer would make the most urgent job miss its deadline: ``now >= deadline - render time of a
  batch of the size it would have now - margin`` (render times measured per batch size, `RenderTimes`), or
- (optional) when the oldest job has waited ``max_wait_s``, which bounds the latency that batching adds when
  deadlines are far away.

So a call's frame is never held back past its playout time to fill a batch. Jobs are taken earliest deadline
first, ties in submission order; the renderer makes each call's deadlines non-decreasing at submit, so a
call's frames never overtake each other. With ``skip_late``, a job still waiting after its deadline is not drawn
(handed back apart, as a realtime receiver skips a frame it is too late for).
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "DeadlineBatcher", "PendingJob", "RenderTimes"]


@dataclass(order=True)
class PendingJob:
    """One frame job waiting (ordered by deadline, then submission).

    Attributes:
        deadline_s: when the picture is due (the renderer's clock; a job without a deadline is due when
            submitted, so it launches at once).
        seq: submission number (unique, increasing).
        call_id: the call it belongs to.
        submitted_s: when it was submitted (same clock).
        payload: what the renderer needs to draw it (opaque here).
        skippable: may be skipped once late (jobs submitted without a deadline are not).
    """

    deadline_s: float
    seq: int
    call_id: Hashable = field(compare=False)
    submitted_s: float = field(compare=False)
    payload: Any = field(compare=False, repr=False)
    skippable: bool = field(compare=False, default=True)


class RenderTimes:
    """Measured render time per batch size (seconds), kept conservative.

    A slower measurement is taken at once, a faster one moves the estimate by a tenth: a deadline is missed
    by underestimating, while overestimating only launches a batch a little early.

    Args:
        initial_per_frame_s: estimate per frame before anything was measured.
    """

    def __init__(self, initial_per_frame_s: float = 0.05) -> None:
        self.initial_per_frame_s = initial_per_frame_s
        self._s: dict[int, float] = {}

    def record(self, size: int, seconds: float) -> None:
        old = self._s.get(size)
        self._s[size] = seconds if old is None or seconds > old else 0.9 * old + 0.1 * seconds

    def estimate(self, size: int) -> float:
        """Seconds to render a batch of ``size``: its own measurement, else that of the nearest larger size
        measured (padding makes them equal on a compiled backend), else the largest one scaled linearly."""
        if size in self._s:
            return self._s[size]
        if not self._s:
            return size * self.initial_per_frame_s
        larger = [m for m in self._s if m > size]
        if larger:
            return self._s[min(larger)]
        top = max(self._s)
        return self._s[top] * size / top

    def as_dict(self) -> dict[int, float]:
        return dict(sorted(self._s.items()))


@dataclass
class Decision:
    """What `DeadlineBatcher.decide` says: a batch to launch now (maybe empty), jobs skipped as late, and when
    to decide again if nothing was launched (None: when a job arrives)."""

    batch: list[PendingJob]
    skipped: list[PendingJob]
    wake_s: float | None


class DeadlineBatcher:
    """The waiting jobs of all calls and the launch rule (module doc). Not thread-safe: the renderer holds
    its lock around every call.

    Args:
        max_batch: most jobs in one batch.
        times: render-time estimates (shared with whoever measures).
        margin_s: launched this much before the latest possible start (scheduling jitter).
        max_wait_s: launch once the oldest job waited this long, however far its deadline (None: never).
        skip_late: hand back jobs still waiting after their deadline instead of drawing them.
    """

    def __init__(self, max_batch: int, times: RenderTimes | None = None, margin_s: float = 0.005,
                 max_wait_s: float | None = None, skip_late: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.times = times or RenderTimes()
        self.margin_s = margin_s
        self.max_wait_s = max_wait_s
        self.skip_late = skip_late
        self._heap: list[PendingJob] = []
        self._arrivals: collections.deque[PendingJob] = collections.deque()  # submission order (for max_wait_s)
        self._waiting: set[int] = set()  # seq of the jobs in the heap

    def __len__(self) -> int:
        return len(self._heap)

    def waiting(self, seq: int) -> bool:
        """Whether the job numbered ``seq`` still waits."""
        return seq in self._waiting

    def push(self, job: PendingJob) -> None:
        heapq.heappush(self._heap, job)
        self._arrivals.append(job)
        self._waiting.add(job.seq)

    def _pop(self) -> PendingJob:
        job = heapq.heappop(self._heap)
        self._waiting.discard(job.seq)
        return job

    def _oldest_submitted(self) -> float:
        while self._arrivals and self._arrivals[0].seq not in self._waiting:
            self._arrivals.popleft()
        return self._arrivals[0].submitted_s if self._arrivals else math.inf

    def remove(self, call_id: Hashable | None = None) -> list[PendingJob]:
        """Take out every waiting job of ``call_id`` (None: of all calls), in deadline order."""
        taken = sorted(j for j in self._heap if call_id is None or j.call_id == call_id)
        if taken:
            gone = {j.seq for j in taken}
            self._heap = [j for j in self._heap if j.seq not in gone]
            heapq.heapify(self._heap)
            self._waiting -= gone
            self._arrivals = collections.deque(j for j in self._arrivals if j.seq in self._waiting)
        return taken

    def latest_start(self) -> float:
        """When the current queue must launch at the latest (inf when empty)."""
        if not self._heap:
            return math.inf
        size = min(len(self._heap), self.max_batch)
        start = self._heap[0].deadline_s - self.times.estimate(size) - self.margin_s
        if self.max_wait_s is not None:
            start = min(start, self._oldest_submitted() + self.max_wait_s)
        return start

    def decide(self, now: float) -> Decision:
        """Skip what is late (``skip_late``), then launch a batch if it is full or due, else say when to look
        again."""
        skipped = []
        if self.skip_late:
            while self._heap and self._heap[0].skippable and self._heap[0].deadline_s < now:
                skipped.append(self._pop())
        if not self._heap:
            return Decision([], skipped, None)
        start = self.latest_start()
        if len(self._heap) >= self.max_batch or now >= start:
            size = min(len(self._heap), self.max_batch)
            return Decision([self._pop() for _ in range(size)], skipped, None)
        return Decision([], skipped, start)
