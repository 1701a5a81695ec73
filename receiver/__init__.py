"""avfr.receiver: the answering peer (jitter buffer, concealment, generator).

`Decoder` is the library (wire messages in -> frames + PCM out) and needs no aiortc; its data types live in
`avfr.receiver.config`, its jitter buffer in `avfr.receiver.playout`, its decoded speech in
`avfr.receiver.speech`, when it gives up on a silent sender in `avfr.receiver.liveness`. The WebRTC parts
(MediaStreamTracks, the receiving peer) live in `avfr.receiver.track`. `BatchRenderer`
(`avfr.receiver.many_calls`) draws the frames of many calls on one batched generator (a gateway's receiver side;
its batching policy in `avfr.receiver.batching`, its ORT / torch generators in `avfr.receiver.batch_backends`);
`avfr.receiver.gateway.Gateway` puts many callers' `ReceivingPeer`s on one of them (``avfr-codec gateway``).
"""

from avfr.receiver.config import DecoderConfig, DecoderStats, FrameJob, ReceivedFrame, SourceJob
from avfr.receiver.decoder import Decoder
from avfr.receiver.liveness import CallTimeoutError
from avfr.receiver.many_calls import BatchRenderer

__all__ = ["BatchRenderer", "CallTimeoutError", "Decoder", "DecoderConfig", "DecoderStats", "FrameJob", "ReceivedFrame",
           "SourceJob"]
