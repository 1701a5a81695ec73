"""avfr.codec.data.audio: window timing (click track), global-grid mel == per-window mel, decoding, Opus."""

from __future__ import annotations

import numpy as np
import pytest
from codec_data_helpers import SHORT_CLIP, read_wav, require_shared_data

from avfr.codec.data import (
    LOG_FLOOR,
    SAMPLES_PER_FRAME,
    audio,
    clip_log_mel,
    log_mel_window,
    mel_filterbank,
    mel_window,
    opus_roundtrip,
    pcm_window,
    window_bounds,
)


def test_constants_and_bounds() -> None:
    assert (audio.SAMPLE_RATE, audio.FPS, SAMPLES_PER_FRAME, audio.MEL_FRAMES) == (16000, 25, 640, 19)
    assert window_bounds(10) == (6400 - 1600, 6400 + 1600)
    assert window_bounds(10, causal=True) == (6400 - 3200, 6400)


def test_shapes_and_dtypes() -> None:
    pcm = np.random.default_rng(0).uniform(-0.5, 0.5, 7 * 640).astype(np.float32)
    mel = clip_log_mel(pcm)
    assert mel.shape == (80, 4 * 7 + 29) and mel.dtype == np.float32
    window = log_mel_window(pcm_window(pcm, 3))
    assert window.shape == (80, 19) and window.dtype == np.float32
    assert mel_window(mel, 6).shape == (80, 19)
    with pytest.raises(IndexError):
        mel_window(mel, 7)
    with pytest.raises(ValueError):
        log_mel_window(np.zeros(3199, np.float32))
    # A partial last frame counts as a frame (zeros past the end).
    assert clip_log_mel(np.zeros(7 * 640 + 1, np.float32)).shape == (80, 4 * 8 + 29)


@pytest.mark.parametrize("causal", [False, True])
def test_click_track_window_covers_exactly_its_samples(causal: bool) -> None:
    """Frame i's window is exactly the samples [t_i - 100 ms, t_i + 100 ms) (causal: the 200 ms before)."""
    num_frames = 20
    clicks = np.arange(0, num_frames * 640, 37)  # a click every 37 samples: every offset is hit
    pcm = np.zeros(num_frames * 640, np.float32)
    pcm[clicks] = np.linspace(0.1, 0.9, len(clicks), dtype=np.float32)  # each click identifiable
    for i in range(num_frames):
        lo, hi = (640 * i - 3200, 640 * i) if causal else (640 * i - 1600, 640 * i + 1600)
        window = pcm_window(pcm, i, causal)
        expected = np.zeros(3200, np.float32)
        inside = clicks[(clicks >= lo) & (clicks < hi)]
        expected[inside - lo] = pcm[inside]
        np.testing.assert_array_equal(window, expected)


@pytest.mark.parametrize("causal", [False, True])
def test_click_at_window_edges_reaches_the_mel(causal: bool) -> None:
    """A click near either edge changes the frame's mel; one just outside does not.

    (The Hann taper gives the first/last few samples almost no weight, so "near" is 20 samples.)
    """
    frame = 12
    lo, hi = window_bounds(frame, causal)
    silence = np.full((80, 19), np.log(LOG_FLOOR), np.float32)
    for sample, inside in ((lo + 20, True), (hi - 20, True), (lo - 1, False), (hi, False)):
        pcm = np.zeros(30 * 640, np.float32)
        pcm[sample] = 1.0
        mel = mel_window(clip_log_mel(pcm), frame, causal)
        assert (not np.array_equal(mel, silence)) == inside, (sample, lo, hi)


