"""What low-rate speech costs the generator's mouth: the call's media path at Opus 6, 8, 12 and 16 kbit/s.

For each dev clip of ../shared/data (``--ids``; the first ``--max-frames`` frames, frame 0 is the source), the call's
media path of ``avfr-codec bench`` (``avfr.sender.Encoder`` -> messages -> ``avfr.receiver.Decoder``, operating
point q7, the call's default) runs with the sender's Opus at each rate (``EncoderConfig.audio_bitrate_bps``, as
``avfr-codec bench --opus-kbps``): the Decoder's generator hears the decoded speech, whose mel window moves the
mouth. The sender's priors and keypoint graph are shared by the rates (:class:`avfr.benchmarks.avfr_call.SenderMemo`,
bit-identical); the keypoint stream is the same at every rate unless the sender's drift check, which replays the
decoded speech, refreshes the source differently (``source_images``). Per rate, against the original: mouth LMD,
LMD (mediapipe, px at 256), PSNR, and the lip-sync proxy (the drawn mouth's opening against the original speech's
envelope, :func:`avfr.benchmarks.landmark_metrics.sync_proxy`, as the bench's ``sync_corr``); and the rates of
:mod:`avfr.benchmarks.accounting`: ``opus_kbps`` (payload), ``kbps_steady`` (video (b)), ``kbps_call`` (the whole
call: video (b) + the speech in AUDIO messages, 7 B a packet).

    python benchmarks/bench_speech_rate.py [--ids grid_lwbsza] [--max-frames 50] [--rates 6,8,12,16]

Prints one JSON line per rate (means over the clips, and every clip's values), then a table with each rate's
change against ``--reference`` (12 kbit/s, the call's default).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

KEYS = ("opus_kbps", "speech_kbps", "kbps_steady", "kbps_call", "psnr", "lmd", "mouth_lmd", "sync_corr")


def _clip_row(clip, n: int, kbps: float, models, memo, tracker, lips) -> dict:
    """One clip at one Opus rate through the q7 call path, scored against the original."""
    from avfr.benchmarks import accounting
    from avfr.benchmarks.avfr_call import AVFR_POINTS, avfr_path
    from avfr.benchmarks.landmark_metrics import landmark_distance, sync_proxy
    from avfr.benchmarks.pixel_metrics import psnr_db

    frames = np.ascontiguousarray(clip.frames[:n])
    pcm = np.asarray(clip.pcm[: n * 640], np.float32)
    ref_lm = np.asarray(clip.landmarks[:n], np.float32)
    res = avfr_path(frames, pcm, frames[0], AVFR_POINTS["q7"], models, memo=memo,
                    audio_bitrate_bps=round(kbps * 1000))
    lm = tracker(res.frames)
    lmd, miss = landmark_distance(lm, ref_lm)
    sync, lag = sync_proxy(lm, pcm)
    rates = accounting.rate_columns(
        {"codec": "avfr", "packet_bytes": res.packet_bytes, "source_bytes": res.source_bytes,
         "refresh_bytes": res.refresh_bytes, "audio_bytes": res.audio_bytes, "audio_packets": res.audio_packets,
         "opus_target_kbps": kbps}, n / 25)
    return {"clip": clip.clip_id, "frames": n, "opus_target_kbps": kbps,
            **{k: rates[k] for k in ("opus_kbps", "speech_kbps", "kbps_steady", "kbps_call")},
            "psnr": psnr_db(res.frames, frames), "lmd": lmd, "lmd_miss": miss,
            "mouth_lmd": landmark_distance(lm, ref_lm, lips)[0], "sync_corr": sync, "sync_lag_frames": lag,
            "source_images": res.num_source_images, "audio_packets": res.audio_packets}


def _json(value: object) -> object:
    """Floats rounded to 4 decimals, NaN as null."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return round(float(np.mean(vals)), 4) if vals else None


