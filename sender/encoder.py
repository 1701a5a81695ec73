"""`Encoder`: the calling peer as a library, frames + PCM in -> wire messages out (no networking).

Per video frame: mediapipe priors -> keypoint graph (onnxruntime) -> quantised KEY/DELTA packet. Per 20 ms
of speech: one Opus packet. Messages go out as `OutMessage(channel, data)` for the two data channels of
proto/SPEC.md. Media timestamps: frame i is at ``ts0 + 3600 i``, audio sample n at ``ts0 + 5.625 n``.

Stream anchors (proto/SPEC.md, call set-up step 6): the first keypoint packet (a KEY) is also sent on the
reliable control channel, and `finish()` sends the last frame again as a KEY packet on the control channel.
A receiver thus knows exactly where the stream starts and ends, even when the media channel loses the first
or last packets; the copies have the same seq as the media packets and are deduplicated.

No face in the frame: the sender holds the last keypoints (counts `no_face_frames`) and the call goes on.

The drift check (`avfr.sender.drift.DriftMonitor`) renders the far end's picture on the sender and asks for
a fresh source image when it drifted (the current frame, or the most neutral face frame since the last check:
`EncoderConfig.refresh_pick`); the rate control (`avfr.sender.rate_control.KeypointRateController`,
encoder-only: the wire format and the Hello do not change) keeps the keypoint stream near
`keypoint_budget_bps` (no coarser than its top level).
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from avfr.codec.data import five_channel
from avfr.codec.runtime import (
    OPUS_FRAME_SAMPLES,
    SOURCE_FORMAT,
    CallModel,
    OpusEncoder,
    ReceiverModel,
    SenderModel,
    decode_source_image,
    encode_source_image,
    load_call_model,
)
from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    TS_STEP_AUDIO_90K,
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
    printable_text,
    quantise_keypoints,
    split_source_image,
)
from avfr.sender.config import EncoderConfig, EncoderStats, OutMessage
from avfr.sender.drift import DriftMonitor, NeutralWindow
from avfr.sender.rate_control import KeypointRateController

__all__ = ["Encoder"]

logger = logging.getLogger(__name__)



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
        self._drift: DriftMonitor | None = None  # the far end's picture, rendered here (None: drift check off)
        if cfg.drift_check_interval_frames > 0:
            self._drift = DriftMonitor(ReceiverModel.from_manifest(man, threads=cfg.threads), cfg)
        # the face frames since the last drift check (None: automatic refreshes send the current frame)
        self._neutral: NeutralWindow | None = None
        if self._drift is not None and cfg.refresh_pick == "neutral":
            self._neutral = NeutralWindow(cfg.drift_check_interval_frames)
        self._owns_extractor = extractor is None  # close() closes only what it built
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
        self._image_id = 0
        self._source_rgb: np.ndarray | None = None
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

    def _source_bytes(self, rgb: np.ndarray, size: int | None = None, quality: int | None = None) -> bytes:
        """WebP bytes of `rgb` (uint8 (H, W, 3)) at `size` px (None: as it is) and `quality` (None:
        `source_quality`)."""
        if size is not None and rgb.shape[:2] != (size, size):
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        return encode_source_image(rgb, self.config.source_quality if quality is None else quality)

    def _source_messages(self, rgb: np.ndarray, size: int | None = None, quality: int | None = None,
                         data: bytes | None = None) -> list[OutMessage]:
        """Source-image chunks of `rgb` (uint8 (H, W, 3)), sent at `size` px (None: as it is) and WebP `quality`
        (None: `source_quality`); `data`: those bytes, already encoded."""
        if data is None:
            data = self._source_bytes(rgb, size, quality)
        self._image_id += 1
        image = SourceImage(self._image_id, SOURCE_FORMAT, data)
        out = [OutMessage(CONTROL_CHANNEL_LABEL, encode_source_chunk(c)) for c in split_source_image(image)]
        self.stats.source_images += 1
        self.stats.source_bytes += sum(len(m.data) for m in out)
        self._source_rgb = decode_source_image(data)  # what the receiver will hold (upscaled to 256)
        if self._drift is not None:
            self._drift.set_source(self._source_rgb, self.extractor)
        return out

    def refresh_source(self, rgb: np.ndarray, small: bool = False, data: bytes | None = None
                       ) -> list[OutMessage]:
        """Send a new source image now (a new image id); returns its control messages.

        Args:
            rgb: uint8 (256, 256, 3) RGB.
            small: an automatic refresh: `refresh_size` px at `refresh_quality`, paid back by the keypoint
                rate control over `refresh_payback_s` (else full size at `source_quality`).
            data: the image's bytes, already encoded (None: encode `rgb`).
        """
        cfg = self.config
        out = (self._source_messages(rgb, cfg.refresh_size, cfg.refresh_quality, data) if small
               else self._source_messages(rgb, data=data))
        nbytes = sum(len(m.data) for m in out)
        self.stats.refreshes += 1
        self.stats.refresh_bytes += nbytes
        if small and cfg.refresh_payback_s > 0:
            self._rate.charge(nbytes, round(cfg.refresh_payback_s * self.hello.fps))
        return out

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
                self.stats.refused = f"{msg.code.name}: {printable_text(msg.text)}"  # peer text: no escapes
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
            RuntimeError: `start()` was not called, or the Encoder was closed.
        """
        if not self._started or self.extractor is None:
            raise RuntimeError("call Encoder.start() before encode_frame(), and not after close()")
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
        if self._neutral is not None and priors.face_found:
            self._neutral.add(index, rgb, priors.landmarks)
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
        if self._drift is not None:
            self._drift.add_frame(index, rgb, decoded.kp, decoded.jac)
        if self._pending_source:
            self._pending_source = False
            out.extend(self.refresh_source(rgb if priors.face_found else self._source_rgb))
            if priors.face_found:
                self.stats.refresh_frame = index
            if self._drift is not None:
                self._drift.note_refresh(index)
        elif self._drift is not None and self._drift.due(index):
            out.extend(self._drift_check(index, current=rgb, current_face=priors.face_found))
        return out

    def encode_hold(self, index: int) -> list[OutMessage]:
        """Frame `index` without looking at it: the last keypoints again (a 2-byte delta).

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

    def _drift_check(self, index: int, current: np.ndarray, current_face: bool) -> list[OutMessage]:
        """Run the drift check after frame `index`; when it drifted, refresh the source with the current frame
        (uint8 (256, 256, 3)) or, with refresh_pick "neutral", the most neutral face frame since the last check
        (the replica then holds that image, as sent)."""
        reading = self._drift.check(current_face)
        self.stats.drift_ms += reading.elapsed_ms
        self.stats.drift_checks += 1
        self.stats.last_drift_psnr_db = reading.psnr_db
        if not reading.refresh:
            return []
        picked = None if self._neutral is None else self._neutral.pick()
        frame, rgb = (index, current) if picked is None else picked
        cfg = self.config
        data = self._source_bytes(rgb, cfg.refresh_size, cfg.refresh_quality)
        if cfg.refresh_min_gain_db > 0:
            t0 = time.perf_counter()
            trial_db = self._drift.trial(decode_source_image(data), self.extractor)
            self.stats.drift_ms += 1000 * (time.perf_counter() - t0)
            if trial_db < reading.psnr_db + cfg.refresh_min_gain_db:
                self._drift.decline(reading.psnr_db)
                self.stats.refreshes_declined += 1
                logger.info("frame %d: a refresh would draw %.1f dB against %.1f dB now: not sent",
                            index, trial_db, reading.psnr_db)
                return []
        out = self.refresh_source(rgb, small=True, data=data)
        self.stats.refresh_frame = frame
        if frame != index:
            logger.info("frame %d: the refresh image is frame %d (the most neutral since the last check)",
                        index, frame)
        return out

    def encode_audio(self, pcm: np.ndarray) -> list[OutMessage]:
        """Add float32 (N,) mono 16 kHz speech (sample 0 = frame 0); returns the Audio messages completed."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if self.stopped or self._finished:
            return []
        packets = self._opus.encode(pcm)
        if self._drift is not None:
            self._drift.add_audio(packets)
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

    def close(self) -> None:
        """Release the mediapipe prior extractor built here (one passed in stays open); idempotent.

        Call it once no encode_frame runs, or use the Encoder as a context manager: ``with Encoder() as enc:``.
        """
        if self._owns_extractor and self.extractor is not None:
            self.extractor.close()
        self.extractor = None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_replica(self) -> tuple[int, np.ndarray] | None:
        """(frame index, uint8 (256, 256, 3)) of the last drift check: the far end's picture (None: none yet)."""
        return None if self._drift is None else self._drift.last_replica

    @property
    def audio_samples_per_packet(self) -> int:
        return OPUS_FRAME_SAMPLES
