"""Mel side of the training pairs: clip-level log-mels of the clean speech and of real Opus round trips.

Audio augmentation is a real Opus encode/decode: per clip, the mel of ``opus_roundtrip(pcm, bitrate)`` at
each of ``OPUS_BITRATES_BPS`` is computed once when a ``TrainSet`` is built (or passed in, e.g. from a
training bundle) and each sample picks one at random (the receiver only ever hears Opus-decoded speech).
Variant 0 is always the clean mel.

Clips without audio (and every clip when ``use_audio=False``) get the *silent* mel: ``log(1e-5)``
everywhere, exactly what ``clip_log_mel`` gives for digital silence, so the network sees the same input
for "no speech" at training and at call time.

Windows are cut on the fixed grid of ``avfr.codec.data.audio`` (centred: columns [4i+10, 4i+29); causal:
[4i, 4i+19)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from avfr.codec.data import ClipArrays

OPUS_BITRATES_BPS: tuple[int, ...] = (8000, 12000, 16000)
MEL_BINS = 80
MEL_WINDOW_COLS = 19  # columns of one 200 ms window
MEL_COLS_PER_FRAME = 4  # 640 samples per video frame / hop 160
CENTRED_COL_OFFSET = 10  # centred window of frame i starts at column 4i + 10
SILENT_LOG_MEL = float(np.log(np.float32(1e-5)))  # log(max(mel, 1e-5)) of digital silence


def opus_log_mels(pcm: np.ndarray, bitrates_bps: Sequence[int]) -> list[np.ndarray]:
    """Clip-level log-mels of the speech after a real Opus round trip at each bitrate.

    Args:
        pcm: float32 (T*640,) mono 16 kHz in [-1, 1].
        bitrates_bps: Opus bitrates in bit/s.

    Returns:
        One float32 (80, 4T+29) log-mel per bitrate.

    Raises:
        ImportError: the Opus codec (PyAV) is not available; pass precomputed mels instead.
    """
    from avfr.codec.data import clip_log_mel, opus_roundtrip

    return [clip_log_mel(opus_roundtrip(pcm, int(bps))).astype(np.float32) for bps in bitrates_bps]


def stack_mels(clips: Sequence[ClipArrays], use_audio: bool, opus_mels: Mapping[str, Sequence[np.ndarray]] | None,
               bitrates_bps: Sequence[int], device: torch.device) -> tuple[tuple[str, ...], Tensor, Tensor]:
    """Stack every clip's mel variants (clean, then one per Opus bitrate) into one device tensor.

    Args:
        clips: the clips, in the set's order.
        use_audio: False gives every clip the silent mel.
        opus_mels: per clip id, precomputed Opus round-trip log-mels (each (80, 4T+29)); None computes them.
        bitrates_bps: bitrates of the Opus variants.
        device: where the stacked mels are kept.

    Returns:
        variant names ("clean", "opus<bps>", ...); (C,) int64 CPU first column of each clip; mels
        (V, sum M, 80) float32 on ``device`` (M = 4T+29 columns per clip, so a window is a gather of 19 rows).

    Raises:
        ValueError: mels whose shapes disagree with the clips, or a wrong number of Opus mels.
    """
    n_opus = len(bitrates_bps)
    variant_names = ("clean", *(f"opus{int(b)}" for b in bitrates_bps))
    per_clip = []
    for clip in clips:
        t = clip.frames.shape[0]
        n_cols = MEL_COLS_PER_FRAME * t + 29
        silent = np.full((MEL_BINS, n_cols), SILENT_LOG_MEL, np.float32)
        if not (use_audio and clip.has_audio):
            per_clip.append([silent] * (1 + n_opus))
            continue
        if clip.mel.shape != (MEL_BINS, n_cols):
            raise ValueError(f"clip {clip.clip_id}: mel {clip.mel.shape}, expected {(MEL_BINS, n_cols)}")
        if opus_mels is not None:
            variants = list(opus_mels.get(clip.clip_id, ()))
            if len(variants) != n_opus:
                raise ValueError(f"clip {clip.clip_id}: {len(variants)} Opus mels given, "
                                 f"expected {n_opus}")
        else:
            variants = opus_log_mels(np.asarray(clip.pcm, np.float32), bitrates_bps)
        for v in variants:
            if v.shape != clip.mel.shape:
                raise ValueError(f"clip {clip.clip_id}: Opus mel {v.shape}, expected {clip.mel.shape}")
        per_clip.append([np.asarray(clip.mel, np.float32),
                         *(np.asarray(v, np.float32) for v in variants)])
    cols = np.array([m[0].shape[1] for m in per_clip], np.int64)
    mel_off = torch.from_numpy(np.concatenate([[0], np.cumsum(cols)[:-1]]).astype(np.int64))
    mel = np.stack([np.concatenate([m[v] for m in per_clip], axis=1) for v in range(1 + n_opus)])
    # (V, 80, sum M) -> (V, sum M, 80) so a window is a gather of 19 rows
    return variant_names, mel_off, torch.from_numpy(np.ascontiguousarray(mel.transpose(0, 2, 1))).to(device)
