"""``avfr-codec bench --cross`` on a plain clips folder: two short real clips (one without audio), a few frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from avfr.benchmarks import identity_backend
from avfr.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEECH = "grid_lwbsza"  # 3 s, speech
SILENT = "lp_d0"  # 3.1 s, video only (no WAV, no audio track)
FRAMES = 12


@pytest.mark.slow
def test_bench_cross_identity(tmp_path: Path) -> None:
    clips = DATA / "clips"
    needed = [clips / f"{SPEECH}.mp4", clips / f"{SPEECH}.wav", clips / f"{SILENT}.mp4"]
    if not all(p.exists() for p in needed):
        pytest.skip(f"../shared/data not found: {', '.join(str(p) for p in needed if not p.exists())}")
    folder = tmp_path / "clips"  # a plain folder of <id>.mp4 (+ <id>.wav), no manifest
    folder.mkdir()
    for path in needed:
        (folder / path.name).symlink_to(path)
    out = tmp_path / "report"
    argv = ["bench", "--clips", str(folder), "--codecs", "avfr", "--avfr-points", "q8", "--cross",
            "--max-frames", str(FRAMES), "--out", str(out), "-q"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())

    clips_info = {c["clip"]: c for c in report["clips"]}
    assert set(clips_info) == {SPEECH, SILENT}
    assert clips_info[SPEECH]["has_audio"] and not clips_info[SILENT]["has_audio"]
    assert SILENT in report["no_audio_clips"] and SILENT in (out / "report.md").read_text()

    cross = {(r["clip"], r["codec"]): r for r in report["cross_rows"]}
    assert set(cross) == {(c, k) for c in (SPEECH, SILENT) for k in ("avfr", "still")}
    for row in cross.values():
        assert {"id_dist", "motion_lmd", "sync_corr", "sync_lag_frames", "jitter"} <= set(row)
        assert row["point"] == "q8"
        if identity_backend()[0]:
            assert row["id_dist"] is not None and row["id_dist"] >= 0
        else:
            assert row["id_dist"] is None
    for clip in (SPEECH, SILENT):
        avfr, still = cross[(clip, "avfr")], cross[(clip, "still")]
        assert math.isfinite(avfr["motion_lmd"]) and avfr["motion_lmd"] >= 0
        assert still["motion_lmd"] is not None
    assert cross[(SPEECH, "avfr")]["sync_corr"] is not None  # speech: the proxy is defined
    assert cross[(SILENT, "avfr")]["sync_corr"] is None  # no audio: no envelope to correlate with
    assert "## Cross identity" in (out / "report.md").read_text()
