"""Report of ``avfr-codec bench``: report.json, report.md, rate-quality plots, BD-rates.

Rows are flat records (one per clip x codec x operating point); :func:`mean_rows` adds a ``clip: "mean"``
record per codec x operating point. Anchors are matched per clip by the index of the requested rate, so
their mean row averages the encodes chosen for one target (its ``kbps`` is the mean achieved rate).

Rates: the headline table, the BD-rates and the plots use the video's steady-state accounting (b) of
:mod:`avfr.benchmarks.accounting` (``kbps_steady``) on every row; the clip accounting (a) (``kbps_clip``) is shown
beside it and has BD-rates of its own, and the whole call (``kbps_call``: (b) plus the speech with its packet
headers) beside both.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avfr.benchmarks import accounting, envelope, verdict
from avfr.benchmarks.bd_rate import bd_points, bd_rate, bd_rates  # noqa: F401 - bench_report.bd_rate(s) for callers

logger = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "ms_ssim", "vmaf", "l1", "lmd", "mouth_lmd", "sync_corr", "id_dist", "jitter",
           "enc_fps", "dec_fps")
LOWER_IS_BETTER = {"l1", "lmd", "mouth_lmd", "id_dist", "jitter", "lmd_miss"}
PLOT_METRICS = ("psnr", "ssim", "vmaf", "lmd")
TWO_DIGITS = ("kbps_steady", "kbps_clip", "kbps_call", "psnr", "enc_fps", "dec_fps")  # report.md's 2-decimal columns
CODEC_ORDER = ("avfr", "still", "vvc", "vvc-ra", "hevc", "av1")
CODEC_LABELS = {"avfr": "avfr (keypoints)", "still": "still (0 bits)", "vvc": "H.266 low delay",
                "vvc-ra": "H.266 random access", "hevc": "H.265 low delay", "av1": "AV1 low delay"}


def _mean(values: Sequence[object]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _group_key(row: dict) -> tuple[str, str]:
    if "target_kbps" in row:
        return row["codec"], f"target {row['target_kbps']:g}"
    return row["codec"], str(row.get("point", ""))


def mean_rows(rows: Sequence[dict]) -> list[dict]:
    """One ``clip: "mean"`` record per codec x operating point (anchors: per requested rate).

    Numbers are means over clips of the per-clip values (None when no clip has the value).
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    out = []
    for (codec, point), members in groups.items():
        rec: dict = {"clip": "mean", "codec": codec, "point": point, "num_clips": len(members)}
        keys = [k for k in members[0] if k not in ("clip", "codec", "point", "settings")]
        for k in keys:
            if isinstance(members[0][k], bool):
                rec[k] = any(m.get(k) for m in members)
            else:
                rec[k] = _mean([m.get(k) for m in members])
        if "settings" in members[0]:
            rec["settings"] = members[0]["settings"]
        out.append(rec)
    order = {c: i for i, c in enumerate(CODEC_ORDER)}
    out.sort(key=lambda r: (order.get(r["codec"], 99), accounting.rate(r) or 0.0))
    return out


def floors(results: Sequence[dict], specs: dict) -> dict[str, float | None]:
    """Mean over clips of each QP-searched anchor's rate at its largest QP (its floor), kbit/s.

    Args:
        results: per-clip results (their ``searches``: probes as [param, kbps]).
        specs: ``avfr.benchmarks.anchors.anchor_specs()``.
    """
    out: dict[str, float | None] = {}
    for codec, spec in specs.items():
        if spec.control != "qp":
            continue
        per_clip = {}
        for res in results:
            for s in res.get("searches", {}).get(codec, []):
                for p, k in s["probes"]:
                    if p == spec.param_max:
                        per_clip[res["clip"]] = k
        if per_clip:
            out[codec] = _mean(list(per_clip.values()))
    return out


