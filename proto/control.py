"""Reliable-channel control messages: `Error`, `Refresh` (ask for a key packet / source image) and `Stats`."""

from __future__ import annotations

from dataclasses import dataclass, fields

from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import (
    MessageType,
    check_bool,
    check_float,
    check_int,
    check_str,
    expect_type,
    pack_body,
    unpack_body,
)

__all__ = [
    "MAX_ERROR_TEXT_CHARS",
    "Error",
    "Refresh",
    "Stats",
    "error_from_exception",
    "encode_error",
    "decode_error",
    "encode_refresh",
    "decode_refresh",
    "encode_stats",
    "decode_stats",
]

MAX_ERROR_TEXT_CHARS = 200
MAX_COUNTER = 0xFFFFFFFF  # counters are uint32 on the wire; senders saturate, never wrap
MAX_STAT_MS = 1.0e6


@dataclass(frozen=True)
class Error:
    """A refusal or failure report; after a refused Hello the sender must not send media.

    Attributes:
        code: why (`ErrorCode`).
        text: human-readable detail, at most MAX_ERROR_TEXT_CHARS characters.
    """

    code: ErrorCode
    text: str

    def __post_init__(self) -> None:
        raw = int(self.code) if isinstance(self.code, ErrorCode) else self.code
        code = check_int(raw, "Error.code", 0, 255)
        try:
            object.__setattr__(self, "code", ErrorCode(code))
        except ValueError:
            raise ProtocolError(f"Error.code={code} is not a known error code") from None
        check_str(self.text, "Error.text", MAX_ERROR_TEXT_CHARS)


def error_from_exception(exc: ProtocolError) -> Error:
    """The `Error` message that answers a refused or malformed message (text cut to the limit)."""
    return Error(exc.code, str(exc)[:MAX_ERROR_TEXT_CHARS])


@dataclass(frozen=True)
class Refresh:
    """Receiver -> sender: ask for an independently decodable key packet and/or a new source image.

    Attributes:
        want_key: send a KEYPOINTS_KEY packet as soon as possible (prediction chain broken).
        want_source: send the source image again (a new image id), e.g. after the assembler timed out.
    """

    want_key: bool = True
    want_source: bool = False

    def __post_init__(self) -> None:
        check_bool(self.want_key, "Refresh.want_key")
        check_bool(self.want_source, "Refresh.want_source")


@dataclass(frozen=True)
class Stats:
    """Receiver -> sender statistics since the call started (counters saturate at 2**32 - 1).

    Attributes:
        received: keypoint packets received (valid or not).
        dropped_malformed: packets that raised ProtocolError.
        dropped_late: packets that arrived after their playout time.
        dropped_broken: delta packets whose reference was missing (prediction chain broken).
        concealed: frames drawn without their own keypoints.
        audio_received: audio packets received.
        audio_concealed: 20 ms audio frames concealed (lost or late).
        jitter_ms: interarrival jitter estimate (RFC 3550 style), milliseconds.
        delay_ms: current playout delay of the jitter buffer, milliseconds.
    """

    received: int = 0
    dropped_malformed: int = 0
    dropped_late: int = 0
    dropped_broken: int = 0
    concealed: int = 0
    audio_received: int = 0
    audio_concealed: int = 0
    jitter_ms: float = 0.0
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_ms"):
                check_float(value, f"Stats.{f.name}", 0.0, MAX_STAT_MS)
            else:
                check_int(value, f"Stats.{f.name}", 0, MAX_COUNTER)


_STATS_FIELDS = tuple(f.name for f in fields(Stats))


def encode_error(msg: Error) -> bytes:
    """Error -> bytes: tag, msgpack [code, text]."""
    return pack_body(MessageType.ERROR, [int(msg.code), msg.text])


def decode_error(data: bytes) -> Error:
    """bytes -> Error. Raises ProtocolError on anything malformed."""
    expect_type(data, MessageType.ERROR)
    code, text = unpack_body(data, MessageType.ERROR, 2)
    return Error(check_int(code, "Error.code", 0, 255), text)


def encode_refresh(msg: Refresh) -> bytes:
    """Refresh -> bytes: tag, msgpack [want_key, want_source]."""
    return pack_body(MessageType.REFRESH, [msg.want_key, msg.want_source])


def decode_refresh(data: bytes) -> Refresh:
    """bytes -> Refresh. Raises ProtocolError on anything malformed."""
    expect_type(data, MessageType.REFRESH)
    want_key, want_source = unpack_body(data, MessageType.REFRESH, 2)
    return Refresh(want_key, want_source)


def encode_stats(msg: Stats) -> bytes:
    """Stats -> bytes: tag, msgpack array of the fields in declaration order."""
    return pack_body(MessageType.STATS, [getattr(msg, name) for name in _STATS_FIELDS])


def decode_stats(data: bytes) -> Stats:
    """bytes -> Stats. Raises ProtocolError on anything malformed."""
    expect_type(data, MessageType.STATS)
    values = unpack_body(data, MessageType.STATS, len(_STATS_FIELDS))
    return Stats(**dict(zip(_STATS_FIELDS, values, strict=True)))
