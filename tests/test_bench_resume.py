"""``avfr-codec bench`` resumes per part (avfr.benchmarks.rate_quality.run_clip): a new avfr model or operating point
re-runs only the avfr rows, the still and anchor rows come back from the earlier run, and the assembled clip
equals a fresh run's (timings aside)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "grid_lwbsza.mp4"
FRAMES = 6
TIMINGS = ("enc_fps", "dec_fps")


def _untimed(result: dict) -> dict:
    """A clip result without its timings and its whole-config key."""
    out = {k: v for k, v in result.items() if k != "config_key"}
    out["rows"] = [{k: v for k, v in row.items() if k not in TIMINGS} for row in result["rows"]]
    return out


@pytest.mark.slow
def test_bench_resumes_per_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.benchmarks import AvfrModels, BenchConfig, Evaluator, anchors, ffmpeg_exe, missing_parts, run_clip
    from avfr.codec.data import default_cache_dir, load_clips

    if anchors.missing_encoders([anchors.anchor_specs()["av1"]], ffmpeg_exe()):
        pytest.skip("the imageio-ffmpeg binary has no libsvtav1")
    (clip,) = load_clips(CLIP, default_cache_dir())
    first = BenchConfig((20.0,), ("avfr", "av1"), ("q8",), max_frames=FRAMES, max_probes=2, identity=False,
                        model="model-a")
    more = replace(first, avfr_points=("q8", "q6"))
    out, fresh_out = tmp_path / "run", tmp_path / "fresh"
    fresh_out.mkdir()
    (fresh_out / "work").symlink_to(out / "work")  # the same bitstreams: encoders need not be deterministic
    models = AvfrModels.load(threads=2)
    evaluator = Evaluator.create(use_identity=False)

    def run(config: BenchConfig, folder: Path) -> tuple[dict, list[str]]:
        ticks: list[str] = []
        return run_clip(clip, config, folder, models, evaluator, tick=ticks.append), ticks

    try:
        done, ticks = run(first, out)
        assert ticks == ["still", "avfr q8", "av1 20"]
        assert all(r["kbps_steady"] < min(r["kbps_clip"], r["kbps_call"]) for r in done["rows"])
        # another speech rate re-runs the avfr rows only (the generator hears other speech)
        assert [p.name for p in missing_parts(out, clip, replace(first, opus_kbps=8.0))] == ["avfr-q8"]

        # an anchor part saved before its rows carried the intra byte counts: they come from the kept bitstreams
        # (no recompute); with a bitstream gone, the part is recomputed
        from avfr.benchmarks.accounting import ANCHOR_FIELDS

        (part,) = (out / "clips" / f"{clip.clip_id}.parts").glob("av1-*.json")
        saved = json.loads(part.read_text())
        part.write_text(json.dumps({**saved, "rows": [{k: v for k, v in r.items() if k not in ANCHOR_FIELDS}
                                                      for r in saved["rows"]]}))
        assert missing_parts(out, clip, first) == []
        upgraded, ticks = run(first, out)
        assert ticks == [] and _untimed(upgraded) == _untimed(done)
        kept = out / "work" / clip.clip_id / "av1" / f"{saved['rows'][0]['param']}.bin"
        kept.rename(kept.with_suffix(".gone"))
        assert [p.name for p in missing_parts(out, clip, first)] == ["av1"]
        kept.with_suffix(".gone").rename(kept)
        part.write_text(json.dumps(saved))

        # one more point: only it runs, and the clip equals a fresh run's
        assert [p.name for p in missing_parts(out, clip, more)] == ["avfr-q6"]
        resumed, ticks = run(more, out)
        assert ticks == ["avfr q6"]
        fresh, _ = run(more, fresh_out)
        assert [(r["codec"], r["point"]) for r in resumed["rows"]] == [
            ("still", "source"), ("avfr", "q8"), ("avfr", "q6"), ("av1", fresh["rows"][3]["point"])]
        assert _untimed(resumed) == _untimed(fresh)
        assert json.loads((out / "clips" / f"{clip.clip_id}.json").read_text()) == resumed
        assert (out / resumed["strip"]).read_bytes() == (fresh_out / fresh["strip"]).read_bytes()

        # a new model: both avfr rows run again; no anchor encode, decode or still row
        def no_anchor_work(*args: object, **kwargs: object) -> None:
            raise AssertionError("anchor work on resume")

        monkeypatch.setattr(anchors, "encode", no_anchor_work)
        monkeypatch.setattr(anchors, "decode", no_anchor_work)
        full_reference, evaluated = evaluator.full_reference, []

        def counted(*args: object, **kwargs: object) -> dict:
            evaluated.append(args)
            return full_reference(*args, **kwargs)

        monkeypatch.setattr(evaluator, "full_reference", counted)
        newer, ticks = run(replace(more, model="model-b"), out)
        assert ticks == ["avfr q8", "avfr q6"] and len(evaluated) == 2
        assert _untimed(newer)["rows"] == _untimed(resumed)["rows"]  # the same network under another name
        assert newer["config_key"] != resumed["config_key"]

        # every part saved: no model and no evaluator needed, rows in the usual order
        subset = run_clip(clip, replace(more, avfr_points=("q6",), model="model-b"), out, None, None)
        assert subset["rows"] == [newer["rows"][0], newer["rows"][2], newer["rows"][3]]
    finally:
        models.close()
        evaluator.close()
