"""Dev-split quality of the shipped model through its ONNX graphs (the figures of models/MODEL_CARD.md).

Same identity: for each dev clip, the first frame with a face is the source and every ``--stride``-th frame
with a face is driven, with the float keypoints of the sender graph (no wire quantisation: that cost is
measured by ``benchmarks/bench_quant.py``) and the mel window of the Opus round trip of the clip's speech
(12 kbit/s, what a receiver hears). Rows, one JSON line each:

- ``model``: the generated frame; ``still``: the source shown unchanged (the zero-bit floor);
- ``silent``: the model fed a silent mel (does the audio branch move the mouth?);
- with ``--hold N``: ``held`` renders frame i from the keypoints of the face frame N before it (what the
  receiver shows while keypoint packets are lost: it holds the last keypoints while the speech goes on) with
  frame i's mel, and ``held_silent`` the same with a silent mel: their mouth-LMD gap is what the speech
  alone tells the mouth.

Metrics: L1, PSNR, SSIM (``avfr.codec.train.metrics.pixel_metrics``), LMD (mean distance of the 478 mediapipe
landmarks, px at 256) and mouth LMD (the 40 lip landmarks of ``FACEMESH_LIPS``), against the driving frame's
landmarks; and two pose-free mouth measures: lip shape (the lip landmarks' distance after removing each
frame's lip centroid, px) and mouth-opening error (|inner-lip gap / face height| difference, % of face
height). ``--strip PNG`` also draws source | (driving, generated) x 3 for the first 3 dev clips.

    python benchmarks/eval_model.py --data ../shared/data --stride 2 --strip models/strip-dev.png
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avfr.benchmarks.landmark_metrics import landmark_distance, lip_indices
from avfr.codec.data import (
    ClipArrays,
    PriorExtractor,
    clip_log_mel,
    five_channel,
    load_clips,
    mel_window,
    mouth_opening,
    opus_roundtrip,
)
from avfr.codec.runtime import ReceiverModel, SenderModel, load_manifest, shipped_manifest
from avfr.codec.train import pixel_metrics


def evaluate_clip(clip: ClipArrays, sender: SenderModel, receiver: ReceiverModel, extractor: PriorExtractor,
                  lips: np.ndarray, stride: int, opus_bps: int, hold: int = 0
                  ) -> tuple[dict[str, dict[str, list[float]]], list]:
    """Per-frame metrics of one clip for the model, still and silent rows (+ held, held_silent when
    ``hold`` > 0 frames); and (driving, generated) pairs."""
    faces = np.flatnonzero(clip.face_found)
    src_i = int(faces[0])
    source5 = five_channel(np.asarray(clip.frames[src_i]), np.asarray(clip.mesh[src_i]), np.asarray(clip.mask[src_i]))
    receiver.set_source(source5)
    mel = clip_log_mel(opus_roundtrip(clip.pcm, opus_bps)) if clip.has_audio else clip.mel
    silent = clip_log_mel(np.zeros_like(clip.pcm))
    names = ("model", "still", "silent") + (("held", "held_silent") if hold > 0 else ())
    metrics = ("l1", "psnr", "ssim", "lmd", "mouth_lmd", "lip_shape", "mouth_open_err")
    rows: dict[str, dict[str, list[float]]] = {k: {m: [] for m in metrics} for k in names}
    pairs = []

    def keypoints(f: int) -> tuple[np.ndarray, np.ndarray]:
        return sender.keypoints(five_channel(np.asarray(clip.frames[f]), np.asarray(clip.mesh[f]),
                                             np.asarray(clip.mask[f])))

    for i in faces[faces != src_i][::stride]:
        drv_rgb = np.asarray(clip.frames[i])
        kp, jac = keypoints(int(i))
        outs = {
            "model": receiver.frame(kp, jac, mel_window(mel, int(i))),
            "still": np.asarray(clip.frames[src_i]),
            "silent": receiver.frame(kp, jac, mel_window(silent, int(i))),
        }
        if hold > 0:
            f = int(faces[max(int(np.searchsorted(faces, i)) - hold, 0)])
            kp_h, jac_h = keypoints(f)  # models trained with held keypoints are also told for how long
            outs["held"] = receiver.frame(kp_h, jac_h, mel_window(mel, int(i)), held_frames=int(i) - f)
            outs["held_silent"] = receiver.frame(kp_h, jac_h, mel_window(silent, int(i)), held_frames=int(i) - f)
        ref = torch.from_numpy(drv_rgb).permute(2, 0, 1)[None].float() / 255.0
        for name, rgb in outs.items():
            gen = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
            l1, psnr, ssim = pixel_metrics(gen, ref)
            lm = extractor.face_landmarks(rgb)[0][None]  # (1, 478, 2), NaN when no face
            ref_lm = clip.landmarks[i][None]
            for key, val in (("l1", l1), ("psnr", psnr), ("ssim", ssim)):
                rows[name][key].append(float(val[0]))
            rows[name]["lmd"].append(landmark_distance(lm, ref_lm)[0])
            rows[name]["mouth_lmd"].append(landmark_distance(lm, ref_lm, lips)[0])
            lip, ref_lip = lm[:, lips], ref_lm[:, lips]  # (1, 40, 2) px
            centred = (lip - lip.mean(1, keepdims=True)) - (ref_lip - ref_lip.mean(1, keepdims=True))
            shape = np.linalg.norm(centred, axis=-1)
            rows[name]["lip_shape"].append(float(shape.mean()))
            rows[name]["mouth_open_err"].append(float(100 * abs(mouth_opening(lm)[0] - mouth_opening(ref_lm)[0])))
        pairs.append((drv_rgb, outs["model"]))
    return rows, pairs


def draw_strip(strips: list[tuple[np.ndarray, list]], path: Path) -> None:
    """One row per clip: source | (driving, generated) at 3 evenly spread times."""
    import cv2

    rows = []
    for source, pairs in strips:
        picks = [pairs[int(k)] for k in np.linspace(0, len(pairs) - 1, 3).round()]
        tiles = [source] + [t for pair in picks for t in pair]
        rows.append(np.concatenate(tiles, axis=1))
    image = np.concatenate(rows, axis=0)
    labels = ["source"] + ["driving", "generated"] * 3
    for k, label in enumerate(labels):
        cv2.putText(image, label, (k * 256 + 6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--manifest", type=Path, default=None, help="ONNX manifest (default: the shipped model)")
    parser.add_argument("--stride", type=int, default=2, help="drive every N-th face frame")
    parser.add_argument("--opus-bps", type=int, default=12000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hold", type=int, default=0, metavar="FRAMES",
                        help="also render from keypoints held this many face frames back (held, held_silent rows)")
    parser.add_argument("--strip", type=Path, default=None, help="write a strip PNG of the first 3 dev clips")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.manifest or shipped_manifest())
    sender = SenderModel(manifest.sender, args.threads, expected_sha256=manifest.sha256["sender"])
    receiver = ReceiverModel.from_manifest(manifest, args.threads)
    extractor = PriorExtractor(mesh=True, mask=False)
    lips = lip_indices()
    clips = load_clips(args.data, split="dev", prepare_missing=True)
    base = {"model_name": manifest.name, "python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv)}
    totals: dict[str, dict[str, list[float]]] = {}
    strips = []
    t0 = time.perf_counter()
    for clip in clips:
        rows, pairs = evaluate_clip(clip, sender, receiver, extractor, lips, args.stride, args.opus_bps, args.hold)
        for name, metrics in rows.items():
            agg = totals.setdefault(name, {k: [] for k in metrics})
            for k, v in metrics.items():
                agg[k] += v
            print(json.dumps({"bench": "eval_model", "clip": clip.clip_id, "row": name, "frames": len(metrics["l1"]),
                              **{k: float(np.nanmean(v)) for k, v in metrics.items()}, **base}), flush=True)
        if len(strips) < 3:
            strips.append((np.asarray(clip.frames[int(np.flatnonzero(clip.face_found)[0])]), pairs))
    for name, metrics in totals.items():
        print(json.dumps({"bench": "eval_model", "clip": "mean", "row": name, "frames": len(metrics["l1"]),
                          **{k: float(np.nanmean(v)) for k, v in metrics.items()},
                          "wall_s": time.perf_counter() - t0, **base}), flush=True)
    if args.strip is not None:
        draw_strip(strips, args.strip)
    extractor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
