"""BD-rates of the bench: avfr against every anchor curve (full-size and reduced-size), per metric.

A Bjøntegaard delta rate integrates the log-rate difference of two rate-quality curves over the quality range
both cover; outside it nothing is extrapolated (None). The report gives, next to each figure, how many measured
points of each curve lie in that range (:func:`bd_points`): a BD-rate over two points of one curve says less
than one over five.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from avfr.benchmarks import accounting

__all__ = ["BD_METRICS", "bd_rate", "bd_points", "bd_rates", "bd_rate_points"]

BD_METRICS = ("psnr", "ssim", "ms_ssim", "vmaf", "lmd", "mouth_lmd")
_LOWER_IS_BETTER = {"lmd", "mouth_lmd"}
_NOT_ANCHORS = {"avfr", "still"}


def _prep(rates: Sequence[float], quals: Sequence[float], higher_is_better: bool):
    """Usable points as (quality ascending, monotone log-rate) arrays, or None with fewer than 2."""
    pts = [(q if higher_is_better else -q, math.log(r)) for r, q in zip(rates, quals, strict=True)
           if r is not None and q is not None and r > 0 and math.isfinite(q)]
    if len(pts) < 2:
        return None
    pts.sort()
    q = np.array([p[0] for p in pts])
    lr = np.maximum.accumulate(np.array([p[1] for p in pts]))  # monotone hull: more quality, more bits
    q, keep = np.unique(q, return_index=True)
    return (q, lr[keep]) if len(q) >= 2 else None


def _overlap(a, b) -> tuple[float, float] | None:
    if a is None or b is None:
        return None
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    return (lo, hi) if hi > lo else None


def bd_rate(rate_a: Sequence[float], quality_a: Sequence[float], rate_b: Sequence[float],
            quality_b: Sequence[float], higher_is_better: bool = True) -> float | None:
    """Bjøntegaard delta rate of A against B, percent (negative: A needs fewer bits for the same quality).

    Piecewise-linear interpolation of log-rate over quality (robust with 2-3 points per curve; the cubic fit
    of the original method needs 4), integrated over the quality range both curves cover.

    Args:
        rate_a, quality_a: curve A (kbit/s, metric); at least 2 points.
        rate_b, quality_b: curve B.
        higher_is_better: False for distances (LMD): the metric is negated.

    Returns:
        Percent, or None when the quality ranges do not overlap or a curve has < 2 usable points.
    """
    a, b = _prep(rate_a, quality_a, higher_is_better), _prep(rate_b, quality_b, higher_is_better)
    span = _overlap(a, b)
    if span is None:
        return None
    grid = np.linspace(span[0], span[1], 101)
    diff = np.interp(grid, *a) - np.interp(grid, *b)
    return float((math.exp(float(np.mean(diff))) - 1.0) * 100.0)


def bd_points(rate_a: Sequence[float], quality_a: Sequence[float], rate_b: Sequence[float],
              quality_b: Sequence[float], higher_is_better: bool = True) -> tuple[int, int] | None:
    """How many distinct measured points of A and of B lie in the quality range both cover (None: no overlap)."""
    a, b = _prep(rate_a, quality_a, higher_is_better), _prep(rate_b, quality_b, higher_is_better)
    span = _overlap(a, b)
    if span is None:
        return None
    inside = [int(np.count_nonzero((c[0] >= span[0]) & (c[0] <= span[1]))) for c in (a, b)]
    return inside[0], inside[1]


def _curves(means: Sequence[dict]) -> dict[str, list[dict]]:
    curves: dict[str, list[dict]] = {}
    for row in means:
        curves.setdefault(row["codec"], []).append(row)
    return curves


def bd_rates(means: Sequence[dict], rates: str = "steady") -> dict[str, dict[str, float | None]]:
    """BD-rate of avfr against each anchor curve (every codec but avfr and the still), per metric, both at their
    rates under one accounting ("steady": (b), "clip": (a); :func:`avfr.benchmarks.accounting.rate`)."""
    return _per_anchor(means, rates, bd_rate)


def bd_rate_points(means: Sequence[dict], rates: str = "steady") -> dict[str, dict[str, tuple[int, int] | None]]:
    """For each figure of :func:`bd_rates`: (avfr points, anchor points) inside the common quality range."""
    return _per_anchor(means, rates, bd_points)


def _per_anchor(means: Sequence[dict], rates: str, fn) -> dict:
    curves = _curves(means)
    avfr = curves.get("avfr", [])
    out: dict = {}
    if not avfr:
        return out
    for anchor in sorted(c for c in curves if c not in _NOT_ANCHORS):
        out[anchor] = {
            metric: fn([accounting.rate(r, rates) for r in avfr], [r.get(metric) for r in avfr],
                       [accounting.rate(r, rates) for r in curves[anchor]], [r.get(metric) for r in curves[anchor]],
                       higher_is_better=metric not in _LOWER_IS_BETTER)
            for metric in BD_METRICS}
    return out
