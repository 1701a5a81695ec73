"""``avfr-codec train`` under a real ``torchrun`` with 2 CPU processes (gloo, DistributedDataParallel): both ranks
hold the same weights after every step, a run stopped and resumed continues to the very weights of an
uninterrupted one, and its checkpoint resumes in one process."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import assert_same_state

from avfr.codec.train import LAST_CKPT, LOG_CSV, load_checkpoint
from avfr.codec.train.distributed import HASH_ENV, rank_seed

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP_IDS = ("grid_lwbsza", "grid_bbaf2n")  # 3 s each: dev and train (as test_codec_train.py)


def _train_args(cache: Path, out: Path, steps: int, clips: tuple[str, ...] = CLIP_IDS) -> list[str]:
    return ["train", "--data", str(DATA), "--cache", str(cache), "--clips", ",".join(clips), "--out", str(out),
            "--batch", "1", "--threads", "1", "--val-frames", "1", "--device", "cpu", "-q", "--steps", str(steps),
            "--gan-warmup", "1", "--schedule", "constant"]  # constant: the schedule does not follow --steps


def _torchrun(args: list[str]) -> str:
    """``python -m torch.distributed.run --standalone --nproc-per-node 2 -m avfr.cli ARGS``; its output."""
    env = {**os.environ, HASH_ENV: "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "avfr.cli",
           *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _hashes(run: Path, rank: int) -> list[str]:
    return (run / f"hashes-rank{rank}.txt").read_text().splitlines()


@pytest.mark.slow
def test_torchrun_two_processes_train_alike_and_resume_exactly(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    if not (DATA / "manifest.json").exists():
        pytest.skip(f"../shared/data not found: {DATA}")
    cache, straight, split = tmp_path / "cache", tmp_path / "straight", tmp_path / "split"

    # 3 steps straight (step 1 the generator alone, steps 2-3 with the discriminator): the cache is prepared by
    # rank 0 while rank 1 waits; both ranks record their weights after every step
    out = _torchrun(_train_args(cache, straight, 3))
    assert "2 processes (gloo)" in out and "global batch 2" in out and "lr 0.0002 as given" in out
    h0, h1 = _hashes(straight, 0), _hashes(straight, 1)
    assert [line.split()[0] for line in h0] == ["1", "2", "3"]
    assert h0 == h1  # same G and D weights on both ranks after each step
    assert len({line.split()[1] for line in h0}) == 3  # and they did train
    ckpt = load_checkpoint(straight / LAST_CKPT)
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert ckpt["seeds"] == [0, rank_seed(0, 1)]  # --seed 0 on rank 0, its own seed on rank 1
    assert not torch.equal(*(r["trainset"]["generator"] for r in ckpt["rng_ranks"]))  # own pairs per rank
    assert not any(k.startswith(("module.", "net.")) for k in [*ckpt["model"], *ckpt["discriminator"]])
    with (straight / LOG_CSV).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "3" and rows[-1]["global_batch"] == "2"

    # 2 steps, then resumed with the same world size to 3: the very same weights, optimisers and RNG states
    # (without the dev clip from here on, for time: rank 0's validation changes no training state)
    train_only = CLIP_IDS[1:]
    _torchrun(_train_args(cache, split, 2, train_only))
    _torchrun([*_train_args(cache, split, 3, train_only), "--resume"])
    assert _hashes(split, 0) == _hashes(split, 1) == h0
    resumed = load_checkpoint(split / LAST_CKPT)
    for key in ("model", "discriminator", "opt_g", "opt_d", "rng_ranks", "seeds", "step"):
        assert_same_state(resumed[key], ckpt[key], key)

    # the world-size-2 checkpoint resumes in one process: streams restarted from (seed, rank, step), logged
    from avfr.cli import main

    one = tmp_path / "one"
    shutil.copytree(straight, one)
    with caplog.at_level("WARNING"):
        assert main([*_train_args(cache, one, 4, train_only), "--resume", "--threads", "2"]) == 0
    assert "written by 2 process(es), this run has 1" in caplog.text
    assert "step 4 (1 this run" in capsys.readouterr().out
    after = load_checkpoint(one / LAST_CKPT)
    assert after["step"] == 4 and after["world_size"] == 1 and after["seeds"] == [rank_seed(0, 0, 3)]


def test_a_decoded_bundle_is_shared_through_memory_mapped_files(tmp_path: Path) -> None:
    from avfr.codec.data import ClipArrays, open_mapped, remove_mapped, save_mapped

    rng = np.random.default_rng(0)

    def clip(cid: str, split: str, t: int) -> ClipArrays:
        return ClipArrays(clip_id=cid, split=split, frames=rng.integers(0, 255, (t, 8, 8, 3), np.uint8),
                          landmarks=rng.normal(size=(t, 478, 2)).astype(np.float32), face_found=np.ones(t, bool),
                          mesh=rng.integers(0, 255, (t, 8, 8), np.uint8),
                          mask=rng.integers(0, 255, (t, 8, 8), np.uint8),
                          pcm=np.zeros(t * 640, np.float32), has_audio=split == "train",
                          mel=rng.normal(size=(80, 4 * t + 29)).astype(np.float32), problems=("odd",) * (t == 2))

    clips = [clip("a", "train", 3), clip("b", "dev", 2)]
    variants = {"a": [rng.normal(size=(80, 41)).astype(np.float32)], "b": []}
    save_mapped(tmp_path / "copy", clips, variants)
    back, back_variants = open_mapped(tmp_path / "copy")
    assert [(c.clip_id, c.split, c.has_audio, c.problems) for c in back] == [
        (c.clip_id, c.split, c.has_audio, c.problems) for c in clips]
    assert isinstance(back[0].frames, np.memmap) and not back[0].frames.flags.writeable
    for a, b in zip(clips, back, strict=True):
        for name in ("frames", "mesh", "mask", "landmarks", "face_found", "pcm", "mel"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(back_variants["a"][0], variants["a"][0]) and back_variants["b"] == []
    remove_mapped(tmp_path / "copy")  # a mapping outlives its file
    assert not (tmp_path / "copy").exists() and int(back[0].frames.sum()) == int(clips[0].frames.sum())
