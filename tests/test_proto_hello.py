"""Hello acceptance: the receiver refuses unknown versions, models and parameters with a clear Error."""

from __future__ import annotations

import pytest

from avfr.proto import (
    AudioParams,
    Capabilities,
    Error,
    ErrorCode,
    Hello,
    ModelInfo,
    ProtocolError,
    QuantParams,
    Session,
    decode_message,
    encode_message,
    error_from_exception,
    validate_hello,
)

SHA = "0123456789abcdef" * 4
CAPS = Capabilities(models=(ModelInfo("avfr-k10-small", SHA, 10),), fps=(25,), causal_window_modes=(False,))


def test_matching_hello_is_accepted_and_gives_the_session() -> None:
    hello = decode_message(encode_message(Hello("avfr-k10-small", SHA)))
    assert isinstance(hello, Hello)
    assert validate_hello(hello, CAPS) is None
    session = Session.from_hello(hello)
    assert session == Session() and session.ts_step_90k == 3600 and session.audio.ts_step_90k == 1800


@pytest.mark.parametrize(
    ("hello", "code", "text"),
    [
        (Hello("other", SHA), ErrorCode.UNKNOWN_MODEL,
         "unknown model 'other' (this receiver holds: avfr-k10-small)"),
        (Hello("avfr-k10-small", "f" * 64), ErrorCode.WEIGHTS_MISMATCH,
         "model 'avfr-k10-small': peer weights sha256 ffffffffffff..., receiver has 0123456789ab..."),
        (Hello("avfr-k10-small", SHA, num_kp=15), ErrorCode.UNSUPPORTED_PARAMS,
         "num_kp=15 but model 'avfr-k10-small' uses K=10"),
        (Hello("avfr-k10-small", SHA, fps=30), ErrorCode.UNSUPPORTED_PARAMS,
         "fps=30 not supported (supported: 25)"),
        (Hello("avfr-k10-small", SHA, audio=AudioParams(codec="aac")), ErrorCode.UNSUPPORTED_PARAMS,
         "audio.codec='aac' not supported (supported: opus)"),
        (Hello("avfr-k10-small", SHA, audio=AudioParams(frame_ms=25)), ErrorCode.UNSUPPORTED_PARAMS,
         "audio.frame_ms=25 not supported (supported: 10, 20, 40, 60)"),
        (Hello("avfr-k10-small", SHA, audio=AudioParams(bitrate_bps=256_000)), ErrorCode.UNSUPPORTED_PARAMS,
         "audio.bitrate_bps=256000 above the limit 128000"),
        (Hello("avfr-k10-small", SHA, causal_window=True), ErrorCode.UNSUPPORTED_PARAMS,
         "causal audio window not supported by this receiver"),
    ],
    ids=["model", "weights", "k", "fps", "codec", "frame", "bitrate", "causal"],
)
def test_refusals_name_the_reason(hello: Hello, code: ErrorCode, text: str) -> None:
    error = validate_hello(hello, CAPS)
    assert error == Error(code, text)
    assert decode_message(encode_message(error)) == error  # it travels back as an ERROR message


def test_bit_depth_ranges_of_the_receiver() -> None:
    caps = Capabilities(models=CAPS.models, kp_bits=(8, 12))
    error = validate_hello(Hello("avfr-k10-small", SHA, quant=QuantParams(6, 5, 4.0)), caps)
    assert error == Error(ErrorCode.UNSUPPORTED_PARAMS, "kp_bits=6 outside the supported range [8, 12]")


def test_unknown_version_is_refused_before_the_body_is_read() -> None:
    future = bytes([0x41]) + b"\xc1 anything at all"
    with pytest.raises(ProtocolError) as exc:
        decode_message(future)
    reply = error_from_exception(exc.value)
    assert reply == Error(ErrorCode.UNSUPPORTED_VERSION, "wire version 4 not supported (this build speaks 2)")


@pytest.mark.parametrize("version", [0, 1, 3, 7])
def test_unknown_version_is_refused_before_the_size_is_checked(version: int) -> None:
    """SPEC.md, "Framing": the version comes before anything else, the overall size limit included."""
    from avfr.proto import MAX_MESSAGE_BYTES, peek_type

    oversized = bytes([(version << 4) | 1]) + b"\x00" * MAX_MESSAGE_BYTES
    for read in (decode_message, peek_type):
        with pytest.raises(ProtocolError) as exc:
            read(oversized)
        assert exc.value.code == ErrorCode.UNSUPPORTED_VERSION
        assert str(exc.value) == f"wire version {version} not supported (this build speaks 2)"
    with pytest.raises(ProtocolError, match=f"message is {MAX_MESSAGE_BYTES + 1} bytes, limit {MAX_MESSAGE_BYTES}"):
        decode_message(bytes([0x21]) + b"\x00" * MAX_MESSAGE_BYTES)  # this version: the size


def test_error_text_is_cut_to_the_limit() -> None:
    reply = error_from_exception(ProtocolError("x" * 500))
    assert reply.code == ErrorCode.MALFORMED and len(reply.text) == 200
