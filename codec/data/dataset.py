"""Training samples (Fs, Fd, priors, mel) from the prepared-clip cache, as a torch Dataset.

Sample ``idx`` is one driving frame Fd of the split (frames with a face only, by default); its
source frame Fs is drawn from the same clip by a generator seeded with ``(seed, epoch, idx)``, so a
run is reproducible and ``set_epoch`` gives new pairs. Big arrays are memory-mapped lazily in each
worker process (nothing open is pickled to workers), so the dataset is safe with any
``num_workers`` and start method.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from avfr.codec.data.audio import (
    SAMPLES_PER_FRAME,
    clip_log_mel,
    fit_length,
    log_mel_window,
    mel_window,
    opus_roundtrip,
    window_bounds,
)
from avfr.codec.data.cache import CacheEntry
from avfr.codec.data.lookup import find_entries
from avfr.codec.data.priors import five_channel

logger = logging.getLogger(__name__)

_OPUS_MARGIN_SAMPLES = SAMPLES_PER_FRAME  # codec context on each side of an augmented window


class _OpenClip:
    """Per-process handles of one clip: memmaps + PCM + clip mel."""

    def __init__(self, entry: CacheEntry) -> None:
        self.frames = np.load(entry.path / "frames.npy", mmap_mode="r")  # (T, 256, 256, 3) uint8
        self.mesh = np.load(entry.path / "mesh.npy", mmap_mode="r")  # (T, 256, 256) uint8
        self.mask = np.load(entry.path / "mask.npy", mmap_mode="r")  # (T, 256, 256) uint8
        with np.load(entry.path / "arrays.npz", allow_pickle=False) as arrays:
            self.pcm = arrays["pcm"]  # (T * 640,) float32
        self.mel = clip_log_mel(self.pcm)  # (80, 4T + 29)


class TalkingHeadDataset(Dataset):
    """Pairs (source, driving) of one clip with the driving frame's audio window.

    Args:
        entries: cache entries (see ``avfr.codec.data.lookup.find_entries``); failed clips are skipped.
        causal: past-only audio window instead of the centred one.
        require_face: use only frames where mediapipe found a face (for Fs and Fd).
        seed: base seed of the source-frame and augmentation choices.
        opus_bitrates_bps: bitrates for Opus round-trip augmentation of the audio window.
        opus_prob: probability of augmenting a sample (needs PyAV in the worker).

    ``__getitem__`` returns (source5 float32 (5, 256, 256), driving5 float32 (5, 256, 256),
    mel float32 (1, 80, 19)); 5 channels = R, G, B, mesh, mask in [0, 1].
    """

    def __init__(
        self,
        entries: Sequence[CacheEntry],
        causal: bool = False,
        require_face: bool = True,
        seed: int = 0,
        opus_bitrates_bps: Sequence[int] = (),
        opus_prob: float = 0.0,
    ) -> None:
        if opus_prob > 0 and not opus_bitrates_bps:
            raise ValueError("opus_prob > 0 needs opus_bitrates_bps")
        self.causal = causal
        self.seed = seed
        self.epoch = 0
        self.opus_bitrates_bps = tuple(int(b) for b in opus_bitrates_bps)
        self.opus_prob = float(opus_prob)
        self.entries: list[CacheEntry] = []
        self._valid: list[np.ndarray] = []  # per clip: usable frame indices (int64)
        for entry in entries:
            if entry.failed:
                logger.warning("skipping %s: %s", entry.clip_id, entry.failed)
                continue
            with np.load(entry.path / "arrays.npz", allow_pickle=False) as arrays:
                num_faces = arrays["num_faces"]  # (T,) uint8
            valid = np.flatnonzero(num_faces > 0) if require_face else np.arange(len(num_faces))
            if len(valid) < 2:
                logger.warning("skipping %s: fewer than 2 usable frames", entry.clip_id)
                continue
            self.entries.append(entry)
            self._valid.append(valid)
        if not self.entries:
            raise ValueError("no usable clips (every clip failed or has fewer than 2 frames with a face)")
        counts = np.array([len(v) for v in self._valid])
        self._clip_of_sample = np.repeat(np.arange(len(counts)), counts)  # (N,) clip index
        self._offset = np.concatenate([[0], np.cumsum(counts)[:-1]])  # first sample of each clip
        self._open: dict[int, _OpenClip] = {}
        self._pid = os.getpid()

    @classmethod
    def from_data_dir(
        cls,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        split: str | None = "train",
        prepare_missing: bool = False,
        **kwargs: object,
    ) -> TalkingHeadDataset:
        """Dataset of one split of a data folder, read from the cache.

        Raises:
            FileNotFoundError: clips are not prepared (run ``avfr-codec data prepare``) and
                ``prepare_missing`` is False.
        """
        entries = find_entries(data_dir, cache_dir, split=split, prepare_missing=prepare_missing)
        return cls(entries, **kwargs)

    def __len__(self) -> int:
        return len(self._clip_of_sample)

    def set_epoch(self, epoch: int) -> None:
        """Draw other source frames / augmentations (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = {}  # memmaps are reopened in each worker
        return state

    def _clip(self, clip_index: int) -> _OpenClip:
        if self._pid != os.getpid():  # forked worker: do not share the parent's handles
            self._open, self._pid = {}, os.getpid()
        clip = self._open.get(clip_index)
        if clip is None:
            clip = self._open[clip_index] = _OpenClip(self.entries[clip_index])
        return clip

    def sample_indices(self, idx: int) -> tuple[int, int, int, np.random.Generator]:
        """Clip index, source frame, driving frame and the sample's generator for sample ``idx``."""
        if not 0 <= idx < len(self):
            raise IndexError(f"sample {idx} outside dataset of {len(self)}")
        clip_index = int(self._clip_of_sample[idx])
        valid = self._valid[clip_index]
        position = idx - int(self._offset[clip_index])
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        other = int(rng.integers(len(valid) - 1))
        other += other >= position  # any usable frame but the driving one
        return clip_index, int(valid[other]), int(valid[position]), rng

    def _audio(self, clip: _OpenClip, frame: int, rng: np.random.Generator) -> np.ndarray:
        """(80, 19) log-mel of the driving frame, Opus-augmented with probability opus_prob."""
        if self.opus_prob > 0 and rng.random() < self.opus_prob:
            start, stop = window_bounds(frame, self.causal)
            lo = start - _OPUS_MARGIN_SAMPLES
            segment = fit_length(clip.pcm, stop - lo + _OPUS_MARGIN_SAMPLES, -lo)  # zeros outside
            bitrate = self.opus_bitrates_bps[int(rng.integers(len(self.opus_bitrates_bps)))]
            coded = opus_roundtrip(segment, bitrate)
            return log_mel_window(coded[_OPUS_MARGIN_SAMPLES : _OPUS_MARGIN_SAMPLES + stop - start])
        return mel_window(clip.mel, frame, self.causal)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_index, source, driving, rng = self.sample_indices(int(idx))
        clip = self._clip(clip_index)
        source5 = five_channel(clip.frames[source], clip.mesh[source], clip.mask[source])  # (5, 256, 256)
        driving5 = five_channel(clip.frames[driving], clip.mesh[driving], clip.mask[driving])
        mel = np.ascontiguousarray(self._audio(clip, driving, rng), dtype=np.float32)[None]  # (1, 80, 19)
        return torch.from_numpy(source5), torch.from_numpy(driving5), torch.from_numpy(mel)
