"""What the call delivers under network impairment and hostile input: frames, speech, drops by cause, RSS.

Two kinds of case, on the dev clips of ../shared/data (first ``--max-frames`` frames of each):

- ``loopback`` cases run the real call (``loopback_call``: aiortc on 127.0.0.1, the sender paced at 25 fps,
  the receiver on the wall clock with its adaptive jitter buffer) with ``Impairment(loss=, jitter_ms=)`` on the
  media channel: 0 %, 10 %, 30 % random loss and 100 ms uniform jitter (the packets reorder).
- ``replay`` cases record the Encoder's messages once per clip (``Encoder`` with the call's config, open loop:
  the Decoder's Refresh replies are not fed back) and feed a damaged copy straight into a ``Decoder``, in
  arrival order (``realtime=False``) and on a simulated realtime clock (frame i's messages arrive at
  ``i * 40 ms + 5 ms``, ``tick`` every 10 ms): a corrupt burst (a run of media messages replaced by random
  bytes, or bit-flipped), every media message and the Hello duplicated, a run of media messages and a
  mid-call Hello with the next wire version, the call's own Hello sent with it, and the same seeded
  loss / jitter as the loopback cases. Deterministic; frames are the Decoder's decided frames (its
  FrameJobs; ``--render`` draws them with the generator too).

Per case and clip: frames in/out, speech samples in/out, 40 ms speech frames out that are silent (RMS below
``--silence-dbfs``) against the sent speech's own silent frames (and those silent out but not in), the
Decoder's stats counters (drops by cause, concealed frames, ...), Decoder.receive time median/p95 (replay) or
capture->out latency median/p95 (loopback), and the process's peak RSS so far.

    python benchmarks/bench_impairment.py [--clips retalking_2,lp_d9] [--max-frames 125] [--cases all]

Prints one JSON line per (case, mode, clip) and one summary line per (case, mode) over the clips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfr.proto import WIRE_VERSION, peek_type

SAMPLES_PER_FRAME = 640  # 40 ms at 16 kHz
STAT_KEYS = ("received", "dropped_malformed", "dropped_late", "dropped_broken", "duplicates", "duplicate_hellos",
             "refused_messages", "lost", "concealed", "audio_received", "audio_concealed", "key_requests",
             "sources", "frames_decided", "render_skipped")
LOOPBACK_CASES = {"loss0": (0.0, 0.0), "loss10": (0.1, 0.0), "loss30": (0.3, 0.0), "jitter100": (0.0, 100.0)}
REPLAY_CASES = ("clean", "corrupt_bytes", "corrupt_flips", "duplicate", "wrong_version", "wrong_version_first",
                "loss10", "loss30", "jitter100")


@dataclass
class Recording:
    """The Encoder's messages of one clip: (frame index, channel, bytes); index -1: start(), T: finish()."""

    clip: str
    num_frames: int
    pcm: np.ndarray  # float32 (T * 640,) the speech sent
    messages: list[tuple[int, str, bytes]] = field(default_factory=list)
    encode_s: float = 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dev_clips(data: Path) -> list[str]:
    """Clip ids of the manifest's dev split, in manifest order."""
    manifest = json.loads((data / "manifest.json").read_text())
    return [c["id"] for c in manifest["clips"] if c.get("split") == "dev"]


def clip_source(data: Path, clip: str, max_frames: int) -> tuple[list, np.ndarray | None]:
    """(CapturedFrames of the clip, its still as uint8 (256, 256, 3) RGB or None)."""
    from avfr.codec.runtime import decode_source_image
    from avfr.sender.track import FileSource

    video = data / "clips" / f"{clip}.mp4"
    wav = video.with_suffix(".wav")
    still = data / "stills" / f"{clip}.png"
    frames = list(FileSource(video, wav if wav.exists() else None, max_frames or None))
    return frames, decode_source_image(still.read_bytes()) if still.exists() else None


