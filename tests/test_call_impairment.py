"""The loopback call under impairment: 20 % random loss, reordering, up to 100 ms jitter, a burst of corrupt
packets, a duplicate Hello, a wrong-version message and a mid-call source refresh. It must finish with
the right frame count and count what it dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = "retalking_2"
NUM_FRAMES = 125


@pytest.fixture(scope="module")
def impaired_call():
    from avfr.benchmarks import loopback_call
    from avfr.codec.runtime import decode_source_image
    from avfr.sender.track import FileSource, Impairment

    video, wav, still = DATA / "clips" / f"{CLIP}.mp4", DATA / "clips" / f"{CLIP}.wav", DATA / "stills" / f"{CLIP}.png"
    if not (video.exists() and wav.exists() and still.exists()):
        pytest.skip(f"../shared/data not found: {video}")
    impairment = Impairment(loss=0.2, jitter_ms=100.0, corrupt_at_frame=30, corrupt_count=6,
                            duplicate_hello_at_frame=40, wrong_version_at_frame=50, refresh_at_frame=60, seed=7)
    result = asyncio.run(loopback_call(FileSource(video, wav, NUM_FRAMES), decode_source_image(still.read_bytes()),
                                       impairment=impairment, timeout_s=300))
    return result


def test_right_frame_count(impaired_call):
    frames = impaired_call.frames
    assert [f.index for f in frames] == list(range(NUM_FRAMES))
    assert all(f.rgb.shape == (256, 256, 3) and f.pcm.shape == (640,) for f in frames)


def test_drops_are_counted(impaired_call):
    d, link = impaired_call.decoder, impaired_call.link
    assert link.dropped_on_purpose > 0.1 * (link.frames * 3)  # ~20 % of keypoint + audio packets
    assert d.lost + d.dropped_late > 0
    assert d.concealed >= d.lost > 0
    assert d.audio_concealed > 0
    assert d.dropped_malformed >= link.injected_malformed == 7  # 6 corrupt media packets + 1 wrong version
    assert d.duplicate_hellos == 1
    assert d.key_requests > 0 and impaired_call.encoder.keys_requested > 0


def test_mid_call_source_refresh(impaired_call):
    d, frames = impaired_call.decoder, impaired_call.frames
    assert d.sources == 2 and impaired_call.encoder.refreshes >= 1
    ids = [f.source_id for f in frames]
    assert ids[0] == 1 and ids[-1] == 2 and ids == sorted(ids)


def test_concealed_frames_are_still_faces(impaired_call):
    frames = impaired_call.frames
    means = np.array([f.rgb.mean() for f in frames])
    assert np.all(means > 10) and np.all(means < 245)
