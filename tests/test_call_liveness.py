"""Over real loopback WebRTC, a receiving peer whose sender stopped ends the call with `CallTimeoutError`:
no source image after the Hello, or silence on both channels, in realtime and arrival-order mode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "retalking_2.mp4"


def _need_clip() -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")


async def _stalled_call(realtime: bool, send_source: bool, frames: int) -> tuple[float, BaseException | None]:
    """A real Encoder's Hello (+ source image) and first `frames` frames on real aiortc channels, then the
    sender stays connected and sends nothing; returns (seconds until the receiver gave up, its error)."""
    from avfr.receiver import Decoder, DecoderConfig
    from avfr.receiver.track import ReceivingPeer
    from avfr.sender import Encoder
    from avfr.sender.peer import LOOPBACK, connect_in_process, create_channels, host_candidates, new_peer_connection
    from avfr.sender.track import FileSource

    encoder = Encoder()
    decoder = Decoder(DecoderConfig(realtime=realtime, source_timeout_s=1.0, silence_timeout_s=1.5),
                      render=send_source)  # the generator draws the frames before the sender stops
    with host_candidates([LOOPBACK]):
        pc_send, pc_recv = new_peer_connection(), new_peer_connection()
        control, media = create_channels(pc_send)
        receiving = ReceivingPeer(decoder, pc_recv)
        try:
            await connect_in_process(pc_send, pc_recv)
            while control.readyState != "open" or media.readyState != "open":
                await asyncio.sleep(0.01)
            source = iter(FileSource(CLIP, max_frames=frames))
            first = next(source)
            messages = encoder.start(first.rgb)
            if not send_source:
                messages = messages[:1]  # the Hello only
            for frame in [first, *source]:
                messages += encoder.encode_frame(frame.index, frame.rgb) + encoder.encode_audio(frame.pcm)
            for msg in messages:
                (control if msg.channel == control.label else media).send(msg.data)
            t0 = time.perf_counter()
            try:
                await receiving.wait(timeout_s=30.0)
                error = None
            except Exception as exc:  # noqa: BLE001 - returned to the test
                error = exc
            return time.perf_counter() - t0, error
        finally:
            receiving.close()
            await pc_send.close()
            await pc_recv.close()
            encoder.close()
            decoder.close()


@pytest.mark.parametrize("realtime", [True, False])
def test_no_source_image_ends_the_call(realtime):
    from avfr.receiver import CallTimeoutError

    _need_clip()
    took, error = asyncio.run(_stalled_call(realtime, send_source=False, frames=10))
    assert isinstance(error, CallTimeoutError) and "no source image within 1 s" in str(error), error
    assert took < 5.0


@pytest.mark.parametrize("realtime", [True, False])
def test_a_silent_sender_ends_the_call(realtime):
    from avfr.receiver import CallTimeoutError

    _need_clip()
    took, error = asyncio.run(_stalled_call(realtime, send_source=True, frames=10))
    assert isinstance(error, CallTimeoutError) and "silence timeout 1.5 s" in str(error), error
    assert took < 6.0


def test_loopback_call_with_a_stalled_sender_fails_fast():
    """`loopback_call` (what `avfr-codec call` runs): a capture that stalls after 10 frames ends the call with
    the receiver's error instead of a hang."""
    from avfr.benchmarks import loopback_call
    from avfr.receiver import CallTimeoutError, DecoderConfig
    from avfr.sender.track import FileSource

    _need_clip()

    def stalling():
        yield from FileSource(CLIP, max_frames=10)
        time.sleep(4.0)  # a frozen camera (the encoder thread blocks; it comes back for the clean-up)

    t0 = time.perf_counter()
    with pytest.raises(CallTimeoutError, match="silent"):
        asyncio.run(loopback_call(stalling(), decoder_config=DecoderConfig(silence_timeout_s=1.0),
                                  keep_frames=False, timeout_s=60))
    assert time.perf_counter() - t0 < 40.0


def test_receive_cli_ends_a_call_without_a_source_image(tmp_path):
    """`avfr-codec receive` with a sender that sends its Hello and then nothing: one clear error line, rc 1."""
    import socket
    import subprocess
    import sys

    from avfr.sender import Encoder
    from avfr.sender.peer import LOOPBACK, call_signaling, create_channels, host_candidates, new_peer_connection
    from avfr.sender.track import FileSource

    _need_clip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "avfr.cli", "receive", "--listen", f"127.0.0.1:{port}",
                             "--quiet", "--source-timeout-s", "1", "--timeout-s", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def hello_only():
        encoder = Encoder()
        with host_candidates([LOOPBACK]):
            pc = new_peer_connection()
            control, media = create_channels(pc)
            try:
                await call_signaling(pc, LOOPBACK, port, retry_s=60.0)
                while control.readyState != "open":
                    await asyncio.sleep(0.01)
                first = next(iter(FileSource(CLIP, max_frames=1)))
                control.send(encoder.start(first.rgb)[0].data)  # the Hello, then nothing
                await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
            finally:
                await pc.close()
                encoder.close()

    try:
        asyncio.run(hello_only())
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    errors = [line for line in stderr.splitlines() if line.startswith("avfr-codec: error:")]
    assert proc.returncode == 1, stderr[-3000:]
    assert len(errors) == 1 and "no source image within 1 s" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr
