"""One entry point per direction: `encode_message` and `decode_message` for every message type."""

from __future__ import annotations

from avfr.proto.audio import Audio, decode_audio, encode_audio
from avfr.proto.control import (
    Error,
    Refresh,
    Stats,
    decode_error,
    decode_refresh,
    decode_stats,
    encode_error,
    encode_refresh,
    encode_stats,
)
from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import MessageType, parse_tag
from avfr.proto.hello import Hello, Session, decode_hello, encode_hello
from avfr.proto.keypoint_coding import decode_keypoints, encode_keypoints
from avfr.proto.keypoint_packets import KeypointsDelta, KeypointsKey
from avfr.proto.source import SourceChunk, decode_source_chunk, encode_source_chunk

__all__ = [
    "Message",
    "CONTROL_CHANNEL_LABEL",
    "MEDIA_CHANNEL_LABEL",
    "CONTROL_CHANNEL_TYPES",
    "MEDIA_CHANNEL_TYPES",
    "peek_type",
    "encode_message",
    "decode_message",
]

Message = Hello | Error | Refresh | Stats | SourceChunk | KeypointsKey | KeypointsDelta | Audio

CONTROL_CHANNEL_LABEL = "avfr-control"  # reliable, ordered
MEDIA_CHANNEL_LABEL = "avfr-media"  # ordered=False, maxRetransmits=0
CONTROL_CHANNEL_TYPES = frozenset(
    {MessageType.HELLO, MessageType.ERROR, MessageType.REFRESH, MessageType.STATS, MessageType.SOURCE_CHUNK}
)
MEDIA_CHANNEL_TYPES = frozenset({MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA, MessageType.AUDIO})


def peek_type(data: bytes) -> MessageType:
    """The type of a message after the version, length and per-type size checks (nothing else is read).

    Raises:
        ProtocolError: as `parse_tag`.
    """
    return parse_tag(data)


def encode_message(msg: Message, session: Session | None = None) -> bytes:
    """Any message -> bytes.

    Args:
        msg: the message.
        session: required for keypoint packets (K, bit depths).

    Raises:
        ProtocolError: a keypoint packet without a session or not fitting it.
        TypeError: not a message.
    """
    if isinstance(msg, (KeypointsKey, KeypointsDelta)):
        if session is None:
            raise ProtocolError("encoding a keypoints packet needs the session", ErrorCode.UNEXPECTED_MESSAGE)
        return encode_keypoints(msg, session)
    if isinstance(msg, Hello):
        return encode_hello(msg)
    if isinstance(msg, Error):
        return encode_error(msg)
    if isinstance(msg, Refresh):
        return encode_refresh(msg)
    if isinstance(msg, Stats):
        return encode_stats(msg)
    if isinstance(msg, SourceChunk):
        return encode_source_chunk(msg)
    if isinstance(msg, Audio):
        return encode_audio(msg)
    raise TypeError(f"not an avfr.proto message: {type(msg).__name__}")


def decode_message(data: bytes, session: Session | None = None, near_seq: int = 0) -> Message:
    """bytes -> the message they hold.

    Args:
        data: one whole data-channel message.
        session: the call's session; keypoint packets before one is set up are refused.
        near_seq: the keypoint seq the receiver expects next, to extend a DELTA's 7 seq bits
            (`decode_keypoints`).

    Raises:
        ProtocolError: anything malformed (code MALFORMED), another wire version (UNSUPPORTED_VERSION), a
            keypoint packet without a session (UNEXPECTED_MESSAGE).
    """
    msg_type = parse_tag(data)
    if msg_type in (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA):
        if session is None:
            raise ProtocolError(f"{msg_type.name} before a Hello was accepted", ErrorCode.UNEXPECTED_MESSAGE)
        return decode_keypoints(data, session, near_seq)
    if msg_type == MessageType.HELLO:
        return decode_hello(data)
    if msg_type == MessageType.ERROR:
        return decode_error(data)
    if msg_type == MessageType.REFRESH:
        return decode_refresh(data)
    if msg_type == MessageType.STATS:
        return decode_stats(data)
    if msg_type == MessageType.SOURCE_CHUNK:
        return decode_source_chunk(data)
    return decode_audio(data)
