"""Anchor codecs (avfr.benchmarks.anchors): the rate search on a model encoder, and a real FFmpeg round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avfr.benchmarks import anchors, pixel_metrics


def _fake_probe(floor_kbps: float, qp_max: int, calls: list[int]):
    """Encoder stand-in: rate = floor * 2 ** ((qp_max - qp) / 5), 100 frames."""

    def probe(qp: int) -> anchors.Encoded:
        calls.append(qp)
        kbps = floor_kbps * 2 ** ((qp_max - qp) / 5)
        nbytes = round(kbps * 1000 * 4 / 8)  # 100 frames = 4 s
        return anchors.Encoded(qp, b"\0" * nbytes, 1.0, 100)

    return probe


def test_encoded_rate() -> None:
    e = anchors.Encoded(30, b"\0" * 1000, 1.0, 50)  # 8000 bits over 2 s
    assert e.kbps == pytest.approx(4.0)


def test_search_hits_target_with_few_probes() -> None:
    spec = anchors.anchor_specs()["vvc"]
    calls: list[int] = []
    res = anchors.search_rate(spec, 16.0, _fake_probe(4.0, spec.param_max, calls), max_probes=4)
    assert not res.at_floor
    assert abs(math.log(res.chosen.kbps / 16.0)) < math.log(1.2)
    assert len(calls) <= 4 and len(set(calls)) == len(calls)
    # the chosen encode is the closest of those tried
    assert all(abs(math.log(res.chosen.kbps / 16)) <= abs(math.log(k / 16)) for _, k in res.probes)


def test_search_below_floor_reports_floor() -> None:
    spec = anchors.anchor_specs()["hevc"]
    calls: list[int] = []
    res = anchors.search_rate(spec, 2.0, _fake_probe(6.0, spec.param_max, calls))
    assert res.at_floor and res.chosen.param == spec.param_max and calls == [spec.param_max]


@pytest.mark.parametrize("cheap_scale", [1.05, 0.75, 1.3])
def test_probed_search_reports_only_final_encodes(cheap_scale: float) -> None:
    """Cheap probes choose the QP; the reported encode is a final one, corrected once when it misses."""
    spec = anchors.anchor_specs()["vvc"]
    finals: list[int] = []
    cheap: list[int] = []
    probe = _fake_probe(4.0, spec.param_max, finals)

    def cheap_probe(qp: int) -> anchors.Encoded:  # a faster preset: the same curve, `cheap_scale` times the rate
        cheap.append(qp)
        e = _fake_probe(4.0 * cheap_scale, spec.param_max, [])(qp)
        return anchors.Encoded(qp, e.bitstream, 0.1, e.num_frames)

    res = anchors.search_rate_probed(spec, 16.0, probe, cheap_probe, max_probes=4)
    assert res.method == "probed" and not res.at_floor
    assert finals[0] == spec.param_max and len(finals) <= 3 and len(set(finals)) == len(finals)
    assert spec.param_max not in cheap  # the floor is never probed cheaply
    assert res.chosen.param in finals and [p for p, _ in res.probes] == finals
    assert [p for p, _ in res.cheap_probes] == list(dict.fromkeys(cheap))
    # within the tolerance, or as close as one QP step (2 ** (1/5) here) allows
    assert abs(math.log(res.chosen.kbps / 16.0)) < math.log(1.13)
    if cheap_scale != 1.05:  # the first final encode misses by > 10 %: one correction
        assert len(finals) == 3


def test_probed_search_floor() -> None:
    spec = anchors.anchor_specs()["vvc"]
    finals: list[int] = []
    cheap: list[int] = []
    res = anchors.search_rate_probed(spec, 3.0, _fake_probe(4.0, spec.param_max, finals),
                                     _fake_probe(4.0, spec.param_max, cheap))
    assert res.at_floor and res.chosen.param == spec.param_max and finals == [spec.param_max] and not cheap
    res = anchors.search_rate_probed(spec, 4.2, _fake_probe(4.0, spec.param_max, finals),
                                     _fake_probe(4.0, spec.param_max, cheap))  # the floor is within 10 %
    assert not res.at_floor and res.chosen.param == spec.param_max and not cheap
    with pytest.raises(ValueError, match="QP control"):
        anchors.search_rate_probed(anchors.anchor_specs()["av1"], 8.0, lambda p: None, lambda p: None)


def test_search_rate_controlled() -> None:
    spec = anchors.anchor_specs()["av1"]

    def probe(kbps: int) -> anchors.Encoded:  # overshoots by 30 %
        return anchors.Encoded(kbps, b"\0" * round(kbps * 1.3 * 1000 * 4 / 8), 1.0, 100)

    res = anchors.search_rate(spec, 10.0, probe)
    assert abs(res.chosen.kbps - 10.0) < 1.0 and len(res.probes) >= 2


def test_flags_are_reported() -> None:
    specs = anchors.anchor_specs("medium", 2)
    assert set(specs) == {"vvc", "vvc-ra", "hevc", "av1"}
    assert "PicReordering=0" in specs["vvc"].flags() and "-qp {p}" in specs["vvc"].flags()
    assert specs["vvc"].encoder_args(40)[specs["vvc"].encoder_args(40).index("-qp") + 1] == "40"


def test_hevc_round_trip_rate_and_quality() -> None:
    """Real x265 encode/decode of a tiny synthetic clip: more bits, better PSNR."""
    yy, xx = np.mgrid[0:256, 0:256]
    frames = np.stack([np.stack([(xx + 3 * k) % 256, yy, (xx + yy) // 2], -1) for k in range(8)]).astype(np.uint8)
    spec = anchors.anchor_specs()["hevc"]
    ffmpeg = pixel_metrics.ffmpeg_exe()
    coarse, fine = anchors.encode(spec, frames, 45, ffmpeg), anchors.encode(spec, frames, 25, ffmpeg)
    assert 0 < coarse.kbps < fine.kbps
    out_c, _ = anchors.decode(spec, coarse.bitstream, len(frames), ffmpeg)
    out_f, _ = anchors.decode(spec, fine.bitstream, len(frames), ffmpeg)
    assert out_c.shape == frames.shape
    assert pixel_metrics.psnr_db(out_f, frames) > pixel_metrics.psnr_db(out_c, frames)


def test_missing_encoders() -> None:
    specs = anchors.anchor_specs()
    fake = anchors.AnchorSpec("x", "x", "qp", 0, 1, "yuv420p", "hevc", "hevc", ("-c:v", "libnotanencoder"))
    assert anchors.missing_encoders([fake, specs["hevc"]], pixel_metrics.ffmpeg_exe()) == ["libnotanencoder"]
