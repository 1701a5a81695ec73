"""The source-image codec: untrusted bytes are checked from their declared format's header before decoding."""

from __future__ import annotations

import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from avfr.codec.runtime import (
    MAX_SOURCE_SIDE_PX,
    decode_source_image,
    encode_source_image,
    source_image_size,
)

RGB = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature + IHDR of that size + a small IDAT of zeros (rows never fit: header-only bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(k + struct.pack("<I", len(v)) + v + b"\x00" * (len(v) & 1) for k, v in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _vp8(width: int, height: int, key: bool = True) -> bytes:
    return bytes([0 if key else 1, 0, 0]) + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 20


def _vp8l(width: int, height: int) -> bytes:
    return b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + b"\x00" * 20


def _vp8x(width: int, height: int, flags: int = 0) -> bytes:
    return bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


def _encoded(ext: str, image=RGB, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def _webp_bitstream(data: bytes) -> tuple[bytes, bytes]:
    """(fourcc, body) of the first chunk of a simple (VP8 / VP8L) WebP file."""
    (size,) = struct.unpack_from("<I", data, 16)
    return data[12:16], data[20 : 20 + size]


@pytest.mark.parametrize("fmt, data", [
    ("webp", encode_source_image(RGB)),  # VP8, what the sender sends
    ("webp", _encoded(".webp", params=(cv2.IMWRITE_WEBP_QUALITY, 101))),  # VP8L (lossless)
    ("webp", _riff((b"VP8X", _vp8x(160, 120)), _webp_bitstream(encode_source_image(RGB)))),  # extended
    ("png", _encoded(".png")),
    ("jpeg", _encoded(".jpg")),
    ("jpeg", _encoded(".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1))),
])
def test_accepted_formats_decode(fmt, data):
    assert source_image_size(data, fmt) == (160, 120)
    rgb = decode_source_image(data, image_format=fmt)
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("fmt, data, message", [
    ("png", _png_header(32768, 32767), "32768x32767 px, limit"),  # the reported bomb: 130 kB -> 6.3 GB
    ("png", _png_header(MAX_SOURCE_SIDE_PX + 1, 16), "limit"),
    ("png", _png_header(0, 16), "0x16 px"),
    ("webp", _riff((b"VP8 ", _vp8(16383, 16383))), "16383x16383 px, limit"),
    ("webp", _riff((b"VP8L", _vp8l(16384, 16384))), "16384x16384 px, limit"),
    ("webp", _riff((b"VP8X", _vp8x(1 << 24, 1 << 24)), (b"VP8 ", _vp8(64, 64))), "16777216x16777216 px"),
    ("webp", _riff((b"VP8X", _vp8x(64, 64)), (b"VP8L", _vp8l(16384, 16384))), "bitstream is 16384x16384"),
    ("webp", _riff((b"VP8X", _vp8x(64, 64, flags=0x02)), (b"VP8 ", _vp8(64, 64))), "animated"),
    ("webp", _riff((b"VP8 ", _vp8(64, 64, key=False))), "key frame"),
    ("webp", _riff((b"VP8X", _vp8x(64, 64)), (b"EXIF", b"x" * 9)), "no VP8 / VP8L"),
    ("webp", encode_source_image(RGB)[:30], "RIFF size"),  # truncated
    ("jpeg", b"\xff\xd8\xff\xc0\x00\x11\x08\x80\x00\x80\x00\x03" + b"\x00" * 20, "32768x32768 px, limit"),
    ("jpeg", b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x40\x03" + b"\x00" * 20, "DNL"),
    ("jpeg", b"\xff\xd8\xff\xc3\x00\x11\x08\x00\x40\x00\x40\x03" + b"\x00" * 20, "0xC3"),  # lossless
    ("jpeg", _encoded(".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)) + b"\xff\xda" * 40, "scans"),
    ("avif", b"\x00\x00\x00\x1cftypavif" + b"\x00" * 40, "not accepted"),
    ("gif", b"GIF89a", "not accepted"),
])
def test_bombs_and_bad_headers_are_refused_before_decoding(fmt, data, message):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        decode_source_image(data, image_format=fmt)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("ext", [".ppm", ".tiff", ".bmp", ".jp2", ".pfm", ".hdr", ".ras"])
def test_other_formats_labelled_webp_are_refused(ext):
    image = RGB.astype(np.float32) / 255 if ext in (".pfm", ".hdr") else RGB
    data = _encoded(ext, image)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # cv2 would take it
    for fmt in ("webp", "png", "jpeg"):
        with pytest.raises(ValueError, match="not a"):
            decode_source_image(data, image_format=fmt)


def test_format_must_match_the_label():
    with pytest.raises(ValueError, match="not a PNG"):
        decode_source_image(encode_source_image(RGB), image_format="png")
    with pytest.raises(ValueError, match="not a WebP"):
        decode_source_image(_encoded(".png"), image_format="webp")


def test_local_files_keep_any_format_cv2_reads():
    assert decode_source_image(_encoded(".bmp")).shape == (256, 256, 3)  # image_format=None: trusted bytes


def test_random_bytes_and_bit_flips_only_raise_value_error():
    rng = np.random.default_rng(1)
    good = {"webp": encode_source_image(RGB), "png": _encoded(".png"), "jpeg": _encoded(".jpg")}
    for fmt, data in good.items():
        for _ in range(60):
            flipped = bytearray(data)
            for pos in rng.integers(0, min(len(data), 64), 3):  # the header, where the checks are
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            for sample in (bytes(flipped), rng.integers(0, 256, int(rng.integers(1, 200)), np.uint8).tobytes()):
                try:
                    rgb = decode_source_image(sample, image_format=fmt)
                except ValueError:
                    continue
                assert rgb.shape == (256, 256, 3)
