"""Opus for the call's speech (PyAV libopus, 16 kHz mono, 20 ms packets): the sender's encoder, and the
decoder both peers run (the receiver for playback and the mel windows, the sender for its replica of the
far end's picture).

Packet loss concealment: FFmpeg's libopus wrapper cannot be asked for libopus' own PLC (an empty packet
means end of stream to `avcodec_send_packet`), so a lost 20 ms packet is concealed by repeating the last
decoded 20 ms at -6 dB per repeat (silence after a few losses in a row). The decoder keeps running, so the
next packet decodes normally.
"""

from __future__ import annotations

import numpy as np

from avfr.codec.data import SAMPLE_RATE, opus_delay_samples

__all__ = ["OPUS_FRAME_SAMPLES", "OpusEncoder", "OpusDecoder"]

OPUS_FRAME_SAMPLES = 320  # 20 ms at 16 kHz


class OpusEncoder:
    """float32 PCM in (any chunk sizes) -> one Opus packet per 20 ms.

    Packet j holds input samples [320 j, 320 j + 320) (plus the codec's look-ahead, which the receiver
    removes with `avfr.codec.data.audio.opus_delay_samples`).

    Args:
        bitrate_bps: target bitrate, 6000..510000 (speech: 6-16 kbit/s).

    Raises:
        ValueError: bitrate out of range.
    """

    def __init__(self, bitrate_bps: int = 12_000) -> None:
        import av  # lazy

        if not 6000 <= bitrate_bps <= 510_000:
            raise ValueError(f"opus bitrate must be in 6000..510000 bit/s, got {bitrate_bps}")
        self._av = av
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "mono"
        self._codec.format = "flt"
        self._codec.bit_rate = int(bitrate_bps)
        self._codec.options = {"frame_duration": "20", "application": "voip"}
        self._pending = np.zeros(0, np.float32)
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        """Add float32 (N,) mono 16 kHz samples in [-1, 1]; returns the packets completed."""
        self._pending = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        out: list[bytes] = []
        while len(self._pending) >= OPUS_FRAME_SAMPLES:
            chunk, self._pending = self._pending[:OPUS_FRAME_SAMPLES], self._pending[OPUS_FRAME_SAMPLES:]
            out.extend(self._encode_chunk(chunk))
        return out

    def _encode_chunk(self, chunk: np.ndarray) -> list[bytes]:
        frame = self._av.AudioFrame.from_ndarray(np.clip(chunk, -1.0, 1.0)[None], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += OPUS_FRAME_SAMPLES
        return [bytes(p) for p in self._codec.encode(frame)]

    def flush(self) -> list[bytes]:
        """Pad the last partial frame with zeros and drain the encoder."""
        out: list[bytes] = []
        if len(self._pending):
            chunk = np.zeros(OPUS_FRAME_SAMPLES, np.float32)
            chunk[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
            out.extend(self._encode_chunk(chunk))
        out.extend(bytes(p) for p in self._codec.encode(None))
        return out


_PLC_GAIN = 0.5


class OpusDecoder:
    """Opus packets (in order, with losses marked) -> float32 16 kHz PCM aligned with the sender's input.

    `pcm` holds the decoded speech so far; sample k is the sender's input sample k (the codec's delay,
    `opus_delay_samples(bitrate_bps)`, is removed), at the sender's level (mono decode, float samples that
    may exceed [-1, 1] slightly where the codec overshoots).

    Args:
        bitrate_bps: the stream's Opus bitrate (from the Hello), for the delay compensation.
    """

    def __init__(self, bitrate_bps: int) -> None:
        import av  # lazy

        self._codec = av.CodecContext.create("libopus", "r")
        # The stream's own layout: left unset, libopus decodes a mono stream to stereo, whose downmix to mono
        # adds 3 dB (and clips speech peaking above ~0.7). FFmpeg's libopus always decodes at 48 kHz.
        self._codec.layout = "mono"
        self._codec.options = {"request_sample_fmt": "flt"}  # float, not s16: nothing is clipped or rounded here
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._skip = opus_delay_samples(int(bitrate_bps))
        self._chunks: list[np.ndarray] = []
        self._last = np.zeros(OPUS_FRAME_SAMPLES, np.float32)
        self._plc_gain = 1.0
        self.decoded = 0  # samples produced (after the delay skip)
        self.concealed = 0
        self.errors = 0

    def decode(self, payload: bytes) -> None:
        """Decode one packet and append its samples."""
        import av

        try:
            frames = self._codec.decode(av.Packet(payload))
        except (av.FFmpegError, ValueError):
            self.errors += 1
            self.conceal()
            return
        pcm = [r.to_ndarray().reshape(-1) for f in frames for r in self._resampler.resample(f)]
        if pcm:
            out = np.concatenate(pcm).astype(np.float32)
            self._append(out)
            if len(out) >= OPUS_FRAME_SAMPLES:
                self._last = out[-OPUS_FRAME_SAMPLES:].copy()
        self._plc_gain = 1.0

    def conceal(self) -> None:
        """A lost packet: repeat the last 20 ms, attenuated (silence after ~4 losses in a row)."""
        self._plc_gain *= _PLC_GAIN
        gain = self._plc_gain if self._plc_gain > 0.07 else 0.0
        self._append(self._last * np.float32(gain))
        self.concealed += 1

    def silence(self) -> None:
        """20 ms of silence past the end of the stream (nothing was sent there: not a loss to conceal)."""
        self._append(np.zeros(OPUS_FRAME_SAMPLES, np.float32))

    def _append(self, pcm: np.ndarray) -> None:
        if self._skip:
            cut = min(self._skip, len(pcm))
            pcm, self._skip = pcm[cut:], self._skip - cut
        if len(pcm):
            self._chunks.append(pcm)
            self.decoded += len(pcm)

    def take(self) -> np.ndarray:
        """The samples appended since the last call, float32 (N,)."""
        out = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = []
        return out
