"""The line of truth at the top of report.md: at avfr's own rate, the anchor that comes closest, and where avfr
wins and loses against it.

On the mean rows, rates of the video alone in the steady-state accounting (b) (``kbps_steady``,
:mod:`avfr.benchmarks.accounting`; the speech is the same on both sides and stays out of the comparison):

1. avfr's point: the call's default ("q7") when benched, else the lowest-rate avfr point; its rate R.
2. The closest anchor configuration: the call-like anchor mean row (not ``vvc-ra``, which reorders pictures;
   it is used only when no other anchor ran) whose rate is nearest R in log-rate; avfr wins on a metric where
   its mean is better, loses where it is worse (:data:`METRICS`).
3. When reduced-size anchors ran, also the envelope at avfr's rate: per metric, the best call-like anchor mean
   row within R x 1.1 (:func:`avfr.benchmarks.envelope.best_within`), the configuration a well-tuned sender
   with avfr's budget would pick for that metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from avfr.benchmarks import accounting, envelope

METRICS = {"psnr": "PSNR", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "vmaf": "VMAF", "lmd": "LMD",
           "mouth_lmd": "mouth LMD", "sync_corr": "lip sync", "id_dist": "identity"}
LOWER_IS_BETTER = {"lmd", "mouth_lmd", "id_dist"}
ACCOUNTING_NOTE = (
    "video: (a) `kbps_clip`: everything over the clip's duration, as the JVET generative face video test conditions "
    "count the reference frame: every avfr source image (the first and the drift refreshes) and keypoint packet, "
    "every anchor bitstream byte (every intra picture); (b) `kbps_steady`: a steady-state call, avfr's first source "
    "image and each anchor's first access unit (its intra picture with the parameter sets) both amortised over a "
    f"{accounting.CALL_SECONDS / 60:g}-minute call, later source images and intra pictures counted in full; "
    "`kbps` is kept as before (avfr: keypoints + refreshes; anchors: = (a)). The whole call: `kbps_call` = "
    "`kbps_steady` + `speech_kbps`, the same Opus speech (`opus_kbps`: its payload) with its per-packet header as "
    f"each side sends it: avfr's AUDIO message ({accounting.AUDIO_HEADER_BYTES} B a 20 ms packet, measured on the "
    f"call path; the still row's likewise), an anchor call's RTP header ({accounting.RTP_HEADER_BYTES} B a packet, "
    "the clip's speech encoded once by the same Opus encoder at the same rate); transport overhead below that "
    "(SRTP auth tag, DTLS/SCTP, UDP/IP) is left out on both sides.")


_DIGITS = {"psnr": 2, "ssim": 3, "ms_ssim": 3, "vmaf": 1, "lmd": 2, "mouth_lmd": 2, "sync_corr": 2, "id_dist": 2}


def _label(row: dict) -> str:
    return f"{row['codec']} {row.get('point', '')}".strip()


def featured(means: Sequence[dict]) -> dict | None:
    """avfr's mean row the line speaks for: q7 (the call's default) when present, else the lowest-rate point."""
    avfr = [r for r in means if r.get("codec") == "avfr" and accounting.rate(r) is not None]
    return next((r for r in avfr if r.get("point") == "q7"), min(avfr, key=accounting.rate, default=None))


def closest(means: Sequence[dict], rate_kbps: float, num_clips: int | None = None) -> dict | None:
    """The call-like anchor mean row nearest ``rate_kbps`` in log-rate (any anchor when no call-like one ran),
    among the rows that average ``num_clips`` clips when any does (a target that repeated another encode on
    some clips averages fewer: not comparable with avfr's mean over all of them)."""
    anchors = [r for r in means if r.get("codec") not in ("avfr", "still") and (accounting.rate(r) or 0) > 0]
    if num_clips is not None:
        anchors = [r for r in anchors if r.get("num_clips", num_clips) == num_clips] or anchors
    call_like = [r for r in anchors if r["codec"] not in envelope.NOT_CALL_LIKE] or anchors
    return min(call_like, key=lambda r: abs(math.log(accounting.rate(r) / rate_kbps)), default=None)


def wins_losses(avfr: dict, others: dict[str, dict | None]) -> tuple[list[str], list[str]]:
    """Metrics where avfr is better / worse than its opponent per metric, as "name a vs b" (with the opponent's
    label when it differs from metric to metric)."""
    labels = {_label(o) for o in others.values() if o is not None}
    wins, losses = [], []
    for metric, name in METRICS.items():
        other = others.get(metric)
        a, b = avfr.get(metric), None if other is None else other.get(metric)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a == b:
            continue
        d = _DIGITS[metric]
        text = f"{name} {a:.{d}f} vs {b:.{d}f}" + (f" ({_label(other)})" if len(labels) > 1 else "")
        better = a < b if metric in LOWER_IS_BETTER else a > b
        (wins if better else losses).append(text)
    return wins, losses


def _sides(wins: list[str], losses: list[str]) -> str:
    return f"avfr wins on {', '.join(wins) or 'nothing'}; loses on {', '.join(losses) or 'nothing'}"


def line_of_truth(means: Sequence[dict]) -> str | None:
    """The line (None without avfr or anchor mean rows)."""
    avfr = featured(means)
    if avfr is None:
        return None
    rate = accounting.rate(avfr)
    near = closest(means, rate, avfr.get("num_clips")) if rate else None
    if near is None:
        return None
    head = f"at avfr {avfr['point']}'s {rate:.2f} kbit/s"
    line = (f"{head}, the closest anchor configuration is {_label(near)} ({accounting.rate(near):.2f} kbit/s): "
            + _sides(*wins_losses(avfr, {m: near for m in METRICS})) + ".")
    if any(r.get("size") is not None for r in means if r.get("codec") not in ("avfr", "still")):
        best = {m: envelope.best_within(means, rate, m) for m in METRICS}
        found = {m: b for m, b in best.items() if b is not None}
        none = [METRICS[m] for m, b in best.items() if b is None and avfr.get(m) is not None]
        line += (f" Envelope (best call-like anchor configuration per metric within {rate * 1.1:.2f} kbit/s, "
                 "reduced sizes included): " + (_sides(*wins_losses(avfr, found)) if found else "no configuration")
                 + (f"; no anchor within the rate for {', '.join(none)}" if found and none else "") + ".")
    return line[0].upper() + line[1:]
