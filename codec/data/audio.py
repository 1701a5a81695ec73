"""Speech audio: decoding to 16 kHz mono, the 200 ms log-mel window, and an Opus round trip.

Timing convention (shared by sender, receiver and training): video frame ``i`` is at
``t_i = i / 25`` s, i.e. PCM sample ``640 * i``. The *centred* audio window of frame ``i`` is the
samples ``[640i - 1600, 640i + 1600)`` (200 ms, the driving frame is the 3rd of 5); the *causal*
window is ``[640i - 3200, 640i)``. Samples outside the clip are zeros.

A window's log-mel has 19 STFT columns (20 ms periodic Hann, hop 10 ms, no centre padding) and
80 Slaney-style mel bins (55..7600 Hz). Window starts are multiples of the 160-sample hop, so all
windows of a clip lie on one global grid: column ``m`` of :func:`clip_log_mel` starts at sample
``160 m - 3200``, and :func:`mel_window` slices it. numpy only, so the receiver computes exactly
what training saw. PyAV (``av``) is imported lazily by the decoding and Opus functions.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz
FPS = 25  # video frames per second
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
WINDOW_SAMPLES = 3200  # 200 ms
HALF_WINDOW_SAMPLES = WINDOW_SAMPLES // 2  # 1600 = 100 ms look-ahead of the centred window
N_FFT = 512
WIN_LENGTH = 320  # 20 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 80
MEL_FMIN_HZ = 55.0
MEL_FMAX_HZ = 7600.0
LOG_FLOOR = 1e-5
MEL_FRAMES = (WINDOW_SAMPLES - WIN_LENGTH) // HOP_LENGTH + 1  # 19 columns per window
# Clip-level grid: column m covers samples [160 m - 3200, 160 m - 3200 + 320).
_GRID_OFFSET_SAMPLES = WINDOW_SAMPLES  # 3200
_COLS_PER_FRAME = SAMPLES_PER_FRAME // HOP_LENGTH  # 4


def window_bounds(frame_index: int, causal: bool = False) -> tuple[int, int]:
    """Sample range ``[start, stop)`` of the audio window of a video frame.

    Args:
        frame_index: video frame index ``i`` (25 fps).
        causal: past-only window ``[640i - 3200, 640i)`` instead of the centred
            ``[640i - 1600, 640i + 1600)``.

    Returns:
        (start, stop) in samples at 16 kHz; ``stop - start == 3200``. May extend past the clip.
    """
    centre = SAMPLES_PER_FRAME * frame_index
    start = centre - WINDOW_SAMPLES if causal else centre - HALF_WINDOW_SAMPLES
    return start, start + WINDOW_SAMPLES


def pcm_window(pcm: np.ndarray, frame_index: int, causal: bool = False) -> np.ndarray:
    """The 3200 samples of a frame's audio window, zeros outside the clip.

    Args:
        pcm: float32 (N,) mono 16 kHz in [-1, 1].
        frame_index: video frame index.
        causal: see :func:`window_bounds`.

    Returns:
        float32 (3200,).
    """
    start, stop = window_bounds(frame_index, causal)
    out = np.zeros(WINDOW_SAMPLES, np.float32)
    lo, hi = max(start, 0), min(stop, len(pcm))
    if hi > lo:
        out[lo - start : hi - start] = pcm[lo:hi]
    return out


def _hz_to_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    freq_hz = np.asarray(freq_hz, np.float64)
    lin = freq_hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(freq_hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq_hz >= 1000.0, log, lin)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    lin = mel * (200.0 / 3.0)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, lin)


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """Slaney-style mel filterbank with area-normalised triangles.

    Returns:
        float64 (80, 257): weights applied to the power spectrum of a 512-point rFFT at 16 kHz.
    """
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)  # (257,)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(MEL_FMIN_HZ), _hz_to_mel(MEL_FMAX_HZ), N_MELS + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]  # (80, 1)
    rising = (fft_hz[None] - lower) / (centre - lower)
    falling = (upper - fft_hz[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (80, 257)
    weights *= (2.0 / (upper - lower))  # equal area per filter
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=1)
def _hann_periodic() -> np.ndarray:
    """Periodic Hann window of 320 samples, float64."""
    n = np.arange(WIN_LENGTH)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
    window.setflags(write=False)
    return window


def _log_mel_of_signal(signal: np.ndarray) -> np.ndarray:
    """Log-mel columns of a signal framed at hop 160, no padding.

    Args:
        signal: (N,) samples, N >= 320.

    Returns:
        float32 (80, (N - 320) // 160 + 1).
    """
    signal = np.ascontiguousarray(signal, dtype=np.float64)
    n_cols = (len(signal) - WIN_LENGTH) // HOP_LENGTH + 1
    frames = np.lib.stride_tricks.as_strided(
        signal, shape=(n_cols, WIN_LENGTH), strides=(signal.strides[0] * HOP_LENGTH, signal.strides[0])
    )  # (C, 320) views
    spectrum = np.fft.rfft(frames * _hann_periodic(), n=N_FFT, axis=1)  # (C, 257), zero-padded to 512
    power = spectrum.real**2 + spectrum.imag**2
    mel = mel_filterbank() @ power.T  # (80, C)
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


def log_mel_window(window_pcm: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram of one 200 ms window.

    Args:
        window_pcm: float32 (3200,) mono 16 kHz (see :func:`pcm_window`).

    Returns:
        float32 (80, 19): log(max(mel power, 1e-5)).

    Raises:
        ValueError: wrong length.
    """
    window_pcm = np.asarray(window_pcm)
    if window_pcm.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"audio window must have shape ({WINDOW_SAMPLES},), got {window_pcm.shape}")
    return _log_mel_of_signal(window_pcm)


