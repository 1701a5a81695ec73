"""Where received frames go besides tracks: an mp4 file with audio (PyAV: H.264 + AAC) or a window."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from avfr.codec.data import SAMPLE_RATE
from avfr.receiver.config import ReceivedFrame

__all__ = ["Mp4Writer", "Window"]

logger = logging.getLogger(__name__)


class Mp4Writer:
    """Write received frames and their speech to an mp4 (H.264 yuv420p 25 fps + AAC 16 kHz mono).

    Frames must come in index order; a missing index repeats the previous picture (and silence). Sample 0
    of the audio track is the first frame's (the AAC encoder's priming is cut by an mp4 edit list).

    Args:
        path: output file.
        crf: x264 quality.

    Raises:
        FileNotFoundError: the folder of `path` does not exist.
        ValueError: `path` names no container format FFmpeg knows (use .mp4).
    """

    def __init__(self, path: str | Path, crf: int = 18) -> None:
        import av

        self._av = av
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"output folder not found: {self.path.parent}")
        try:
            self._container = av.open(str(self.path), "w")
        except ValueError as exc:
            raise ValueError(f"cannot write {self.path}: {exc}") from exc
        self._video = self._container.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": "veryfast"})
        self._video.width = self._video.height = 256
        self._video.pix_fmt = "yuv420p"
        self._audio = self._container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        self._fifo = av.AudioFifo()
        self._next = 0
        self._last: ReceivedFrame | None = None
        self.frames = 0
        self._broken = False  # a write failed: close() only releases the file

    @contextlib.contextmanager
    def _write_errors(self):
        """FFmpeg's errors while writing (the folder went away, the disk is full) as one OSError. After one,
        the writer is broken: muxing into a container whose header failed crashes PyAV (SIGSEGV)."""
        if self._broken:
            raise OSError(f"cannot write {self.path}: an earlier write failed")
        try:
            yield
        except self._av.FFmpegError as exc:
            self._broken = True
            error = OSError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}")
            error.errno = getattr(exc, "errno", None)
            raise error from exc

    def write(self, frame: ReceivedFrame) -> None:
        """Append one frame (and its 40 ms of PCM).

        Raises:
            OSError: the file cannot be written; the writer is then broken (`close` only releases it).
        """
        with self._write_errors():
            self._write(frame)

    def _write(self, frame: ReceivedFrame) -> None:
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
        audio.time_base = Fraction(1, SAMPLE_RATE)  # pts through the fifo: the muxer trims AAC's 1024-sample priming
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
            total_frames: pad to this many frames by repeating the last picture, with silence (frames the
                receiver decided but never delivered: a call that failed or timed out).

        Raises:
            OSError: the file cannot be written (not raised again for a writer a failed `write` broke).
        """
        if self._broken:
            with contextlib.suppress(self._av.FFmpegError):
                self._container.close()
            return
        with self._write_errors():
            self._close(total_frames)

    def _close(self, total_frames: int | None) -> None:
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
        # Checked before OpenCV touches the GUI: its Qt build calls abort() when it finds no display.
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("cannot open a window: no display (DISPLAY and WAYLAND_DISPLAY are unset); "
                               "use --out FILE.mp4")
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
