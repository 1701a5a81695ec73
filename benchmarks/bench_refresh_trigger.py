"""When to refresh the source: the call's path with the drift check's trigger changed, whole clips.

For each trigger setting ``THRESHOLD_DB/MIN_INTERVAL_FRAMES`` (``EncoderConfig.drift_threshold_db`` and
``min_refresh_interval_frames``; the check runs once a second either way) every clip goes through the q7 call
path (``avfr_path``: Encoder -> Decoder, refreshes paid back by the keypoint rate control as in a call). Prints one
JSON line per clip and setting and one mean line per setting: kbit/s of keypoints + refreshes over the clip
(the first source image excluded, as ``kbps`` of the bench), refreshes, PSNR of the drawn frames.

    python benchmarks/bench_refresh_trigger.py --ids pcavs_00098,edtalk_expr --settings 3/125,2/75,2/50

Measured (the shipped model, the four refreshing dev clips, ``--settings 3/125,2/75,2/50,1.5/50``, ~10 min on 2
loaded cores): mean kbit/s / refreshes per clip / PSNR 2.45 / 1.75 / 20.84 (the default), 2.60 / 2.0 / 21.05,
2.77 / 2.25 / 21.21, 2.93 / 2.5 / 21.13; pcavs_00098 19.41 -> 20.20 -> 20.87 dB for 2 -> 3 -> 4 refreshes
(2.76 -> 4.13 kbit/s), edtalk_expr 18.61 dB whatever the trigger.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class _Triggered:
    """An operating point whose EncoderConfig has the trigger changed."""

    point: object
    threshold_db: float
    min_interval_frames: int

    def encoder_config(self, *args: object, **kwargs: object) -> object:
        return dataclasses.replace(self.point.encoder_config(*args, **kwargs),  # type: ignore[attr-defined]
                                   drift_threshold_db=self.threshold_db,
                                   min_refresh_interval_frames=self.min_interval_frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--ids", default="pcavs_00098,edtalk_expr,pcavs_681100216,lp_d9",
                        help="dev clips, comma-separated (default: the four that refresh)")
    parser.add_argument("--settings", default="3/125,2/75,2/50",
                        help="THRESHOLD_DB/MIN_INTERVAL_FRAMES, comma-separated (the call's default: 3/125)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="ONNX manifest (default: the shipped model)")
    args = parser.parse_args(argv)
    try:
        settings = [(float(t), int(n)) for t, n in (s.split("/") for s in args.settings.split(","))]
    except ValueError:
        parser.error(f"--settings: expected THRESHOLD_DB/MIN_INTERVAL_FRAMES,..., got {args.settings!r}")

    from avfr.benchmarks.avfr_call import AVFR_POINTS, AvfrModels, avfr_path
    from avfr.benchmarks.pixel_metrics import psnr_db
    from avfr.codec.data import load_clips

    models = AvfrModels.load(threads=args.threads, manifest=args.model)
    wanted = args.ids.split(",")
    clips = {c.clip_id: c for c in load_clips(args.data) if c.clip_id in wanted}
    missing = sorted(set(wanted) - set(clips))
    if missing:
        parser.error(f"no such clips in {args.data}: {', '.join(missing)}")
    base = {"bench": "refresh_trigger", "point": "q7", "machine": platform.machine(),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    for threshold_db, min_interval in settings:
        point = _Triggered(AVFR_POINTS["q7"], threshold_db, min_interval)
        rows = []
        for clip_id in wanted:
            clip = clips[clip_id]
            frames = np.asarray(clip.frames)
            out = avfr_path(frames, np.asarray(clip.pcm), frames[0], point, models)  # type: ignore[arg-type]
            seconds = len(frames) / 25
            row = {"clip": clip_id, "seconds": round(seconds, 2),
                   "kbps": round((out.packet_bytes + out.refresh_bytes) * 8 / seconds / 1000, 3),
                   "refreshes": out.num_source_images - 1, "refresh_bytes": out.refresh_bytes,
                   "psnr_db": round(psnr_db(out.frames, frames), 2)}
            rows.append(row)
            print(json.dumps({**base, "threshold_db": threshold_db, "min_interval_frames": min_interval, **row}),
                  flush=True)
        print(json.dumps({**base, "threshold_db": threshold_db, "min_interval_frames": min_interval, "clip": "mean",
                          **{k: round(float(np.mean([r[k] for r in rows])), 3)
                             for k in ("kbps", "refreshes", "psnr_db")}}), flush=True)
    models.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
