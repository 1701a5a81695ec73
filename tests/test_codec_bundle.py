"""avfr.codec.data.bundle: a packed training bundle rebuilds the clips it was made from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from codec_data_helpers import make_dataset, short_clip

from avfr.codec.data import clip_log_mel, load_bundle, load_clips, opus_roundtrip, write_bundle
from avfr.codec.data.bundle import (
    BUNDLE_VERSION,
    LANDMARK_STEP_PX,
    MEL_LOG_MIN,
    MEL_LOG_STEP,
    decode_landmarks,
    dequantise_log_mel,
    encode_landmarks,
    fit_landmark_basis,
    quantise_log_mel,
)

FRAMES = 30
MEL_TOL = MEL_LOG_STEP / 2 + 1e-5
LM_TOL = LANDMARK_STEP_PX / 2 + 1e-4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared data folder (``data/``, cache in ``cache/``) of two short dev clips, one without speech."""
    frames, pcm = short_clip(FRAMES)
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "data", {"talk": (frames, pcm), "mute": (frames[::-1].copy(), None)}, split="dev")
    return root


@pytest.fixture(scope="module")
def clips(dataset: Path) -> list:
    return load_clips(dataset / "data", dataset / "cache")


@pytest.fixture(scope="module")
def bundle(clips: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A version-2 bundle at the fine settings (crf 16, mask 20) with one Opus round trip."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    write_bundle(clips, out, crf=16, mask_crf=20, opus_bitrates_bps=(12000,))
    return out


def _copy(bundle: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle, tmp_path / "b")
    return tmp_path / "b"


def test_bundle_round_trip(clips: list, bundle: Path) -> None:
    assert json.loads((bundle / "bundle.json").read_text())["version"] == BUNDLE_VERSION == 2
    train, dev, variants = load_bundle(bundle)
    assert train == [] and [c.clip_id for c in dev] == [c.clip_id for c in clips]
    for orig, back in zip(clips, dev, strict=True):
        assert back.frames.shape == orig.frames.shape and back.frames.dtype == np.uint8
        # libx264 at crf 16 on already-compressed video: a small mean error, no gross damage
        assert np.abs(back.frames.astype(np.float32) - orig.frames).mean() < 3.0
        assert np.abs(back.mask.astype(np.float32) - orig.mask).mean() < 3.0
        np.testing.assert_array_equal(np.isnan(back.landmarks), np.isnan(orig.landmarks))
        assert np.nanmax(np.abs(back.landmarks - orig.landmarks)) <= LM_TOL
        # the mesh is redrawn from the landmarks: nearly the same pixels
        assert np.abs(back.mesh.astype(np.float32) - orig.mesh).mean() < 1.0
        np.testing.assert_array_equal(back.face_found, orig.face_found)
        assert back.has_audio == orig.has_audio
    talk = next(c for c in dev if c.clip_id == "talk")
    orig_talk = next(c for c in clips if c.clip_id == "talk")
    assert talk.mel.dtype == np.float32
    np.testing.assert_allclose(talk.mel, orig_talk.mel, rtol=0, atol=MEL_TOL)  # 8-bit codes
    (opus,) = variants["talk"]
    expected = clip_log_mel(opus_roundtrip(orig_talk.pcm, 12000))
    np.testing.assert_allclose(opus, expected, rtol=0, atol=MEL_TOL)
    assert variants["mute"] == []


def test_log_mel_codes_stay_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    top = MEL_LOG_MIN + 255 * MEL_LOG_STEP
    assert MEL_LOG_MIN == pytest.approx(np.log(1e-5)) and top > 5.29  # the data's log-mels: [log 1e-5, 5.29]
    mel = rng.uniform(MEL_LOG_MIN, top, (80, 500)).astype(np.float32)
    codes = quantise_log_mel(mel)
    assert codes.dtype == np.uint8
    assert np.abs(dequantise_log_mel(codes) - mel).max() <= MEL_TOL
    silent = np.full((80, 29), MEL_LOG_MIN, np.float32)  # clip_log_mel of digital silence comes back exactly
    np.testing.assert_array_equal(dequantise_log_mel(quantise_log_mel(silent)), silent)
    assert quantise_log_mel(np.array([top + 3.0, MEL_LOG_MIN - 1.0])).tolist() == [255, 0]  # clipped, not wrapped


def test_landmark_coding_keeps_every_point_within_a_sixteenth_of_a_pixel() -> None:
    rng = np.random.default_rng(1)
    t = 40
    shape = rng.uniform(20, 236, (478, 2))
    motion = np.cumsum(rng.normal(0, 2, (t, 1, 2)), axis=0)  # head motion plus detector jitter
    lm = (shape + motion + rng.normal(0, 0.3, (t, 478, 2))).astype(np.float32)
    lm[5, :10] = -rng.uniform(0.01, 30, (10, 2))  # partly outside the frame: real, negative
    face = np.ones(t, bool)
    face[[0, 7, 8, 39]] = False
    lm[~face] = np.nan
    clip = type("Clip", (), {"landmarks": lm, "face_found": face})()
    mean, basis = fit_landmark_basis([clip], dims=8)
    assert basis.shape == (956, 8) and basis.dtype == np.float16
    coef_dt, residual = encode_landmarks(lm, face, mean, basis)
    assert coef_dt.shape == (t, 8) and residual.shape == (t, 956)
    assert not coef_dt[[7, 8]].any() and not residual[~face].any()  # no face: nothing to code
    back = decode_landmarks(coef_dt, residual, face, mean, basis)
    np.testing.assert_array_equal(np.isnan(back).any(axis=(1, 2)), ~face)
    assert np.nanmax(np.abs(back - lm)) <= LM_TOL
    assert (back[5, :10] < 0).all()


def _write_version_1(bundle: Path, clips: list, tmp_path: Path) -> Path:
    """The files earlier code wrote (format version 1), with the same videos."""
    out = _copy(bundle, tmp_path)
    (out / "landmarks_pca.npz").unlink()
    meta = json.loads((out / "bundle.json").read_text())
    meta["version"] = 1
    (out / "bundle.json").write_text(json.dumps(meta))
    for clip in clips:
        lm = np.where(np.isnan(clip.landmarks), -1.0, np.round(clip.landmarks * 16)).astype(np.int16)
        arrays = {"landmarks_dq": np.concatenate([lm[:1], np.diff(lm, axis=0)]), "face_found": clip.face_found}
        if clip.has_audio:
            arrays["mel_clean"] = clip.mel.astype(np.float16)
            arrays["mel_opus12000"] = clip_log_mel(opus_roundtrip(clip.pcm, 12000)).astype(np.float16)
        np.savez_compressed(out / f"{clip.clip_id}.npz", **arrays)
    return out


def test_version_1_bundles_still_load(clips: list, bundle: Path, tmp_path: Path) -> None:
    _, dev, variants = load_bundle(_write_version_1(bundle, clips, tmp_path))
    for orig, back in zip(clips, dev, strict=True):
        np.testing.assert_array_equal(np.isnan(back.landmarks).any(axis=(1, 2)), ~orig.face_found)
        assert np.nanmax(np.abs(back.landmarks - orig.landmarks)) <= 1 / 32 + 1e-6
    talk = next(c for c in clips if c.clip_id == "talk")
    np.testing.assert_allclose(dev[0].mel, talk.mel, atol=0.01)  # float16 storage
    assert len(variants["talk"]) == 1 and variants["mute"] == []


def test_unknown_bundle_version_is_refused(bundle: Path, tmp_path: Path) -> None:
    out = _copy(bundle, tmp_path)
    meta = json.loads((out / "bundle.json").read_text())
    meta["version"] = 99
    (out / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="bundle version 99"):
        load_bundle(out)


@pytest.mark.parametrize(("damage", "message"), [
    ("no_npz", "talk.npz: unreadable"), ("bad_dtype", "lm_residual is float64"), ("short_mels", "mel_codes is uint8"),
    ("corrupt_npz", "talk.npz: unreadable"), ("no_basis", "landmarks_pca.npz: unreadable"),
    ("bad_id", "bad clip_id '../talk'"), ("no_index", "no readable bundle.json"),
])
def test_damaged_bundles_raise_value_error(bundle: Path, tmp_path: Path, damage: str, message: str) -> None:
    out = _copy(bundle, tmp_path)
    npz = out / "talk.npz"
    if damage == "no_npz":
        npz.unlink()
    elif damage in ("bad_dtype", "short_mels"):
        with np.load(npz) as z:
            arrays = dict(z)
        if damage == "bad_dtype":
            arrays["lm_residual"] = arrays["lm_residual"].astype(np.float64)
        else:
            arrays["mel_codes"] = arrays["mel_codes"][..., :-4]
        np.savez_compressed(npz, **arrays)
    elif damage == "corrupt_npz":
        data = bytearray(npz.read_bytes())
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
        npz.write_bytes(bytes(data))
    elif damage == "no_basis":
        (out / "landmarks_pca.npz").unlink()
    elif damage == "bad_id":
        meta = json.loads((out / "bundle.json").read_text())
        meta["clips"][0]["clip_id"] = "../talk"
        (out / "bundle.json").write_text(json.dumps(meta))
    else:
        (out / "bundle.json").write_text("{")
    with pytest.raises(ValueError, match=message):
        load_bundle(out)


def test_travel_size_settings_keep_the_priors_usable(clips: list, bundle: Path, tmp_path: Path) -> None:
    # the defaults fit all 167 clips beside the repository in the 64 MiB a GPU box receives (crf 28, mask 40)
    write_bundle(clips[:1], tmp_path / "small", opus_bitrates_bps=())
    for kind in ("rgb", "mask"):
        name = f"{clips[0].clip_id}.{kind}.mp4"
        assert (tmp_path / "small" / name).stat().st_size < (bundle / name).stat().st_size
    _, (back,), _ = load_bundle(tmp_path / "small")
    assert np.abs(back.mask.astype(np.float32) - clips[0].mask).mean() < 3.0
    assert np.abs(back.frames.astype(np.float32) - clips[0].frames).mean() < 4.0


def test_cli_bundle_writes_the_travel_preset(dataset: Path, clips: list, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from avfr.cli import main

    out = tmp_path / "cli"
    assert main(["data", "bundle", str(dataset / "data"), "--out", str(out), "--cache", str(dataset / "cache")]) == 0
    meta = json.loads((out / "bundle.json").read_text())
    assert (meta["version"], meta["crf"], meta["mask_crf"], meta["opus_bitrates_bps"]) == (2, 28, 40, [8000, 16000])
    assert [e["release"] for e in meta["clips"]] == [1, 2]  # from the manifest, for `train --release`
    assert f"bundle of 2 clips ({2 * FRAMES} frames)" in capsys.readouterr().out
    _, dev, variants = load_bundle(out)
    assert [c.clip_id for c in dev] == [c.clip_id for c in clips] and len(variants["talk"]) == 2
