"""What a source refresh image has to be: the call's path after a refresh, for refresh images of several sizes
and WebP qualities.

For each clip, frame ``--at`` becomes the source (encoded at each size/quality, decoded and upscaled by the
receiver as in a call) and the next ``--frames`` frames go through the q7 call path (Encoder -> Decoder, no
further refresh); prints one JSON line per setting: refresh bytes and the PSNR of the drawn frames, next to the
same frames drawn from the clip's first frame (no refresh).

    python benchmarks/bench_refresh.py --ids edtalk_expr,pcavs_00098
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--ids", default="edtalk_expr,pcavs_00098", help="dev clips, comma-separated")
    parser.add_argument("--at", type=int, default=45, help="frame that becomes the refresh source")
    parser.add_argument("--frames", type=int, default=100, help="frames drawn after it")
    parser.add_argument("--sizes", default="256,160,128,96", help="refresh image sides, px")
    parser.add_argument("--qualities", default="90,60,30,10", help="WebP qualities")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import cv2

    from avfr.benchmarks.avfr_call import AVFR_POINTS, AvfrModels, avfr_path
    from avfr.benchmarks.pixel_metrics import psnr_db
    from avfr.codec.data import load_clips
    from avfr.codec.runtime import decode_source_image, encode_source_image

    point = AVFR_POINTS["q7"]
    models = AvfrModels.load(threads=args.threads)
    clips = {c.clip_id: c for c in load_clips(args.data)}
    base = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "machine": platform.machine(),
            "point": "q7"}

    def drawn(frames: np.ndarray, pcm: np.ndarray, source: np.ndarray) -> float:
        return psnr_db(avfr_path(frames, pcm, source, point, models, drift_check=False).frames, frames)

    for clip_id in args.ids.split(","):
        clip = clips[clip_id]
        sl = slice(args.at, args.at + args.frames)
        frames = np.asarray(clip.frames)[sl]
        pcm = np.asarray(clip.pcm)[args.at * 640:(args.at + len(frames)) * 640]
        print(json.dumps({**base, "clip": clip_id, "refresh": None,
                          "psnr_db": round(drawn(frames, pcm, np.asarray(clip.frames)[0]), 2)}), flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            small = frames[0] if size == frames.shape[1] else cv2.resize(frames[0], (size, size),
                                                                          interpolation=cv2.INTER_AREA)
            for quality in (int(q) for q in args.qualities.split(",")):
                data = encode_source_image(small, quality)
                source = decode_source_image(data)
                print(json.dumps({**base, "clip": clip_id, "refresh": {"size": size, "quality": quality},
                                  "bytes": len(data), "source_psnr_db": round(psnr_db(source[None], frames[:1]), 2),
                                  "psnr_db": round(drawn(frames, pcm, source), 2)}), flush=True)
    models.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
