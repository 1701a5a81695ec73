"""The rate-quality benchmark behind ``avfr-codec bench``: avfr, a zero-bit still, and anchor codecs.

Per clip (256x256, 25 fps; frame 0 is the source image, all frames are the driving video):

- ``avfr``: :func:`avfr_path`, the call's code minus the network: ``avfr.sender.Encoder`` -> wire messages
  (keypoint, audio and source-image bytes counted separately) -> ``avfr.receiver.Decoder`` -> frames, the
  generator driven by the Opus-decoded speech. One row per operating point (:class:`AvfrPoint`: the call's
  quantisation, hysteresis and key interval; "q7" is the call's default).
- ``still``: the receiver's decoded source image shown for every frame (zero video bits).
- anchors (``avfr.benchmarks.anchors``): the encode whose achieved rate is closest to each requested rate. vvenc's
  QP is searched on cheap probes (``BenchConfig.probe_preset``, whole clip) and only the QP found (plus at most
  one correction) is encoded at the reported preset (:func:`avfr.benchmarks.anchors.search_rate_probed`); x265 and
  SVT-AV1 are searched directly. Metrics are computed only for the reported encodes.

Work shared between rows is done once per clip: the sender's priors and keypoint graph (the same frames for
every operating point; :class:`SenderMemo`, their measured time still counted in each point's encoder time),
the still row's landmarks (one picture), the identity embedding of the source.

Every row shares the same speech (Opus, ``AUDIO_BITRATE_BPS``), so rates are video bits only.

Resume: a clip's result is made of parts (:func:`clip_parts`): the still row, each avfr operating point, the
cross-identity rows and each anchor codec (its rows at every target rate and its rate searches). Each part is
saved as ``<out>/clips/<clip_id>.parts/<name>-<key>.json`` (plus a PNG of its strip frames, for the strip's
columns), keyed by a hash of exactly the settings that change it (:class:`ClipPart`), and reused by any later
run into the same folder that needs it. So a new avfr model, or new points, re-runs only the avfr (and cross)
rows; a new rate or preset re-runs only the anchors; older parts stay for runs that go back. The assembled
result is ``<out>/clips/<clip_id>.json`` (keyed by the whole :class:`BenchConfig`: a re-run with the same
settings reads just that file); rows keep a fixed order, so a resumed clip equals a fresh run but for
timings. Anchor bitstreams are kept in ``<out>/work`` so an interrupted search resumes.
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

from avfr.benchmarks import anchors, quality
from avfr.codec.data import SAMPLES_PER_FRAME

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
        from avfr.codec.data import PriorExtractor
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
    concealed_frames: int = 0  # 0 unless kp_loss > 0 (the path is otherwise lossless)
    held: np.ndarray | None = None  # bool (T,): frames drawn from held keypoints (lost keypoint messages)


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
        key = _digest(rgb, size=16)
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
        key = _digest(frame5, size=16)
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
              loss_seed: int = 0) -> AvfrOutput:
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
    held = np.zeros(num_frames, bool)
    counts = {"kp": 0, "key": 0, "kp_bytes": 0, "audio": 0, "source": 0, "anchor": 0, "concealed": 0}
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
                      num_source_images=encoder.stats.source_images, concealed_frames=counts["concealed"],
                      held=held)


# ---------------------------------------------------------------------------------------------------------
# Metrics of one row


def identity_status(use_identity: bool = True) -> tuple[bool, str]:
    """Whether rows get an identity distance (dlib available and not switched off), and the report's note."""
    ok, note = quality.identity_backend()
    if ok and not use_identity:
        return False, "identity distance switched off (--no-identity)"
    return ok, note


@dataclass
class Evaluator:
    """Metric tools kept open across a run (mediapipe graph, dlib models)."""

    tracker: quality.LandmarkTracker
    embedder: quality.IdentityEmbedder | None
    id_note: str
    lips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def create(cls, use_identity: bool = True) -> Evaluator:
        ok, note = identity_status(use_identity)
        return cls(quality.LandmarkTracker(), quality.IdentityEmbedder() if ok else None, note,
                   quality.lip_indices())

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
# Settings and resume parts


