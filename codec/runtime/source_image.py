"""The caller's source image: encoding it for the wire and turning it into the generator's input.

Both peers decode the same bytes with the same functions (cv2 + mediapipe in static-image mode), so the
sender's replica of the receiver sees exactly the receiver's source.

Bytes from the wire are untrusted: before cv2 sees them, `source_image_size` reads the width and height from
the header of the declared format (parsed here, not by cv2), checks that the bytes are that format and bounds
the size, so a small file that claims a huge picture (a decompression bomb) or a file of another format
labelled "webp" is refused without decoding a pixel.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from avfr.codec.data import FRAME_SIZE, PriorExtractor, five_channel

__all__ = [
    "SOURCE_FORMAT",
    "ACCEPTED_SOURCE_FORMATS",
    "MAX_SOURCE_SIDE_PX",
    "encode_source_image",
    "source_image_size",
    "decode_source_image",
    "source_input",
]

SOURCE_FORMAT = "webp"  # a 256x256 face at quality 90 is ~10-20 kB
# Formats a receiver decodes: the sender's WebP, and PNG / JPEG (simple headers, decoders cv2 always has).
# AVIF (legal on the wire) is refused: this cv2 has no AVIF decoder, and its header (ISOBMFF) is not parsed here.
ACCEPTED_SOURCE_FORMATS = ("webp", "png", "jpeg")
MAX_SOURCE_SIDE_PX = 1024  # the sender sends 256 px (96 px refreshes); the receiver resizes to 256 px anyway
MAX_JPEG_SCANS = 32  # a progressive JPEG decodes every scan over the whole picture (libjpeg: ~10 scans)
_MAX_HEADER_SEGMENTS = 64  # WebP chunks / JPEG marker segments read before the picture's size must be known
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}  # Huffman-coded, what libjpeg decodes
_JPEG_TABLES = (0xC4, 0xDB, 0xDD, 0xFE)  # DHT, DQT, DRI, COM: may come before the frame header (and APPn)
_WEBP_ANIMATION = 0x02  # VP8X flag


def encode_source_image(rgb: np.ndarray, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) RGB -> WebP bytes.

    Raises:
        ValueError: the image cannot be encoded.
    """
    ok, buf = cv2.imencode(".webp", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cv2 could not encode the source image as WebP")
    return buf.tobytes()


def _webp_bitstream_size(fourcc: bytes, body: bytes) -> tuple[int, int]:
    """(width, height) of a VP8 (lossy) or VP8L (lossless) chunk body."""
    if fourcc == b"VP8 ":
        if len(body) < 10:
            raise ValueError("WebP VP8 chunk is too short for a frame header")
        if body[0] & 1:
            raise ValueError("WebP VP8 bitstream does not start with a key frame")
        if body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("WebP VP8 frame has no start code")
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF  # the top 2 bits are an upscaling hint, ignored by decoders
    if len(body) < 5 or body[0] != 0x2F:
        raise ValueError("WebP VP8L chunk has no signature")
    (bits,) = struct.unpack_from("<I", body, 1)
    if bits >> 29:
        raise ValueError(f"WebP VP8L version {bits >> 29} is not 0")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file (no RIFF/WEBP header)")
    (riff_bytes,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_bytes
    if riff_bytes < 12 or end > len(data):
        raise ValueError(f"WebP RIFF size {riff_bytes} does not fit the {len(data)} bytes")
    canvas = None
    pos = 12
    for _ in range(_MAX_HEADER_SEGMENTS):
        if pos + 8 > end:
            break
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if len(body) != size or pos + 8 + size > end:
            raise ValueError(f"WebP chunk {fourcc!r} of {size} bytes is truncated")
        if fourcc in (b"VP8 ", b"VP8L"):
            size_px = _webp_bitstream_size(fourcc, body)
            if canvas is not None and size_px != canvas:
                raise ValueError(f"WebP bitstream is {size_px[0]}x{size_px[1]}, canvas {canvas[0]}x{canvas[1]}")
            return size_px
        if pos == 12:
            if fourcc != b"VP8X" or size < 10:
                raise ValueError(f"WebP starts with chunk {fourcc!r}, not VP8, VP8L or VP8X")
            if body[0] & _WEBP_ANIMATION:
                raise ValueError("an animated WebP is not a source image")
            canvas = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1)
            _check_side(*canvas)
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    raise ValueError("WebP has no VP8 / VP8L bitstream chunk")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE:
        raise ValueError("not a PNG file (no PNG signature)")
    length, chunk, width, height = struct.unpack_from(">I4sII", data, 8)
    if length != 13 or chunk != b"IHDR":
        raise ValueError("PNG does not start with an IHDR chunk")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        raise ValueError("not a JPEG file (no SOI marker)")
    pos = 2
    for _ in range(_MAX_HEADER_SEGMENTS):
        if pos >= len(data) or data[pos] != 0xFF:
            raise ValueError(f"JPEG: no marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos + 3 > len(data):
            break
        marker = data[pos]
        (length,) = struct.unpack_from(">H", data, pos + 1)
        if marker in _JPEG_FRAMES:
            if length < 8 or pos + 1 + length > len(data):
                raise ValueError("JPEG frame header is truncated")
            height, width = struct.unpack_from(">HH", data, pos + 4)
            if height == 0:
                raise ValueError("JPEG frame without a height (DNL) is not supported")
            if data.count(b"\xff\xda") > MAX_JPEG_SCANS:
                raise ValueError(f"JPEG has more than {MAX_JPEG_SCANS} scans")
            return width, height
        if not (0xE0 <= marker <= 0xEF or marker in _JPEG_TABLES):  # e.g. SOS / EOI first, other codings
            raise ValueError(f"JPEG marker 0x{marker:02X} before a baseline / progressive frame header")
        if length < 2:
            raise ValueError(f"JPEG segment 0x{marker:02X} has length {length}")
        pos += 1 + length
    raise ValueError("JPEG has no frame header within its first segments")


_HEADER_READERS = {"webp": _webp_size, "png": _png_size, "jpeg": _jpeg_size}


def _check_side(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SOURCE_SIDE_PX and 1 <= height <= MAX_SOURCE_SIDE_PX):
        raise ValueError(f"source image is {width}x{height} px, limit {MAX_SOURCE_SIDE_PX}x{MAX_SOURCE_SIDE_PX}")


def source_image_size(data: bytes, image_format: str) -> tuple[int, int]:
    """Width and height of untrusted image bytes, from the header of their declared format (nothing decoded).

    Args:
        data: the encoded image.
        image_format: the declared format (SourceImage.format), one of ACCEPTED_SOURCE_FORMATS.

    Returns:
        (width, height) in pixels, each 1..MAX_SOURCE_SIDE_PX.

    Raises:
        ValueError: a format this receiver does not accept, bytes that are not that format (by their
            signature and header), a truncated or inconsistent header, an animation, or a size over the limit.
    """
    reader = _HEADER_READERS.get(image_format)
    if reader is None:
        raise ValueError(f"source image format {image_format!r} is not accepted "
                         f"(accepted: {', '.join(ACCEPTED_SOURCE_FORMATS)})")
    width, height = reader(bytes(data))
    _check_side(width, height)
    return width, height


def decode_source_image(data: bytes, size: int = FRAME_SIZE, image_format: str | None = None) -> np.ndarray:
    """Encoded image bytes -> uint8 (size, size, 3) RGB.

    Non-square images are centre-cropped, other sizes resized.

    Args:
        data: the encoded image.
        size: output side in pixels.
        image_format: bytes from the wire: their declared format; `source_image_size` checks the header
            (format, size limit) before anything is decoded. None: trusted local bytes (a file the user
            named), any format and size cv2 reads.

    Raises:
        ValueError: the bytes fail the header check, or are not an image cv2 can decode.
    """
    expected = None if image_format is None else source_image_size(data, image_format)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ValueError(f"source image bytes could not be decoded: {exc}") from exc
    if bgr is None:
        raise ValueError("source image bytes could not be decoded")
    h, w = bgr.shape[:2]
    if expected is not None and sorted((w, h)) != sorted(expected):  # EXIF orientation may swap the sides
        raise ValueError(f"source image decoded to {w}x{h} px, its header says {expected[0]}x{expected[1]}")
    side = min(h, w)
    bgr = bgr[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(bgr[..., ::-1])


def source_input(rgb: np.ndarray, extractor: PriorExtractor) -> tuple[np.ndarray, bool]:
    """Generator source input of an RGB image.

    Args:
        rgb: uint8 (256, 256, 3).
        extractor: a PriorExtractor with mesh and mask.

    Returns:
        (float32 (5, 256, 256) in [0, 1], whether a face was found).
    """
    priors = extractor(rgb)
    return five_channel(rgb, priors.mesh, priors.mask), priors.face_found
