"""The receiving peer over WebRTC: data channels -> `Decoder` -> aiortc MediaStreamTracks / mp4 / window.

Messages are handled on the event loop (`Decoder.receive`, cheap); the generator runs on one worker thread
(`Decoder.run_job`), so networking never stalls. Rendered frames come back to the loop and go to every
`ReceivedVideoTrack` / `ReceivedAudioTrack` (standard aiortc tracks: a conferencing app can forward them
with ``pc.addTrack``) and to the frame callbacks (mp4 writer, window, tests). A peer can hand its jobs to
someone else's generator instead (``runner``: the gateway's `avfr.receiver.gateway`, one batched generator
for many calls); pacing, skipping, liveness and the tracks stay the same.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from avfr.codec.data import SAMPLE_RATE
from avfr.proto import CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL, printable_text
from avfr.receiver.config import FrameJob, ReceivedFrame, SourceJob
from avfr.receiver.decoder import Decoder
from avfr.receiver.liveness import CallTimeoutError

__all__ = ["ReceivedVideoTrack", "ReceivedAudioTrack", "ReceivingPeer", "repeat_frame"]

logger = logging.getLogger(__name__)

VIDEO_CLOCK = fractions.Fraction(1, 90_000)
AUDIO_CLOCK = fractions.Fraction(1, SAMPLE_RATE)
_TRACK_QUEUE_FRAMES = 250  # a track nobody reads keeps at most 10 s
_KEEP_TIMES = 1500  # per-frame timestamps kept for stats (the last minute)


class _QueueTrack(MediaStreamTrack):
    """A track fed from the receiving peer; the oldest items are dropped when nobody reads.

    Args:
        track_id: its id (the msid track id in SDP, what a remote aiortc peer sees as ``track.id``; default:
            a random UUID).
    """

    max_items = _TRACK_QUEUE_FRAMES

    def __init__(self, track_id: str | None = None) -> None:
        super().__init__()
        if track_id is not None:
            self._id = track_id  # what MediaStreamTrack.id returns (aiortc has no setter)
        self._queue: asyncio.Queue = asyncio.Queue()
        self.dropped = 0

    def _put(self, item: object) -> None:
        if self._queue.qsize() >= self.max_items:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


class ReceivedVideoTrack(_QueueTrack):
    """The far end's face as an aiortc video track: av.VideoFrame rgb24 256x256, pts on the 90 kHz clock."""

    kind = "video"

    def put(self, frame: ReceivedFrame) -> None:
        import av

        video = av.VideoFrame.from_ndarray(frame.rgb, format="rgb24")
        video.pts = frame.index * 3600
        video.time_base = VIDEO_CLOCK
        self._put(video)


class ReceivedAudioTrack(_QueueTrack):
    """The far end's decoded speech as an aiortc audio track: av.AudioFrame s16 mono 16 kHz, 20 ms each (two per
    video frame: aiortc's Opus encoder makes one packet of each; a 40 ms frame became two packets under one RTP
    timestamp, and a receiving aiortc peer played only one of them)."""

    kind = "audio"
    max_items = 2 * _TRACK_QUEUE_FRAMES
    samples_per_frame = SAMPLE_RATE // 50

    def put(self, frame: ReceivedFrame) -> None:
        import av

        pcm = (np.clip(frame.pcm, -1.0, 1.0) * 32767.0).astype(np.int16)[None]
        step = self.samples_per_frame
        for start in range(0, pcm.shape[1], step):
            audio = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + step]), format="s16",
                                               layout="mono")
            audio.sample_rate = SAMPLE_RATE
            audio.pts = frame.index * len(frame.pcm) + start
            audio.time_base = AUDIO_CLOCK
            self._put(audio)


