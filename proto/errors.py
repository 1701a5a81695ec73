"""The one exception the wire format raises, and the error codes carried by `Error` messages."""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "ProtocolError"]


class ErrorCode(enum.IntEnum):
    """Error codes of the `Error` message (SPEC.md, "Error"); values are part of the wire format."""

    MALFORMED = 1  # bytes that do not parse as a valid message of this version
    UNSUPPORTED_VERSION = 2  # the peer speaks a wire version this build does not
    UNKNOWN_MODEL = 3  # model id not held by the receiver
    WEIGHTS_MISMATCH = 4  # same model id, different weights sha256
    UNSUPPORTED_PARAMS = 5  # K, fps, bit depths, audio or window mode the receiver cannot use
    UNEXPECTED_MESSAGE = 6  # a valid message at the wrong time (e.g. media before Hello)
    INTERNAL = 7  # the peer failed for a reason of its own


class ProtocolError(ValueError):
    """Any malformed, unsupported or inconsistent input to `avfr.proto`.

    Every decoder turns every kind of bad input into this exception with a specific message; callers catch
    it in one place (count it, log it at debug level, carry on).

    Args:
        message: what is wrong, specific enough to find the offending field.
        code: the `ErrorCode` to send back to the peer when the message is refused.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