def num_video_frames(num_samples: int) -> int:
    """Video frames T covered by ``num_samples`` of 16 kHz audio (ceil(N / 640))."""
    return -(-num_samples // SAMPLES_PER_FRAME)


def clip_log_mel(pcm: np.ndarray) -> np.ndarray:
    """Log-mel of a whole clip on the global window grid.

    Column ``m`` covers samples ``[160 m - 3200, 160 m - 2880)``; the centred window of frame
    ``i`` is columns ``[4i + 10, 4i + 29)``, the causal one ``[4i, 4i + 19)``.

    Args:
        pcm: float32 (N,) mono 16 kHz; T = ceil(N / 640) video frames (zeros past N).

    Returns:
        float32 (80, 4T + 29).
    """
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    n_frames = num_video_frames(len(pcm))
    padded = np.zeros(_GRID_OFFSET_SAMPLES + SAMPLES_PER_FRAME * n_frames + HALF_WINDOW_SAMPLES, np.float32)
    padded[_GRID_OFFSET_SAMPLES : _GRID_OFFSET_SAMPLES + len(pcm)] = pcm
    mel = _log_mel_of_signal(padded)  # (80, 4T + 29)
    assert mel.shape[1] == _COLS_PER_FRAME * n_frames + 29
    return mel


def mel_window(clip_mel: np.ndarray, frame_index: int, causal: bool = False) -> np.ndarray:
    """The (80, 19) log-mel window of a frame, sliced from :func:`clip_log_mel`.

    Args:
        clip_mel: float32 (80, 4T + 29).
        frame_index: 0 <= i < T.
        causal: past-only window.

    Returns:
        float32 (80, 19) view; equal to ``log_mel_window(pcm_window(pcm, i, causal))``.

    Raises:
        IndexError: frame outside the clip.
    """
    n_frames = (clip_mel.shape[1] - 29) // _COLS_PER_FRAME
    if not 0 <= frame_index < n_frames:
        raise IndexError(f"frame {frame_index} outside clip of {n_frames} frames")
    start = _COLS_PER_FRAME * frame_index + (0 if causal else 10)
    return clip_mel[:, start : start + MEL_FRAMES]


def rms_dbfs(pcm: np.ndarray) -> float:
    """Loudness of a signal in dB relative to full scale (-inf dB for digital silence -> -200)."""
    if len(pcm) == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-10))


def speech_seconds(pcm: np.ndarray, threshold_dbfs: float = -45.0, relative_db: float = 35.0) -> float:
    """Rough amount of speech: seconds of 20 ms frames that are loud enough.

    A frame counts when its RMS exceeds both ``threshold_dbfs`` and the clip's loudest frame
    minus ``relative_db``. An energy estimate, not a voice activity detector.

    Args:
        pcm: float32 (N,) 16 kHz.

    Returns:
        seconds.
    """
    n = len(pcm) // WIN_LENGTH
    if n == 0:
        return 0.0
    frames = np.asarray(pcm[: n * WIN_LENGTH], np.float64).reshape(n, WIN_LENGTH)
    level_db = 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-20))
    active = level_db > max(threshold_dbfs, float(level_db.max()) - relative_db)
    return float(active.sum()) * WIN_LENGTH / SAMPLE_RATE


