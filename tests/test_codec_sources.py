"""avfr.codec.data.sources.manifest_releases and `avfr-codec train --release` (the data-effect experiment)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from avfr.cli.train import _of_release
from avfr.codec.data import manifest_releases

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_releases_of_a_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"clips": [
        {"id": "a", "release": 1}, {"id": "b", "release": 2}, {"id": "c"}, "junk"]}))
    assert manifest_releases(tmp_path) == {"a": 1, "b": 2}
    assert manifest_releases(tmp_path / "nowhere") == {}
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a clip manifest"):
        manifest_releases(tmp_path)


def test_train_release_filter():
    clips = [SimpleNamespace(clip_id=i) for i in ("a", "b", "c")]
    releases = {"a": 1, "b": 2}
    assert _of_release(clips, releases, None) == clips
    assert [c.clip_id for c in _of_release(clips, releases, "1")] == ["a"]
    assert [c.clip_id for c in _of_release(clips, releases, "1,2")] == ["a", "b"]
    with pytest.raises(ValueError, match="no release field"):
        _of_release(clips, {}, "1")


def test_shared_data_has_both_releases():
    if not (DATA / "manifest.json").exists():
        pytest.skip(f"../shared/data not found: {DATA}")
    releases = manifest_releases(DATA)
    manifest = json.loads((DATA / "manifest.json").read_text())
    train1 = [c for c in manifest["clips"] if c["split"] == "train" and releases[c["id"]] == 1]
    assert len(releases) == len(manifest["clips"]) and set(releases.values()) == {1, 2}
    assert 0 < len(train1) < sum(c["split"] == "train" for c in manifest["clips"])
