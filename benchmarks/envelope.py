"""The anchors' envelope: per target rate and metric family, the best call-like anchor configuration.

A well-tuned WebRTC sender with a budget of T kbit/s picks the size, frame rate and QP that look best within it.
Per clip and target rate, the candidates are the encodes the QP search chose for that target, one per
low-delay anchor (full-size ``vvc``, ``hevc``, ``av1`` and every reduced-size configuration of
:mod:`avfr.benchmarks.reduced`; not ``vvc-ra``, which reorders pictures), whose achieved rate is within the
search's tolerance of the target (``kbps <= target * 1.1``: an encoder whose floor is above the target is out).
The best of them per metric family (PSNR, VMAF, LMD) is the envelope; the best full-size one is kept beside it.
LMD averages the frames where a face is found: an encode where it is missed in more than half is not ranked.
Eligibility uses the rate the search aimed at (``kbps``, the clip accounting (a)); each configuration also
carries its steady-state video rate (``kbps_steady``, accounting (b) of :mod:`avfr.benchmarks.accounting`), which
the report shows, and its whole call's (``kbps_call``, with the speech). :func:`best_within` ranks mean rows within
a budget of steady-state video rate (b) (the report's line of truth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from avfr.benchmarks import accounting, anchors

FAMILIES = {"psnr": "PSNR dB", "vmaf": "VMAF", "lmd": "LMD px"}  # metric -> label; LMD: lower is better
LOWER_IS_BETTER = {"lmd", "mouth_lmd", "id_dist", "l1", "jitter"}
NOT_CALL_LIKE = {"vvc-ra", "avfr", "still"}
RATE_TOLERANCE = 0.1  # a candidate's achieved rate may exceed the target by this much (the search's tolerance)
MAX_LMD_MISS = 0.5  # LMD only ranks encodes where the face is found in at least half the frames


def _config(row: dict) -> dict:
    """A candidate's description: codec, size, fps, parameter, rate and the metric values."""
    return {"codec": row["codec"], "size": row.get("size", anchors.FRAME_SIZE),
            "fps": row.get("fps", float(anchors.FPS)), "point": row["point"], "kbps": row["kbps"],
            "kbps_steady": accounting.rate(row), "kbps_clip": accounting.rate(row, "clip"),
            "kbps_call": accounting.rate(row, "call"),
            "lmd_miss": row.get("lmd_miss"), **{m: row.get(m) for m in FAMILIES}}


def best_within(rows: Sequence[dict], budget_kbps: float, metric: str) -> dict | None:
    """The call-like anchor row best on ``metric`` among ``rows`` (e.g. mean rows) whose video rate (b) is
    at most ``budget_kbps`` x (1 + RATE_TOLERANCE); LMD ranks only rows with the face found in at least half the
    frames. None when none qualifies."""
    cands = [r for r in rows if r.get("codec") not in NOT_CALL_LIKE and accounting.rate(r) is not None
             and accounting.rate(r) <= budget_kbps * (1 + RATE_TOLERANCE)]
    return _best([{**r, "kbps": accounting.rate(r)} for r in cands], metric)


def _best(cands: Sequence[dict], metric: str) -> dict | None:
    scored = [c for c in cands if isinstance(c.get(metric), (int, float)) and math.isfinite(c[metric])
              and not (metric in ("lmd", "mouth_lmd") and (c.get("lmd_miss") or 0.0) > MAX_LMD_MISS)]
    if not scored:
        return None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(scored, key=lambda c: (sign * c[metric], -c["kbps"]))


def clip_envelope(result: dict, targets: Sequence[float]) -> list[dict]:
    """One clip's envelope.

    Args:
        result: a clip's result (:func:`avfr.benchmarks.rate_quality.run_clip`: its rows and searches).
        targets: the requested rates, kbit/s.

    Returns:
        One record per target x metric: {"clip", "target_kbps", "metric", "best": config or None,
        "best_full": the best full-size config or None, "candidates": how many were within the rate}.
    """
    rows = {(r["codec"], r.get("param")): r for r in result["rows"] if "param" in r}
    out = []
    for target in targets:
        cands = []
        for codec, searches in result.get("searches", {}).items():
            if codec in NOT_CALL_LIKE:
                continue
            found = next((s for s in searches if s["target_kbps"] == target), None)
            row = rows.get((codec, found["param"])) if found else None
            if row is not None and row["kbps"] <= target * (1 + RATE_TOLERANCE):
                cands.append(_config(row))
        full = [c for c in cands if c["size"] == anchors.FRAME_SIZE and c["fps"] == float(anchors.FPS)]
        for metric in FAMILIES:
            out.append({"clip": result["clip"], "target_kbps": target, "metric": metric,
                        "best": _best(cands, metric), "best_full": _best(full, metric), "candidates": len(cands)})
    return out


def envelope(results: Sequence[dict], targets: Sequence[float]) -> list[dict]:
    """Every clip's envelope, then (more than one clip) a ``clip: "mean"`` record per target x metric: the mean
    over clips of each clip's best value (and best full-size value), where every clip has one."""
    per_clip = [rec for res in results for rec in clip_envelope(res, targets)]
    if len(results) < 2:
        return per_clip
    means = []
    for target in targets:
        for metric in FAMILIES:
            recs = [r for r in per_clip if r["target_kbps"] == target and r["metric"] == metric]
            mean = {"clip": "mean", "target_kbps": target, "metric": metric, "candidates": None}
            for key in ("best", "best_full"):
                vals = [r[key] for r in recs if r[key] is not None]
                mean[key] = None if len(vals) < len(recs) else {
                    "codec": "per clip", "point": "", "size": None, "fps": None,
                    "kbps": float(np.mean([v["kbps"] for v in vals])),
                    "kbps_steady": float(np.mean([accounting.rate(v) for v in vals])),
                    metric: float(np.mean([v[metric] for v in vals]))}
            means.append(mean)
    return per_clip + means


def _cell(cfg: dict | None, metric: str) -> list[str]:
    if cfg is None:
        return ["none within the rate", "-", "-"]
    shape = "" if cfg["size"] is None else f" ({cfg['size']}², {cfg['fps']:g} fps, {cfg['point']})"
    miss = f" (no face in {cfg['lmd_miss']:.0%})" if metric == "lmd" and cfg.get("lmd_miss") else ""
    return [f"{cfg['codec']}{shape}", f"{accounting.rate(cfg):.2f}", f"{cfg[metric]:.2f}{miss}"]


def markdown(records: Sequence[dict]) -> list[str]:
    """report.md's envelope section (empty without records)."""
    if not records:
        return []
    lines = ["## Anchor envelope (best call-like configuration per target rate)", "",
             "Per target rate and metric family, the best low-delay anchor encode the QP search chose for that "
             f"target with an achieved rate at most {1 + RATE_TOLERANCE:g} x the target, over every size / frame "
             "rate benched (reduced sizes are upscaled with Lanczos and frame-repeated to 256x256 at 25 fps, then "
             "scored like every row), beside the best full-size (256², 25 fps) one. kbit/s: video, steady-state "
             "accounting (b) `kbps_steady` (first intra picture over 5 min). LMD: lower is better, over the "
             f"frames where a face is found; encodes where it is missed in more than {MAX_LMD_MISS:.0%} are not "
             "ranked.", "",
             "| clip | target kbit/s | metric | best configuration | kbit/s | value | best full-size | kbit/s "
             "| value |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['clip']} | {r['target_kbps']:g} | {FAMILIES[r['metric']]} | "
                     + " | ".join(_cell(r["best"], r["metric"]) + _cell(r["best_full"], r["metric"])) + " |")
    return lines + [""]
