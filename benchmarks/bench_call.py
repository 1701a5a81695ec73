"""Glass-to-glass latency and its parts, fps, CPU and kbit/s of a real loopback call (aiortc on 127.0.0.1).

Both peers run in this process (one event loop, an encoder thread and a generator thread), the sender paced
at 25 fps from a clip of ../shared/data, the receiver playing out on the wall clock (adaptive jitter buffer),
for the centred and the causal audio window, with and without loss (20 % random loss + up to 100 ms jitter).

Per rendered frame: capture -> keypoint packet sent (priors + keypoint graph + packetising: `encode`),
-> arrival at the receiver (`network`), -> frame decided (`jitter_buffer`: waiting for reordering and the
audio window), -> frame out of the generator (`generation`, including its queue), and the sum, capture ->
frame out (`glass_to_glass`). Mean priors / keypoint-graph / generator times come from the peers' counters.
The centred window needs 100 ms of future audio, so its jitter-buffer share is ~100 ms larger.

    python benchmarks/bench_call.py [--clip retalking_2] [--frames 125] [--threads 1]

Prints one JSON line per mode with median and p95 of each part in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan")}
    a = np.asarray(values) * 1000
    return {"median": round(float(np.median(a)), 1), "p95": round(float(np.percentile(a, 95)), 1)}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_mode(args: argparse.Namespace, causal: bool, loss: bool) -> dict:
    from avfr.benchmarks.loopback import loopback_call
    from avfr.codec.runtime import decode_source_image
    from avfr.receiver import DecoderConfig
    from avfr.sender import EncoderConfig
    from avfr.sender.track import FileSource, Impairment

    video = args.data / "clips" / f"{args.clip}.mp4"
    wav = video.with_suffix(".wav")
    still = args.data / "stills" / f"{args.clip}.png"
    source = FileSource(video, wav if wav.exists() else None, args.frames)
    frames_in = list(source)  # decode up front: the benchmark times the call, not the file reader
    impairment = Impairment(loss=0.2, jitter_ms=100.0, seed=1) if loss else None
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    result = asyncio.run(loopback_call(
        frames_in, decode_source_image(still.read_bytes()) if still.exists() else None,
        encoder_config=EncoderConfig(causal_window=causal, threads=args.threads),
        decoder_config=DecoderConfig(realtime=True, threads=args.threads, timing=True),
        impairment=impairment, realtime=True, keep_frames=True, timeout_s=600))
    cpu = _cpu_s() - cpu0
    wall = time.perf_counter() - wall0
    link, enc, dec = result.link, result.encoder, result.decoder
    parts: dict[str, list[float]] = {k: [] for k in ("encode", "network", "jitter_buffer", "generation",
                                                     "glass_to_glass")}
    for frame in result.frames:
        i = frame.index
        if i not in link.capture_s or i not in result.frame_times:
            continue
        parts["glass_to_glass"].append(result.frame_times[i] - link.capture_s[i])
        if i in link.sent_s and i in result.arrival_s:
            parts["encode"].append(link.sent_s[i] - link.capture_s[i])
            parts["network"].append(result.arrival_s[i] - link.sent_s[i])
            parts["jitter_buffer"].append(frame.decided_s - result.arrival_s[i])
            parts["generation"].append(result.frame_times[i] - frame.decided_s)
    media_s = dec.frames_decided / 25.0
    encoded = max(1, enc.frames - enc.held_frames)
    return {
        "bench": "call", "window": "causal" if causal else "centred", "loss": 0.2 if loss else 0.0,
        "jitter_ms": 100.0 if loss else 0.0, "frames_in": len(frames_in), "frames_decided": dec.frames_decided,
        "frames_rendered": dec.frames_out, "render_skipped": dec.render_skipped,
        "fps_out": round(dec.frames_out / result.wall_s, 2), "call_s": round(result.wall_s, 2),
        "setup_ms": round(1000 * result.setup_s, 1), "cpu_percent": round(100 * cpu / wall, 1),
        "latency_ms": {k: _pct(v) for k, v in parts.items()},
        "priors_ms_mean": round(enc.priors_ms / encoded, 1), "keypoints_ms_mean": round(enc.keypoints_ms / encoded, 1),
        "generator_ms_mean": round(dec.generate_ms / max(1, dec.frames_out), 1),
        "sender_held_frames": enc.held_frames,
        "drift_checks": enc.drift_checks, "drift_check_ms_mean": round(enc.drift_ms / max(1, enc.drift_checks), 1),
        "keypoints_kbps": round(8 * dec.keypoint_bytes / media_s / 1000, 3),
        "audio_kbps": round(8 * dec.audio_bytes / media_s / 1000, 3),
        "source_kbit": round(8 * enc.source_bytes / 1000, 1), "source_refreshes": enc.refreshes,
        "lost": dec.lost, "late": dec.dropped_late, "concealed": dec.concealed,
        "audio_concealed": dec.audio_concealed, "playout_delay_ms": round(dec.delay_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--clip", default="retalking_2")
    parser.add_argument("--frames", type=int, default=125)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per graph")
    args = parser.parse_args(argv)
    if not (args.data / "clips" / f"{args.clip}.mp4").exists():
        print(f"{args.data}/clips/{args.clip}.mp4 not found", file=sys.stderr)
        return 2
    import aiortc
    import onnxruntime

    meta = {"device": f"{platform.machine()} cpu x{__import__('os').cpu_count()}", "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "aiortc": aiortc.__version__, "clip": args.clip,
            "command": "python " + " ".join(sys.argv)}
    warm = argparse.Namespace(**{**vars(args), "frames": 25})
    run_mode(warm, causal=False, loss=False)  # warm-up (model loads, mediapipe graphs, opus delay probe)
    for causal in (False, True):
        for loss in (False, True):
            print(json.dumps({**run_mode(args, causal, loss), **meta}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
