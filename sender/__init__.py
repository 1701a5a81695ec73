"""avfr.sender: the calling peer (capture, priors, keypoints, packets).

`Encoder` is the library (frames + PCM in -> wire messages out) and needs no aiortc; its data types live in
`avfr.sender.config`, its drift check in `avfr.sender.drift`, its keypoint rate control in
`avfr.sender.rate_control`. The WebRTC parts live in `avfr.sender.peer` (connection set-up, signaling) and
`avfr.sender.track` (the sending peer).
"""

from avfr.codec.runtime import CallModel, load_call_model
from avfr.sender.config import EncoderConfig, EncoderStats, OutMessage
from avfr.sender.encoder import Encoder

__all__ = ["Encoder", "EncoderConfig", "EncoderStats", "OutMessage", "CallModel", "load_call_model"]
