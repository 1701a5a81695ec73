"""Round trips of every message, golden vectors (tests/data/proto/v2) and exact errors of broken variants."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from avfr.proto import (
    MAX_MESSAGE_BYTES,
    WIRE_VERSION,
    Audio,
    AudioParams,
    Error,
    ErrorCode,
    Hello,
    KeypointsDelta,
    KeypointsKey,
    MessageType,
    ProtocolError,
    QuantParams,
    Refresh,
    Session,
    SourceImage,
    Stats,
    decode_message,
    encode_message,
    error_from_exception,
    extend_seq,
    peek_type,
    split_source_image,
)

GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "proto"


def _load_make_golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOLDEN = _load_make_golden()
GOLDEN_MESSAGES = GOLDEN.golden_messages()
CORRUPT_MESSAGES = GOLDEN.corrupt_messages()
GOLDEN_MESSAGES_BYTES = {name: encode_message(m, s) for name, (m, s) in GOLDEN_MESSAGES.items()}
GOLDEN_VERSION_DIR = GOLDEN_DIR / f"v{WIRE_VERSION}"


@pytest.mark.parametrize("name", sorted(GOLDEN_MESSAGES))
def test_golden_decodes_to_expected_and_encodes_to_golden(name: str) -> None:
    msg, session = GOLDEN_MESSAGES[name]
    data = (GOLDEN_VERSION_DIR / f"{name}.bin").read_bytes()
    assert decode_message(data, session) == msg
    assert encode_message(msg, session) == data


@pytest.mark.parametrize("name", sorted(CORRUPT_MESSAGES))
def test_corrupt_golden_variants_raise_the_exact_error(name: str) -> None:
    _, session, expected = CORRUPT_MESSAGES[name]
    data = (GOLDEN_VERSION_DIR / "bad" / f"{name}.bin").read_bytes()
    with pytest.raises(ProtocolError) as exc:
        decode_message(data, session)
    assert str(exc.value) == expected


def test_the_frozen_version_1_vectors_are_refused_by_version() -> None:
    """SPEC.md, "Versioning": v1 is history; a v1 peer gets UNSUPPORTED_VERSION, whatever it sends but a delta."""
    v1 = sorted((GOLDEN_DIR / "v1").glob("*.bin"))
    assert len(v1) == 12
    for path in v1:
        if path.stem == "keypoints_delta":  # 0x17 0x00 0x01...: a v1 tag, not a compact delta either
            assert path.read_bytes()[0] == 0x17
        with pytest.raises(ProtocolError) as exc:
            decode_message(path.read_bytes(), Session())
        assert exc.value.code == ErrorCode.UNSUPPORTED_VERSION, path.name
        assert str(exc.value) == "wire version 1 not supported (this build speaks 2)"


@pytest.mark.parametrize(("low_bits", "near", "seq"), [
    (5, 5, 5), (5, 0, 5), (127, 0, 65535), (64, 0, 65472), (63, 0, 63), (0, 65535, 0), (100, 65530, 65508),
    (70, 65530, 65478), (69, 65530, 65477), (0, 65500, 0),
])
def test_a_delta_seq_is_the_one_nearest_the_expected_seq(low_bits: int, near: int, seq: int) -> None:
    """7 bits name a frame within -64..+63 of the receiver's expected seq, across the uint16 wrap."""
    assert extend_seq(low_bits, near) == seq
    for step in range(-64, 64):  # every seq within the window comes back from its 7 bits
        assert extend_seq(((near + step) & 0xFFFF) & 0x7F, near) == (near + step) & 0xFFFF


def test_delta_packets_carry_seven_seq_bits_and_decode_next_to_the_expected_seq() -> None:
    delta, session = GOLDEN_MESSAGES["keypoints_delta"]  # seq 1, reference 65535
    for seq in (0, 1, 127, 128, 40000, 65535):
        moved = KeypointsDelta(seq, (seq - 2) & 0xFFFF, delta.ts_offset_90k, delta.common, delta.kp_res,
                               delta.jac_res)
        data = encode_message(moved, session)
        assert data[0] == 0x80 | (seq & 0x7F) and len(data) == len(GOLDEN_MESSAGES_BYTES["keypoints_delta"])
        for near in (seq, (seq - 63) & 0xFFFF, (seq + 64) & 0xFFFF):  # the frame is 63 after .. 64 before
            assert decode_message(data, session, near) == moved
        assert decode_message(data, session, (seq - 64) & 0xFFFF).seq == (seq - 128) & 0xFFFF  # aliased


def test_every_golden_file_is_listed() -> None:
    on_disk = {p.stem for p in GOLDEN_VERSION_DIR.glob("*.bin")}
    assert on_disk == set(GOLDEN_MESSAGES)
    assert {p.stem for p in (GOLDEN_VERSION_DIR / "bad").glob("*.bin")} == set(CORRUPT_MESSAGES)


