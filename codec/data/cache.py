"""Prepared-clip cache: decoded frames, mediapipe priors and 16 kHz speech, computed once per clip.

Layout (one folder per clip, keyed by a content hash of the clip's files + PIPELINE_VERSION)::

    <cache>/v<PIPELINE_VERSION>/<clip_id>-<key16>/
        frames.npy     uint8 (T, 256, 256, 3) RGB      } plain .npy, opened with mmap_mode="r" so
        mesh.npy       uint8 (T, 256, 256)             } random frame access reads only that frame
        mask.npy       uint8 (T, 256, 256)             }
        arrays.npz     landmarks float32 (T, 478, 2) px (NaN = no face), num_faces uint8 (T,),
                       pcm float32 (T * 640,)   (compressed)
        meta.json      clip info, statistics and problems found
        complete.json  written last: pipeline version, key and size + sha256 of every file

An entry is built in a temporary sibling folder and renamed into place, so readers never see a
partial entry and concurrent builders cannot clash. An entry without a valid ``complete.json``, or
whose files disagree with it (size always; sha256 of small files always, of big files with
``verify=True``), is rebuilt. Clips that cannot be decoded at all get an entry that records the
failure, so re-runs skip them until their files change.

The cache lives outside the data folder (the shared data is read-only): by default
``$XDG_CACHE_HOME/avfr-codec`` or ``~/.cache/avfr-codec``.
"""

from __future__ import annotations

import hashlib
import json
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
    clip_log_mel,
    decode_audio,
    fit_length,
    rms_dbfs,
    speech_seconds,
)

logger = logging.getLogger(__name__)

PIPELINE_VERSION = 1  # bump when anything that changes cached content changes
FRAME_SIZE = 256
NUM_LANDMARKS = 478
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg")
SILENCE_DBFS = -60.0  # quieter audio counts as silent
TRACK_LENGTH_TOLERANCE_SAMPLES = SAMPLES_PER_FRAME  # an mp4's own audio may differ by one frame
_BIG_FILES = ("frames.npy", "mesh.npy", "mask.npy")
_SMALL_FILES = ("arrays.npz", "meta.json")
_MARKER = "complete.json"
_NPY_HEADER_BYTES = 128
_HASH_CHUNK = 1 << 22


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/avfr-codec``, or ``~/.cache/avfr-codec`` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avfr-codec"


@dataclass(frozen=True)
class ClipArrays:
    """One prepared clip (T frames at 25 fps, 256x256).

    frames: uint8 (T, 256, 256, 3) RGB (read-only memmap); landmarks: float32 (T, 478, 2) px, NaN rows
    when no face; face_found: bool (T,); mesh, mask: uint8 (T, 256, 256) (memmaps); pcm: float32
    (T * 640,) 16 kHz mono, zeros when no audio; mel: float32 (80, 4T + 29) = clip_log_mel(pcm);
    problems: human-readable notes found while preparing.
    """

    clip_id: str
    split: str
    frames: np.ndarray
    landmarks: np.ndarray
    face_found: np.ndarray
    mesh: np.ndarray
    mask: np.ndarray
    pcm: np.ndarray
    has_audio: bool
    mel: np.ndarray
    problems: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class ClipSource:
    """Where a clip's files are.

    audio_path: a sidecar WAV (sample 0 = first video frame); None means the video's own audio
    track, if any. expect_audio: the manifest says the clip has speech (plain videos: True).
    expected_frames: frame count from the manifest, None for plain videos.
    """

    clip_id: str
    split: str
    video_path: Path
    audio_path: Path | None
    expect_audio: bool
    expected_frames: int | None = None
    from_manifest: bool = False


@dataclass(frozen=True)
class CacheEntry:
    """A valid cache entry: its folder, and the clip's meta.json (statistics and problems)."""

    clip_id: str
    split: str
    path: Path
    meta: dict = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.meta.get("num_frames", 0))

    @property
    def failed(self) -> str | None:
        """Why the clip could not be prepared at all (None when it was)."""
        return self.meta.get("failed")

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self.meta.get("problems", ()))

    @property
    def has_audio(self) -> bool:
        return bool(self.meta.get("has_audio", False))