@dataclass(frozen=True)
class BenchConfig:
    """Settings of a run (their hash keys the assembled per-clip files; :func:`clip_parts` keys the parts)."""

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

    def clip_frames(self, clip_num_frames: int) -> int:
        """Frames benchmarked of a clip of ``clip_num_frames`` frames (``max_frames``, 0: all)."""
        return clip_num_frames if self.max_frames <= 0 else min(self.max_frames, clip_num_frames)

    def featured_point(self) -> str:
        """The avfr point of the frame strip and the cross-identity rows: q8 when benched, else the first."""
        return "q8" if "q8" in self.avfr_points else self.avfr_points[0]


STRIP_ANCHORS = ("vvc", "av1")  # anchor columns of the frame strip (their lowest-rate encode)


@dataclass(frozen=True)
class ClipPart:
    """One independently reusable piece of a clip's result.

    Saved as ``<out>/clips/<clip_id>.parts/<name>-<key>.json``, plus ``<name>-<key>.png`` (its frames of the
    strip, stacked vertically) when it has a strip column. The key hashes everything that changes the part's
    rows and nothing else, so any later run into the same folder that needs the part reuses it.

    Attributes:
        kind: "still", "avfr" (one operating point), "cross" (the cross-identity rows) or "anchor" (one codec's
            rows at every target rate, and its rate searches).
        arg: the operating point ("avfr", "cross"), the codec ("anchor"), "" ("still").
        key: 16 hex digits of the SHA-256 of ``fields``.
        fields: canonical JSON of what the key hashes (copied into the part file).
        steps: progress-bar ticks when it is computed.
    """

    kind: str
    arg: str
    key: str
    fields: str
    steps: int

    @property
    def name(self) -> str:
        """The file name's stem: still, avfr-<point>, cross-<point> or the anchor codec."""
        return {"still": "still", "anchor": self.arg}.get(self.kind, f"{self.kind}-{self.arg}")

    def path(self, out_dir: Path, clip_id: str) -> Path:
        """The part's JSON file."""
        return out_dir / "clips" / f"{clip_id}.parts" / f"{self.name}-{self.key}.json"


