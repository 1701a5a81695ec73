"""Picture quality of the call under keypoint-packet loss: the receiver holds the last keypoints, the speech goes on.

For each dev clip of ../shared/data (first ``--max-frames`` frames; frame 0 is the source), the call's media
path of ``avfr-codec bench`` (``avfr.sender.Encoder`` -> messages -> ``avfr.receiver.Decoder``, operating point
``--point``) runs with a share of the keypoint messages dropped (seeded, the same drops for every model), and
the frames are compared with the original: PSNR, LMD, mouth LMD (mediapipe, px at 256), the pose-free
mouth-opening error (|inner-lip gap / face height| difference, % of face height), all frames and the
concealed (held) frames alone, and the lip-sync proxy. Models trained with ``--hold-kp`` are told by the
Decoder for how many frames the keypoints have been held, and use the speech to move the mouth meanwhile.

    python benchmarks/bench_loss.py [--manifest M ...] [--loss 0,0.1,0.2,0.3] [--max-frames 125]

Prints one JSON line per (model, loss, clip) and one mean per (model, loss).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _metrics(test: np.ndarray, reference: np.ndarray, ref_lm: np.ndarray, pcm: np.ndarray, held: np.ndarray,
             tracker: object, lips: np.ndarray) -> dict[str, float | int]:
    from avfr.benchmarks.landmark_metrics import landmark_distance, sync_proxy
    from avfr.benchmarks.pixel_metrics import psnr_frames
    from avfr.codec.data import mouth_opening

    lm = tracker(test)  # (T, 478, 2)
    psnr = psnr_frames(test, reference)
    lmd = np.array([landmark_distance(lm[i:i + 1], ref_lm[i:i + 1])[0] for i in range(len(lm))])
    mouth = np.array([landmark_distance(lm[i:i + 1], ref_lm[i:i + 1], lips)[0] for i in range(len(lm))])
    opening = 100 * np.abs(mouth_opening(lm) - mouth_opening(ref_lm))
    sync, _ = sync_proxy(lm, pcm)
    out: dict[str, float | int] = {"frames": len(test), "held_frames": int(held.sum()), "sync_corr": sync}
    for name, sel in (("", np.ones(len(test), bool)), ("held_", held)):
        if not sel.any():
            continue
        out[f"{name}psnr"] = float(np.mean(np.minimum(psnr[sel], 100.0)))
        out[f"{name}lmd"] = float(np.nanmean(lmd[sel]))
        out[f"{name}mouth_lmd"] = float(np.nanmean(mouth[sel]))
        out[f"{name}mouth_open_err"] = float(np.nanmean(opening[sel]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--manifest", type=Path, action="append", default=None,
                        help="ONNX manifest of a model to measure (repeatable; default: the shipped model)")
    parser.add_argument("--loss", default="0,0.2", help="keypoint-message loss rates, comma-separated")
    parser.add_argument("--point", default="q7", help="avfr operating point (default: q7, the call's)")
    parser.add_argument("--max-frames", type=int, default=125, help="frames per clip (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from avfr.benchmarks.avfr_call import AVFR_POINTS, AvfrModels, avfr_path
    from avfr.benchmarks.landmark_metrics import LandmarkTracker, lip_indices
    from avfr.codec.data import load_clips

    if args.point not in AVFR_POINTS:
        parser.error(f"--point: choose from {', '.join(AVFR_POINTS)}")
    losses = [float(x) for x in args.loss.split(",") if x.strip()]
    clips = load_clips(args.data, split="dev", prepare_missing=True)
    tracker, lips = LandmarkTracker(), lip_indices()
    base = {"bench": "loss", "point": args.point, "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv)}
    try:
        for manifest in args.manifest or [None]:
            models = AvfrModels.load(args.threads, manifest)
            try:
                for loss in losses:
                    rows, t0 = [], time.perf_counter()
                    for clip in clips:
                        n = clip.num_frames if args.max_frames <= 0 else min(args.max_frames, clip.num_frames)
                        frames = np.ascontiguousarray(clip.frames[:n])
                        pcm = np.asarray(clip.pcm[: n * 640], np.float32)
                        res = avfr_path(frames, pcm, frames[0], AVFR_POINTS[args.point], models, kp_loss=loss,
                                        loss_seed=args.seed)
                        row = {"model": models.model_name, "manifest": str(manifest or "shipped"), "loss": loss,
                               "clip": clip.clip_id,
                               "concealed": res.concealed_frames,
                               **_metrics(res.frames, frames, np.asarray(clip.landmarks[:n], np.float32), pcm,
                                          res.held, tracker, lips)}
                        rows.append(row)
                        print(json.dumps({**row, **base}), flush=True)
                    keys = [k for k in rows[0] if isinstance(rows[0][k], float) and k != "loss"]
                    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
                    print(json.dumps({"model": models.model_name, "manifest": str(manifest or "shipped"),
                                      "loss": loss, "clip": "mean",
                                      "frames": sum(r["frames"] for r in rows),
                                      "held_frames": sum(r["held_frames"] for r in rows), **mean,
                                      "wall_s": time.perf_counter() - t0, **base}), flush=True)
            finally:
                models.close()
    finally:
        tracker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