def record(data: Path, clip: str, max_frames: int, threads: int = 1, model: object = None) -> Recording:
    """Run the call's Encoder over a clip and keep every message it emits."""
    from avfr.sender import Encoder, EncoderConfig

    frames, still = clip_source(data, clip, max_frames)
    rec = Recording(clip, len(frames), np.concatenate([f.pcm for f in frames]).astype(np.float32))
    t0 = time.perf_counter()
    with Encoder(EncoderConfig(threads=threads), model) as enc:
        rec.messages += [(-1, m.channel, m.data) for m in enc.start(still if still is not None else frames[0].rgb)]
        for f in frames:
            rec.messages += [(f.index, m.channel, m.data)
                             for m in enc.encode_frame(f.index, f.rgb) + enc.encode_audio(f.pcm)]
        rec.messages += [(len(frames), m.channel, m.data) for m in enc.finish()]
    rec.encode_s = time.perf_counter() - t0
    return rec


OTHER_VERSION = WIRE_VERSION + 1  # what a newer sender would speak


def _retag(data: bytes, version: int) -> bytes:
    """The message (a valid one of this version) as `version` would frame it: its type in the tag byte."""
    return bytes([(version << 4) | peek_type(data)]) + data[1:]


def damage(rec: Recording, case: str, seed: int = 1, burst: int = 20) -> list[tuple[float, str, bytes]]:
    """The recording's messages as (arrival s on the simulated clock, channel, bytes) after `case`'s damage."""
    from avfr.proto import MEDIA_CHANNEL_LABEL

    rng = random.Random(seed)
    first = rec.num_frames // 3  # the burst starts at the first media message of this frame
    out: list[tuple[float, str, bytes]] = []
    burst_left = burst
    hello = rec.messages[0][2]
    for frame, channel, data in rec.messages:
        if case == "wrong_version_first" and data is hello:  # a newer sender: refused at the Hello
            data = _retag(hello, OTHER_VERSION)
        t = max(0, frame) * 0.04 + 0.005
        media = channel == MEDIA_CHANNEL_LABEL
        if media and frame >= first and burst_left > 0 and case in ("corrupt_bytes", "corrupt_flips",
                                                                      "wrong_version"):
            burst_left -= 1
            if case == "corrupt_bytes":
                data = bytes(rng.getrandbits(8) for _ in range(len(data)))
            elif case == "corrupt_flips":
                buf = bytearray(data)
                for _ in range(rng.randint(1, 4)):
                    pos = rng.randrange(len(buf) * 8)
                    buf[pos // 8] ^= 1 << (pos % 8)
                data = bytes(buf)
            else:
                data = _retag(data, OTHER_VERSION)
        if media and case.startswith("loss") and frame >= 1 and rng.random() < int(case[4:]) / 100:
            continue
        if media and case == "jitter100":
            t += rng.uniform(0.0, 0.1)
        out.append((t, channel, data))
        if media and case == "duplicate":
            out.append((t, channel, data))
    mid = rec.num_frames // 2 * 0.04 + 0.006
    if case == "duplicate":
        out.append((mid, rec.messages[0][1], hello))
    elif case == "wrong_version":
        out.append((mid, rec.messages[0][1], _retag(hello, OTHER_VERSION)))
    out.sort(key=lambda m: m[0])  # stable: same-time messages keep their order
    return out


def silent_frames(pcm: np.ndarray, dbfs: float) -> np.ndarray:
    """bool (T,): 40 ms frames of float32 PCM whose RMS is below `dbfs`."""
    n = len(pcm) // SAMPLES_PER_FRAME
    frames = pcm[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME).astype(np.float64)
    return np.sqrt(np.mean(frames**2, axis=1)) < 10 ** (dbfs / 20)


def speech_figures(pcm_in: np.ndarray, out: dict[int, np.ndarray], dbfs: float) -> dict[str, int]:
    """Samples in/out, silent 40 ms frames in / out, and frames silent out whose input was not silent."""
    sil_in = silent_frames(pcm_in, dbfs)
    idx = sorted(i for i in out if 0 <= i < len(sil_in))
    sil_out = silent_frames(np.concatenate([out[i] for i in idx]), dbfs) if idx else np.zeros(0, bool)
    return {"speech_samples_in": int(len(pcm_in)), "speech_samples_out": int(sum(len(p) for p in out.values())),
            "silent_frames_in": int(sil_in.sum()), "silent_frames_out": int(sil_out.sum()),
            "silent_out_not_in": int(np.sum(sil_out & ~sil_in[idx])) if idx else 0}


def _pct(values: list[float], scale: float) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan")}
    a = np.asarray(values) * scale
    return {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2)}


