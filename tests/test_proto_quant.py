"""Quantisation error bounds, clamping, and lossless delta coding of long random walks (with wraparound)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfr.proto import (
    KeypointDecoder,
    KeypointEncoder,
    QuantParams,
    Session,
    dequantise,
    dequantise_keypoints,
    quantise,
    quantise_keypoints,
)
from avfr.proto.synthetic import random_walk_keypoints

bits_st = st.integers(4, 16)
abs_max_st = st.sampled_from([0.25, 1.0, 2.0, 3.0, 4.0, 8.0, 64.0])


@settings(max_examples=300, deadline=None)
@given(bits=bits_st, abs_max=abs_max_st, u=st.floats(0.0, 1.0))
def test_in_range_error_is_at_most_half_a_step(bits: int, abs_max: float, u: float) -> None:
    step = abs_max / 2 ** (bits - 1)
    lo, hi = -abs_max - step / 2, abs_max - step / 2  # values that round to a level without clamping
    x = lo + u * (hi - lo)
    q = quantise(np.array([x]), bits, abs_max)
    assert -(2 ** (bits - 1)) <= q[0] <= 2 ** (bits - 1) - 1
    err = abs(float(dequantise(q, bits, abs_max)[0]) - x)
    assert err <= step / 2 + abs(x) * 2**-23 + 1e-12  # float32 output adds its own rounding


@settings(max_examples=200, deadline=None)
@given(bits=bits_st, abs_max=abs_max_st, x=st.floats(-1e9, 1e9, allow_nan=False))
def test_out_of_range_values_clamp_to_the_end_levels(bits: int, abs_max: float, x: float) -> None:
    half = 2 ** (bits - 1)
    step = abs_max / half
    q = int(quantise(np.array([x]), bits, abs_max)[0])
    if x >= abs_max - step / 2:
        assert q == half - 1
    elif x < -abs_max - step / 2:
        assert q == -half
    else:
        assert -half <= q < half


@given(bits=bits_st, abs_max=abs_max_st)
def test_levels_are_exact_and_zero_is_representable(bits: int, abs_max: float) -> None:
    half = 2 ** (bits - 1)
    q = np.arange(-half, half)
    np.testing.assert_array_equal(quantise(dequantise(q, bits, abs_max), bits, abs_max), q)
    assert dequantise(np.array([0]), bits, abs_max)[0] == 0.0


def test_identity_jacobian_is_exact_for_power_of_two_ranges() -> None:
    params = QuantParams(8, 5, 4.0)
    kp_q, jac_q = quantise_keypoints(np.zeros((3, 2)), np.tile(np.eye(2), (3, 1, 1)), params)
    kp, jac = dequantise_keypoints(kp_q, jac_q, params)
    np.testing.assert_array_equal(jac, np.tile(np.eye(2, dtype=np.float32), (3, 1, 1)))
    np.testing.assert_array_equal(kp, 0.0)


def test_quantise_rejects_non_finite_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        quantise(np.array([np.inf]), 8, 1.0)
    with pytest.raises(ValueError, match="expected kp"):
        quantise_keypoints(np.zeros((3, 2)), np.zeros((4, 2, 2)), QuantParams())


@pytest.mark.parametrize(
    ("quant", "rms_step_px"),
    [(QuantParams(8, 5, 4.0), 1.0), (QuantParams(10, 8, 4.0), 2.0), (QuantParams(12, 10, 2.0), 0.5),
     (QuantParams(16, 16, 4.0), 3.0), (QuantParams(4, 4, 1.0), 1.0)],
    ids=["default", "10-8", "12-10", "16-16", "4-4"],
)
def test_delta_coding_is_lossless_over_long_walks_with_wraparound(
    quant: QuantParams, rms_step_px: float
) -> None:
    session = Session(quant=quant, key_interval_frames=10_000)
    kp, jac = random_walk_keypoints(1500, 10, rms_step_px=rms_step_px, jac_rms_step=0.03, seed=7)
    enc = KeypointEncoder(session, first_seq=65_000)  # wraps after 536 frames
    dec = KeypointDecoder(session)
    keys = 0
    for t in range(len(kp)):
        frame = dec.decode_bytes(enc.encode(kp[t], jac[t], t * 3600))
        assert frame is not None
        keys += frame.key
        exp_kp, exp_jac = dequantise_keypoints(*quantise_keypoints(kp[t], jac[t], quant), quant)
        np.testing.assert_array_equal(frame.kp, exp_kp)
        np.testing.assert_array_equal(frame.jac, exp_jac)
        step = quant.kp_step
        assert np.abs(frame.kp - np.clip(kp[t], -1, 1 - step)).max() <= step / 2 + 1e-6
    assert keys == 1  # one key, then 1499 deltas


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.lists(st.floats(-1.5, 1.5), min_size=6, max_size=6),
            st.lists(st.floats(-6.0, 6.0), min_size=12, max_size=12),
            st.integers(-100_000, 100_000),
        ),
        min_size=1,
        max_size=12,
    ),
    kp_bits=st.integers(4, 12),
    jac_bits=st.integers(4, 10),
)
def test_any_frame_sequence_round_trips_exactly(
    frames: list[tuple[list[float], list[float], int]], kp_bits: int, jac_bits: int
) -> None:
    """Arbitrary jumps, clamped values and timestamp jitter: the decoder reproduces the quantised frames."""
    quant = QuantParams(kp_bits, jac_bits, 4.0)
    session = Session(num_kp=3, quant=quant, key_interval_frames=50)
    enc, dec = KeypointEncoder(session, first_seq=65_530), KeypointDecoder(session)
    for t, (kp_list, jac_list, jitter) in enumerate(frames):
        kp, jac = np.reshape(kp_list, (3, 2)), np.reshape(jac_list, (3, 2, 2))
        ts = (t * 3600 + jitter) % 2**32
        frame = dec.decode_bytes(enc.encode(kp, jac, ts))
        assert frame is not None and frame.exact and frame.ts_90k == ts
        exp_kp, exp_jac = dequantise_keypoints(*quantise_keypoints(kp, jac, quant), quant)
        np.testing.assert_array_equal(frame.kp, exp_kp)
        np.testing.assert_array_equal(frame.jac, exp_jac)
