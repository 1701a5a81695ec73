"""The rate-quality benchmark behind ``avfr-codec bench``: avfr, a zero-bit still, and anchor codecs.

Per clip (256x256, 25 fps; frame 0 is the source image, all frames are the driving video):

- ``avfr``: :func:`avfr_path`, the call's media path minus the network: sender priors -> keypoints ->
  keypoint packets (bytes counted) -> receiver -> frames, with the Opus round-tripped speech driving the
  generator. One row per operating point (:class:`AvfrPoint`: quantisation, hysteresis, key interval).
- ``still``: the receiver's decoded source image shown for every frame (zero video bits).
- anchors (``avfr.codec.anchors``): the encode whose achieved rate is closest to each requested rate.

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
from avfr.codec.audio import clip_log_mel, mel_window, opus_roundtrip

logger = logging.getLogger(__name__)

AUDIO_BITRATE_BPS = 12_000  # Opus speech of every row (not counted in the video rates)
SOURCE_WEBP_QUALITY = 90
CALL_SECONDS = 300.0  # the source image is also reported amortised over a 5-minute call
ID_SAMPLES = 10  # frames per row for the identity embedding (~0.1 s each)
STRIP_FRAMES = 4


@dataclass(frozen=True)
class AvfrPoint:
    """One avfr operating point (keypoint stream settings; the session's quantisation is in its Hello).

    Attributes:
        name: row label.
        kp_bits, jac_bits: quantisation bit depths (QuantParams).
        kp_hysteresis_steps, jac_hysteresis_steps: encoder hysteresis (0.5 = plain rounding).
        key_interval_frames: a KEY packet at least every this many frames (the stream's refresh).
    """

    name: str
    kp_bits: int = 8
    jac_bits: int = 5
    kp_hysteresis_steps: float = 0.5
    jac_hysteresis_steps: float = 0.5
    key_interval_frames: int = 100


AVFR_POINTS: dict[str, AvfrPoint] = {
    "q6": AvfrPoint("q6", kp_bits=6, jac_bits=4, kp_hysteresis_steps=1.0, jac_hysteresis_steps=1.0,
                    key_interval_frames=250),
    "q7": AvfrPoint("q7", kp_bits=7, jac_bits=4, kp_hysteresis_steps=0.75, jac_hysteresis_steps=0.75,
                    key_interval_frames=250),
    "q8": AvfrPoint("q8"),
    "q10": AvfrPoint("q10", kp_bits=10, jac_bits=6),
}


@dataclass
class AvfrModels:
    """The shipped model's sender and receiver graphs and a prior extractor, loaded once."""

    sender: object
    receiver: object
    extractor: object
    model_name: str
    sha256: dict[str, str]

    @classmethod
    def load(cls, threads: int = 2) -> AvfrModels:
        """Load the shipped ONNX graphs (hashes checked) and mediapipe."""
        from avfr.codec.priors import PriorExtractor
        from avfr.codec.runtime import ReceiverModel, SenderModel, load_manifest
        from avfr.codec.weights import shipped_manifest

        manifest = load_manifest(shipped_manifest())
        sender = SenderModel(manifest.sender, threads=threads, expected_sha256=manifest.sha256["sender"])
        receiver = ReceiverModel.from_manifest(manifest, threads=threads)
        return cls(sender, receiver, PriorExtractor(mesh=True, mask=True), manifest.name, dict(manifest.sha256))

    def close(self) -> None:
        self.extractor.close()


@dataclass
class AvfrOutput:
    """What :func:`avfr_path` produced for one clip and operating point."""

    frames: np.ndarray  # uint8 (T, 256, 256, 3)
    packet_bytes: int  # keypoint packets, every byte on the wire for the video
    num_packets: int
    num_key_packets: int
    source_bytes: int  # the one-time WebP source image
    encode_s: float  # priors + keypoint detector + packet coding
    decode_s: float  # packet decoding + generator


def encode_source_image(rgb: np.ndarray, quality_pct: int = SOURCE_WEBP_QUALITY) -> bytes:
    """The source image as the call sends it: WebP (cv2) of a uint8 (256, 256, 3) RGB frame."""
    ok, buf = cv2.imencode(".webp", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_WEBP_QUALITY, int(quality_pct)])
    if not ok:
        raise RuntimeError("WebP encoding failed")
    return buf.tobytes()


def decode_source_image(data: bytes) -> np.ndarray:
    """WebP bytes -> uint8 (H, W, 3) RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode the source image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def avfr_path(frames: np.ndarray, pcm: np.ndarray, source_rgb: np.ndarray, point: AvfrPoint, models: AvfrModels,
              sender_cache: dict | None = None, relative: bool = False) -> AvfrOutput:
    """The call's media path without the network: frames + speech in, receiver frames out, bytes counted.

    TODO(lead): switch to ``avfr.sender.Encoder`` / ``avfr.receiver.Decoder`` once they exist; this is the
    only place that builds the avfr path from the pieces.

    Args:
        frames: uint8 (T, 256, 256, 3) RGB driving video at 25 fps.
        pcm: float32 (T * 640,) 16 kHz speech (round-tripped through Opus here, as the receiver hears it).
        source_rgb: uint8 (256, 256, 3) source image (sent once as WebP; the receiver uses the decoded one).
        point: operating point.
        models: loaded graphs.
        sender_cache: dict reused across operating points of one clip: the sender's keypoints (float, before
            quantisation) and their time are computed once.
        relative: cross-identity: FOMM relative motion against the first received frame.

    Returns:
        Frames, bytes and timings.
    """
    from avfr.codec.priors import five_channel
    from avfr.codec.runtime import relative_motion
    from avfr.proto import KeypointDecoder, KeypointEncoder, QuantParams, Session

    session = Session(num_kp=models.sender.num_kp, quant=QuantParams(point.kp_bits, point.jac_bits),
                      key_interval_frames=point.key_interval_frames)
    cache = sender_cache if sender_cache is not None else {}
    if "kp" not in cache:
        start = time.perf_counter()
        kps, jacs = [], []
        for rgb in frames:
            rgb = np.ascontiguousarray(rgb)
            pri = models.extractor(rgb)
            kp, jac = models.sender.keypoints(five_channel(rgb, pri.mesh, pri.mask))
            kps.append(kp)
            jacs.append(jac)
        cache.update(kp=np.stack(kps), jac=np.stack(jacs), sender_s=time.perf_counter() - start)
    start = time.perf_counter()
    encoder = KeypointEncoder(session, kp_hysteresis_steps=point.kp_hysteresis_steps,
                              jac_hysteresis_steps=point.jac_hysteresis_steps)
    packets = [encoder.encode(kp, jac, (i * session.ts_step_90k) % (1 << 32))
               for i, (kp, jac) in enumerate(zip(cache["kp"], cache["jac"], strict=True))]
    encode_s = cache["sender_s"] + time.perf_counter() - start
    source_bytes = encode_source_image(source_rgb)

    # Receiver.
    heard = opus_roundtrip(np.asarray(pcm, np.float32), AUDIO_BITRATE_BPS)
    mel = clip_log_mel(heard)  # (80, 4T + 29)
    start = time.perf_counter()
    src = decode_source_image(source_bytes)
    pri = models.extractor(src)
    models.receiver.set_source(five_channel(src, pri.mesh, pri.mask))
    decoder = KeypointDecoder(session)
    out = np.empty_like(frames)
    first = None
    num_key = 0
    for i, data in enumerate(packets):
        got = decoder.decode_bytes(data)
        if got is None:
            raise RuntimeError(f"packet {i} could not be decoded on a lossless path")
        num_key += int(got.key)
        kp, jac = got.kp, got.jac
        if relative:
            first = first or (kp, jac)
            kp_s, jac_s = models.receiver.source_keypoints
            kp, jac = relative_motion(kp, jac, first[0], first[1], kp_s, jac_s)
        out[i] = models.receiver.frame(kp, jac, mel_window(mel, i))
    decode_s = time.perf_counter() - start
    return AvfrOutput(out, sum(len(p) for p in packets), len(packets), num_key, len(source_bytes), encode_s, decode_s)


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
                       source_rgb: np.ndarray) -> dict:
        """Every same-identity metric of one decoded/generated video against the original."""
        lm = self.tracker(test)
        lmd, miss = quality.landmark_distance(lm, reference_lm)
        sync, lag = quality.sync_proxy(lm, pcm)
        return {
            "psnr": quality.psnr_db(test, reference), "ssim": quality.ssim(test, reference),
            "ms_ssim": quality.ms_ssim(test, reference), "vmaf": quality.vmaf(test, reference),
            "l1": quality.l1(test, reference), "lmd": lmd, "lmd_miss": miss,
            "mouth_lmd": quality.landmark_distance(lm, reference_lm, self.lips)[0],
            "sync_corr": sync, "sync_lag_frames": lag, "jitter": quality.landmark_jitter(lm),
            "id_dist": self.identity(test, source_rgb),
        }

    def no_reference(self, test: np.ndarray, driver_lm: np.ndarray, pcm: np.ndarray, source_rgb: np.ndarray) -> dict:
        """Cross-identity metrics: identity to the source, landmark motion to the driver, sync proxy, jitter."""
        lm = self.tracker(test)
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

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _probe_cached(spec: anchors.AnchorSpec, frames: np.ndarray, work: Path, ffmpeg: str
                  ) -> Callable[[int], anchors.Encoded]:
    """Encoder with an on-disk cache of bitstreams (``<work>/<param>.bin`` + encode time)."""
    work.mkdir(parents=True, exist_ok=True)

    def probe(param: int) -> anchors.Encoded:
        bin_path, meta_path = work / f"{param}.bin", work / f"{param}.json"
        if bin_path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("num_frames") == len(frames):
                return anchors.Encoded(param, bin_path.read_bytes(), float(meta["encode_s"]), len(frames))
        enc = anchors.encode(spec, frames, param, ffmpeg)
        bin_path.write_bytes(enc.bitstream)
        meta_path.write_text(json.dumps({"encode_s": enc.encode_s, "num_frames": len(frames), "kbps": enc.kbps}))
        logger.info("%s %s=%d: %.2f kbit/s in %.1f s", spec.name, spec.control, param, enc.kbps, enc.encode_s)
        return enc

    return probe


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
            **extra: object) -> None:
        metrics = evaluator.full_reference(test, frames, ref_lm, pcm, source)
        row = {"clip": clip.clip_id, "codec": codec, "point": point, "kbps": kbps, **metrics,
               "enc_fps": enc_fps, "dec_fps": dec_fps, **extra}
        rows.append({k: _round(v) for k, v in row.items()})

    ref_sync, ref_lag = quality.sync_proxy(ref_lm, pcm)
    # still: the decoded source image, every frame
    src_decoded = decode_source_image(encode_source_image(source))
    add("still", "source", np.repeat(src_decoded[None], n, 0), 0.0, None, None)
    tick("still")

    cross_rows: list[dict] = []
    if "avfr" in config.codecs:
        cache: dict = {}
        for name in config.avfr_points:
            point = AVFR_POINTS[name]
            res = avfr_path(frames, pcm, source, point, models, cache)
            kbps = res.packet_bytes * 8 / duration_s / 1000
            src_kbps = res.source_bytes * 8 / CALL_SECONDS / 1000
            add("avfr", name, res.frames, kbps, n / res.encode_s, n / res.decode_s,
                packet_bytes=res.packet_bytes, num_packets=res.num_packets, num_key_packets=res.num_key_packets,
                source_bytes=res.source_bytes, source_kbps_5min=src_kbps, kbps_with_source_5min=kbps + src_kbps,
                settings=json.dumps(asdict(point)))
            if "avfr" not in shown or name == "q8":
                shown["avfr"], shown["avfr_kbps"] = res.frames, kbps
            tick(f"avfr {name}")
        if config.cross and cross_source is not None:
            name = "q8" if "q8" in config.avfr_points else config.avfr_points[0]
            res = avfr_path(frames, pcm, cross_source, AVFR_POINTS[name], models, cache, relative=True)
            metrics = evaluator.no_reference(res.frames, ref_lm, pcm, cross_source)
            still_metrics = evaluator.no_reference(np.repeat(cross_source[None], n, 0), ref_lm, pcm, cross_source)
            for codec, m in (("avfr", metrics), ("still", still_metrics)):
                cross_rows.append({k: _round(v) for k, v in
                                   {"clip": clip.clip_id, "codec": codec, "point": name, **m}.items()})
            tick("avfr cross")

    specs = anchors.anchor_specs(config.vvenc_preset, config.threads)
    searches: dict[str, list[dict]] = {}
    for codec in config.codecs:
        if codec == "avfr":
            continue
        spec = specs[codec]
        probe = _probe_cached(spec, frames, out_dir / "work" / clip.clip_id / codec, ffmpeg)
        done: set[int] = set()
        searches[codec] = []
        for target in config.bitrates_kbps:
            found = anchors.search_rate(spec, target, probe, max_probes=config.max_probes)
            enc = found.chosen
            searches[codec].append({"target_kbps": target, "param": enc.param, "kbps": enc.kbps,
                                    "at_floor": found.at_floor, "probes": [list(p) for p in found.probes]})
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
        "has_audio": bool(clip.has_audio), "config_key": config.key(),
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