def replay(rec: Recording, case: str, realtime: bool, model: object, args: argparse.Namespace) -> dict:
    """Feed `case`'s damaged messages into a Decoder; frames are its FrameJobs (drawn with --render)."""
    from avfr.proto import MessageType
    from avfr.receiver import Decoder, DecoderConfig, FrameJob

    msgs = damage(rec, case, args.seed, args.burst)
    dec = Decoder(DecoderConfig(realtime=realtime, threads=args.threads), model, render=args.render)
    pcm_out: dict[int, np.ndarray] = {}
    times: list[float] = []
    held = 0
    replies: dict[str, int] = {}

    def collect() -> None:
        nonlocal held
        for reply in dec.take_replies():
            name = MessageType(reply[0] & 0x0F).name.lower()
            replies[name] = replies.get(name, 0) + 1
        for job in dec.take_jobs():
            if args.render:
                dec.run_job(job)
            if isinstance(job, FrameJob):
                pcm_out[job.index] = job.pcm
                held += int(job.held_frames > 0)
    with dec:
        clock = 0.0
        for t, channel, data in msgs:
            while realtime and clock + 0.01 < t:
                clock += 0.01
                dec.tick(clock)
                collect()
            t0 = time.perf_counter()
            dec.receive(channel, data, now_s=t if realtime else 0.0)
            times.append(time.perf_counter() - t0)
            collect()
        end = (msgs[-1][0] if msgs else 0.0) + 0.5
        while realtime and clock < end:
            clock += 0.01
            dec.tick(clock)
            collect()
        dec.finish()
        collect()
    stats = dec.stats
    return {"frames_in": rec.num_frames, "frames_out": len(pcm_out), "held_frames": held,
            **speech_figures(rec.pcm, pcm_out, args.silence_dbfs),
            **{k: getattr(stats, k) for k in STAT_KEYS}, "refused": dec.refused,
            "replies": replies, "messages_in": len(msgs), "receive_us": _pct(times, 1e6)}


def loopback(data: Path, clip: str, case: str, realtime: bool, args: argparse.Namespace) -> dict:
    """One real loopback call of the clip with `case`'s loss and jitter on the media channel."""
    from avfr.benchmarks.loopback import loopback_call
    from avfr.receiver import DecoderConfig
    from avfr.sender import EncoderConfig
    from avfr.sender.track import Impairment

    frames, still = clip_source(data, clip, args.max_frames)
    loss, jitter_ms = LOOPBACK_CASES[case]
    imp = Impairment(loss=loss, jitter_ms=jitter_ms, seed=args.seed) if loss or jitter_ms else None
    res = asyncio.run(loopback_call(
        frames, still, encoder_config=EncoderConfig(threads=args.threads),
        decoder_config=DecoderConfig(realtime=realtime, threads=args.threads), impairment=imp,
        realtime=realtime, keep_frames=True, timeout_s=600))
    pcm_in = np.concatenate([f.pcm for f in frames]).astype(np.float32)
    pcm_out = {f.index: f.pcm for f in res.frames}
    latency = [res.frame_times[i] - res.link.capture_s[i] for i in res.frame_times if i in res.link.capture_s]
    return {"frames_in": len(frames), "frames_out": len(res.frames),
            "held_frames": sum(int(f.held_frames > 0) for f in res.frames),
            "repeated_frames": sum(int(f.repeated) for f in res.frames),
            **speech_figures(pcm_in, pcm_out, args.silence_dbfs),
            **{k: getattr(res.decoder, k) for k in STAT_KEYS},
            "rendered": res.decoder.frames_out, "dropped_on_purpose": res.link.dropped_on_purpose,
            "sender_held_frames": res.encoder.held_frames,
            "call_s": round(res.wall_s, 2), "latency_ms": _pct(latency, 1e3) if realtime else None}


