#!/usr/bin/env bash
# Several training runs at once on one lent GPU box, as done for the ablations of models/MODEL_CARD.md: one
# loan, one start-up, every run under the same time limit (they share the GPU: the small model is GPU-bound at
# batch 32, and four runs together made 557 samples/s, about what one run makes alone). Prepare here, as for docs/gpu_training.sh:
#     avfr-codec data prepare ../shared/data
#     avfr-codec data bundle ../shared/data --out .devbundle/data --crf 28 --mask-crf 40   # 167 clips: 29.3 MB
#     cp docs/gpu_parallel.sh .devbundle/
# then on the box, with `.devbundle` carried:
#     bash .devbundle/gpu_parallel.sh MINUTES "RUN:train args" "RUN:train args" ...
# e.g. the paper's ablations at one budget, compared at the same step (--snapshot-every), plus a fine-tune
# of the shipped model:
#     bash .devbundle/gpu_parallel.sh 7.3 \
#         "full:--batch 32 --lr 3e-4 --steps 3000 --gan-warmup 1000 --snapshot-every 250 --val-every 500" \
#         "noaudio:--batch 32 --lr 3e-4 --steps 3000 --gan-warmup 1000 --snapshot-every 250 --val-every 500 --no-audio" \
#         "nopriors:--batch 32 --lr 3e-4 --steps 3000 --gan-warmup 1000 --snapshot-every 250 --val-every 500 --no-priors" \
#         "ft:--init models/avfr-small-ea5ce26f.pt --batch 32 --lr 5e-5 --steps 100000 --schedule constant ..."
# (the model card's ablations and GPU fine-tune; ea5ce26f was the model shipped then, in git history)
# The data effect on the grown data (issue 13: the same recipe and steps on the release-1 train clips alone and on
# all of them; then the speech ablation on the grown speech), plus a fine-tune of the shipped model that carries
# over (use the loan for training that continues: --init the tracked models/avfr-small-*.pt):
#     bash .devbundle/gpu_parallel.sh 11 \
#         "r1:--release 1 --batch 32 --lr 3e-4 --steps 4000 --gan-warmup 1000 --snapshot-every 250 --val-every 1000" \
#         "all:--batch 32 --lr 3e-4 --steps 4000 --gan-warmup 1000 --snapshot-every 250 --val-every 1000" \
#         "noaudio:--batch 32 --lr 3e-4 --steps 4000 --gan-warmup 1000 --snapshot-every 250 --val-every 1000 --no-audio" \
#         "ft:--init models/avfr-small-SHA8.pt --batch 32 --lr 5e-5 --steps 100000 --schedule constant \
#              --gan-warmup 0 --mouth-l1 5 --freeze-detector --wire-noise 0.75 --val-every 1000"
# The GPU generator (issue 13, capacity): a wide generator and small, both on the shipped keypoint detector
# (frozen: one keypoint stream for both receivers), under the same time limit on the shared GPU (compared at the
# same minutes, not the same step; then `avfr-codec export wide-soup.pt --out models --detector-of
# models/avfr-small.json --device gpu` if it beats small on dev). Both start from the shipped model: WIDEN_FROM=
# models/avfr-small-SHA8.pt first writes /tmp/wide0.pt, `avfr-codec widen` of it (the wide config computing
# exactly what small computes), so the loan trains what wide adds instead of redrawing small from scratch:
#     WIDEN_FROM=models/avfr-small-SHA8.pt SOUP_RUNS="ft wide" bash .devbundle/gpu_parallel.sh 11 \
#         "ft:--init models/avfr-small-SHA8.pt --batch 32 --lr 5e-5 --steps 100000 --schedule constant \
#              --gan-warmup 0 --mouth-l1 5 --freeze-detector --wire-noise 0.75 --val-every 1000 --snapshot-every 250" \
#         "wide:--config wide --init /tmp/wide0.pt --freeze-detector --batch 32 --lr 1e-4 --steps 100000 \
#              --schedule constant --gan-warmup 0 --mouth-l1 5 --wire-noise 0.75 --val-every 1000 --snapshot-every 250"
# (from scratch instead: "wide:--config wide --init-detector models/avfr-small-SHA8.pt --freeze-detector ...")
# TORCHRUN_RUNS="ft" runs the named runs under torchrun (one process: the DDP/NCCL path, same training); after the
# runs, the training-step variants and the many-calls benchmark go into bench_model.jsonl (TRAIN_BENCH_S,
# MANY_CALLS_S: their time limits in s, 0 skips).
# $OUT receives (at most 8 files come back): logs.tgz (each run's train.log, log.csv, val.csv, and
# bench_model.jsonl: GPU latency of the per-frame graphs); for the runs with snapshots, <RUN>.pt = the
# generator at the largest step that every such run reached (the same step for all: a fair comparison
# whatever the time limit let each reach); for the others, <RUN>-last.pt = generator + discriminator of the
# last step (fp16, a training checkpoint without optimiser state: `avfr-codec export` or `train --init` it)
# and <RUN>-best.pt = its generator at the best dev PSNR of the box's validations. Runs named in SOUP_RUNS (e.g.
# SOUP_RUNS="ft", with --snapshot-every) are fine-tunes, not compared by step: they return <RUN>-last.pt and
# <RUN>-soup.pt, the mean of their snapshots of the run's second half (`avfr-codec average`: in session 8 a soup
# of CPU fine-tune snapshots was as good as its best members, with more PSNR than the shipped model on the call's
# path but less VMAF; model card).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/p
mkdir -p /tmp/p && ln -sfn "$PWD" /tmp/p/avfr   # the repo root is the package `avfr`
minutes=$1
shift
nvidia-smi -L
if [ -n "${WIDEN_FROM:-}" ]; then
  python3 -m avfr.cli widen "$WIDEN_FROM" --out /tmp/wide0.pt || exit 1
