"""avfr.codec.data.bundle: a packed training bundle rebuilds the clips it was made from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from codec_data_helpers import make_dataset, short_clip

from avfr.codec.data import clip_log_mel, load_bundle, load_clips, opus_roundtrip, write_bundle

FRAMES = 30


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list:
    frames, pcm = short_clip(FRAMES)
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "data", {"talk": (frames, pcm), "mute": (frames[::-1].copy(), None)}, split="dev")
    return load_clips(root / "data", root / "cache")


def test_bundle_round_trip(clips: list, tmp_path: Path) -> None:
    size = write_bundle(clips, tmp_path / "b", opus_bitrates_bps=(12000,))
    assert size == sum(p.stat().st_size for p in (tmp_path / "b").iterdir())
    train, dev, variants = load_bundle(tmp_path / "b")
    assert train == [] and [c.clip_id for c in dev] == [c.clip_id for c in clips]
    for orig, back in zip(clips, dev, strict=True):
        assert back.frames.shape == orig.frames.shape and back.frames.dtype == np.uint8
        # libx264 at crf 16 on already-compressed video: a small mean error, no gross damage
        assert np.abs(back.frames.astype(np.float32) - orig.frames).mean() < 3.0
        assert np.abs(back.mask.astype(np.float32) - orig.mask).mean() < 3.0
        np.testing.assert_array_equal(np.isnan(back.landmarks), np.isnan(orig.landmarks))
        assert np.nanmax(np.abs(back.landmarks - orig.landmarks)) <= 1 / 32 + 1e-6
        # the mesh is redrawn from the landmarks: identical pixels up to the 1/16 px quantisation
        assert np.abs(back.mesh.astype(np.float32) - orig.mesh).mean() < 1.0
        np.testing.assert_array_equal(back.face_found, orig.face_found)
        assert back.has_audio == orig.has_audio
    talk = next(c for c in dev if c.clip_id == "talk")
    orig_talk = next(c for c in clips if c.clip_id == "talk")
    np.testing.assert_allclose(talk.mel, orig_talk.mel, atol=0.01)  # float16 storage
    (opus,) = variants["talk"]
    expected = clip_log_mel(opus_roundtrip(orig_talk.pcm, 12000))
    np.testing.assert_allclose(opus, expected, atol=0.01)
    assert variants["mute"] == []


def test_unknown_bundle_version_is_refused(clips: list, tmp_path: Path) -> None:
    write_bundle(clips[:1], tmp_path / "b", opus_bitrates_bps=())
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["version"] = 99
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="bundle version 99"):
        load_bundle(tmp_path / "b")


def test_travel_size_settings_keep_the_priors_usable(clips: list, tmp_path: Path) -> None:
    # the settings that fit a bundle beside the repository in the 64 MiB a GPU box receives (crf 21, mask 30)
    write_bundle(clips[:1], tmp_path / "fine", opus_bitrates_bps=())
    write_bundle(clips[:1], tmp_path / "small", opus_bitrates_bps=(), crf=21, mask_crf=30)
    name = f"{clips[0].clip_id}.mask.mp4"
    assert (tmp_path / "small" / name).stat().st_size < (tmp_path / "fine" / name).stat().st_size
    _, (back,), _ = load_bundle(tmp_path / "small")
    assert np.abs(back.mask.astype(np.float32) - clips[0].mask).mean() < 3.0
    assert np.abs(back.frames.astype(np.float32) - clips[0].frames).mean() < 4.0