def summarise(rows: list[dict]) -> dict:
    """Sums of the integer figures over the clips (the summary line of a case)."""
    keys = [k for k, v in rows[0].items() if isinstance(v, int) and not isinstance(v, bool)]
    out: dict = {k: sum(r[k] for r in rows) for k in keys}
    for part in ("receive_us", "latency_ms"):
        if rows[0].get(part):
            out[f"{part}_median_mean"] = round(float(np.mean([r[part]["median"] for r in rows])), 2)
            out[f"{part}_p95_max"] = round(float(np.max([r[part]["p95"] for r in rows])), 2)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--clips", default="", help="comma-separated clip ids (default: the dev split)")
    parser.add_argument("--max-frames", type=int, default=125, help="frames per clip (0: all)")
    parser.add_argument("--cases", default="all",
                        help=f"comma-separated: loopback:{{{','.join(LOOPBACK_CASES)}}} and "
                             f"replay:{{{','.join(REPLAY_CASES)}}} (or all, loopback, replay)")
    parser.add_argument("--loopback-modes", default="realtime", help="realtime,arrival (loopback cases)")
    parser.add_argument("--replay-modes", default="arrival,realtime", help="arrival,realtime (replay cases)")
    parser.add_argument("--burst", type=int, default=20, help="media messages in a corrupt / wrong-version run")
    parser.add_argument("--silence-dbfs", type=float, default=-50.0, help="40 ms frames below this RMS are silent")
    parser.add_argument("--render", action="store_true", help="replay: draw the frames with the generator too")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per graph")
    args = parser.parse_args(argv)

    import aiortc
    import onnxruntime

    from avfr.codec.runtime import load_call_model

    clips = [c for c in args.clips.split(",") if c] or dev_clips(args.data)
    missing = [c for c in clips if not (args.data / "clips" / f"{c}.mp4").exists()]
    if missing:
        print(f"clips not found in {args.data}/clips: {', '.join(missing)}", file=sys.stderr)
        return 2
    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    chosen = [("loopback", c) for c in LOOPBACK_CASES if wanted & {"all", "loopback", f"loopback:{c}"}]
    chosen += [("replay", c) for c in REPLAY_CASES if wanted & {"all", "replay", f"replay:{c}"}]
    if not chosen:
        parser.error("--cases selects nothing")
    meta = {"bench": "impairment", "device": f"{platform.machine()} cpu x{os.cpu_count()}",
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "aiortc": aiortc.__version__, "numpy": np.__version__, "max_frames": args.max_frames,
            "command": "python " + " ".join(sys.argv)}
    model = load_call_model()
    t_start = time.perf_counter()
    recordings: dict[str, Recording] = {}
    if any(kind == "replay" for kind, _ in chosen):
        for clip in clips:
            recordings[clip] = record(args.data, clip, args.max_frames, args.threads, model)
        warm = recordings[clips[0]]  # warm-up: Opus, mel, WebP decode paths
        replay(warm, "clean", False, model, args)
    elif chosen:
        loopback(args.data, clips[0], "loss0", True, argparse.Namespace(**{**vars(args), "max_frames": 25}))
    for kind, case in chosen:
        modes = args.loopback_modes if kind == "loopback" else args.replay_modes
        for mode in [m for m in modes.split(",") if m]:
            rows = []
            for clip in clips:
                t0 = time.perf_counter()
                if kind == "loopback":
                    row = loopback(args.data, clip, case, mode == "realtime", args)
                else:
                    row = replay(recordings[clip], case, mode == "realtime", model, args)
                row = {"kind": kind, "case": case, "mode": mode, "clip": clip, **row,
                       "wall_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}
                rows.append(row)
                print(json.dumps({**row, **meta}), flush=True)
            print(json.dumps({"kind": kind, "case": case, "mode": mode, "clip": "sum", "clips": len(rows),
                              **summarise(rows), **meta}), flush=True)
    print(json.dumps({"bench": "impairment", "done": True, "wall_s": round(time.perf_counter() - t_start, 1),
                      "record_s": {c: round(r.encode_s, 1) for c, r in recordings.items()},
                      "peak_rss_mb": round(peak_rss_mb(), 1), **meta}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