def search_note(vvenc_preset: str, probe_preset: str, probed: Sequence[str], max_probes: int) -> str:
    """How the anchors' QP (or requested rate) was found, for report.json / report.md.

    Args:
        vvenc_preset: preset of the reported vvenc encodes.
        probe_preset: preset of the cheap probes ("" when off).
        probed: anchors searched with cheap probes.
        max_probes: the direct search's probes per target.
    """
    direct = (f"the parameter whose achieved rate is closest to each target, searched with up to {max_probes} "
              "probes per target at the reported settings (log-rate secant from the largest QP)")
    if not probed:
        return f"Every anchor: {direct}."
    return (f"{', '.join(probed)}: the largest QP is encoded at the reported settings (-preset {vvenc_preset}; "
            "its floor, chosen for targets at or below it); the QP search then runs on cheap probes (same flags, "
            f"-preset {probe_preset}, whole clip) and only the QP it finds is encoded at -preset {vvenc_preset}, "
            "plus one correction encode (cheap rate curve scaled by the measured rate ratio) when that misses the "
            "target by more than 10 %; rates and metrics come from the -preset "
            f"{vvenc_preset} bitstreams only (per-clip probes in clips[].searches). Other anchors: {direct}.")


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "inf" if value > 0 else "-"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def plot_curves(means: Sequence[dict], out_dir: Path, env: Sequence[dict] = ()) -> list[Path]:
    """kbit/s vs PSNR / SSIM / VMAF / LMD, one line per codec (avfr at its stream rate; still drawn as a level),
    plus the anchors' envelope (:func:`avfr.benchmarks.envelope.envelope`: its mean records, or its one clip's).

    Returns:
        The PNG paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    paths = []
    for metric in PLOT_METRICS:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for codec in CODEC_ORDER:
            pts = sorted((accounting.rate(r), r.get(metric)) for r in means if r["codec"] == codec
                         and r.get(metric) is not None and accounting.rate(r) is not None)
            if not pts:
                continue
            if codec == "still":
                ax.axhline(pts[0][1], color="grey", ls="--", lw=1, label=CODEC_LABELS[codec])
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=CODEC_LABELS.get(codec, codec))
        shown = [r for r in env if r["clip"] == "mean"] or env
        pts = sorted((accounting.rate(r["best"]), r["best"][metric]) for r in shown
                     if r["metric"] == metric and r["best"])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", ls=":", color="black",
                    label="anchor envelope (best size/fps/QP per target)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.5, 1, 2, 4, 8, 16, 32, 64, 128]))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("video kbit/s, steady-state accounting (b) (first source image / intra over 5 min)")
        ax.set_ylabel(metric.upper() + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"rate_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown(report: dict) -> str:
    """report.md text from the report dict."""
    means = [r for r in report["rows"] if r["clip"] == "mean"]
    cols = ("codec", "point", "num_clips", "kbps_steady", "kbps_clip", "kbps_call", "psnr", "ssim", "ms_ssim", "vmaf",
            "l1", "lmd", "mouth_lmd", "sync_corr", "id_dist", "jitter", "enc_fps", "dec_fps")
    lines = [
        "# avfr-codec bench",
        "",
        *([f"**Line of truth** (video only, steady-state accounting (b) `kbps_steady`): {report['line_of_truth']}",
           ""]
          if report.get("line_of_truth") else []),
        f"Command: `{report['command']}`",
        "",
        f"Clips: {len(report['clips'])} ({', '.join(c['clip'] for c in report['clips'])}), "
        f"{sum(c['duration_s'] for c in report['clips']):.1f} s at 256x256, 25 fps. Same identity: frame 0 is the "
        "source image, every frame is driven and compared with the original.",
        "",
        f"**Audio**: every row carries the same speech ({report['audio']}); `kbps_steady` and `kbps_clip` are "
        "**video bits only**, `kbps_call` is the whole call (video (b) + the speech with its packet headers). "
        "Anchor rates are achieved (bitstream bytes, no container), not requested; `at_floor` marks a "
        "target below the encoder's floor (largest QP).",
        "",
        f"**Rates, each applied to avfr and the anchors alike** ({verdict.ACCOUNTING_NOTE}) "
        f"avfr's first source image: {report['avfr_source']}. The first BD-rate table, the line of truth and the "
        "plots use the video's (b) `kbps_steady`.",
        "",
        *([f"**Clips without audio** ({len(report['no_audio_clips'])}): {', '.join(report['no_audio_clips'])}. "
           "They are benchmarked like the others (avfr codes silence; the generator hears silence); their "
           "sync_corr is n/a and left out of the means.", ""] if report.get("no_audio_clips") else []),
        "## Mean over clips (video kbit/s (b) `kbps_steady` and (a) `kbps_clip`; whole call `kbps_call`; "
        "ordered by (b))",
        "",
        "`num_clips`: the clips a row averages. An anchor target that gave the same encode as another target on a "
        "clip is not repeated there, so such a row averages fewer clips; it is left out of the BD-rates.",
        "",
        "| " + " | ".join(cols) + " | at floor |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for r in means:
        rated = {"kbps_steady": accounting.rate(r), "kbps_call": accounting.rate(r, "call")}
        lines.append("| " + " | ".join(str(r.get(c, "-")) if c == "num_clips" else
                                       _fmt(rated.get(c, r.get(c)), 2 if c in TWO_DIGITS else 3) for c in cols)
                     + f" | {_fmt(r.get('at_floor', False))} |")
    lines += ["", "Units: kbps kbit/s; PSNR dB; L1 RGB in [0,1]; LMD / mouth LMD px at 256x256 (mediapipe "
              "face mesh, mouth = 40 lip points); sync_corr = lip-sync proxy (mouth opening vs speech "
              "envelope, best of +-4 frames; "
              f"originals: {_fmt(report['reference_mean'].get('sync_corr'))}); id_dist = {report['identity']}; "
              f"jitter px/frame^2 (originals: {_fmt(report['reference_mean'].get('jitter'))}).", ""]
    for key, title in (("bd_rate_pct", "video, steady-state accounting (b)"),
                       ("bd_rate_pct_clip", "video, clip accounting (a)")):
        if key not in report:
            continue
        lines += [f"## BD-rate of avfr against each anchor, {title}", "",
                  "Percent bits avfr needs relative to the anchor for equal quality (negative = fewer), over the "
                  "quality range both curves cover only; in brackets the measured points (avfr / anchor) inside "
                  "that range; '-' where the curves do not overlap in quality.", "",
                  "| anchor | " + " | ".join(("psnr", "ssim", "ms_ssim", "vmaf", "lmd", "mouth_lmd")) + " |",
                  "|---|---|---|---|---|---|---|"]
        points = report.get(key.replace("bd_rate_pct", "bd_points"), {})
        for anchor, vals in report[key].items():
            cells = []
            for metric, v in vals.items():
                n = (points.get(anchor) or {}).get(metric)
                cells.append(_fmt(v, 1) + (f" ({n[0]}/{n[1]})" if v is not None and n else ""))
            lines.append(f"| {anchor} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Anchor floors (clip accounting (a): rate at the largest QP, mean over clips, kbit/s): " + ", ".join(
        f"{c} {_fmt(v, 2)}" for c, v in report.get("anchor_floors_kbps", {}).items()) + ".", ""]
    lines += envelope.markdown(report.get("envelope", []))
    lines += ["", "## Target check", ""] + [f"- {t}" for t in report["target_check"]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]]
    lines += ["", "## Anchor flags", ""]
    for name, flags in report["anchor_flags"].items():
        lines.append(f"- `{name}`: `{flags}`")
    if report.get("anchor_search"):
        lines += ["", f"Rate search: {report['anchor_search']}"]
    if report.get("cross_rows"):
        lines += ["", "## Cross identity (no-reference metrics)", "",
                  "| clip | codec | id_dist | motion_lmd | sync_corr | jitter |", "|---|---|---|---|---|---|"]
        for r in report["cross_rows"]:
            lines.append(f"| {r['clip']} | {r['codec']} | {_fmt(r.get('id_dist'))} | {_fmt(r.get('motion_lmd'))} | "
                         f"{_fmt(r.get('sync_corr'))} | {_fmt(r.get('jitter'))} |")
    lines += ["", "## Per clip", "", "| clip | codec | point | kbps_steady | kbps_clip | kbps_call | psnr | vmaf | lmd "
              "| mouth_lmd |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if r["clip"] != "mean":
            lines.append(f"| {r['clip']} | {r['codec']} | {r['point']} | {_fmt(accounting.rate(r), 2)} | "
                         f"{_fmt(accounting.rate(r, 'clip'), 2)} | {_fmt(accounting.rate(r, 'call'), 2)} | "
                         f"{_fmt(r.get('psnr'), 2)} | {_fmt(r.get('vmaf'), 1)} | {_fmt(r.get('lmd'))} | "
                         f"{_fmt(r.get('mouth_lmd'))} |")
    lines += ["", "## Frame strips", ""] + [f"![{c['clip']}]({c['strip']})" for c in report["clips"]]
    lines += ["", f"Machine: {report['machine']}. Versions: {json.dumps(report['versions'])}.", ""]
    return "\n".join(lines)


def catch_up_kbps(curve: Sequence[dict], metric: str, value: float) -> float | None:
    """Video rate (steady-state accounting (b), :func:`avfr.benchmarks.accounting.rate`) at which an anchor curve
    first reaches ``value`` of ``metric``.

    Log-rate is interpolated linearly between the two measured points around the crossing.

    Args:
        curve: mean rows of one anchor.
        metric: metric name (LOWER_IS_BETTER decides the direction).
        value: the level to reach.

    Returns:
        kbit/s, the lowest measured rate when already reached there, None when never reached.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    pts = sorted((accounting.rate(r), sign * r[metric]) for r in curve
                 if r.get(metric) is not None and accounting.rate(r))
    target = sign * value
    for k, (rate, q) in enumerate(pts):
        if q >= target:
            if k == 0:
                return rate
            r0, q0 = pts[k - 1]
            frac = (target - q0) / (q - q0) if q != q0 else 1.0
            return math.exp(math.log(r0) + frac * (math.log(rate) - math.log(r0)))
    return None