def decode_audio(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """Decode the first audio stream of a file to float32 mono 16 kHz with PyAV.

    Args:
        path: a .wav, .mp4 or anything FFmpeg reads.

    Returns:
        (pcm float32 (N,), start_s: presentation time of the first sample in the file's clock,
        problems: human-readable notes, e.g. a decoding error after some audio).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be opened or has no audio stream.
    """
    import av  # lazy: heavy, not needed on the trainer box

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    problems: list[str] = []
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ValueError(f"cannot open {path.name}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        start_s: float | None = None
        try:
            for frame in container.decode(stream):
                if start_s is None and frame.pts is not None and frame.time_base is not None:
                    start_s = float(frame.pts * frame.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            decoded_s = sum(map(len, chunks)) / SAMPLE_RATE
            problems.append(f"audio decoding stopped after {decoded_s:.2f} s: {exc}")
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if start_s is None:
        start_s = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return np.clip(pcm, -1.0, 1.0), start_s, problems


def fit_length(pcm: np.ndarray, num_samples: int, offset_samples: int = 0) -> np.ndarray:
    """Shift and pad/trim PCM to an exact length.

    Args:
        pcm: float32 (N,).
        num_samples: output length.
        offset_samples: where ``pcm[0]`` lands in the output (negative drops leading samples).

    Returns:
        float32 (num_samples,), zeros where there is no input.
    """
    out = np.zeros(num_samples, np.float32)
    src_lo = max(0, -offset_samples)
    dst_lo = max(0, offset_samples)
    n = min(len(pcm) - src_lo, num_samples - dst_lo)
    if n > 0:
        out[dst_lo : dst_lo + n] = pcm[src_lo : src_lo + n]
    return out


_OPUS_FRAME_SAMPLES = 320  # 20 ms at 16 kHz


def _opus_encode_decode(pcm: np.ndarray, bitrate_bps: int) -> np.ndarray:
    """Encode with libopus (16 kHz mono, 20 ms frames) and decode back to 16 kHz, uncompensated."""
    import av  # lazy

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "flt"
    encoder.bit_rate = int(bitrate_bps)
    encoder.options = {"frame_duration": "20", "application": "voip"}
    decoder = av.CodecContext.create("libopus", "r")  # FFmpeg's libopus decoder outputs 48 kHz
    # the stream's own layout, as the receiver's OpusDecoder: left unset, libopus decodes the mono stream to
    # stereo and the downmix adds 3 dB
    decoder.layout = "mono"
    decoder.options = {"request_sample_fmt": "flt"}
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    n_padded = -(-len(pcm) // _OPUS_FRAME_SAMPLES) * _OPUS_FRAME_SAMPLES
    padded = np.zeros(n_padded, np.float32)
    padded[: len(pcm)] = pcm
    out: list[np.ndarray] = []

    def _decode(packets: list) -> None:
        for packet in packets:
            for frame in decoder.decode(packet):
                for res in resampler.resample(frame):
                    out.append(res.to_ndarray().reshape(-1))

    for start in range(0, n_padded, _OPUS_FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(
            padded[None, start : start + _OPUS_FRAME_SAMPLES], format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        _decode(encoder.encode(frame))
    _decode(encoder.encode(None))
    for res in resampler.resample(None):
        out.append(res.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=32)
def opus_delay_samples(bitrate_bps: int) -> int:
    """Measured delay of the libopus round trip at 16 kHz (encoder look-ahead + resampling).

    Found once per bitrate by cross-correlating a fixed noise signal with its round trip
    (104 samples = 6.5 ms at speech bitrates with libopus 1.x).

    Returns:
        delay in samples at 16 kHz.
    """
    rng = np.random.default_rng(1234)
    probe = (0.1 * rng.standard_normal(SAMPLE_RATE // 2)).astype(np.float32)  # 0.5 s noise
    silence = np.zeros(SAMPLE_RATE // 5, np.float32)  # 200 ms to flush the codec
    decoded = _opus_encode_decode(np.concatenate([probe, silence]), bitrate_bps)
    max_lag = 1600
    ref = probe[: len(probe) - max_lag].astype(np.float64)
    corr = [float(np.dot(ref, decoded[lag : lag + len(ref)])) for lag in range(max_lag)]
    delay = int(np.argmax(corr))
    logger.debug("opus round trip delay at %d bit/s: %d samples", bitrate_bps, delay)
    return delay


def opus_roundtrip(pcm: np.ndarray, bitrate_bps: int) -> np.ndarray:
    """Pass speech through Opus and back, time-aligned with the input (training augmentation).

    Args:
        pcm: float32 (N,) mono 16 kHz in [-1, 1].
        bitrate_bps: Opus target bitrate, 6000..510000 bit/s.

    Returns:
        float32 (N,): decoded audio with the codec delay removed (sample k matches input sample k).

    Raises:
        ValueError: bitrate out of the Opus range.
    """
    if not 6000 <= bitrate_bps <= 510000:
        raise ValueError(f"opus bitrate must be in 6000..510000 bit/s, got {bitrate_bps}")
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    if len(pcm) == 0:
        return pcm.copy()
    delay = opus_delay_samples(int(bitrate_bps))
    tail = np.zeros(delay + _OPUS_FRAME_SAMPLES, np.float32)  # flush the look-ahead
    decoded = _opus_encode_decode(np.concatenate([pcm, tail]), bitrate_bps)
    return np.clip(fit_length(decoded, len(pcm), -delay), -1.0, 1.0)
