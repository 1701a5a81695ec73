"""The two rate accountings of the bench, each applied to avfr and the anchors alike.

Every row keeps ``kbps`` (avfr: keypoint packets plus the source images after the first, over the clip; an anchor:
its whole bitstream over the clip) and gets two more columns:

- ``kbps_clip`` (a), everything over the clip's duration: every avfr source image, the first one and the drift
  refreshes, plus the keypoint packets; an anchor's whole bitstream, every intra picture included. This is how the
  JVET generative face video test conditions count the reference frame.
- ``kbps_call`` (b), a steady-state call: avfr's first source image and an anchor's first access unit (its intra
  picture with the parameter sets or sequence header before it) both amortised over a 5-minute call
  (:data:`CALL_SECONDS`); everything else, later source images and later intra pictures included, in full over
  the clip's duration. The headline table, BD-rates and plots use (b).

The still row (the source image shown for every frame) counts its one source image like avfr's first. An anchor's
first access unit leaves the clip's rate whole under (b), where avfr's first keypoint packet stays: frame 0 of an
anchor costs only its share of the 5-minute amortisation.

Anchor rows carry the byte counts (:func:`anchor_fields`, from :func:`avfr.benchmarks.bitstreams.intra_sizes`);
rows of parts saved before them get them from the bitstreams kept in ``<out>/work`` (:func:`fill_anchor_fields`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from avfr.benchmarks import bitstreams

CALL_SECONDS = 300.0  # the steady-state call of accounting (b)
RATE_ACCOUNTING_VERSION = 1  # keys the assembled per-clip results (their rows carry the columns)
ANCHOR_FIELDS = ("bitstream_bytes", "first_intra_bytes", "later_intra_bytes", "later_intra")


def anchor_fields(bitstream: bytes, stream_format: str) -> dict[str, int]:
    """The byte counts an anchor row needs for both accountings (names in :data:`ANCHOR_FIELDS`)."""
    sizes = bitstreams.intra_sizes(bitstream, stream_format)
    return {"bitstream_bytes": sizes.total_bytes, "first_intra_bytes": sizes.first_intra_bytes,
            "later_intra_bytes": sizes.later_intra_bytes, "later_intra": sizes.later_intra}


def fill_anchor_fields(rows: Sequence[dict], work: Path, flags_of: dict[int, str], stream_format: str,
                       num_frames: int, duration_s: float) -> bool:
    """Add the byte counts to saved anchor rows that lack them, from the bitstreams in ``work`` (in place).

    A bitstream is used only when its metadata names the row's encoder flags and frame count and its size gives the
    row's rate (to the 5 decimals rows keep).

    Args:
        rows: one anchor codec's rows (each with its ``param``).
        work: the codec's bitstream folder (``<out>/work/<clip>/<codec>``: ``<param>.bin`` and ``<param>.json``).
        flags_of: param -> the encoder flags of that param (``" ".join(spec.encoder_args(param))``).
        stream_format: the spec's stream format.
        num_frames, duration_s: the clip's frames and seconds.

    Returns:
        Every row has the counts (False: at least one bitstream is gone or does not match; the part is recomputed).
    """
    for row in rows:
        if all(k in row for k in ANCHOR_FIELDS):
            continue
        param = row.get("param")
        try:
            meta = json.loads((work / f"{param}.json").read_text())
            data = (work / f"{param}.bin").read_bytes()
        except (OSError, ValueError):
            return False
        if not isinstance(meta, dict) or meta.get("flags") != flags_of.get(param) or \
                meta.get("num_frames") != num_frames or \
                abs(len(data) * 8 / duration_s / 1000 - float(row.get("kbps") or 0.0)) > 1e-4:
            return False
        try:
            row.update(anchor_fields(data, stream_format))
        except ValueError:
            return False
    return True


def rate_columns(row: dict, duration_s: float, still_source_bytes: int | None = None) -> dict[str, float | None]:
    """``kbps_clip`` (a) and ``kbps_call`` (b) of one row (None where its byte counts are missing).

    Args:
        row: an avfr row (``packet_bytes``, ``source_bytes``, ``refresh_bytes``), the still row, or an anchor row
            (:data:`ANCHOR_FIELDS`).
        duration_s: the clip's seconds.
        still_source_bytes: the still row's source image bytes (its row's ``source_bytes`` when it has one).
    """
    def kbps(nbytes: float, seconds: float) -> float:
        return round(nbytes * 8 / seconds / 1000, 5)

    codec = row.get("codec")
    if codec == "avfr":
        packets, source = row.get("packet_bytes"), row.get("source_bytes")
        if packets is None or source is None:
            return {"kbps_clip": None, "kbps_call": None}
        first = source - (row.get("refresh_bytes") or 0)
        return {"kbps_clip": kbps(packets + source, duration_s),
                "kbps_call": round(kbps(packets + source - first, duration_s) + kbps(first, CALL_SECONDS), 5)}
    if codec == "still":
        source = row.get("source_bytes", still_source_bytes)
        if source is None:
            return {"kbps_clip": None, "kbps_call": None}
        return {"kbps_clip": kbps(source, duration_s), "kbps_call": kbps(source, CALL_SECONDS)}
    if not all(k in row for k in ANCHOR_FIELDS):
        return {"kbps_clip": None, "kbps_call": None}
    total, first = row["bitstream_bytes"], row["first_intra_bytes"]
    return {"kbps_clip": kbps(total, duration_s),
            "kbps_call": round(kbps(total - first, duration_s) + kbps(first, CALL_SECONDS), 5)}


def add_rate_columns(rows: Sequence[dict], duration_s: float, still_source_bytes: int | None = None) -> None:
    """:func:`rate_columns` on every row, in place (cross-identity rows are not rated)."""
    for row in rows:
        row.update(rate_columns(row, duration_s, still_source_bytes))


def rate(row: dict, accounting: str = "call") -> float | None:
    """A row's rate under one accounting ("call": (b), "clip": (a)), falling back to the older columns for
    reports made before them (``kbps_with_source_5min``, then ``kbps``)."""
    value = row.get(f"kbps_{accounting}")
    if value is None and accounting == "call":
        value = row.get("kbps_with_source_5min")
    return value if value is not None else row.get("kbps")
