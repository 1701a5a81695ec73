"""The rate-quality benchmark behind ``avfr-codec bench``: avfr, a zero-bit still, and anchor codecs, per clip.

Per clip (256x256, 25 fps; frame 0 is the source image, all frames are the driving video):

- ``avfr``: :func:`avfr.benchmarks.avfr_call.avfr_path`, the call's code minus the network; one row per operating
  point (:class:`avfr.benchmarks.avfr_call.AvfrPoint`; "q7" is the call's default).
- ``still``: the receiver's decoded source image shown for every frame (zero video bits).
- anchors (``avfr.benchmarks.anchors``; reduced-size ones, ``avfr.benchmarks.reduced``, are shown upscaled and
  frame-repeated to 256x256 at 25 fps): the encode whose achieved rate is closest to each requested rate. vvenc's
  QP is searched on cheap probes (``BenchConfig.probe_preset``, whole clip) and only the QP found (plus at most
  one correction) is encoded at the reported preset (:func:`avfr.benchmarks.anchors.search_rate_probed`); x265 and
  SVT-AV1 are searched directly. Metrics (:class:`avfr.benchmarks.evaluator.Evaluator`) are computed only for the
  reported encodes.

Work shared between rows is done once per clip: the sender's priors and keypoint graph (the same frames for
every operating point; :class:`avfr.benchmarks.avfr_call.SenderMemo`, their measured time still counted in each
point's encoder time), the still row's landmarks (one picture), the identity embedding of the source.

Every row shares the same speech (Opus at ``BenchConfig.opus_kbps``; avfr's sender codes it and its generator
hears it decoded). Each row gets the rate columns of :mod:`avfr.benchmarks.accounting` when the clip is assembled:
two video accountings (``kbps_clip``, ``kbps_steady``) and the whole call (``kbps_call``: ``kbps_steady`` plus the
speech with its packet headers; the anchors' and the still row's speech is the clip's, encoded once here).

:func:`run_clip` computes only the parts of a clip without a saved file (:mod:`avfr.benchmarks.resume`) and
writes the clip's frame strip (:func:`write_strip`). Anchor bitstreams are kept in ``<out>/work`` so an
interrupted search resumes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from avfr.benchmarks import accounting, anchors, reduced
from avfr.benchmarks.accounting import CALL_SECONDS
from avfr.benchmarks.avfr_call import AVFR_POINTS, SOURCE_WEBP_QUALITY, AvfrModels, SenderMemo, avfr_path
from avfr.benchmarks.evaluator import Evaluator
from avfr.benchmarks.landmark_metrics import landmark_jitter, sync_proxy
from avfr.benchmarks.pixel_metrics import ffmpeg_exe
from avfr.benchmarks.resume import (
    STRIP_ANCHORS,
    BenchConfig,
    clip_parts,
    clip_strip_shape,
    load_saved,
    probe_specs,
    save_part,
    strip_indices,
)
from avfr.codec.data import SAMPLES_PER_FRAME

logger = logging.getLogger(__name__)

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
        webp = encode_source_image(self.source, SOURCE_WEBP_QUALITY)
        src_decoded = decode_source_image(webp)  # the Decoder's
        still_lm = np.repeat(self.evaluator.tracker(src_decoded[None]), n, 0)  # one picture: its landmarks
        row = self.row("still", "source", np.repeat(src_decoded[None], n, 0), 0.0, None, None, still_lm,
                       source_bytes=len(webp))
        self.tick("still")
        return {"rows": [row]}, None

    def avfr(self, name: str, models: AvfrModels, memo: SenderMemo, audio_bitrate_bps: int
             ) -> tuple[dict, np.ndarray]:
        """The row of one avfr operating point (speech at ``audio_bitrate_bps``), and its strip frames."""
        n, point = len(self.frames), AVFR_POINTS[name]
        res = avfr_path(self.frames, self.pcm, self.source, point, models, memo=memo,
                        audio_bitrate_bps=audio_bitrate_bps)
        # the clip's own video rate: keypoints + every source image after the first; the first is amortised
        # over a 5-minute call, as an anchor's first intra frame would be in a call
        kp_kbps = res.packet_bytes * 8 / self.duration_s / 1000
        kbps = (res.packet_bytes + res.refresh_bytes) * 8 / self.duration_s / 1000
        src_kbps = (res.source_bytes - res.refresh_bytes) * 8 / CALL_SECONDS / 1000
        row = self.row("avfr", name, res.frames, kbps, n / res.encode_s, n / res.decode_s,
                       packet_bytes=res.packet_bytes, num_packets=res.num_packets,
                       num_key_packets=res.num_key_packets, source_bytes=res.source_bytes,
                       keypoint_kbps=kp_kbps, refresh_bytes=res.refresh_bytes,
                       source_kbps_5min=src_kbps, kbps_with_source_5min=kbps + src_kbps,
                       source_images=res.num_source_images, audio_kbps=res.audio_bytes * 8 / self.duration_s / 1000,
                       audio_bytes=res.audio_bytes, audio_packets=res.audio_packets,
                       opus_target_kbps=audio_bitrate_bps / 1000, concealed_frames=res.concealed_frames,
                       settings=json.dumps(asdict(point)))
        self.tick(f"avfr {name}")
        return {"rows": [row], "strip_kbps": kbps}, res.frames[strip_indices(n)]

    def cross(self, name: str, models: AvfrModels, memo: SenderMemo, cross_source: np.ndarray,
              audio_bitrate_bps: int) -> tuple[dict, None]:
        """The cross-identity rows (avfr, then still) of one point, driven by this clip, source from another."""
        n = len(self.frames)
        ev = self.evaluator
        res = avfr_path(self.frames, self.pcm, cross_source, AVFR_POINTS[name], models, relative=True, memo=memo,
                        audio_bitrate_bps=audio_bitrate_bps)
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
        n, ffmpeg = len(self.frames), ffmpeg_exe()
        spec = reduced.bench_specs(config.vvenc_preset, config.threads)[codec]
        shape = {"size": spec.size, "fps": spec.fps} if reduced.is_reduced(spec) else {}
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
                decoded, dec_s = reduced.decode_display(spec, enc.bitstream, n, ffmpeg)  # (n, 256, 256, 3)
                rows.append(self.row(codec, f"{spec.control}{enc.param}", decoded, enc.kbps, n / enc.encode_s,
                                     n / max(dec_s, 1e-9), target_kbps=target, param=enc.param,
                                     at_floor=found.at_floor, **shape,
                                     **accounting.anchor_fields(enc.bitstream, spec.stream_format)))
                if codec in STRIP_ANCHORS and (shown is None or enc.kbps < shown[1]):
                    shown = decoded[strip_indices(n)], enc.kbps
            self.tick(f"{codec} {target:g}")
        data = {"rows": rows, "searches": searches, "strip_kbps": None if shown is None else shown[1]}
        return data, None if shown is None else shown[0]


def run_clip(clip, config: BenchConfig, out_dir: Path, models: AvfrModels | None, evaluator: Evaluator | None,
             cross_source: np.ndarray | None = None, tick: Callable[[str], None] | None = None) -> dict:
    """Benchmark one prepared clip (``avfr.codec.data.cache.ClipArrays``), reusing the saved parts that still apply.

    Every part of :func:`avfr.benchmarks.resume.clip_parts` with a valid file in
    ``<out>/clips/<clip_id>.parts/`` is read back; the others are computed and saved. Rows are assembled in a
    fixed order (still, avfr points, anchors in ``config.codecs`` order), so a resumed clip's result equals a
    fresh run's except for timings.

    Args:
        models: the avfr model (None is fine when no avfr or cross part is missing).
        evaluator: the metric tools (None is fine when no part is missing).
        cross_source: uint8 (256, 256, 3) source image of the cross-identity rows (another clip's frame 0).
        tick: called with a label after each computed step (:attr:`avfr.benchmarks.resume.ClipPart.steps`
            per part).

    Returns:
        {"clip": ..., "rows": [...], "cross_rows": [...], "searches": {...}, "strip": path, ...}; also written
        to ``<out>/clips/<clip_id>.json`` (keyed by ``config.key()``, see
        :func:`avfr.benchmarks.resume.load_done`).

    Raises:
        ValueError: a part is missing but the models or evaluator it needs are None.
    """
    n = config.clip_frames(clip.num_frames)
    frames = np.ascontiguousarray(clip.frames[:n])
    ref_lm = np.asarray(clip.landmarks[:n], np.float32)
    pcm = np.asarray(clip.pcm[: n * SAMPLES_PER_FRAME], np.float32)
    parts = clip_parts(clip, config, cross_source)
    shape = clip_strip_shape(clip, config)
    saved = {p.name: load_saved(out_dir, clip, config, p, shape) for p in parts}
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
            data, strip = run.avfr(part.arg, models, memo, config.audio_bitrate_bps)
        elif part.kind == "cross":
            data, strip = run.cross(part.arg, models, memo, cross_source, config.audio_bitrate_bps)
        else:
            data, strip = run.anchor(part.arg, config, out_dir / "work" / clip.clip_id)
        saved[part.name] = save_part(part.path(out_dir, clip.clip_id), part, data, strip)

    shown: dict[str, np.ndarray | float] = {"original": frames[strip_indices(n)]}
    for part in parts:
        if (part.kind == "avfr" and part.arg == config.featured_point()) or (
                part.kind == "anchor" and part.arg in STRIP_ANCHORS):
            column = part.kind if part.kind == "avfr" else part.arg
            shown[column], shown[f"{column}_kbps"] = saved[part.name]["strip_frames"], saved[part.name]["strip_kbps"]
    strip = out_dir / "strips" / f"{clip.clip_id}.png"
    write_strip(strip, shown)
    ref_sync, ref_lag = sync_proxy(ref_lm, pcm)
    rows = [dict(r) for p in parts if p.kind != "cross" for r in saved[p.name]["rows"]]
    speech = accounting.speech_stream(pcm, n, config.audio_bitrate_bps)  # the anchors' and the still row's
    accounting.add_rate_columns(rows, n / anchors.FPS, _source_bytes(frames[0]) if any(
        r["codec"] == "still" and "source_bytes" not in r for r in rows) else None, speech)
    result = {
        "clip": clip.clip_id, "split": clip.split, "num_frames": n, "duration_s": n / anchors.FPS,
        "has_audio": bool(clip.has_audio), "problems": list(clip.problems), "config_key": config.key(),
        "reference": {"sync_corr": _round(ref_sync), "sync_lag_frames": ref_lag,
                      "jitter": _round(landmark_jitter(ref_lm))},
        "speech": asdict(speech),
        "rows": rows,
        "cross_rows": [r for p in parts if p.kind == "cross" for r in saved[p.name]["rows"]],
        "searches": {p.arg: saved[p.name]["searches"] for p in parts if p.kind == "anchor"},
        "strip": str(strip.relative_to(out_dir)),
        "parts": [p.path(out_dir, clip.clip_id).name for p in parts],
    }
    path = out_dir / "clips" / f"{clip.clip_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def _source_bytes(source: np.ndarray) -> int:
    """The WebP source image's bytes (for still rows saved before they carried them)."""
    from avfr.codec.runtime import encode_source_image

    return len(encode_source_image(source, SOURCE_WEBP_QUALITY))


def write_strip(path: Path, shown: dict[str, np.ndarray | float]) -> None:
    """Frame strip: one row per strip frame, columns original | avfr | H.266 | AV1 (those present).

    Args:
        path: the PNG to write.
        shown: column name -> uint8 (S, 256, 256, 3) RGB frames (the same S frames of the clip in every
            column, e.g. :func:`avfr.benchmarks.resume.strip_indices`); "<column>_kbps" -> its rate label
            (every column but "original").
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
