"""The bench's rate accountings, each applied to avfr and the anchors alike.

Every row keeps ``kbps`` (avfr: keypoint packets plus the source images after the first, over the clip; an anchor:
its whole bitstream over the clip) and gets these columns:

- ``kbps_clip`` (a), video, everything over the clip's duration: every avfr source image, the first one and the
  drift refreshes, plus the keypoint packets; an anchor's whole bitstream, every intra picture included. This is
  how the JVET generative face video test conditions count the reference frame.
- ``kbps_steady`` (b), video, a steady-state call: avfr's first source image and an anchor's first access unit
  (its intra picture with the parameter sets or sequence header before it) both amortised over a 5-minute call
  (:data:`CALL_SECONDS`); everything else, later source images and later intra pictures included, in full over
  the clip's duration. The headline table, BD-rates, plots and the line of truth use (b).
- ``kbps_call``, the whole call: ``kbps_steady`` plus the speech with its per-packet header (``speech_kbps``).
  The speech is one Opus stream (20 ms packets, ``opus_target_kbps``; ``opus_kbps``: its payload alone), the same
  on both sides, framed as each side sends it: avfr in AUDIO messages (:data:`AUDIO_HEADER_BYTES` = 7 B a packet,
  proto/SPEC.md), an anchor's call in RTP (:data:`RTP_HEADER_BYTES` = 12 B a packet). Transport below that (SRTP
  auth tag, DTLS/SCTP chunk headers, UDP/IP) is left out on both sides. avfr's speech is measured on the call path
  (its AUDIO messages, :attr:`avfr.benchmarks.avfr_call.AvfrOutput.audio_bytes`); an anchor's (and the still
  row's, framed as avfr's) is the clip's speech encoded once with the project's own Opus encoder at the same rate
  (:func:`speech_stream`: the same packets, libopus being deterministic). Both count every packet the encoder
  emits for the clip, its last (flushed) one included.

The still row (the source image shown for every frame) counts its one source image like avfr's first. An anchor's
first access unit leaves the clip's rate whole under (b), where avfr's first keypoint packet stays: frame 0 of an
anchor costs only its share of the 5-minute amortisation.

Anchor rows carry the byte counts (:func:`anchor_fields`, from :func:`avfr.benchmarks.bitstreams.intra_sizes`);
rows of parts saved before them get them from the bitstreams kept in ``<out>/work`` (:func:`fill_anchor_fields`).
Rows assembled before :data:`RATE_ACCOUNTING_VERSION` 2 had (b) under the name ``kbps_call`` and no
``kbps_steady``: :func:`rate` still reads them as (b).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfr.benchmarks import bitstreams
from avfr.proto.audio import AUDIO_HEADER_BYTES

CALL_SECONDS = 300.0  # the steady-state call of accounting (b)
RATE_ACCOUNTING_VERSION = 2  # keys the assembled per-clip results (2: (b) is kbps_steady, kbps_call the whole call)
ANCHOR_FIELDS = ("bitstream_bytes", "first_intra_bytes", "later_intra_bytes", "later_intra")
RTP_HEADER_BYTES = 12  # an anchor call's Opus packet in RTP (fixed header, no CSRC, no extension)
OPUS_KBPS_RANGE = (6.0, 16.0)  # the speech rates the call and the bench accept (``--audio-kbps``, ``--opus-kbps``)
SPEECH_COLUMNS = ("opus_target_kbps", "opus_kbps", "speech_kbps", "kbps_call")


@dataclass(frozen=True)
class Speech:
    """A clip's speech as one Opus stream: payload bytes and 20 ms packets at ``target_kbps``."""

    opus_bytes: int
    packets: int
    target_kbps: float


def speech_stream(pcm: np.ndarray, num_frames: int, bitrate_bps: int) -> Speech:
    """The clip's speech through ``avfr.codec.runtime.OpusEncoder`` as the call's Encoder codes it: float32 16 kHz
    ``pcm`` cut or zero-padded to ``num_frames`` video frames (640 samples each), then flushed."""
    from avfr.codec.data import SAMPLES_PER_FRAME
    from avfr.codec.runtime import OpusEncoder

    samples = num_frames * SAMPLES_PER_FRAME
    pcm = np.asarray(pcm, np.float32).reshape(-1)[:samples]
    encoder = OpusEncoder(int(bitrate_bps))
    packets = encoder.encode(np.pad(pcm, (0, samples - len(pcm)))) + encoder.flush()
    return Speech(sum(len(p) for p in packets), len(packets), bitrate_bps / 1000)


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


def _kbps(nbytes: float, seconds: float) -> float:
    return round(nbytes * 8 / seconds / 1000, 5)


