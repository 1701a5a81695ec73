"""The loopback call in realtime mode (the default of `avfr-codec call`, the only mode of send / receive):
as many frames out as went in, every frame's speech in the output and in the mp4, with or without loss."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = "retalking_2"
NUM_FRAMES = 50


def _call(tmp_path: Path, impairment=None):
    from avfr.benchmarks import loopback_call
    from avfr.codec.data import decode_audio
    from avfr.codec.runtime import decode_source_image
    from avfr.receiver.output import Mp4Writer
    from avfr.sender.track import FileSource

    video, wav, still = DATA / "clips" / f"{CLIP}.mp4", DATA / "clips" / f"{CLIP}.wav", DATA / "stills" / f"{CLIP}.png"
    if not (video.exists() and wav.exists() and still.exists()):
        pytest.skip(f"../shared/data not found: {video}")
    writer = Mp4Writer(tmp_path / "received.mp4")
    result = asyncio.run(loopback_call(FileSource(video, wav, NUM_FRAMES), decode_source_image(still.read_bytes()),
                                       impairment=impairment, realtime=True, on_frame=writer.write, timeout_s=300))
    writer.close(result.decoder.frames_decided)
    pcm, _, _ = decode_audio(wav)
    return result, writer.path, pcm[: 640 * NUM_FRAMES]


def _frame_db(pcm: np.ndarray) -> np.ndarray:
    """Level of each 40 ms frame, dBFS."""
    frames = pcm[: len(pcm) // 640 * 640].reshape(-1, 640).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def test_every_frame_and_its_speech_come_out(tmp_path):
    import av

    result, mp4, sent = _call(tmp_path)
    frames, dec = result.frames, result.decoder
    assert abs(dec.frames_decided - NUM_FRAMES) <= 2
    assert [f.index for f in frames] == list(range(dec.frames_decided))
    received = np.concatenate([f.pcm for f in frames])[: len(sent)]
    speech = _frame_db(sent) > -40
    assert speech.sum() > 10
    assert not np.any(speech & (_frame_db(received) < -50)), "speech frames came out silent"
    with av.open(str(mp4)) as container:
        assert sum(1 for _ in container.decode(video=0)) == dec.frames_decided
    with av.open(str(mp4)) as container:
        written = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    ref = received[1600:-1600].astype(np.float64)
    corr = [float(np.dot(ref, written[1600 + lag : 1600 + lag + len(ref)])) for lag in range(-320, 321)]
    assert abs(int(np.argmax(corr)) - 320) <= 16  # the mp4's speech is where the frames' is (1 ms)
    assert not np.any(speech & (_frame_db(written[: len(sent)]) < -50))


def test_frame_count_under_loss_and_jitter(tmp_path):
    from avfr.sender.track import Impairment

    result, _, _ = _call(tmp_path, Impairment(loss=0.3, jitter_ms=100.0, seed=3))
    dec = result.decoder
    assert abs(dec.frames_decided - NUM_FRAMES) <= 2
    assert [f.index for f in result.frames] == list(range(dec.frames_decided))
    assert dec.lost > 0 and dec.audio_concealed > 0
