"""The anchors' access-unit parser (avfr.benchmarks.bitstreams) on real FFmpeg encodes."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from avfr.benchmarks import anchors, bitstreams, pixel_metrics, reduced


def _frames(n: int) -> np.ndarray:
    """uint8 (n, 256, 256, 3): a moving gradient."""
    yy, xx = np.mgrid[0:256, 0:256]
    return np.stack([np.stack([(xx + 5 * k) % 256, yy, (xx + yy) // 2], -1) for k in range(n)]).astype(np.uint8)


def _spec(name: str) -> anchors.AnchorSpec:
    spec = reduced.bench_specs("faster", 2)[name]
    if anchors.missing_encoders([spec], pixel_metrics.ffmpeg_exe()):
        pytest.skip(f"the imageio-ffmpeg binary has no {spec.encoder}")
    return spec


def _decoded_frames(spec: anchors.AnchorSpec, data: bytes) -> int:
    cmd = [pixel_metrics.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-c:v", spec.decoder, "-f",
           spec.stream_format, "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    return len(raw) // (spec.size * spec.size * 3)


@pytest.mark.parametrize("name, param", [("hevc", 40), ("av1", 30)])
def test_first_unit_is_the_one_frame_encode(name: str, param: int) -> None:
    """x265 and SVT-AV1 code the first picture alike whatever follows: the first unit of an 8-frame encode is a
    1-frame encode, byte for byte; one unit per frame, sizes adding up to the stream."""
    spec, ffmpeg, frames = _spec(name), pixel_metrics.ffmpeg_exe(), _frames(8)
    one, many = anchors.encode(spec, frames[:1], param, ffmpeg), anchors.encode(spec, frames, param, ffmpeg)
    units = bitstreams.access_units(many.bitstream, spec.stream_format)
    assert len(units) == 8 and sum(u.size for u in units) == len(many.bitstream)
    assert [u.intra for u in units] == [True] + [False] * 7
    assert many.bitstream[: units[0].size] == one.bitstream
    sizes = bitstreams.intra_sizes(many.bitstream, spec.stream_format)
    assert (sizes.first_intra_bytes, sizes.later_intra_bytes, sizes.later_intra) == (len(one.bitstream), 0, 0)
    # two streams back to back: the second one's intra unit is a later intra picture, counted in full
    twice = bitstreams.intra_sizes(many.bitstream + many.bitstream, spec.stream_format)
    assert (twice.later_intra, twice.later_intra_bytes, twice.units) == (1, len(one.bitstream), 16)


@pytest.mark.parametrize("name", ["vvc-s128f12.5", "vvc-ra"])
def test_vvc_units_decode_picture_by_picture(name: str) -> None:
    """vvenc codes the intra picture differently when more follow (rate control, GOP QPs), so the check is the
    decoder's: the first unit alone decodes to one picture and every prefix of k units to k pictures; its
    parameter sets are those of a 1-frame encode."""
    spec, ffmpeg = _spec(name), pixel_metrics.ffmpeg_exe()
    frames = _frames(2 * 6)  # 6 pictures at 12.5 fps, 12 at 25 fps
    one, many = anchors.encode(spec, frames[:1], 45, ffmpeg), anchors.encode(spec, frames, 45, ffmpeg)
    (single,) = bitstreams.access_units(one.bitstream, "vvc")
    assert single.intra and single.size == len(one.bitstream)
    units = bitstreams.access_units(many.bitstream, "vvc")
    assert len(units) == len(frames[:: spec.step]) and sum(u.size for u in units) == len(many.bitstream)
    assert units[0].intra and not any(u.intra for u in units[1:])
    for k in (1, 2, len(units) - 1):
        assert _decoded_frames(spec, many.bitstream[: units[k - 1].offset + units[k - 1].size]) == k
    sps = one.bitstream[: one.bitstream.find(b"\x00\x00\x01", 4) - 1]  # the SPS NAL unit, with its start code
    assert many.bitstream.startswith(sps)


def test_malformed_streams_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown stream format"):
        bitstreams.access_units(b"\x00\x00\x01\x40\x01\x0c", "h264")
    with pytest.raises(ValueError, match="Annex B"):
        bitstreams.access_units(b"\x12\x34\x00\x00\x01\x40\x01", "hevc")
    with pytest.raises(ValueError, match="no picture"):
        bitstreams.access_units(b"\x00\x00\x00\x01\x40\x01\x0c\x01", "hevc")  # a VPS only
    with pytest.raises(ValueError, match="temporal delimiter"):
        bitstreams.access_units(bytes([1 << 3 | 2, 1, 0]), "obu")  # a sequence header first
    with pytest.raises(ValueError, match="past the end"):
        bitstreams.access_units(bytes([2 << 3 | 2, 0, 6 << 3 | 2, 9, 0]), "obu")
    with pytest.raises(ValueError, match="no size field"):
        bitstreams.access_units(bytes([2 << 3, 0]), "obu")
    rng = np.random.default_rng(0)
    for _ in range(200):  # random bytes: a split or ValueError, nothing else
        data = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        for fmt in bitstreams.FORMATS:
            try:
                units = bitstreams.access_units(data, fmt)
            except ValueError:
                continue
            assert sum(u.size for u in units) == len(data)
