"""avfr.receiver.track: received frames as standard aiortc MediaStreamTracks; a refused call ends cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _frame(index: int):
    from avfr.receiver import ReceivedFrame

    rgb = np.full((256, 256, 3), index, np.uint8)
    pcm = np.full(640, 0.25, np.float32)
    return ReceivedFrame(index, 3600 * index, rgb, pcm, False, 1, 0.0, 0.0)


def test_tracks_deliver_av_frames():
    from aiortc.mediastreams import MediaStreamError

    from avfr.receiver.track import ReceivedAudioTrack, ReceivedVideoTrack

    async def run():
        video, audio = ReceivedVideoTrack(), ReceivedAudioTrack()
        for i in range(3):
            video.put(_frame(i))
            audio.put(_frame(i))
        video._put(None)
        got = [await video.recv() for _ in range(3)]
        a = await audio.recv()
        with pytest.raises(MediaStreamError):
            await video.recv()
        return video, got, a

    video, got, a = asyncio.run(run())
    assert video.kind == "video" and video.readyState == "ended"
    assert [f.pts for f in got] == [0, 3600, 7200] and got[0].width == 256
    assert got[2].to_ndarray(format="rgb24")[0, 0, 0] == 2
    assert a.sample_rate == 16000 and a.samples == 640 and a.pts == 0
    assert abs(a.to_ndarray()[0, 0] / 32767 - 0.25) < 1e-3


def test_refused_call_ends_with_a_clear_error():
    from avfr.benchmarks import CallRefusedError, loopback_call
    from avfr.codec.runtime import CallModel, load_call_model
    from avfr.sender.track import FileSource

    video = DATA / "clips" / "retalking_2.mp4"
    if not video.exists():
        pytest.skip(f"../shared/data not found: {video}")
    model = load_call_model()
    other = CallModel(model.manifest, "some-other-model", model.weights_sha256)
    with pytest.raises(CallRefusedError, match="UNKNOWN_MODEL"):
        asyncio.run(loopback_call(FileSource(video, max_frames=10), receiver_model=other, timeout_s=60))