@dataclass
class PrepareSummary:
    """What :func:`prepare` did: valid entries (in clip order), and per-clip outcomes."""

    entries: list[CacheEntry]
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)  # were corrupt or partial
    missing: dict[str, str] = field(default_factory=dict)  # clip_id -> why it has no entry
    wall_s: float = 0.0


# ---------------------------------------------------------------------------------------------
# Finding clips


def discover_clips(data: str | Path) -> list[ClipSource]:
    """List the clips of a data folder.

    Args:
        data: a folder with ``manifest.json`` (clips/<id>.mp4 + <id>.wav, splits), a folder of
            plain videos (own audio track, or a same-stem .wav beside them), or one video file.

    Returns:
        Clip sources in manifest / sorted order.

    Raises:
        FileNotFoundError: ``data`` does not exist.
        ValueError: unreadable manifest, or no video found.
    """
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"data not found: {data}")
    if data.is_file():
        if data.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"{data} is not a video ({', '.join(VIDEO_EXTENSIONS)})")
        return [_plain_source(data)]
    manifest = data / "manifest.json"
    if manifest.exists():
        try:
            clips = json.loads(manifest.read_text())["clips"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read {manifest}: {exc}") from exc
        sources = []
        for clip in clips:
            clip_id = str(clip["id"])
            wav = data / "clips" / f"{clip_id}.wav"
            has_speech = bool(clip.get("has_speech", wav.exists()))
            sources.append(
                ClipSource(
                    clip_id=clip_id,
                    split=str(clip.get("split", "")),
                    video_path=data / "clips" / f"{clip_id}.mp4",
                    audio_path=wav if (has_speech or wav.exists()) else None,
                    expect_audio=has_speech,
                    expected_frames=int(clip["frames"]) if "frames" in clip else None,
                    from_manifest=True,
                )
            )
        return sources
    videos = sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise ValueError(f"no manifest.json and no videos ({', '.join(VIDEO_EXTENSIONS)}) in {data}")
    return [_plain_source(p) for p in videos]


def _plain_source(video: Path) -> ClipSource:
    wav = video.with_suffix(".wav")
    return ClipSource(
        clip_id=video.stem,
        split="",
        video_path=video,
        audio_path=wav if wav.exists() else None,
        expect_audio=True,
    )


def clip_key(source: ClipSource) -> str:
    """Content hash (sha256 hex) of a clip's files and the pipeline version.

    Raises:
        FileNotFoundError: the video is missing.
    """
    digest = hashlib.sha256(f"avfr-codec data v{PIPELINE_VERSION} {FRAME_SIZE}\n".encode())
    for path in (source.video_path, source.audio_path):
        digest.update(b"\0file\0")
        if path is None or not path.exists():
            if path is source.video_path:
                raise FileNotFoundError(f"video not found: {path}")
            digest.update(b"<none>")
            continue
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def entry_dir(cache_dir: Path, source: ClipSource, key: str) -> Path:
    """Folder of a clip's cache entry."""
    return Path(cache_dir) / f"v{PIPELINE_VERSION}" / f"{source.clip_id}-{key[:16]}"


# ---------------------------------------------------------------------------------------------
# Writing


class _NpyStreamWriter:
    """Write a uint8 .npy file item by item, without knowing the item count in advance.

    A fixed 128-byte header is reserved and rewritten with the final shape on close; the sha256 of
    the array data (header excluded) is computed on the way.
    """

    def __init__(self, path: Path, item_shape: tuple[int, ...]) -> None:
        self.path = path
        self.item_shape = item_shape
        self.count = 0
        self._hash = hashlib.sha256()
        self._fh = open(path, "wb")
        self._fh.write(b"\0" * _NPY_HEADER_BYTES)

    def append(self, item: np.ndarray) -> None:
        if item.shape != self.item_shape or item.dtype != np.uint8:
            raise ValueError(f"{self.path.name}: want uint8 {self.item_shape}, got {item.dtype} {item.shape}")
        data = np.ascontiguousarray(item).data
        self._fh.write(data)
        self._hash.update(data)
        self.count += 1

    def close(self) -> str:
        """Finish the file; returns the sha256 of the array data."""
        import io

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "|u1", "fortran_order": False, "shape": (self.count, *self.item_shape)}
        )
        if len(header.getvalue()) != _NPY_HEADER_BYTES:  # cannot happen for these shapes
            raise RuntimeError(f"unexpected .npy header size {len(header.getvalue())}")
        self._fh.seek(0)
        self._fh.write(header.getvalue())
        self._fh.close()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._fh.close()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_npy_data(path: Path) -> str:
    """sha256 of a .npy file's array data (header excluded)."""
    array = np.load(path, mmap_mode="r")
    flat = array.reshape(-1)
    digest = hashlib.sha256()
    for start in range(0, flat.size, _HASH_CHUNK):
        digest.update(np.ascontiguousarray(flat[start : start + _HASH_CHUNK]).data)
    return digest.hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


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
                "frames.npy": _NpyStreamWriter(tmp_dir / "frames.npy", (FRAME_SIZE, FRAME_SIZE, 3)),
                "mesh.npy": _NpyStreamWriter(tmp_dir / "mesh.npy", (FRAME_SIZE, FRAME_SIZE)),
                "mask.npy": _NpyStreamWriter(tmp_dir / "mask.npy", (FRAME_SIZE, FRAME_SIZE)),
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
            for name in _BIG_FILES:
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
        _write_json(tmp_dir / "meta.json", meta)
        files["meta.json"] = {}
        for name, info in files.items():
            path = tmp_dir / name
            info["size"] = path.stat().st_size
            if name in _SMALL_FILES:
                info["sha256"] = _sha256_file(path)
        _write_json(tmp_dir / _MARKER, {"pipeline_version": PIPELINE_VERSION, "key": key, "files": files})
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


