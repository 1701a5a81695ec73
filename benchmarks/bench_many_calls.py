"""Many calls, one generator: frames/s and p95 frame latency against the number of concurrent calls.

    python benchmarks/bench_many_calls.py                                  # 1, 2, 4, 8, 16 calls, ORT on this CPU
    python benchmarks/bench_many_calls.py --calls 1,2,4 --seconds 3
    python benchmarks/bench_many_calls.py --device cuda --calls 1,8,64,256,400,512   # torch bf16, compiled

Each call submits 25 fps frame jobs on a real-time schedule (the calls' phases spread evenly over 40 ms), each
due ``--deadline-ms`` after it is submitted. Two modes run the same jobs:

- ``batched``: every call through one `BatchRenderer` (dynamic batching with the deadline; ``skip_late``: a job
  still waiting after its deadline is not drawn, as a realtime receiver skips it);
- ``single``: one call at a time, as one `Decoder` per call renders today: each call its own `ReceiverModel`
  (the shipped ONNX graphs, 1 thread) on its own worker thread, with the same skip rule.

Latency: job submitted -> picture ready, over the pictures drawn. fps: pictures drawn per second of the run
(from the first submission to the last job resolved). One JSON line per setting, then a table. Sources: stills
of ../shared/data when present (priors by mediapipe), else random images (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

FPS = 25
STILLS = Path(__file__).resolve().parents[2] / "shared" / "data" / "stills"


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def _sources(count: int, distinct: int = 8) -> list[np.ndarray]:
    """``count`` float32 (5, 256, 256) source inputs (stills with priors, cycled; random without the data)."""
    rng = np.random.default_rng(0)
    stills = sorted(STILLS.glob("*.png"))[:distinct] if STILLS.is_dir() else []
    if not stills:
        made = [rng.random((5, 256, 256), dtype=np.float32) for _ in range(min(count, distinct))]
    else:
        import cv2

        from avfr.codec.data import PriorExtractor
        from avfr.codec.runtime import source_input

        with PriorExtractor() as extractor:
            made = [source_input(np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]), extractor)[0]
                    for p in stills[:count]]
    return [made[i % len(made)] for i in range(count)]


class Load:
    """The calls' jobs on a real-time schedule, and what became of them."""

    def __init__(self, calls: int, seconds: float, deadline_s: float) -> None:
        self.calls, self.frames, self.deadline_s = calls, int(round(seconds * FPS)), deadline_s
        self.latency_s: list[float] = []
        self.skipped = self.late = 0
        self.lock = threading.Lock()
        self.resolved = threading.Semaphore(0)

    def schedule(self, t0: float) -> list[tuple[float, int, int]]:
        """(submit time, call, frame index), in time order."""
        events = [(t0 + c / (FPS * self.calls) + i / FPS, c, i) for c in range(self.calls) for i in range(self.frames)]
        return sorted(events)

    def done(self, submitted_s: float, deadline_s: float, drawn: bool) -> None:
        now = time.perf_counter()
        with self.lock:
            if drawn:
                self.latency_s.append(now - submitted_s)
                self.late += now > deadline_s
            else:
                self.skipped += 1
        self.resolved.release()

    def run(self, submit) -> float:
        """Submit every job at its time; wait for all; returns the run's seconds."""
        t0 = time.perf_counter() + 0.05
        for at, c, i in self.schedule(t0):
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now = time.perf_counter()
            submit(c, i, now, now + self.deadline_s)
        for _ in range(self.calls * self.frames):
            self.resolved.acquire(timeout=600)
        return time.perf_counter() - t0


