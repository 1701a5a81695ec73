"""Data-pipeline benchmark: prior extraction and training-sample loading speed.

Prints JSON lines (one per measurement) with frames/s, per-item median and p95 (after warm-up),
the device, the versions and the exact command.

    python benchmarks/bench_data.py                       # ../shared/data, grid_lwbsza, default cache
    python benchmarks/bench_data.py --clip pcavs_00086 --frames 100 --samples 300 --workers 0 2

Measured: mediapipe face mesh (+ drawing), selfie segmentation, both together (what
``avfr-codec data prepare`` runs per frame), and ``TalkingHeadDataset.__getitem__`` from the cache
(in-process, then through a DataLoader with worker processes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _base() -> dict[str, object]:
    import av
    import cv2
    import mediapipe
    import torch

    return {
        "device": f"cpu: {_cpu_name()}",
        "mediapipe": mediapipe.__version__,
        "av": av.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    }


def _time(fn: Callable[[int], object], count: int, warmup: int) -> dict[str, float]:
    """Call fn(i) for i in range(count) after ``warmup`` calls; per-call ms stats and items/s."""
    for i in range(warmup):
        fn(i % count)
    times = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    total_s = time.perf_counter() - started
    a = np.asarray(times)
    return {
        "per_s": round(count / total_s, 1),
        "median_ms": round(float(np.median(a)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "n": count,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="data folder")
    parser.add_argument("--clip", default="grid_lwbsza", help="clip id for prior extraction")
    parser.add_argument("--frames", type=int, default=75, help="frames timed per prior measurement")
    parser.add_argument("--samples", type=int, default=200, help="dataset samples timed")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="*", default=[2], help="DataLoader worker counts")
    parser.add_argument("--split", default="train", help="dataset split read from the cache")
    parser.add_argument("--cache", type=Path, default=None,
                        help="prepared cache for the dataset timing (default: the user cache dir); "
                        "when the split is not prepared there, the one clip is used")
    args = parser.parse_args()

    import torch

    from avfr.codec.data import (
        PriorExtractor,
        TalkingHeadDataset,
        VideoReader,
        discover_clips,
        find_entries,
        prepare,
        render_mesh,
    )

    base = _base()
    sources = [s for s in discover_clips(args.data) if s.clip_id == args.clip]
    if not sources:
        raise SystemExit(f"clip {args.clip} not in {args.data}")
    frames = VideoReader(sources[0].video_path).read_all()[: args.frames]
    count = len(frames)

    def emit(name: str, unit: str, stats: dict[str, float], **extra: object) -> None:
        record = {"bench": name, unit: stats.pop("per_s"), **stats, **extra, **base}
        print(json.dumps(record), flush=True)

    def mesh_frame(i: int) -> np.ndarray:
        return render_mesh(mesh_only.face_landmarks(frames[i])[0])

    with PriorExtractor(mask=False) as mesh_only:
        emit("priors_mesh", "frames_per_s", _time(mesh_frame, count, args.warmup),
             clip=args.clip, note="face mesh (refined, up to 2 faces) + drawing")
    with PriorExtractor(mesh=False) as mask_only:
        stats = _time(lambda i: mask_only.segmentation(frames[i]), count, args.warmup)
        emit("priors_mask", "frames_per_s", stats, clip=args.clip, note="selfie segmentation, model 0")
    with PriorExtractor() as both:
        emit("priors_mesh_and_mask", "frames_per_s", _time(lambda i: both(frames[i]), count, args.warmup),
             clip=args.clip)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = prepare(args.data, tmp, sources=sources, progress=False)
        prepare_s = time.perf_counter() - started
        n = summary.entries[0].num_frames
        emit("prepare_clip", "frames_per_s", {"per_s": round(n / prepare_s, 1), "n": n}, clip=args.clip,
             wall_s=round(prepare_s, 2), note="decode + priors + cache write of one clip, incl. model load")

        try:
            entries = find_entries(args.data, args.cache, split=args.split, prepare_missing=False)
            scope = f"split {args.split}"
        except FileNotFoundError:
            entries, scope = summary.entries, f"clip {args.clip}"
        dataset = TalkingHeadDataset(entries)
        order = np.random.default_rng(0).integers(0, len(dataset), args.samples)
        stats = _time(lambda i: dataset[int(order[i])], args.samples, args.warmup)
        emit("dataset_getitem", "samples_per_s", stats, scope=scope, dataset_len=len(dataset),
             threads=torch.get_num_threads(), note="random indices, in-process")
        for workers in args.workers:
            if workers <= 0:
                continue
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=8, shuffle=True, num_workers=workers, persistent_workers=True
            )
            iterator = iter(loader)
            next(iterator)  # warm-up: starts the workers
            started = time.perf_counter()
            seen = 0
            while seen < args.samples:
                try:
                    batch = next(iterator)
                except StopIteration:
                    iterator = iter(loader)
                    continue
                seen += batch[0].shape[0]
            elapsed = time.perf_counter() - started
            emit("dataloader", "samples_per_s", {"per_s": round(seen / elapsed, 1), "n": seen},
                 scope=scope, workers=workers, batch_size=8)
            del iterator, loader
    return 0


if __name__ == "__main__":
    sys.exit(main())
