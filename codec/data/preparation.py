"""Preparing the prepared-clip cache: decode each clip, run mediapipe, fit its speech to the frames, and write
its entry (format: ``avfr.codec.data.cache``); incremental, one bad clip does not stop the others."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfr.codec.data.audio import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    decode_audio,
    fit_length,
    rms_dbfs,
    speech_seconds,
)
from avfr.codec.data.cache import (
    BIG_FILES,
    FRAME_SIZE,
    PIPELINE_VERSION,
    CacheEntry,
    NpyStreamWriter,
    check_entry,
    clip_key,
    default_cache_dir,
    entry_dir,
    read_entry,
    seal_entry,
)
from avfr.codec.data.sources import ClipSource, discover_clips

logger = logging.getLogger(__name__)

SILENCE_DBFS = -60.0  # quieter audio counts as silent
TRACK_LENGTH_TOLERANCE_SAMPLES = SAMPLES_PER_FRAME  # an mp4's own audio may differ by one frame


@dataclass
class PrepareSummary:
    """What :func:`prepare` did: valid entries (in clip order), and per-clip outcomes."""

    entries: list[CacheEntry]
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)  # were corrupt or partial
    missing: dict[str, str] = field(default_factory=dict)  # clip_id -> why it has no entry
    wall_s: float = 0.0


def _load_audio(
    source: ClipSource, num_frames: int, video_start_s: float
) -> tuple[np.ndarray, bool, list[str]]:
    """16 kHz mono PCM of exactly ``num_frames * 640`` samples, whether it holds audio, problems."""
    problems: list[str] = []
    num_samples = num_frames * SAMPLES_PER_FRAME
    pcm: np.ndarray | None = None
    offset = 0
    tolerance = 0
    if source.audio_path is not None:
        if not source.audio_path.exists():
            problems.append(f"audio missing: {source.audio_path.name} not found")
        else:
            try:
                pcm, _, notes = decode_audio(source.audio_path)
                problems.extend(notes)
            except ValueError as exc:
                problems.append(f"audio unreadable: {exc}")
    else:
        try:
            pcm, audio_start_s, notes = decode_audio(source.video_path)
            problems.extend(notes)
            offset = int(round((audio_start_s - video_start_s) * SAMPLE_RATE))
            tolerance = TRACK_LENGTH_TOLERANCE_SAMPLES
        except ValueError:
            if source.expect_audio and not source.from_manifest:
                problems.append("no audio track")
    if pcm is None:
        if source.from_manifest and not source.expect_audio:
            problems.append("no audio (video-only clip)")
        return np.zeros(num_samples, np.float32), False, problems
    available = len(pcm) + offset
    if abs(available - num_samples) > tolerance:
        action = "zero-padded" if available < num_samples else "trimmed"
        problems.append(
            f"audio length {available / SAMPLE_RATE:.3f} s ({available} samples) != video "
            f"{num_samples / SAMPLE_RATE:.3f} s ({num_samples}): {action}"
        )
    pcm = fit_length(pcm, num_samples, offset)
    level = rms_dbfs(pcm)
    if level < SILENCE_DBFS:
        problems.append(f"audio is silent ({level:.0f} dBFS)")
        return np.zeros(num_samples, np.float32), False, problems
    return pcm, True, problems


def _build_entry(
    source: ClipSource,
    key: str,
    final_dir: Path,
    extractor: object,
    on_frame: Callable[[], None] | None = None,
) -> None:
    """Decode, run mediapipe, write the entry into a temp folder and rename it to ``final_dir``."""
    from avfr.codec.data.video import VideoReader  # lazy: av + mediapipe

    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".tmp-{final_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    started = time.perf_counter()
    meta: dict = {
        "clip_id": source.clip_id,
        "split": source.split,
        "key": key,
        "pipeline_version": PIPELINE_VERSION,
        "video": source.video_path.name,
        "audio": source.audio_path.name if source.audio_path else None,
    }
    files: dict[str, dict] = {}
    try:
        try:
            reader = VideoReader(source.video_path, size=FRAME_SIZE)
            writers = {
                "frames.npy": NpyStreamWriter(tmp_dir / "frames.npy", (FRAME_SIZE, FRAME_SIZE, 3)),
                "mesh.npy": NpyStreamWriter(tmp_dir / "mesh.npy", (FRAME_SIZE, FRAME_SIZE)),
                "mask.npy": NpyStreamWriter(tmp_dir / "mask.npy", (FRAME_SIZE, FRAME_SIZE)),
            }
            landmarks: list[np.ndarray] = []
            num_faces: list[int] = []
            try:
                for rgb in reader:
                    priors = extractor(rgb)
                    writers["frames.npy"].append(rgb)
                    writers["mesh.npy"].append(priors.mesh)
                    writers["mask.npy"].append(priors.mask)
                    landmarks.append(priors.landmarks)
                    num_faces.append(min(priors.num_faces, 255))
                    if on_frame is not None:
                        on_frame()
            except BaseException:
                for writer in writers.values():
                    writer.abort()
                raise
            for name, writer in writers.items():
                files[name] = {"data_sha256": writer.close()}
        except ValueError as exc:  # unreadable video: record the failure, keep nothing else
            meta["failed"] = str(exc)
            meta["problems"] = [f"failed: {exc}"]
            for name in BIG_FILES:
                (tmp_dir / name).unlink(missing_ok=True)
            files = {}
        if "failed" not in meta:
            num_frames = len(landmarks)
            faces = np.asarray(num_faces, np.uint8)
            pcm, has_audio, audio_problems = _load_audio(source, num_frames, reader.start_s)
            np.savez_compressed(
                tmp_dir / "arrays.npz",
                landmarks=np.stack(landmarks).astype(np.float32),
                num_faces=faces,
                pcm=pcm,
            )
            problems = list(reader.problems)
            if source.expected_frames is not None and source.expected_frames != num_frames:
                problems.append(f"{num_frames} frames decoded, manifest says {source.expected_frames}")
            no_face = int((faces == 0).sum())
            if no_face:
                problems.append(f"no face in {no_face} of {num_frames} frames (landmarks NaN)")
            multi = int((faces > 1).sum())
            if multi:
                problems.append(f"2 faces in {multi} frames (largest kept)")
            problems.extend(audio_problems)
            probe, crop = reader.probe, reader.crop
            meta.update(
                num_frames=num_frames,
                has_audio=has_audio,
                faces_found=int(num_frames - no_face),
                multi_face_frames=multi,
                speech_s=round(speech_seconds(pcm), 2) if has_audio else 0.0,
                audio_rms_dbfs=round(rms_dbfs(pcm), 1) if has_audio else None,
                source={
                    "width": probe.width,
                    "height": probe.height,
                    "fps": round(probe.fps, 3),
                    "frames": reader.source_frames,
                    "crop": None if crop is None else [crop.x0, crop.y0, crop.side],
                },
                problems=problems,
            )
            files["arrays.npz"] = {}
        meta["build_s"] = round(time.perf_counter() - started, 2)
        seal_entry(tmp_dir, key, meta, files)
        try:
            os.rename(tmp_dir, final_dir)
        except OSError:  # another process finished the same entry first
            if check_entry(final_dir) is not None:
                raise
            logger.debug("%s was built concurrently; keeping the other copy", final_dir.name)
            shutil.rmtree(tmp_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def prepare(
    data: str | Path,
    cache_dir: str | Path | None = None,
    split: str | None = None,
    verify: bool = False,
    force: bool = False,
    progress: bool = True,
    sources: Sequence[ClipSource] | None = None,
) -> PrepareSummary:
    """Build the cache entries of a data folder (incremental: valid entries are skipped).

    Args:
        data: see :func:`discover_clips`.
        cache_dir: cache root (default :func:`default_cache_dir`).
        split: only clips of this split.
        verify: checksum the big arrays of existing entries too.
        force: rebuild every entry.
        progress: show a tqdm bar (frames).
        sources: use these clips instead of discovering them.

    Returns:
        PrepareSummary; clips that could not be hashed (missing video) are in ``missing``.

    Raises:
        FileNotFoundError / ValueError: see :func:`discover_clips`.
    """
    started = time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if sources is None:
        sources = discover_clips(data)
    if split is not None:
        sources = [s for s in sources if s.split == split]
    summary = PrepareSummary(entries=[])
    todo: list[tuple[int, ClipSource, str, Path, bool]] = []
    found: dict[int, CacheEntry] = {}
    for index, source in enumerate(sources):
        try:
            key = clip_key(source)
        except FileNotFoundError as exc:
            summary.missing[source.clip_id] = str(exc)
            continue
        path = entry_dir(cache_dir, source, key)
        reason = "forced" if force else check_entry(path, verify=verify)
        if reason is None:
            found[index] = read_entry(path, source)
            summary.skipped.append(source.clip_id)
            continue
        if path.exists():
            logger.warning("cache entry %s is unusable (%s): rebuilding", path.name, reason)
            shutil.rmtree(path, ignore_errors=True)
        todo.append((index, source, key, path, reason != "missing"))
    if todo:
        from tqdm import tqdm  # lazy

        from avfr.codec.data.priors import PriorExtractor  # lazy: mediapipe

        total = sum(_estimate_frames(source) for _, source, _, _, _ in todo)
        with PriorExtractor() as extractor, tqdm(
            total=total, unit="frame", desc="data prepare", disable=not progress, dynamic_ncols=True
        ) as bar:
            for index, source, key, path, rebuilt in todo:
                bar.set_postfix_str(source.clip_id)
                try:
                    _build_entry(source, key, path, extractor, on_frame=lambda: bar.update(1))
                except Exception as exc:  # one bad clip must not stop the others
                    logger.error("%s: preparing failed: %s", source.clip_id, exc, exc_info=True)
                    summary.missing[source.clip_id] = f"preparing failed: {type(exc).__name__}: {exc}"
                    continue
                found[index] = read_entry(path, source)
                (summary.rebuilt if rebuilt else summary.built).append(source.clip_id)
    summary.entries = [found[i] for i in sorted(found)]
    summary.wall_s = time.perf_counter() - started
    return summary


def _estimate_frames(source: ClipSource) -> int:
    """Output frames expected for the progress bar (0 when unknown)."""
    if source.expected_frames is not None:
        return source.expected_frames
    try:
        from avfr.codec.data.video import probe_video

        probe = probe_video(source.video_path)
        return int(round(probe.num_frames / max(probe.fps, 1e-3) * 25)) if probe.num_frames else 0
    except (FileNotFoundError, ValueError):
        return 0