def table(means: list[dict], reference_kbps: float, reference_sync: float | None) -> list[str]:
    """The final table: one line per rate, with the change of mouth LMD, LMD, PSNR and sync against the reference
    rate's (None where the reference rate was not run)."""
    ref = next((m for m in means if m["opus_target_kbps"] == reference_kbps), None)

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def delta(m: dict, key: str, digits: int) -> str:
        if ref is None or m[key] is None or ref[key] is None:
            return "-"
        return f"{m[key] - ref[key]:+.{digits}f}"

    lines = [f"| Opus target kbit/s | opus_kbps | kbps_steady | kbps_call | PSNR dB | LMD px | mouth LMD px | "
             f"sync_corr | Δ mouth LMD | Δ LMD | Δ PSNR | Δ sync (vs {reference_kbps:g}) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in means:
        lines.append(f"| {m['opus_target_kbps']:g} | {cell(m['opus_kbps'], 2)} | {cell(m['kbps_steady'], 2)} | "
                     f"{cell(m['kbps_call'], 2)} | {cell(m['psnr'], 2)} | {cell(m['lmd'], 3)} | "
                     f"{cell(m['mouth_lmd'], 3)} | {cell(m['sync_corr'], 3)} | {delta(m, 'mouth_lmd', 3)} | "
                     f"{delta(m, 'lmd', 3)} | {delta(m, 'psnr', 2)} | {delta(m, 'sync_corr', 3)} |")
    lines.append(f"(sync_corr of the originals: {cell(reference_sync, 3)}; means over {means[0]['clips']} clip(s), "
                 f"{means[0]['frames']} frames)" if means else "no rates")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--ids", default=None, help="only these dev clips, comma-separated (default: every one)")
    parser.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    parser.add_argument("--rates", default="6,8,12,16", help="Opus rates, kbit/s, 6..16, comma-separated")
    parser.add_argument("--reference", type=float, default=12.0, help="the rate the changes are against (default 12)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from avfr.benchmarks.accounting import OPUS_KBPS_RANGE
    from avfr.benchmarks.avfr_call import AvfrModels, SenderMemo
    from avfr.benchmarks.landmark_metrics import LandmarkTracker, lip_indices, sync_proxy
    from avfr.codec.data import load_clips

    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or not all(OPUS_KBPS_RANGE[0] <= r <= OPUS_KBPS_RANGE[1] for r in rates):
        parser.error(f"--rates: kbit/s in {OPUS_KBPS_RANGE[0]:g}..{OPUS_KBPS_RANGE[1]:g}")
    clips = load_clips(args.data, split="dev", prepare_missing=True)
    if args.ids:
        wanted = [i.strip() for i in args.ids.split(",") if i.strip()]
        missing = sorted(set(wanted) - {c.clip_id for c in clips})
        if missing:
            parser.error(f"--ids: no dev clip {', '.join(missing)}")
        clips = [c for c in clips if c.clip_id in wanted]
    frames = {c.clip_id: c.num_frames if args.max_frames <= 0 else min(args.max_frames, c.num_frames) for c in clips}
    base = {"bench": "speech_rate", "point": "q7", "machine": platform.processor() or platform.machine(),
            "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])}
    ref_sync = _mean([sync_proxy(np.asarray(c.landmarks[:frames[c.clip_id]], np.float32),
                                 np.asarray(c.pcm[: frames[c.clip_id] * 640], np.float32))[0] for c in clips])
    models, tracker, lips = AvfrModels.load(args.threads), LandmarkTracker(), lip_indices()
    rows: dict[float, list[dict]] = {kbps: [] for kbps in rates}
    t0 = time.perf_counter()
    try:
        for clip in clips:  # one clip's sender work shared by every rate
            memo = SenderMemo(models.extractor)
            for kbps in rates:
                rows[kbps].append(_clip_row(clip, frames[clip.clip_id], kbps, models, memo, tracker, lips))
                print(f"{clip.clip_id} at {kbps:g} kbit/s: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    finally:
        tracker.close()
        models.close()
    means = []
    for kbps, per_clip in rows.items():
        mean = {"opus_target_kbps": kbps, "clips": len(per_clip), "frames": sum(r["frames"] for r in per_clip),
                **{k: _mean([r[k] for r in per_clip]) for k in KEYS}}
        means.append(mean)
        print(json.dumps({**mean, "per_clip": [{k: _json(v) for k, v in r.items()} for r in per_clip],
                          "reference_sync_corr": ref_sync, "model": models.model_name, **base}), flush=True)
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("\n".join(table(means, args.reference, ref_sync)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
