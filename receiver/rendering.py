"""`Renderer`: the Decoder's worker half, source images -> the generator's source, frame jobs -> pictures.

It runs on one worker thread (`Decoder.run_job`): decoding a source image (its header was checked on the
network path), mediapipe's priors on it, the identity encoder once, then the receiver graph per frame.
"""

from __future__ import annotations

import collections
import logging
import time

import numpy as np

from avfr.codec.runtime import CallModel, decode_source_image
from avfr.proto import Refresh, encode_refresh, printable_text
from avfr.receiver.config import DecoderConfig, DecoderStats, FrameJob, ReceivedFrame, SourceJob

__all__ = ["Renderer", "SourcePriors"]

logger = logging.getLogger(__name__)


class SourcePriors:
    """A source image -> the generator's 5-channel input, with mediapipe's priors (built on first use).

    mediapipe is not thread-safe: one instance per thread that calls it (the Decoder's worker, the gateway's
    source thread), closed on that thread.
    """

    def __init__(self) -> None:
        self.extractor = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (256, 256, 3) RGB -> float32 (5, 256, 256) in [0, 1]."""
        from avfr.codec.runtime import source_input

        if self.extractor is None:
            from avfr.codec.data import PriorExtractor

            self.extractor = PriorExtractor()
        return source_input(rgb, self.extractor)[0]

    def close(self) -> None:
        """Release mediapipe (idempotent)."""
        if self.extractor is not None:
            self.extractor.close()
        self.extractor = None


class Renderer:
    """Generator, priors and the current source image of one call.

    Args:
        model: the call's model (its receiver graphs are loaded here).
        config: receiver settings (threads, relative motion).
        stats: the Decoder's stats (generate_ms and frames_out are counted here).

    Attributes:
        source_rgb: uint8 (256, 256, 3), the source image set last (None before the first).
        failures: REFRESH replies for source images that did not decode, for the network thread to send
            and count (a deque: appended here, popped there).
    """

    def __init__(self, model: CallModel, config: DecoderConfig, stats: DecoderStats) -> None:
        from avfr.codec.runtime import ReceiverModel

        self.config = config
        self.stats = stats
        self.generator = ReceiverModel.from_manifest(model.manifest, threads=config.threads)
        self.priors = SourcePriors()  # mediapipe, built on the worker thread when the first image comes
        self.source_rgb: np.ndarray | None = None
        self.source_id = 0
        self.failures: collections.deque[bytes] = collections.deque()

    def set_source(self, job: SourceJob) -> None:
        """Decode a source image and run the identity encoder on it; an image that does not decode is dropped
        like a malformed message and asked for again (the previous source, if any, stays)."""
        try:
            rgb = decode_source_image(job.data, image_format=job.image_format)
        except ValueError as exc:
            self.failures.append(encode_refresh(Refresh(want_key=False, want_source=True)))
            logger.warning("source image %d dropped: %s", job.image_id, printable_text(str(exc), 160))
            return
        self.generator.set_source(self.priors(rgb))
        self.source_rgb = rgb
        self.source_id = job.image_id

    def frame(self, job: FrameJob, first_kp: tuple[np.ndarray, np.ndarray] | None) -> ReceivedFrame:
        """Draw one frame (no source image yet: a black picture, concealed, with the frame's speech).

        Args:
            job: the frame's keypoints, mel window and PCM.
            first_kp: the stream's first decoded (kp, jac), for relative motion (config.relative_motion).
        """
        t0 = time.perf_counter()
        if not self.generator.has_source:  # the only image so far failed to decode: the speech plays on
            return ReceivedFrame(job.index, job.ts_90k, np.zeros((256, 256, 3), np.uint8), job.pcm, True, 0,
                                 job.decided_s, time.perf_counter(), job.held_frames)
        kp, jac = job.kp, job.jac
        if kp is None:
            kp, jac = self.generator.source_keypoints
        elif self.config.relative_motion and first_kp is not None:
            from avfr.codec.runtime import relative_motion

            kp, jac = relative_motion(kp, jac, *first_kp, *self.generator.source_keypoints)
        rgb = self.generator.frame(kp, jac, job.mel, job.held_frames)
        done = time.perf_counter()
        self.stats.generate_ms += 1000 * (done - t0)
        self.stats.frames_out += 1
        return ReceivedFrame(job.index, job.ts_90k, rgb, job.pcm, job.concealed, self.source_id, job.decided_s,
                             done, job.held_frames)

    def close(self) -> None:
        """Release mediapipe (the graphs go with the object)."""
        self.priors.close()
