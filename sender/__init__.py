"""avfr.sender: the calling peer (capture, priors, keypoints, packets).

`Encoder` is the library (frames + PCM in -> wire messages out) and needs no aiortc; the WebRTC parts
live in `avfr.sender.peer` (connection set-up, signaling) and `avfr.sender.track` (the sending peer).
"""

from avfr.codec.runtime import CallModel, load_call_model
from avfr.sender.encoder import Encoder, EncoderConfig, EncoderStats, OutMessage

__all__ = ["Encoder", "EncoderConfig", "EncoderStats", "OutMessage", "CallModel", "load_call_model"]
