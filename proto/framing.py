"""Message framing shared by every message: the tag byte, size limits, msgpack bodies and field checks.

Every message starts with one tag byte, ``(version << 4) | type`` (SPEC.md, "Framing"), except the keypoint
DELTA, the one message sent 25 times a second: its first byte is ``0x80 | (seq & 0x7F)`` (bit 7 set, which no
version uses), so its whole header is one byte. The reliable-channel messages carry a msgpack array after the
tag; the per-frame messages (keypoints, audio) carry a fixed binary header instead, because msgpack framing
alone would eat most of the keypoint budget.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Any

import msgpack

from avfr.proto.errors import ErrorCode, ProtocolError

__all__ = [
    "WIRE_VERSION",
    "DATA_CHANNEL_PROTOCOL",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_BYTES_BY_TYPE",
    "MessageType",
    "make_tag",
    "COMPACT_DELTA_BIT",
    "parse_tag",
    "expect_type",
    "MAX_SOURCE_CHUNK_BYTES",
    "MAX_OPUS_PACKET_BYTES",
    "MAX_KEYPOINTS_BYTES",
    "pack_body",
    "unpack_body",
    "check_int",
    "check_float",
    "check_bool",
    "check_str",
    "check_bytes",
]

WIRE_VERSION = 2  # 1..7: the high nibble of every tag byte; bump on any change that breaks a golden vector
COMPACT_DELTA_BIT = 0x80  # first byte of a KEYPOINTS_DELTA: this bit, then the seq's 7 low bits (no version)
DATA_CHANNEL_PROTOCOL = f"avfr/{WIRE_VERSION}"  # RTCDataChannel `protocol` of both channels


class MessageType(enum.IntEnum):
    """Low nibble of the tag byte (SPEC.md, "Message types")."""

    HELLO = 1
    ERROR = 2
    REFRESH = 3
    STATS = 4
    SOURCE_CHUNK = 5
    KEYPOINTS_KEY = 6
    KEYPOINTS_DELTA = 7
    AUDIO = 8


MAX_SOURCE_CHUNK_BYTES = 16 * 1024  # payload bytes of one SourceChunk (SCTP-friendly, < 64 KiB)
MAX_OPUS_PACKET_BYTES = 1275  # RFC 6716 §3.4: largest Opus packet of one frame
MAX_KEYPOINTS_BYTES = 2048  # key packet at K=64, 16/16 bits is 775 bytes; delta packets are far smaller

MAX_MESSAGE_BYTES_BY_TYPE: dict[MessageType, int] = {
    MessageType.HELLO: 1024,
    MessageType.ERROR: 1024,
    MessageType.REFRESH: 16,
    MessageType.STATS: 256,
    MessageType.SOURCE_CHUNK: MAX_SOURCE_CHUNK_BYTES + 256,
    MessageType.KEYPOINTS_KEY: MAX_KEYPOINTS_BYTES,
    MessageType.KEYPOINTS_DELTA: MAX_KEYPOINTS_BYTES,
    MessageType.AUDIO: 7 + MAX_OPUS_PACKET_BYTES,
}
MAX_MESSAGE_BYTES = max(MAX_MESSAGE_BYTES_BY_TYPE.values())  # checked right after the version


def make_tag(msg_type: MessageType) -> int:
    """Tag byte of a message of this build's version: ``(WIRE_VERSION << 4) | type`` (not for DELTA packets).

    Raises:
        ValueError: KEYPOINTS_DELTA, whose first byte is ``COMPACT_DELTA_BIT | (seq & 0x7F)`` instead.
    """
    if msg_type == MessageType.KEYPOINTS_DELTA:
        raise ValueError("a KEYPOINTS_DELTA starts with COMPACT_DELTA_BIT | (seq & 0x7F), not a tag")
    return (WIRE_VERSION << 4) | int(msg_type)


def parse_tag(data: bytes) -> MessageType:
    """Read the tag byte, check the version, bound the length, check the type and its own size limit.

    The version comes first (SPEC.md, "Framing"): a message of another version gets UNSUPPORTED_VERSION
    whatever its size, so a future peer learns why it was refused. A first byte with bit 7 set is a
    KEYPOINTS_DELTA (it carries no version: it is only valid in a call whose Hello was accepted).

    Args:
        data: one whole message as received.

    Returns:
        The message type.

    Raises:
        ProtocolError: empty or oversized message, unsupported version (code UNSUPPORTED_VERSION),
            unknown type, or a message longer than its type allows.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"message must be bytes, got {type(data).__name__}")
    n = len(data)
    if n == 0:
        raise ProtocolError("empty message")
    tag = data[0]
    if tag & COMPACT_DELTA_BIT:
        if n > MAX_MESSAGE_BYTES_BY_TYPE[MessageType.KEYPOINTS_DELTA]:
            raise ProtocolError(f"KEYPOINTS_DELTA message is {n} bytes, limit {MAX_KEYPOINTS_BYTES}")
        return MessageType.KEYPOINTS_DELTA
    version, type_code = tag >> 4, tag & 0x0F
    if version != WIRE_VERSION:
        raise ProtocolError(
            f"wire version {version} not supported (this build speaks {WIRE_VERSION})",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if n > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is {n} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        msg_type = MessageType(type_code)
    except ValueError:
        raise ProtocolError(f"unknown message type {type_code}") from None
    if msg_type == MessageType.KEYPOINTS_DELTA:
        raise ProtocolError("a KEYPOINTS_DELTA has no tag byte in this version (its first byte has bit 7 set)")
    limit = MAX_MESSAGE_BYTES_BY_TYPE[msg_type]
    if n > limit:
        raise ProtocolError(f"{msg_type.name} message is {n} bytes, limit {limit}")
    return msg_type


def expect_type(data: bytes, msg_type: MessageType) -> None:
    """`parse_tag` and require `msg_type` (ProtocolError with code UNEXPECTED_MESSAGE otherwise)."""
    got = parse_tag(data)
    if got != msg_type:
        raise ProtocolError(
            f"expected a {msg_type.name} message, got {got.name}", ErrorCode.UNEXPECTED_MESSAGE
        )


def pack_body(msg_type: MessageType, fields: list[Any]) -> bytes:
    """Tag byte followed by the msgpack array of `fields` (bin type for bytes, float64 for floats)."""
    return bytes([make_tag(msg_type)]) + msgpack.packb(fields, use_bin_type=True, use_single_float=False)


def unpack_body(data: bytes, msg_type: MessageType, arity: int) -> list[Any]:
    """Unpack the msgpack array after the tag byte and check its arity.

    Args:
        data: the whole message (tag already checked by `parse_tag`).
        msg_type: for the messages.
        arity: exact number of array elements this version defines.

    Returns:
        The array's elements (still untrusted: check each one).

    Raises:
        ProtocolError: malformed msgpack, trailing bytes, not an array, wrong arity.
    """
    try:
        # msgpack derives its str/bin/array/map size limits from len(data), so this cannot over-allocate.
        fields = msgpack.unpackb(bytes(data[1:]), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack documents that "other exceptions can be raised"
        raise ProtocolError(f"{msg_type.name}: malformed msgpack body ({type(exc).__name__}: {exc})") from exc
    if type(fields) is not list:
        raise ProtocolError(f"{msg_type.name}: body must be a msgpack array, got {type(fields).__name__}")
    if len(fields) != arity:
        raise ProtocolError(f"{msg_type.name}: body has {len(fields)} fields, expected {arity}")
    return fields


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """`value` must be an int (not a bool) in [lo, hi]; returns it."""
    if type(value) is not int:
        raise ProtocolError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{name}={value} out of range [{lo}, {hi}]")
    return value


def check_float(value: Any, name: str, lo: float, hi: float) -> float:
    """`value` must be a finite float in [lo, hi]; returns it."""
    if type(value) is not float:
        raise ProtocolError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ProtocolError(f"{name} is not finite ({value})")
    if not lo <= value <= hi:
        raise ProtocolError(f"{name}={value} out of range [{lo}, {hi}]")
    return value


def check_bool(value: Any, name: str) -> bool:
    """`value` must be a bool; returns it."""
    if type(value) is not bool:
        raise ProtocolError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_str(value: Any, name: str, max_chars: int, pattern: re.Pattern[str] | None = None) -> str:
    """`value` must be a str of at most `max_chars` characters, matching `pattern` in full if given."""
    if type(value) is not str:
        raise ProtocolError(f"{name} must be a str, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ProtocolError(f"{name} is {len(value)} characters, limit {max_chars}")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise ProtocolError(f"{name}={value[:40]!r} does not match {pattern.pattern}")
    return value


def check_bytes(value: Any, name: str, min_len: int, max_len: int) -> bytes:
    """`value` must be bytes with min_len <= len <= max_len; returns it."""
    if type(value) is not bytes:
        raise ProtocolError(f"{name} must be bytes, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise ProtocolError(f"{name} is {len(value)} bytes, expected {min_len}..{max_len}")
    return value
