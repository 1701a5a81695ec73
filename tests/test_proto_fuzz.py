"""Random bytes, bit flips and truncations of valid messages: decoders raise only ProtocolError."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avfr.proto import (
    MAX_MESSAGE_BYTES,
    WIRE_VERSION,
    KeypointDecoder,
    KeypointsDelta,
    KeypointsKey,
    MessageType,
    ProtocolError,
    Session,
    SourceAssembler,
    SourceChunk,
    decode_message,
)

GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "proto"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
assert _spec is not None and _spec.loader is not None
GOLDEN = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(GOLDEN)
VECTORS = [
    ((GOLDEN_DIR / f"v{WIRE_VERSION}" / f"{name}.bin").read_bytes(), session or Session())
    for name, (_, session) in sorted(GOLDEN.golden_messages().items())
]
SESSIONS = [Session(), GOLDEN.SESSION_96]


class _Sink:
    """Feeds whatever decodes into the stateful parts too (keypoint decoder, source assembler)."""

    def __init__(self) -> None:
        self.keypoints = {id(s): KeypointDecoder(s) for s in SESSIONS}
        self.assembler = SourceAssembler()
        self.now_s = 0.0
        self.decoded = 0
        self.refused = 0

    def feed(self, data: bytes, session: Session | None) -> None:
        self.now_s += 0.01
        try:
            msg = decode_message(data, session)
            self.decoded += 1
            if isinstance(msg, (KeypointsKey, KeypointsDelta)) and session is not None:
                self.keypoints.setdefault(id(session), KeypointDecoder(session)).decode(msg)
            elif isinstance(msg, SourceChunk):
                self.assembler.push(msg, self.now_s)
        except ProtocolError as exc:
            assert str(exc)  # every refusal says why
            self.refused += 1


def _prime(sink: _Sink) -> None:
    """Decode the golden key packets first, so fuzzed deltas find references."""
    for data, session in VECTORS:
        sink.feed(data, session)


def test_truncations_of_every_golden_vector() -> None:
    sink = _Sink()
    _prime(sink)
    for data, session in VECTORS:
        for n in range(len(data)):
            sink.feed(data[:n], session)
            sink.feed(data[:n], None)
    assert sink.refused > 0


def test_single_bit_flips_of_every_golden_vector() -> None:
    sink = _Sink()
    _prime(sink)
    rng = np.random.default_rng(0)
    for data, session in VECTORS:
        positions = range(8 * len(data)) if len(data) < 200 else rng.choice(8 * len(data), 600, replace=False)
        for bit in positions:
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            sink.feed(bytes(flipped), session)
    assert sink.decoded > 0 and sink.refused > 0


def test_seeded_random_garbage() -> None:
    sink = _Sink()
    _prime(sink)
    rng = np.random.default_rng(1)
    tags = [(WIRE_VERSION << 4) | t for t in MessageType] + [0x00, 0x1F, 0x2F, 0x3A, 0x80, 0xFF]
    for i in range(4000):
        n = int(rng.choice([0, 1, 2, 3, 4, 7, 8, 13, 20, 52, 64, 200, 1300]))
        body = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if i % 2:  # half of them start with a valid tag, so the type-specific parsers see them
            body = bytes([tags[i % len(tags)]]) + body
        sink.feed(body, SESSIONS[i % 2])
    sink.feed(b"\x21" * (MAX_MESSAGE_BYTES + 1), None)
    sink.feed(b"\x81" * (MAX_MESSAGE_BYTES + 1), Session())
    sink.feed(bytes([0x21]) + b"\x91" * 2000, None)  # deeply nested msgpack arrays
    sink.feed(bytes([0x21]) + b"\xdd\xff\xff\xff\xff", None)  # array header claiming 4 G elements
    sink.feed(bytes([0x21]) + b"\xc6\xff\xff\xff\xff", None)  # bin header claiming 4 GiB
    assert sink.refused > 3000


def test_random_mutations_of_valid_msgpack_messages() -> None:
    sink = _Sink()
    rng = np.random.default_rng(2)
    msgpack_vectors = [(d, s) for d, s in VECTORS if d[0] < 0x80 and d[0] & 0x0F in (1, 2, 3, 4, 5)]
    for i in range(3000):
        data, _ = msgpack_vectors[i % len(msgpack_vectors)]
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(1, len(mutated)))
            mutated[pos] = int(rng.integers(0, 256))
        sink.feed(bytes(mutated), None)
    assert sink.refused > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), with_session=st.booleans())
def test_hypothesis_arbitrary_bytes(data: bytes, with_session: bool) -> None:
    _Sink().feed(data, Session() if with_session else None)


@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from([0x26, 0x80, 0x85, 0xFF, 0x28]), body=st.binary(max_size=80))
def test_hypothesis_media_packets(tag: int, body: bytes) -> None:
    sink = _Sink()
    _prime(sink)
    sink.feed(bytes([tag]) + body, Session())
