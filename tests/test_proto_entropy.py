"""The adaptive binary arithmetic coder: exact round trips, canonical termination, bounded decoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfr.proto import ProtocolError
from avfr.proto.entropy import PROB_ONE, BinDecoder, BinEncoder

NCTX = 7  # ops use contexts ctx .. ctx + 3 with ctx in 0..3


def _encode(ops: list[tuple[str, int, int]]) -> bytes:
    enc = BinEncoder()
    probs = [PROB_ONE // 2] * NCTX
    for kind, value, ctx in ops:
        if kind == "bin":
            enc.put(value, probs, ctx)
        elif kind == "bypass":
            enc.put_bypass(value)
        elif kind == "ueg":
            enc.put_ueg(value, probs, ctx, 2)
        else:
            enc.put_signed(value, probs, ctx, ctx + 1, ctx + 2, 2)
    return enc.finish()


def _decode(data: bytes, ops: list[tuple[str, int, int]]) -> list[int]:
    dec = BinDecoder(data)
    probs = [PROB_ONE // 2] * NCTX
    out = []
    for kind, _, ctx in ops:
        if kind == "bin":
            out.append(dec.get(probs, ctx))
        elif kind == "bypass":
            out.append(dec.get_bypass())
        elif kind == "ueg":
            out.append(dec.get_ueg(probs, ctx, 2))
        else:
            out.append(dec.get_signed(probs, ctx, ctx + 1, ctx + 2, 2))
    dec.finish()
    return out


op_st = st.one_of(
    st.tuples(st.just("bin"), st.integers(0, 1), st.integers(0, 3)),
    st.tuples(st.just("bypass"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("ueg"), st.integers(0, 70_000), st.integers(0, 3)),
    st.tuples(st.just("signed"), st.integers(-70_000, 70_000), st.integers(0, 3)),
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(op_st, max_size=200))
def test_round_trip(ops: list[tuple[str, int, int]]) -> None:
    data = _encode(ops)
    assert len(data) >= 1 and data[-1] != 0  # canonical: ends in the byte holding the termination bit
    assert _decode(data, ops) == [v for _, v, _ in ops]


def test_skewed_runs_cost_less_than_a_bit_each() -> None:
    ops = [("bin", 0, 0)] * 1000
    assert len(_encode(ops)) <= 8  # 1000 likely bins in a few bytes


def test_long_runs_of_pending_bits_round_trip() -> None:
    rng = np.random.default_rng(0)
    ops = [("bin", int(b), 1) for b in rng.integers(0, 2, 5000)] + [("bypass", 1, 0)] * 3000
    assert _decode(_encode(ops), ops) == [v for _, v, _ in ops]


def test_trailing_bytes_and_truncation_are_detected() -> None:
    ops = [("signed", v, 0) for v in (3, -1, 0, 0, 7, -20, 0)]
    data = _encode(ops)
    with pytest.raises(ProtocolError, match="its bins end in byte"):
        _decode(data + b"\x00", ops)
    try:  # a truncated payload is refused or decodes to other values (the encoding is unique)
        assert _decode(data[:-1], ops) != [v for _, v, _ in ops]
    except ProtocolError:
        pass
    with pytest.raises(ProtocolError, match="termination bit"):
        _decode(data[:-1] + bytes([data[-1] | 0x01 if data[-1] & 0x01 == 0 else data[-1] ^ 0x03]), ops)


def test_overlong_exp_golomb_prefix_is_refused() -> None:
    enc = BinEncoder()
    probs = [PROB_ONE // 2] * NCTX
    for _ in range(30):
        enc.put(1, probs, 0)
    dec = BinDecoder(enc.finish(), "test payload")
    with pytest.raises(ProtocolError, match="test payload: Exp-Golomb prefix longer than 20 bins"):
        dec.get_ueg([PROB_ONE // 2] * NCTX, 0, 2)


def test_encoder_refuses_values_beyond_the_binarisation() -> None:
    with pytest.raises(ValueError, match="too large"):
        BinEncoder().put_ueg(2**22, [PROB_ONE // 2] * NCTX, 0, 2)
