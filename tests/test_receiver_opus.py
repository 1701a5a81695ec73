"""avfr.codec.runtime.opus: decoded speech lines up with the sender's input; lost packets are concealed."""

from __future__ import annotations

import numpy as np


def _speechlike(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * env * rng.standard_normal(n)).astype(np.float32)


def test_round_trip_is_aligned():
    from avfr.codec.runtime import OpusDecoder, OpusEncoder

    pcm = _speechlike(16000)
    enc, dec = OpusEncoder(12_000), OpusDecoder(12_000)
    for packet in enc.encode(pcm) + enc.flush():
        dec.decode(packet)
    out = dec.take()
    assert len(out) >= len(pcm) - 400
    ref = pcm[800:15000].astype(np.float64)
    corr = [float(np.dot(ref, out[800 + lag : 15000 + lag])) for lag in range(-100, 101)]
    assert abs(int(np.argmax(corr)) - 100) <= 2


def test_loss_is_concealed_and_keeps_the_timeline():
    from avfr.codec.runtime import OPUS_FRAME_SAMPLES, OpusDecoder, OpusEncoder

    pcm = _speechlike(8000)
    packets = OpusEncoder(12_000).encode(pcm)
    full, lossy = OpusDecoder(12_000), OpusDecoder(12_000)
    for i, p in enumerate(packets):
        full.decode(p)
        if i in (5, 6):
            lossy.conceal()
        else:
            lossy.decode(p)
    assert lossy.concealed == 2
    assert abs(len(full.take()) - len(lossy.take())) <= OPUS_FRAME_SAMPLES
    lossy.decode(b"\xff\xff\xff")  # garbage is concealed, never raised


def test_decoded_level_matches_the_input():
    """Mono in, mono out at the same level: no +3 dB from a stereo decode and its downmix."""
    from avfr.codec.runtime import OpusDecoder, OpusEncoder

    t = np.arange(32000) / 16000
    for amplitude in (0.3, 0.9):
        tone = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        enc, dec = OpusEncoder(12_000), OpusDecoder(12_000)
        for packet in enc.encode(tone) + enc.flush():
            dec.decode(packet)
        out = dec.take()[3200:28800].astype(np.float64)
        level_db = 20 * np.log10(np.sqrt(np.mean(out**2)) / (amplitude / np.sqrt(2)))
        assert abs(level_db) < 0.5, f"{amplitude}: {level_db:+.2f} dB"
        assert np.abs(out).max() < 1.0