def test_golden_files_match_this_build() -> None:
    assert GOLDEN.check() == []


def test_every_message_type_has_a_golden_vector() -> None:
    types = {peek_type((GOLDEN_VERSION_DIR / f"{name}.bin").read_bytes()) for name in GOLDEN_MESSAGES}
    assert types == set(MessageType)


SHA = "ab" * 32


@pytest.mark.parametrize(
    "msg",
    [
        Hello("m", SHA),
        Hello("model.v2+x:1", SHA, 64, 120, QuantParams(16, 16, 64.0), 10_000,
              AudioParams("opus", 48_000, 2, 60, 512_000), True),
        Hello("x", SHA, 1, 1, QuantParams(4, 4, 0.25), 1, AudioParams("opus", 8000, 1, 10, 500)),
        Error(ErrorCode.INTERNAL, ""),
        Error(ErrorCode.MALFORMED, "é" * 200),
        Refresh(),
        Refresh(True, True),
        Stats(),
        Stats(2**32 - 1, 0, 0, 0, 0, 2**32 - 1, 0, 1e6, 0.5),
        Audio(0, 0, b"\x00"),
        Audio(65535, 2**32 - 1, b"\xff" * 1275),
    ],
    ids=lambda m: type(m).__name__,
)
def test_round_trip(msg: object) -> None:
    data = encode_message(msg)  # type: ignore[arg-type]
    assert len(data) <= MAX_MESSAGE_BYTES
    assert data[0] >> 4 == WIRE_VERSION
    assert decode_message(data) == msg


def test_source_chunks_round_trip() -> None:
    data = np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    image = SourceImage(2**32 - 1, "avif", data)
    chunks = split_source_image(image)
    assert len(chunks) == 3 and all(len(c.payload) <= 16 * 1024 for c in chunks)
    for chunk in chunks:
        data = encode_message(chunk)
        assert len(data) <= MAX_MESSAGE_BYTES
        assert decode_message(data) == chunk


def _random_key(rng: np.random.Generator, session: Session, seq: int) -> KeypointsKey:
    k, q = session.num_kp, session.quant
    kp = rng.integers(-(1 << (q.kp_bits - 1)), 1 << (q.kp_bits - 1), (k, 2))
    jac = rng.integers(-(1 << (q.jac_bits - 1)), 1 << (q.jac_bits - 1), (k, 2, 2))
    return KeypointsKey(seq, int(rng.integers(0, 2**32)), kp, jac)


def _random_delta(rng: np.random.Generator, session: Session, seq: int, scale: float) -> KeypointsDelta:
    k = session.num_kp
    return KeypointsDelta(
        seq, (seq - int(rng.integers(1, 65))) & 0xFFFF, int(rng.integers(-90_000, 90_001)),
        np.round(rng.laplace(0, scale, 6)).astype(int), np.round(rng.laplace(0, scale, (k, 2))).astype(int),
        np.round(rng.laplace(0, scale, (k, 2, 2))).astype(int),
    )


@pytest.mark.parametrize(
    "session",
    [
        Session(),
        Session(num_kp=1, quant=QuantParams(4, 4, 1.0)),
        Session(num_kp=64, quant=QuantParams(16, 16, 8.0)),
    ],
    ids=["default", "k1-4bit", "k64-16bit"],
)
def test_keypoint_packets_round_trip(session: Session) -> None:
    rng = np.random.default_rng(1)
    for i in range(20):
        key = _random_key(rng, session, i)
        assert decode_message(encode_message(key, session), session) == key
        limit = min(2 ** min(session.quant.kp_bits, session.quant.jac_bits) - 1, 7)
        delta = _random_delta(rng, session, 65535 - i, scale=0.3 + i)
        delta = KeypointsDelta(
            delta.seq, delta.ref_seq, delta.ts_offset_90k, np.clip(delta.common, -limit, limit),
            np.clip(delta.kp_res, -limit, limit), np.clip(delta.jac_res, -limit, limit),
        )
        assert decode_message(encode_message(delta, session), session) == delta


def test_key_packet_size_is_exact() -> None:
    session = Session()  # K=10, 8/5 bits: 7 + ceil(10 * (2*8 + 4*5) / 8) = 52 bytes
    key = _random_key(np.random.default_rng(2), session, 0)
    assert len(encode_message(key, session)) == 52


def test_keypoint_packets_need_a_session() -> None:
    msg, session = GOLDEN_MESSAGES["keypoints_key"]
    data = encode_message(msg, session)
    with pytest.raises(ProtocolError, match="KEYPOINTS_KEY before a Hello was accepted") as exc:
        decode_message(data)
    assert exc.value.code == ErrorCode.UNEXPECTED_MESSAGE
    with pytest.raises(ProtocolError, match="needs the session"):
        encode_message(msg)


