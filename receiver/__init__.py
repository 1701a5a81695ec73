"""avfr.receiver: the answering peer (jitter buffer, concealment, generator).

`Decoder` is the library (wire messages in -> frames + PCM out) and needs no aiortc; its data types live in
`avfr.receiver.config`, its jitter buffer in `avfr.receiver.playout`, its decoded speech in
`avfr.receiver.speech`. The WebRTC parts (MediaStreamTracks, the receiving peer) live in
`avfr.receiver.track`.
"""

from avfr.receiver.config import DecoderConfig, DecoderStats, FrameJob, ReceivedFrame, SourceJob
from avfr.receiver.decoder import Decoder

__all__ = ["Decoder", "DecoderConfig", "DecoderStats", "FrameJob", "ReceivedFrame", "SourceJob"]
