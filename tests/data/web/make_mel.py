"""Fixtures of the browser receiver's mel and resampler (web/src/mel.mjs, web/src/resample.mjs).

Run from anywhere with the project installed:  python tests/data/web/make_mel.py
Needs ../shared/data (the project's clips, next to the checkout) and PyAV. Writes, next to this file:

- ``mel.json`` + ``mel.bin``: real speech (the first 1.28 s of ``retalking_2``, decoded with
  ``avfr.codec.data.decode_audio``; stored as int16, which is lossless for a 16-bit WAV: checked) and
  Python's ``log_mel_window(pcm_window(pcm, i, causal))`` for some frames, synthetic windows (silence,
  full-scale sine, clipped noise, noise at the log floor) with their mel, ``window_bounds`` of frames 0..200
  in both modes and the nonzero spans of ``mel_filterbank``.
- ``resample.json`` + ``resample.bin``: 0.5 s of the same speech after an Opus round trip decoded at 48 kHz
  (as WebCodecs does; rounded to the int16 grid so both sides see identical input) and FFmpeg's swresample
  output of it at 16 kHz, exactly as the Python receiver resamples (``av.AudioResampler(format="flt",
  layout="mono", rate=16000)``, 20 ms frames, then flushed).

It also checks that the Python receiver's per-frame mel is ``log_mel_window`` of ``pcm_window``'s window
(``avfr.receiver.speech.SpeechTimeline.take_frame``), so the JavaScript is a drop-in for it.
Arrays in the .bin files are little-endian, each at an 8-byte aligned offset named in the .json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from avfr.codec.data.audio import (
    SAMPLE_RATE,
    decode_audio,
    log_mel_window,
    mel_filterbank,
    pcm_window,
    window_bounds,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared" / "data"
CLIP = "retalking_2"  # its .mp4 has no audio track (see ../shared/data/README.md): the speech is the .wav
SPEECH_SAMPLES = 20480  # 1.28 s
SPEECH_FRAMES = [(0, False), (0, True), (5, False), (8, False), (8, True), (12, False), (16, True), (20, True),
                 (24, False), (31, False)]  # 31 centred runs past the stored speech: zeros
BOUNDS_FRAMES = 201
RESAMPLE_START_48K = 14400  # 0.3 s into the decoded speech
RESAMPLE_SAMPLES_48K = 24000  # 0.5 s
OPUS_BITRATE = 12000


class _Bin:
    """Arrays packed into one little-endian file, each 8-byte aligned."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.index: dict[str, dict] = {}

    def add(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array)
        dtype = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f8", np.dtype(np.int16): "<i2"}[array.dtype]
        self.data += b"\0" * (-len(self.data) % 8)
        self.index[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "offset": len(self.data)}
        self.data += array.astype(dtype).tobytes()
        return name


def _speech() -> tuple[np.ndarray, np.ndarray]:
    """The clip's speech as decoded by the project (float32) and its int16 codes (checked lossless)."""
    pcm, _, problems = decode_audio(SHARED / "clips" / f"{CLIP}.wav")
    if problems:
        raise SystemExit(f"decoding {CLIP}: {problems}")
    codes = np.round(pcm.astype(np.float64) * 32768.0)
    if codes.min() < -32768 or codes.max() > 32767 or not np.array_equal((codes / 32768.0).astype(np.float32), pcm):
        raise SystemExit(f"{CLIP}: decoded speech is not on the int16 grid; store it as float32 instead")
    return pcm, codes.astype(np.int16)