def test_encoding_a_packet_that_does_not_fit_the_session_fails() -> None:
    key, _ = GOLDEN_MESSAGES["keypoints_key"]
    with pytest.raises(ProtocolError, match="session K=4"):
        encode_message(key, Session(num_kp=4))
    with pytest.raises(ProtocolError, match=r"kp_q outside the 4-bit level range \[-8, 7\]"):
        encode_message(key, Session(quant=QuantParams(4, 5, 4.0)))
    delta, _ = GOLDEN_MESSAGES["keypoints_delta"]
    big = KeypointsDelta(delta.seq, delta.ref_seq, 0, delta.common, delta.kp_res * 100, delta.jac_res)
    with pytest.raises(ProtocolError, match=r"delta component 1 exceeds \+-255"):
        encode_message(big, Session())


def test_unsupported_version_carries_its_code() -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_message(bytes([0x31]) + encode_message(Refresh())[1:])
    assert exc.value.code == ErrorCode.UNSUPPORTED_VERSION
    reply = error_from_exception(exc.value)
    assert reply == Error(ErrorCode.UNSUPPORTED_VERSION, "wire version 3 not supported (this build speaks 2)")
    assert decode_message(encode_message(reply)) == reply


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x21" * (MAX_MESSAGE_BYTES + 1),
         f"message is {MAX_MESSAGE_BYTES + 1} bytes, limit {MAX_MESSAGE_BYTES}"),
        (bytes([0x23]) + b"\x92\xc3\xc2" + b"\x00" * 20, "REFRESH message is 24 bytes, limit 16"),
        (bytes([0x20]), "unknown message type 0"),
        (bytes([0x23, 0x93, 0xc3, 0xc2, 0xc2]), "REFRESH: body has 3 fields, expected 2"),
        (bytes([0x23, 0x81, 0xa1, 0x61, 0x01]), "REFRESH: body must be a msgpack array, got dict"),
        (bytes([0x23, 0x92, 0xc3, 0xc2, 0x00]),
         "REFRESH: malformed msgpack body (ExtraData: unpack(b) received extra data.)"),
        (bytes([0x23, 0x92, 0xc3, 0xc1]), "REFRESH: malformed msgpack body (FormatError: )"),
        (bytes([0x22, 0x92, 0x09, 0xa0]), "Error.code=9 is not a known error code"),
        (bytes([0x22, 0x92, 0x01, 0xa2, 0xff, 0xfe]),
         "ERROR: malformed msgpack body (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in "
         "position 0: invalid start byte)"),
        (bytes([0x28, 0, 0, 0, 0, 0, 0]), "AUDIO is 7 bytes, minimum 8"),
        (bytes([0x28]) + b"\x00" * 6 + b"\x01" * 1276, "AUDIO message is 1283 bytes, limit 1282"),
    ],
    ids=["oversized", "type-limit", "type-0", "arity", "map", "extra", "format", "error-code", "utf8",
         "audio-empty", "audio-long"],
)
def test_exact_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_message(data, Session())
    assert str(exc.value) == message


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)
    assert ProtocolError("x").code == ErrorCode.MALFORMED


def test_constructors_validate_like_decoders() -> None:
    with pytest.raises(ProtocolError, match="Hello.num_kp must be an int, got bool"):
        Hello("m", SHA, num_kp=True)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="does not divide the 90000 Hz media clock"):
        Hello("m", SHA, fps=7)
    with pytest.raises(ProtocolError, match="Stats.jitter_ms must be a float, got int"):
        Stats(jitter_ms=1)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="Stats.delay_ms is not finite"):
        Stats(delay_ms=float("inf"))
    with pytest.raises(ProtocolError, match=r"Audio.payload is 0 bytes"):
        Audio(0, 0, b"")
    with pytest.raises(ProtocolError, match="SourceImage.format='gif' is not one of"):
        SourceImage(0, "gif", b"x")
    with pytest.raises(ProtocolError, match="ref_seq=5 is 0 frames before seq=5"):
        KeypointsDelta(5, 5, 0, np.zeros(6, int), np.zeros((10, 2), int), np.zeros((10, 2, 2), int))
    with pytest.raises(ProtocolError, match="must hold integers"):
        KeypointsKey(0, 0, np.zeros((10, 2)), np.zeros((10, 2, 2), int))


def test_packets_are_immutable() -> None:
    key, _ = GOLDEN_MESSAGES["keypoints_key"]
    with pytest.raises(ValueError, match="read-only"):
        key.kp_q[0, 0] = 1
