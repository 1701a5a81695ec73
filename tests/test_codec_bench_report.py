"""Benchmark report maths (avfr.benchmarks.report): BD-rate and per-codec means."""

from __future__ import annotations

import math

import pytest

from avfr.benchmarks import report as bench_report


def test_bd_rate_of_a_curve_needing_half_the_bits() -> None:
    rates = [4.0, 8.0, 16.0, 32.0]
    psnr = [30.0, 33.0, 36.0, 39.0]
    half = [r / 2 for r in rates]
    assert bench_report.bd_rate(half, psnr, rates, psnr) == pytest.approx(-50.0, abs=1e-6)
    assert bench_report.bd_rate(rates, psnr, half, psnr) == pytest.approx(100.0, abs=1e-6)
    assert bench_report.bd_rate(rates, psnr, rates, psnr) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_distance_metric_and_no_overlap() -> None:
    rates = [2.0, 4.0, 8.0]
    lmd = [3.0, 2.0, 1.0]  # lower is better
    assert bench_report.bd_rate([r * 2 for r in rates], lmd, rates, lmd, higher_is_better=False) == pytest.approx(
        100.0, abs=1e-6)
    assert bench_report.bd_rate(rates, [10.0, 11.0, 12.0], rates, [20.0, 21.0, 22.0]) is None
    assert bench_report.bd_rate([1.0], [30.0], rates, [29.0, 30.0, 31.0]) is None


def test_mean_rows_groups_by_codec_and_target() -> None:
    rows = [
        {"clip": "a", "codec": "vvc", "point": "qp50", "kbps": 5.0, "psnr": 30.0, "target_kbps": 4.0,
         "at_floor": True, "id_dist": None},
        {"clip": "b", "codec": "vvc", "point": "qp48", "kbps": 7.0, "psnr": 32.0, "target_kbps": 4.0,
         "at_floor": False, "id_dist": None},
        {"clip": "a", "codec": "avfr", "point": "q8", "kbps": 1.0, "psnr": 25.0, "id_dist": 0.3},
        {"clip": "b", "codec": "avfr", "point": "q8", "kbps": 3.0, "psnr": None, "id_dist": 0.5},
    ]
    means = {(m["codec"], m["point"]): m for m in bench_report.mean_rows(rows)}
    vvc = means[("vvc", "target 4")]
    assert vvc["clip"] == "mean" and vvc["kbps"] == 6.0 and vvc["psnr"] == 31.0 and vvc["at_floor"] is True
    assert vvc["id_dist"] is None
    avfr = means[("avfr", "q8")]
    assert avfr["kbps"] == 2.0 and avfr["psnr"] == 25.0 and math.isclose(avfr["id_dist"], 0.4)
    assert [m["codec"] for m in bench_report.mean_rows(rows)] == ["avfr", "vvc"]


def test_catch_up_interpolates_log_rate() -> None:
    curve = [{"kbps": 4.0, "vmaf": 10.0, "lmd": 6.0}, {"kbps": 16.0, "vmaf": 70.0, "lmd": 1.0}]
    assert bench_report.catch_up_kbps(curve, "vmaf", 40.0) == pytest.approx(8.0)
    assert bench_report.catch_up_kbps(curve, "vmaf", 5.0) == 4.0
    assert bench_report.catch_up_kbps(curve, "vmaf", 90.0) is None
    assert bench_report.catch_up_kbps(curve, "lmd", 3.5) == pytest.approx(8.0)  # lower is better


def test_bd_rate_uses_only_the_overlap_and_counts_its_points() -> None:
    from avfr.benchmarks.bd_rate import bd_points, bd_rate, bd_rate_points, bd_rates

    # B needs twice A's rate for every quality; B's curve extends past A's on both ends
    qa, ra = [20.0, 22.0, 24.0], [1.0, 1.5, 2.0]
    qb, rb = [18.0, 20.0, 21.0, 22.0, 24.0, 26.0], [1.0, 2.0, 2.0 * 1.5**0.5, 3.0, 4.0, 8.0]  # 21 dB: on log-scale
    assert abs(bd_rate(ra, qa, rb, qb) - (-50.0)) < 1e-6  # only 20..24 dB, where B is exactly 2x
    assert bd_points(ra, qa, rb, qb) == (3, 4)  # A: 20, 22, 24; B: 20, 21, 22, 24
    assert bd_points([1.0, 2.0], [30.0, 31.0], rb, qb) is None  # no common quality: nothing extrapolated
    means = [{"codec": "avfr", "kbps_steady": r, "psnr": q} for r, q in zip(ra, qa, strict=True)]
    means += [{"codec": "vvc-s128f12.5", "kbps_steady": r, "psnr": q} for r, q in zip(rb, qb, strict=True)]
    means += [{"codec": "still", "kbps_steady": 0.3, "psnr": 15.0}]
    assert set(bd_rates(means)) == {"vvc-s128f12.5"}  # reduced-size curves count as anchors; the still does not
    assert bd_rate_points(means)["vvc-s128f12.5"]["psnr"] == (3, 4)
