"""Video decoding to the codec's frame format: 256x256 RGB at 25 fps.

Other frame rates are resampled by taking, for output frame ``i`` (at ``i / 25`` s), the source
frame nearest in time. Square sources are resized as they are; non-square sources get one fixed
square crop per clip around the face (median mediapipe face box, moved up by 10 % of its size,
enlarged 1.8x, clamped to the frame), then resized (area filter when shrinking, bicubic when
enlarging). Decoding problems (truncated files, tiny frames, no face for the crop) are reported in
``VideoReader.problems``; only unreadable files raise. PyAV and mediapipe are imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avfr.codec.data.audio import FPS

logger = logging.getLogger(__name__)

FRAME_SIZE = 256  # px
CROP_SCALE = 1.8  # square crop side / face box side
CROP_SHIFT_UP = 0.1  # crop centre moved up by this fraction of the face box size
MIN_SOURCE_SIDE_PX = 64  # smaller sources are flagged
_MAX_CROP_DETECTIONS = 48  # frames sampled for the median face box
_TIME_EPS_S = 1e-6


@dataclass(frozen=True)
class CropBox:
    """Square crop in source pixels: x0, y0, side; ``clamped`` when the 1.8x box hit the frame edge."""

    x0: int
    y0: int
    side: int
    clamped: bool


def square_crop_box(
    face_box: np.ndarray | None,
    width: int,
    height: int,
    scale: float = CROP_SCALE,
    shift_up: float = CROP_SHIFT_UP,
) -> CropBox:
    """Square crop around a face box, clamped to the frame.

    Args:
        face_box: float (4,) x0, y0, w, h in source px, or None for a centre crop.
        width, height: source frame size in px.
        scale: crop side / max(w, h) of the face box.
        shift_up: the crop centre is moved up by ``shift_up * max(w, h)``.

    Returns:
        CropBox inside the frame (side <= min(width, height)).
    """
    limit = min(width, height)
    if face_box is None:
        return CropBox((width - limit) // 2, (height - limit) // 2, limit, False)
    x0, y0, w, h = (float(v) for v in face_box)
    size = max(w, h)
    side_f = scale * size
    clamped = side_f > limit
    side = int(round(min(side_f, limit)))
    cx, cy = x0 + w / 2.0, y0 + h / 2.0 - shift_up * size
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    new_left, new_top = min(max(left, 0), width - side), min(max(top, 0), height - side)
    clamped = clamped or new_left != left or new_top != top
    return CropBox(new_left, new_top, max(side, 1), clamped)


def crop_and_resize(rgb: np.ndarray, box: CropBox | None, size: int = FRAME_SIZE) -> np.ndarray:
    """Crop a square and resize it (area filter when shrinking, bicubic when enlarging).

    Args:
        rgb: uint8 (H, W, 3).
        box: square crop, or None when the frame is already square.
        size: output side in px.

    Returns:
        uint8 (size, size, 3), contiguous.
    """
    if box is not None:
        rgb = rgb[box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side]
    side = rgb.shape[0]
    if side == size and rgb.shape[1] == size:
        return np.ascontiguousarray(rgb)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class VideoProbe:
    """What the container says about the first video stream (before decoding)."""

    width: int
    height: int
    fps: float
    num_frames: int  # as reported by the container, 0 when unknown
    has_audio: bool


def _open(path: Path):  # -> av.container.InputContainer
    import av  # lazy

    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ValueError(f"cannot open video {path.name} (corrupt or truncated file?): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path.name} has no video stream")
    return container


def probe_video(path: str | Path) -> VideoProbe:
    """Read stream parameters of a video without decoding it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable container or no video stream.
    """
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or FPS
        return VideoProbe(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=float(rate),
            num_frames=int(stream.frames or 0),
            has_audio=bool(container.streams.audio),
        )


def _decoded_frames(path: Path, problems: list[str]) -> Iterator[tuple[float, object]]:
    """Decode the first video stream: (time in s from the stream clock, av.VideoFrame).

    Decoding errors end the iteration and are appended to ``problems``.
    """
    import av  # lazy

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or FPS)
        index = 0
        try:
            for frame in container.decode(stream):
                time_s = float(frame.time) if frame.time is not None else index / rate
                yield time_s, frame
                index += 1
        except av.FFmpegError as exc:
            problems.append(f"video decoding stopped after {index} source frames: {exc}")


class VideoReader:
    """Iterate a video as 256x256 RGB frames at 25 fps.

    Construction probes the file and, for non-square sources, runs mediapipe face detection on up to
    48 frames to place the crop. Iterating decodes the video (again) and yields uint8
    (256, 256, 3) frames; afterwards ``num_frames``, ``start_s`` and ``problems`` are final.

    Args:
        path: any video FFmpeg reads.
        size: output side in px.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable container or no video stream.
    """

    def __init__(self, path: str | Path, size: int = FRAME_SIZE) -> None:
        self.path = Path(path)
        self.size = size
        self.probe = probe_video(self.path)
        self.problems: list[str] = []
        self.crop: CropBox | None = None
        self.num_frames = 0  # output frames, final after iteration
        self.source_frames = 0  # decoded source frames, final after iteration
        self.start_s = 0.0  # time of the first source frame on the file's clock
        width, height = self.probe.width, self.probe.height
        if min(width, height) < MIN_SOURCE_SIDE_PX:
            self.problems.append(f"tiny source {width}x{height}: upscaled to {size}x{size}")
        if width != height:
            self.crop = self._find_crop()

    def _find_crop(self) -> CropBox:
        """Median face box over sampled frames -> one square crop for the whole clip."""
        from avfr.codec.data.priors import FaceBoxDetector  # lazy: mediapipe

        width, height = self.probe.width, self.probe.height
        step = max(1, -(-self.probe.num_frames // _MAX_CROP_DETECTIONS)) if self.probe.num_frames else 1
        boxes: list[np.ndarray] = []
        sampled = 0
        scratch: list[str] = []
        with FaceBoxDetector() as detector:
            for index, (_, frame) in enumerate(_decoded_frames(self.path, scratch)):
                if index % step:
                    continue
                sampled += 1
                box, _ = detector.largest_face(frame.to_ndarray(format="rgb24"))
                if box is not None:
                    boxes.append(box)
                if sampled >= _MAX_CROP_DETECTIONS:
                    break
        if not boxes:
            self.problems.append(f"no face found to crop the {width}x{height} source: centre crop")
            return square_crop_box(None, width, height)
        box = square_crop_box(np.median(np.stack(boxes), axis=0), width, height)
        logger.debug("%s: crop %s from %d/%d face boxes", self.path.name, box, len(boxes), sampled)
        return box

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield uint8 (size, size, 3) RGB frames at 25 fps (nearest source frame in time)."""
        problems: list[str] = []
        out_index = 0
        prev_time = prev_frame = prev_rgb = None
        first_time: float | None = None
        intervals: list[float] = []
        n_source = 0

        def convert(frame: object) -> np.ndarray:
            return crop_and_resize(frame.to_ndarray(format="rgb24"), self.crop, self.size)

        for time_s, frame in _decoded_frames(self.path, problems):
            n_source += 1
            if first_time is None:
                first_time = time_s
            t = time_s - first_time
            if prev_frame is not None:
                if t <= prev_time:  # broken timestamps: assume the nominal rate
                    t = prev_time + 1.0 / self.probe.fps
                intervals.append(t - prev_time)
                boundary = 0.5 * (prev_time + t)  # prev is the nearest source frame before this
                while out_index / FPS < boundary - _TIME_EPS_S:
                    if prev_rgb is None:
                        prev_rgb = convert(prev_frame)
                    yield prev_rgb
                    out_index += 1
            prev_time, prev_frame, prev_rgb = t, frame, None
        if prev_frame is None:
            self.problems.extend(problems)
            raise ValueError(f"no video frames could be decoded from {self.path.name}")
        frame_s = float(np.median(intervals)) if intervals else 1.0 / self.probe.fps
        total = max(1, int(round((prev_time + frame_s) * FPS)))
        while out_index < total:
            if prev_rgb is None:
                prev_rgb = convert(prev_frame)
            yield prev_rgb
            out_index += 1
        self.num_frames = out_index
        self.source_frames = n_source
        self.start_s = float(first_time or 0.0)
        expected = self.probe.num_frames
        if expected and n_source < expected - 1:
            problems.append(f"video truncated: decoded {n_source} of {expected} source frames")
        self.problems.extend(problems)

    def read_all(self) -> np.ndarray:
        """All frames as uint8 (T, size, size, 3) (in memory: for short clips and tests)."""
        frames = list(self)
        return np.stack(frames)
