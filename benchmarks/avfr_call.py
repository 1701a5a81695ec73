"""The avfr rows of the rate-quality benchmark: the call's media path without the network.

:func:`avfr_path`: ``avfr.sender.Encoder`` -> wire messages (keypoint, audio and source-image bytes counted
separately) -> ``avfr.receiver.Decoder`` -> frames, the generator driven by the Opus-decoded speech. One row per
operating point (:class:`AvfrPoint`: the call's quantisation, hysteresis and key interval; "q7" is the call's
default), every one with the same speech (Opus at ``audio_bitrate_bps``; the call's default
``AUDIO_BITRATE_BPS``).

The sender's priors and keypoint graph are the same for every operating point of a clip's frames: a
:class:`SenderMemo` computes them once per clip, their measured time still counted in each point's encoder time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfr.codec.data import SAMPLES_PER_FRAME

AUDIO_BITRATE_BPS = 12_000  # Opus speech of every row by default (the call's; ``avfr-codec bench --opus-kbps``)
SOURCE_WEBP_QUALITY = 90  # the call's EncoderConfig.source_quality
AVFR_PATH_VERSION = 3  # 3: small drift refreshes, paid back by the keypoint rate (2: the call's Encoder/Decoder;
# 1: assembled from pieces); part of the resume key


@dataclass(frozen=True)
class AvfrPoint:
    """One avfr operating point: the call's sender settings that change the keypoint stream.

    The defaults are the call's own (``avfr.sender.EncoderConfig``: 7/7 bits, jacobians in [-3, 3), 0.75-step
    keypoint hysteresis, a KEY at least every 250 frames); the session's quantisation travels in its Hello.

    Attributes:
        name: row label.
        kp_bits, jac_bits: quantisation bit depths (EncoderConfig.kp_bits / jac_bits).
        jac_abs_max: jacobian range (EncoderConfig.jac_abs_max).
        kp_hysteresis_steps: keypoint hysteresis of the encoder (0.5 = plain rounding; the call has no
            jacobian hysteresis).
        key_interval_frames: a KEY packet at least every this many frames (the stream's refresh).
        keypoint_budget_bps: the rate controller's budget (EncoderConfig.keypoint_budget_bps; 0: none).
    """

    name: str
    kp_bits: int = 7
    jac_bits: int = 7
    jac_abs_max: float = 3.0
    kp_hysteresis_steps: float = 0.75
    key_interval_frames: int = 250
    keypoint_budget_bps: int = 1400

    def encoder_config(self, threads: int, drift_check: bool = True,
                       audio_bitrate_bps: int = AUDIO_BITRATE_BPS) -> object:
        """The ``avfr.sender.EncoderConfig`` of this point (everything else at the call's defaults).

        Args:
            threads: onnxruntime intra-op threads per graph.
            drift_check: keep the call's drift check (False: no replica, no automatic source refresh).
            audio_bitrate_bps: the Opus speech's rate (the Decoder's generator hears it decoded).
        """
        from avfr.sender import EncoderConfig

        extra = {} if drift_check else {"drift_check_interval_frames": 0}
        return EncoderConfig(kp_bits=self.kp_bits, jac_bits=self.jac_bits, jac_abs_max=self.jac_abs_max,
                             kp_hysteresis_steps=self.kp_hysteresis_steps,
                             key_interval_frames=self.key_interval_frames, audio_bitrate_bps=int(audio_bitrate_bps),
                             keypoint_budget_bps=self.keypoint_budget_bps,
                             threads=threads, source_quality=SOURCE_WEBP_QUALITY, **extra)


# One family since session 8 (7-bit jacobians over [-3, 3) made the old points incoherent: q10 at 10/6 bits over
# +-4 drew worse than q7 at more bits): coarser / finer quantisers under smaller / larger keypoint budgets.
# Keypoints alone (`benchmarks/bench_quant.py`-style, 7 dev clips, a key every 100 frames): q6 1.32 kbit/s 22.02 dB,
# LMD 3.01 px, q7 1.75 / 23.28 / 2.33, q8 2.09 / 23.49 / 2.14, q10 4.09 / 23.68 / 2.05 (float keypoints: 23.71
# dB, 2.04 px).
AVFR_POINTS: dict[str, AvfrPoint] = {
    "q6": AvfrPoint("q6", kp_bits=6, jac_bits=6, kp_hysteresis_steps=1.0, keypoint_budget_bps=1200),
    "q7": AvfrPoint("q7"),  # the call's default
    "q8": AvfrPoint("q8", kp_bits=8, jac_bits=7, kp_hysteresis_steps=0.5, keypoint_budget_bps=2400),
    "q10": AvfrPoint("q10", kp_bits=10, jac_bits=8, kp_hysteresis_steps=0.5, keypoint_budget_bps=0),
}


@dataclass
class AvfrModels:
    """The shipped call model (``avfr.sender.CallModel``) and a prior extractor, loaded once per run."""

    call_model: object
    extractor: object
    threads: int
    model_name: str
    sha256: dict[str, str]

    @classmethod
    def load(cls, threads: int = 2, manifest: Path | None = None) -> AvfrModels:
        """Load the shipped model, or the one of an ONNX ``manifest`` (graph hashes are checked when the
        Encoder/Decoder build their graphs)."""
        from avfr.codec.data import PriorExtractor
        from avfr.sender import load_call_model

        model = load_call_model(manifest)
        return cls(model, PriorExtractor(mesh=True, mask=True), threads, model.generator,
                   dict(model.manifest.sha256))

    def close(self) -> None:
        self.extractor.close()


@dataclass
class AvfrOutput:
    """What :func:`avfr_path` produced for one clip and operating point (bytes are message bytes)."""

    frames: np.ndarray  # uint8 (T, 256, 256, 3), frame i decoded for input frame i
    packet_bytes: int  # KEYPOINTS_KEY/DELTA messages on the media channel: the video's bits on the wire
    num_packets: int
    num_key_packets: int
    source_bytes: int  # SOURCE_CHUNK messages (the WebP source image; again for each drift refresh)
    encode_s: float  # everything in the Encoder: priors, keypoint graph, packets, Opus, WebP, drift checks
    decode_s: float  # everything in the Decoder: parsing, jitter buffer, Opus, source priors, generator
    audio_bytes: int = 0  # AUDIO messages (7-byte header + Opus packet each; not counted in the video rate)
    audio_packets: int = 0  # AUDIO messages (one per 20 ms Opus packet, the flushed last one included)
    anchor_bytes: int = 0  # the KEY copies on the control channel (stream start/end anchors)
    num_source_images: int = 1
    concealed_frames: int = 0  # 0 unless kp_loss > 0 (the path is otherwise lossless)
    held: np.ndarray | None = None  # bool (T,): frames drawn from held keypoints (lost keypoint messages)
    refresh_bytes: int = 0  # the SOURCE_CHUNK bytes of the source images after the first (in source_bytes)


def array_digest(*arrays: np.ndarray, size: int = 8) -> str:
    """``2 * size`` hex digits of blake2b over the arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=size)
    for array in arrays:
        a = np.ascontiguousarray(array)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class SenderMemo:
    """The sender's per-frame work that no operating point changes, computed once per clip.

    mediapipe's priors (static image mode) and the keypoint graph are deterministic functions of the frame, so
    every operating point's Encoder gets bit-identical results from here (the points differ only in
    quantisation, hysteresis and refresh). The time a result took when it was computed is counted again for
    each point that reuses it (``saved_s``), so the avfr rows' enc_fps stays the cost of a real call.

    Args:
        extractor: the mediapipe PriorExtractor that computes missing priors.
    """

    def __init__(self, extractor: object) -> None:
        self._extractor = extractor
        self._priors: dict[str, tuple[object, float]] = {}
        self._keypoints: dict[str, tuple[tuple[np.ndarray, np.ndarray], float]] = {}
        self.saved_s = 0.0  # compute time of every reused result

    def priors(self, rgb: np.ndarray) -> object:
        """``PriorExtractor(rgb)`` (a FramePriors whose arrays are read-only)."""
        key = array_digest(rgb, size=16)
        hit = self._priors.get(key)
        if hit is None:
            t0 = time.perf_counter()
            value = self._extractor(rgb)
            for arr in (value.landmarks, value.mesh, value.mask):
                if isinstance(arr, np.ndarray):
                    arr.setflags(write=False)
            hit = self._priors[key] = (value, time.perf_counter() - t0)
        else:
            self.saved_s += hit[1]
        return hit[0]

    def keypoints(self, model: object, frame5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``model.keypoints(frame5)`` of the shipped sender graph (read-only arrays)."""
        key = array_digest(frame5, size=16)
        hit = self._keypoints.get(key)
        if hit is None:
            t0 = time.perf_counter()
            kp, jac = model.keypoints(frame5)
            kp.setflags(write=False)
            jac.setflags(write=False)
            hit = self._keypoints[key] = ((kp, jac), time.perf_counter() - t0)
        else:
            self.saved_s += hit[1]
        return hit[0]


class _MemoExtractor:
    """PriorExtractor stand-in for an Encoder: priors from a :class:`SenderMemo`."""

    def __init__(self, memo: SenderMemo) -> None:
        self._memo = memo

    def __call__(self, rgb: np.ndarray) -> object:
        return self._memo.priors(rgb)


class _MemoKeypoints:
    """SenderModel stand-in for an Encoder: keypoints from a :class:`SenderMemo`."""

    def __init__(self, memo: SenderMemo, model: object) -> None:
        self._memo, self._model = memo, model

    def keypoints(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._memo.keypoints(self._model, frame)


def avfr_path(frames: np.ndarray, pcm: np.ndarray, source_rgb: np.ndarray, point: AvfrPoint, models: AvfrModels,
              relative: bool = False, memo: SenderMemo | None = None, kp_loss: float = 0.0,
              loss_seed: int = 0, drift_check: bool = True, audio_bitrate_bps: int = AUDIO_BITRATE_BPS
              ) -> AvfrOutput:
    """The call's media path without the network: ``avfr.sender.Encoder`` -> messages -> ``avfr.receiver.Decoder``.

    The same code as a call (loopback with zero delay and no loss): frame i and its 40 ms of speech go into
    the Encoder, every message it emits goes straight into the Decoder in emission order (arrival-order
    mode: no wall clock, so the frames are deterministic), and the Decoder's replies (Stats, Refresh) go back
    to the Encoder. Bytes are counted from the messages by type and channel.

    Args:
        frames: uint8 (T, 256, 256, 3) RGB driving video at 25 fps.
        pcm: float32 (T * 640,) 16 kHz speech (the Encoder codes it with Opus; the Decoder's generator hears
            the decoded speech).
        source_rgb: uint8 (256, 256, 3) source image (sent as WebP by ``Encoder.start``).
        point: operating point.
        models: the loaded call model and prior extractor.
        relative: cross-identity: the Decoder's relative motion (against the first received keypoints); the
            sender's drift check is off (its replica has no relative motion, and a refresh would send the
            driver's face).
        memo: share the sender's priors and keypoint graph with other operating points of the same frames
            (bit-identical results; the reused work's time is added to ``encode_s``).
        kp_loss: drop this share of the keypoint messages on the media channel (seeded by ``loss_seed``;
            the first key packet always arrives): the Decoder conceals them as in a call, holding the last
            keypoints while the speech goes on. Dropped messages still count as sent bytes.
        drift_check: the sender's drift check and its automatic refreshes (always off when ``relative``).
        audio_bitrate_bps: the sender's Opus rate (``EncoderConfig.audio_bitrate_bps``), 6000..16000.

    Returns:
        Frames (aligned 1:1 with `frames`), bytes and timings.

    Raises:
        RuntimeError: the Decoder did not return exactly one frame per input frame.
    """
    from avfr.proto import CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL, MessageType, peek_type
    from avfr.receiver import Decoder, DecoderConfig
    from avfr.sender import Encoder

    num_frames = len(frames)
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    config = point.encoder_config(models.threads, drift_check=drift_check and not relative,
                                  audio_bitrate_bps=audio_bitrate_bps)
    encoder = Encoder(config, models.call_model, models.extractor if memo is None else _MemoExtractor(memo))
    decoder = Decoder(DecoderConfig(threads=models.threads, relative_motion=relative), models.call_model)
    with encoder, decoder:  # the Decoder's mediapipe is released after each point
        saved_before = 0.0
        if memo is not None:
            encoder.keypoint_model = _MemoKeypoints(memo, encoder.keypoint_model)
            saved_before = memo.saved_s
        out = np.empty((num_frames, *frames.shape[1:]), np.uint8)
        got = np.zeros(num_frames, bool)
        held = np.zeros(num_frames, bool)
        counts = {"kp": 0, "key": 0, "kp_bytes": 0, "audio": 0, "audio_packets": 0, "source": 0, "anchor": 0,
                  "concealed": 0}
        times = {"enc": 0.0, "dec": 0.0}
        drop_rng = np.random.default_rng(loss_seed)

        def take(received: list) -> None:
            for frame in received:
                if not 0 <= frame.index < num_frames or got[frame.index]:
                    raise RuntimeError(f"the Decoder returned frame {frame.index} unexpectedly ({num_frames} frames)")
                out[frame.index], got[frame.index] = frame.rgb, True
                held[frame.index] = frame.held_frames > 0
                counts["concealed"] += int(frame.concealed)

        def send(make: Callable[[], list]) -> None:
            t0 = time.perf_counter()
            messages = make()
            t1 = time.perf_counter()
            received = []
            for msg in messages:
                kind = peek_type(msg.data)
                if kind in (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA):
                    if msg.channel == MEDIA_CHANNEL_LABEL:
                        counts["kp"] += 1
                        counts["key"] += int(kind == MessageType.KEYPOINTS_KEY)
                        counts["kp_bytes"] += len(msg.data)
                        if kp_loss > 0 and counts["kp"] > 1 and drop_rng.random() < kp_loss:
                            continue
                    elif msg.channel == CONTROL_CHANNEL_LABEL:
                        counts["anchor"] += len(msg.data)
                elif kind == MessageType.AUDIO:
                    counts["audio"] += len(msg.data)
                    counts["audio_packets"] += 1
                elif kind == MessageType.SOURCE_CHUNK:
                    counts["source"] += len(msg.data)
                received += decoder.push(msg.channel, msg.data, now_s=0.0)
            replies = decoder.take_replies()
            t2 = time.perf_counter()
            for reply in replies:
                encoder.on_control(reply)
            times["enc"] += t1 - t0 + time.perf_counter() - t2
            times["dec"] += t2 - t1
            take(received)

        send(lambda: encoder.start(np.ascontiguousarray(source_rgb)))
        for i in range(num_frames):
            chunk = pcm[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME]
            if len(chunk) < SAMPLES_PER_FRAME:
                chunk = np.pad(chunk, (0, SAMPLES_PER_FRAME - len(chunk)))
            send(lambda i=i, chunk=chunk: encoder.encode_frame(i, np.ascontiguousarray(frames[i]))
                 + encoder.encode_audio(chunk))
        send(encoder.finish)
        t0 = time.perf_counter()
        decoder.finish()
        received = decoder.drain()
        times["dec"] += time.perf_counter() - t0
        take(received)
        if not got.all():
            raise RuntimeError(f"the Decoder returned {int(got.sum())} of {num_frames} frames "
                               f"(first missing: {int(np.argmin(got))})")
        if encoder.stopped:
            raise RuntimeError(f"the Decoder refused the call: {encoder.stats.refused}")
        if memo is not None:
            times["enc"] += memo.saved_s - saved_before
        return AvfrOutput(out, counts["kp_bytes"], counts["kp"], counts["key"], counts["source"], times["enc"],
                          times["dec"], audio_bytes=counts["audio"], audio_packets=counts["audio_packets"],
                          anchor_bytes=counts["anchor"],
                          num_source_images=encoder.stats.source_images, concealed_frames=counts["concealed"],
                          held=held, refresh_bytes=encoder.stats.refresh_bytes)
