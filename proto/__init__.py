"""avfr.proto: the wire format (stdlib, numpy and msgpack only). The spec is proto/SPEC.md.

Messages are frozen dataclasses; `encode_message` / `decode_message` turn them into bytes and back, and every
malformed input becomes one `ProtocolError` (a ValueError) with a specific message. Quantisation is part of
the format (`quantise_keypoints`), and so is the keypoint stream's prediction (`KeypointEncoder`,
`KeypointDecoder`). Importing this package does nothing but define names.
"""

from avfr.proto.audio import TS_STEP_AUDIO_90K, Audio, decode_audio, encode_audio
from avfr.proto.control import (
    MAX_ERROR_TEXT_CHARS,
    Error,
    Refresh,
    Stats,
    decode_error,
    decode_refresh,
    decode_stats,
    encode_error,
    encode_refresh,
    encode_stats,
    error_from_exception,
)
from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import (
    DATA_CHANNEL_PROTOCOL,
    MAX_KEYPOINTS_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_OPUS_PACKET_BYTES,
    MAX_SOURCE_CHUNK_BYTES,
    WIRE_VERSION,
    MessageType,
)
from avfr.proto.hello import (
    CLOCK_RATE_HZ,
    AudioParams,
    Capabilities,
    Hello,
    ModelInfo,
    Session,
    decode_hello,
    encode_hello,
    validate_hello,
)
from avfr.proto.keypoint_coding import decode_keypoints, encode_keypoints, extend_seq
from avfr.proto.keypoint_packets import (
    MAX_REF_DISTANCE,
    Keypoints,
    KeypointsDelta,
    KeypointsKey,
    KeypointsPacket,
    seq_diff,
)
from avfr.proto.keypoint_stream import KeypointDecoder, KeypointEncoder
from avfr.proto.messages import (
    CONTROL_CHANNEL_LABEL,
    CONTROL_CHANNEL_TYPES,
    MEDIA_CHANNEL_LABEL,
    MEDIA_CHANNEL_TYPES,
    Message,
    decode_message,
    encode_message,
    peek_type,
)
from avfr.proto.quant import QuantParams, dequantise, dequantise_keypoints, quantise, quantise_keypoints
from avfr.proto.source import (
    MAX_SOURCE_BYTES,
    SOURCE_FORMATS,
    SourceAssembler,
    SourceChunk,
    SourceImage,
    decode_source_chunk,
    encode_source_chunk,
    split_source_image,
)
from avfr.proto.text import printable_text

__all__ = [
    "WIRE_VERSION",
    "DATA_CHANNEL_PROTOCOL",
    "CLOCK_RATE_HZ",
    "MAX_MESSAGE_BYTES",
    "MAX_KEYPOINTS_BYTES",
    "MAX_OPUS_PACKET_BYTES",
    "MAX_SOURCE_CHUNK_BYTES",
    "MAX_SOURCE_BYTES",
    "MAX_REF_DISTANCE",
    "MAX_ERROR_TEXT_CHARS",
    "SOURCE_FORMATS",
    "CONTROL_CHANNEL_LABEL",
    "MEDIA_CHANNEL_LABEL",
    "CONTROL_CHANNEL_TYPES",
    "MEDIA_CHANNEL_TYPES",
    "ProtocolError",
    "ErrorCode",
    "MessageType",
    "Message",
    "Hello",
    "AudioParams",
    "Session",
    "ModelInfo",
    "Capabilities",
    "validate_hello",
    "Error",
    "Refresh",
    "Stats",
    "error_from_exception",
    "SourceImage",
    "SourceChunk",
    "SourceAssembler",
    "split_source_image",
    "KeypointsKey",
    "KeypointsDelta",
    "KeypointsPacket",
    "Keypoints",
    "KeypointEncoder",
    "KeypointDecoder",
    "seq_diff",
    "Audio",
    "TS_STEP_AUDIO_90K",
    "QuantParams",
    "quantise",
    "dequantise",
    "quantise_keypoints",
    "dequantise_keypoints",
    "peek_type",
    "encode_message",
    "decode_message",
    "encode_hello",
    "decode_hello",
    "encode_error",
    "decode_error",
    "encode_refresh",
    "decode_refresh",
    "encode_stats",
    "decode_stats",
    "encode_source_chunk",
    "decode_source_chunk",
    "encode_keypoints",
    "decode_keypoints",
    "extend_seq",
    "encode_audio",
    "decode_audio",
    "printable_text",
]
