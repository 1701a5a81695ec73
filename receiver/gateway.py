"""`Gateway`: many avfr callers, one batched generator, each caller out as plain aiortc video + audio tracks.

The library half of ``avfr-codec gateway`` (its networking, caller and viewer signaling, is `avfr.cli.gateway`).
Each caller is a `ReceivingPeer` on its own RTCPeerConnection with a `Decoder(render=False)`, exactly as a
one-call receiver (data channels, jitter buffer, realtime decisions, liveness, the tracks and their pacing),
except that its jobs go to the gateway (`_CallJobs`, the peer's ``runner``) instead of a generator of its own:

- event loop: every peer connection, `Decoder.receive` / `tick` / `check_alive`, delivering frames to tracks;
- one source thread for all calls: a new source image is decoded, mediapipe's priors are taken (one
  `PriorExtractor`, not thread-safe, lives on that thread) and `BatchRenderer.register` runs the identity
  encoder (the call's source tensors are then cached on the renderer's device);
- the `BatchRenderer`'s scheduler thread: every call's frames (`submit_frame`, deadline = the time the frame
  was decided + ``render_budget_s``) drawn in batches; a frame still waiting past its deadline is not drawn
  but goes out as the call's last picture with its own speech (``repeated``; `ReceivingPeer`'s own rule when
  behind), so every decided frame reaches the tracks and the speech always plays. The futures come back to the
  loop in each call's order. Before a call's first source is registered its frames go out at once as the
  source picture (black until it is decoded) with their speech;
- aiortc's executor threads: VP8 / Opus encoding of the tracks a viewer's connection sends.

    gateway = Gateway()                               # BatchRenderer(skip_late=True): torch CUDA or ORT CPU
    call = gateway.add_call(pc)                       # on the loop, before the caller's offer is answered
    pc_viewer.addTrack(call.video_track())            # ids "<call id>-video" / "<call id>-audio"
    await gateway.run_call(call)                      # until it ends (logged, never raises); removed then
    gateway.close()
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from avfr.codec.runtime import CallModel, decode_source_image, load_call_model
from avfr.proto import Refresh, encode_refresh, printable_text
from avfr.receiver.config import DecoderConfig, FrameJob, ReceivedFrame, SourceJob
from avfr.receiver.decoder import Decoder
from avfr.receiver.liveness import CallTimeoutError
from avfr.receiver.many_calls import BatchRenderer
from avfr.receiver.rendering import SourcePriors
from avfr.receiver.track import ReceivedAudioTrack, ReceivedVideoTrack, ReceivingPeer, repeat_frame

__all__ = ["Gateway", "GatewayCall"]

logger = logging.getLogger(__name__)


class GatewayCall:
    """One caller of a `Gateway`.

    Attributes:
        id: "caller-<n>" (n counts from 1 in arrival order), or the id given to `Gateway.add_call`.
        decoder: its `Decoder` (stats: ``frames_decided``; ``frames_out`` drawn by the renderer;
            ``render_skipped`` sent out as the last picture).
        peer: its `ReceivingPeer` (``done``, ``error``).
    """

    def __init__(self, call_id: str, decoder: Decoder, peer: ReceivingPeer) -> None:
        self.id, self.decoder, self.peer = call_id, decoder, peer

    def video_track(self) -> ReceivedVideoTrack:
        """A new aiortc video track of this caller (rgb24 256x256, 25 fps), id ``"<id>-video"``; it ends after
        the call's last frame. One per viewer connection (a track is read by one sender)."""
        return self.peer.video_track(f"{self.id}-video")

    def audio_track(self) -> ReceivedAudioTrack:
        """A new aiortc audio track of this caller's speech (s16 mono 16 kHz), id ``"<id>-audio"``."""
        return self.peer.audio_track(f"{self.id}-audio")


