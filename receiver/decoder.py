"""`Decoder`: the answering peer as a library, wire messages in -> frames + PCM out (no networking).

Two halves, so that networking never waits for the generator:

- `receive(channel, data, now_s)` (cheap, on the network thread): parses and checks every message, keeps
  the jitter buffer (`avfr.receiver.playout`), decodes Opus (`avfr.receiver.speech`), decides which frames
  are ready and queues `SourceJob` / `FrameJob`s (keypoints after concealment + the mel window of the
  decoded speech + the frame's 40 ms of PCM).
- `run_job(job)` (expensive, on one worker thread): mediapipe on a new source image, the receiver graph
  (onnxruntime) for each frame -> `ReceivedFrame`.

`push()` does both in one call (the simple library API). The data types live in `avfr.receiver.config`;
`avfr.receiver.playout` says when a frame is decided and when a packet is declared lost.

Concealment: a lost keypoint frame holds the previous keypoints, and the job says for how many frames they
have been held (`FrameJob.held_frames`: models trained with held keypoints take it as an input and let the
speech carry the mouth meanwhile); a delta whose reference is lost is
concealed by `KeypointDecoder` (flagged inexact) and a Refresh(want_key) goes back; lost audio is
concealed by `OpusDecoder` (repeat with fade). Nothing a peer sends can raise out of `receive`.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from avfr.codec.runtime import CallModel, OpusDecoder, load_call_model, source_image_size
from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    Capabilities,
    ErrorCode,
    Hello,
    KeypointDecoder,
    KeypointsKey,
    ModelInfo,
    ProtocolError,
    Refresh,
    Session,
    SourceAssembler,
    SourceChunk,
    decode_audio,
    decode_keypoints,
    decode_message,
    encode_error,
    encode_refresh,
    encode_stats,
    error_from_exception,
    peek_type,
    printable_text,
    validate_hello,
)
from avfr.proto.framing import MessageType
from avfr.receiver.config import DecoderConfig, DecoderStats, FrameJob, ReceivedFrame, SourceJob
from avfr.receiver.liveness import Liveness
from avfr.receiver.playout import JitterBuffer
from avfr.receiver.rendering import Renderer
from avfr.receiver.speech import SpeechTimeline

__all__ = ["Decoder"]

logger = logging.getLogger(__name__)

MAX_PENDING_MESSAGES = 512  # media held before the Hello / start anchor


class Decoder:
    """Wire messages in, frames + PCM out.

    Args:
        config: receiver settings.
        model: the model (default: the shipped one).
        render: False builds no generator (run_job is then unavailable; for tests of the jitter buffer).
    """

    def __init__(self, config: DecoderConfig | None = None, model: CallModel | None = None,
                 render: bool = True) -> None:
        self.config = config or DecoderConfig()
        self.model = model or load_call_model()
        man = self.model.manifest
        self.capabilities = Capabilities(
            models=(ModelInfo(self.model.model_id, self.model.weights_sha256, man.num_kp),),
            audio_sample_rates_hz=(16_000,), audio_frame_ms=(20,),
        )
        self.hello: Hello | None = None
        self.session: Session | None = None
        self.refused: str = ""
        self._kp_decoder: KeypointDecoder | None = None
        self._speech: SpeechTimeline | None = None  # from the Hello on
        self._assembler = SourceAssembler()
        self._source_id = 0
        self._source_ready = False
        self._pending: list[tuple[str, bytes, float]] = []  # media before the Hello / anchor
        self._last_kp: tuple[np.ndarray, np.ndarray] | None = None
        self._held = 0  # frames since the last decoded keypoints
        self._first_kp: tuple[np.ndarray, np.ndarray] | None = None
        self._last_key_request = -10**9
        self._closed = False
        self._jobs: list[SourceJob | FrameJob] = []
        self._replies: list[bytes] = []
        self.stats = DecoderStats()
        self._renderer = Renderer(self.model, self.config, self.stats) if render else None
        self._buffer = JitterBuffer(self.config, self.stats)
        self._liveness = Liveness(self.config)
        self.arrival_s: dict[int, float] = {}  # frame index -> perf_counter at arrival (config.timing)

    # --- properties ------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every frame up to the end anchor was decided (or the call closed before it began)."""
        if self._buffer.anchor is None:
            return self._closed
        return self._buffer.ended

    @property
    def frames_decided(self) -> int:
        return self._buffer.next_frame

    @property
    def first_kp(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The stream's first decoded (kp, jac) (None before it): what relative motion is measured from."""
        return self._first_kp

    @property
    def delay_s(self) -> float:
        """Current adaptive playout delay (realtime mode)."""
        return self._buffer.delay_s

    def take_jobs(self) -> list[SourceJob | FrameJob]:
        """Jobs queued since the last call, in order (run them in this order on one thread)."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def take_replies(self) -> list[bytes]:
        """Messages for the sender's control channel (Error, Refresh, Stats) queued since the last call."""
        out, self._replies = self._replies, []
        failures = self._renderer.failures if self._renderer is not None else ()
        while failures:  # source images the worker dropped: counted here, on the thread that owns the stats
            out.append(failures.popleft())
            self.stats.dropped_malformed += 1
        return out

    # --- input -------------------------------------------------------------------------------------------

    def receive(self, channel: str, data: bytes, now_s: float | None = None) -> None:
        """Take one data-channel message (never raises on what a peer sends).

        Args:
            channel: the label it came on (CONTROL_CHANNEL_LABEL or MEDIA_CHANNEL_LABEL).
            data: the message bytes.
            now_s: arrival time (time.monotonic() when None).
        """
        now_s = time.monotonic() if now_s is None else now_s
        self._liveness.message(now_s)
        if self.refused:
            self.stats.refused_messages += 1  # the call was refused: ignore that peer (one ERROR was sent)
            return
        try:
            self._receive(channel, bytes(data), now_s)
        except ProtocolError as exc:
            self.stats.dropped_malformed += 1
            logger.debug("dropped a malformed message on %s: %s", channel, exc)
            if self.session is None and channel == CONTROL_CHANNEL_LABEL:
                self._replies.append(encode_error(error_from_exception(exc)))
        self._advance(now_s)

    def tick(self, now_s: float | None = None) -> None:
        """Realtime mode: decide frames whose playout deadline passed (call every few ms)."""
        self._advance(time.monotonic() if now_s is None else now_s)

    def connected(self, now_s: float | None = None) -> None:
        """The call is up (a data channel opened): from now on, silence counts (`check_alive`)."""
        self._liveness.up(time.monotonic() if now_s is None else now_s)

    def check_alive(self, now_s: float | None = None) -> None:
        """Call every so often: raises `CallTimeoutError` once the sender stopped (no source image in time, or
        silence on both channels; `avfr.receiver.liveness`). Never raises once the stream ended or was refused."""
        over = bool(self.refused) or (self._buffer.ended and self._source_ready)
        self._liveness.check(time.monotonic() if now_s is None else now_s, has_source=self._source_ready,
                             closed=self._closed, over=over)

    def finish(self) -> None:
        """The call ended: decide every frame still open (missing data is concealed)."""
        self._closed = True
        if self._buffer.anchor is None:
            return
        self._buffer.close()
        self._advance(math.inf)

    def _receive(self, channel: str, data: bytes, now_s: float) -> None:
        msg_type = peek_type(data)
        is_kp = msg_type in (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA)
        if msg_type == MessageType.AUDIO or (is_kp and channel != CONTROL_CHANNEL_LABEL):
            if self.session is None or self._buffer.anchor is None:
                if len(self._pending) >= MAX_PENDING_MESSAGES:
                    raise ProtocolError("media before the Hello / stream start: buffer full",
                                        ErrorCode.UNEXPECTED_MESSAGE)
                self._pending.append((channel, data, now_s))
                return
            self._media(data, msg_type, now_s)
            return
        if is_kp:  # start / end anchor on the reliable channel
            if self.session is None:
                raise ProtocolError("keypoints before the Hello", ErrorCode.UNEXPECTED_MESSAGE)
            self._anchor_message(data, now_s)
            return
        msg = decode_message(data, self.session)
        if isinstance(msg, Hello):
            self._hello(msg, now_s)
        elif isinstance(msg, SourceChunk):
            self._source_chunk(msg, now_s)
        else:  # Error, Refresh, Stats: nothing to do for a receive-only peer
            logger.debug("control message ignored: %s", msg)

    def _hello(self, hello: Hello, now_s: float) -> None:
        if self.session is not None:
            if hello == self.hello:
                self.stats.duplicate_hellos += 1
            else:
                self.stats.refused_messages += 1
                logger.warning("a second, different Hello mid-call was ignored")
            return
        error = validate_hello(hello, self.capabilities)
        if error is not None:
            self.refused = f"{error.code.name}: {printable_text(error.text)}"
            logger.error("refused the call: %s", self.refused)
            self._replies.append(encode_error(error))
            return
        self.hello = hello
        self.session = Session.from_hello(hello)
        self._kp_decoder = KeypointDecoder(self.session)
        self._speech = SpeechTimeline(OpusDecoder(hello.audio.bitrate_bps), self.session.causal_window)
        self._liveness.hello(now_s)

    def _source_chunk(self, chunk: SourceChunk, now_s: float) -> None:
        self.stats.source_bytes += len(chunk.payload)
        image = self._assembler.push(chunk, now_s)
        if image is None:
            return
        try:
            source_image_size(image.data, image.format)  # format and size from the header; nothing decoded here
        except ValueError as exc:
            self._replies.append(encode_refresh(Refresh(want_key=False, want_source=True)))
            raise ProtocolError(f"source image {image.image_id}: {exc}") from exc
        self._source_id = image.image_id
        self._source_ready = True
        self.stats.sources += 1
        self._jobs.append(SourceJob(image.image_id, image.data, image.format))

    def _anchor_message(self, data: bytes, now_s: float) -> None:
        packet = decode_keypoints(data, self.session)
        if not isinstance(packet, KeypointsKey):
            raise ProtocolError("only KEY packets anchor the stream", ErrorCode.UNEXPECTED_MESSAGE)
        if self._buffer.anchor is None:
            self._buffer.start(packet.seq, packet.ts_90k, self.session)
            pending, self._pending = self._pending, []
            self._media(data, MessageType.KEYPOINTS_KEY, now_s)
            for channel, raw, t in pending:
                try:
                    self._media(raw, peek_type(raw), t)
                except ProtocolError as exc:
                    self.stats.dropped_malformed += 1
                    logger.debug("dropped a malformed message on %s: %s", channel, exc)
            return
        if self._buffer.end_at(packet.seq):  # the end anchor; its frame is still open
            self._media(data, MessageType.KEYPOINTS_KEY, now_s)

    def _media(self, data: bytes, msg_type: MessageType, now_s: float) -> None:
        if msg_type == MessageType.AUDIO:
            self.stats.audio_received += 1
            if self._buffer.put_audio(decode_audio(data), now_s):
                self.stats.audio_bytes += len(data)
            return
        self.stats.received += 1
        packet = decode_keypoints(data, self.session, self._buffer.expected_seq())
        index = self._buffer.put_keypoints(packet, now_s)
        if index is not None:
            self.stats.keypoint_bytes += len(data)
            if self.config.timing:
                self.arrival_s[index] = time.perf_counter()

    # --- decisions ------------------------------------------------------------------------------------

    def _advance(self, now_s: float) -> None:
        if self.session is None or self._buffer.anchor is None:
            return
        while self._source_ready:
            due = self._buffer.due(now_s)
            if due is None:
                break
            filled = self._speech.fill(self._buffer, due.need_samples, due.ended, due.late)
            self.stats.audio_concealed = self._speech.concealed
            if not filled:
                break
            self._decide(due.index, due.have_kp)

    def _decide(self, n: int, have_kp: bool) -> None:
        decoded = None
        if have_kp:
            try:
                decoded = self._kp_decoder.decode(self._buffer.pop_keypoints(n))
            except ProtocolError as exc:
                self.stats.dropped_malformed += 1
                logger.debug("frame %d: %s", n, exc)
        else:
            self._buffer.lost(n)
        concealed = decoded is None or not decoded.exact
        self._held = 0 if decoded is not None else self._held + 1
        if decoded is not None:
            self._last_kp = (decoded.kp, decoded.jac)
            if self._first_kp is None:
                self._first_kp = self._last_kp
        if concealed:
            self.stats.concealed += 1
        self.stats.dropped_broken = self._kp_decoder.broken
        if self._kp_decoder.needs_key or not have_kp:
            if n - self._last_key_request >= self.config.refresh_interval_frames:
                self._last_key_request = n
                self.stats.key_requests += 1
                self._replies.append(encode_refresh(Refresh(want_key=True)))
        mel, pcm = self._speech.take_frame(n)
        kp, jac = self._last_kp if self._last_kp is not None else (None, None)
        self._jobs.append(FrameJob(n, self._buffer.ts_90k(n), kp, jac, mel, pcm, concealed, time.perf_counter(),
                                   self._held if self._last_kp is not None else 0))
        self._buffer.decided(n)
        self.stats.frames_decided += 1
        interval = self.config.stats_interval_frames
        if interval and self._buffer.next_frame % interval == 0:
            self._replies.append(encode_stats(self.stats.to_message()))

    # --- rendering (worker thread) -------------------------------------------------------------------

    def run_job(self, job: SourceJob | FrameJob) -> ReceivedFrame | None:
        """Run one job: a SourceJob sets the source (returns None), a FrameJob renders a frame.

        Raises:
            RuntimeError: built with render=False, or closed.
        """
        if self._renderer is None:
            raise RuntimeError("this Decoder was built with render=False, or closed")
        if isinstance(job, SourceJob):
            self._renderer.set_source(job)
            return None
        return self._renderer.frame(job, self._first_kp)

    @property
    def source_rgb(self) -> np.ndarray | None:
        """uint8 (256, 256, 3): the source image the worker set last (None before the first, or without render)."""
        return None if self._renderer is None else self._renderer.source_rgb

    def push(self, channel: str, data: bytes, now_s: float | None = None) -> list[ReceivedFrame]:
        """`receive` then run the queued jobs on this thread; returns the frames rendered."""
        self.receive(channel, data, now_s)
        return self.drain()

    def close(self) -> None:
        """Release mediapipe and the generator once no run_job runs (idempotent; `with Decoder() as d:` too)."""
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drain(self) -> list[ReceivedFrame]:
        """Run every queued job on this thread; returns the frames rendered."""
        frames = []
        for job in self.take_jobs():
            frame = self.run_job(job)
            if frame is not None:
                frames.append(frame)
        return frames