def video_columns(row: dict, duration_s: float, still_source_bytes: int | None = None) -> dict[str, float | None]:
    """``kbps_clip`` (a) and ``kbps_steady`` (b) of one row (None where its byte counts are missing).

    Args:
        row: an avfr row (``packet_bytes``, ``source_bytes``, ``refresh_bytes``), the still row, or an anchor row
            (:data:`ANCHOR_FIELDS`).
        duration_s: the clip's seconds.
        still_source_bytes: the still row's source image bytes (its row's ``source_bytes`` when it has one).
    """
    codec = row.get("codec")
    if codec == "avfr":
        packets, source = row.get("packet_bytes"), row.get("source_bytes")
        if packets is None or source is None:
            return {"kbps_clip": None, "kbps_steady": None}
        first = source - (row.get("refresh_bytes") or 0)
        return {"kbps_clip": _kbps(packets + source, duration_s),
                "kbps_steady": round(_kbps(packets + source - first, duration_s) + _kbps(first, CALL_SECONDS), 5)}
    if codec == "still":
        source = row.get("source_bytes", still_source_bytes)
        if source is None:
            return {"kbps_clip": None, "kbps_steady": None}
        return {"kbps_clip": _kbps(source, duration_s), "kbps_steady": _kbps(source, CALL_SECONDS)}
    if not all(k in row for k in ANCHOR_FIELDS):
        return {"kbps_clip": None, "kbps_steady": None}
    total, first = row["bitstream_bytes"], row["first_intra_bytes"]
    return {"kbps_clip": _kbps(total, duration_s),
            "kbps_steady": round(_kbps(total - first, duration_s) + _kbps(first, CALL_SECONDS), 5)}


def speech_columns(row: dict, duration_s: float, speech: Speech | None) -> dict[str, float | None]:
    """The speech of one row's call (:data:`SPEECH_COLUMNS` but ``kbps_call``).

    avfr rows: their AUDIO messages as measured on the call path (``audio_bytes`` over ``audio_packets``; rows
    saved before those counts: their ``audio_kbps``, with the packet count of ``speech``); the still row: ``speech``
    in AUDIO messages; anchors: ``speech`` in RTP. ``opus_kbps``: the Opus payload alone.

    Args:
        speech: the clip's speech stream at the run's rate (:func:`speech_stream`; None: unknown).
    """
    none = {"opus_target_kbps": None, "opus_kbps": None, "speech_kbps": None}
    codec = row.get("codec")
    if codec == "avfr" and row.get("audio_bytes") is not None and row.get("audio_packets") is not None:
        wire, packets = row["audio_bytes"], row["audio_packets"]
        target = row.get("opus_target_kbps", None if speech is None else speech.target_kbps)
        return {"opus_target_kbps": target, "opus_kbps": _kbps(wire - AUDIO_HEADER_BYTES * packets, duration_s),
                "speech_kbps": _kbps(wire, duration_s)}
    if speech is None:
        return none
    if codec == "avfr":
        if row.get("audio_kbps") is None:
            return none
        header_kbps = _kbps(AUDIO_HEADER_BYTES * speech.packets, duration_s)
        return {"opus_target_kbps": speech.target_kbps, "opus_kbps": round(row["audio_kbps"] - header_kbps, 5),
                "speech_kbps": round(row["audio_kbps"], 5)}
    header = AUDIO_HEADER_BYTES if codec == "still" else RTP_HEADER_BYTES
    return {"opus_target_kbps": speech.target_kbps, "opus_kbps": _kbps(speech.opus_bytes, duration_s),
            "speech_kbps": _kbps(speech.opus_bytes + header * speech.packets, duration_s)}


def rate_columns(row: dict, duration_s: float, still_source_bytes: int | None = None,
                 speech: Speech | None = None) -> dict[str, float | None]:
    """Every rate column of one row: :func:`video_columns`, :func:`speech_columns` and ``kbps_call``
    (``kbps_steady + speech_kbps``; None where either is)."""
    out = {**video_columns(row, duration_s, still_source_bytes), **speech_columns(row, duration_s, speech)}
    steady, spoken = out["kbps_steady"], out["speech_kbps"]
    out["kbps_call"] = None if steady is None or spoken is None else round(steady + spoken, 5)
    return out


def add_rate_columns(rows: Sequence[dict], duration_s: float, still_source_bytes: int | None = None,
                     speech: Speech | None = None) -> None:
    """:func:`rate_columns` on every row, in place (cross-identity rows are not rated)."""
    for row in rows:
        row.update(rate_columns(row, duration_s, still_source_bytes, speech))


def rate(row: dict, accounting: str = "steady") -> float | None:
    """A row's rate under one accounting: "steady" (b) and "clip" (a), video only, falling back to the older
    columns for rows made before them (``kbps_call`` where a row has no ``kbps_steady``: it was (b) before
    :data:`RATE_ACCOUNTING_VERSION` 2; then ``kbps_with_source_5min``, then ``kbps``); "call", the whole call
    (None where it is not known: never a video rate under its name)."""
    if accounting == "call":
        return row.get("kbps_call") if "kbps_steady" in row else None
    if accounting == "steady" and "kbps_steady" not in row:
        value = row.get("kbps_call")
        if value is None:
            value = row.get("kbps_with_source_5min")
    else:
        value = row.get(f"kbps_{accounting}")
    return value if value is not None else row.get("kbps")