class _CallJobs:
    """One call's jobs -> the gateway's source thread and BatchRenderer (a `ReceivingPeer` runner)."""

    def __init__(self, gateway: Gateway, call_id: str) -> None:
        self.gateway = gateway
        self.call_id = call_id
        self.peer: ReceivingPeer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.registered = False  # set on the source thread once the renderer has the call's first source
        self.source: tuple | None = None  # (rgb, image id) of the newest decoded source image
        self.shown: ReceivedFrame | None = None  # the last frame drawn (the renderer's thread)
        self.closed = False
        self._frames_in = self._frames_out = 0  # FrameJobs taken / handed to the peer, in order
        self._ready: dict[int, ReceivedFrame] = {}  # answered out of order (a fallback overtook a drawing)

    def bind(self, peer: ReceivingPeer) -> None:
        self.peer = peer
        self.loop = asyncio.get_running_loop()

    def put(self, job: SourceJob | FrameJob) -> None:  # on the loop, in the Decoder's order
        if isinstance(job, SourceJob):
            self.gateway._sources.submit(self._set_source, job)
            return
        seq, self._frames_in = self._frames_in, self._frames_in + 1
        if not self.registered:  # no source on the renderer yet: the picture we have, the frame's speech
            self.loop.call_soon(self._deliver, seq, repeat_frame(job, None, self.source))
            return
        deadline = job.decided_s + self.gateway.render_budget_s
        try:
            future = self.gateway.renderer.submit_frame(self.call_id, job, deadline, self.peer.decoder.first_kp)
        except (ValueError, RuntimeError) as exc:  # refused, or the renderer closed: the speech still plays
            logger.warning("%s: frame %d not drawn: %s", self.call_id, job.index, exc)
            self.loop.call_soon(self._deliver, seq, repeat_frame(job, self.shown, self.source))
            return
        future.add_done_callback(functools.partial(self._drawn, seq, job))

    def _drawn(self, seq: int, job: FrameJob, future: Future) -> None:  # the renderer's thread, call's order
        if self.closed:
            return
        frame = None
        if future.cancelled() or future.exception() is not None:
            if not future.cancelled():
                logger.warning("%s: frame %d failed: %s", self.call_id, job.index, future.exception())
        elif not future.result().repeated:
            frame = self.shown = future.result()
        if frame is None:  # not drawn: the last picture drawn (before the first: the source image), its speech
            frame = repeat_frame(job, self.shown, self.source)
        try:
            self.loop.call_soon_threadsafe(self._deliver, seq, frame)
        except RuntimeError:  # the loop closed
            pass

    def _deliver(self, seq: int, frame: ReceivedFrame) -> None:  # on the loop: to the peer in the Decoder's order
        self._ready[seq] = frame
        while not self.closed and self._frames_out in self._ready:
            frame = self._ready.pop(self._frames_out)
            self._frames_out += 1
            if not frame.repeated:
                self.peer.decoder.stats.frames_out += 1
            self.peer._deliver(frame)

    def _set_source(self, job: SourceJob) -> None:  # the gateway's source thread
        if self.closed:
            return
        try:
            rgb = decode_source_image(job.data, image_format=job.image_format)
        except ValueError as exc:  # as Renderer.set_source: dropped, asked for again, the previous one stays
            logger.warning("%s: source image %d dropped: %s", self.call_id, job.image_id,
                           printable_text(str(exc), 160))
            self._threadsafe(self._source_failed)
            self.peer.deliver_threadsafe(None)
            return
        try:
            self.source = (rgb, job.image_id)
            source5 = self.gateway.priors(rgb)
            self.gateway.renderer.register(self.call_id, source5, source_id=job.image_id, replace=True,
                                           relative_motion=self.peer.decoder.config.relative_motion)
        except Exception as exc:  # noqa: BLE001 - this call ends with it, the gateway goes on
            if not self.closed:
                logger.exception("%s: source image %d failed", self.call_id, job.image_id)
                self.peer.fail_threadsafe(exc)
            return
        if self.closed:  # closed while registering: forget it again
            self.gateway.renderer.close_call(self.call_id)
            return
        self.registered = True
        self.peer.deliver_threadsafe(None)

    def _source_failed(self) -> None:  # on the loop
        self.peer.decoder.stats.dropped_malformed += 1
        control = self.peer.control
        if control is not None and control.readyState == "open":
            control.send(encode_refresh(Refresh(want_key=False, want_source=True)))

    def _threadsafe(self, fn) -> None:
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:
            pass

    def close(self) -> None:  # ReceivingPeer.close, on the loop
        self.closed = True
        self.gateway.renderer.close_call(self.call_id)


