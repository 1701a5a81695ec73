"""Training loop: exact resume, a short real run (log, checkpoints, validation), the CLI round trip."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from train_helpers import assert_same_state

from avfr.codec.data import ClipArrays
from avfr.codec.train import BEST_CKPT, LAST_CKPT, LOG_CSV, VAL_CSV, TrainConfig, load_checkpoint, lr_factor, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP_IDS = ("grid_lwbsza", "grid_bbaf2n")  # 3 s each: dev and train


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DATA / "manifest.json").exists():
        pytest.skip(f"../shared/data not found: {DATA}")
    return tmp_path_factory.getbasetemp() / "codec-train-cache"  # shared with test_codec_trainset.py


@pytest.fixture(scope="module")
def clips(cache_dir: Path) -> list[ClipArrays]:
    from avfr.codec.data import discover_clips, open_clip, prepare

    sources = [s for s in discover_clips(DATA) if s.clip_id in CLIP_IDS]
    summary = prepare(DATA, cache_dir, sources=sources, progress=False)
    return [open_clip(e) for e in summary.entries]


def _split(clips: list[ClipArrays], split: str) -> list[ClipArrays]:
    return [c for c in clips if c.split == split]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, schedule="multistep", milestones=(0.6, 0.9), gamma=0.1)
    assert lr_factor(cfg, 0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9) == pytest.approx(1.0)
    assert lr_factor(cfg, 59) == pytest.approx(1.0)
    assert lr_factor(cfg, 60) == pytest.approx(0.1)
    assert lr_factor(cfg, 95) == pytest.approx(0.01)
    cos = TrainConfig(steps=100, warmup_steps=0, schedule="cosine")
    assert lr_factor(cos, 0) == pytest.approx(1.0)
    assert lr_factor(cos, 100) == pytest.approx(0.01)


def test_resume_is_exact(clips: list[ClipArrays], tmp_path: Path) -> None:
    """2 steps + resume + 2 steps == 4 straight steps, bit for bit (GAN on from step 3)."""
    cfg = TrainConfig(batch_size=1, steps=4, gan_warmup_steps=2, warmup_steps=2, num_threads=2, log_every=1,
                      seed=7, device="cpu")
    train_clips = _split(clips, "train")
    split_run, straight = tmp_path / "split", tmp_path / "straight"
    first = train(cfg, train_clips, [], split_run, progress=False, stop_after_steps=2)
    assert (first.step, first.stopped_by) == (2, "stop_after")
    second = train(cfg, train_clips, [], split_run, resume=True, progress=False)
    assert (second.step, second.steps_run) == (4, 2)
    train(cfg, train_clips, [], straight, progress=False)
    a, b = load_checkpoint(split_run / LAST_CKPT), load_checkpoint(straight / LAST_CKPT)
    assert a["step"] == b["step"] == 4
    for key in ("model", "discriminator", "opt_g", "opt_d", "rng"):
        assert_same_state(a[key], b[key], key)
    assert [r["step"] for r in _rows(split_run / LOG_CSV)] == ["1", "2", "3", "4"]
    with pytest.raises(FileExistsError):
        train(cfg, train_clips, [], straight, progress=False)


def test_short_real_run_logs_validates_and_checkpoints(clips: list[ClipArrays], tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=1, steps=3, gan_warmup_steps=1, num_threads=2, log_every=1,
                      val_max_per_clip=2, val_batch=2, device="cpu")
    summary = train(cfg, _split(clips, "train"), _split(clips, "dev"), tmp_path, progress=False)
    assert summary.step == 3 and summary.samples_per_s > 0
    rows = _rows(tmp_path / LOG_CSV)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        for key in ("g_total", "l1", "lr", "samples_per_s"):
            assert math.isfinite(float(row[key])), key
    assert math.isfinite(float(rows[-1]["d_total"]))  # discriminator trained after the warm-up
    val = _rows(tmp_path / VAL_CSV)
    assert len(val) == 1 and float(val[0]["psnr_db"]) > 5 and 0 < float(val[0]["ssim"]) <= 1
    if val[0]["lmd_px"] not in ("", "nan"):  # mediapipe found the face in the (barely trained) output
        assert float(val[0]["mouth_lmd_px"]) > 0
    assert summary.val is not None and summary.val.num_frames == 2
    assert (tmp_path / LAST_CKPT).exists() and (tmp_path / BEST_CKPT).exists()
    ckpt = load_checkpoint(tmp_path / LAST_CKPT)
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_cli_train_and_resume(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from avfr.cli import main

    out = tmp_path / "run"
    args = ["train", "--data", str(DATA), "--cache", str(cache_dir), "--clips", ",".join(CLIP_IDS), "--out",
            str(out), "--batch", "1", "--threads", "2", "--val-frames", "1", "--device", "cpu", "-q"]
    assert main([*args, "--steps", "1"]) == 0
    assert "samples/s" in capsys.readouterr().out
    assert main([*args, "--steps", "2"]) == 2  # refuses to overwrite the run without --resume
    assert main([*args, "--steps", "2", "--resume"]) == 0
    assert load_checkpoint(out / LAST_CKPT)["step"] == 2
    assert [r["step"] for r in _rows(out / LOG_CSV)] == ["1", "2"]


def test_time_limit_stops_cleanly_with_a_checkpoint(clips: list[ClipArrays], tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=1, steps=5, time_limit_min=0.001, num_threads=2, device="cpu")
    summary = train(cfg, _split(clips, "train"), [], tmp_path, progress=False)
    assert (summary.stopped_by, summary.step) == ("time_limit", 0)
    assert load_checkpoint(tmp_path / LAST_CKPT)["step"] == 0


def test_init_from_a_checkpoint_and_mouth_term(clips: list[ClipArrays], tmp_path: Path) -> None:
    base = TrainConfig(batch_size=1, steps=1, gan_warmup_steps=0, num_threads=2, log_every=1, device="cpu")
    train(base, _split(clips, "train"), [], tmp_path / "a", progress=False)
    source = load_checkpoint(tmp_path / "a" / LAST_CKPT)
    start = TrainConfig(**{**base.__dict__, "steps": 0, "init_from": str(tmp_path / "a" / LAST_CKPT)})
    train(start, _split(clips, "train"), [], tmp_path / "b", progress=False)
    copied = load_checkpoint(tmp_path / "b" / LAST_CKPT)
    assert copied["step"] == 0
    assert_same_state(copied["model"], source["model"], "model")
    assert_same_state(copied["discriminator"], source["discriminator"], "discriminator")
    tuned = TrainConfig(**{**start.__dict__, "steps": 1, "mouth_l1": 5.0})
    train(tuned, _split(clips, "train"), [], tmp_path / "c", progress=False)
    row = _rows(tmp_path / "c" / LOG_CSV)[-1]
    assert math.isfinite(float(row["mouth_l1"])) and float(row["mouth_l1"]) > 0
    # the speech ablation's arm: a --no-audio run starts from a checkpoint with speech (its speech branch
    # dropped), but a run with speech cannot start from one without
    no_audio = TrainConfig(**{**start.__dict__, "use_audio": False})
    train(no_audio, _split(clips, "train"), [], tmp_path / "d", progress=False)
    mute = load_checkpoint(tmp_path / "d" / LAST_CKPT)["model"]
    assert not any(k.startswith(("audio_encoder.", "attention_encoder.")) for k in mute)
    assert_same_state(mute, {k: v for k, v in source["model"].items() if k in mute}, "no-audio model")
    with pytest.raises(ValueError, match="use_audio"):
        train(TrainConfig(**{**start.__dict__, "init_from": str(tmp_path / "d" / LAST_CKPT)}),
              _split(clips, "train"), [], tmp_path / "e", progress=False)


def test_cli_export_writes_hash_named_weights_and_graphs(clips: list[ClipArrays], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from avfr.cli import main
    from avfr.codec.nets import load_weights
    from avfr.codec.runtime import sessions as runtime

    cfg = TrainConfig(batch_size=1, steps=0, num_threads=2, device="cpu")
    train(cfg, _split(clips, "train"), [], tmp_path / "run", progress=False)
    out = tmp_path / "models"
    out.mkdir()
    (out / "avfr-small-deadbeef.pt").write_bytes(b"stale")
    (out / "keep.txt").write_text("not ours")
    assert main(["export", str(tmp_path / "run" / LAST_CKPT), "--out", str(out), "--replace"]) == 0
    assert "step 0" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert "avfr-small-deadbeef.pt" not in names and "keep.txt" in names and "avfr-small.json" in names
    weights = [p for p in out.glob("avfr-small-*.pt")]
    assert len(weights) == 1 and len(list(out.glob("avfr-small-*.onnx"))) == 3
    load_weights(weights[0], expected_sha256=weights[0].stem.rsplit("-", 1)[1])
    manifest = runtime.load_manifest(out / "avfr-small.json")
    assert set(manifest.sha256) == {"sender", "receiver_source", "receiver_frame"}
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2


def test_frozen_detector_is_unchanged_by_training(clips: list[ClipArrays], tmp_path: Path) -> None:
    # (with held keypoints on every sample and the audio mouth head: those paths train too)
    cfg = TrainConfig(batch_size=1, steps=2, gan_warmup_steps=0, num_threads=2, log_every=1, device="cpu",
                      freeze_detector=True, val_every=1, val_max_per_clip=1, val_batch=1, hold_kp=1.0,
                      hold_max_lag=2, audio_mouth=0.1, audio_lr_mult=10.0)
    train(cfg, _split(clips, "train"), _split(clips, "dev"), tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / LAST_CKPT)
    from avfr.codec.nets import AvfrConfig, AvfrModel

    torch.manual_seed(cfg.seed)  # the run's initial weights: networks are built right after seeding
    fresh = AvfrModel(AvfrConfig.from_dict(ckpt["model_config"])).state_dict()
    detector = [k for k in ckpt["model"] if k.startswith("kp_detector.")]
    assert detector and all(torch.equal(ckpt["model"][k], fresh[k]) for k in detector)  # BN statistics too
    others = [k for k in ckpt["model"] if k.startswith("generator.") and ckpt["model"][k].is_floating_point()]
    assert any(not torch.equal(ckpt["model"][k], fresh[k]) for k in others)  # the rest did train
    row = _rows(tmp_path / LOG_CSV)[-1]
    assert "eq_kp" not in row or row["eq_kp"] == ""
    assert math.isfinite(float(row["l1"])) and float(row["l1"]) > 0
    assert math.isfinite(float(row["audio_mouth"])) and float(row["audio_mouth"]) > 0
    assert any(k.startswith("audio_encoder.mouth_head.") for k in ckpt["model"])


def test_snapshots_and_init_from_a_weights_file(clips: list[ClipArrays], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from avfr.cli import main
    from avfr.codec.nets import load_weights
    from avfr.codec.train import snapshot_name

    base = TrainConfig(batch_size=1, steps=2, gan_warmup_steps=0, num_threads=2, log_every=1, device="cpu",
                       snapshot_every=1)
    train(base, _split(clips, "train"), [], tmp_path / "a", progress=False)
    snaps = sorted(p.name for p in (tmp_path / "a").glob("weights-step*.pt"))
    assert snaps == [snapshot_name(1), snapshot_name(2)]
    last = load_weights(tmp_path / "a" / snapshot_name(2))  # the generator of the last step, fp16-rounded
    expected = {k: v.half().float() if v.is_floating_point() else v
                for k, v in load_checkpoint(tmp_path / "a" / LAST_CKPT)["model"].items()}
    assert_same_state(last.state_dict(), expected, "snapshot")

    # a weights file (the shipped format) starts a fine-tune: its generator, a fresh discriminator
    start = TrainConfig(batch_size=1, steps=0, num_threads=2, device="cpu",
                        init_from=str(tmp_path / "a" / snapshot_name(2)))
    train(start, _split(clips, "train"), [], tmp_path / "b", progress=False)
    copied = load_checkpoint(tmp_path / "b" / LAST_CKPT)
    assert_same_state(copied["model"], expected, "model")
    torch.manual_seed(0)
    fresh = TrainConfig(batch_size=1, steps=0, num_threads=2, device="cpu")
    train(fresh, _split(clips, "train"), [], tmp_path / "c", progress=False)
    assert_same_state(copied["discriminator"], load_checkpoint(tmp_path / "c" / LAST_CKPT)["discriminator"])
    with pytest.raises(ValueError, match="use_priors"):
        train(TrainConfig(**{**start.__dict__, "use_priors": False}), _split(clips, "train"), [], tmp_path / "d",
              progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        train(TrainConfig(**{**start.__dict__, "init_from": str(tmp_path / "junk.pt")}), _split(clips, "train"),
              [], tmp_path / "e", progress=False)

    # export takes a weights file too
    assert main(["export", str(tmp_path / "a" / snapshot_name(2)), "--out", str(tmp_path / "m")]) == 0
    assert "weights " in capsys.readouterr().out
    assert len(list((tmp_path / "m").glob("avfr-small-*.onnx"))) == 3
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    assert main(["export", str(tmp_path / "other.pt"), "--out", str(tmp_path / "m2")]) == 2
