"""The rate-quality benchmark behind ``avfr-codec bench``: avfr, a zero-bit still, and anchor codecs.

Per clip (256x256, 25 fps; frame 0 is the source image, all frames are the driving video):

- ``avfr``: :func:`avfr_path`, the call's code minus the network: ``avfr.sender.Encoder`` -> wire messages
  (keypoint, audio and source-image bytes counted separately) -> ``avfr.receiver.Decoder`` -> frames, the
  generator driven by the Opus-decoded speech. One row per operating point (:class:`AvfrPoint`: the call's
  quantisation, hysteresis and key interval; "q7" is the call's default).
- ``still``: the receiver's decoded source image shown for every frame (zero video bits).
- anchors (``avfr.codec.anchors``): the encode whose achieved rate is closest to each requested rate. vvenc's
  QP is searched on cheap probes (``BenchConfig.probe_preset``, whole clip) and only the QP found (plus at most
  one correction) is encoded at the reported preset (:func:`avfr.codec.anchors.search_rate_probed`); x265 and
  SVT-AV1 are searched directly. Metrics are computed only for the reported encodes.

Work shared between rows is done once per clip: the sender's priors and keypoint graph (the same frames for
every operating point; :class:`SenderMemo`, their measured time still counted in each point's encoder time),
the still row's landmarks (one picture), the identity embedding of the source.

Every row shares the same speech (Opus, ``AUDIO_BITRATE_BPS``), so rates are video bits only. Results of a
finished clip are saved as ``<out>/clips/<clip_id>.json`` and reused by a re-run with the same settings;
anchor bitstreams are kept in ``<out>/work`` so an interrupted search resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avfr.codec import anchors, quality
from avfr.codec.audio import SAMPLES_PER_FRAME

logger = logging.getLogger(__name__)

AUDIO_BITRATE_BPS = 12_000  # Opus speech of every row (not counted in the video rates)
SOURCE_WEBP_QUALITY = 90  # the call's EncoderConfig.source_quality
AVFR_PATH_VERSION = 2  # 2: the call's Encoder/Decoder (1: assembled from pieces); part of the resume key
METRICS_VERSION = 2  # 2: SSIM / MS-SSIM in float64 (OpenCV; 1: torchmetrics in float32); part of the resume key
ANCHOR_SEARCH_VERSION = 2  # 2: vvenc QP searched on cheap probes (1: every probe at the reported preset)
CALL_SECONDS = 300.0  # the source image is also reported amortised over a 5-minute call
ID_SAMPLES = 10  # frames per row for the identity embedding (~0.1 s each)
STRIP_FRAMES = 4


@dataclass(frozen=True)
class AvfrPoint:
    """One avfr operating point: the call's sender settings that change the keypoint stream.

    The defaults are the call's own (``avfr.sender.EncoderConfig``: 7/6 bits, 0.75-step keypoint hysteresis,
    a KEY at least every 100 frames); the session's quantisation travels in its Hello.

    Attributes:
        name: row label.
        kp_bits, jac_bits: quantisation bit depths (EncoderConfig.kp_bits / jac_bits).
        kp_hysteresis_steps: keypoint hysteresis of the encoder (0.5 = plain rounding; the call has no
            jacobian hysteresis).
        key_interval_frames: a KEY packet at least every this many frames (the stream's refresh).
    """

    name: str
    kp_bits: int = 7
    jac_bits: int = 6
    kp_hysteresis_steps: float = 0.75
    key_interval_frames: int = 100

    def encoder_config(self, threads: int, drift_check: bool = True) -> object:
        """The ``avfr.sender.EncoderConfig`` of this point (everything else at the call's defaults).

        Args:
            threads: onnxruntime intra-op threads per graph.
            drift_check: keep the call's drift check (False: no replica, no automatic source refresh).
        """
        from avfr.sender import EncoderConfig

        extra = {} if drift_check else {"drift_check_interval_frames": 0}
        return EncoderConfig(kp_bits=self.kp_bits, jac_bits=self.jac_bits,
                             kp_hysteresis_steps=self.kp_hysteresis_steps,
                             key_interval_frames=self.key_interval_frames, audio_bitrate_bps=AUDIO_BITRATE_BPS,
                             threads=threads, source_quality=SOURCE_WEBP_QUALITY, **extra)


AVFR_POINTS: dict[str, AvfrPoint] = {
    "q6": AvfrPoint("q6", kp_bits=6, jac_bits=4, kp_hysteresis_steps=1.0, key_interval_frames=250),
    "q7": AvfrPoint("q7"),  # the call's default
    "q8": AvfrPoint("q8", kp_bits=8, jac_bits=5, kp_hysteresis_steps=0.5),  # the proto's default quantisation
    "q10": AvfrPoint("q10", kp_bits=10, jac_bits=6, kp_hysteresis_steps=0.5),
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
        from avfr.codec.priors import PriorExtractor
        from avfr.sender import load_call_model

        model = load_call_model(manifest)
        return cls(model, PriorExtractor(mesh=True, mask=True), threads, model.model_id,
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
    audio_bytes: int = 0  # AUDIO messages (Opus speech, not counted in the video rate)
    anchor_bytes: int = 0  # the KEY copies on the control channel (stream start/end anchors)
    num_source_images: int = 1
    concealed_frames: int = 0  # should stay 0: the path is lossless


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
        self._priors: dict[bytes, tuple[object, float]] = {}
        self._keypoints: dict[bytes, tuple[tuple[np.ndarray, np.ndarray], float]] = {}
        self.saved_s = 0.0  # compute time of every reused result

    @staticmethod
    def _digest(array: np.ndarray) -> bytes:
        a = np.ascontiguousarray(array)
        return hashlib.blake2b(a.tobytes(), digest_size=16).digest() + f"{a.dtype}{a.shape}".encode()

    def priors(self, rgb: np.ndarray) -> object:
        """``PriorExtractor(rgb)`` (a FramePriors whose arrays are read-only)."""
        key = self._digest(rgb)
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
        key = self._digest(frame5)
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
              relative: bool = False, memo: SenderMemo | None = None) -> AvfrOutput:
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
    encoder = Encoder(point.encoder_config(models.threads, drift_check=not relative), models.call_model,
                      models.extractor if memo is None else _MemoExtractor(memo))
    saved_before = 0.0
    if memo is not None:
        encoder.keypoint_model = _MemoKeypoints(memo, encoder.keypoint_model)
        saved_before = memo.saved_s
    decoder = Decoder(DecoderConfig(threads=models.threads, relative_motion=relative), models.call_model)
    out = np.empty((num_frames, *frames.shape[1:]), np.uint8)
    got = np.zeros(num_frames, bool)
    counts = {"kp": 0, "key": 0, "kp_bytes": 0, "audio": 0, "source": 0, "anchor": 0, "concealed": 0}
    times = {"enc": 0.0, "dec": 0.0}

    def take(received: list) -> None:
        for frame in received:
            if not 0 <= frame.index < num_frames or got[frame.index]:
                raise RuntimeError(f"the Decoder returned frame {frame.index} unexpectedly ({num_frames} frames)")
            out[frame.index], got[frame.index] = frame.rgb, True
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
                elif msg.channel == CONTROL_CHANNEL_LABEL:
                    counts["anchor"] += len(msg.data)
            elif kind == MessageType.AUDIO:
                counts["audio"] += len(msg.data)
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
                      times["dec"], audio_bytes=counts["audio"], anchor_bytes=counts["anchor"],
                      num_source_images=encoder.stats.source_images, concealed_frames=counts["concealed"])


# ---------------------------------------------------------------------------------------------------------
# Metrics of one row


@dataclass
class Evaluator:
    """Metric tools kept open across a run (mediapipe graph, dlib models)."""

    tracker: quality.LandmarkTracker
    embedder: quality.IdentityEmbedder | None
    id_note: str
    lips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def create(cls, use_identity: bool = True) -> Evaluator:
        ok, note = quality.identity_backend()
        embedder = quality.IdentityEmbedder() if (ok and use_identity) else None
        if ok and not use_identity:
            note = "identity distance switched off (--no-identity)"
        return cls(quality.LandmarkTracker(), embedder, note, quality.lip_indices())

    def close(self) -> None:
        self.tracker.close()

    def identity(self, frames: np.ndarray, source_rgb: np.ndarray) -> float | None:
        if self.embedder is None:
            return None
        idx = np.unique(np.linspace(0, len(frames) - 1, min(ID_SAMPLES, len(frames))).round().astype(int))
        return self.embedder.distance([frames[i] for i in idx], source_rgb)

    def full_reference(self, test: np.ndarray, reference: np.ndarray, reference_lm: np.ndarray, pcm: np.ndarray,
                       source_rgb: np.ndarray, test_lm: np.ndarray | None = None) -> dict:
        """Every same-identity metric of one decoded/generated video against the original.

        Args:
            test_lm: the test video's landmarks when already known (e.g. a still: one picture's, repeated).
        """
        lm = self.tracker(test) if test_lm is None else test_lm
        lmd, miss = quality.landmark_distance(lm, reference_lm)
        sync, lag = quality.sync_proxy(lm, pcm)
        ssim, ms_ssim = quality.ssim_frames(test, reference)
        return {
            "psnr": quality.psnr_db(test, reference), "ssim": float(ssim.mean()),
            "ms_ssim": float(ms_ssim.mean()), "vmaf": quality.vmaf(test, reference),
            "l1": quality.l1(test, reference), "lmd": lmd, "lmd_miss": miss,
            "mouth_lmd": quality.landmark_distance(lm, reference_lm, self.lips)[0],
            "sync_corr": sync, "sync_lag_frames": lag, "jitter": quality.landmark_jitter(lm),
            "id_dist": self.identity(test, source_rgb),
        }

    def no_reference(self, test: np.ndarray, driver_lm: np.ndarray, pcm: np.ndarray, source_rgb: np.ndarray,
                     test_lm: np.ndarray | None = None) -> dict:
        """Cross-identity metrics: identity to the source, landmark motion to the driver, sync proxy, jitter."""
        lm = self.tracker(test) if test_lm is None else test_lm
        sync, lag = quality.sync_proxy(lm, pcm)
        return {"id_dist": self.identity(test, source_rgb), "motion_lmd": quality.motion_distance(lm, driver_lm),
                "sync_corr": sync, "sync_lag_frames": lag, "jitter": quality.landmark_jitter(lm)}


# ---------------------------------------------------------------------------------------------------------
# One clip


@dataclass(frozen=True)
class BenchConfig:
    """Settings of a run (their hash keys the per-clip resume files)."""

    bitrates_kbps: tuple[float, ...]
    codecs: tuple[str, ...]
    avfr_points: tuple[str, ...]
    cross: bool = False
    max_frames: int = 0  # 0: whole clips
    vvenc_preset: str = "medium"
    max_probes: int = 4
    threads: int = 2
    identity: bool = True
    probe_preset: str = "faster"  # vvenc preset of the QP-search probes ("" or = vvenc_preset: direct search)
    model: str = ""  # SHA-256 prefix of the avfr model's ONNX manifest ("" without avfr): a new model re-runs

    def key(self) -> str:
        keyed = {**asdict(self), "avfr_path_version": AVFR_PATH_VERSION, "metrics_version": METRICS_VERSION,
                 "anchor_search_version": ANCHOR_SEARCH_VERSION}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def _probe_cached(spec: anchors.AnchorSpec, frames: np.ndarray, work: Path, ffmpeg: str
                  ) -> Callable[[int], anchors.Encoded]:
    """Encoder with an on-disk cache of bitstreams (``<work>/<param>.bin`` + encode time, frame count, flags)."""
    work.mkdir(parents=True, exist_ok=True)

    def probe(param: int) -> anchors.Encoded:
        bin_path, meta_path = work / f"{param}.bin", work / f"{param}.json"
        flags = " ".join(spec.encoder_args(param))
        if bin_path.exists() and meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
            if meta.get("num_frames") == len(frames) and meta.get("flags") == flags:
                return anchors.Encoded(param, bin_path.read_bytes(), float(meta["encode_s"]), len(frames))
        enc = anchors.encode(spec, frames, param, ffmpeg)
        bin_path.write_bytes(enc.bitstream)
        meta_path.write_text(json.dumps({"encode_s": enc.encode_s, "num_frames": len(frames), "kbps": enc.kbps,
                                         "flags": flags}))
        logger.info("%s %s=%d: %.2f kbit/s in %.1f s", spec.name, spec.control, param, enc.kbps, enc.encode_s)
        return enc

    return probe


def probe_specs(config: BenchConfig) -> dict[str, anchors.AnchorSpec]:
    """The cheap-probe variants of the vvenc anchors (``config.probe_preset``; empty when it is off)."""
    if not config.probe_preset or config.probe_preset == config.vvenc_preset:
        return {}
    cheap = anchors.anchor_specs(config.probe_preset, config.threads)
    return {c: cheap[c] for c in config.codecs if c in cheap and cheap[c].encoder == "libvvenc"}


def _round(value: object) -> object:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 5)
    return value


def run_clip(clip, config: BenchConfig, out_dir: Path, models: AvfrModels, evaluator: Evaluator,
             cross_source: np.ndarray | None = None, tick: Callable[[str], None] | None = None) -> dict:
    """Benchmark one prepared clip (``avfr.codec.cache.ClipArrays``).

    Returns:
        {"clip": ..., "rows": [...], "cross_rows": [...], "strip": path or None, ...}; also written to
        ``<out>/clips/<clip_id>.json``.
    """
    tick = tick or (lambda _msg: None)
    n = clip.num_frames if config.max_frames <= 0 else min(config.max_frames, clip.num_frames)
    frames = np.ascontiguousarray(clip.frames[:n])
    ref_lm = np.asarray(clip.landmarks[:n], np.float32)
    pcm = np.asarray(clip.pcm[: n * 640], np.float32)
    source = frames[0]
    duration_s = n / anchors.FPS
    ffmpeg = quality.ffmpeg_exe()
    rows: list[dict] = []
    shown: dict[str, np.ndarray] = {"original": frames}

    def add(codec: str, point: str, test: np.ndarray, kbps: float, enc_fps: float | None, dec_fps: float | None,
            test_lm: np.ndarray | None = None, **extra: object) -> None:
        metrics = evaluator.full_reference(test, frames, ref_lm, pcm, source, test_lm)
        row = {"clip": clip.clip_id, "codec": codec, "point": point, "kbps": kbps, **metrics,
               "enc_fps": enc_fps, "dec_fps": dec_fps, **extra}
        rows.append({k: _round(v) for k, v in row.items()})

    ref_sync, ref_lag = quality.sync_proxy(ref_lm, pcm)
    # still: the decoded source image, every frame
    from avfr.sender.source import decode_source_image, encode_source_image

    src_decoded = decode_source_image(encode_source_image(source, SOURCE_WEBP_QUALITY))  # what the Decoder holds
    still_lm = np.repeat(evaluator.tracker(src_decoded[None]), n, 0)  # one picture: its landmarks, every frame
    add("still", "source", np.repeat(src_decoded[None], n, 0), 0.0, None, None, still_lm)
    tick("still")

    cross_rows: list[dict] = []
    if "avfr" in config.codecs:
        memo = SenderMemo(models.extractor)
        for name in config.avfr_points:
            point = AVFR_POINTS[name]
            res = avfr_path(frames, pcm, source, point, models, memo=memo)
            kbps = res.packet_bytes * 8 / duration_s / 1000
            src_kbps = res.source_bytes * 8 / CALL_SECONDS / 1000
            add("avfr", name, res.frames, kbps, n / res.encode_s, n / res.decode_s,
                packet_bytes=res.packet_bytes, num_packets=res.num_packets, num_key_packets=res.num_key_packets,
                source_bytes=res.source_bytes, source_kbps_5min=src_kbps, kbps_with_source_5min=kbps + src_kbps,
                source_images=res.num_source_images, audio_kbps=res.audio_bytes * 8 / duration_s / 1000,
                concealed_frames=res.concealed_frames,
                settings=json.dumps(asdict(point)))
            if "avfr" not in shown or name == "q8":
                shown["avfr"], shown["avfr_kbps"] = res.frames, kbps
            tick(f"avfr {name}")
        if config.cross and cross_source is not None:
            name = "q8" if "q8" in config.avfr_points else config.avfr_points[0]
            res = avfr_path(frames, pcm, cross_source, AVFR_POINTS[name], models, relative=True, memo=memo)
            metrics = evaluator.no_reference(res.frames, ref_lm, pcm, cross_source)
            cross_lm = np.repeat(evaluator.tracker(cross_source[None]), n, 0)
            still_metrics = evaluator.no_reference(np.repeat(cross_source[None], n, 0), ref_lm, pcm, cross_source,
                                                   cross_lm)
            for codec, m in (("avfr", metrics), ("still", still_metrics)):
                cross_rows.append({k: _round(v) for k, v in
                                   {"clip": clip.clip_id, "codec": codec, "point": name, **m}.items()})
            tick("avfr cross")

    specs = anchors.anchor_specs(config.vvenc_preset, config.threads)
    cheap_specs = probe_specs(config)
    searches: dict[str, list[dict]] = {}
    for codec in config.codecs:
        if codec == "avfr":
            continue
        spec = specs[codec]
        work = out_dir / "work" / clip.clip_id
        probe = _probe_cached(spec, frames, work / codec, ffmpeg)
        cheap_probe = None
        if codec in cheap_specs:
            cheap_probe = _probe_cached(cheap_specs[codec], frames, work / f"{codec}-probe-{config.probe_preset}",
                                        ffmpeg)
        done: set[int] = set()
        searches[codec] = []
        for target in config.bitrates_kbps:
            if cheap_probe is not None:
                found = anchors.search_rate_probed(spec, target, probe, cheap_probe, max_probes=config.max_probes)
            else:
                found = anchors.search_rate(spec, target, probe, max_probes=config.max_probes)
            enc = found.chosen
            searches[codec].append({"target_kbps": target, "param": enc.param, "kbps": enc.kbps,
                                    "at_floor": found.at_floor, "method": found.method,
                                    "probes": [list(p) for p in found.probes],
                                    "cheap_probes": [list(p) for p in found.cheap_probes]})
            if enc.param in done:  # two targets landed on one encode (e.g. both below the floor)
                tick(f"{codec} {target:g}")
                continue
            done.add(enc.param)
            decoded, dec_s = anchors.decode(spec, enc.bitstream, n, ffmpeg)
            add(codec, f"{spec.control}{enc.param}", decoded, enc.kbps, n / enc.encode_s, n / max(dec_s, 1e-9),
                target_kbps=target, param=enc.param, at_floor=found.at_floor)
            if codec in ("vvc", "av1") and (codec not in shown or enc.kbps < shown[f"{codec}_kbps"]):
                shown[codec], shown[f"{codec}_kbps"] = decoded, enc.kbps
            tick(f"{codec} {target:g}")

    strip = out_dir / "strips" / f"{clip.clip_id}.png"
    write_strip(strip, shown, STRIP_FRAMES)
    result = {
        "clip": clip.clip_id, "split": clip.split, "num_frames": n, "duration_s": duration_s,
        "has_audio": bool(clip.has_audio), "problems": list(clip.problems), "config_key": config.key(),
        "reference": {"sync_corr": _round(ref_sync), "sync_lag_frames": ref_lag,
                      "jitter": _round(quality.landmark_jitter(ref_lm))},
        "rows": rows, "cross_rows": cross_rows, "searches": searches, "strip": str(strip.relative_to(out_dir)),
    }
    path = out_dir / "clips" / f"{clip.clip_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def load_done(out_dir: Path, clip_id: str, config: BenchConfig) -> dict | None:
    """A finished clip's saved result, when it was made with the same settings."""
    path = out_dir / "clips" / f"{clip_id}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    return data if data.get("config_key") == config.key() else None


def write_strip(path: Path, shown: dict[str, np.ndarray], num_frames: int) -> None:
    """Frame strip: one row per sampled frame, columns original | avfr | H.266 | AV1 (those present)."""
    cols = [k for k in ("original", "avfr", "vvc", "av1") if k in shown]
    n = len(shown["original"])
    idx = np.unique(np.linspace(0, n - 1, min(num_frames, n)).round().astype(int))
    grid = np.concatenate([np.concatenate([shown[c][i] for c in cols], axis=1) for i in idx], axis=0)
    header = np.full((24, grid.shape[1], 3), 255, np.uint8)
    for j, c in enumerate(cols):
        label = c if c == "original" else f"{c} {shown[f'{c}_kbps']:.1f}k"
        cv2.putText(header, label, (j * 256 + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([header, grid]), cv2.COLOR_RGB2BGR))