def _digest(*arrays: np.ndarray, size: int = 8) -> str:
    """``2 * size`` hex digits of blake2b over the arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=size)
    for array in arrays:
        a = np.ascontiguousarray(array)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _part(kind: str, arg: str, steps: int, **fields: object) -> ClipPart:
    text = json.dumps(fields, sort_keys=True)
    return ClipPart(kind, arg, hashlib.sha256(text.encode()).hexdigest()[:16], text, steps)


def clip_parts(clip, config: BenchConfig, cross_source: np.ndarray | None = None) -> list[ClipPart]:
    """The parts of a clip's result, in the order of its rows.

    Keys: every part hashes the benchmarked frames, speech and reference landmarks, the metrics version and
    whether rows get an identity distance. The still row adds the source's WebP quality; an avfr point adds
    the model's manifest hash, its settings (:class:`AvfrPoint`), the path version and ``threads``; the cross
    part adds the cross source image; an anchor codec adds its encoder flags (with the preset and threads),
    those of its QP-search probes, the target rates, ``max_probes`` and the search version.

    Args:
        clip: a prepared clip (``avfr.codec.data.cache.ClipArrays``).
        config: the run's settings.
        cross_source: uint8 (256, 256, 3) source image of the cross-identity rows (None: no cross rows).
    """
    n = config.clip_frames(clip.num_frames)
    base = {"num_frames": n, "metrics_version": METRICS_VERSION,
            "inputs": _digest(clip.frames[:n], clip.pcm[: n * SAMPLES_PER_FRAME], clip.landmarks[:n]),
            "identity": identity_status(config.identity)[0]}
    parts = [_part("still", "", 1, **base, source_quality=SOURCE_WEBP_QUALITY)]
    if "avfr" in config.codecs:
        avfr = {**base, "model": config.model, "threads": config.threads, "avfr_path_version": AVFR_PATH_VERSION,
                "source_quality": SOURCE_WEBP_QUALITY, "audio_bitrate_bps": AUDIO_BITRATE_BPS}
        parts += [_part("avfr", p, 1, **avfr, point=asdict(AVFR_POINTS[p])) for p in config.avfr_points]
        if config.cross and cross_source is not None:
            p = config.featured_point()
            parts.append(_part("cross", p, 1, **avfr, point=asdict(AVFR_POINTS[p]),
                               cross_source=_digest(cross_source)))
    specs, cheap = anchors.anchor_specs(config.vvenc_preset, config.threads), probe_specs(config)
    for codec in config.codecs:
        if codec != "avfr":
            parts.append(_part("anchor", codec, len(config.bitrates_kbps), **base, spec=asdict(specs[codec]),
                               probe_spec=asdict(cheap[codec]) if codec in cheap else None,
                               bitrates_kbps=list(config.bitrates_kbps), max_probes=config.max_probes,
                               anchor_search_version=ANCHOR_SEARCH_VERSION))
    return parts


def _load_part(path: Path, part: ClipPart, strip_shape: tuple[int, ...]) -> dict | None:
    """A saved part (its strip frames, uint8 ``strip_shape``, under "strip_frames"), or None when it is absent,
    unreadable or not this part."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != part.key or not isinstance(data.get("rows"), list):
        return None
    if data.get("strip_kbps") is not None:
        png = path.with_suffix(".png")
        image = cv2.imread(str(png), cv2.IMREAD_COLOR) if png.is_file() else None
        s, h, w, c = strip_shape
        if image is None or image.shape != (s * h, w, c):
            return None
        data["strip_frames"] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).reshape(strip_shape)
    return data


