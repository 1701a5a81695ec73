"""avfr.receiver.Decoder against a hostile sender's source images, and its release of what it opened."""

from __future__ import annotations

import gc
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    AudioParams,
    Hello,
    Refresh,
    SourceImage,
    decode_message,
    encode_hello,
    encode_source_chunk,
    split_source_image,
)

C = CONTROL_CHANNEL_LABEL
FACE = np.zeros((256, 256, 3), np.uint8)
FACE[64:192, 64:192] = 200


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _hello(model) -> bytes:
    return encode_hello(Hello(model.model_id, model.weights_sha256, audio=AudioParams(bitrate_bps=12_000)))


def _send_source(dec, image_id: int, fmt: str, data: bytes) -> None:
    for chunk in split_source_image(SourceImage(image_id, fmt, data)):
        dec.receive(C, encode_source_chunk(chunk), now_s=0.0)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of zeros: a few kB that decode to width x height x 3 bytes."""
    row = b"\x00" + b"\x00" * (3 * width)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _other_formats() -> list[bytes]:
    out = []
    for ext in (".ppm", ".tiff", ".bmp", ".jp2", ".ras"):
        ok, buf = cv2.imencode(ext, FACE)
        out.append(buf.tobytes())
    for ext in (".pfm", ".hdr"):
        ok, buf = cv2.imencode(ext, FACE.astype(np.float32) / 255)
        out.append(buf.tobytes())
    return out


def test_bad_source_images_are_counted_drops_and_a_good_one_still_works(model):
    from avfr.codec.runtime import encode_source_image
    from avfr.receiver import Decoder, SourceJob

    dec = Decoder(model=model, render=False)
    dec.receive(C, _hello(model), now_s=0.0)
    bad = [("png", _png_bomb(4096, 4096)),  # 48 MB of pixels in ~50 kB (the report's was 32768 x 32767)
           ("png", _png_bomb(1025, 8)),  # over MAX_SOURCE_SIDE_PX
           *(("webp", data) for data in _other_formats())]  # PPM, TIFF, BMP, JPEG 2000, Sun raster, PFM, HDR
    t0 = time.perf_counter()
    for image_id, (fmt, data) in enumerate(bad, start=1):
        _send_source(dec, image_id, fmt, data)
    assert time.perf_counter() - t0 < 1.0  # refused from the header, nothing decoded
    assert dec.stats.dropped_malformed == len(bad) and dec.stats.sources == 0
    assert dec.take_jobs() == []
    replies = [decode_message(r) for r in dec.take_replies()]
    assert replies == [Refresh(want_key=False, want_source=True)] * len(bad)  # ask for another image
    _send_source(dec, len(bad) + 1, "webp", encode_source_image(FACE))
    assert dec.stats.sources == 1
    assert [type(j) for j in dec.take_jobs()] == [SourceJob]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def test_source_image_is_decoded_on_the_worker_and_a_broken_one_keeps_the_speech(model):
    """The network path checks the header only; an image whose body does not decode is dropped on the worker
    (counted, asked for again) and the frames still carry their speech."""
    from avfr.codec.runtime import encode_source_image
    from avfr.receiver import Decoder, FrameJob, SourceJob

    good = encode_source_image(FACE)
    broken = good[:40] + bytes(len(good) - 40)  # a valid WebP header, a body of zeros
    with Decoder(model=model) as dec:
        dec.receive(C, _hello(model), now_s=0.0)
        _send_source(dec, 1, "webp", broken)
        jobs = dec.take_jobs()
        assert [type(j) for j in jobs] == [SourceJob] and jobs[0].data == broken  # queued undecoded
        assert dec.source_rgb is None and dec.stats.dropped_malformed == 0
        assert dec.run_job(jobs[0]) is None
        assert dec.source_rgb is None
        replies = [decode_message(r) for r in dec.take_replies()]
        assert replies == [Refresh(want_key=False, want_source=True)] and dec.stats.dropped_malformed == 1
        pcm = np.linspace(-0.5, 0.5, 640, dtype=np.float32)
        frame = dec.run_job(FrameJob(0, 0, None, None, np.zeros((80, 19), np.float32), pcm, False, 0.0, 0))
        assert frame is not None and frame.concealed and np.array_equal(frame.pcm, pcm)  # no picture, the speech
        _send_source(dec, 2, "webp", good)
        (job,) = dec.take_jobs()
        dec.run_job(job)
        assert dec.source_rgb is not None and dec.source_rgb.shape == (256, 256, 3)


def test_closed_decoders_release_mediapipe(model):
    from avfr.codec.runtime import encode_source_image
    from avfr.receiver import Decoder, SourceJob

    face = encode_source_image(FACE)

    def one_call() -> None:
        with Decoder(model=model) as dec:
            dec.run_job(SourceJob(1, face, "webp"))  # builds the mediapipe prior extractor
            renderer = dec._renderer
            assert renderer.priors.extractor is not None
        assert renderer.priors.extractor is None and dec._renderer is None
        with pytest.raises(RuntimeError, match="closed"):
            dec.run_job(SourceJob(2, face, "webp"))

    one_call()  # one-time allocations (onnxruntime, mediapipe's models)
    gc.collect()
    before = _rss_mb()
    for _ in range(5):
        one_call()
    gc.collect()
    assert _rss_mb() - before < 100  # unclosed: ~35 MB more per Decoder


def test_receiving_peer_ignores_channels_it_does_not_know_and_closes_its_worker(model, caplog):
    """A channel the peer names "\\x1b[2J..." is ignored with one printable warning; close() joins the worker."""
    import asyncio
    import logging

    from avfr.receiver import Decoder
    from avfr.receiver.track import ReceivingPeer
    from avfr.sender.peer import LOOPBACK, connect_in_process, create_channels, host_candidates, new_peer_connection

    async def call() -> ReceivingPeer:
        with host_candidates([LOOPBACK]):
            pc_send, pc_recv = new_peer_connection(), new_peer_connection()
            control, _ = create_channels(pc_send)
            evil = pc_send.createDataChannel("\x1b[2J\x1b]0;owned\x07")
            receiving = ReceivingPeer(Decoder(model=model, render=False), pc_recv)
            try:
                await connect_in_process(pc_send, pc_recv)
                for _ in range(500):
                    if evil.readyState == "open" and control.readyState == "open":
                        break
                    await asyncio.sleep(0.01)
                evil.send(b"\x26" + b"\x00" * 40)
                control.send(_hello(model))
                await asyncio.sleep(0.3)
            finally:
                receiving.close()
                await pc_send.close()
                await pc_recv.close()
        return receiving

    with caplog.at_level(logging.WARNING, logger="avfr.receiver.track"):
        receiving = asyncio.run(call())
    assert receiving.decoder.hello is not None  # the control channel works
    assert receiving.decoder.stats.dropped_malformed == 0 and receiving.decoder._pending == []
    warnings = [r.getMessage() for r in caplog.records if "ignored a data channel" in r.getMessage()]
    assert warnings == ["ignored a data channel labelled \\x1b[2J\\x1b]0;owned\\x07"]
    assert not receiving._worker.is_alive()
