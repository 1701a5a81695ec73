"""`avfr-codec data prepare` / `data report` round trip in a temporary directory, with bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from codec_data_helpers import make_dataset, short_clip, write_video

from avfr.cli import main


@pytest.fixture
def data_dir(tmp_path):
    frames, pcm = short_clip(8)
    root = make_dataset(tmp_path / "data", {"good": (frames, pcm), "quiet": (frames[:4], None)})
    cut = root / "clips" / "cut.mp4"
    cut.write_bytes((root / "clips" / "good.mp4").read_bytes()[:600])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["clips"].append({"id": "cut", "split": "dev", "frames": 8, "has_speech": False})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_prepare_then_report(data_dir, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    assert main(["data", "prepare", str(data_dir), "--cache", str(cache), "-q"]) == 0
    out = capsys.readouterr().out
    assert "prepared 3 clips" in out and "3 built" in out and "1 unusable" in out
    assert "cut: cannot open video cut.mp4" in out

    assert main(["data", "prepare", str(data_dir), "--cache", str(cache), "-q"]) == 0
    assert "3 up to date" in capsys.readouterr().out

    assert main(["data", "report", str(data_dir), "--cache", str(cache)]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[0].split() == ["clip", "split", "frames", "faces", "2faces", "speech_s", "audio"]
    good = next(line for line in report if line.startswith("good"))
    assert good.split()[:5] == ["good", "train", "8", "8", "0"] and good.split()[-1] == "yes"
    assert any("! no audio (video-only clip)" in line for line in report)
    assert any("! failed: cannot open video cut.mp4" in line for line in report)
    assert report[-1].startswith("total: 3 clips (1 unusable), 12 frames")
    assert "faces found in 12 (100.0 %)" in report[-1]


def test_report_without_prepare(data_dir, tmp_path, capsys) -> None:
    assert main(["data", "report", str(data_dir), "--cache", str(tmp_path / "c"), "--no-prepare"]) == 0
    out = capsys.readouterr().out
    assert out.count("run `avfr-codec data prepare`") == 3
    assert not (tmp_path / "c").exists()


def test_prepare_one_plain_video_and_bad_paths(tmp_path, capsys) -> None:
    frames, pcm = short_clip(4)
    video = write_video(tmp_path / "me.mp4", frames, audio=pcm)
    assert main(["data", "prepare", str(video), "--cache", str(tmp_path / "cache"), "-q"]) == 0
    assert "prepared 1 clips" in capsys.readouterr().out
    assert main(["data", "prepare", str(tmp_path / "absent"), "--cache", str(tmp_path / "cache")]) == 1
    assert "data not found" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    assert main(["data", "prepare", str(junk), "--cache", str(tmp_path / "cache"), "-q"]) == 1
    assert "junk: cannot open video" in capsys.readouterr().out


def test_data_without_action_prints_help(capsys) -> None:
    assert main(["data"]) == 2
    assert "prepare" in capsys.readouterr().out
