"""Reduced-size anchors (avfr.benchmarks.reduced) and the anchors' envelope (avfr.benchmarks.envelope)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avfr.benchmarks import anchors, envelope, pixel_metrics, reduced
from avfr.benchmarks.resume import BenchConfig, clip_parts

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "grid_lwbsza.mp4"


def test_to_display_upscales_and_repeats() -> None:
    pictures = np.stack([np.full((128, 128, 3), 40 * k, np.uint8) for k in range(3)])  # frames 0, 2, 4
    shown = reduced.to_display(pictures, 6, 2)
    assert shown.shape == (6, 256, 256, 3) and shown.dtype == np.uint8
    assert [int(f.mean()) for f in shown] == [0, 0, 40, 40, 80, 80]
    # an odd clip length: the last picture is held; a short decode is padded with its last picture
    assert [int(f.mean()) for f in reduced.to_display(pictures, 5, 2)] == [0, 0, 40, 40, 80]
    assert [int(f.mean()) for f in reduced.to_display(pictures[:2], 6, 2)] == [0, 0, 40, 40, 40, 40]
    full = np.random.default_rng(0).integers(0, 255, (4, 256, 256, 3), dtype=np.uint8)
    assert np.array_equal(reduced.to_display(full, 4, 1), full)


def test_grid_names_and_specs() -> None:
    assert reduced.FAMILIES["vvc-small"][0] == "vvc-s256f12.5" and "vvc-s96f25" in reduced.FAMILIES["vvc-small"]
    assert len(reduced.FAMILIES["av1-small"]) == len(reduced.SIZES) * len(reduced.RATES_FPS) - 1
    spec = reduced.reduced_specs()["vvc-s128f12.5"]
    full = anchors.anchor_specs()["vvc"]
    assert (spec.size, spec.fps, spec.step) == (128, 12.5, 2) and spec.args_template == full.args_template
    assert "-r 12.5 -vf scale=128:128:flags=area" in reduced.display_flags(spec) and "Lanczos" in \
        reduced.display_flags(spec)
    assert full.flags() == reduced.display_flags(full) and "scale=" not in full.flags()


def test_resume_keys_of_full_size_anchors_are_unchanged() -> None:
    """Parts saved before reduced-size anchors existed stay valid (keys recorded before the change)."""
    rng = np.random.default_rng(0)
    clip = SimpleNamespace(num_frames=4, frames=rng.integers(0, 255, (4, 256, 256, 3), dtype=np.uint8),
                           pcm=np.zeros(4 * 640, np.float32), landmarks=np.zeros((4, 478, 2), np.float32))
    config = BenchConfig((2.0, 8.0), ("vvc", "vvc-ra", "hevc", "av1", "vvc-s128f12.5", "vvc-s128f25"), ("q7",),
                         identity=False)
    keys = {p.name: p.key for p in clip_parts(clip, config)}
    assert keys["vvc"] == "f1cf5a6295e16117" and keys["vvc-ra"] == "259c50b9473e2238"
    assert keys["hevc"] == "146f8a4044c5a224" and keys["av1"] == "1d38755f9603f06f"
    assert len({keys["vvc"], keys["vvc-s128f12.5"], keys["vvc-s128f25"]}) == 3
    fields = [p.fields for p in clip_parts(clip, config) if p.name == "vvc-s128f12.5"][0]
    assert '"size": 128' in fields and '"fps": 12.5' in fields


@pytest.mark.parametrize("codec, params", [("vvc-s128f12.5", (40, 51)), ("av1-s96f12.5", (40, 8))])
def test_reduced_round_trip(codec: str, params: tuple[int, int]) -> None:
    """Real encode/decode of a short real clip: 256x256 at the clip's frame count, fewer bits at a coarser
    setting (a larger QP; AV1: a lower requested rate)."""
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.codec.data import default_cache_dir, load_clips

    spec = reduced.reduced_specs("faster")[codec]
    ffmpeg = pixel_metrics.ffmpeg_exe()
    if anchors.missing_encoders([spec], ffmpeg):
        pytest.skip(f"the imageio-ffmpeg binary has no {spec.encoder}")
    (clip,) = load_clips(CLIP, default_cache_dir())
    frames = np.ascontiguousarray(clip.frames[:9])
    fine, coarse = (anchors.encode(spec, frames, p, ffmpeg) for p in params)
    assert fine.num_frames == coarse.num_frames == 9
    assert 0 < coarse.kbps < fine.kbps
    assert fine.kbps == pytest.approx(len(fine.bitstream) * 8 / (9 / 25) / 1000)  # over the 25 fps clip's duration
    shown, seconds = reduced.decode_display(spec, coarse.bitstream, 9, ffmpeg)
    assert shown.shape == (9, 256, 256, 3) and seconds > 0
    assert all(np.array_equal(shown[2 * k], shown[2 * k + 1]) for k in range(4))  # 12.5 fps: each picture twice
    assert pixel_metrics.psnr_db(shown, frames) > 20.0


def _row(codec: str, param: int, kbps: float, psnr: float, vmaf: float, lmd: float, **shape: object) -> dict:
    return {"clip": "c", "codec": codec, "point": f"qp{param}", "param": param, "kbps": kbps, "psnr": psnr,
            "vmaf": vmaf, "lmd": lmd, "target_kbps": 2.0, **shape}


def test_envelope_picks_the_best_per_metric() -> None:
    rows = [_row("vvc", 63, 4.1, 28.0, 30.0, 2.0),  # full size, above the 2 kbit/s target: out
            _row("vvc-s128f12.5", 51, 2.05, 27.4, 17.0, 3.6, size=128, fps=12.5),
            _row("vvc-s96f12.5", 55, 1.8, 26.0, 20.0, 3.0, size=96, fps=12.5),
            _row("vvc-s96f6.25", 57, 1.2, 20.0, 1.0, 0.5, size=96, fps=6.25, lmd_miss=0.8),  # LMD: too few faces
            _row("vvc-ra", 60, 1.9, 35.0, 60.0, 1.0),  # not call-like: out
            _row("avfr", 0, 1.5, 40.0, 70.0, 0.5)]
    searches = {c: [{"target_kbps": 2.0, "param": p}] for c, p in
                (("vvc", 63), ("vvc-s128f12.5", 51), ("vvc-s96f12.5", 55), ("vvc-s96f6.25", 57), ("vvc-ra", 60))}
    result = {"clip": "c", "rows": rows, "searches": searches}
    env = {r["metric"]: r for r in envelope.envelope([result], [2.0])}
    assert env["psnr"]["best"]["codec"] == "vvc-s128f12.5" and env["psnr"]["best"]["psnr"] == 27.4
    assert env["vmaf"]["best"]["codec"] == "vvc-s96f12.5" and env["vmaf"]["best"]["size"] == 96
    assert env["lmd"]["best"]["codec"] == "vvc-s96f12.5"  # lower is better
    assert env["psnr"]["candidates"] == 3 and env["psnr"]["best_full"] is None
    md = "\n".join(envelope.markdown(list(env.values())))
    assert "vvc-s128f12.5 (128², 12.5 fps, qp51)" in md and "none within the rate" in md
    # two clips: a mean record per target and metric
    two = envelope.envelope([result, {**result, "clip": "d"}], [2.0])
    (mean,) = [r for r in two if r["clip"] == "mean" and r["metric"] == "psnr"]
    assert mean["best"]["psnr"] == pytest.approx(27.4) and mean["best_full"] is None


def test_cli_expands_reduced_families() -> None:
    from avfr.cli import CliError
    from avfr.cli.bench import _parse_codecs

    codecs = _parse_codecs("avfr,vvc,vvc-small,vvc-s128f12.5")
    assert codecs[:2] == ("avfr", "vvc") and codecs[2:] == reduced.FAMILIES["vvc-small"]
    with pytest.raises(CliError, match="vvc-small"):
        _parse_codecs("vvc-s100f25")
