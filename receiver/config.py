"""The `Decoder`'s data types: `DecoderConfig` (receiver settings), `DecoderStats` (counters of one incoming
call), and what it hands out: `SourceJob` / `FrameJob` (work for the generator) and `ReceivedFrame`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avfr.proto import Stats

__all__ = ["DecoderConfig", "DecoderStats", "SourceJob", "FrameJob", "ReceivedFrame"]

_U32_MAX = (1 << 32) - 1


@dataclass(frozen=True)
class DecoderConfig:
    """Receiver settings.

    Attributes:
        threads: onnxruntime intra-op threads of the receiver graphs.
        reorder_frames: a missing keypoint packet is lost once a packet this many frames newer arrived.
        reorder_audio_packets: the same for audio packets (20 ms each).
        realtime: also declare packets lost at their playout deadline (wall clock; see module doc).
        min_delay_ms, max_delay_ms: bounds of the adaptive playout delay (realtime only).
        refresh_interval_frames: at most one Refresh(want_key) per this many frames.
        stats_interval_frames: a Stats message to the sender every this many frames (0: never).
        relative_motion: drive the source with keypoint motion relative to the first frame (cross-identity).
        max_buffer_frames: packets further ahead than this are refused (bounded memory).
        timing: keep the perf_counter arrival time of every keypoint packet in `arrival_s` (benchmarks).
        source_timeout_s: the call fails (`CallTimeoutError`) when no source image came this long after the
            Hello (<= 0: wait forever).
        silence_timeout_s: the call fails when no message at all came on either channel for this long while
            the call is up (<= 0: wait forever; see `avfr.receiver.liveness`).
    """

    threads: int = 1
    reorder_frames: int = 3
    reorder_audio_packets: int = 6
    realtime: bool = False
    min_delay_ms: float = 40.0
    max_delay_ms: float = 400.0
    refresh_interval_frames: int = 5
    stats_interval_frames: int = 25
    relative_motion: bool = False
    max_buffer_frames: int = 250
    timing: bool = False
    source_timeout_s: float = 10.0
    silence_timeout_s: float = 10.0


@dataclass
class DecoderStats:
    """Counters of one incoming call (the first nine are what `Stats` reports to the sender).

    Three things are kept apart: network loss (`lost`: a frame's keypoint packet never arrived), lateness
    (`late_frames`: it arrived after its frame was decided; `dropped_late` counts such packets, keypoints and
    audio) and skipped renders (`render_skipped`: decided, but the generator was too slow to draw it).
    """

    received: int = 0
    dropped_malformed: int = 0
    dropped_late: int = 0
    dropped_broken: int = 0
    concealed: int = 0
    audio_received: int = 0
    audio_concealed: int = 0
    jitter_ms: float = 0.0
    delay_ms: float = 0.0
    lost: int = 0  # keypoint frames concealed whose packet never arrived (network loss, so far)
    late_frames: int = 0  # keypoint frames concealed whose packet arrived after they were decided (late)
    duplicates: int = 0
    duplicate_hellos: int = 0
    refused_messages: int = 0  # valid messages at the wrong time
    keypoint_bytes: int = 0
    audio_bytes: int = 0
    source_bytes: int = 0
    sources: int = 0
    key_requests: int = 0
    frames_decided: int = 0
    frames_out: int = 0
    render_skipped: int = 0  # decided frames not drawn (the last picture repeated) as the generator fell behind
    generate_ms: float = 0.0  # total time in the receiver graph

    def to_message(self) -> Stats:
        """The proto Stats message of these counters (saturated to uint32)."""
        def u32(v: int) -> int:
            return min(int(v), _U32_MAX)

        return Stats(u32(self.received), u32(self.dropped_malformed), u32(self.dropped_late),
                     u32(self.dropped_broken), u32(self.concealed), u32(self.audio_received),
                     u32(self.audio_concealed), float(min(self.jitter_ms, 1e6)), float(min(self.delay_ms, 1e6)))


@dataclass(frozen=True)
class SourceJob:
    """Set a new source image before the frames that follow.

    The bytes passed the header check on the network path (declared format, at most 1024 px a side); the
    worker decodes them (`Decoder.run_job`), so a slow or failing decode never holds up the network.
    """

    image_id: int
    data: bytes = field(repr=False)  # the encoded image
    image_format: str  # its declared format: "webp", "png" or "jpeg"


@dataclass(frozen=True)
class FrameJob:
    """Everything the generator needs for one frame.

    Attributes:
        index: frame number from the stream start (25 fps).
        ts_90k: media timestamp.
        kp: float32 (K, 2) or None (no keypoints yet: draw the source pose).
        jac: float32 (K, 2, 2) or None.
        mel: float32 (80, 19) log-mel window of the decoded speech.
        pcm: float32 (640,) decoded speech of this frame (16 kHz).
        concealed: the keypoints are not this frame's own exact ones.
        decided_s: time.perf_counter() when the frame was decided (for latency breakdowns).
        held_frames: for how many frames ``kp`` have been held in place of lost ones (0: decoded for this
            frame, exactly or as a concealed delta).
    """

    index: int
    ts_90k: int
    kp: np.ndarray | None = field(repr=False)
    jac: np.ndarray | None = field(repr=False)
    mel: np.ndarray = field(repr=False)
    pcm: np.ndarray = field(repr=False)
    concealed: bool
    decided_s: float
    held_frames: int = 0


@dataclass(frozen=True)
class ReceivedFrame:
    """One output frame: uint8 (256, 256, 3) RGB and its float32 (640,) 16 kHz PCM.

    ``repeated``: the generator skipped this frame (realtime, behind): rgb is the last picture drawn, the
    speech is this frame's own.
    """

    index: int
    ts_90k: int
    rgb: np.ndarray = field(repr=False)
    pcm: np.ndarray = field(repr=False)
    concealed: bool
    source_id: int
    decided_s: float
    done_s: float
    held_frames: int = 0  # for how many frames the keypoints drawn had been held (FrameJob.held_frames)
    repeated: bool = False
