"""avfr.receiver.output.Mp4Writer: the mp4's speech starts with the first frame, at the level it was given."""

from __future__ import annotations

import numpy as np

NUM_FRAMES = 50


def _write(path, pcm: np.ndarray) -> None:
    from avfr.receiver import ReceivedFrame
    from avfr.receiver.output import Mp4Writer

    writer = Mp4Writer(path)
    for i in range(NUM_FRAMES):
        rgb = np.full((256, 256, 3), 4 * i, np.uint8)
        writer.write(ReceivedFrame(i, 3600 * i, rgb, pcm[640 * i : 640 * (i + 1)], False, 1, 0.0, 0.0))
    writer.close()


def _read(path) -> tuple[int, np.ndarray]:
    import av

    with av.open(str(path)) as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return video, audio


def test_audio_starts_with_the_first_frame_at_its_level(tmp_path):
    rng = np.random.default_rng(0)
    pcm = np.zeros(640 * NUM_FRAMES, np.float32)
    pcm[640 * 5 : 640 * 7] = 0.3 * rng.standard_normal(1280)  # a burst at frame 5 (200 ms)
    t = np.arange(640 * 25) / 16000
    pcm[640 * 20 : 640 * 45] = 0.9 * np.sin(2 * np.pi * 440 * t)  # a tone peaking at 0.9, frames 20-44
    path = tmp_path / "out.mp4"
    _write(path, pcm)
    video, audio = _read(path)
    assert video == NUM_FRAMES
    assert len(audio) >= len(pcm)
    ref = pcm[: 640 * 15].astype(np.float64)
    corr = [float(np.dot(ref, audio[lag : lag + len(ref)])) for lag in range(0, 1600)]
    lag = int(np.argmax(corr))
    assert lag <= 16, f"the mp4's audio is {lag / 16:.1f} ms late"  # AAC priming (1024 samples) trimmed
    tone, out = pcm[640 * 22 : 640 * 43], audio[640 * 22 : 640 * 43]
    level_db = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2) / np.mean(tone.astype(np.float64) ** 2)))
    assert abs(level_db) < 0.5
    assert np.abs(out).max() < 1.0
