#!/usr/bin/env bash
# Train on a lent GPU box (torch + numpy + OpenCV there; no mediapipe, PyAV or libopus), as done for
# models/avfr-small-*: first, here, pack the prepared clips small enough to travel (64 MiB cap):
#     avfr-codec data prepare ../shared/data && avfr-codec data bundle ../shared/data --out .devbundle/data
#     cp docs/gpu_training.sh .devbundle/
# then run on the box, with `.devbundle` carried (it is git-ignored):
#     bash .devbundle/gpu_training.sh 7.6            # first call: minutes of training before a clean stop
#     bash .devbundle/gpu_training.sh 7.6 --resume   # next calls while the box is still warm (/tmp/run kept)
# $OUT receives log.csv, val.csv and ckpt-last.pt split in 14 MB parts (cat them back; export with
# avfr.codec.train.model_from_checkpoint + save_weights + avfr.codec.export.export_model).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/p
mkdir -p /tmp/p && ln -sfn "$PWD" /tmp/p/avfr   # the repo root is the package `avfr`
nvidia-smi -L
python3 -m avfr.cli train --arrays .devbundle/data --config small --out /tmp/run --device cuda \
  --batch 64 --lr 3e-4 --steps 5000 --gan-warmup 1500 --checkpoint-min 3 --val-frames 8 \
  --time-limit-min "$1" -q ${2:-} 2>&1 | grep -v -E "XNNPACK|absl|W0000" | tee "$OUT/train.log" | tail -40
cp /tmp/run/log.csv /tmp/run/val.csv "$OUT/" 2>/dev/null   # at most 8 files come back: ckpt parts + logs
split -b 14M -d /tmp/run/ckpt-last.pt "$OUT/ckpt-last.part" 2>/dev/null
ls -la "$OUT"