# ---------------------------------------------------------------------------------------------
# Checking and reading


def check_entry(path: Path, verify: bool = False) -> str | None:
    """Why a cache entry is unusable, or None when it is valid.

    Args:
        path: entry folder.
        verify: also check the sha256 of the big arrays (reads everything).
    """
    marker = path / _MARKER
    if not marker.exists():
        return "no complete.json (partial entry)" if path.exists() else "missing"
    try:
        info = json.loads(marker.read_text())
        files = info["files"]
        if info.get("pipeline_version") != PIPELINE_VERSION:
            return f"pipeline version {info.get('pipeline_version')} != {PIPELINE_VERSION}"
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable complete.json: {exc}"
    for name, rec in files.items():
        file = path / name
        if not file.exists():
            return f"{name} missing"
        if file.stat().st_size != rec.get("size"):
            return f"{name} has {file.stat().st_size} bytes, expected {rec.get('size')}"
        if "sha256" in rec and _sha256_file(file) != rec["sha256"]:
            return f"{name} checksum mismatch"
        if name in _BIG_FILES:
            try:
                array = np.load(file, mmap_mode="r")
            except (ValueError, OSError) as exc:
                return f"{name} unreadable: {exc}"
            if array.dtype != np.uint8 or array.shape[1:3] != (FRAME_SIZE, FRAME_SIZE):
                return f"{name} has {array.dtype} {array.shape}"
            if verify and _sha256_npy_data(file) != rec.get("data_sha256"):
                return f"{name} checksum mismatch"
    return None


def _read_entry(path: Path, source: ClipSource) -> CacheEntry:
    meta = json.loads((path / "meta.json").read_text())
    return CacheEntry(clip_id=source.clip_id, split=source.split, path=path, meta=meta)


