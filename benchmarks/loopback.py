"""The two-peer call in one process over loopback WebRTC (aiortc; ICE host candidates 127.0.0.1 only, no STUN).

What ``avfr-codec call`` runs, and what the call benchmarks (``bench_call.py``) and tests drive: it needs both
the sender and the receiver, so it lives here, above both peers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CallRefusedError", "CallResult", "loopback_call", "stats_line", "stats_loop"]


@dataclass
class CallResult:
    """What a loopback call produced.

    Attributes:
        frames: every decided frame in order (empty unless keep_frames); those the receiver's generator had
            no time to draw repeat the last picture with their own speech (`ReceivedFrame.repeated`).
        encoder: the sender's Encoder stats; decoder: the receiver's Decoder stats; link: SenderLinkStats.
        messages: every (channel, bytes) the receiver got, in arrival order (when record_messages).
        frame_times: frame index -> perf_counter when it came out of the generator.
        arrival_s: frame index -> perf_counter when its keypoint packet arrived (DecoderConfig.timing).
        candidates: the ICE candidate lines of both session descriptions (all on 127.0.0.1).
        replica: (frame index, RGB) of the sender's last drift-check picture (what it expects the far end
            to show for that frame).
        wall_s: call duration from the channels opening to the last frame.
        setup_s: time to connect (offer/answer, ICE, DTLS, SCTP).
    """

    frames: list = field(default_factory=list)
    encoder: object = None
    decoder: object = None
    link: object = None
    messages: list = field(default_factory=list)
    frame_times: dict = field(default_factory=dict)
    arrival_s: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    replica: tuple | None = None
    wall_s: float = 0.0
    setup_s: float = 0.0


async def loopback_call(frames_source, source_rgb: np.ndarray | None = None, *, encoder_config=None,
                        decoder_config=None, impairment=None, realtime: bool = False,
                        keep_frames: bool = True, record_messages: bool = False, on_frame=None,
                        stats_every_s: float = 0.0, timeout_s: float | None = None,
                        receiver_model=None) -> CallResult:
    """Run both peers in this process over loopback WebRTC.

    Args:
        frames_source: iterable of avfr.sender.track.CapturedFrame (e.g. FileSource).
        source_rgb: uint8 (256, 256, 3) source image (None: the first frame).
        encoder_config, decoder_config: EncoderConfig / DecoderConfig (defaults when None).
        impairment: avfr.sender.track.Impairment for the media channel.
        realtime: pace the sender at 25 fps and play out on the wall clock (else arrival-order decisions).
        keep_frames: keep every ReceivedFrame in the result.
        record_messages: keep every received message (for offline replays).
        on_frame: callback(ReceivedFrame) on the event loop (mp4 writer, window, ...).
        stats_every_s: print a live stats line to stderr this often (0: never).
        timeout_s: give up after this long.
        receiver_model: the receiver's CallModel (default: the same shipped model as the sender).

    Returns:
        CallResult.

    Raises:
        CallRefusedError: the receiver refused the Hello.
        CallTimeoutError: the sender stopped (no source image, or silence; DecoderConfig's timeouts).
        TimeoutError: not done within timeout_s.
    """
    from avfr.codec.runtime import load_call_model
    from avfr.receiver import Decoder, DecoderConfig
    from avfr.receiver.track import ReceivingPeer
    from avfr.sender import Encoder, EncoderConfig
    from avfr.sender.peer import LOOPBACK, connect_in_process, create_channels, host_candidates, new_peer_connection
    from avfr.sender.track import SendingPeer

    model = load_call_model()
    encoder = Encoder(encoder_config or EncoderConfig(), model)
    dconf = decoder_config or DecoderConfig(realtime=realtime)
    decoder = Decoder(dconf, receiver_model or model)
    result = CallResult()
    with host_candidates([LOOPBACK]):
        pc_send, pc_recv = new_peer_connection(), new_peer_connection()
        control, media = create_channels(pc_send)
        receiving = ReceivingPeer(decoder, pc_recv, record_messages=record_messages)
        if keep_frames:
            receiving.frames_out.append(result.frames.append)
        if on_frame is not None:
            receiving.frames_out.append(on_frame)
        sending = SendingPeer(encoder, control, media, impairment)
        t0 = time.perf_counter()
        stats_task = None
        try:
            await connect_in_process(pc_send, pc_recv)
            result.setup_s = time.perf_counter() - t0
            result.candidates = [line for pc in (pc_send, pc_recv) for line in pc.localDescription.sdp.splitlines()
                                 if line.startswith("a=candidate")]
            if stats_every_s > 0:
                stats_task = asyncio.get_running_loop().create_task(
                    stats_loop(stats_every_s, encoder, decoder, sending, receiving))
            t1 = time.perf_counter()
            await asyncio.wait_for(_run_both(sending, receiving, frames_source, source_rgb, realtime), timeout_s)
            result.wall_s = time.perf_counter() - t1
        finally:
            if stats_task is not None:
                stats_task.cancel()
            sending.close()
            receiving.close()
            await pc_send.close()
            await pc_recv.close()
            encoder.close()  # mediapipe; both worker threads have stopped
            decoder.close()
    result.encoder, result.decoder, result.link = encoder.stats, decoder.stats, sending.stats
    result.messages = receiving.messages
    result.frame_times = receiving.frame_times
    result.arrival_s = decoder.arrival_s
    result.replica = encoder.last_replica
    return result


class CallRefusedError(RuntimeError):
    """The receiving peer refused the sender's Hello (unknown model, other weights, parameters)."""


async def _run_both(sending, receiving, frames_source, source_rgb, realtime: bool) -> None:
    """The sender's run, then the receiver's; a receiver that fails first (`CallTimeoutError`: the sender
    stopped) ends the call at once with its error."""
    send = asyncio.ensure_future(sending.run(frames_source, source_rgb, realtime=realtime))
    received = asyncio.ensure_future(receiving.done.wait())
    try:
        await asyncio.wait({send, received}, return_when=asyncio.FIRST_COMPLETED)
        if not send.done() and receiving.error is not None:
            await receiving.wait()  # raises the receiver's error
        await send
    finally:
        received.cancel()
        if not send.done():
            send.cancel()
    if sending.encoder.stopped:
        raise CallRefusedError(f"the receiver refused the call: {sending.encoder.stats.refused}")
    await receiving.wait()


def stats_line(encoder_stats, decoder_stats, link, frame_times: dict, elapsed_s: float, *,
               realtime: bool = True) -> str:
    """One human-readable line: output fps, kbit/s per stream (per second of media), latency of the newest
    frame (capture -> out), keypoint frames lost (never arrived) and late (arrived after their frame was
    decided), malformed messages, concealed frames, renders skipped (generator too slow), late packets
    (keypoints and audio), the playout delay and source refreshes.

    ``realtime=False`` (arrival-order playout, the sender not paced): there is no wall-clock playout, so the
    line shows neither latency nor playout delay (capture -> out would only measure the backlog of a sender
    running ahead of the generator) but says ``arrival order``.
    """
    frames = decoder_stats.frames_out
    fps = frames / elapsed_s if elapsed_s > 0 else 0.0
    media_s = max(decoder_stats.frames_decided / 25.0, 1e-9)  # kbit/s of media time (also when not realtime)
    kp_kbps = 8 * decoder_stats.keypoint_bytes / media_s / 1000
    audio_kbps = 8 * decoder_stats.audio_bytes / media_s / 1000
    timing = " | arrival order"
    if realtime:
        timing = f" | delay {decoder_stats.delay_ms:.0f} ms"
        if link is not None and frame_times:
            last = max(frame_times)
            if last in link.capture_s:
                timing = f" | latency {1000 * (frame_times[last] - link.capture_s[last]):.0f} ms" + timing
    refreshes = encoder_stats.refreshes if encoder_stats is not None else 0
    d = decoder_stats
    return (f"fps {fps:5.1f} | keypoints {kp_kbps:4.2f} kbit/s | audio {audio_kbps:5.2f} kbit/s{timing} | "
            f"lost {d.lost} late {d.late_frames} concealed {d.concealed} malformed {d.dropped_malformed} | "
            f"skipped {d.render_skipped} | late packets {d.dropped_late} | refreshes {refreshes}")


async def stats_loop(every_s: float, encoder, decoder, sending, receiving) -> None:
    """Print :func:`stats_line` to stderr every ``every_s`` seconds until cancelled (encoder, sending: None on a
    receive-only peer)."""
    t0 = time.perf_counter()
    while True:
        await asyncio.sleep(every_s)
        line = stats_line(encoder.stats if encoder else None, decoder.stats, sending.stats if sending else None,
                          receiving.frame_times, time.perf_counter() - t0, realtime=decoder.config.realtime)
        print("\r" + line, end="", file=sys.stderr, flush=True)