class Gateway:
    """Many callers, one `BatchRenderer` (module doc).

    Args:
        renderer: the shared renderer (default: ``BatchRenderer(skip_late=True)``, closed with the gateway;
            one passed in is the caller's to close and should skip late frames too).
        model: the callers' model (default: the shipped one; the renderer must draw with the same).
        decoder_config: every caller's Decoder settings (default: realtime).
        render_budget_s: a frame's deadline on the renderer is the time it was decided plus this.
    """

    def __init__(self, renderer: BatchRenderer | None = None, *, model: CallModel | None = None,
                 decoder_config: DecoderConfig | None = None, render_budget_s: float = 0.1) -> None:
        self._owns_renderer = renderer is None
        self.renderer = renderer if renderer is not None else BatchRenderer(skip_late=True)
        self.model = model or load_call_model()
        self.decoder_config = decoder_config or DecoderConfig(realtime=True)
        self.render_budget_s = float(render_budget_s)
        self.calls: dict[str, GatewayCall] = {}  # the current callers, in arrival order
        self._ids = itertools.count(1)
        self._sources = ThreadPoolExecutor(1, "avfr-gateway-sources")
        self.priors = SourcePriors()  # mediapipe: used and closed on the source thread only (not thread-safe)
        self._closed = False

    def add_call(self, pc, call_id: str | None = None) -> GatewayCall:
        """A new caller on the answering RTCPeerConnection `pc` (on the event loop; before the offer is
        applied, so its data channels are seen). Await `run_call` with it.

        Raises:
            ValueError: the id is taken. RuntimeError: the gateway is closed.
        """
        if self._closed:
            raise RuntimeError("the gateway is closed")
        call_id = call_id or f"caller-{next(self._ids)}"
        if call_id in self.calls:
            raise ValueError(f"call {call_id!r} exists")
        decoder = Decoder(self.decoder_config, self.model, render=False)
        peer = ReceivingPeer(decoder, pc, runner=_CallJobs(self, call_id))
        call = GatewayCall(call_id, decoder, peer)
        self.calls[call_id] = call
        return call

    async def run_call(self, call: GatewayCall, poll_s: float = 0.25) -> None:
        """Until the call is over: its last frame delivered (the caller hung up or ended its stream), the caller
        refused (its Hello: one Error went back), timed out (`DecoderConfig`'s silence / source timeouts) or
        failed. Never raises: the outcome is logged (a warning for the last three); the call is then removed
        (`end_call`) and its tracks end after their last frame."""
        try:
            while not call.peer.done.is_set() and not call.decoder.refused:
                try:
                    await asyncio.wait_for(call.peer.done.wait(), poll_s)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
            if call.decoder.refused:
                logger.warning("%s refused: %s", call.id, call.decoder.refused)
            else:
                await call.peer.wait()
                s = call.decoder.stats
                logger.info("%s ended: %d frames, %d drawn, %d repeated", call.id, s.frames_decided, s.frames_out,
                            s.render_skipped)
        except CallTimeoutError as exc:
            logger.warning("%s timed out: %s", call.id, exc)
        except Exception as exc:  # noqa: BLE001 - one caller's failure never stops the gateway
            logger.warning("%s failed: %s", call.id, printable_text(str(exc), 200))
        finally:
            self.end_call(call)

    def end_call(self, call: GatewayCall) -> None:
        """Remove a call (idempotent): its jobs are dropped, its source freed, its tracks end after the frames
        they hold (the peer connection is the caller's to close)."""
        if self.calls.get(call.id) is call:
            del self.calls[call.id]
        call.peer.close()
        call.peer.end_tracks()
        call.decoder.close()

    def close(self) -> None:
        """End every call, stop the source thread, close the renderer if it is the gateway's."""
        if self._closed:
            return
        self._closed = True
        for call in list(self.calls.values()):
            self.end_call(call)
        self._sources.submit(self.priors.close)
        self._sources.shutdown(wait=True, cancel_futures=False)
        if self._owns_renderer:
            self.renderer.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
