#!/usr/bin/env bash
# Train on a lent GPU box (torch + numpy + OpenCV there; no mediapipe, PyAV or libopus), as done for
# models/avfr-small-*: first, here, pack the prepared clips small enough to travel (64 MiB = 67.1 MB cap, the
# ~35 MB of tracked files included, so the bundle must stay under 30 MB):
#     avfr-codec data prepare ../shared/data
#     avfr-codec data bundle ../shared/data --out .devbundle/data --crf 28 --mask-crf 40
#     cp docs/gpu_training.sh .devbundle/
# (bundle format 2, the defaults spelled out: all 167 clips, 39,795 frames, in 29.3 MB; 2.6 min to build on
# 2 cores. RGB 12.1 MB at 37.1 dB PSNR against the cache, mask 3.3 MB, landmarks within 1/16 px 5.1 MB, 8-bit
# clean + Opus 8/16 kbit/s log-mels 8.7 MB. Format 1 at crf 21 / mask 30 would make ~87 MB.
# What else travels must fit in the ~2.8 MB left: fine-tune the tracked models/avfr-small-*.pt with --init
# rather than carrying a checkpoint.)
# then run on the box, with `.devbundle` carried (it is git-ignored):
#     bash .devbundle/gpu_training.sh MINUTES RUN [extra train args]
# e.g. the shipped model's first call (and `--resume` for the next calls while the box is still warm):
#     bash .devbundle/gpu_training.sh 7.6 full --batch 64 --lr 3e-4 --steps 5000 --gan-warmup 1500
# the paper's ablations at one budget (same seed, data, steps; one run per call; docs/gpu_parallel.sh runs
# them side by side in one call, compared at the same step, as done for the model card):
#     bash .devbundle/gpu_training.sh 6 noaudio --batch 64 --lr 3e-4 --steps 3000 --gan-warmup 1000 --no-audio
#     bash .devbundle/gpu_training.sh 6 nopriors --batch 64 --lr 3e-4 --steps 3000 --gan-warmup 1000 --no-priors
# fine-tuning from a carried checkpoint (.devbundle/init.pt) with the mouth term:
#     bash .devbundle/gpu_training.sh 8 mouth --init .devbundle/init.pt --batch 64 --lr 5e-5 --steps 3000 \
#         --schedule constant --gan-warmup 0 --mouth-l1 5
# ... and the receiver's concealment (held keypoints + the hold age as an input: the speech carries the mouth):
#     bash .devbundle/gpu_training.sh 8 hold --init .devbundle/init.pt --batch 64 --lr 5e-5 --steps 3000 \
#         --schedule constant --gan-warmup 0 --mouth-l1 5 --freeze-detector --wire-noise 0.75 --hold-kp 0.3
# Several GPUs (a lent H200 box has one): the same train command under torchrun, e.g. on a 4-GPU box
#     torchrun --standalone --nproc-per-node 4 -m avfr.cli train --arrays .devbundle/data --config small \
#         --out /tmp/run-ddp --device cuda --batch 64 --lr 3e-4 --steps 5000 --gan-warmup 1500 -q
# (--batch per GPU: global batch 256; --lr as given, not scaled; rank 0 validates and writes; the bundle is
# decoded once and memory-mapped by the other processes), on M machines `torchrun --nnodes M --node-rank R
# --nproc-per-node N --master-addr HOST0 --master-port 29500 -m avfr.cli train ...` on each. With one
# GPU, `torchrun --standalone --nproc-per-node 1 -m avfr.cli train ...` trains exactly as `python3 -m avfr.cli`.
# $OUT receives train.log, log.csv, val.csv and ckpt-last.pt split in 14 MB parts (at most 8 files come
# back): `cat ckpt-last.part* > ckpt-last.pt`, then `avfr-codec export ckpt-last.pt --out models --replace`.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/p
mkdir -p /tmp/p && ln -sfn "$PWD" /tmp/p/avfr   # the repo root is the package `avfr`
minutes=$1 run=$2
shift 2
nvidia-smi -L
python3 -m avfr.cli train --arrays .devbundle/data --config small --out "/tmp/run-$run" --device cuda \
  --checkpoint-min 3 --val-frames 8 --time-limit-min "$minutes" -q "$@" 2>&1 \
  | grep -v -E "XNNPACK|absl|W0000" | tee "$OUT/train.log" | tail -40
cp "/tmp/run-$run/log.csv" "/tmp/run-$run/val.csv" "$OUT/" 2>/dev/null
split -b 14M -d "/tmp/run-$run/ckpt-last.pt" "$OUT/ckpt-last.part" 2>/dev/null
ls -la "$OUT"