@pytest.mark.parametrize("causal", [False, True])
def test_global_grid_equals_per_window_mel(causal: bool) -> None:
    rng = np.random.default_rng(1)
    num_frames = 30
    t = np.arange(num_frames * 640) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t))
    pcm = (chirp + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    clip_mel = clip_log_mel(pcm)
    for i in range(num_frames):
        np.testing.assert_allclose(
            mel_window(clip_mel, i, causal), log_mel_window(pcm_window(pcm, i, causal)), rtol=0, atol=1e-5
        )


def test_global_grid_equals_per_window_mel_on_real_speech() -> None:
    pcm = read_wav(require_shared_data() / "clips" / f"{SHORT_CLIP}.wav")
    clip_mel = clip_log_mel(pcm)
    for i in (0, 1, 37, len(pcm) // 640 - 1):
        for causal in (False, True):
            np.testing.assert_allclose(
                mel_window(clip_mel, i, causal), log_mel_window(pcm_window(pcm, i, causal)), atol=1e-5
            )


def test_mel_filterbank_places_a_tone() -> None:
    bank = mel_filterbank()
    assert bank.shape == (80, 257)
    assert (bank.sum(axis=1) > 0).all()  # no empty filter at 512-point resolution
    centres = (bank * np.linspace(0, 8000, 257)).sum(1) / bank.sum(1)
    assert np.all(np.diff(centres) > 0) and 55 < centres[0] < 150 and 7000 < centres[-1] < 7600
    t = np.arange(3200) / 16000
    for freq in (300.0, 1000.0, 4000.0):
        mel = log_mel_window((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
        assert abs(centres[int(mel[:, 9].argmax())] - freq) < 0.08 * freq


def test_decode_audio_wav_and_fit_length(tmp_path) -> None:
    data = require_shared_data()
    pcm, start_s, problems = audio.decode_audio(data / "clips" / f"{SHORT_CLIP}.wav")
    assert pcm.dtype == np.float32 and pcm.shape == (75 * 640,) and start_s == 0.0 and problems == []
    np.testing.assert_allclose(pcm, read_wav(data / "clips" / f"{SHORT_CLIP}.wav"), atol=1e-4)
    assert audio.fit_length(np.arange(1, 4, dtype=np.float32), 5, 1).tolist() == [0, 1, 2, 3, 0]
    assert audio.fit_length(np.arange(1, 4, dtype=np.float32), 2, -1).tolist() == [2, 3]
    with pytest.raises(FileNotFoundError):
        audio.decode_audio(tmp_path / "nothing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError):
        audio.decode_audio(tmp_path / "junk.wav")


def test_speech_seconds_and_level() -> None:
    pcm = np.zeros(16000 * 2, np.float32)
    pcm[8000:24000] = 0.2 * np.sin(np.arange(16000) * 0.3)
    assert 0.95 <= audio.speech_seconds(pcm) <= 1.05
    assert audio.rms_dbfs(np.zeros(100, np.float32)) < -150


def _lag(reference: np.ndarray, signal: np.ndarray, max_lag: int = 40) -> int:
    core = slice(2000, len(reference) - 2000)
    scores = [np.dot(reference[core], np.roll(signal, -lag)[core]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def test_opus_roundtrip_is_time_aligned() -> None:
    noise = (0.1 * np.random.default_rng(7).standard_normal(16000)).astype(np.float32)
    out = opus_roundtrip(noise, 32000)
    assert out.shape == noise.shape and out.dtype == np.float32
    assert _lag(noise, out) == 0
    assert 60 <= audio.opus_delay_samples(32000) <= 400  # measured codec delay (6.5 ms with libopus 1.x)
    with pytest.raises(ValueError):
        opus_roundtrip(noise, 1000)
    assert opus_roundtrip(np.zeros(0, np.float32), 16000).shape == (0,)


def test_opus_roundtrip_on_speech() -> None:
    pcm = read_wav(require_shared_data() / "clips" / f"{SHORT_CLIP}.wav")[:24000]
    out = opus_roundtrip(pcm, 24000)
    assert out.shape == pcm.shape
    assert abs(_lag(pcm, out)) <= 1
    assert np.corrcoef(pcm, out)[0, 1] > 0.8
    # Low bitrate is still aligned and still speech-like.
    assert np.corrcoef(pcm, opus_roundtrip(pcm, 8000))[0, 1] > 0.5