def target_check(means: Sequence[dict]) -> list[str]:
    """The issue's target on the mean rows: each avfr point against H.266 low delay at its lowest rate and
    against the still image, and where on its curve H.266 catches up (video rates, steady-state accounting (b))."""
    notes: list[str] = []
    avfr = sorted((r for r in means if r["codec"] == "avfr" and accounting.rate(r) is not None), key=accounting.rate)
    vvc = sorted((r for r in means if r["codec"] == "vvc" and accounting.rate(r) is not None), key=accounting.rate)
    still = next((r for r in means if r["codec"] == "still"), None)
    if not avfr:
        return ["no avfr rows"]

    def cmp(a: dict, b: dict, metric: str) -> str:
        va, vb = a.get(metric), b.get(metric)
        if va is None or vb is None:
            return f"{metric} n/a"
        better = va < vb if metric in LOWER_IS_BETTER else va > vb
        return f"{metric} {_fmt(va)} vs {_fmt(vb)} ({'avfr better' if better else 'avfr worse'})"

    for point in avfr:
        head = f"avfr {point['point']} ({_fmt(accounting.rate(point), 2)} kbit/s"
        if point.get("kbps_clip") is not None:
            head += f"; {_fmt(point['kbps_clip'], 2)} in the clip accounting"
        head += ")"
        if vvc:
            floor = vvc[0]
            notes.append(f"{head} vs H.266 low delay at its lowest rate ({_fmt(accounting.rate(floor), 2)} kbit/s): "
                         + "; ".join(cmp(point, floor, m) for m in ("lmd", "mouth_lmd", "vmaf", "psnr")))
            catch = []
            for metric in ("lmd", "mouth_lmd", "vmaf", "psnr"):
                if point.get(metric) is None:
                    continue
                rate = catch_up_kbps(vvc, metric, point[metric])
                catch.append(f"{metric} at {_fmt(rate, 2)} kbit/s" if rate is not None
                             else f"{metric} nowhere up to {_fmt(accounting.rate(vvc[-1]), 2)} kbit/s")
            notes.append(f"H.266 low delay reaches avfr {point['point']}: " + "; ".join(catch)
                         + " (log-rate interpolated between measured points)")
        if still:
            notes.append(f"{head} vs still: " + "; ".join(
                cmp(point, still, m) for m in ("psnr", "ssim", "ms_ssim", "vmaf", "l1", "lmd", "mouth_lmd",
                                               "sync_corr")))
    return notes
