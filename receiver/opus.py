"""Opus decoding of the caller's speech (the class is shared with the sender's replica; see avfr.sender.opus)."""

from avfr.sender.opus import OPUS_FRAME_SAMPLES, OpusDecoder

__all__ = ["OPUS_FRAME_SAMPLES", "OpusDecoder"]