class ReceivingPeer:
    """Feeds a `Decoder` from the data channels of `pc` and renders on a worker thread.

    Args:
        decoder: the library decoder.
        pc: the RTCPeerConnection (answering side: the channels arrive by ``datachannel``).
        record_messages: keep every received (channel, bytes) in arrival order (for offline replays).
        tick_s: realtime decoders are ticked this often (others: checked for a silent sender every 0.1 s).

    A realtime decoder's worker skips drawing a frame when `max_render_lag_frames` more jobs wait behind it
    (the generator is slower than real time): that frame still goes out, with its own speech under the last
    picture drawn (`ReceivedFrame.repeated`), so the tracks and callbacks get every decided frame and the
    speech plays on; counted in ``decoder.stats.render_skipped``.

    A sender that stops (no source image, or silence on both channels: `Decoder.check_alive`) ends the call:
    `wait` raises `CallTimeoutError`, in realtime and arrival-order mode alike.

    ``runner`` (default None: ``decoder.run_job`` on the peer's own worker thread, as above) takes the jobs
    elsewhere: ``runner.bind(peer)`` once, ``runner.put(job)`` for each job in order (on the loop),
    ``runner.close()`` from `close`; it answers every job exactly once, in order, with `deliver_threadsafe`
    (a ReceivedFrame, or None for a SourceJob) or `fail_threadsafe` (the call ends).
    """

    max_render_lag_frames = 2

    def __init__(self, decoder: Decoder, pc, record_messages: bool = False, tick_s: float = 0.01,
                 runner=None) -> None:
        self.decoder = decoder
        self.pc = pc
        self.record_messages = record_messages
        self.messages: list[tuple[str, bytes]] = []
        self.frames_out: list[Callable[[ReceivedFrame], None]] = []
        self.video_tracks: list[ReceivedVideoTrack] = []
        self.audio_tracks: list[ReceivedAudioTrack] = []
        self.control = None
        self.done = asyncio.Event()
        self.closed = asyncio.Event()
        self.frame_times: dict[int, float] = {}  # frame index -> perf_counter when it came out
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.Queue = queue.Queue()
        self._pending_jobs = 0
        self._tick_s = tick_s
        self._runner = runner
        self._worker: threading.Thread | None = None
        if runner is None:
            self._worker = threading.Thread(target=self._work, name="avfr-generator", daemon=True)
            self._worker.start()
        else:
            runner.bind(self)
        self._ticker = self._loop.create_task(self._tick())
        pc.on("datachannel", self._on_channel)
        pc.on("connectionstatechange", self._on_state)

    def video_track(self, track_id: str | None = None) -> ReceivedVideoTrack:
        """A new video track fed with every frame from now on (until it is stopped)."""
        track = ReceivedVideoTrack(track_id)
        self.video_tracks.append(track)
        return track

    def audio_track(self, track_id: str | None = None) -> ReceivedAudioTrack:
        """A new audio track fed with every frame's speech from now on (until it is stopped)."""
        track = ReceivedAudioTrack(track_id)
        self.audio_tracks.append(track)
        return track

    def deliver_threadsafe(self, frame: ReceivedFrame | None) -> None:
        """A runner's answer to one job, from any thread (the loop may already be closed)."""
        try:
            self._loop.call_soon_threadsafe(self._deliver, frame)
        except RuntimeError:  # the loop closed: nobody is waiting for frames any more
            pass

    def fail_threadsafe(self, exc: BaseException) -> None:
        """A runner's generator failed: the call ends with `exc` (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(self._failed, exc)
        except RuntimeError:
            pass

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._end_of_call()

    def _on_channel(self, channel) -> None:
        label = channel.label
        if label not in (CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL):  # the peer names its channels
            logger.warning("ignored a data channel labelled %s", printable_text(label, 64))
            return
        if label == CONTROL_CHANNEL_LABEL:
            self.control = channel
        self.decoder.connected()
        channel.on("message", lambda data, label=label: self._on_message(label, data))
        channel.on("close", lambda label=label: self._on_close(label))

    def _on_close(self, label: str) -> None:
        if label == CONTROL_CHANNEL_LABEL:
            self._end_of_call()

    def _end_of_call(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.decoder.finish()
            self._dispatch()

    def _on_message(self, label: str, data: bytes | str) -> None:
        if not isinstance(data, bytes):
            self.decoder.stats.dropped_malformed += 1
            return
        if self.record_messages:
            self.messages.append((label, data))
        self.decoder.receive(label, data)
        self._dispatch()

    def _dispatch(self) -> None:
        for reply in self.decoder.take_replies():
            if self.control is not None and self.control.readyState == "open":
                self.control.send(reply)
        for job in self.decoder.take_jobs():
            self._pending_jobs += 1
            (self._jobs.put if self._runner is None else self._runner.put)(job)
        self._check_done()

    def _check_done(self) -> None:
        if self.decoder.finished and self._pending_jobs == 0 and not self.done.is_set():
            self.done.set()
            self.end_tracks()

    def end_tracks(self) -> None:
        """End every track after the frames it holds (their readers get MediaStreamError next)."""
        for track in (*self.video_tracks, *self.audio_tracks):
            track._put(None)

    async def _tick(self) -> None:
        realtime = self.decoder.config.realtime
        while not self.done.is_set():
            await asyncio.sleep(self._tick_s if realtime else max(self._tick_s, 0.1))
            if realtime:
                self.decoder.tick()
            try:
                self.decoder.check_alive()
            except CallTimeoutError as exc:
                logger.debug("call timed out: %s", exc)
                self._failed(exc)
                self.end_tracks()
                return
            self._dispatch()

    def _work(self) -> None:
        shown: ReceivedFrame | None = None  # the last frame drawn
        source: tuple[np.ndarray, int] | None = None  # the source image and its id: the picture before the first frame
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self.decoder.config.realtime and isinstance(job, FrameJob) and \
                    self._jobs.qsize() >= self.max_render_lag_frames:  # behind real time: draw a newer frame
                self._loop.call_soon_threadsafe(self._deliver, repeat_frame(job, shown, source))
                continue
            try:
                frame = self.decoder.run_job(job)
            except Exception as exc:  # noqa: BLE001 - reported to the loop, the call ends
                logger.exception("generator failed")
                self._loop.call_soon_threadsafe(self._failed, exc)
                return
            if isinstance(job, SourceJob):
                if self.decoder.source_rgb is not None:
                    source = (self.decoder.source_rgb, job.image_id)
            else:
                shown = frame
            self._loop.call_soon_threadsafe(self._deliver, frame)

    def _failed(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()

    def _deliver(self, frame: ReceivedFrame | None) -> None:
        self._pending_jobs -= 1
        if frame is not None and frame.repeated:
            self.decoder.stats.render_skipped += 1
        elif frame is not None:
            self.frame_times[frame.index] = time.perf_counter()
            if len(self.frame_times) > 2 * _KEEP_TIMES:  # bounded over long calls
                for old in sorted(self.frame_times)[:-_KEEP_TIMES]:
                    del self.frame_times[old]
        if frame is not None:
            if any(t.readyState != "live" for t in (*self.video_tracks, *self.audio_tracks)):  # stopped: forget
                self.video_tracks = [t for t in self.video_tracks if t.readyState == "live"]
                self.audio_tracks = [t for t in self.audio_tracks if t.readyState == "live"]
            for track in self.video_tracks:
                track.put(frame)
            for track in self.audio_tracks:
                track.put(frame)
            for callback in self.frames_out:
                callback(frame)
        self._check_done()

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until every frame of the call was delivered (after the end anchor or the call closed).

        Raises:
            CallTimeoutError: the sender stopped (no source image, or silence: `Decoder.check_alive`).
            TimeoutError: not done within timeout_s.
            RuntimeError: the generator failed.
        """
        await asyncio.wait_for(self.done.wait(), timeout_s)
        if isinstance(self.error, CallTimeoutError):
            raise self.error
        if self.error is not None:
            raise RuntimeError(f"generator failed: {self.error}") from self.error

    def close(self) -> None:
        """Stop the ticker and the worker thread: queued jobs are dropped, the running one is waited for (so
        the Decoder can be closed next); or close the runner."""
        if self._ticker is not None:
            self._ticker.cancel()
        if self._runner is not None:
            self._runner.close()
            return
        try:
            while True:
                self._jobs.get_nowait()  # drop the queued jobs
        except queue.Empty:
            pass
        self._jobs.put(None)
        self._worker.join(timeout=30.0)
        if self._worker.is_alive():
            logger.warning("the generator thread did not stop within 30 s")


def repeat_frame(job: FrameJob, shown: ReceivedFrame | None, source: tuple[np.ndarray, int] | None) -> ReceivedFrame:
    """A frame the generator skips: `job`'s speech (float32 (640,)) under the last picture drawn (uint8
    (256, 256, 3); before the first: the source image)."""
    if shown is not None:
        rgb, source_id = shown.rgb, shown.source_id
    elif source is not None:
        rgb, source_id = source
    else:
        rgb, source_id = np.zeros((256, 256, 3), np.uint8), 0
    return ReceivedFrame(job.index, job.ts_90k, rgb, job.pcm, job.concealed, source_id, job.decided_s,
                         time.perf_counter(), job.held_frames, repeated=True)
