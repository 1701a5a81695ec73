"""The caller's source image: `SourceImage`, its bounded `SourceChunk`s and the receiver's `SourceAssembler`.

The proto carries encoded image bytes (WebP, JPEG, AVIF or PNG) and their format; encoding happens elsewhere.
An image is split into chunks of `chunk_bytes` (<= 16 KiB) that each repeat the image header (id, format,
total size, sha256), so any chunk can start an assembly and every chunk is checked against the others.
A re-sent image (after a Refresh, or when the sender decides) gets a new, larger image id.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from avfr.proto.errors import ProtocolError
from avfr.proto.framing import (
    MAX_SOURCE_CHUNK_BYTES,
    MessageType,
    check_bytes,
    check_int,
    check_str,
    expect_type,
    pack_body,
    unpack_body,
)

__all__ = [
    "SOURCE_FORMATS",
    "MAX_SOURCE_BYTES",
    "MIN_CHUNK_BYTES",
    "SourceImage",
    "SourceChunk",
    "split_source_image",
    "encode_source_chunk",
    "decode_source_chunk",
    "SourceAssembler",
]

logger = logging.getLogger(__name__)

SOURCE_FORMATS = ("webp", "jpeg", "avif", "png")
MAX_SOURCE_BYTES = 2 * 1024 * 1024  # largest encoded source image (a 256x256 WebP is ~10-30 KB)
MIN_CHUNK_BYTES = 1024
MAX_SOURCE_CHUNKS = math.ceil(MAX_SOURCE_BYTES / MIN_CHUNK_BYTES)
MAX_IMAGE_ID = 0xFFFFFFFF


def _check_format(value: object, name: str) -> str:
    fmt = check_str(value, name, 8)
    if fmt not in SOURCE_FORMATS:
        raise ProtocolError(f"{name}={fmt!r} is not one of {', '.join(SOURCE_FORMATS)}")
    return fmt


@dataclass(frozen=True)
class SourceImage:
    """One encoded source image.

    Attributes:
        image_id: uint32; each new image of a call gets a larger id.
        format: "webp", "jpeg", "avif" or "png".
        data: the encoded bytes, 1..MAX_SOURCE_BYTES.
    """

    image_id: int
    format: str
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_int(self.image_id, "SourceImage.image_id", 0, MAX_IMAGE_ID)
        _check_format(self.format, "SourceImage.format")
        check_bytes(self.data, "SourceImage.data", 1, MAX_SOURCE_BYTES)

    @property
    def sha256(self) -> bytes:
        """sha256 digest of `data` (32 bytes)."""
        return hashlib.sha256(self.data).digest()


@dataclass(frozen=True)
class SourceChunk:
    """One piece of a source image; chunk i holds bytes [i * chunk_bytes, ...) of the image.

    Attributes:
        image_id: uint32 image id.
        format: image format (as in SourceImage).
        total_bytes: size of the whole image, 1..MAX_SOURCE_BYTES.
        sha256: 32-byte sha256 of the whole image.
        chunk_bytes: nominal chunk size, MIN_CHUNK_BYTES..16384; every chunk but the last has this size.
        index: 0..count-1.
        count: ceil(total_bytes / chunk_bytes).
        payload: the chunk's bytes.
    """

    image_id: int
    format: str
    total_bytes: int
    sha256: bytes = field(repr=False)
    chunk_bytes: int
    index: int
    count: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_int(self.image_id, "SourceChunk.image_id", 0, MAX_IMAGE_ID)
        _check_format(self.format, "SourceChunk.format")
        check_int(self.total_bytes, "SourceChunk.total_bytes", 1, MAX_SOURCE_BYTES)
        check_bytes(self.sha256, "SourceChunk.sha256", 32, 32)
        check_int(self.chunk_bytes, "SourceChunk.chunk_bytes", MIN_CHUNK_BYTES, MAX_SOURCE_CHUNK_BYTES)
        expected_count = -(-self.total_bytes // self.chunk_bytes)
        check_int(self.count, "SourceChunk.count", expected_count, expected_count)
        check_int(self.index, "SourceChunk.index", 0, self.count - 1)
        start = self.index * self.chunk_bytes
        size = min(self.chunk_bytes, self.total_bytes - start)
        check_bytes(self.payload, f"SourceChunk.payload of chunk {self.index}", size, size)

    def header(self) -> tuple[int, str, int, bytes, int, int]:
        """The fields every chunk of one image must share."""
        return (self.image_id, self.format, self.total_bytes, self.sha256, self.chunk_bytes, self.count)


def split_source_image(image: SourceImage, chunk_bytes: int = MAX_SOURCE_CHUNK_BYTES) -> list[SourceChunk]:
    """Cut an image into chunks (send them in order on the reliable channel).

    Args:
        image: the encoded image.
        chunk_bytes: nominal chunk size, MIN_CHUNK_BYTES..16384.

    Returns:
        ceil(len(data) / chunk_bytes) chunks.
    """
    check_int(chunk_bytes, "chunk_bytes", MIN_CHUNK_BYTES, MAX_SOURCE_CHUNK_BYTES)
    total = len(image.data)
    count = -(-total // chunk_bytes)
    digest = image.sha256
    return [
        SourceChunk(image.image_id, image.format, total, digest, chunk_bytes, i, count,
                    image.data[i * chunk_bytes : (i + 1) * chunk_bytes])
        for i in range(count)
    ]


def encode_source_chunk(chunk: SourceChunk) -> bytes:
    """SourceChunk -> bytes: tag, msgpack [image_id, format, total_bytes, sha256, chunk_bytes, index, count,
    payload]."""
    return pack_body(
        MessageType.SOURCE_CHUNK,
        [chunk.image_id, chunk.format, chunk.total_bytes, chunk.sha256, chunk.chunk_bytes, chunk.index,
         chunk.count, chunk.payload],
    )


def decode_source_chunk(data: bytes) -> SourceChunk:
    """bytes -> SourceChunk. Raises ProtocolError on anything malformed or self-inconsistent."""
    expect_type(data, MessageType.SOURCE_CHUNK)
    return SourceChunk(*unpack_body(data, MessageType.SOURCE_CHUNK, 8))


@dataclass
class _Partial:
    header: tuple[int, str, int, bytes, int, int]
    started_s: float
    last_s: float
    chunks: dict[int, bytes] = field(default_factory=dict)


class SourceAssembler:
    """Reassembles source images from chunks, in any order, with bounded memory.

    At most `max_partial_images` images are assembled at once (the oldest is dropped for a new one), each
    at most `max_image_bytes`; a partial image that gets no chunk for `timeout_s` is dropped (ask for the
    image again with `Refresh(want_source=True)`). Chunks of an image older than the newest completed one
    are ignored.

    Args:
        max_partial_images: images assembled concurrently.
        timeout_s: drop a partial image after this long without a new chunk.
        max_image_bytes: refuse larger images (<= MAX_SOURCE_BYTES).
    """

    def __init__(self, max_partial_images: int = 2, timeout_s: float = 10.0,
                 max_image_bytes: int = MAX_SOURCE_BYTES) -> None:
        if max_partial_images < 1 or timeout_s <= 0 or not 1 <= max_image_bytes <= MAX_SOURCE_BYTES:
            raise ValueError("need max_partial_images >= 1, timeout_s > 0, 1 <= max_image_bytes <= 2 MiB")
        self.max_partial_images = max_partial_images
        self.timeout_s = timeout_s
        self.max_image_bytes = max_image_bytes
        self._partials: dict[int, _Partial] = {}
        self._newest_done: int | None = None
        self._done_ids: deque[int] = deque(maxlen=8)
        self.timed_out = 0  # partial images dropped for staleness or eviction

    @property
    def pending_ids(self) -> tuple[int, ...]:
        """Ids of the images being assembled."""
        return tuple(self._partials)

    def expire(self, now_s: float) -> list[int]:
        """Drop partial images with no chunk for `timeout_s`; returns their ids."""
        stale = [i for i, p in self._partials.items() if now_s - p.last_s > self.timeout_s]
        for image_id in stale:
            del self._partials[image_id]
            self.timed_out += 1
            logger.debug("source image %d timed out", image_id)
        return stale

    def push(self, chunk: SourceChunk, now_s: float) -> SourceImage | None:
        """Add one chunk.

        Args:
            chunk: a decoded chunk.
            now_s: current time in seconds (any monotonic clock).

        Returns:
            The completed image when this chunk finished it, else None.

        Raises:
            ProtocolError: image over the size limit, a chunk inconsistent with the ones before it (the
                partial image is dropped), or a completed image whose sha256 does not match.
        """
        self.expire(now_s)
        image_id = chunk.image_id
        if image_id in self._done_ids or (self._newest_done is not None and image_id <= self._newest_done):
            return None  # duplicate or stale chunk of an image already shown or superseded
        if chunk.total_bytes > self.max_image_bytes:
            raise ProtocolError(
                f"source image {image_id} is {chunk.total_bytes} bytes, limit {self.max_image_bytes}"
            )
        partial = self._partials.get(image_id)
        if partial is None:
            while len(self._partials) >= self.max_partial_images:
                oldest = min(self._partials, key=lambda i: self._partials[i].started_s)
                del self._partials[oldest]
                self.timed_out += 1
                logger.debug("source image %d dropped for image %d", oldest, image_id)
            partial = self._partials[image_id] = _Partial(chunk.header(), now_s, now_s)
        elif partial.header != chunk.header():
            del self._partials[image_id]
            raise ProtocolError(f"source image {image_id}: chunk {chunk.index} disagrees with earlier chunks")
        previous = partial.chunks.get(chunk.index)
        if previous is not None:
            if previous != chunk.payload:
                del self._partials[image_id]
                raise ProtocolError(f"source image {image_id}: chunk {chunk.index} re-sent with other bytes")
            return None
        partial.chunks[chunk.index] = chunk.payload
        partial.last_s = now_s
        if len(partial.chunks) < chunk.count:
            return None
        del self._partials[image_id]
        data = b"".join(partial.chunks[i] for i in range(chunk.count))
        if hashlib.sha256(data).digest() != chunk.sha256:
            raise ProtocolError(f"source image {image_id}: sha256 of the assembled bytes does not match")
        self._done_ids.append(image_id)
        self._newest_done = image_id
        for older in [i for i in self._partials if i < image_id]:
            del self._partials[older]  # superseded by a newer image
        return SourceImage(image_id, chunk.format, data)