def _drive(kp: np.ndarray, jac: np.ndarray, i: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """A slowly moving head: the source keypoints shifted along a per-call circle."""
    phase = 2 * np.pi * (i / 50.0 + c / 7.0)
    return (kp + 0.03 * np.array([np.cos(phase), np.sin(phase)], np.float32)).astype(np.float32), jac


def _drawn(future) -> bool:
    return not future.cancelled() and future.exception() is None and future.result() is not None


def run_batched(renderer, sources, load: Load, mel: np.ndarray) -> dict[str, object]:
    for c, source in enumerate(sources):
        renderer.register(c, source)
    keys = [renderer.source_keypoints(c) for c in range(len(sources))]
    before = (renderer.stats.batches, renderer.stats.frames)

    def submit(c: int, i: int, now: float, deadline: float) -> None:
        fut = renderer.submit(c, *_drive(*keys[c], i, c), mel, deadline_s=deadline)
        fut.add_done_callback(lambda f, now=now, d=deadline: load.done(now, d, _drawn(f)))

    seconds = load.run(submit)
    batches, frames = renderer.stats.batches - before[0], renderer.stats.frames - before[1]
    for c in range(len(sources)):
        renderer.close_call(c)
    return {"seconds": seconds, "mean_batch": frames / max(batches, 1), "batches": batches}


def run_single(sources, load: Load, mel: np.ndarray, threads: int) -> dict[str, object]:
    from avfr.codec.runtime import ReceiverModel, load_call_model

    manifest = load_call_model().manifest
    models = []
    for source in sources:
        model = ReceiverModel.from_manifest(manifest, threads=threads)
        model.set_source(source)
        model.frame(*model.source_keypoints, mel)  # warm
        models.append(model)
    jobs: list[queue.Queue] = [queue.Queue() for _ in sources]

    def work(c: int) -> None:
        model = models[c]
        while (job := jobs[c].get()) is not None:
            i, submitted, deadline = job
            if time.perf_counter() > deadline:  # too late: skipped, as the batched run does
                load.done(submitted, deadline, False)
                continue
            model.frame(*_drive(*model.source_keypoints, i, c), mel)
            load.done(submitted, deadline, True)

    workers = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(len(sources))]
    for w in workers:
        w.start()
    seconds = load.run(lambda c, i, now, deadline: jobs[c].put((i, now, deadline)))
    for c, w in enumerate(workers):
        jobs[c].put(None)
        w.join()
    return {"seconds": seconds, "mean_batch": 1.0, "providers": models[0].frame_session.get_providers()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="1,2,4,8,16", help="comma-separated numbers of concurrent calls")
    parser.add_argument("--seconds", type=float, default=5.0, help="call length of each setting")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--backend", choices=("ort", "torch"), help="default: torch on cuda, ort on cpu")
    parser.add_argument("--modes", default="batched,single")
    parser.add_argument("--deadline-ms", type=float, default=80.0, help="a picture is due this long after its job")
    parser.add_argument("--max-batch", type=int, help="default: the backend's (ORT: --workers; CUDA: 256)")
    parser.add_argument("--max-wait-ms", type=float, help="default: the backend's (ORT 0; torch: deadlines only)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="ORT items drawn at once")
    parser.add_argument("--no-compile", action="store_true", help="torch on CUDA without torch.compile")
    parser.add_argument("--single-max-calls", type=int, default=32, help="skip 'single' above this many calls")
    args = parser.parse_args()

    import torch

    from avfr.receiver.batch_backends import OrtBatchBackend, TorchBatchBackend
    from avfr.receiver.many_calls import BatchRenderer

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    backend_name = args.backend or ("torch" if device == "cuda" else "ort")
    counts = [int(n) for n in args.calls.split(",") if n.strip()]
    modes = [m for m in args.modes.split(",") if m]
    base = {"bench": "many_calls", "device": _device_name(device), "torch": torch.__version__,
            "onnxruntime": ort.__version__, "python": platform.python_version(),
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    mel = np.full((80, 19), -6.0, np.float32)
    sources = _sources(max(counts))
    renderer = None
    if "batched" in modes:
        t0 = time.perf_counter()
        if backend_name == "torch":
            backend = TorchBatchBackend(device, bf16=device == "cuda", compile=device == "cuda" and not args.no_compile,
                                        max_batch=args.max_batch)
        else:
            backend = OrtBatchBackend(workers=args.workers)
        wait = "backend" if args.max_wait_ms is None else args.max_wait_ms / 1e3
        renderer = BatchRenderer(backend, max_batch=args.max_batch, max_wait_s=wait, skip_late=True)
        print(json.dumps({**base, "event": "warmup", "backend": backend_name, "seconds": time.perf_counter() - t0,
                          "render_s_by_batch": renderer.times.as_dict()}), flush=True)
    rows = []
    for n in counts:
        for mode in modes:
            if mode == "single" and n > args.single_max_calls:
                continue
            load = Load(n, args.seconds, args.deadline_ms / 1e3)
            if mode == "batched":
                extra = run_batched(renderer, sources[:n], load, mel)
                setting = {"backend": backend_name, "max_batch": renderer.max_batch,
                           "max_wait_ms": None if renderer.batcher.max_wait_s is None
                           else 1e3 * renderer.batcher.max_wait_s}
                if backend_name == "ort":
                    setting["workers"] = args.workers
            else:
                extra = run_single(sources[:n], load, mel, threads=1)
                setting = {"backend": "ort per call"}
            lat = np.asarray(load.latency_s) * 1e3
            row = {**base, "mode": mode, "calls": n, **setting, "deadline_ms": args.deadline_ms,
                   "demand_fps": n * FPS, "submitted": n * load.frames, "drawn": len(lat), "skipped": load.skipped,
                   "late": load.late, "fps": len(lat) / extra.pop("seconds"),
                   "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                   "p95_ms": float(np.percentile(lat, 95)) if len(lat) else None, **extra}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if renderer is not None:
        renderer.close()
        renderer.backend.close()
    print(f"\n{'mode':8} {'calls':>5} {'demand':>7} {'fps':>8} {'p50 ms':>7} {'p95 ms':>7} {'skipped':>8} "
          f"{'late':>5} {'batch':>6}")
    for r in rows:
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.0f}"
        p95 = "-" if r["p95_ms"] is None else f"{r['p95_ms']:.0f}"
        print(f"{r['mode']:8} {r['calls']:>5} {r['demand_fps']:>7} {r['fps']:>8.1f} {p50:>7} {p95:>7} "
              f"{r['skipped']:>8} {r['late']:>5} {r['mean_batch']:>6.1f}")


if __name__ == "__main__":
    main()
