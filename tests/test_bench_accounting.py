"""The bench's rate accountings (avfr.benchmarks.accounting: video (a) and (b), the whole call with the speech),
the report's use of them and its line of truth (avfr.benchmarks.verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfr.benchmarks import accounting, envelope, verdict
from avfr.benchmarks import report as bench_report

SECONDS = 3.0  # a 3-second clip: 1000 bytes over it are 2.66667 kbit/s; over 5 minutes 0.02667


def _rows() -> list[dict]:
    return [
        {"clip": "c", "codec": "still", "point": "source", "kbps": 0.0, "source_bytes": 12000},
        # 600 B of keypoints, a 12 kB first source image and one 3 kB refresh
        {"clip": "c", "codec": "avfr", "point": "q7", "kbps": 9.6, "packet_bytes": 600, "source_bytes": 15000,
         "refresh_bytes": 3000},
        # a low-delay anchor: 3000 B, its first access unit 1000 B
        {"clip": "c", "codec": "vvc", "point": "qp50", "kbps": 8.0, "param": 50, "bitstream_bytes": 3000,
         "first_intra_bytes": 1000, "later_intra_bytes": 0, "later_intra": 0},
        # random access with a later intra picture: counted in full in both accountings
        {"clip": "c", "codec": "vvc-ra", "point": "qp50", "kbps": 16.0, "param": 50, "bitstream_bytes": 6000,
         "first_intra_bytes": 1000, "later_intra_bytes": 2000, "later_intra": 1},
        {"clip": "c", "codec": "av1", "point": "kbps2", "kbps": 5.0, "param": 2},  # saved before the byte counts
    ]


def test_both_accountings_on_both_sides() -> None:
    rows = _rows()
    accounting.add_rate_columns(rows, SECONDS)
    by = {r["codec"]: r for r in rows}
    # (a) everything over the clip
    assert by["avfr"]["kbps_clip"] == pytest.approx((600 + 15000) * 8 / SECONDS / 1000, abs=1e-5)
    assert by["vvc"]["kbps_clip"] == pytest.approx(8.0) and by["vvc-ra"]["kbps_clip"] == pytest.approx(16.0)
    assert by["still"]["kbps_clip"] == pytest.approx(32.0)
    # (b) the first source image / first access unit over 5 minutes, the rest (refreshes, later intra) in full
    assert by["avfr"]["kbps_steady"] == pytest.approx((600 + 3000) * 8 / SECONDS / 1000 + 12000 * 8 / 300 / 1000,
                                                      abs=2e-5)
    assert by["vvc"]["kbps_steady"] == pytest.approx(2000 * 8 / SECONDS / 1000 + 1000 * 8 / 300 / 1000, abs=2e-5)
    assert by["vvc-ra"]["kbps_steady"] == pytest.approx(5000 * 8 / SECONDS / 1000 + 1000 * 8 / 300 / 1000,
                                                        abs=2e-5)
    assert by["still"]["kbps_steady"] == pytest.approx(0.32)
    # avfr's (b) is the older kbps_with_source_5min
    assert by["avfr"]["kbps_steady"] == pytest.approx(9.6 + 12000 * 8 / 300 / 1000, abs=2e-5)
    assert by["av1"]["kbps_clip"] is None and by["av1"]["kbps_steady"] is None
    # no speech known: no whole-call rate, and rate() never passes a video rate off as one
    assert all(r["kbps_call"] is None and accounting.rate(r, "call") is None for r in rows)
    assert accounting.rate(by["av1"]) == 5.0 and accounting.rate({"kbps": 1.0, "kbps_with_source_5min": 1.3}) == 1.3
    # a row assembled before RATE_ACCOUNTING_VERSION 2 had (b) as kbps_call: it is still read as (b)
    old = {"kbps": 1.0, "kbps_clip": 4.0, "kbps_call": 1.2, "kbps_with_source_5min": 1.3}
    assert accounting.rate(old) == 1.2 and accounting.rate(old, "clip") == 4.0 and accounting.rate(old, "call") is None
    # a still row saved before it carried its bytes takes the clip's
    (old_still,) = [{"codec": "still", "kbps": 0.0}]
    accounting.add_rate_columns([old_still], SECONDS, still_source_bytes=3000)
    assert old_still["kbps_clip"] == pytest.approx(8.0)


def test_whole_call_on_both_sides() -> None:
    """kbps_call = kbps_steady + the same Opus speech with each side's per-packet header: 7 B AUDIO messages for
    avfr (measured on its call path) and the still row, 12 B RTP for the anchors."""
    # the clip's speech: 150 packets of 20 ms (3 s), 4350 B of Opus payload = 11.6 kbit/s
    speech = accounting.Speech(opus_bytes=4350, packets=150, target_kbps=12.0)
    rows = _rows()
    by = {r["codec"]: r for r in rows}
    # avfr's own AUDIO messages: 151 packets (its flushed last one), 4400 B payload + 7 B each = 5457 B
    by["avfr"].update(audio_bytes=4400 + 7 * 151, audio_packets=151, opus_target_kbps=12.0)
    accounting.add_rate_columns(rows, SECONDS, speech=speech)
    assert by["avfr"]["opus_kbps"] == pytest.approx(4400 * 8 / 3000)  # 11.73333: payload only
    assert by["avfr"]["speech_kbps"] == pytest.approx(5457 * 8 / 3000)  # 14.552
    assert by["avfr"]["kbps_call"] == pytest.approx(9.6 + 0.32 + 14.552, abs=2e-5)  # (b) 9.92 + speech
    for codec in ("vvc", "vvc-ra"):  # RTP: 4350 + 12 * 150 = 6150 B = 16.4 kbit/s
        assert by[codec]["opus_kbps"] == pytest.approx(11.6) and by[codec]["speech_kbps"] == pytest.approx(16.4)
        assert by[codec]["opus_target_kbps"] == 12.0
    assert by["vvc"]["kbps_call"] == pytest.approx(5.33333 + 0.02667 + 16.4, abs=2e-5)  # 21.76
    assert by["vvc-ra"]["kbps_call"] == pytest.approx(13.33333 + 0.02667 + 16.4, abs=2e-5)  # 29.76
    # the still row's speech in avfr's AUDIO messages: 4350 + 7 * 150 = 5400 B = 14.4 kbit/s
    assert by["still"]["speech_kbps"] == pytest.approx(14.4) and by["still"]["kbps_call"] == pytest.approx(14.72)
    assert by["av1"]["speech_kbps"] == pytest.approx(16.4) and by["av1"]["kbps_call"] is None  # no video (b)
    assert accounting.rate(by["vvc"], "call") == by["vvc"]["kbps_call"]
    # an avfr row saved before it carried its AUDIO counts: its measured audio_kbps, the stream's packet count
    old = {"codec": "avfr", "packet_bytes": 600, "source_bytes": 12000, "audio_kbps": 14.4}
    accounting.add_rate_columns([old], SECONDS, speech=speech)
    assert old["speech_kbps"] == 14.4 and old["opus_kbps"] == pytest.approx(11.6)
    assert old["kbps_call"] == pytest.approx(1.6 + 0.32 + 14.4)


def test_speech_stream_is_the_encoders() -> None:
    """The anchors' speech: the project's Opus encoder on the clip's samples (padded to whole video frames), 20 ms
    packets plus the flushed last one, at the requested rate."""
    import numpy as np

    from avfr.codec.runtime import OpusEncoder

    t = np.arange(25 * 640) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    low, high = accounting.speech_stream(pcm, 25, 6000), accounting.speech_stream(pcm, 25, 16000)
    assert low.packets == high.packets == 51 and low.target_kbps == 6.0
    assert low.opus_bytes < high.opus_bytes
    encoder = OpusEncoder(6000)
    assert low.opus_bytes == sum(len(p) for p in encoder.encode(pcm) + encoder.flush())
    assert accounting.speech_stream(pcm[:-100], 25, 6000).packets == 51  # zero-padded to 25 frames


def test_fill_anchor_fields_from_work(tmp_path: Path) -> None:
    """A saved anchor row without the byte counts gets them from its kept bitstream when the flags, frame count
    and rate match; otherwise the part is to be recomputed."""
    # an AV1 stream of two temporal units: TD + sequence header + key frame, TD + inter frame
    key = bytes([2 << 3 | 2, 0, 1 << 3 | 2, 1, 0, 6 << 3 | 2, 3, 0x10, 0, 0])  # frame_type KEY
    inter = bytes([2 << 3 | 2, 0, 6 << 3 | 2, 2, 0x30, 0])  # show_existing 0, frame_type INTER
    (tmp_path / "7.bin").write_bytes(key + inter)
    (tmp_path / "7.json").write_text(json.dumps({"flags": "-b 7", "num_frames": 2, "encode_s": 0.1}))
    rate = round(len(key + inter) * 8 / 0.08 / 1000, 5)
    row = {"codec": "av1", "param": 7, "kbps": rate}
    assert accounting.fill_anchor_fields([row], tmp_path, {7: "-b 7"}, "obu", 2, 0.08)
    assert (row["bitstream_bytes"], row["first_intra_bytes"], row["later_intra"]) == (16, 10, 0)
    for flags, frames, kbps in (("-b 8", 2, rate), ("-b 7", 3, rate), ("-b 7", 2, rate * 2)):
        assert not accounting.fill_anchor_fields([{"param": 7, "kbps": kbps}], tmp_path, {7: flags}, "obu",
                                                 frames, 0.08)
    assert not accounting.fill_anchor_fields([{"param": 9, "kbps": 1.0}], tmp_path, {9: "x"}, "obu", 2, 0.08)


def _mean(codec: str, point: str, steady: float, clip: float, **metrics: float) -> dict:
    return {"clip": "mean", "codec": codec, "point": point, "kbps": clip, "kbps_clip": clip, "kbps_steady": steady,
            "kbps_call": steady + 14.4, **metrics}


def _means() -> list[dict]:
    q = {"psnr": 23.0, "ssim": 0.78, "vmaf": 25.0, "lmd": 2.3, "mouth_lmd": 2.9, "sync_corr": 0.3}
    return [
        _mean("avfr", "q6", 1.4, 4.0, psnr=20.0, ssim=0.7, vmaf=9.0, lmd=3.9, mouth_lmd=4.5, sync_corr=0.17),
        _mean("avfr", "q7", 1.9, 4.6, **q),
        _mean("still", "source", 0.3, 32.0, psnr=19.0, lmd=8.0),
        _mean("vvc", "target 2", 2.7, 4.1, psnr=27.0, ssim=0.85, vmaf=30.0, lmd=2.9, mouth_lmd=3.5, sync_corr=0.2),
        _mean("vvc", "target 4", 3.9, 5.3, psnr=29.0, ssim=0.88, vmaf=45.0, lmd=2.1, mouth_lmd=2.6, sync_corr=0.4),
        _mean("vvc-ra", "target 2", 1.9, 3.0, psnr=35.0, ssim=0.95, vmaf=70.0, lmd=1.0, mouth_lmd=1.0),
        _mean("av1", "target 2", 5.0, 6.4, psnr=28.0, ssim=0.86, vmaf=35.0, lmd=2.5, mouth_lmd=3.0, sync_corr=0.5),
    ]


def test_line_of_truth() -> None:
    line = verdict.line_of_truth(_means())
    # q7 (the call default) at 1.9 kbit/s; the closest call-like anchor is vvc target 2 (2.7), not vvc-ra (1.9)
    assert line.startswith("At avfr q7's 1.90 kbit/s, the closest anchor configuration is vvc target 2 (2.70 kbit/s)")
    assert "avfr wins on LMD 2.30 vs 2.90, mouth LMD 2.90 vs 3.50, lip sync 0.30 vs 0.20;" in line
    assert "loses on PSNR 23.00 vs 27.00, SSIM 0.780 vs 0.850, VMAF 25.0 vs 30.0." in line
    assert "Envelope" not in line  # no reduced-size anchor ran
    # with reduced-size anchors: the best configuration per metric within avfr's rate x 1.1 (2.09 kbit/s)
    small = [_mean("vvc-s128f12.5", "target 2", 2.0, 3.6, psnr=26.0, vmaf=20.0, lmd=3.5, mouth_lmd=3.9,
                   size=128.0, fps=12.5),
             _mean("vvc-s96f6.25", "target 2", 1.2, 2.5, psnr=24.0, vmaf=22.0, lmd=2.0, mouth_lmd=4.0,
                   size=96.0, fps=6.25),
             _mean("vvc-s96f25", "target 2", 2.5, 3.3, psnr=40.0, size=96.0, fps=25.0)]  # over the budget
    line = verdict.line_of_truth(_means() + small)
    assert "the closest anchor configuration is vvc-s128f12.5 target 2 (2.00 kbit/s)" in line
    env = line[line.index("Envelope"):]
    assert "within 2.09 kbit/s" in env
    assert "VMAF 25.0 vs 20.0" not in env  # the best VMAF within the rate is 22
    assert "avfr wins on VMAF 25.0 vs 22.0 (vvc-s96f6.25 target 2), mouth LMD 2.90 vs 3.90 (vvc-s128f12.5 " in env
    assert "loses on PSNR 23.00 vs 26.00 (vvc-s128f12.5 target 2), LMD 2.30 vs 2.00 (vvc-s96f6.25 target 2)" in env
    assert env.endswith("; no anchor within the rate for SSIM, lip sync.")
    assert verdict.line_of_truth([m for m in _means() if m["codec"] in ("avfr", "still")]) is None
    # a target that repeated another encode on some clips averages fewer: never the closest configuration
    counted = [{**m, "num_clips": 7} for m in _means()]
    partial = _mean("vvc", "target 3", 1.95, 4.2, psnr=28.0, num_clips=3)
    assert "closest anchor configuration is vvc target 2" in verdict.line_of_truth(counted + [partial])
    assert envelope.best_within(small, 1.0, "psnr") is None


def test_report_uses_the_steady_state_accounting() -> None:
    means = _means()
    steady, clip = bench_report.bd_rates(means), bench_report.bd_rates(means, "clip")
    assert steady["vvc"]["lmd"] is not None and steady["vvc"]["lmd"] != clip["vvc"]["lmd"]
    report = {"command": "avfr-codec bench", "clips": [{"clip": "c", "duration_s": 3.0, "strip": "s.png"}],
              "audio": "Opus", "avfr_source": "WebP q90", "rows": means, "reference_mean": {}, "identity": "x",
              "bd_rate_pct": steady, "bd_rate_pct_clip": clip, "target_check": bench_report.target_check(means),
              "plots": [], "anchor_flags": {}, "machine": "m", "versions": {},
              "line_of_truth": verdict.line_of_truth(means)}
    md = bench_report.markdown(report)
    assert md.splitlines()[2].startswith("**Line of truth** (video only, steady-state accounting (b) `kbps_steady`): "
                                         "At avfr q7's 1.90 kbit/s")
    assert "| codec | point | num_clips | kbps_steady | kbps_clip | kbps_call |" in md
    assert "| avfr | q7 | - | 1.90 | 4.60 | 16.30 |" in md  # hand-made rows carry no num_clips
    assert "## BD-rate of avfr against each anchor, video, steady-state accounting (b)" in md
    assert "## BD-rate of avfr against each anchor, video, clip accounting (a)" in md
    assert "JVET" in md and "(b)" in md and "12 B a packet" in md and "UDP/IP" in md
    # a mean row of a report made before RATE_ACCOUNTING_VERSION 2 ((b) named kbps_call): (b) shown, no call rate
    old = {**means[1], "kbps_call": 1.9}
    del old["kbps_steady"]
    assert "| avfr | q7 | - | 1.90 | 4.60 | - |" in bench_report.markdown({**report, "rows": [old]})
    assert any(n.startswith("avfr q7 (1.90 kbit/s; 4.60 in the clip accounting) vs H.266 low delay at its lowest "
                            "rate (2.70 kbit/s)") for n in report["target_check"])
