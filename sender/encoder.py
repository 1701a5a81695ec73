"""`Encoder`: the calling peer as a library, frames + PCM in -> wire messages out (no networking).

Per video frame: mediapipe priors -> keypoint graph (onnxruntime) -> quantised KEY/DELTA packet. Per 20 ms
of speech: one Opus packet. Messages go out as `OutMessage(channel, data)` for the two data channels of
proto/SPEC.md. Media timestamps: frame i is at ``ts0 + 3600 i``, audio sample n at ``ts0 + 5.625 n``.

Stream anchors (an addition on top of SPEC.md, see /work/notes/CALL_NEEDS.md): the first keypoint packet
(a KEY) is also sent on the reliable control channel, and `finish()` sends the last frame again as a KEY
packet on the control channel. A receiver thus knows exactly where the stream starts and ends, even when
the media channel loses the first or last packets; the copies have the same seq as the media packets and
are deduplicated.

No face in the frame: the sender holds the last keypoints (counts `no_face_frames`) and the call goes on.

Drift check: the sender runs the receiver graph on what it sent (the dequantised keypoints the far end
decodes, the source image it holds, the mel window of the Opus-decoded speech it hears) every
`drift_check_interval_frames` frames, for the frame DRIFT_LAG_FRAMES back (once that frame's audio window
is coded). Without loss this is bit-exactly the far end's picture (`last_replica`). It measures the PSNR
of that picture against the camera frame and re-sends a fresh source image (the current frame) when the
PSNR falls `drift_threshold_db` below its value right after the last source change.

Rate control (`KeypointRateController`, encoder-only: the wire format and the Hello do not change): the
bytes of the last second of keypoint packets (keys included) are summed; above 90 % of
`keypoint_budget_bps` the encoder coarsens one level (more keypoint/jacobian hysteresis, at the top level
every other frame repeats the last sent levels as a 4-byte packet), below 85 % for a whole window it
refines one level again. Keypoint hysteresis alone barely moves the rate (the jacobians take most of the
bits; 1.5 steps even cost more than 0.75 on edtalk_expr), so the levels raise the jacobian hysteresis too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from avfr.codec.data import SAMPLES_PER_FRAME, five_channel, log_mel_window, pcm_window
from avfr.codec.runtime import (
    OPUS_FRAME_SAMPLES,
    SOURCE_FORMAT,
    CallModel,
    OpusDecoder,
    OpusEncoder,
    ReceiverModel,
    SenderModel,
    decode_source_image,
    encode_source_image,
    load_call_model,
    source_input,
)
from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    Audio,
    AudioParams,
    Error,
    Hello,
    KeypointDecoder,
    KeypointEncoder,
    KeypointsKey,
    ProtocolError,
    QuantParams,
    Refresh,
    Session,
    SourceImage,
    Stats,
    decode_message,
    encode_audio,
    encode_hello,
    encode_keypoints,
    encode_source_chunk,
    quantise_keypoints,
    split_source_image,
)

__all__ = ["EncoderConfig", "EncoderStats", "OutMessage", "Encoder", "KeypointRateController", "RATE_LEVELS",
           "psnr_db"]

logger = logging.getLogger(__name__)

TS_STEP_AUDIO_90K = 1800  # 20 ms
DRIFT_LAG_FRAMES = 4  # the drift check renders the frame 160 ms back, once its whole audio window was coded
# Rate-control levels, coarser and coarser: (keypoint hysteresis, jacobian hysteresis, hold every n-th frame
# (0: none)). Level 0's keypoint hysteresis is EncoderConfig.kp_hysteresis_steps (a level never goes below
# it). Measured on the 7 dev clips' keypoints at 7/6 bits (kbit/s, fixed level): 0.75/0.5 1.93 mean,
# 2.18 edtalk_expr; 0.75/0.75 1.70, 1.97; 1.0/1.0 1.60, 1.89; holding every other frame is the last resort
# for the most expressive seconds (the 2 s peak of edtalk_expr is 2.2 kbit/s even at 1.0/1.0).
RATE_LEVELS: tuple[tuple[float, float, int], ...] = (
    (0.75, 0.5, 0), (0.75, 0.625, 0), (0.75, 0.75, 0), (1.0, 1.0, 0), (1.0, 1.0, 2))


@dataclass(frozen=True)
class EncoderConfig:
    """Sender settings (the stream's parameters travel in the Hello).

    Attributes:
        kp_bits, jac_bits, jac_abs_max: keypoint quantisation. Defaults from benchmarks/bench_quant.py on the
            trained model's keypoints of the 7 dev clips: 7/6 bits with 0.75-step keypoint hysteresis cost
            1.93 kbit/s and 1.06 dB PSNR (vs. float keypoints); the proto's 8/5 cost 2.07 kbit/s and
            2.45 dB (the jacobians need the bits, the keypoints less).
        key_interval_frames: a KEY packet at least this often.
        kp_hysteresis_steps: keypoint level hysteresis of the keypoint encoder (0.5: plain rounding; 0.75
            saves 0.07 kbit/s for 0.04 dB at 7/6 bits); the rate controller's level 0.
        keypoint_budget_bps: keypoint stream budget of the rate controller (0: off, the stream is coded
            at kp_hysteresis_steps throughout). See `KeypointRateController`.
        rate_window_packets: keypoint packets in the rate controller's sliding window (25 = 1 s).
        audio_bitrate_bps: Opus target bitrate, 6000..16000 for speech.
        causal_window: announce the causal (past-only) audio window.
        threads: onnxruntime intra-op threads per graph.
        drift_check_interval_frames: frames between drift checks (0: off).
        drift_threshold_db: PSNR drop (vs. right after the last source change) that triggers a refresh.
        min_refresh_interval_frames: at least this many frames between automatic refreshes.
        source_quality: WebP quality of the source image.
        ts0_90k: media timestamp of frame 0 (uint32).
        first_seq: seq of the first keypoint packet.
    """

    kp_bits: int = 7
    jac_bits: int = 6
    jac_abs_max: float = 4.0
    key_interval_frames: int = 100
    kp_hysteresis_steps: float = 0.75
    keypoint_budget_bps: int = 2000
    rate_window_packets: int = 25
    audio_bitrate_bps: int = 12_000
    causal_window: bool = False
    threads: int = 1
    drift_check_interval_frames: int = 25
    drift_threshold_db: float = 3.0
    min_refresh_interval_frames: int = 125
    source_quality: int = 90
    ts0_90k: int = 0
    first_seq: int = 0


@dataclass
class EncoderStats:
    """Counters of one outgoing call (bytes are message bytes, data-channel framing excluded)."""

    frames: int = 0
    no_face_frames: int = 0
    held_frames: int = 0  # frames sent as holds because the sender was behind real time
    keypoint_packets: int = 0
    keypoint_bytes: int = 0
    kp_hysteresis_steps: float = float("nan")  # rate control: hysteresis of the next packet, in steps
    jac_hysteresis_steps: float = float("nan")
    rate_level: int = 0  # rate control: index into RATE_LEVELS (0: finest)
    rate_held_frames: int = 0  # frames the rate control sent as repeats of the last levels
    keypoint_window_bps: float = 0.0  # keypoint bits of the last rate window, per second
    audio_packets: int = 0
    audio_bytes: int = 0
    source_images: int = 0
    source_bytes: int = 0
    refreshes: int = 0  # source images re-sent (drift, request or forced)
    keys_requested: int = 0
    drift_checks: int = 0
    last_drift_psnr_db: float = float("nan")
    priors_ms: float = 0.0  # total time in mediapipe
    keypoints_ms: float = 0.0  # total time in the keypoint graph
    drift_ms: float = 0.0  # total time in the replica generator
    refused: str = ""  # the peer's Error text when it refused the call


@dataclass(frozen=True)
class OutMessage:
    """One message to send: `channel` is CONTROL_CHANNEL_LABEL or MEDIA_CHANNEL_LABEL."""

    channel: str
    data: bytes = field(repr=False)


class KeypointRateController:
    """Keeps a keypoint stream under a bit budget by coarsening the keypoint encoder (no wire change).

    Per frame: `prepare(encoder, frame_number)` sets the encoder's hysteresis for the current level and
    says whether to repeat the last sent levels (a 4-byte "not moved" delta) instead of the new keypoints;
    `update(nbytes)` then records the packet's size. Over `window_packets` packets (keys included):
    rate > raise_fraction x budget -> one level coarser (at most every `raise_hold_packets` packets, so one
    change can show before the next); rate < lower_fraction x budget for a whole window since the last
    change -> one level finer.

    Args:
        budget_bps: keypoint stream budget in bit/s (0: off, level 0 throughout).
        kp_hysteresis_steps: keypoint hysteresis of level 0 (no level goes below it).
        fps: packets per second.
        window_packets: packets in the sliding window.
        levels: (kp hysteresis, jac hysteresis, hold every n-th frame or 0) per level, finest first.
        raise_fraction, lower_fraction: thresholds as fractions of the budget.
        raise_hold_packets: packets between two raises.

    Raises:
        ValueError: a negative budget, an empty window or no levels.
    """

    def __init__(self, budget_bps: int, kp_hysteresis_steps: float = 0.75, fps: int = 25,
                 window_packets: int = 25, levels: tuple[tuple[float, float, int], ...] = RATE_LEVELS,
                 raise_fraction: float = 0.9, lower_fraction: float = 0.85, raise_hold_packets: int = 3) -> None:
        if budget_bps < 0 or window_packets < 1 or not levels:
            raise ValueError(f"bad rate control: budget_bps={budget_bps}, window_packets={window_packets}, "
                             f"{len(levels)} levels")
        self.budget_bps = budget_bps
        self.fps = fps
        self.levels = ((kp_hysteresis_steps, *levels[0][1:]),
                       *((max(kp, kp_hysteresis_steps), jac, every) for kp, jac, every in levels[1:]))
        self.raise_fraction = raise_fraction
        self.lower_fraction = lower_fraction
        self.raise_hold_packets = raise_hold_packets
        self._window: deque[int] = deque(maxlen=window_packets)
        self._window_bytes = 0
        self._since_change = 0
        self.level = 0

    @property
    def window_bps(self) -> float:
        """Bits of the last `window_packets` packets, per second (fewer packets so far count as zeros)."""
        return self._window_bytes * 8 * self.fps / self._window.maxlen

    def prepare(self, encoder: KeypointEncoder, frame_number: int) -> bool:
        """Set `encoder`'s hysteresis for the current level; True: repeat the last sent levels this frame."""
        kp, jac, every = self.levels[self.level]
        encoder.kp_hysteresis_steps, encoder.jac_hysteresis_steps = kp, jac
        return every > 1 and frame_number % every != 0

    def update(self, nbytes: int) -> None:
        """Record one keypoint packet of `nbytes` bytes and adapt the level."""
        if len(self._window) == self._window.maxlen:
            self._window_bytes -= self._window[0]
        self._window.append(nbytes)
        self._window_bytes += nbytes
        self._since_change += 1
        if not self.budget_bps:
            return
        rate = self.window_bps
        if (rate > self.raise_fraction * self.budget_bps and self.level < len(self.levels) - 1
                and self._since_change >= self.raise_hold_packets):
            self.level += 1
            self._since_change = 0
        elif (rate < self.lower_fraction * self.budget_bps and self.level > 0
              and self._since_change >= self._window.maxlen):
            self.level -= 1
            self._since_change = 0


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (100 for identical images)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * np.log10(255.0**2 / mse)


class Encoder:
    """Frames and PCM in, wire messages out.

    Call `start(source_rgb)` first (Hello + source image), then `encode_frame` for each 25 fps frame and
    `encode_audio` with the speech, feed the peer's control messages to `on_control`, and `finish()` at
    hang-up.

    Args:
        config: sender settings.
        model: the model (default: the shipped one).
        extractor: a mediapipe PriorExtractor (default: built here; not thread-safe, one per Encoder).
    """

    def __init__(self, config: EncoderConfig | None = None, model: CallModel | None = None,
                 extractor: object | None = None) -> None:
        self.config = config or EncoderConfig()
        cfg = self.config
        self.model = model or load_call_model()
        man = self.model.manifest
        self.hello = Hello(
            self.model.model_id, self.model.weights_sha256, num_kp=man.num_kp, fps=25,
            quant=QuantParams(cfg.kp_bits, cfg.jac_bits, float(cfg.jac_abs_max)),
            key_interval_frames=cfg.key_interval_frames,
            audio=AudioParams(bitrate_bps=cfg.audio_bitrate_bps), causal_window=cfg.causal_window,
        )
        self.session = Session.from_hello(self.hello)
        self.keypoint_model = SenderModel(man.sender, threads=cfg.threads, expected_sha256=man.sha256["sender"])
        self._replica: ReceiverModel | None = None
        if cfg.drift_check_interval_frames > 0:
            self._replica = ReceiverModel.from_manifest(man, threads=cfg.threads)
        if extractor is None:
            from avfr.codec.data import PriorExtractor

            extractor = PriorExtractor()
        self.extractor = extractor
        self._kp_encoder = KeypointEncoder(self.session, cfg.first_seq, kp_hysteresis_steps=cfg.kp_hysteresis_steps)
        self._kp_replica = KeypointDecoder(self.session)  # what the far end decodes
        self._rate = KeypointRateController(cfg.keypoint_budget_bps, cfg.kp_hysteresis_steps,
                                            fps=self.hello.fps, window_packets=cfg.rate_window_packets)
        self._opus = OpusEncoder(cfg.audio_bitrate_bps)
        self._audio_seq = 0
        self._audio_packets = 0
        self._opus_replica = OpusDecoder(cfg.audio_bitrate_bps)  # the speech the far end hears
        self._pcm = np.zeros(0, np.float32)  # Opus-decoded speech (for the replica's mel windows)
        self._pcm_base = 0  # sample index of _pcm[0] (a multiple of 640)
        self._recent: deque[tuple[int, np.ndarray, np.ndarray, np.ndarray, bool]] = deque(maxlen=DRIFT_LAG_FRAMES + 1)
        self.last_replica: tuple[int, np.ndarray] | None = None  # (frame index, the far end's picture)
        self._image_id = 0
        self._source_rgb: np.ndarray | None = None
        self._baseline_psnr_db: float | None = None
        self._last_refresh_frame = 0
        self._last_kp: tuple[np.ndarray, np.ndarray] | None = None
        self._last_sent: tuple[int, int, np.ndarray, np.ndarray] | None = None  # seq, ts, kp, jac
        self._pending_source = False
        self._started = False
        self._finished = False
        self.stopped = False  # the peer refused the call (Error): send nothing more
        self.stats = EncoderStats()
        self._update_rate_stats()

    # --- call set-up -------------------------------------------------------------------------------

    def start(self, source_rgb: np.ndarray) -> list[OutMessage]:
        """Hello and the source image (uint8 (256, 256, 3) RGB) for the control channel."""
        if self._started:
            raise RuntimeError("Encoder.start() called twice")
        self._started = True
        return [OutMessage(CONTROL_CHANNEL_LABEL, encode_hello(self.hello)), *self._source_messages(source_rgb)]

    def _source_messages(self, rgb: np.ndarray) -> list[OutMessage]:
        data = encode_source_image(rgb, self.config.source_quality)
        self._image_id += 1
        image = SourceImage(self._image_id, SOURCE_FORMAT, data)
        out = [OutMessage(CONTROL_CHANNEL_LABEL, encode_source_chunk(c)) for c in split_source_image(image)]
        self.stats.source_images += 1
        self.stats.source_bytes += sum(len(m.data) for m in out)
        self._source_rgb = decode_source_image(data)  # what the receiver will hold
        self._baseline_psnr_db = None
        if self._replica is not None:
            source5, _ = source_input(self._source_rgb, self.extractor)
            self._replica.set_source(source5)
        return out

    def refresh_source(self, rgb: np.ndarray) -> list[OutMessage]:
        """Send a new source image now (a new image id); returns its control messages."""
        self.stats.refreshes += 1
        return self._source_messages(rgb)

    def on_control(self, data: bytes) -> None:
        """Handle a message from the peer's control channel (Refresh, Stats, Error); bad bytes are ignored."""
        try:
            msg = decode_message(data)
        except ProtocolError as exc:
            logger.debug("ignoring malformed control message: %s", exc)
            return
        if isinstance(msg, Refresh):
            if msg.want_key:
                self.stats.keys_requested += 1
                self._kp_encoder.request_key()
            if msg.want_source:
                self._pending_source = True
        elif isinstance(msg, Error):
            if not self.stopped:  # keep the first reason
                self.stopped = True
                self.stats.refused = f"{msg.code.name}: {msg.text}"
                logger.error("peer refused the call: %s", self.stats.refused)
        elif isinstance(msg, Stats):
            logger.debug("peer stats: %s", msg)

    # --- media ---------------------------------------------------------------------------------------

    def frame_ts_90k(self, index: int) -> int:
        """Media timestamp of video frame `index`."""
        return (self.config.ts0_90k + index * self.session.ts_step_90k) % (1 << 32)

    def encode_frame(self, index: int, rgb: np.ndarray) -> list[OutMessage]:
        """Encode video frame `index` (25 fps, uint8 (256, 256, 3) RGB).

        Returns:
            The keypoint packet (media channel; also the control channel for the first one) and any
            source-image chunks a refresh produced.

        Raises:
            RuntimeError: `start()` was not called.
        """
        if not self._started:
            raise RuntimeError("call Encoder.start() before encode_frame()")
        if self.stopped or self._finished:
            return []
        t0 = time.perf_counter()
        priors = self.extractor(rgb)
        t1 = time.perf_counter()
        self.stats.priors_ms += 1000 * (t1 - t0)
        if priors.face_found or self._last_kp is None:
            kp, jac = self.keypoint_model.keypoints(five_channel(rgb, priors.mesh, priors.mask))
            self.stats.keypoints_ms += 1000 * (time.perf_counter() - t1)
            if not priors.face_found:
                self.stats.no_face_frames += 1
            else:
                self._last_kp = (kp, jac)
        else:
            kp, jac = self._last_kp  # hold: no face in the frame
            self.stats.no_face_frames += 1
        out: list[OutMessage] = []
        ts = self.frame_ts_90k(index)
        if self._rate.prepare(self._kp_encoder, self.stats.frames) and self._last_sent is not None:
            kp, jac = self._last_sent[2], self._last_sent[3]  # over budget: repeat the last levels
            self.stats.rate_held_frames += 1
        packet = self._kp_encoder.packet(np.asarray(kp, np.float32), np.asarray(jac, np.float32), ts)
        data = encode_keypoints(packet, self.session)
        decoded = self._kp_replica.decode(packet)
        self._last_sent = (packet.seq, ts, decoded.kp, decoded.jac)
        out.append(OutMessage(MEDIA_CHANNEL_LABEL, data))
        if self.stats.frames == 0:
            out.append(OutMessage(CONTROL_CHANNEL_LABEL, data))  # start anchor (see module docstring)
        self.stats.frames += 1
        self._count_keypoint_packet(len(data))
        if self._replica is not None:
            self._recent.append((index, rgb, decoded.kp, decoded.jac, priors.face_found))
        if self._pending_source:
            self._pending_source = False
            out.extend(self.refresh_source(rgb if priors.face_found else self._source_rgb))
            self._last_refresh_frame = index
        elif self._drift_due(index) and len(self._recent) > DRIFT_LAG_FRAMES:
            out.extend(self._drift_check(*self._recent[0], current=rgb, current_face=priors.face_found))
        return out

    def encode_hold(self, index: int) -> list[OutMessage]:
        """Frame `index` without looking at it: the last keypoints again (a 4-byte delta).

        For a sender that fell behind real time: the stream keeps one packet per frame (seq and media clock
        stay regular) while the expensive priors + keypoint graph are skipped.
        """
        if self._last_sent is None:
            raise RuntimeError("encode_hold() needs an encoded frame before it")
        if self.stopped or self._finished:
            return []
        _, _, kp, jac = self._last_sent  # dequantised levels: they quantise back to the same levels
        self._rate.prepare(self._kp_encoder, self.stats.frames)
        packet = self._kp_encoder.packet(kp, jac, self.frame_ts_90k(index))
        data = encode_keypoints(packet, self.session)
        decoded = self._kp_replica.decode(packet)
        self._last_sent = (packet.seq, decoded.ts_90k, decoded.kp, decoded.jac)
        self.stats.frames += 1
        self.stats.held_frames += 1
        self._count_keypoint_packet(len(data))
        return [OutMessage(MEDIA_CHANNEL_LABEL, data)]

    def _count_keypoint_packet(self, nbytes: int) -> None:
        self.stats.keypoint_packets += 1
        self.stats.keypoint_bytes += nbytes
        self._rate.update(nbytes)
        self._update_rate_stats()

    def _update_rate_stats(self) -> None:
        kp, jac, _ = self._rate.levels[self._rate.level]
        self.stats.kp_hysteresis_steps, self.stats.jac_hysteresis_steps = kp, jac
        self.stats.rate_level = self._rate.level
        self.stats.keypoint_window_bps = self._rate.window_bps

    def _drift_due(self, index: int) -> bool:
        n = self.config.drift_check_interval_frames
        return self._replica is not None and n > 0 and index % n == n - 1

    def _drift_check(self, index: int, rgb: np.ndarray, kp: np.ndarray, jac: np.ndarray, face_found: bool,
                     current: np.ndarray, current_face: bool) -> list[OutMessage]:
        """Render what the far end shows for frame `index` (DRIFT_LAG_FRAMES back, so its audio window is
        coded) and compare it with the camera; refresh the source (the current frame) when it drifted."""
        import time

        t0 = time.perf_counter()
        self._decode_replica_audio()
        window = pcm_window(self._pcm, index - self._pcm_base // SAMPLES_PER_FRAME, self.config.causal_window)
        picture = self._replica.frame(kp, jac, log_mel_window(window))
        self.last_replica = (index, picture)
        score = psnr_db(picture, rgb)
        self.stats.drift_ms += 1000 * (time.perf_counter() - t0)
        self.stats.drift_checks += 1
        self.stats.last_drift_psnr_db = score
        if self._baseline_psnr_db is None:
            self._baseline_psnr_db = score
            return []
        drifted = score < self._baseline_psnr_db - self.config.drift_threshold_db
        if drifted and current_face and index - self._last_refresh_frame >= self.config.min_refresh_interval_frames:
            logger.info("frame %d: far-end picture drifted to %.1f dB (baseline %.1f dB): new source",
                        index, score, self._baseline_psnr_db)
            self._last_refresh_frame = index
            return self.refresh_source(current)
        return []

    def _decode_replica_audio(self) -> None:
        """Bring the replica's decoded speech up to date (the Opus packets sent so far)."""
        new = self._opus_replica.take()
        if len(new):
            self._pcm = np.concatenate([self._pcm, new])
        excess = len(self._pcm) - 8 * 16_000  # keep the last 8 s
        if excess > 0:
            drop = excess - excess % SAMPLES_PER_FRAME
            self._pcm, self._pcm_base = self._pcm[drop:], self._pcm_base + drop

    def encode_audio(self, pcm: np.ndarray) -> list[OutMessage]:
        """Add float32 (N,) mono 16 kHz speech (sample 0 = frame 0); returns the Audio messages completed."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if self.stopped or self._finished:
            return []
        packets = self._opus.encode(pcm)
        if self._replica is not None:
            for payload in packets:
                self._opus_replica.decode(payload)
        return self._audio_messages(packets)

    def _audio_messages(self, packets: list[bytes]) -> list[OutMessage]:
        out = []
        for payload in packets:
            ts = (self.config.ts0_90k + self._audio_packets * TS_STEP_AUDIO_90K) % (1 << 32)
            data = encode_audio(Audio(self._audio_seq, ts, payload))
            self._audio_seq = (self._audio_seq + 1) & 0xFFFF
            self._audio_packets += 1
            self.stats.audio_packets += 1
            self.stats.audio_bytes += len(data)
            out.append(OutMessage(MEDIA_CHANNEL_LABEL, data))
        return out

    def finish(self) -> list[OutMessage]:
        """Hang up: the last audio packets, then the end anchor (the last frame as a KEY on control)."""
        if self._finished:
            return []
        self._finished = True
        out = [] if self.stopped else self._audio_messages(self._opus.flush())
        if self._last_sent is not None and not self.stopped:
            seq, ts, kp, jac = self._last_sent
            kp_q, jac_q = quantise_keypoints(kp, jac, self.session.quant)
            out.append(OutMessage(CONTROL_CHANNEL_LABEL, encode_keypoints(KeypointsKey(seq, ts, kp_q, jac_q),
                                                                          self.session)))
        return out

    @property
    def audio_samples_per_packet(self) -> int:
        return OPUS_FRAME_SAMPLES