def _save_part(path: Path, part: ClipPart, data: dict, strip_frames: np.ndarray | None) -> dict:
    """Write a part (PNG first, then the JSON, each by an atomic rename) and return it as :func:`_load_part`
    would read it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if strip_frames is not None:
        s, h, w, c = strip_frames.shape
        tmp = path.with_name(f"{path.stem}.tmp.png")
        if not cv2.imwrite(str(tmp), cv2.cvtColor(strip_frames.reshape(s * h, w, c), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {tmp}")
        tmp.replace(path.with_suffix(".png"))
    text = json.dumps({"part": part.name, "key": part.key, "fields": json.loads(part.fields), **data}, indent=1)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    saved = json.loads(text)
    if strip_frames is not None:
        saved["strip_frames"] = strip_frames
    return saved


def strip_indices(num_frames: int) -> np.ndarray:
    """The frames of the strip: int64 (<= STRIP_FRAMES,), spread evenly over ``num_frames``."""
    return np.unique(np.linspace(0, num_frames - 1, min(STRIP_FRAMES, num_frames)).round().astype(int))


def _strip_shape(clip, config: BenchConfig) -> tuple[int, ...]:
    return (len(strip_indices(config.clip_frames(clip.num_frames))), *clip.frames.shape[1:])


def missing_parts(out_dir: Path, clip, config: BenchConfig, cross_source: np.ndarray | None = None
                  ) -> list[ClipPart]:
    """The parts of a clip that :func:`run_clip` has to compute (no valid saved file in ``out_dir``)."""
    shape = _strip_shape(clip, config)
    return [p for p in clip_parts(clip, config, cross_source)
            if _load_part(p.path(out_dir, clip.clip_id), p, shape) is None]


# ---------------------------------------------------------------------------------------------------------
# One clip


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


@dataclass
class _ClipRun:
    """The inputs of one clip's rows and the tools that compute them (parts are computed by its methods)."""

    clip_id: str
    frames: np.ndarray  # uint8 (T, 256, 256, 3) RGB, frame 0 is the source
    ref_lm: np.ndarray  # float32 (T, 478, 2) px, the original's landmarks
    pcm: np.ndarray  # float32 (T * 640,) 16 kHz
    evaluator: Evaluator
    tick: Callable[[str], None]

    @property
    def source(self) -> np.ndarray:
        return self.frames[0]

    @property
    def duration_s(self) -> float:
        return len(self.frames) / anchors.FPS

    def row(self, codec: str, point: str, test: np.ndarray, kbps: float, enc_fps: float | None,
            dec_fps: float | None, test_lm: np.ndarray | None = None, **extra: object) -> dict:
        """One same-identity row: every metric of ``test`` uint8 (T, 256, 256, 3) against the original."""
        metrics = self.evaluator.full_reference(test, self.frames, self.ref_lm, self.pcm, self.source, test_lm)
        row = {"clip": self.clip_id, "codec": codec, "point": point, "kbps": kbps, **metrics,
               "enc_fps": enc_fps, "dec_fps": dec_fps, **extra}
        return {k: _round(v) for k, v in row.items()}

    def still(self) -> tuple[dict, None]:
        """The still row: the decoded source image, every frame."""
        from avfr.codec.runtime import decode_source_image, encode_source_image

        n = len(self.frames)
        src_decoded = decode_source_image(encode_source_image(self.source, SOURCE_WEBP_QUALITY))  # the Decoder's
        still_lm = np.repeat(self.evaluator.tracker(src_decoded[None]), n, 0)  # one picture: its landmarks
        row = self.row("still", "source", np.repeat(src_decoded[None], n, 0), 0.0, None, None, still_lm)
        self.tick("still")
        return {"rows": [row]}, None

    def avfr(self, name: str, models: AvfrModels, memo: SenderMemo) -> tuple[dict, np.ndarray]:
        """The row of one avfr operating point, and its strip frames."""
        n, point = len(self.frames), AVFR_POINTS[name]
        res = avfr_path(self.frames, self.pcm, self.source, point, models, memo=memo)
        kbps = res.packet_bytes * 8 / self.duration_s / 1000
        src_kbps = res.source_bytes * 8 / CALL_SECONDS / 1000
        row = self.row("avfr", name, res.frames, kbps, n / res.encode_s, n / res.decode_s,
                       packet_bytes=res.packet_bytes, num_packets=res.num_packets,
                       num_key_packets=res.num_key_packets, source_bytes=res.source_bytes,
                       source_kbps_5min=src_kbps, kbps_with_source_5min=kbps + src_kbps,
                       source_images=res.num_source_images, audio_kbps=res.audio_bytes * 8 / self.duration_s / 1000,
                       concealed_frames=res.concealed_frames, settings=json.dumps(asdict(point)))
        self.tick(f"avfr {name}")
        return {"rows": [row], "strip_kbps": kbps}, res.frames[strip_indices(n)]

    def cross(self, name: str, models: AvfrModels, memo: SenderMemo, cross_source: np.ndarray) -> tuple[dict, None]:
        """The cross-identity rows (avfr, then still) of one point, driven by this clip, source from another."""
        n = len(self.frames)
        ev = self.evaluator
        res = avfr_path(self.frames, self.pcm, cross_source, AVFR_POINTS[name], models, relative=True, memo=memo)
        metrics = ev.no_reference(res.frames, self.ref_lm, self.pcm, cross_source)
        cross_lm = np.repeat(ev.tracker(cross_source[None]), n, 0)
        still_metrics = ev.no_reference(np.repeat(cross_source[None], n, 0), self.ref_lm, self.pcm, cross_source,
                                        cross_lm)
        rows = [{k: _round(v) for k, v in {"clip": self.clip_id, "codec": codec, "point": name, **m}.items()}
                for codec, m in (("avfr", metrics), ("still", still_metrics))]
        self.tick("avfr cross")
        return {"rows": rows}, None

    def anchor(self, codec: str, config: BenchConfig, work: Path) -> tuple[dict, np.ndarray | None]:
        """One anchor codec's rows (one per distinct encode chosen for the target rates), its searches, and
        (``STRIP_ANCHORS``) the strip frames of its lowest-rate encode."""
        n, ffmpeg = len(self.frames), quality.ffmpeg_exe()
        spec = anchors.anchor_specs(config.vvenc_preset, config.threads)[codec]
        cheap_spec = probe_specs(config).get(codec)
        probe = _probe_cached(spec, self.frames, work / codec, ffmpeg)
        cheap_probe = None
        if cheap_spec is not None:
            cheap_probe = _probe_cached(cheap_spec, self.frames, work / f"{codec}-probe-{config.probe_preset}",
                                        ffmpeg)
        rows: list[dict] = []
        searches: list[dict] = []
        done: set[int] = set()
        shown: tuple[np.ndarray, float] | None = None
        for target in config.bitrates_kbps:
            if cheap_probe is not None:
                found = anchors.search_rate_probed(spec, target, probe, cheap_probe, max_probes=config.max_probes)
            else:
                found = anchors.search_rate(spec, target, probe, max_probes=config.max_probes)
            enc = found.chosen
            searches.append({"target_kbps": target, "param": enc.param, "kbps": enc.kbps,
                             "at_floor": found.at_floor, "method": found.method,
                             "probes": [list(p) for p in found.probes],
                             "cheap_probes": [list(p) for p in found.cheap_probes]})
            if enc.param not in done:  # else two targets landed on one encode (e.g. both below the floor)
                done.add(enc.param)
                decoded, dec_s = anchors.decode(spec, enc.bitstream, n, ffmpeg)
                rows.append(self.row(codec, f"{spec.control}{enc.param}", decoded, enc.kbps, n / enc.encode_s,
                                     n / max(dec_s, 1e-9), target_kbps=target, param=enc.param,
                                     at_floor=found.at_floor))
                if codec in STRIP_ANCHORS and (shown is None or enc.kbps < shown[1]):
                    shown = decoded[strip_indices(n)], enc.kbps
            self.tick(f"{codec} {target:g}")
        data = {"rows": rows, "searches": searches, "strip_kbps": None if shown is None else shown[1]}
        return data, None if shown is None else shown[0]


