"""Looking up a data folder's clips in the prepared-clip cache: valid entries, missing ones prepared on request,
opened as :class:`~avfr.codec.data.cache.ClipArrays`."""

from __future__ import annotations

import logging
from pathlib import Path

from avfr.codec.data.cache import (
    CacheEntry,
    ClipArrays,
    check_entry,
    clip_key,
    default_cache_dir,
    entry_dir,
    open_clip,
    read_entry,
)
from avfr.codec.data.preparation import prepare
from avfr.codec.data.sources import discover_clips

logger = logging.getLogger(__name__)


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
            entries.append(read_entry(path, source))
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
