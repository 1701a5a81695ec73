"""avfr.receiver: the answering peer (jitter buffer, concealment, generator).

`Decoder` is the library (wire messages in -> frames + PCM out) and needs no aiortc; the WebRTC parts
(MediaStreamTracks, the receiving peer) live in `avfr.receiver.track`.
"""

from avfr.receiver.decoder import Decoder, DecoderConfig, DecoderStats, FrameJob, ReceivedFrame, SourceJob

__all__ = ["Decoder", "DecoderConfig", "DecoderStats", "FrameJob", "ReceivedFrame", "SourceJob"]
