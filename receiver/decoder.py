"""`Decoder`: the answering peer as a library, wire messages in -> frames + PCM out (no networking).

Two halves, so that networking never waits for the generator:

- `receive(channel, data, now_s)` (cheap, on the network thread): parses and checks every message, keeps
  the jitter buffer, decodes Opus, decides which frames are ready and queues `SourceJob` / `FrameJob`s
  (keypoints after concealment + the mel window of the decoded speech + the frame's 40 ms of PCM).
- `run_job(job)` (expensive, on one worker thread): mediapipe on a new source image, the receiver graph
  (onnxruntime) for each frame -> `ReceivedFrame`.

`push()` does both in one call (the simple library API).

Jitter buffer. Media is indexed on the media clock: keypoint frame n has seq ``seq0 + n`` and ts
``ts0 + 3600 n``; audio packet a has ts ``ts0 + 1800 a``; (seq0, ts0) come from the stream's start anchor
(the first KEY packet, which the sender also sends on the reliable channel). Frame n is decided when its
keypoint packet is there or declared lost, and its audio (up to the end of its mel window and of its own
40 ms) is decoded or declared lost. A packet is declared lost when packets `reorder_frames` frames
(`reorder_audio_packets` packets) newer arrived, when the end anchor arrived, or, with `realtime=True`,
when its playout deadline passed: ``base + media time + delay``, where base is the earliest arrival
relative to media time and the delay adapts to the measured interarrival jitter (RFC 3550 estimate) and
to late packets: ``clip(min_delay + 3 jitter + late, min_delay, max_delay)``, where each late packet adds
20 ms to ``late`` and every decided frame takes 0.5 ms off again. Without `realtime` the decisions depend only on the
order in which messages arrive, so a recorded call decodes offline to the same frames.

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
from dataclasses import dataclass, field

import numpy as np

from avfr.codec.data import SAMPLE_RATE, SAMPLES_PER_FRAME, log_mel_window, window_bounds
from avfr.codec.runtime import OPUS_FRAME_SAMPLES, CallModel, OpusDecoder, decode_source_image, load_call_model
from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    Capabilities,
    ErrorCode,
    Hello,
    KeypointDecoder,
    KeypointsDelta,
    KeypointsKey,
    ModelInfo,
    ProtocolError,
    Refresh,
    Session,
    SourceAssembler,
    SourceChunk,
    Stats,
    decode_audio,
    decode_keypoints,
    decode_message,
    encode_error,
    encode_refresh,
    encode_stats,
    error_from_exception,
    peek_type,
    seq_diff,
    validate_hello,
)
from avfr.proto.framing import MessageType

__all__ = ["DecoderConfig", "DecoderStats", "SourceJob", "FrameJob", "ReceivedFrame", "Decoder"]

logger = logging.getLogger(__name__)

TS_STEP_AUDIO_90K = 1800
MAX_PENDING_MESSAGES = 512  # media held before the Hello / start anchor
U32 = 1 << 32
LATE_STEP_S = 0.02  # realtime playout delay added per late packet
LATE_DECAY_S = 0.0005  # ... and taken off per frame decided (20 ms back in 1.6 s)


def _ts_diff(a: int, b: int) -> int:
    """a - b of two uint32 timestamps, in [-2**31, 2**31)."""
    return ((a - b + (1 << 31)) % U32) - (1 << 31)


@dataclass(frozen=True)
class DecoderConfig:
    """Receiver settings.

    Attributes:
        threads: onnxruntime intra-op threads of the receiver graphs.
        reorder_frames: a missing keypoint packet is lost once a packet this many frames newer arrived.
        reorder_audio_packets: the same for audio packets (20 ms each).
        realtime: also declare packets lost at their playout deadline (wall clock; see module doc).
        min_delay_ms, max_delay_ms: bounds of the adaptive playout delay (realtime only).
        refresh_interval_frames: at most one Refresh(want_key) per this many frames.
        stats_interval_frames: a Stats message to the sender every this many frames (0: never).
        relative_motion: drive the source with keypoint motion relative to the first frame (cross-identity).
        max_buffer_frames: packets further ahead than this are refused (bounded memory).
        timing: keep the perf_counter arrival time of every keypoint packet in `arrival_s` (benchmarks).
    """

    threads: int = 1
    reorder_frames: int = 3
    reorder_audio_packets: int = 6
    realtime: bool = False
    min_delay_ms: float = 40.0
    max_delay_ms: float = 400.0
    refresh_interval_frames: int = 5
    stats_interval_frames: int = 25
    relative_motion: bool = False
    max_buffer_frames: int = 250
    timing: bool = False


@dataclass
class DecoderStats:
    """Counters of one incoming call (the first nine are what `Stats` reports to the sender)."""

    received: int = 0
    dropped_malformed: int = 0
    dropped_late: int = 0
    dropped_broken: int = 0
    concealed: int = 0
    audio_received: int = 0
    audio_concealed: int = 0
    jitter_ms: float = 0.0
    delay_ms: float = 0.0
    lost: int = 0  # keypoint frames whose packet never came in time
    duplicates: int = 0
    duplicate_hellos: int = 0
    refused_messages: int = 0  # valid messages at the wrong time
    keypoint_bytes: int = 0
    audio_bytes: int = 0
    source_bytes: int = 0
    sources: int = 0
    key_requests: int = 0
    frames_decided: int = 0
    frames_out: int = 0
    render_skipped: int = 0  # decided frames not rendered because the generator fell behind (realtime)
    generate_ms: float = 0.0  # total time in the receiver graph

    def to_message(self) -> Stats:
        """The proto Stats message of these counters (saturated to uint32)."""
        def u32(v: int) -> int:
            return min(int(v), U32 - 1)

        return Stats(u32(self.received), u32(self.dropped_malformed), u32(self.dropped_late),
                     u32(self.dropped_broken), u32(self.concealed), u32(self.audio_received),
                     u32(self.audio_concealed), float(min(self.jitter_ms, 1e6)), float(min(self.delay_ms, 1e6)))


@dataclass(frozen=True)
class SourceJob:
    """Set a new source image (uint8 (256, 256, 3) RGB) before the frames that follow."""

    image_id: int
    rgb: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FrameJob:
    """Everything the generator needs for one frame.

    Attributes:
        index: frame number from the stream start (25 fps).
        ts_90k: media timestamp.
        kp: float32 (K, 2) or None (no keypoints yet: draw the source pose).
        jac: float32 (K, 2, 2) or None.
        mel: float32 (80, 19) log-mel window of the decoded speech.
        pcm: float32 (640,) decoded speech of this frame (16 kHz).
        concealed: the keypoints are not this frame's own exact ones.
        decided_s: time.perf_counter() when the frame was decided (for latency breakdowns).
        held_frames: for how many frames ``kp`` have been held in place of lost ones (0: decoded for this
            frame, exactly or as a concealed delta).
    """

    index: int
    ts_90k: int
    kp: np.ndarray | None = field(repr=False)
    jac: np.ndarray | None = field(repr=False)
    mel: np.ndarray = field(repr=False)
    pcm: np.ndarray = field(repr=False)
    concealed: bool
    decided_s: float
    held_frames: int = 0


@dataclass(frozen=True)
class ReceivedFrame:
    """One output frame: uint8 (256, 256, 3) RGB and its float32 (640,) 16 kHz PCM."""

    index: int
    ts_90k: int
    rgb: np.ndarray = field(repr=False)
    pcm: np.ndarray = field(repr=False)
    concealed: bool
    source_id: int
    decided_s: float
    done_s: float
    held_frames: int = 0  # for how many frames the keypoints drawn had been held (FrameJob.held_frames)


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
        self._generator = None
        if render:
            from avfr.codec.runtime import ReceiverModel

            self._generator = ReceiverModel.from_manifest(man, threads=self.config.threads)
        self._extractor = None  # mediapipe, built lazily on the worker thread
        self.hello: Hello | None = None
        self.session: Session | None = None
        self.refused: str = ""
        self._kp_decoder: KeypointDecoder | None = None
        self._opus: OpusDecoder | None = None
        self._assembler = SourceAssembler()
        self._source_id = 0
        self._source_ready = False
        self._pending: list[tuple[str, bytes, float]] = []  # media before the Hello / anchor
        self._anchor: tuple[int, int] | None = None  # seq0, ts0
        self._end_index: int | None = None
        self._kp_buf: dict[int, KeypointsKey | KeypointsDelta] = {}
        self._kp_high = -1
        self._audio_buf: dict[int, bytes] = {}
        self._audio_high = -1
        self._audio_next = 0
        self._pcm = np.zeros(0, np.float32)
        self._pcm_base = 0
        self._next_frame = 0
        self._last_kp: tuple[np.ndarray, np.ndarray] | None = None
        self._held = 0  # frames since the last decoded keypoints
        self._first_kp: tuple[np.ndarray, np.ndarray] | None = None
        self._last_key_request = -10**9
        self._base_s: float | None = None
        self._prev_transit: float | None = None
        self._jitter_s = 0.0
        self._closed = False
        self._late_delay_s = 0.0  # added after late packets, decays while none come late (realtime)
        self._jobs: list[SourceJob | FrameJob] = []
        self._replies: list[bytes] = []
        self.stats = DecoderStats()
        self.arrival_s: dict[int, float] = {}  # frame index -> perf_counter at arrival (config.timing)

    # --- properties ------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every frame up to the end anchor was decided (or the call closed before it began)."""
        if self._anchor is None:
            return self._closed
        return self._end_index is not None and self._next_frame > self._end_index

    @property
    def frames_decided(self) -> int:
        return self._next_frame

    @property
    def delay_s(self) -> float:
        """Current adaptive playout delay (realtime mode)."""
        c = self.config
        return float(np.clip(c.min_delay_ms / 1000 + 3.0 * self._jitter_s + self._late_delay_s,
                             c.min_delay_ms / 1000, c.max_delay_ms / 1000))

    def _late(self) -> None:
        """A packet missed its playout: count it and, in realtime mode, play out later from now on."""
        self.stats.dropped_late += 1
        if self.config.realtime:
            self._late_delay_s = min(self._late_delay_s + LATE_STEP_S, self.config.max_delay_ms / 1000)
            self.stats.delay_ms = 1000 * self.delay_s

    def take_jobs(self) -> list[SourceJob | FrameJob]:
        """Jobs queued since the last call, in order (run them in this order on one thread)."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def take_replies(self) -> list[bytes]:
        """Messages for the sender's control channel (Error, Refresh, Stats) queued since the last call."""
        out, self._replies = self._replies, []
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

    def finish(self) -> None:
        """The call ended: decide every frame still open (missing data is concealed)."""
        self._closed = True
        if self._anchor is None:
            return
        if self._end_index is None:
            self._end_index = max(self._kp_high, self._next_frame - 1)
        self._advance(math.inf)

    def _receive(self, channel: str, data: bytes, now_s: float) -> None:
        msg_type = peek_type(data)
        is_kp = msg_type in (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA)
        if msg_type == MessageType.AUDIO or (is_kp and channel != CONTROL_CHANNEL_LABEL):
            if self.session is None or self._anchor is None:
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
            self.refused = f"{error.code.name}: {error.text}"
            logger.error("refused the call: %s", self.refused)
            self._replies.append(encode_error(error))
            return
        self.hello = hello
        self.session = Session.from_hello(hello)
        self._kp_decoder = KeypointDecoder(self.session)
        self._opus = OpusDecoder(hello.audio.bitrate_bps)

    def _source_chunk(self, chunk: SourceChunk, now_s: float) -> None:
        self.stats.source_bytes += len(chunk.payload)
        image = self._assembler.push(chunk, now_s)
        if image is None:
            return
        try:
            rgb = decode_source_image(image.data)
        except ValueError as exc:
            self._replies.append(encode_refresh(Refresh(want_key=False, want_source=True)))
            raise ProtocolError(f"source image {image.image_id}: {exc}") from exc
        self._source_id = image.image_id
        self._source_ready = True
        self.stats.sources += 1
        self._jobs.append(SourceJob(image.image_id, rgb))

    def _anchor_message(self, data: bytes, now_s: float) -> None:
        packet = decode_keypoints(data, self.session)
        if not isinstance(packet, KeypointsKey):
            raise ProtocolError("only KEY packets anchor the stream", ErrorCode.UNEXPECTED_MESSAGE)
        if self._anchor is None:
            self._anchor = (packet.seq, packet.ts_90k)
            pending, self._pending = self._pending, []
            self._media(data, MessageType.KEYPOINTS_KEY, now_s)
            for channel, raw, t in pending:
                try:
                    self._media(raw, peek_type(raw), t)
                except ProtocolError as exc:
                    self.stats.dropped_malformed += 1
                    logger.debug("dropped a malformed message on %s: %s", channel, exc)
            return
        index = seq_diff(packet.seq, self._anchor[0])
        if index < 0 or index > self._next_frame + self.config.max_buffer_frames:
            raise ProtocolError(f"end anchor at frame {index} is out of range", ErrorCode.UNEXPECTED_MESSAGE)
        self._end_index = max(index, self._next_frame - 1)  # realtime playout may already be past it
        if index >= self._next_frame:
            self._media(data, MessageType.KEYPOINTS_KEY, now_s)

    def _media(self, data: bytes, msg_type: MessageType, now_s: float) -> None:
        seq0, ts0 = self._anchor
        if msg_type == MessageType.AUDIO:
            self.stats.audio_received += 1
            audio = decode_audio(data)
            offset = _ts_diff(audio.ts_90k, ts0)
            if offset % TS_STEP_AUDIO_90K:
                raise ProtocolError(f"audio ts {audio.ts_90k} is off the 20 ms grid")
            index = offset // TS_STEP_AUDIO_90K
            if index < self._audio_next:
                self._late()
                return
            if index > self._audio_next + 5 * self.config.max_buffer_frames:
                raise ProtocolError(f"audio packet {index} is too far ahead")
            if index in self._audio_buf:
                self.stats.duplicates += 1
                return
            self.stats.audio_bytes += len(data)
            self._audio_buf[index] = audio.payload
            self._audio_high = max(self._audio_high, index)
            self._arrival(now_s, index * OPUS_FRAME_SAMPLES / SAMPLE_RATE)
            return
        self.stats.received += 1
        packet = decode_keypoints(data, self.session)
        index = seq_diff(packet.seq, seq0)
        if index < self._next_frame:
            if index >= 0 and self._end_index is not None and index == self._end_index:
                return  # the end anchor's copy of a frame already shown
            self._late()
            return
        if index > self._next_frame + self.config.max_buffer_frames:
            raise ProtocolError(f"keypoint packet {index} frames ahead is refused")
        if index in self._kp_buf:
            self.stats.duplicates += 1
            return
        self.stats.keypoint_bytes += len(data)
        if self.config.timing:
            self.arrival_s[index] = time.perf_counter()
        self._kp_buf[index] = packet
        self._kp_high = max(self._kp_high, index)
        self._arrival(now_s, index / self.session.fps)

    def _arrival(self, now_s: float, media_s: float) -> None:
        """Update the playout base and the interarrival jitter (RFC 3550)."""
        if not math.isfinite(now_s):
            return
        transit = now_s - media_s
        if self._base_s is None or transit < self._base_s:
            self._base_s = transit
        if self._prev_transit is not None:
            self._jitter_s += (abs(transit - self._prev_transit) - self._jitter_s) / 16.0
        self._prev_transit = transit
        self.stats.jitter_ms = 1000 * self._jitter_s
        self.stats.delay_ms = 1000 * self.delay_s

    # --- decisions ------------------------------------------------------------------------------------

    def _needed_samples(self, n: int) -> int:
        stop = window_bounds(n, self.session.causal_window)[1]
        return max(stop, SAMPLES_PER_FRAME * (n + 1))

    def _deadline_passed(self, n: int, now_s: float) -> bool:
        if now_s == math.inf:
            return True
        if not self.config.realtime or self._base_s is None:
            return False
        return now_s >= self._base_s + self._needed_samples(n) / SAMPLE_RATE + 0.02 + self.delay_s

    def _advance(self, now_s: float) -> None:
        if self.session is None or self._anchor is None:
            return
        while self._source_ready:
            n = self._next_frame
            if self._end_index is not None and n > self._end_index:
                break
            forced = self._deadline_passed(n, now_s)
            have_kp = n in self._kp_buf
            lost = not have_kp and (self._kp_high >= n + self.config.reorder_frames
                                    or self._end_index is not None or forced)
            if not (have_kp or lost):
                break
            if not self._fill_audio(self._needed_samples(n), forced or self._end_index is not None):
                break
            self._decide(n, have_kp)

    def _fill_audio(self, need_samples: int, ended: bool) -> bool:
        """Decode audio in packet order until the timeline holds `need_samples`; False: wait for packets."""
        while self._pcm_base + len(self._pcm) < need_samples:
            a = self._audio_next
            if a in self._audio_buf:
                self._opus.decode(self._audio_buf.pop(a))
            elif self._audio_high >= a + self.config.reorder_audio_packets or ended:
                if a <= self._audio_high or not ended:
                    self._opus.conceal()
                    self.stats.audio_concealed += 1
                else:  # past the end of the stream: silence
                    self._opus._append(np.zeros(OPUS_FRAME_SAMPLES, np.float32))
            else:
                return False
            self._audio_next += 1
            new = self._opus.take()
            if len(new):
                self._pcm = np.concatenate([self._pcm, new])
        return True

    def _decide(self, n: int, have_kp: bool) -> None:
        decoded = None
        if have_kp:
            try:
                decoded = self._kp_decoder.decode(self._kp_buf.pop(n))
            except ProtocolError as exc:
                self.stats.dropped_malformed += 1
                logger.debug("frame %d: %s", n, exc)
        else:
            self.stats.lost += 1
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
        for stale in [i for i in self._kp_buf if i <= n]:
            del self._kp_buf[stale]
        causal = self.session.causal_window
        start = SAMPLES_PER_FRAME * n
        rel = self._pcm[max(0, start - self._pcm_base - 3200) :]  # keep what later windows need
        rel_base = self._pcm_base + max(0, start - self._pcm_base - 3200)
        window = _window(self._pcm, self._pcm_base, n, causal)
        mel = log_mel_window(window)
        pcm = _slice(self._pcm, self._pcm_base, start, start + SAMPLES_PER_FRAME)
        self._pcm, self._pcm_base = rel, rel_base
        kp, jac = self._last_kp if self._last_kp is not None else (None, None)
        ts = (self._anchor[1] + n * self.session.ts_step_90k) % U32
        self._jobs.append(FrameJob(n, ts, kp, jac, mel, pcm, concealed, time.perf_counter(),
                                   self._held if self._last_kp is not None else 0))
        self._next_frame = n + 1
        self._late_delay_s = max(0.0, self._late_delay_s - LATE_DECAY_S)
        self.stats.frames_decided += 1
        interval = self.config.stats_interval_frames
        if interval and self._next_frame % interval == 0:
            self._replies.append(encode_stats(self.stats.to_message()))

    # --- rendering (worker thread) -------------------------------------------------------------------

    def run_job(self, job: SourceJob | FrameJob) -> ReceivedFrame | None:
        """Run one job: a SourceJob sets the source (returns None), a FrameJob renders a frame.

        Raises:
            RuntimeError: built with render=False.
        """
        if self._generator is None:
            raise RuntimeError("this Decoder was built with render=False")
        if isinstance(job, SourceJob):
            if self._extractor is None:
                from avfr.codec.data import PriorExtractor

                self._extractor = PriorExtractor()
            from avfr.codec.runtime import source_input

            source5, _ = source_input(job.rgb, self._extractor)
            self._generator.set_source(source5)
            self._rendered_source = job.image_id
            return None
        t0 = time.perf_counter()
        kp, jac = job.kp, job.jac
        if kp is None:
            kp, jac = self._generator.source_keypoints
        elif self.config.relative_motion and self._first_kp is not None:
            from avfr.codec.runtime import relative_motion

            kp, jac = relative_motion(kp, jac, *self._first_kp, *self._generator.source_keypoints)
        rgb = self._generator.frame(kp, jac, job.mel, job.held_frames)
        done = time.perf_counter()
        self.stats.generate_ms += 1000 * (done - t0)
        self.stats.frames_out += 1
        return ReceivedFrame(job.index, job.ts_90k, rgb, job.pcm, job.concealed,
                             getattr(self, "_rendered_source", 0), job.decided_s, done, job.held_frames)

    def push(self, channel: str, data: bytes, now_s: float | None = None) -> list[ReceivedFrame]:
        """`receive` then run the queued jobs on this thread; returns the frames rendered."""
        self.receive(channel, data, now_s)
        return self.drain()

    def drain(self) -> list[ReceivedFrame]:
        """Run every queued job on this thread; returns the frames rendered."""
        frames = []
        for job in self.take_jobs():
            frame = self.run_job(job)
            if frame is not None:
                frames.append(frame)
        return frames


def _window(pcm: np.ndarray, base: int, n: int, causal: bool) -> np.ndarray:
    """The 3200-sample window of frame n from a timeline that starts at sample `base`."""
    start, stop = window_bounds(n, causal)
    return _slice(pcm, base, start, stop)


def _slice(pcm: np.ndarray, base: int, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of a timeline that starts at `base`; zeros outside it."""
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, base), min(stop, base + len(pcm))
    if hi > lo:
        out[lo - start : hi - start] = pcm[lo - base : hi - base]
    return out