def run_clip(clip, config: BenchConfig, out_dir: Path, models: AvfrModels | None, evaluator: Evaluator | None,
             cross_source: np.ndarray | None = None, tick: Callable[[str], None] | None = None) -> dict:
    """Benchmark one prepared clip (``avfr.codec.data.cache.ClipArrays``), reusing the saved parts that still apply.

    Every part of :func:`clip_parts` with a valid file in ``<out>/clips/<clip_id>.parts/`` is read back; the
    others are computed and saved. Rows are assembled in a fixed order (still, avfr points, anchors in
    ``config.codecs`` order), so a resumed clip's result equals a fresh run's except for timings.

    Args:
        models: the avfr model (None is fine when no avfr or cross part is missing).
        evaluator: the metric tools (None is fine when no part is missing).
        cross_source: uint8 (256, 256, 3) source image of the cross-identity rows (another clip's frame 0).
        tick: called with a label after each computed step (:attr:`ClipPart.steps` per part).

    Returns:
        {"clip": ..., "rows": [...], "cross_rows": [...], "searches": {...}, "strip": path, ...}; also written
        to ``<out>/clips/<clip_id>.json`` (keyed by ``config.key()``, see :func:`load_done`).

    Raises:
        ValueError: a part is missing but the models or evaluator it needs are None.
    """
    n = config.clip_frames(clip.num_frames)
    frames = np.ascontiguousarray(clip.frames[:n])
    ref_lm = np.asarray(clip.landmarks[:n], np.float32)
    pcm = np.asarray(clip.pcm[: n * SAMPLES_PER_FRAME], np.float32)
    parts = clip_parts(clip, config, cross_source)
    shape = _strip_shape(clip, config)
    saved = {p.name: _load_part(p.path(out_dir, clip.clip_id), p, shape) for p in parts}
    missing = [p for p in parts if saved[p.name] is None]
    if missing and evaluator is None:
        raise ValueError(f"{clip.clip_id}: parts {', '.join(p.name for p in missing)} need an evaluator")
    if models is None and any(p.kind in ("avfr", "cross") for p in missing):
        raise ValueError(f"{clip.clip_id}: avfr parts are missing but no avfr model was given")
    if len(missing) < len(parts):
        logger.info("%s: reusing %s", clip.clip_id, ", ".join(p.name for p in parts if saved[p.name] is not None))

    if missing:
        run = _ClipRun(clip.clip_id, frames, ref_lm, pcm, evaluator, tick or (lambda _msg: None))
        memo = SenderMemo(models.extractor) if models is not None else None
    for part in missing:
        if part.kind == "still":
            data, strip = run.still()
        elif part.kind == "avfr":
            data, strip = run.avfr(part.arg, models, memo)
        elif part.kind == "cross":
            data, strip = run.cross(part.arg, models, memo, cross_source)
        else:
            data, strip = run.anchor(part.arg, config, out_dir / "work" / clip.clip_id)
        saved[part.name] = _save_part(part.path(out_dir, clip.clip_id), part, data, strip)

    shown: dict[str, np.ndarray | float] = {"original": frames[strip_indices(n)]}
    for part in parts:
        if (part.kind == "avfr" and part.arg == config.featured_point()) or (
                part.kind == "anchor" and part.arg in STRIP_ANCHORS):
            column = part.kind if part.kind == "avfr" else part.arg
            shown[column], shown[f"{column}_kbps"] = saved[part.name]["strip_frames"], saved[part.name]["strip_kbps"]
    strip = out_dir / "strips" / f"{clip.clip_id}.png"
    write_strip(strip, shown)
    ref_sync, ref_lag = quality.sync_proxy(ref_lm, pcm)
    result = {
        "clip": clip.clip_id, "split": clip.split, "num_frames": n, "duration_s": n / anchors.FPS,
        "has_audio": bool(clip.has_audio), "problems": list(clip.problems), "config_key": config.key(),
        "reference": {"sync_corr": _round(ref_sync), "sync_lag_frames": ref_lag,
                      "jitter": _round(quality.landmark_jitter(ref_lm))},
        "rows": [r for p in parts if p.kind != "cross" for r in saved[p.name]["rows"]],
        "cross_rows": [r for p in parts if p.kind == "cross" for r in saved[p.name]["rows"]],
        "searches": {p.arg: saved[p.name]["searches"] for p in parts if p.kind == "anchor"},
        "strip": str(strip.relative_to(out_dir)),
        "parts": [p.path(out_dir, clip.clip_id).name for p in parts],
    }
    path = out_dir / "clips" / f"{clip.clip_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def load_done(out_dir: Path, clip_id: str, config: BenchConfig) -> dict | None:
    """A finished clip's saved result, when it was made with the same settings (``config.key()``)."""
    path = out_dir / "clips" / f"{clip_id}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    return data if data.get("config_key") == config.key() else None


def write_strip(path: Path, shown: dict[str, np.ndarray | float]) -> None:
    """Frame strip: one row per strip frame, columns original | avfr | H.266 | AV1 (those present).

    Args:
        path: the PNG to write.
        shown: column name -> uint8 (S, 256, 256, 3) RGB frames (the same S frames of the clip in every
            column, e.g. :func:`strip_indices`); "<column>_kbps" -> its rate label (every column but "original").
    """
    cols = [k for k in ("original", "avfr", "vvc", "av1") if k in shown]
    grid = np.concatenate([np.concatenate([shown[c][i] for c in cols], axis=1)
                           for i in range(len(shown["original"]))], axis=0)
    header = np.full((24, grid.shape[1], 3), 255, np.uint8)
    for j, c in enumerate(cols):
        label = c if c == "original" else f"{c} {shown[f'{c}_kbps']:.1f}k"
        cv2.putText(header, label, (j * 256 + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([header, grid]), cv2.COLOR_RGB2BGR))
