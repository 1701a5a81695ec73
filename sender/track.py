"""The sending peer over WebRTC: capture (file or camera + microphone) -> `Encoder` -> data channels.

The encoder (mediapipe + onnxruntime + Opus) runs on one worker thread, so the event loop (and a receiver
sharing it) never waits for it. `Impairment` degrades the media channel on the way out (random loss,
jitter that reorders, a burst of corrupt packets, a duplicate Hello, a wrong-version message, a forced
source refresh) for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfr.codec.data import SAMPLE_RATE, SAMPLES_PER_FRAME
from avfr.proto import CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL, WIRE_VERSION, peek_type
from avfr.proto.framing import COMPACT_DELTA_BIT
from avfr.sender.config import OutMessage
from avfr.sender.encoder import Encoder

__all__ = ["CapturedFrame", "FileSource", "CameraSource", "DeviceError", "Impairment", "SendingPeer"]

logger = logging.getLogger(__name__)

_KEEP_TIMES = 1500  # per-frame timestamps kept for stats and benchmarks (the last minute)


class DeviceError(RuntimeError):
    """A camera or microphone is missing or cannot be opened."""


@dataclass(frozen=True)
class CapturedFrame:
    """One 40 ms step of the call: frame `index` (uint8 (256, 256, 3) RGB), its float32 (640,) PCM, and
    `capture_s` (time.perf_counter() when it was captured)."""

    index: int
    rgb: np.ndarray = field(repr=False)
    pcm: np.ndarray = field(repr=False)
    capture_s: float = 0.0


class FileSource:
    """A clip as a call source: 256x256 25 fps frames with their speech.

    Audio: `audio` if given, else `<video>.wav` next to the video, else the video's own audio track,
    else silence (`audio_path` is None then: callers should say so).

    Args:
        video: any video FFmpeg reads.
        audio: optional speech file.
        max_frames: stop after this many frames (None: the whole clip).

    Raises:
        FileNotFoundError: `audio` was given and does not exist.
        ValueError: `audio` was given and holds no decodable speech.
    """

    def __init__(self, video: str | Path, audio: str | Path | None = None, max_frames: int | None = None) -> None:
        from avfr.codec.data import VideoReader, decode_audio

        if audio is not None and not Path(audio).is_file():
            raise FileNotFoundError(f"audio not found: {audio}")
        self.video = Path(video)
        self.reader = VideoReader(self.video)
        self.max_frames = max_frames
        self.audio_path: Path | None = None  # where the speech came from (None: silence)
        candidates = [Path(audio)] if audio is not None else [self.video.with_suffix(".wav"), self.video]
        self.pcm = np.zeros(0, np.float32)
        for path in candidates:
            if not path.exists():
                continue
            try:
                pcm, _, _ = decode_audio(path)
            except (ValueError, OSError) as exc:
                if audio is not None:
                    raise ValueError(f"audio {path}: {exc}") from exc
                logger.debug("no audio in %s: %s", path, exc)
                continue
            if len(pcm):
                self.pcm = pcm
                self.audio_path = path
                break
        if audio is not None and self.audio_path is None:
            raise ValueError(f"no audio in {audio}")
        if self.audio_path is None:
            logger.info("no audio for %s: sending silence", self.video)

    def __iter__(self) -> Iterator[CapturedFrame]:
        for index, rgb in enumerate(self.reader):
            if self.max_frames is not None and index >= self.max_frames:
                return
            start = SAMPLES_PER_FRAME * index
            pcm = np.zeros(SAMPLES_PER_FRAME, np.float32)
            chunk = self.pcm[start : start + SAMPLES_PER_FRAME]
            pcm[: len(chunk)] = chunk
            yield CapturedFrame(index, rgb, pcm, time.perf_counter())


class CameraSource:
    """The default camera (cv2.VideoCapture) and microphone (sounddevice), centre-cropped to 256x256.

    Args:
        camera: OpenCV camera index.
        microphone: use the default input device (False: silence).

    Raises:
        DeviceError: no camera, or no usable microphone (with a clear message).
    """

    def __init__(self, camera: int = 0, microphone: bool = True) -> None:
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(camera)
        if not self._cap.isOpened():
            raise DeviceError(f"no camera at index {camera} (cv2.VideoCapture could not open it); "
                              "use --video FILE to call with a clip")
        self._stream = None
        self._audio: list[np.ndarray] = []
        if microphone:
            try:
                import sounddevice as sd
            except OSError as exc:  # PortAudio missing
                self.close()
                raise DeviceError(f"no microphone: {exc} (install libportaudio2, or use --video FILE)") from exc
            try:
                self._stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                              callback=lambda data, frames, t, status: self._audio.append(
                                                  data[:, 0].copy()))
                self._stream.start()
            except (OSError, sd.PortAudioError) as exc:
                self.close()
                raise DeviceError(f"no usable microphone: {exc} (use --video FILE to call with a clip)") from exc
        self._pcm = np.zeros(0, np.float32)

    def __iter__(self) -> Iterator[CapturedFrame]:
        from avfr.codec.data import crop_and_resize, square_crop_box

        t0 = time.perf_counter()
        index = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                logger.warning("camera stopped delivering frames")
                return
            now = time.perf_counter()
            rgb = bgr[..., ::-1]
            h, w = rgb.shape[:2]
            rgb = crop_and_resize(rgb, square_crop_box(None, w, h))
            target = int((now - t0) * 25)
            while self._audio:
                self._pcm = np.concatenate([self._pcm, self._audio.pop(0)])
            while index <= target:  # one output frame per 40 ms of wall time (repeats when the camera is slow)
                pcm = np.zeros(SAMPLES_PER_FRAME, np.float32)
                chunk, self._pcm = self._pcm[:SAMPLES_PER_FRAME], self._pcm[SAMPLES_PER_FRAME:]
                pcm[: len(chunk)] = chunk
                yield CapturedFrame(index, rgb, pcm, now)
                index += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        self._cap.release()


@dataclass(frozen=True)
class Impairment:
    """What to do to the outgoing media on purpose (seeded, so runs repeat).

    Attributes:
        loss: probability that a media-channel message is dropped.
        jitter_ms: each media message is delayed by a uniform [0, jitter_ms] ms (so packets reorder).
        corrupt_at_frame, corrupt_count: inject this many malformed media messages after that frame.
        duplicate_hello_at_frame: send the Hello again after that frame.
        wrong_version_at_frame: send a Hello of the next wire version after that frame.
        refresh_at_frame: force a new source image (the current frame) at that frame.
        seed: random seed.
    """

    loss: float = 0.0
    jitter_ms: float = 0.0
    corrupt_at_frame: int = -1
    corrupt_count: int = 0
    duplicate_hello_at_frame: int = -1
    wrong_version_at_frame: int = -1
    refresh_at_frame: int = -1
    seed: int = 0


@dataclass
class SenderLinkStats:
    """What the sending peer put on the wire (bytes of messages, data-channel framing excluded)."""

    control_bytes: int = 0
    media_bytes: int = 0
    dropped_on_purpose: int = 0
    injected_malformed: int = 0
    frames: int = 0
    capture_s: dict[int, float] = field(default_factory=dict)  # frame index -> capture time (perf_counter)
    sent_s: dict[int, float] = field(default_factory=dict)  # frame index -> keypoint packet sent
    started_s: float = 0.0
    finished_s: float = 0.0


class SendingPeer:
    """Runs an `Encoder` over a source and sends its messages on the two data channels.

    Args:
        encoder: the library encoder.
        control, media: the RTCDataChannels from `avfr.sender.peer.create_channels`.
        impairment: optional deliberate damage of the media channel.
    """

    def __init__(self, encoder: Encoder, control, media, impairment: Impairment | None = None) -> None:
        self.encoder = encoder
        self.control = control
        self.media = media
        self.impairment = impairment or Impairment()
        self._rng = random.Random(self.impairment.seed)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avfr-encoder")
        self._delayed: set[asyncio.TimerHandle] = set()
        self.stats = SenderLinkStats()
        self.hello_bytes = b""
        control.on("message", self._on_control)

    def _on_control(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self._executor.submit(self.encoder.on_control, data)

    async def _wait_open(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.control.readyState != "open" or self.media.readyState != "open":
            if loop.time() > deadline:
                raise ConnectionError("the data channels did not open")
            await asyncio.sleep(0.01)

    def _send(self, messages: list[OutMessage]) -> None:
        imp = self.impairment
        if self.control.readyState != "open" or self.media.readyState != "open":
            return  # the peer hung up; run() stops at the next frame
        for msg in messages:
            if msg.channel == CONTROL_CHANNEL_LABEL:
                self.stats.control_bytes += len(msg.data)
                self.control.send(msg.data)
                continue
            self.stats.media_bytes += len(msg.data)
            if imp.loss and self._rng.random() < imp.loss:
                self.stats.dropped_on_purpose += 1
                continue
            if imp.jitter_ms:
                delay = self._rng.uniform(0.0, imp.jitter_ms / 1000)
                handle = asyncio.get_running_loop().call_later(delay, self._send_late, msg.data)
                self._delayed.add(handle)
            else:
                self.media.send(msg.data)

    def _send_late(self, data: bytes) -> None:
        self._delayed = {h for h in self._delayed if not h.cancelled() and h.when() > asyncio.get_running_loop().time()}
        if self.media.readyState == "open":
            self.media.send(data)

    def _inject(self, index: int, frame: CapturedFrame) -> list[OutMessage]:
        """Deliberate faults after frame `index` (runs on the encoder thread)."""
        imp = self.impairment
        out: list[OutMessage] = []
        if index == imp.corrupt_at_frame:
            for k in range(imp.corrupt_count):
                if k % 2:
                    junk = bytes([0x06]) + bytes(self._rng.getrandbits(8) for _ in range(20))  # version 0
                else:
                    junk = bytes([COMPACT_DELTA_BIT])  # a delta with no payload
                out.append(OutMessage(MEDIA_CHANNEL_LABEL, junk))
                self.stats.injected_malformed += 1
        if index == imp.duplicate_hello_at_frame:
            out.append(OutMessage(CONTROL_CHANNEL_LABEL, self.hello_bytes))
        if index == imp.wrong_version_at_frame:
            newer_tag = (WIRE_VERSION + 1) << 4 | peek_type(self.hello_bytes)  # a Hello of the next version
            out.append(OutMessage(CONTROL_CHANNEL_LABEL, bytes([newer_tag]) + self.hello_bytes[1:]))
            self.stats.injected_malformed += 1
        if index == imp.refresh_at_frame:
            out.extend(self.encoder.refresh_source(frame.rgb))
        return out

    def _encode(self, frame: CapturedFrame) -> tuple[list[OutMessage], list[OutMessage]]:
        """(the encoder's messages, deliberate faults: these skip the loss and jitter)."""
        out = self.encoder.encode_frame(frame.index, frame.rgb)
        out += self.encoder.encode_audio(frame.pcm)
        return out, self._inject(frame.index, frame)

    def _hold(self, frame: CapturedFrame) -> tuple[list[OutMessage], list[OutMessage]]:
        """Behind real time: hold the keypoints for this frame (its audio still goes out)."""
        out = self.encoder.encode_hold(frame.index)
        out += self.encoder.encode_audio(frame.pcm)
        return out, self._inject(frame.index, frame)

    def _send_direct(self, messages: list[OutMessage]) -> None:
        if self.control.readyState != "open" or self.media.readyState != "open":
            return
        for msg in messages:
            if msg.channel == CONTROL_CHANNEL_LABEL:
                self.stats.control_bytes += len(msg.data)
                self.control.send(msg.data)
            else:
                self.media.send(msg.data)

    async def run(self, frames: Iterator[CapturedFrame] | object, source_rgb: np.ndarray | None = None,
                  realtime: bool = True, open_timeout_s: float = 20.0) -> SenderLinkStats:
        """Send a whole call; returns the link statistics.

        Args:
            frames: an iterable of CapturedFrame (FileSource, CameraSource, ...).
            source_rgb: uint8 (256, 256, 3) source image (None: the first frame).
            realtime: pace frames at 25 fps from the start (False: as fast as the encoder goes).
            open_timeout_s: how long to wait for the data channels.
        """
        loop = asyncio.get_running_loop()
        iterator = iter(frames)
        await self._wait_open(open_timeout_s)
        end = object()
        first = await loop.run_in_executor(self._executor, next, iterator, end)
        if first is end:
            raise ValueError("the source delivered no frames")
        start_messages = self.encoder.start(first.rgb if source_rgb is None else source_rgb)
        self.hello_bytes = start_messages[0].data
        self._send(start_messages)
        self.stats.started_s = time.perf_counter()
        frame = first
        while frame is not end and not self.encoder.stopped and self.control.readyState == "open":
            due = self.stats.started_s + frame.index / 25.0
            if realtime:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            capture_s = time.perf_counter() if realtime else frame.capture_s
            self.stats.capture_s[frame.index] = capture_s
            behind = realtime and frame.index > 0 and capture_s - due > 1.0 / 25.0
            work = self._hold if behind else self._encode
            messages, faults = await loop.run_in_executor(self._executor, work, frame)
            self.stats.sent_s[frame.index] = time.perf_counter()
            self._send(messages)
            self._send_direct(faults)
            self.stats.frames += 1
            if len(self.stats.capture_s) > 2 * _KEEP_TIMES:  # bounded over long calls
                for table in (self.stats.capture_s, self.stats.sent_s):
                    for old in sorted(table)[:-_KEEP_TIMES]:
                        del table[old]
            frame = await loop.run_in_executor(self._executor, next, iterator, end)
        if self.impairment.jitter_ms:
            await asyncio.sleep(self.impairment.jitter_ms / 1000 + 0.05)  # let delayed packets go first
        await asyncio.sleep(0.05)
        self._send(await loop.run_in_executor(self._executor, self.encoder.finish))
        self.stats.finished_s = time.perf_counter()
        return self.stats

    def close(self) -> None:
        """Cancel delayed sends and stop the encoder thread (waits for the running job, so the Encoder can be
        closed next)."""
        for handle in self._delayed:
            handle.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