def _check_receiver(pcm: np.ndarray) -> dict:
    """The receiver's per-frame mel is log_mel_window(pcm_window(...)): drive SpeechTimeline.take_frame."""
    import avfr.codec.data.audio as audio
    from avfr.receiver import speech

    assert speech.log_mel_window is audio.log_mel_window, "receiver/speech.py uses another mel function"
    checked = 0
    for causal in (False, True):
        timeline = speech.SpeechTimeline(opus=None, causal_window=causal)  # take_frame needs no decoder
        timeline._pcm = pcm.copy()
        for n in range(len(pcm) // 640):
            mel, own = timeline.take_frame(n)
            want = log_mel_window(pcm_window(pcm, n, causal))
            assert mel.dtype == np.float32 and mel.shape == (80, 19) and np.array_equal(mel, want), (n, causal)
            assert np.array_equal(own, pcm[640 * n : 640 * n + 640])
            checked += 1
    return {
        "function": "avfr.codec.data.audio.log_mel_window",
        "window": "avfr.receiver.speech._window == avfr.codec.data.audio.pcm_window (window_bounds)",
        "frames_checked": checked,
        "output": "float32 (80, 19) C-order: row = mel bin, column = STFT column",
    }


def _synthetic() -> dict[str, np.ndarray]:
    n = np.arange(3200)
    rng = np.random.default_rng(20240)
    return {
        "silence": np.zeros(3200, np.float32),
        "sine_fullscale": np.sin(2 * np.pi * 997.0 * n / SAMPLE_RATE).astype(np.float32),
        "noise_clipped": np.clip(0.9 * rng.standard_normal(3200), -1.0, 1.0).astype(np.float32),
        "noise_floor": (1.7e-3 * rng.standard_normal(3200)).astype(np.float32),  # mel powers around 1e-5
    }


def _mel_fixture(pcm: np.ndarray, codes: np.ndarray) -> None:
    out = _Bin()
    seg_codes = codes[:SPEECH_SAMPLES]
    seg = (seg_codes.astype(np.float64) / 32768.0).astype(np.float32)
    windows = []
    out.add("speech_int16", seg_codes)
    for i, (frame, causal) in enumerate(SPEECH_FRAMES):
        mel = log_mel_window(pcm_window(seg, frame, causal))
        windows.append({"kind": "speech", "frame": frame, "causal": causal, "mel": out.add(f"speech_mel_{i}", mel)})
    for name, window in _synthetic().items():
        pcm_name = None if name == "silence" else out.add(f"{name}_pcm", window)
        windows.append({"kind": name, "pcm": pcm_name, "mel": out.add(f"{name}_mel", log_mel_window(window))})
    fb = mel_filterbank()
    lo, hi, spans = [], [], []
    for row in fb:
        nz = np.nonzero(row)[0]
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
        spans.append(row[lo[-1] : hi[-1]])
    meta = {
        "generator": "tests/data/web/make_mel.py",
        "bin": "mel.bin",
        "arrays": out.index,
        "speech": {"clip": f"../shared/data/clips/{CLIP}.wav", "samples": SPEECH_SAMPLES,
                   "array": "speech_int16", "scale": 1 / 32768, "sample_rate": SAMPLE_RATE},
        "windows": windows,
        "bounds": {
            "centred": [list(window_bounds(i, False)) for i in range(BOUNDS_FRAMES)],
            "causal": [list(window_bounds(i, True)) for i in range(BOUNDS_FRAMES)],
        },
        "filterbank": {"shape": list(fb.shape), "lo": lo, "hi": hi,
                       "weights": out.add("filterbank_spans", np.concatenate(spans))},
        "receiver": _check_receiver(pcm),
    }
    (HERE / "mel.bin").write_bytes(bytes(out.data))
    (HERE / "mel.json").write_text(json.dumps(meta, indent=1) + "\n")


def _opus_48k(pcm: np.ndarray) -> np.ndarray:
    """Speech through the project's Opus encoder, decoded by libopus at 48 kHz (what WebCodecs outputs)."""
    import av

    from avfr.codec.runtime.opus import OpusEncoder

    encoder = OpusEncoder(OPUS_BITRATE)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.layout = "mono"
    decoder.options = {"request_sample_fmt": "flt"}
    out = []
    for packet in encoder.encode(pcm) + encoder.flush():
        for frame in decoder.decode(av.Packet(packet)):
            assert frame.sample_rate == 48000, frame.sample_rate
            out.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32)


def swresample_16k(x48: np.ndarray) -> np.ndarray:
    """48 kHz -> 16 kHz as the Python receiver does (`OpusDecoder`): 20 ms frames, then flushed."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out = []
    for start in range(0, len(x48), 960):
        frame = av.AudioFrame.from_ndarray(x48[None, start : start + 960], format="flt", layout="mono")
        frame.sample_rate = 48000
        frame.pts = start
        out.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
    out.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    return np.concatenate(out).astype(np.float32)


def _resample_fixture(pcm: np.ndarray) -> None:
    x48 = _opus_48k(pcm[: 2 * SAMPLE_RATE])[RESAMPLE_START_48K : RESAMPLE_START_48K + RESAMPLE_SAMPLES_48K]
    codes = np.clip(np.round(x48.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    x48q = (codes.astype(np.float64) / 32768.0).astype(np.float32)
    y16 = swresample_16k(x48q)
    out = _Bin()
    meta = {
        "generator": "tests/data/web/make_mel.py",
        "bin": "resample.bin",
        "source": f"../shared/data/clips/{CLIP}.wav, OpusEncoder({OPUS_BITRATE}) -> libopus decoder at 48 kHz, "
        f"samples [{RESAMPLE_START_48K}, {RESAMPLE_START_48K + RESAMPLE_SAMPLES_48K}) at 48 kHz, int16 grid",
        "input_48k": out.add("input_48k_int16", codes),
        "scale": 1 / 32768,
        "swresample_16k": out.add("swresample_16k", y16),
        "swresample": 'av.AudioResampler(format="flt", layout="mono", rate=16000), 960-sample frames, flushed',
        "arrays": out.index,
    }
    (HERE / "resample.bin").write_bytes(bytes(out.data))
    (HERE / "resample.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    if not (SHARED / "clips" / f"{CLIP}.wav").exists():
        sys.exit(f"{SHARED} is absent (or lacks clips/{CLIP}.wav): the fixtures need the project's real speech")
    pcm, codes = _speech()
    _mel_fixture(pcm, codes)
    _resample_fixture(pcm)
    for name in ("mel.json", "mel.bin", "resample.json", "resample.bin"):
        print(f"{name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
