"""``avfr-codec bench`` end to end on one short real clip at two bitrates (avfr, still, H.266 low delay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfr.benchmarks import identity_backend
from avfr.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "grid_lwbsza.mp4"
FRAMES = 12


@pytest.mark.slow
def test_bench_end_to_end(tmp_path: Path) -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.benchmarks import anchor_specs, ffmpeg_exe, missing_encoders

    if missing_encoders([anchor_specs()["vvc"]], ffmpeg_exe()):
        pytest.skip("the imageio-ffmpeg binary has no libvvenc")
    out = tmp_path / "report"
    argv = ["bench", "--clips", str(CLIP), "--bitrate", "30,150", "--codecs", "avfr,vvc", "--avfr-points", "q8",
            "--max-frames", str(FRAMES), "--max-probes", "2", "--opus-kbps", "8", "--out", str(out), "-q"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# avfr-codec bench")
    for name in report["plots"]:
        assert (out / name).stat().st_size > 0
    assert (out / report["clips"][0]["strip"]).exists()
    assert "PicReordering=0" in report["anchor_flags"]["vvc"]
    # vvenc's QP is searched on -preset faster probes; what is reported is a -preset medium encode
    assert "-preset medium" in report["anchor_flags"]["vvc"] and "-preset faster" in report["anchor_search"]
    for found in report["clips"][0]["searches"]["vvc"]:
        assert found["method"] == "probed" and [found["param"], found["kbps"]] in found["probes"]
        assert len(found["probes"]) <= 3

    rows = [r for r in report["rows"] if r["clip"] != "mean"]
    means = [r for r in report["rows"] if r["clip"] == "mean"]
    keys = {"codec", "kbps", "psnr", "ssim", "ms_ssim", "vmaf", "l1", "lmd", "mouth_lmd", "sync_corr", "id_dist",
            "enc_fps", "dec_fps"}
    assert all(keys <= set(r) for r in report["rows"])
    assert {m["codec"] for m in means} == {"avfr", "still", "vvc"}

    # H.266: two distinct encodes, PSNR rises with the achieved rate
    vvc = sorted((r for r in rows if r["codec"] == "vvc"), key=lambda r: r["kbps"])
    assert len(vvc) == 2 and vvc[0]["kbps"] < vvc[1]["kbps"]
    assert vvc[0]["psnr"] < vvc[1]["psnr"]

    # avfr: the rate is the keypoint packets' bytes over the clip's duration
    (avfr,) = [r for r in rows if r["codec"] == "avfr"]
    duration_s = FRAMES / 25
    assert avfr["num_packets"] == FRAMES and avfr["packet_bytes"] >= 3 * FRAMES
    assert avfr["kbps"] == pytest.approx(avfr["packet_bytes"] * 8 / duration_s / 1000, abs=1e-4)
    assert avfr["source_bytes"] > 0
    (still,) = [r for r in rows if r["codec"] == "still"]
    assert still["kbps"] == 0.0

    # the whole call at --opus-kbps 8: avfr's sender coded the speech at 8 kbit/s (its AUDIO messages carry the
    # very payload of the anchors' speech stream, the clip's speech through the same encoder at 8 kbit/s), with
    # 7 B a packet; the anchors' the same payload in RTP, 12 B a packet
    speech = report["clips"][0]["speech"]
    assert speech["target_kbps"] == 8.0 and speech["packets"] == 2 * FRAMES + 1 and report["audio"].startswith("Opus 8")
    assert avfr["opus_target_kbps"] == 8.0 and avfr["audio_packets"] == speech["packets"]
    assert avfr["audio_bytes"] == speech["opus_bytes"] + 7 * speech["packets"]
    assert avfr["kbps_call"] == pytest.approx(avfr["kbps_steady"] + avfr["audio_bytes"] * 8 / duration_s / 1000,
                                              abs=2e-5)
    for r in vvc:
        assert r["opus_kbps"] == pytest.approx(speech["opus_bytes"] * 8 / duration_s / 1000, abs=1e-5)
        assert r["kbps_call"] == pytest.approx(
            r["kbps_steady"] + (speech["opus_bytes"] + 12 * speech["packets"]) * 8 / duration_s / 1000, abs=2e-5)
    assert "| kbps_steady | kbps_clip | kbps_call |" in (out / "report.md").read_text()
    if identity_backend()[0]:
        assert avfr["id_dist"] is not None
    else:
        assert avfr["id_dist"] is None and "id_dist is null" in report["id_dist_note"]

    # resumable: a second run reuses the finished clip
    saved = (out / "clips" / "grid_lwbsza.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "clips" / "grid_lwbsza.json").stat().st_mtime_ns == saved


def test_bench_rejects_unknown_codec(tmp_path: Path) -> None:
    assert main(["bench", "--clips", str(tmp_path), "--codecs", "avfr,h264", "--out", str(tmp_path / "o")]) == 2


def test_opus_kbps_reaches_the_encoder_config_and_the_keys(tmp_path: Path) -> None:
    """--opus-kbps: the sender's EncoderConfig.audio_bitrate_bps, the run's key and the avfr parts' keys (a run at 8
    reuses no avfr row of 12; the still and anchor parts carry no speech and are shared); 6..16 only."""
    from types import SimpleNamespace

    import numpy as np

    from avfr.benchmarks import AVFR_POINTS
    from avfr.benchmarks.resume import clip_parts
    from avfr.cli import build_parser
    from avfr.cli.bench import bench_config

    def config(*extra: str):
        args = build_parser().parse_args(["bench", "--clips", str(tmp_path), "--out", str(tmp_path / "o"),
                                          "--codecs", "avfr,vvc", "--avfr-points", "q7", *extra])
        return bench_config(args)[0]

    at12, at8 = config(), config("--opus-kbps", "8")
    assert (at12.opus_kbps, at8.opus_kbps, at8.audio_bitrate_bps) == (12.0, 8.0, 8000)
    assert AVFR_POINTS["q7"].encoder_config(2, audio_bitrate_bps=at8.audio_bitrate_bps).audio_bitrate_bps == 8000
    assert AVFR_POINTS["q7"].encoder_config(2).audio_bitrate_bps == 12000  # the call's default
    assert at8.key() != at12.key()
    clip = SimpleNamespace(num_frames=3, frames=np.zeros((3, 8, 8, 3), np.uint8), pcm=np.zeros(3 * 640, np.float32),
                           landmarks=np.zeros((3, 478, 2), np.float32))
    parts12, parts8 = ({p.name: p for p in clip_parts(clip, c)} for c in (at12, at8))
    assert parts12["avfr-q7"].key != parts8["avfr-q7"].key and '"audio_bitrate_bps": 8000' in parts8["avfr-q7"].fields
    assert (parts12["still"].key, parts12["vvc"].key) == (parts8["still"].key, parts8["vvc"].key)
    for bad in ("5", "17"):
        assert main(["bench", "--clips", str(tmp_path), "--opus-kbps", bad, "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_bench_reduced_anchor_and_envelope(tmp_path: Path) -> None:
    """A reduced-size anchor end to end: rows at 256x256 and 25 fps scored like the others, resume keys of its
    own, and report.md's envelope table."""
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.benchmarks import ffmpeg_exe, missing_encoders
    from avfr.benchmarks.reduced import reduced_specs

    if missing_encoders([reduced_specs()["vvc-s128f12.5"]], ffmpeg_exe()):
        pytest.skip("the imageio-ffmpeg binary has no libvvenc")
    out = tmp_path / "report"
    argv = ["bench", "--clips", str(CLIP), "--bitrate", "4,40", "--codecs", "vvc-s128f12.5", "--max-frames",
            str(FRAMES), "--max-probes", "2", "--vvenc-preset", "faster", "--no-identity", "--out", str(out), "-q"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    rows = [r for r in report["rows"] if r["clip"] != "mean" and r["codec"] == "vvc-s128f12.5"]
    assert rows and all(r["size"] == 128 and r["fps"] == 12.5 and r["psnr"] > 15 for r in rows)
    for r in rows:  # the rate is the bitstream over the whole 25 fps clip
        assert r["kbps"] == pytest.approx(next(s["kbps"] for s in report["clips"][0]["searches"]["vvc-s128f12.5"]
                                                if s["param"] == r["param"]), rel=1e-4)
    assert "scale=128:128:flags=area" in report["anchor_flags"]["vvc-s128f12.5"]
    assert {e["metric"] for e in report["envelope"]} == {"psnr", "vmaf", "lmd"}
    best = [e["best"] for e in report["envelope"] if e["target_kbps"] == 40 and e["best"] is not None]
    assert best and all(b["codec"] == "vvc-s128f12.5" and b["size"] == 128 for b in best)
    assert "## Anchor envelope" in (out / "report.md").read_text()
    parts = list((out / "clips" / "grid_lwbsza.parts").glob("vvc-s128f12.5-*.json"))
    assert len(parts) == 1


def test_q7_is_the_calls_own_sender() -> None:
    """The bench's "q7" row measures what a call sends: every keypoint setting of EncoderConfig's defaults."""
    from avfr.benchmarks import AVFR_POINTS
    from avfr.sender import EncoderConfig

    q7, call = AVFR_POINTS["q7"].encoder_config(1), EncoderConfig()
    for name in ("kp_bits", "jac_bits", "jac_abs_max", "kp_hysteresis_steps", "key_interval_frames",
                 "keypoint_budget_bps", "drift_check_interval_frames", "refresh_size", "refresh_quality"):
        assert getattr(q7, name) == getattr(call, name), name


def test_a_changed_call_default_reruns_the_avfr_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The avfr parts' keys, and the run's key of the assembled clips, hold every EncoderConfig field the point
    runs: a new default of the call (here its keypoint budget) re-runs them, the still and anchor parts are kept."""
    import dataclasses
    from types import SimpleNamespace

    import numpy as np

    from avfr.benchmarks import AVFR_POINTS
    from avfr.benchmarks.avfr_call import AvfrPoint
    from avfr.benchmarks.resume import clip_parts
    from avfr.cli import build_parser
    from avfr.cli.bench import bench_config

    @dataclasses.dataclass(frozen=True)
    class Budget1500(AvfrPoint):
        def encoder_config(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return dataclasses.replace(super().encoder_config(*args, **kwargs), keypoint_budget_bps=1500)

    args = build_parser().parse_args(["bench", "--clips", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--codecs", "avfr,vvc", "--avfr-points", "q7"])
    config = bench_config(args)[0]
    clip = SimpleNamespace(num_frames=3, frames=np.zeros((3, 8, 8, 3), np.uint8), pcm=np.zeros(3 * 640, np.float32),
                           landmarks=np.zeros((3, 478, 2), np.float32))
    before, key_before = {p.name: p for p in clip_parts(clip, config)}, config.key()
    monkeypatch.setitem(AVFR_POINTS, "q7", Budget1500("q7"))
    after = {p.name: p for p in clip_parts(clip, config)}
    assert config.key() != key_before  # the assembled clip results are not reused either
    assert before["avfr-q7"].key != after["avfr-q7"].key and '"keypoint_budget_bps": 1500' in after["avfr-q7"].fields
    assert (before["still"].key, before["vvc"].key) == (after["still"].key, after["vvc"].key)
