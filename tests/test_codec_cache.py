"""avfr.codec.data.cache, .sources, .preparation, .lookup: round trip, bad inputs flagged, incremental re-runs,
corrupt entries rebuilt."""

from __future__ import annotations

import json
import shutil
import time

import cv2
import numpy as np
import pytest
from codec_data_helpers import (
    SHARED_DATA,
    SHORT_CLIP,
    make_dataset,
    read_frames,
    read_wav,
    short_clip,
    write_video,
    write_wav,
)

from avfr.codec.data import (
    PIPELINE_VERSION,
    ClipArrays,
    check_entry,
    clip_log_mel,
    default_cache_dir,
    discover_clips,
    find_entries,
    load_clips,
    prepare,
    render_mesh,
)

GOOD_FRAMES = 20


def _two_face_frames(frames: np.ndarray) -> np.ndarray:
    """Two real faces side by side in each 256x256 frame (two frames concatenated, then resized)."""
    pairs = np.concatenate([frames, frames[::-1, :, ::-1]], axis=2)  # (T, 256, 512, 3)
    out = np.zeros_like(frames)
    for i, pair in enumerate(pairs):
        out[i, 64:192] = cv2.resize(pair, (256, 128), interpolation=cv2.INTER_AREA)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small data folder with one good clip and one of each bad input, prepared once."""
    frames, pcm = short_clip(GOOD_FRAMES)
    root = tmp_path_factory.mktemp("data")
    gray = np.full((8, 256, 256, 3), 120, np.uint8)
    make_dataset(
        root,
        {
            "good": (frames, pcm),
            "noface": (gray, np.zeros(8 * 640, np.float32)),  # no face, silent audio
            "twofaces": (_two_face_frames(frames[:8]), pcm[: 8 * 640]),
            "shortwav": (frames[:10], pcm[: 7 * 640]),  # wav 3 frames short
            "longwav": (frames[:6], pcm[: 9 * 640]),  # wav 3 frames long
            "nowav": (frames[:6], pcm[: 6 * 640]),
            "videoonly": (frames[:6], None),
            "broken": (frames[:6], pcm[: 6 * 640]),
        },
    )
    (root / "clips" / "nowav.wav").unlink()
    broken = root / "clips" / "broken.mp4"
    broken.write_bytes(broken.read_bytes()[:700])
    # A real (moov-first) mp4 cut in half, with its full-length WAV.
    real = SHARED_DATA / "clips" / f"{SHORT_CLIP}.mp4"
    (root / "clips" / "cut.mp4").write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    shutil.copy(SHARED_DATA / "clips" / f"{SHORT_CLIP}.wav", root / "clips" / "cut.wav")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["clips"].append({"id": "cut", "split": "dev", "frames": 75, "has_speech": True})
    (root / "manifest.json").write_text(json.dumps(manifest))
    cache = tmp_path_factory.mktemp("cache")
    summary = prepare(root, cache, progress=False)
    return root, cache, summary, frames, pcm


def _entry(summary, clip_id):
    return next(e for e in summary.entries if e.clip_id == clip_id)


def test_prepare_builds_every_clip(dataset) -> None:
    _, cache, summary, _, _ = dataset
    names = ["good", "noface", "twofaces", "shortwav", "longwav", "nowav", "videoonly", "broken", "cut"]
    assert sorted(summary.built) == sorted(names)
    assert summary.skipped == [] and summary.missing == {}
    assert all(e.path.parent == cache / f"v{PIPELINE_VERSION}" for e in summary.entries)
    assert not list((cache / f"v{PIPELINE_VERSION}").glob(".tmp-*"))


def test_round_trip(dataset) -> None:
    root, cache, _, frames, pcm = dataset
    clips = load_clips(root, cache, split="train", prepare_missing=False)
    expected = ["good", "noface", "twofaces", "shortwav", "longwav", "nowav", "videoonly"]
    assert [c.clip_id for c in clips] == expected
    clip = clips[0]
    assert isinstance(clip, ClipArrays) and clip.split == "train" and clip.num_frames == GOOD_FRAMES
    assert clip.frames.shape == (GOOD_FRAMES, 256, 256, 3) and clip.frames.dtype == np.uint8
    assert isinstance(clip.frames, np.memmap) and isinstance(clip.mesh, np.memmap)
    assert clip.landmarks.shape == (GOOD_FRAMES, 478, 2) and clip.landmarks.dtype == np.float32
    assert clip.face_found.dtype == bool and clip.face_found.all()
    assert clip.mesh.shape == clip.mask.shape == (GOOD_FRAMES, 256, 256) and clip.mask.dtype == np.uint8
    assert clip.pcm.shape == (GOOD_FRAMES * 640,) and clip.pcm.dtype == np.float32 and clip.has_audio
    assert clip.mel.shape == (80, 4 * GOOD_FRAMES + 29) and clip.mel.dtype == np.float32
    assert clip.problems == ()
    np.testing.assert_array_equal(clip.frames, read_frames(root / "clips" / "good.mp4"))
    np.testing.assert_allclose(clip.pcm, read_wav(root / "clips" / "good.wav"), atol=1e-4)
    np.testing.assert_array_equal(clip.mel, clip_log_mel(clip.pcm))
    for i in (0, GOOD_FRAMES - 1):
        np.testing.assert_array_equal(clip.mesh[i], render_mesh(clip.landmarks[i]))


def test_bad_inputs_are_flagged(dataset) -> None:
    root, cache, summary, _, _ = dataset
    problems = {e.clip_id: " | ".join(e.problems) for e in summary.entries}
    assert problems["good"] == ""
    noface = load_clips(root, cache, prepare_missing=False)[1]
    assert noface.clip_id == "noface" and not noface.face_found.any() and np.isnan(noface.landmarks).all()
    assert not noface.mesh.any()
    assert "no face in 8 of 8 frames" in problems["noface"]
    assert "audio is silent" in problems["noface"] and not _entry(summary, "noface").has_audio
    assert not noface.pcm.any()
    assert "2 faces in" in problems["twofaces"] and _entry(summary, "twofaces").meta["multi_face_frames"] >= 4
    assert "audio length 0.280 s (4480 samples) != video 0.400 s (6400): zero-padded" in problems["shortwav"]
    shortwav = load_clips(root, cache, prepare_missing=False)[3]
    assert shortwav.pcm.shape == (6400,) and not shortwav.pcm[4480:].any() and shortwav.pcm[:4480].any()
    assert "audio length 0.360 s (5760 samples) != video 0.240 s (3840): trimmed" in problems["longwav"]
    longwav = load_clips(root, cache, prepare_missing=False)[4]
    np.testing.assert_allclose(longwav.pcm, read_wav(root / "clips" / "longwav.wav")[:3840], atol=1e-4)
    assert "audio missing: nowav.wav not found" in problems["nowav"]
    assert not _entry(summary, "nowav").has_audio
    assert problems["videoonly"] == "no audio (video-only clip)"
    broken = _entry(summary, "broken")
    assert broken.failed and "cannot open video" in broken.failed and "failed:" in problems["broken"]
    cut = _entry(summary, "cut")
    assert not cut.failed and 0 < cut.num_frames < 75
    assert "video truncated" in problems["cut"] and "manifest says 75" in problems["cut"]
    assert "trimmed" in problems["cut"]  # the WAV is longer than what is left of the video


def test_rerun_is_incremental(dataset) -> None:
    root, cache, _, _, _ = dataset
    started = time.perf_counter()
    again = prepare(root, cache, progress=False)
    assert again.built == [] and again.rebuilt == []
    assert len(again.skipped) == 9
    assert time.perf_counter() - started < 5.0


def test_corrupt_entries_are_rebuilt(dataset, tmp_path) -> None:
    root, _, _, _, _ = dataset
    cache = tmp_path / "cache"
    good = [s for s in discover_clips(root) if s.clip_id == "good"]
    entry = prepare(root, cache, sources=good, progress=False).entries[0]
    reference = np.array(np.load(entry.path / "frames.npy"))

    def rebuilt_after(damage, verify: bool = False) -> None:
        damage(entry.path)
        assert check_entry(entry.path, verify=verify) is not None
        summary = prepare(root, cache, sources=good, verify=verify, progress=False)
        assert summary.rebuilt == ["good"], summary
        assert check_entry(entry.path, verify=True) is None
        np.testing.assert_array_equal(np.load(entry.path / "frames.npy"), reference)

    def truncate(path):
        data = (path / "mask.npy").read_bytes()
        (path / "mask.npy").write_bytes(data[: len(data) // 2])

    def drop_marker(path):
        (path / "complete.json").unlink()

    def flip_small(path):
        data = bytearray((path / "arrays.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / "arrays.npz").write_bytes(bytes(data))

    def flip_big(path):
        with open(path / "frames.npy", "r+b") as fh:
            fh.seek(10_000)
            byte = fh.read(1)
            fh.seek(10_000)
            fh.write(bytes([byte[0] ^ 0xFF]))

    rebuilt_after(truncate)
    rebuilt_after(drop_marker)
    rebuilt_after(flip_small)
    flip_big(entry.path)
    assert check_entry(entry.path) is None  # the quick check does not read the big arrays
    flip_big(entry.path)
    rebuilt_after(flip_big, verify=True)
    # A changed clip file is a new key: a new entry beside the old one.
    (root / "clips" / "good.wav").write_bytes((root / "clips" / "good.wav").read_bytes())  # same bytes
    assert prepare(root, cache, sources=good, progress=False).skipped == ["good"]


def test_changed_clip_gets_a_new_entry(tmp_path) -> None:
    frames, pcm = short_clip(4)
    root = make_dataset(tmp_path / "data", {"c": (frames, pcm)})
    first = prepare(root, tmp_path / "cache", progress=False).entries[0]
    write_wav(root / "clips" / "c.wav", pcm * 0.5)
    second = prepare(root, tmp_path / "cache", progress=False)
    assert second.built == ["c"] and second.entries[0].path != first.path


def test_missing_entries_raise_a_clear_error(tmp_path) -> None:
    frames, pcm = short_clip(2)
    root = make_dataset(tmp_path / "data", {"c": (frames, pcm)})
    with pytest.raises(FileNotFoundError, match="avfr-codec data prepare"):
        load_clips(root, tmp_path / "empty", prepare_missing=False)
    assert find_entries(root, tmp_path / "cache", prepare_missing=True)[0].num_frames == 2


def test_default_cache_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "avfr-codec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "avfr-codec"


def test_plain_mp4_with_its_own_audio_track(tmp_path) -> None:
    frames, pcm = short_clip(25)
    video = write_video(tmp_path / "talk.mp4", frames, audio=pcm)
    sources = discover_clips(video)
    assert len(sources) == 1 and sources[0].split == "" and sources[0].audio_path is None
    clip = load_clips(video, tmp_path / "cache")[0]
    assert clip.clip_id == "talk" and clip.split == "" and clip.has_audio
    assert clip.pcm.shape == (25 * 640,)
    # AAC priming is compensated through the stream start times: the track lines up with the WAV.
    core = slice(2000, 14000)
    lags = range(-64, 65)
    scores = [np.dot(pcm[core], np.roll(clip.pcm, -lag)[core]) for lag in lags]
    assert abs(lags[int(np.argmax(scores))]) <= 2
    assert np.corrcoef(pcm[core], clip.pcm[core])[0, 1] > 0.9


def test_folder_of_plain_videos(tmp_path) -> None:
    frames, pcm = short_clip(3)
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "b.mp4", frames)
    write_video(folder / "a.mp4", frames)
    write_wav(folder / "a.wav", pcm)
    (folder / "notes.txt").write_text("ignored")
    sources = discover_clips(folder)
    assert [s.clip_id for s in sources] == ["a", "b"]
    assert sources[0].audio_path == folder / "a.wav" and sources[1].audio_path is None
    summary = prepare(folder, tmp_path / "cache", progress=False)
    assert _entry(summary, "a").has_audio and "no audio track" in _entry(summary, "b").problems
    with pytest.raises(FileNotFoundError):
        discover_clips(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no manifest.json and no videos"):
        discover_clips(empty)


def test_manifest_clip_without_video_is_reported(tmp_path) -> None:
    frames, pcm = short_clip(2)
    root = make_dataset(tmp_path / "data", {"c": (frames, pcm)})
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["clips"].append({"id": "ghost", "split": "train", "frames": 5, "has_speech": False})
    (root / "manifest.json").write_text(json.dumps(manifest))
    summary = prepare(root, tmp_path / "cache", progress=False)
    assert [e.clip_id for e in summary.entries] == ["c"]
    assert "video not found" in summary.missing["ghost"]
    shutil.rmtree(tmp_path / "cache")
