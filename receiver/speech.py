"""`SpeechTimeline`: the call's decoded speech on the 16 kHz sample clock, and each frame's share of it.

Audio packets come from the `JitterBuffer` in packet order; one declared lost is concealed by
`OpusDecoder` (repeat with fade), one past the end of the stream is silence. Sample k of the timeline is
the sender's input sample k. Each frame takes the log-mel window of its audio window (`window_bounds`) and
its own 40 ms; samples no later frame needs are dropped.
"""

from __future__ import annotations

import numpy as np

from avfr.codec.data import SAMPLES_PER_FRAME, log_mel_window, window_bounds
from avfr.codec.runtime import OpusDecoder
from avfr.receiver.playout import AudioGap, JitterBuffer

__all__ = ["SpeechTimeline"]

_KEEP_SAMPLES = 3200  # kept before a decided frame's start: what later windows need


class SpeechTimeline:
    """Decoded speech of one call, from the audio packets of a `JitterBuffer`.

    Args:
        opus: the stream's decoder (bitrate from the Hello).
        causal_window: the session's audio window mode (past-only windows).
    """

    def __init__(self, opus: OpusDecoder, causal_window: bool) -> None:
        self._opus = opus
        self._causal = causal_window
        self._pcm = np.zeros(0, np.float32)  # float32 (N,): samples [base, base + N) of the timeline
        self._pcm_base = 0
        self.concealed = 0  # audio packets declared lost and concealed

    def fill(self, buffer: JitterBuffer, need_samples: int, ended: bool, late: bool = False) -> bool:
        """Decode audio in packet order until the timeline holds `need_samples`; False: wait for packets.

        Args:
            buffer: where the packets are.
            need_samples: the sample (16 kHz, from the stream start) the timeline must reach.
            ended: the stream ended: missing packets are declared lost at once (`DueFrame.ended`).
            late: the frame's deadline passed: missing packets that newer media overtook are lost (`DueFrame.late`).
        """
        while self._pcm_base + len(self._pcm) < need_samples:
            packet = buffer.next_audio(ended, late)
            if packet is AudioGap.WAIT:
                return False
            if packet is AudioGap.LOST:
                self._opus.conceal()
                self.concealed += 1
            elif packet is AudioGap.PAST_END:  # past the end of the stream: silence
                self._opus.silence()
            else:
                self._opus.decode(packet)
            new = self._opus.take()
            if len(new):
                self._pcm = np.concatenate([self._pcm, new])
        return True

    def take_frame(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame n's speech (once `fill` reached `needed_samples(n)`); later frames must come after it.

        Returns:
            mel: float32 (80, 19) log-mel window.
            pcm: float32 (640,) the frame's own 40 ms.
        """
        start = SAMPLES_PER_FRAME * n
        rel = self._pcm[max(0, start - self._pcm_base - _KEEP_SAMPLES) :]  # keep what later windows need
        rel_base = self._pcm_base + max(0, start - self._pcm_base - _KEEP_SAMPLES)
        window = _window(self._pcm, self._pcm_base, n, self._causal)
        mel = log_mel_window(window)
        pcm = _slice(self._pcm, self._pcm_base, start, start + SAMPLES_PER_FRAME)
        self._pcm, self._pcm_base = rel, rel_base
        return mel, pcm


def _window(pcm: np.ndarray, base: int, n: int, causal: bool) -> np.ndarray:
    """The 3200-sample window of frame n from a timeline that starts at sample `base`."""
    start, stop = window_bounds(n, causal)
    return _slice(pcm, base, start, stop)


def _slice(pcm: np.ndarray, base: int, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of a timeline that starts at `base`; zeros outside it."""
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, base), min(stop, base + len(pcm))
    if hi > lo:
        out[lo - start : hi - start] = pcm[lo - base : hi - base]
    return out
