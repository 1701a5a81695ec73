"""The bench's shared sender work (avfr.benchmarks.avfr_call.SenderMemo) gives the call's exact packets and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "grid_lwbsza.mp4"
FRAMES = 5


@pytest.mark.slow
def test_sender_memo_is_bit_exact() -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.benchmarks import AVFR_POINTS, AvfrModels, SenderMemo, avfr_path
    from avfr.codec.data import default_cache_dir, load_clips

    (clip,) = load_clips(CLIP, default_cache_dir())
    frames = np.ascontiguousarray(clip.frames[:FRAMES])
    pcm = np.asarray(clip.pcm[: FRAMES * 640], np.float32)
    models = AvfrModels.load(threads=2)
    try:
        plain = avfr_path(frames, pcm, frames[0], AVFR_POINTS["q8"], models)
        memo = SenderMemo(models.extractor)
        avfr_path(frames, pcm, frames[0], AVFR_POINTS["q6"], models, memo=memo)  # computes and keeps
        saved_first = memo.saved_s
        shared = avfr_path(frames, pcm, frames[0], AVFR_POINTS["q8"], models, memo=memo)  # reuses
    finally:
        models.close()
    assert memo.saved_s > saved_first
    assert np.array_equal(shared.frames, plain.frames)
    assert (shared.packet_bytes, shared.num_packets, shared.source_bytes, shared.audio_bytes) == (
        plain.packet_bytes, plain.num_packets, plain.source_bytes, plain.audio_bytes)
    assert shared.encode_s > 0.0


@pytest.mark.slow
def test_dropped_keypoint_messages_are_held_and_still_counted() -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")
    from avfr.benchmarks import AVFR_POINTS, AvfrModels, avfr_path
    from avfr.codec.data import default_cache_dir, load_clips

    (clip,) = load_clips(CLIP, default_cache_dir())
    n = 12
    frames = np.ascontiguousarray(clip.frames[:n])
    pcm = np.asarray(clip.pcm[: n * 640], np.float32)
    models = AvfrModels.load(threads=2)
    try:
        plain = avfr_path(frames, pcm, frames[0], AVFR_POINTS["q7"], models)
        lossy = avfr_path(frames, pcm, frames[0], AVFR_POINTS["q7"], models, kp_loss=0.5, loss_seed=3)
    finally:
        models.close()
    assert plain.concealed_frames == 0 and not plain.held.any()
    assert lossy.held.any() and not lossy.held[0] and lossy.concealed_frames >= int(lossy.held.sum())
    # dropped messages count as sent, and the receiver's key requests make the sender send more key packets
    assert lossy.packet_bytes > plain.packet_bytes and lossy.num_key_packets > plain.num_key_packets
    assert np.array_equal(lossy.frames[~lossy.held][:1], plain.frames[:1])
