"""Decoded clips shared by the processes of one machine through memory-mapped ``.npy`` files.

Distributed training reads a training bundle once per node: one process decodes it (``load_bundle``: video
decoding and mesh drawing, ~13 GB of frames and priors for the whole data set) and writes the arrays here with
:func:`save_mapped`; the others of the node open them with :func:`open_mapped`, frames, mesh and mask as
read-only memmaps (one copy in the page cache for all of them). Once every process has opened them the folder
can be removed (:func:`remove_mapped`): a mapping outlives its file.

Layout: ``index.json`` (written last: its presence means the copy is complete) lists the clips in order with
their id, split, audio flag, problems and number of mel variants; clip ``i`` lives in ``<i:05d>/`` as
``frames.npy``, ``mesh.npy``, ``mask.npy``, ``landmarks.npy``, ``face_found.npy``, ``pcm.npy``, ``mel.npy`` and
``variant<k>.npy``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from avfr.codec.data.cache import ClipArrays

_MAPPED = ("frames", "mesh", "mask")  # opened as memmaps
_LOADED = ("landmarks", "face_found", "pcm", "mel")
_INDEX = "index.json"


def save_mapped(directory: Path, clips: Sequence[ClipArrays],
                variants: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Write ``clips`` (and their mel ``variants`` by clip id) to ``directory`` (replaced when it exists)."""
    remove_mapped(directory)
    directory.mkdir(parents=True)
    index = []
    for i, clip in enumerate(clips):
        sub = directory / f"{i:05d}"
        sub.mkdir()
        for name in _MAPPED + _LOADED:
            np.save(sub / f"{name}.npy", np.ascontiguousarray(getattr(clip, name)))
        extra = list(variants.get(clip.clip_id, ()))
        for k, mel in enumerate(extra):
            np.save(sub / f"variant{k}.npy", np.asarray(mel))
        index.append({"clip_id": clip.clip_id, "split": clip.split, "has_audio": bool(clip.has_audio),
                      "problems": list(clip.problems), "variants": len(extra)})
    (directory / _INDEX).write_text(json.dumps(index))


def open_mapped(directory: Path) -> tuple[list[ClipArrays], dict[str, list[np.ndarray]]]:
    """The clips :func:`save_mapped` wrote (frames, mesh and mask memory-mapped) and their mel variants.

    Raises:
        FileNotFoundError: no complete copy in ``directory``.
    """
    index = json.loads((directory / _INDEX).read_text())
    clips, variants = [], {}
    for i, entry in enumerate(index):
        sub = directory / f"{i:05d}"
        arrays = {n: np.load(sub / f"{n}.npy", mmap_mode="r") for n in _MAPPED}
        arrays.update({n: np.load(sub / f"{n}.npy") for n in _LOADED})
        clips.append(ClipArrays(clip_id=entry["clip_id"], split=entry["split"], has_audio=entry["has_audio"],
                                problems=tuple(entry["problems"]), **arrays))
        variants[entry["clip_id"]] = [np.load(sub / f"variant{k}.npy") for k in range(entry["variants"])]
    return clips, variants


def remove_mapped(directory: Path) -> None:
    """Remove a copy (processes that opened it keep their mappings)."""
    shutil.rmtree(directory, ignore_errors=True)