fi
pids=()
names=()
for spec in "$@"; do
  run=${spec%%:*}
  args=${spec#*:}
  mkdir -p "/tmp/run-$run"
  # Runs named in TORCHRUN_RUNS (e.g. TORCHRUN_RUNS="ft") go through torchrun with one process: the same
  # training, and a check of the DistributedDataParallel path (NCCL) at no extra cost (issue 17).
  launch=(python3 -m avfr.cli)
  case " ${TORCHRUN_RUNS:-} " in *" $run "*) launch=(python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m avfr.cli);; esac
  # shellcheck disable=SC2086
  "${launch[@]}" train --arrays .devbundle/data --config small --out "/tmp/run-$run" --device "${DEVICE:-cuda}" \
    --checkpoint-min 100 --val-frames 8 --time-limit-min "$minutes" -q $args \
    > "/tmp/run-$run/train.log" 2>&1 &
  pids+=($!)
  names+=("$run")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  echo "${names[$i]}: exit $?"
  grep -v -E "XNNPACK|absl|W0000" "/tmp/run-${names[$i]}/train.log" | tail -6
done
# GPU speed of both generators on the one detector, batch 1 and 32 (issue 13, capacity)
for config in small wide; do
  timeout 90 python3 benchmarks/bench_model.py --config $config --cuda --no-ort --threads 2 --iters 100 \
    --cuda-batch 1 32 >> /tmp/bench_model.jsonl 2>>/tmp/bench_model.err
done
# The training step side by side (issue 13: make it >= 2x faster): eager vs Adam's fused kernels vs torch.compile
# of both losses (+ channels_last), at batch 64 and 256; TRAIN_BENCH_S=0 skips it (compiling costs ~1 min each).
if [ "${TRAIN_BENCH_S:-240}" -gt 0 ]; then
  timeout "${TRAIN_BENCH_S:-240}" python3 benchmarks/bench_model.py --config small --cuda --no-ort --threads 2 \
    --iters 1 --warmup 1 --train-batch 64 256 --train-steps 10 \
    --train-variants eager,fused,compile-fused,compile-fused-cl >> /tmp/bench_model.jsonl 2>>/tmp/bench_model.err
fi
# Many calls on one generator (issue 17: target >= 10,000 frames/s at p95 < 80 ms): torch bf16 compiled, random
# sources (no ../shared/data on the box); MANY_CALLS_S=0 skips it.
if [ "${MANY_CALLS_S:-150}" -gt 0 ]; then
  timeout "${MANY_CALLS_S:-150}" python3 benchmarks/bench_many_calls.py --device cuda --calls 1,64,256,400,512 \
    --seconds 3 --modes batched >> /tmp/bench_model.jsonl 2>>/tmp/bench_model.err
fi
python3 - "${names[@]}" <<'EOF'
"""Pick the common snapshot step and write the files that come back."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

out = Path(os.environ["OUT"])
names = sys.argv[1:]
soups = set(os.environ.get("SOUP_RUNS", "").split())
snaps = {n: {int(p.stem.split("step")[1]): p for p in Path(f"/tmp/run-{n}").glob("weights-step*.pt")}
         for n in names}
for n in sorted(soups & set(names)):
    steps = sorted(snaps[n])
    members = [str(snaps[n][s]) for s in steps[len(steps) // 2:]]
    snaps[n] = {}  # returned as -last (and -best) below, like the runs without snapshots
    if len(members) >= 2:
        rc = subprocess.run([sys.executable, "-m", "avfr.cli", "average", *members, "--out",
                             str(out / f"{n}-soup.pt")]).returncode
        print(f"{n}: soup of {len(members)} snapshots (steps {steps[len(steps) // 2]}..{steps[-1]}), exit {rc}")
with_snaps = [n for n in names if snaps[n]]
if with_snaps:
    common = set.intersection(*(set(snaps[n]) for n in with_snaps))
    if common:
        step = max(common)
        for n in with_snaps:
            shutil.copyfile(snaps[n][step], out / f"{n}.pt")
        print(f"snapshots of {with_snaps} at their common step {step}")
for n in names:
    if snaps[n]:
        continue
    last = Path(f"/tmp/run-{n}/ckpt-last.pt")
    if not last.exists():
        print(f"{n}: no checkpoint")
        continue
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    half = {k: {n2: (t.half() if t.is_floating_point() else t) for n2, t in ckpt[k].items()}
            for k in ("model", "discriminator")}
    slim = {k: v for k, v in ckpt.items() if k not in ("opt_g", "opt_d", "rng")} | half
    torch.save(slim, out / f"{n}-last.pt")
    print(f"{n}: step {ckpt['step']} -> {n}-last.pt")
    best = Path(f"/tmp/run-{n}/weights-best.pt")
    if best.exists():
        shutil.copyfile(best, out / f"{n}-best.pt")  # the generator of the best dev PSNR on the box
EOF
tar czf "$OUT/logs.tgz" -C /tmp bench_model.jsonl bench_model.err \
  $(for n in "${names[@]}"; do echo "run-$n/train.log run-$n/log.csv run-$n/val.csv"; done) 2>/dev/null
ls -la "$OUT"
