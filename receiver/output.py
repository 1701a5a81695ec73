"""Where received frames go besides tracks: an mp4 file with audio (PyAV: H.264 + AAC) or a window."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from avfr.codec.data import SAMPLE_RATE
from avfr.receiver.config import ReceivedFrame

__all__ = ["Mp4Writer", "Window"]

logger = logging.getLogger(__name__)


class Mp4Writer:
    """Write received frames and their speech to an mp4 (H.264 yuv420p 25 fps + AAC 16 kHz mono).

    Frames must come in index order; a missing index repeats the previous picture (and silence).

    Args:
        path: output file.
        crf: x264 quality.
    """

    def __init__(self, path: str | Path, crf: int = 18) -> None:
        import av

        self._av = av
        self.path = Path(path)
        self._container = av.open(str(self.path), "w")
        self._video = self._container.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": "veryfast"})
        self._video.width = self._video.height = 256
        self._video.pix_fmt = "yuv420p"
        self._audio = self._container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        self._fifo = av.AudioFifo()
        self._next = 0
        self._last: ReceivedFrame | None = None
        self.frames = 0

    def write(self, frame: ReceivedFrame) -> None:
        """Append one frame (and its 40 ms of PCM)."""
        while self._last is not None and self._next < frame.index:
            self._write_one(self._last.rgb, np.zeros_like(frame.pcm))
        if frame.index < self._next:
            return
        self._write_one(frame.rgb, frame.pcm)
        self._last = frame

    def _write_one(self, rgb: np.ndarray, pcm: np.ndarray) -> None:
        av = self._av
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        video.pts = self._next
        video.time_base = Fraction(1, 25)
        for packet in self._video.encode(video):
            self._container.mux(packet)
        audio = av.AudioFrame.from_ndarray(np.clip(pcm, -1, 1).astype(np.float32)[None], format="flt", layout="mono")
        audio.sample_rate = SAMPLE_RATE
        audio.pts = self._next * len(pcm)
        self._fifo.write(audio)
        self._drain_audio(final=False)
        self._next += 1
        self.frames += 1

    def _drain_audio(self, final: bool) -> None:
        size = self._audio.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples):
            chunk = self._fifo.read(min(size, self._fifo.samples))
            for packet in self._audio.encode(chunk):
                self._container.mux(packet)
        if final:
            for packet in self._audio.encode(None):
                self._container.mux(packet)

    def close(self, total_frames: int | None = None) -> None:
        """Flush both encoders and close the file.

        Args:
            total_frames: pad to this many frames by repeating the last picture (frames the receiver
                decided but did not render, e.g. at the end of a realtime call).
        """
        while total_frames is not None and self._last is not None and self._next < total_frames:
            self._write_one(self._last.rgb, np.zeros_like(self._last.pcm))
        for packet in self._video.encode(None):
            self._container.mux(packet)
        self._drain_audio(final=True)
        self._container.close()


class Window:
    """Show frames in an OpenCV window (needs a display).

    Raises:
        RuntimeError: no display / GUI support.
    """

    def __init__(self, title: str = "avfr-codec") -> None:
        import cv2

        self._cv2 = cv2
        self.title = title
        try:
            cv2.namedWindow(title)
        except cv2.error as exc:
            raise RuntimeError(f"cannot open a window (no display?): {exc}; use --out FILE.mp4") from exc

    def show(self, frame: ReceivedFrame) -> None:
        self._cv2.imshow(self.title, np.ascontiguousarray(frame.rgb[..., ::-1]))
        self._cv2.waitKey(1)

    def close(self) -> None:
        self._cv2.destroyWindow(self.title)
