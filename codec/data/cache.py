"""Prepared-clip cache: the entry format (one folder per clip), checking entries and opening them.

Layout (one folder per clip, keyed by a content hash of the clip's files + PIPELINE_VERSION)::

    <cache>/v<PIPELINE_VERSION>/<clip_id>-<key16>/
        frames.npy     uint8 (T, 256, 256, 3) RGB      } plain .npy, opened with mmap_mode="r" so
        mesh.npy       uint8 (T, 256, 256)             } random frame access reads only that frame
        mask.npy       uint8 (T, 256, 256)             }
        arrays.npz     landmarks float32 (T, 478, 2) px (NaN = no face), num_faces uint8 (T,),
                       pcm float32 (T * 640,)   (compressed)
        meta.json      clip info, statistics and problems found
        complete.json  written last: pipeline version, key and size + sha256 of every file

An entry is built in a temporary sibling folder and renamed into place (``avfr.codec.data.preparation``),
so readers never see a partial entry and concurrent builders cannot clash. An entry without a valid
``complete.json``, or whose files disagree with it (size always; sha256 of small files always, of big
files with ``verify=True``), is rebuilt. Clips that cannot be decoded at all get an entry that records
the failure, so re-runs skip them until their files change.

The cache lives outside the data folder (the shared data is read-only): by default
``$XDG_CACHE_HOME/avfr-codec`` or ``~/.cache/avfr-codec``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfr.codec.data.audio import clip_log_mel
from avfr.codec.data.sources import ClipSource

PIPELINE_VERSION = 1  # bump when anything that changes cached content changes
FRAME_SIZE = 256
NUM_LANDMARKS = 478
BIG_FILES = ("frames.npy", "mesh.npy", "mask.npy")
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


# ---------------------------------------------------------------------------------------------
# Entry folders


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


class NpyStreamWriter:
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


def seal_entry(folder: Path, key: str, meta: dict, files: dict[str, dict]) -> None:
    """Write an entry's meta.json, then its complete.json (last: the entry is whole from then on).

    Args:
        folder: the entry's folder, holding the files named in ``files``.
        key: :func:`clip_key` of the clip.
        meta: clip info, statistics and problems.
        files: file name -> record (``{"data_sha256": ...}`` for the big arrays, ``{}`` otherwise); meta.json,
            the sizes and the sha256 of the small files are added in place.
    """
    _write_json(folder / "meta.json", meta)
    files["meta.json"] = {}
    for name, info in files.items():
        path = folder / name
        info["size"] = path.stat().st_size
        if name in _SMALL_FILES:
            info["sha256"] = _sha256_file(path)
    _write_json(folder / _MARKER, {"pipeline_version": PIPELINE_VERSION, "key": key, "files": files})


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
        if name in BIG_FILES:
            try:
                array = np.load(file, mmap_mode="r")
            except (ValueError, OSError) as exc:
                return f"{name} unreadable: {exc}"
            if array.dtype != np.uint8 or array.shape[1:3] != (FRAME_SIZE, FRAME_SIZE):
                return f"{name} has {array.dtype} {array.shape}"
            if verify and _sha256_npy_data(file) != rec.get("data_sha256"):
                return f"{name} checksum mismatch"
    return None


def read_entry(path: Path, source: ClipSource) -> CacheEntry:
    """The :class:`CacheEntry` of a valid entry folder (reads its meta.json)."""
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
