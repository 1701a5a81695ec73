"""Can the mouth's shape be read from 200 ms of speech, on our data? A probe for the audio branch.

A fresh audio trunk (``avfr.codec.nets.audio_encoder.MelTrunk``, the model's own) + a linear head is trained on the
train split's frames with speech to predict the mouth's shape of each frame from its centred mel window alone:
inner-lip gap, outer-lip gap and mouth width in % of the face height, centred per clip (the speaker's own
mean removed: what the speech can tell) and divided by ``MOUTH_STD_PCT``. It is then scored on the dev split
(unseen speakers): mean absolute error in those units, against predicting 0 (the clip's mean), and the
correlation of prediction and truth.

    python benchmarks/audio_mouth_probe.py [--steps 2000] [--lr 1e-3] [--threads 1]

Measured (2 shared cores, 356 s): 5,750 train / 870 dev frames; after 2,000 steps (batch 64) the train error
is 0.13 but the dev error 0.75 / 0.68 / 0.57 is *worse* than predicting 0 (0.66 / 0.63 / 0.53), correlation
0.14 / 0.13 / 0.15 (it never passed 0.17). With 4 minutes of training speech from 40 speakers the mapping
does not generalise to new voices: the reason the model's audio branch does not move the mouth.

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

from avfr.codec.data import load_clips, mouth_shape
from avfr.codec.nets import MOUTH_STD_PCT, AudioEncoderConfig, MelTrunk


def mouth_windows(data: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred mel windows (N, 1, 80, 19) and per-clip-centred, standardised mouth shapes (N, 3) of the
    frames with a face in the clips with speech of ``split``."""
    mels, shapes = [], []
    for clip in load_clips(data, split=split, prepare_missing=True):
        if not clip.has_audio:
            continue
        shape = 100 * mouth_shape(clip.landmarks)  # (T, 3) % of the face height
        shape = shape - np.nanmean(shape, 0)
        for t in np.flatnonzero(np.isfinite(shape).all(1)):
            mels.append(clip.mel[:, 4 * t + 10:4 * t + 29])
            shapes.append(shape[t])
    x = torch.from_numpy(np.stack(mels).astype(np.float32))[:, None]
    y = torch.from_numpy(np.stack(shapes).astype(np.float32)) / torch.tensor(MOUTH_STD_PCT)
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = mouth_windows(args.data, "train")
    x_dev, y_dev = mouth_windows(args.data, "dev")
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
            print(json.dumps({"bench": "audio_mouth_probe", "step": step, "train_frames": len(x_train),
                              "dev_frames": len(x_dev), "train_l1": float(loss.detach()),
                              "dev_l1": (pred - y_dev).abs().mean(0).tolist(), "dev_l1_predict_0": baseline.tolist(),
                              "dev_corr": corr, "wall_s": time.perf_counter() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
