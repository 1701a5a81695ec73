"""Can the mouth's shape be read from 200 ms of speech, on our data? A probe for the audio branch.

A fresh audio trunk (``avfr.codec.nets.audio_encoder.MelTrunk``, the model's own) + a linear head is trained on the
train split's frames with speech to predict the mouth's shape of each frame from its centred mel window alone:
inner-lip gap, outer-lip gap and mouth width in % of the face height, centred per clip (the speaker's own
mean removed: what the speech can tell) and divided by ``MOUTH_STD_PCT``. It is then scored on the dev split
(unseen speakers): mean absolute error in those units, against predicting 0 (the clip's mean), and the
correlation of prediction and truth.

    python benchmarks/audio_mouth_probe.py [--steps 2000] [--lr 1e-3] [--threads 1] [--release 1]

``--release N,N`` trains on the train clips of those data releases only (manifest ``release``; dev unchanged),
for the data effect.

Measured (2 shared cores, 1 thread, 2,000 steps of batch 64; dev: 870 frames, 5 speakers, where predicting 0
scores 0.65 / 0.63 / 0.53). ``--release 1`` (161 s): 5,750 train frames (3.8 min of speech, 23 speakers); train
error 0.11 but dev 0.75 / 0.66 / 0.56 at the end, never below 0.73 / 0.64 / 0.56, correlation 0.18 / 0.18 / 0.17
(at most 0.19 / 0.21 / 0.17). All releases (167 s): 15,908 train frames (10.6 min, 57 speakers); train error
0.29, dev 0.75 / 0.69 / 0.56 at the end, at best (step 250-500) 0.67 / 0.62 / 0.52, about the baseline,
correlation 0.14 / 0.13 / 0.19 (at most 0.22 / 0.20 / 0.24, early). Nearly three times the speech only delays
the overfitting and lifts the correlation by a few hundredths: the mapping still does not generalise to
unseen voices, so the model's audio branch still has nothing to move the mouth with.

Prints one JSON line per evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avfr.codec.data import load_clips, manifest_releases, mouth_shape
from avfr.codec.nets import MOUTH_STD_PCT, AudioEncoderConfig, MelTrunk


def mouth_windows(data: Path, split: str, releases: set[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Centred mel windows (N, 1, 80, 19), per-clip-centred, standardised mouth shapes (N, 3) of the frames
    with a face in the clips with speech of ``split`` (of ``releases`` only, None: all), and their speakers.

    Raises:
        ValueError: releases are asked for but the manifest records none, or no clip with speech is left.
    """
    of_release = manifest_releases(data)
    if releases is not None and not of_release:
        raise ValueError(f"--release: {data / 'manifest.json'} records no release")
    manifest = data / "manifest.json"
    entries = json.loads(manifest.read_text())["clips"] if manifest.is_file() else []
    identity = {str(c["id"]): c.get("identity", c["id"]) for c in entries}
    mels, shapes, speakers = [], [], set()
    for clip in load_clips(data, split=split, prepare_missing=True):
        if not clip.has_audio or (releases is not None and of_release.get(clip.clip_id) not in releases):
            continue
        speakers.add(identity.get(clip.clip_id, clip.clip_id))
        shape = 100 * mouth_shape(clip.landmarks)  # (T, 3) % of the face height
        shape = shape - np.nanmean(shape, 0)
        for t in np.flatnonzero(np.isfinite(shape).all(1)):
            mels.append(clip.mel[:, 4 * t + 10:4 * t + 29])
            shapes.append(shape[t])
    if not mels:
        raise ValueError(f"no {split} frames with speech" + (f" in release {sorted(releases)}" if releases else ""))
    x = torch.from_numpy(np.stack(mels).astype(np.float32))[:, None]
    y = torch.from_numpy(np.stack(shapes).astype(np.float32)) / torch.tensor(MOUTH_STD_PCT)
    return x, y, len(speakers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--release", metavar="N,N", default=None,
                        help="train only on clips of these data releases (manifest `release`; dev unchanged)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        releases = None if args.release is None else {int(r) for r in args.release.split(",") if r.strip()}
        x_train, y_train, train_speakers = mouth_windows(args.data, "train", releases)
        x_dev, y_dev, dev_speakers = mouth_windows(args.data, "dev")
    except ValueError as exc:
        parser.error(str(exc))
    trunk = MelTrunk(AudioEncoderConfig())
    head = torch.nn.Linear(trunk.out_channels, y_train.shape[1])
    opt = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=args.lr)
    baseline = y_dev.abs().mean(0)  # predicting 0: the speaker's mean shape
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        pick = torch.randint(0, len(x_train), (args.batch,))
        loss = (head(trunk(x_train[pick])) - y_train[pick]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            trunk.eval()
            with torch.no_grad():
                pred = head(trunk(x_dev))
            trunk.train()
            corr = [float(np.corrcoef(pred[:, k].numpy(), y_dev[:, k].numpy())[0, 1]) for k in range(pred.shape[1])]
            print(json.dumps({"bench": "audio_mouth_probe", "release": args.release or "all", "step": step,
                              "train_frames": len(x_train), "dev_frames": len(x_dev), "train_speakers": train_speakers,
                              "dev_speakers": dev_speakers, "train_l1": float(loss.detach()),
                              "dev_l1": (pred - y_dev).abs().mean(0).tolist(), "dev_l1_predict_0": baseline.tolist(),
                              "dev_corr": corr, "wall_s": time.perf_counter() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
