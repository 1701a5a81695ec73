"""The access units of the anchors' raw bitstreams, and which of them are intra pictures.

The bench counts an anchor's rate two ways (:mod:`avfr.benchmarks.accounting`), so it needs the size of the first
intra picture inside each bitstream, and of any later one. The bitstreams are what FFmpeg's raw muxers write
(:attr:`avfr.benchmarks.anchors.AnchorSpec.stream_format`):

- ``vvc`` (H.266) and ``hevc`` (H.265): Annex B byte streams, NAL units behind ``00 00 01`` start codes (a leading
  ``00`` belongs to the NAL unit after it). An access unit starts at the first of the non-VCL NAL units that may
  open one (AUD, parameter sets, prefix SEI, H.266's prefix APS and picture header) met after the previous
  picture's last VCL NAL unit, or else at the first VCL NAL unit of the next picture. H.265: a VCL NAL unit opens
  a picture when its ``first_slice_segment_in_pic_flag`` (first payload bit) is 1. H.266: when a picture header
  NAL unit came since the last VCL NAL unit, or its ``sh_picture_header_in_slice_header_flag`` (first payload
  bit) is 1, which allows one slice per picture. Intra: an IRAP picture (H.265 types 16-23; H.266 IDR_W_RADL,
  IDR_N_LP, CRA, 7-9, and reserved IRAP 11; not GDR).
- ``obu`` (AV1): the low-overhead OBU format (every OBU with its size field). A temporal unit starts at each
  temporal delimiter OBU. Intra: a frame (header) OBU with ``show_existing_frame`` 0 and ``frame_type`` KEY or
  INTRA_ONLY (every frame, with a reduced still-picture sequence header).

Unit sizes partition the stream: they add up to its length, so the first unit counts the parameter sets (or the
sequence header) with the first picture. Malformed input raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("vvc", "hevc", "obu")

_VVC_VCL = range(0, 12)
_VVC_IRAP = {7, 8, 9, 11}
_VVC_PH = 19
_VVC_OPENS_AU = {12, 13, 14, 15, 16, 17, 19, 20, 23, 26, 28, 29}  # OPI DCI VPS SPS PPS APS PH AUD SEI reserved
_HEVC_IRAP = range(16, 24)
_HEVC_OPENS_AU = {32, 33, 34, 35, 39, *range(41, 45), *range(48, 56)}  # VPS SPS PPS AUD SEI reserved unspecified
_OBU_SEQUENCE_HEADER, _OBU_TEMPORAL_DELIMITER, _OBU_FRAME_HEADER, _OBU_FRAME = 1, 2, 3, 6


@dataclass(frozen=True)
class Unit:
    """One access unit (H.266, H.265) or temporal unit (AV1) of a bitstream.

    Attributes:
        offset: its first byte in the stream.
        size: its bytes (start codes and OBU headers included).
        intra: it holds an intra picture (IRAP; AV1: key or intra-only frame).
    """

    offset: int
    size: int
    intra: bool


@dataclass(frozen=True)
class IntraSizes:
    """A bitstream's bytes split by picture kind.

    Attributes:
        total_bytes: the whole stream.
        first_intra_bytes: the first unit when it is intra (with the parameter sets or sequence header before it),
            else 0.
        later_intra_bytes: every later intra unit, in full.
        later_intra: how many later intra units there are.
        units: how many units (pictures shown or coded) there are.
    """

    total_bytes: int
    first_intra_bytes: int
    later_intra_bytes: int
    later_intra: int
    units: int


def _nal_units(data: bytes) -> list[tuple[int, int]]:
    """(start, header offset) of every NAL unit of an Annex B stream; the start includes its start code and one
    leading zero byte."""
    nals, pos = [], data.find(b"\x00\x00\x01")
    if pos < 0 or any(data[:pos]):
        raise ValueError("not an Annex B byte stream: no start code at its beginning")
    while pos >= 0:
        start = pos - 1 if pos > 0 and data[pos - 1] == 0 else pos
        if pos + 5 > len(data):
            raise ValueError(f"truncated NAL unit at byte {pos}")
        nals.append((start, pos + 3))
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return nals


def _annexb_units(data: bytes, fmt: str) -> list[Unit]:
    nals = _nal_units(data)
    starts: list[int] = [0]  # unit boundaries
    intra: list[bool] = [False]
    seen_vcl, pending, ph_seen = False, None, False  # pending: where the next unit starts if a picture follows
    for start, head in nals:
        if data[head] & 0x80:
            raise ValueError(f"forbidden_zero_bit set in the NAL unit at byte {start}")
        if fmt == "hevc":
            kind = (data[head] >> 1) & 0x3F
            vcl, irap, opens = kind < 32, kind in _HEVC_IRAP, kind in _HEVC_OPENS_AU
            first_in_pic = vcl and bool(data[head + 2] & 0x80)
        else:
            kind = (data[head + 1] >> 3) & 0x1F
            vcl, irap, opens = kind in _VVC_VCL, kind in _VVC_IRAP, kind in _VVC_OPENS_AU
            first_in_pic = vcl and (ph_seen or bool(data[head + 2] & 0x80))
            ph_seen = (ph_seen or kind == _VVC_PH) and not vcl
        if vcl:
            if seen_vcl and first_in_pic:
                starts.append(pending if pending is not None else start)
                intra.append(False)
            seen_vcl, pending = True, None
            intra[-1] = intra[-1] or irap
        elif opens and seen_vcl and pending is None:
            pending = start
    if not seen_vcl:
        raise ValueError("no picture (VCL NAL unit) in the stream")
    ends = starts[1:] + [len(data)]
    return [Unit(s, e - s, i) for s, e, i in zip(starts, ends, intra, strict=True)]


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            raise ValueError(f"truncated OBU size at byte {pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError(f"OBU size over 8 bytes at byte {pos}")


def _obu_units(data: bytes) -> list[Unit]:
    starts: list[int] = []
    intra: list[bool] = []
    reduced_still, pos = False, 0
    while pos < len(data):
        header = data[pos]
        kind, has_ext, has_size = (header >> 3) & 0xF, bool(header & 0x4), bool(header & 0x2)
        if header & 0x80:
            raise ValueError(f"forbidden bit set in the OBU at byte {pos}")
        if not has_size:
            raise ValueError(f"OBU at byte {pos} has no size field (not the low-overhead format)")
        size, body = _leb128(data, pos + 1 + has_ext)
        if body + size > len(data):
            raise ValueError(f"OBU at byte {pos} runs past the end of the stream")
        if kind == _OBU_TEMPORAL_DELIMITER:
            starts.append(pos)
            intra.append(False)
        elif not starts:
            raise ValueError("the stream does not start with a temporal delimiter OBU")
        elif kind == _OBU_SEQUENCE_HEADER and size:
            reduced_still = bool(data[body] & 0x08)  # seq_profile(3) still_picture(1) reduced_still_picture_header
        elif kind in (_OBU_FRAME_HEADER, _OBU_FRAME) and size:
            first = data[body]  # show_existing_frame(1) frame_type(2), unless reduced_still_picture_header
            intra[-1] = intra[-1] or reduced_still or (not first & 0x80 and ((first >> 5) & 0x3) in (0, 2))
        pos = body + size
    if not starts:
        raise ValueError("no temporal unit in the stream")
    ends = starts[1:] + [len(data)]
    return [Unit(s, e - s, i) for s, e, i in zip(starts, ends, intra, strict=True)]


def access_units(data: bytes, fmt: str) -> list[Unit]:
    """The access units (H.266, H.265) or temporal units (AV1) of a raw bitstream, in stream order.

    Args:
        data: the bitstream, as FFmpeg's ``-f vvc`` / ``-f hevc`` / ``-f obu`` muxer writes it.
        fmt: "vvc", "hevc" or "obu".

    Raises:
        ValueError: an unknown format, or a stream this parser cannot split.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown stream format {fmt!r}: choose from {', '.join(FORMATS)}")
    return _obu_units(data) if fmt == "obu" else _annexb_units(data, fmt)


def intra_sizes(data: bytes, fmt: str) -> IntraSizes:
    """The bytes of a bitstream's first intra unit and of its later intra units (:func:`access_units`)."""
    units = access_units(data, fmt)
    later = [u for u in units[1:] if u.intra]
    return IntraSizes(len(data), units[0].size if units[0].intra else 0, sum(u.size for u in later), len(later),
                      len(units))
