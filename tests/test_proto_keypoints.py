"""The keypoint stream: prediction, key packets, broken-chain detection, wraparound and the bit budget."""

from __future__ import annotations

import numpy as np
import pytest

from avfr.proto import (
    KeypointDecoder,
    KeypointEncoder,
    Keypoints,
    KeypointsDelta,
    KeypointsKey,
    ProtocolError,
    QuantParams,
    Session,
    decode_keypoints,
    dequantise_keypoints,
    encode_keypoints,
    quantise_keypoints,
    seq_diff,
)
from avfr.proto.keypoint_coding import INITIAL_PROBS, NUM_CONTEXTS, PROB_LIMITS
from avfr.proto.synthetic import random_walk_keypoints

SESSION = Session()  # K=10, 25 fps, 8/5 bits, key every 100 frames


def _stream(n: int, seed: int = 0, rms_step_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    return random_walk_keypoints(n, SESSION.num_kp, rms_step_px=rms_step_px, seed=seed)


def _expected(kp: np.ndarray, jac: np.ndarray, session: Session = SESSION) -> tuple[np.ndarray, np.ndarray]:
    return dequantise_keypoints(*quantise_keypoints(kp, jac, session.quant), session.quant)


def test_context_table_is_complete() -> None:
    assert len(INITIAL_PROBS) == NUM_CONTEXTS
    lo, hi = PROB_LIMITS
    assert all(lo <= p <= hi for p in INITIAL_PROBS)


def test_seq_diff_wraps() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(5, 5) == 0
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768


def test_stream_round_trip_is_exact_across_seq_and_ts_wraparound() -> None:
    kp, jac = _stream(300)
    enc = KeypointEncoder(SESSION, first_seq=65_400)
    dec = KeypointDecoder(SESSION)
    ts0 = 2**32 - 150 * 3600
    seqs = []
    for t in range(len(kp)):
        ts = (ts0 + t * 3600) % 2**32
        frame = dec.decode_bytes(enc.encode(kp[t], jac[t], ts))
        assert frame is not None
        exp_kp, exp_jac = _expected(kp[t], jac[t])
        np.testing.assert_array_equal(frame.kp, exp_kp)
        np.testing.assert_array_equal(frame.jac, exp_jac)
        assert frame.ts_90k == ts and frame.kp.dtype == np.float32 and frame.jac.shape == (10, 2, 2)
        seqs.append(frame.seq)
    assert seqs[0] == 65_400 and seqs[136] == 0 and seqs[-1] == (65_400 + 299) % 65536
    assert dec.broken == 0 and not dec.needs_key


def test_keys_are_periodic_and_on_request() -> None:
    kp, jac = _stream(250)
    session = Session(key_interval_frames=50)
    enc = KeypointEncoder(session)
    keys = []
    for t in range(250):
        if t == 120:
            enc.request_key()
        if isinstance(enc.packet(kp[t], jac[t], t * 3600), KeypointsKey):
            keys.append(t)
    assert keys == [0, 50, 100, 120, 170, 220]


Run = list[tuple[int, "Keypoints | None", bool]]  # (frame index, decoded frame, needs_key after it)


def _lossy_run(
    conceal: bool, lost: set[int], n: int = 60, key_interval: int = 20
) -> tuple[np.ndarray, np.ndarray, Session, KeypointDecoder, Run]:
    kp, jac = _stream(n)
    session = Session(key_interval_frames=key_interval)
    enc = KeypointEncoder(session)
    dec = KeypointDecoder(session, conceal_broken=conceal)
    results: Run = []
    for t in range(n):
        data = enc.encode(kp[t], jac[t], t * 3600)
        if t not in lost:
            results.append((t, dec.decode_bytes(data), dec.needs_key))
    return kp, jac, session, dec, results


def test_lost_packet_breaks_the_chain_until_the_next_key_when_dropping() -> None:
    kp, jac, session, dec, results = _lossy_run(conceal=False, lost={5})
    broken = [t for t, frame, _ in results if frame is None]
    assert broken == list(range(6, 20))  # frames 6..19 predict from the lost 5 (directly or not)
    assert [t for t, _, needs_key in results if needs_key] == list(range(6, 20))
    assert dec.broken == 14 and not dec.needs_key  # the key at 20 cleared it
    for t, frame, _ in results:
        if frame is not None:
            assert frame.exact
            np.testing.assert_array_equal(frame.kp, _expected(kp[t], jac[t], session)[0])


def test_broken_chain_is_concealed_and_flagged_without_drift() -> None:
    kp, jac, session, dec, results = _lossy_run(conceal=True, lost={5, 30, 31})
    assert all(frame is not None for _, frame, _ in results)
    inexact = [t for t, frame, _ in results if not frame.exact]
    assert inexact == list(range(6, 20)) + list(range(32, 40))
    assert dec.broken == 2 and not dec.needs_key
    step = session.quant.kp_step
    truth = {t: _expected(kp[t], jac[t], session)[0] for t in range(60)}
    # concealed frames are off by the missing frames' motion, a constant offset: no drift
    offsets = [np.round((frame.kp - truth[t]) / step) for t, frame, _ in results if 6 <= t < 20]
    assert all(np.array_equal(o, offsets[0]) for o in offsets)
    np.testing.assert_array_equal(offsets[0], np.round((truth[4] - truth[5]) / step))
    for t, frame, _ in results:
        if frame.exact:
            np.testing.assert_array_equal(frame.kp, truth[t])
        assert frame.ts_90k == t * 3600  # the clock is exact even for concealed frames


def test_nothing_to_conceal_with_before_the_first_key() -> None:
    _, _, _, dec, results = _lossy_run(conceal=True, lost={0})
    assert [t for t, frame, _ in results if frame is None] == list(range(1, 20))
    assert dec.broken == 19


def test_refresh_recovers_a_broken_chain() -> None:
    kp, jac = _stream(40)
    enc = KeypointEncoder(SESSION)
    dec = KeypointDecoder(SESSION)
    recovered_at = None
    for t in range(40):
        data = enc.encode(kp[t], jac[t], t * 3600)
        if t == 3:
            continue
        frame = dec.decode_bytes(data)
        if dec.needs_key:
            enc.request_key()  # the receiver's Refresh(want_key=True), delivered instantly here
        if frame is not None and frame.exact and t > 3 and recovered_at is None:
            recovered_at = t
    assert recovered_at == 5  # 4 is concealed, its Refresh makes 5 a key


def test_delta_can_reference_older_frames() -> None:
    kp, jac = _stream(3)
    q = [quantise_keypoints(kp[t], jac[t], SESSION.quant) for t in range(3)]
    key = KeypointsKey(10, 1000, *q[0])
    res_kp, res_jac = q[2][0] - q[0][0], q[2][1] - q[0][1]
    delta = KeypointsDelta(12, 10, 7, np.zeros(6, int), res_kp, res_jac)  # 2 frames back, 7 ticks late
    dec = KeypointDecoder(SESSION)
    dec.decode(decode_keypoints(encode_keypoints(key, SESSION), SESSION))
    frame = dec.decode(decode_keypoints(encode_keypoints(delta, SESSION), SESSION))
    assert frame is not None and frame.seq == 12 and frame.ts_90k == 1000 + 2 * 3600 + 7 and not frame.key
    np.testing.assert_array_equal(frame.kp, _expected(kp[2], jac[2])[0])


def test_history_is_bounded() -> None:
    kp, jac = _stream(100)
    enc = KeypointEncoder(SESSION)
    dec = KeypointDecoder(SESSION, conceal_broken=False)
    packets = [enc.packet(kp[t], jac[t], t * 3600) for t in range(100)]
    for p in packets:
        dec.decode(p)
    zeros = (np.zeros(6, int), np.zeros((10, 2), int), np.zeros((10, 2, 2), int))
    late = KeypointsDelta(50, 20, 0, *zeros)  # a late packet whose reference left the 64-frame history
    assert not dec.has_reference(late) and dec.decode(late) is None
    oldest = KeypointsDelta(100, 36, 0, *zeros)  # 64 frames back: still held
    assert dec.has_reference(oldest) and dec.decode(oldest) is not None


def test_delta_leaving_the_level_range_is_refused() -> None:
    dec = KeypointDecoder(SESSION)
    kp_q = np.full((10, 2), 127)
    dec.decode(KeypointsKey(0, 0, kp_q, np.zeros((10, 2, 2), int)))
    step_out = KeypointsDelta(1, 0, 0, np.array([1, 0, 0, 0, 0, 0]), np.zeros((10, 2), int),
                              np.zeros((10, 2, 2), int))
    with pytest.raises(ProtocolError, match=r"delta packet seq=1: keypoint level outside \[-128, 127\]"):
        dec.decode(step_out)
    assert dec.needs_key and dec.broken == 0  # malformed, not a broken chain: but a key is wanted at once
    assert not dec.has_reference(KeypointsDelta(2, 1, 0, np.zeros(6, int), np.zeros((10, 2), int),
                                                np.zeros((10, 2, 2), int)))  # frame 1 was not decoded
    dec.decode(KeypointsKey(2, 7200, kp_q, np.zeros((10, 2, 2), int)))
    assert not dec.needs_key


def test_timestamp_jump_forces_a_key() -> None:
    kp, jac = _stream(3)
    enc = KeypointEncoder(SESSION)
    enc.packet(kp[0], jac[0], 0)
    assert isinstance(enc.packet(kp[1], jac[1], 3600 + 90_000), KeypointsDelta)  # 1 s late: still a delta
    assert isinstance(enc.packet(kp[2], jac[2], 2 * 3600 + 90_000 + 90_001), KeypointsKey)


def test_opposite_full_range_jumps_still_fit_a_delta() -> None:
    session = Session(num_kp=2, quant=QuantParams(8, 5, 4.0))
    enc, dec = KeypointEncoder(session), KeypointDecoder(session)
    jac = np.tile(np.eye(2), (2, 1, 1))
    frames = [np.array([[0.99, -1.0], [-1.0, 0.99]]), np.array([[-1.0, 0.99], [0.99, -1.0]])]
    for t, kp in enumerate(frames):
        packet = enc.packet(kp, jac, t * 3600)
        frame = dec.decode(decode_keypoints(encode_keypoints(packet, session), session))
        assert frame is not None and frame.exact
        np.testing.assert_array_equal(frame.kp, _expected(kp, jac, session)[0])
    assert isinstance(packet, KeypointsDelta)


def test_encoder_rejects_bad_input() -> None:
    enc = KeypointEncoder(SESSION)
    with pytest.raises(ValueError, match="expected kp"):
        enc.encode(np.zeros((9, 2)), np.zeros((9, 2, 2)), 0)
    with pytest.raises(ValueError, match="non-finite"):
        enc.encode(np.full((10, 2), np.nan), np.zeros((10, 2, 2)), 0)
    with pytest.raises(ValueError, match="uint32"):
        enc.encode(np.zeros((10, 2)), np.zeros((10, 2, 2)), 2**32)


@pytest.mark.parametrize("hysteresis", [0.75, 1.0])
def test_hysteresis_bounds_the_error_and_saves_bits(hysteresis: float) -> None:
    kp, jac = _stream(400, seed=3, rms_step_px=0.5)
    plain = KeypointEncoder(SESSION)
    held = KeypointEncoder(SESSION, kp_hysteresis_steps=hysteresis, jac_hysteresis_steps=hysteresis)
    dec = KeypointDecoder(SESSION)
    plain_bytes = held_bytes = 0
    for t in range(400):
        plain_bytes += len(plain.encode(kp[t], jac[t], t * 3600))
        data = held.encode(kp[t], jac[t], t * 3600)
        held_bytes += len(data)
        frame = dec.decode_bytes(data)
        assert frame is not None
        assert np.abs(frame.kp - kp[t]).max() <= hysteresis * SESSION.quant.kp_step + 1e-6
        assert np.abs(frame.jac - jac[t]).max() <= hysteresis * SESSION.quant.jac_step + 1e-6
    assert held_bytes < plain_bytes


def test_default_stream_meets_the_2_kbps_budget() -> None:
    """Reference synthetic track (1 px/frame RMS, jacobians 0.01/frame): <= 10 bytes/packet on average."""
    kp, jac = random_walk_keypoints(500, 10, rms_step_px=1.0, jac_rms_step=0.01, seed=0)
    enc = KeypointEncoder(SESSION)
    total = sum(len(enc.encode(kp[t], jac[t], t * 3600)) for t in range(500))
    kbps = total * 8 * SESSION.fps / 500 / 1000
    assert kbps <= 2.0, f"{kbps:.3f} kbit/s"


def test_still_face_costs_a_few_bytes() -> None:
    kp, jac = _stream(1)
    enc = KeypointEncoder(SESSION)
    sizes = [len(enc.encode(kp[0], jac[0], t * 3600)) for t in range(20)]
    assert sizes[0] == 52 and max(sizes[1:]) <= 5


def test_quant_params_are_checked() -> None:
    with pytest.raises(ProtocolError, match="kp_bits=3"):
        QuantParams(3, 5, 4.0)
    with pytest.raises(ProtocolError, match="jac_abs_max=4 must be a finite float"):
        QuantParams(8, 5, 4)  # type: ignore[arg-type]