def open_clip(entry: CacheEntry) -> ClipArrays:
    """Open a cache entry: big arrays as read-only memmaps, the rest loaded.

    Raises:
        ValueError: the entry records a failed clip.
    """
    if entry.failed:
        raise ValueError(f"clip {entry.clip_id} could not be prepared: {entry.failed}")
    with np.load(entry.path / "arrays.npz", allow_pickle=False) as arrays:
        landmarks = arrays["landmarks"]
        num_faces = arrays["num_faces"]
        pcm = arrays["pcm"]
    return ClipArrays(
        clip_id=entry.clip_id,
        split=entry.split,
        frames=np.load(entry.path / "frames.npy", mmap_mode="r"),
        landmarks=landmarks,
        face_found=num_faces > 0,
        mesh=np.load(entry.path / "mesh.npy", mmap_mode="r"),
        mask=np.load(entry.path / "mask.npy", mmap_mode="r"),
        pcm=pcm,
        has_audio=entry.has_audio,
        mel=clip_log_mel(pcm),
        problems=entry.problems,
    )


# ---------------------------------------------------------------------------------------------
# Preparing


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
            found[index] = _read_entry(path, source)
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
                found[index] = _read_entry(path, source)
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


def cached_entries(
    data_dir: str | Path, cache_dir: str | Path | None = None, split: str | None = None
) -> tuple[list[CacheEntry], dict[str, str]]:
    """Look up a data folder's cache entries without building anything.

    Args:
        data_dir: see :func:`discover_clips`.
        cache_dir: cache root (default :func:`default_cache_dir`).
        split: only clips of this split (None: all).

    Returns:
        (valid entries in clip order, failed clips included; clip_id -> why it has no valid entry).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sources = discover_clips(data_dir)
    if split is not None:
        sources = [s for s in sources if s.split == split]
    entries: list[CacheEntry] = []
    missing: dict[str, str] = {}
    for source in sources:
        try:
            path = entry_dir(cache_dir, source, clip_key(source))
        except FileNotFoundError as exc:
            missing[source.clip_id] = str(exc)
            continue
        reason = check_entry(path)
        if reason is None:
            entries.append(_read_entry(path, source))
        else:
            missing[source.clip_id] = f"no valid cache entry ({reason})"
    return entries, missing


def find_entries(
    data_dir: str | Path,
    cache_dir: str | Path | None = None,
    split: str | None = None,
    prepare_missing: bool = True,
    progress: bool = False,
) -> list[CacheEntry]:
    """Valid cache entries of a data folder (failed clips included; see ``CacheEntry.failed``).

    Args:
        data_dir: see :func:`discover_clips`.
        cache_dir: cache root (default :func:`default_cache_dir`).
        split: "train", "dev", "" (plain videos) or None for all.
        prepare_missing: build missing entries (needs av + mediapipe); otherwise raise.
        progress: progress bar while preparing.

    Raises:
        FileNotFoundError: a clip is not prepared and ``prepare_missing`` is False.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entries, missing = cached_entries(data_dir, cache_dir, split)
    if missing:
        if not prepare_missing:
            first = next(iter(missing))
            raise FileNotFoundError(
                f"{len(missing)} clips of {data_dir} are not prepared in {cache_dir} "
                f"(e.g. {first}: {missing[first]}): "
                f"run `avfr-codec data prepare {data_dir} --cache {cache_dir}`"
            )
        summary = prepare(data_dir, cache_dir, split=split, progress=progress)
        for clip_id, why in summary.missing.items():
            logger.warning("skipping %s: %s", clip_id, why)
        entries = summary.entries
    return entries


def load_clips(
    data_dir: str | Path,
    cache_dir: str | Path | None = None,
    split: str | None = None,
    prepare_missing: bool = True,
) -> list[ClipArrays]:
    """Prepared clips of a data folder, frames/mesh/mask memory-mapped.

    Clips that could not be prepared at all (unreadable video) are skipped with a warning.

    Args:
        data_dir: folder with manifest.json, folder of videos, or one video.
        cache_dir: cache root (default :func:`default_cache_dir`).
        split: "train", "dev", "" (plain videos) or None for all.
        prepare_missing: prepare missing entries first (needs av + mediapipe); otherwise raise a
            FileNotFoundError telling to run ``avfr-codec data prepare``.

    Returns:
        list of ClipArrays in clip order.
    """
    clips = []
    for entry in find_entries(data_dir, cache_dir, split, prepare_missing):
        if entry.failed:
            logger.warning("skipping %s: %s", entry.clip_id, entry.failed)
            continue
        clips.append(open_clip(entry))
    return clips
