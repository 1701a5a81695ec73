"""Source image chunking and the bounded, checking `SourceAssembler`."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from avfr.proto import (
    ProtocolError,
    SourceAssembler,
    SourceChunk,
    SourceImage,
    decode_message,
    encode_message,
    split_source_image,
)


def _image(image_id: int = 1, size: int = 40_000, seed: int = 0) -> SourceImage:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    return SourceImage(image_id, "webp", data)


def _wire(chunks: list[SourceChunk]) -> list[SourceChunk]:
    out = [decode_message(encode_message(c)) for c in chunks]
    assert all(isinstance(c, SourceChunk) for c in out)
    return out  # type: ignore[return-value]


def test_chunks_are_bounded_and_reassemble_in_any_order() -> None:
    image = _image()
    chunks = _wire(split_source_image(image, chunk_bytes=4096))
    assert len(chunks) == 10 and max(len(c.payload) for c in chunks) == 4096
    order = np.random.default_rng(1).permutation(len(chunks))
    asm = SourceAssembler()
    results = [asm.push(chunks[i], now_s=0.1 * n) for n, i in enumerate(order)]
    assert results[:-1] == [None] * 9
    assert results[-1] == image and results[-1].sha256 == hashlib.sha256(image.data).digest()
    assert asm.pending_ids == ()


def test_single_chunk_image() -> None:
    image = SourceImage(0, "png", b"\x89PNG tiny")
    (chunk,) = split_source_image(image)
    assert SourceAssembler().push(chunk, 0.0) == image


def test_duplicates_are_ignored_and_conflicts_refused() -> None:
    chunks = split_source_image(_image(), chunk_bytes=16384)
    asm = SourceAssembler()
    assert asm.push(chunks[0], 0.0) is None
    assert asm.push(chunks[0], 0.1) is None  # same bytes again: fine
    forged = SourceChunk(*chunks[1].header()[:5], 0, chunks[1].count, b"\x00" * 16384)
    with pytest.raises(ProtocolError, match="source image 1: chunk 0 re-sent with other bytes"):
        asm.push(forged, 0.2)
    assert asm.pending_ids == ()  # the partial image was dropped


def test_chunk_disagreeing_with_its_image_is_refused() -> None:
    image = _image()
    chunks = split_source_image(image, chunk_bytes=16384)
    other = split_source_image(SourceImage(1, "jpeg", image.data), chunk_bytes=16384)
    asm = SourceAssembler()
    asm.push(chunks[0], 0.0)
    with pytest.raises(ProtocolError, match="source image 1: chunk 1 disagrees with earlier chunks"):
        asm.push(other[1], 0.1)


def test_sha256_mismatch_is_refused() -> None:
    image = _image(size=5000)
    bad_sha = hashlib.sha256(b"something else").digest()
    chunk = SourceChunk(1, "webp", 5000, bad_sha, 16384, 0, 1, image.data)
    with pytest.raises(ProtocolError, match="sha256 of the assembled bytes does not match"):
        SourceAssembler().push(chunk, 0.0)


def test_stale_partial_images_time_out() -> None:
    chunks = split_source_image(_image(), chunk_bytes=16384)
    asm = SourceAssembler(timeout_s=5.0)
    asm.push(chunks[0], 0.0)
    asm.push(chunks[1], 4.0)
    assert asm.expire(8.9) == [] and asm.pending_ids == (1,)
    assert asm.expire(9.1) == [1] and asm.pending_ids == () and asm.timed_out == 1
    assert asm.push(chunks[2], 9.2) is None  # a late chunk starts over; it cannot complete alone
    assert asm.pending_ids == (1,)


def test_memory_is_bounded_by_concurrent_images() -> None:
    asm = SourceAssembler(max_partial_images=2)
    for image_id in range(1, 6):
        asm.push(split_source_image(_image(image_id), chunk_bytes=16384)[0], float(image_id))
    assert asm.pending_ids == (4, 5) and asm.timed_out == 3


def test_size_limit_of_the_receiver() -> None:
    chunk = split_source_image(_image(size=40_000))[0]
    with pytest.raises(ProtocolError, match="source image 1 is 40000 bytes, limit 30000"):
        SourceAssembler(max_image_bytes=30_000).push(chunk, 0.0)


def test_resend_mid_call_with_a_new_id_supersedes_the_old_one() -> None:
    first, second = _image(1, seed=1), _image(2, seed=2)
    asm = SourceAssembler()
    c1 = split_source_image(first, chunk_bytes=16384)
    c2 = split_source_image(second, chunk_bytes=16384)
    assert asm.push(c1[0], 0.0) is None
    for c in c2[:-1]:
        assert asm.push(c, 0.1) is None
    assert asm.push(c2[-1], 0.2) == second
    assert asm.pending_ids == ()  # the older, unfinished image 1 was dropped
    assert all(asm.push(c, 0.3) is None for c in c1)  # and its late chunks are ignored
    assert asm.pending_ids == ()
    assert all(asm.push(c, 0.4) is None for c in c2)  # duplicates of the shown image too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 3}, r"SourceChunk.count=3 out of range \[2, 2\]"),
        ({"index": 2}, r"SourceChunk.index=2 out of range \[0, 1\]"),
        ({"chunk_bytes": 512}, r"SourceChunk.chunk_bytes=512 out of range \[1024, 16384\]"),
        ({"total_bytes": 3 * 2**20}, r"SourceChunk.total_bytes=3145728 out of range"),
        ({"sha256": b"short"}, "SourceChunk.sha256 is 5 bytes, expected 32..32"),
        ({"format": "bmp"}, "SourceChunk.format='bmp' is not one of webp, jpeg, avif, png"),
    ],
)
def test_chunk_fields_are_checked(kwargs: dict[str, object], message: str) -> None:
    fields = {"image_id": 1, "format": "webp", "total_bytes": 2000, "sha256": b"\x00" * 32,
              "chunk_bytes": 1024, "index": 1, "count": 2, "payload": b"\x00" * 976}
    fields.update(kwargs)
    with pytest.raises(ProtocolError, match=message):
        SourceChunk(**fields)  # type: ignore[arg-type]
