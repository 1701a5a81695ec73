"""avfr.sender.Encoder on real frames: packets, anchors, no-face hold, Refresh/Error handling, drift refresh."""

from __future__ import annotations

import numpy as np
import pytest
from codec_data_helpers import first_frames

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    ErrorCode,
    Hello,
    KeypointsKey,
    SourceChunk,
    decode_message,
    encode_error,
    encode_refresh,
)
from avfr.proto.control import Error, Refresh

CLIP = "retalking_2"


@pytest.fixture(scope="module")
def clip():
    return first_frames(CLIP, 12)


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _encoder(model, **kw):
    from avfr.sender import Encoder, EncoderConfig

    return Encoder(EncoderConfig(**{"drift_check_interval_frames": 0, **kw}), model)


def test_start_frames_and_finish(clip, model):
    enc = _encoder(model)
    start = enc.start(clip[0])
    assert all(m.channel == CONTROL_CHANNEL_LABEL for m in start)
    hello = decode_message(start[0].data)
    assert isinstance(hello, Hello) and hello.model_id == model.model_id and hello.num_kp == 10
    assert isinstance(decode_message(start[1].data), SourceChunk)
    first = enc.encode_frame(0, clip[0])
    assert [m.channel for m in first] == [MEDIA_CHANNEL_LABEL, CONTROL_CHANNEL_LABEL]  # start anchor
    assert first[0].data == first[1].data
    assert isinstance(decode_message(first[0].data, enc.session), KeypointsKey)
    for i in range(1, 5):
        out = enc.encode_frame(i, clip[i])
        assert len(out) == 1 and len(out[0].data) < 30  # a delta
    audio = enc.encode_audio(np.zeros(3200, np.float32))
    assert len(audio) == 10 and all(m.channel == MEDIA_CHANNEL_LABEL for m in audio)
    end = enc.finish()
    anchor = decode_message(end[-1].data, enc.session)
    assert end[-1].channel == CONTROL_CHANNEL_LABEL and isinstance(anchor, KeypointsKey) and anchor.seq == 4
    assert enc.stats.frames == 5 and enc.stats.no_face_frames == 0


def test_no_face_holds_the_keypoints(clip, model):
    from avfr.proto import KeypointDecoder

    enc = _encoder(model)
    enc.start(clip[0])
    dec = KeypointDecoder(enc.session)
    frames = [clip[0], clip[1], np.zeros_like(clip[0]), np.full_like(clip[0], 128), clip[2]]
    decoded = []
    for i, rgb in enumerate(frames):
        data = enc.encode_frame(i, rgb)[0].data
        decoded.append(dec.decode_bytes(data))
    assert enc.stats.no_face_frames == 2
    np.testing.assert_array_equal(decoded[2].kp, decoded[1].kp)
    np.testing.assert_array_equal(decoded[3].kp, decoded[1].kp)


def test_refresh_and_error_from_the_peer(clip, model):
    enc = _encoder(model)
    enc.start(clip[0])
    enc.encode_frame(0, clip[0])
    enc.encode_frame(1, clip[1])
    enc.on_control(encode_refresh(Refresh(want_key=True, want_source=True)))
    out = enc.encode_frame(2, clip[2])
    msgs = [decode_message(m.data, enc.session) for m in out]
    assert isinstance(msgs[0], KeypointsKey)
    assert any(isinstance(m, SourceChunk) and m.image_id == 2 for m in msgs)
    assert _image([m for m in msgs if isinstance(m, SourceChunk)]).shape[:2] == (256, 256)  # asked for: full size
    enc.on_control(b"\xff\x00garbage")  # ignored
    enc.on_control(encode_error(Error(ErrorCode.UNKNOWN_MODEL, "no such model")))
    assert enc.stopped and "UNKNOWN_MODEL" in enc.stats.refused
    assert enc.encode_frame(3, clip[3]) == [] and enc.finish() == []


def test_drift_triggers_a_new_source(clip, model):
    from avfr.sender.drift import DRIFT_LAG_FRAMES

    enc = _encoder(model, drift_check_interval_frames=1, min_refresh_interval_frames=1, drift_threshold_db=3.0)
    enc.start(clip[0])
    for i in range(DRIFT_LAG_FRAMES + 1):
        assert enc.encode_frame(i, clip[i])
    assert enc.last_replica is None  # frame 0 is the source image itself: not a measure of drift
    enc.encode_frame(DRIFT_LAG_FRAMES + 1, clip[DRIFT_LAG_FRAMES + 1])  # the first check (of frame 1): baseline
    baseline = enc.stats.last_drift_psnr_db
    assert enc.stats.refreshes == 0 and enc.last_replica[0] == 1
    out, readings = [], []
    for i in range(DRIFT_LAG_FRAMES + 2, 2 * DRIFT_LAG_FRAMES + 3):
        dark = (clip[i].astype(np.float32) * 0.35).astype(np.uint8)  # the light went down
        out += enc.encode_frame(i, dark)
        readings.append(enc.stats.last_drift_psnr_db)  # (after the refresh, the dark source draws dark frames well)
    assert min(readings) < baseline - 3.0
    assert enc.stats.refreshes == 1
    chunks = [m for m in (decode_message(m.data) for m in out if m.channel == CONTROL_CHANNEL_LABEL)
              if isinstance(m, SourceChunk)]
    assert enc.stats.source_images == 2 and enc.stats.source_bytes > enc.stats.refresh_bytes
    # an automatic refresh is small and cheap: refresh_size px at refresh_quality, far below the first image
    image = _image(chunks)
    assert image.shape[:2] == (96, 96)
    assert enc.stats.refresh_bytes == sum(len(m.data) for m in out if m.channel == CONTROL_CHANNEL_LABEL
                                          and isinstance(decode_message(m.data), SourceChunk))
    assert enc.stats.refresh_bytes < 1500 < enc.stats.source_bytes - enc.stats.refresh_bytes
    # ... and the keypoint rate control pays it back: its bytes spread over the next 10 s of packets
    assert [d[0] for d in enc._rate._debts] == [pytest.approx(enc.stats.refresh_bytes / 250)]
    # the next checks render only frames the far end drew with the new source: after the refresh frame
    refreshed, last = enc.stats.refresh_frame, 2 * DRIFT_LAG_FRAMES + 2
    assert enc.last_replica[0] == refreshed - DRIFT_LAG_FRAMES
    for i in range(last + 1, refreshed + DRIFT_LAG_FRAMES + 3):
        enc.encode_frame(i, (clip[i % len(clip)].astype(np.float32) * 0.35).astype(np.uint8))
        expected = i - DRIFT_LAG_FRAMES if i - DRIFT_LAG_FRAMES > refreshed else refreshed - DRIFT_LAG_FRAMES
        assert enc.last_replica[0] == expected, i
    assert enc.last_replica[0] > refreshed


def test_first_refresh_need_not_wait_and_the_baseline_is_the_best_level(clip, model):
    from avfr.sender.drift import DRIFT_LAG_FRAMES

    # checking every frame, the first checks render frames next to the source's own (its best level); a high
    # threshold keeps the natural fall of the next frames (up to ~7 dB on this clip) from refreshing
    enc = _encoder(model, drift_check_interval_frames=1, min_refresh_interval_frames=100, refresh_payback_s=0,
                   drift_threshold_db=9.0)
    enc.start(clip[0])
    for i in range(DRIFT_LAG_FRAMES + 3):
        enc.encode_frame(i, clip[i])
    best = enc._drift._baseline_psnr_db
    assert best >= enc.stats.last_drift_psnr_db and enc.stats.refreshes == 0
    i = DRIFT_LAG_FRAMES + 3
    while enc.stats.refreshes == 0 and i < len(clip):
        enc.encode_frame(i, (clip[i].astype(np.float32) * 0.35).astype(np.uint8))
        i += 1
    assert enc.stats.refreshes == 1 and i < 100  # well before min_refresh_interval_frames
    for j in range(i, len(clip)):  # the next automatic one waits for the interval
        enc.encode_frame(j, (clip[j].astype(np.float32) * 0.2).astype(np.uint8))
    assert enc.stats.refreshes == 1


def _image(chunks) -> np.ndarray:
    """The source image of its chunks, decoded as sent (BGR, its own size)."""
    import cv2

    data = b"".join(c.payload for c in sorted(chunks, key=lambda c: c.index))
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_missing_camera_gives_a_clear_message():
    import cv2

    from avfr.sender.track import CameraSource, DeviceError

    cap = cv2.VideoCapture(0)
    present = cap.isOpened()
    cap.release()
    if present:
        pytest.skip("this machine has a camera")
    with pytest.raises(DeviceError, match="no camera"):
        CameraSource()


def test_hold_when_behind_real_time(clip, model):
    from avfr.proto import KeypointDecoder

    enc = _encoder(model)
    enc.start(clip[0])
    dec = KeypointDecoder(enc.session)
    first = dec.decode_bytes(enc.encode_frame(0, clip[0])[0].data)
    held = enc.encode_hold(1)
    assert len(held) == 1 and len(held[0].data) == 2  # a "not moved" delta: header byte + 1 payload byte
    again = dec.decode_bytes(held[0].data)
    np.testing.assert_array_equal(again.kp, first.kp)
    assert again.ts_90k == 3600 and enc.stats.held_frames == 1


# --- keypoint rate control -------------------------------------------------------------------------------

EXPRESSIVE_CLIP = "edtalk_expr"  # the dev clip with the most keypoint motion (2.3 kbit/s without rate control)
EXPRESSIVE_FRAMES = 150
BUDGET_BPS = 1400  # the call's (EncoderConfig.keypoint_budget_bps)


class _Recorder:
    """Wraps a callable object's method and records its results (replayed in order by `_Replay`)."""

    def __init__(self, target, method: str) -> None:
        self.target, self.method, self.results = target, method, []

    def __call__(self, *args):
        result = getattr(self.target, self.method)(*args)
        self.results.append(result)
        return result

    def keypoints(self, x):
        return self(x)


class _Replay:
    def __init__(self, results) -> None:
        self._it = iter(results)

    def __call__(self, *args):
        return next(self._it)

    def keypoints(self, x):
        return next(self._it)


def _run(enc, frames):
    """Encode `frames`; returns the keypoint packets' bytes of the media channel, one per frame."""
    enc.start(frames[0])
    media = []
    for i, rgb in enumerate(frames):
        media += [m.data for m in enc.encode_frame(i, rgb) if m.channel == MEDIA_CHANNEL_LABEL]
    return media


@pytest.fixture(scope="module")
def expressive(model):
    """(frames, priors, keypoints, media packets) of a budget-0 run on the first frames of EXPRESSIVE_CLIP."""
    from avfr.codec.data import PriorExtractor

    frames = first_frames(EXPRESSIVE_CLIP, EXPRESSIVE_FRAMES)
    extractor = PriorExtractor()
    try:
        priors = _Recorder(extractor, "__call__")
        enc = _encoder(model, keypoint_budget_bps=0)
        enc.extractor = priors
        keypoints = _Recorder(enc.keypoint_model, "keypoints")
        enc.keypoint_model = keypoints
        media = _run(enc, frames)
    finally:
        extractor.close()
    assert enc.stats.no_face_frames == 0 and enc.stats.rate_level == 0
    return frames, priors.results, keypoints.results, media


def test_rate_controller_levels():
    from avfr.proto import KeypointEncoder, Session
    from avfr.sender.rate_control import RATE_LEVELS, KeypointRateController

    enc = KeypointEncoder(Session())
    rate = KeypointRateController(BUDGET_BPS, 0.75)
    for _ in range(100):  # 20 B = 4 kbit/s
        rate.prepare(enc, 0)
        rate.update(20)
    assert rate.level == len(RATE_LEVELS) - 1 and rate.window_bps == 4000
    assert rate.prepare(enc, 1) and not rate.prepare(enc, 2)  # the top level repeats every other frame
    assert enc.jac_hysteresis_steps == RATE_LEVELS[-1][1]
    for _ in range(25 * len(RATE_LEVELS)):  # 4 B = 800 bit/s: back to level 0, one level per window
        rate.prepare(enc, 0)
        rate.update(4)
    assert rate.level == 0
    rate.prepare(enc, 1)
    assert (enc.kp_hysteresis_steps, enc.jac_hysteresis_steps) == (0.75, 0.5)
    paid = KeypointRateController(BUDGET_BPS, 0.75)
    paid.charge(1000, 50)  # a 1 kB refresh paid back over 2 s: 20 B more per packet
    for _ in range(25):
        paid.prepare(enc, 0)
        paid.update(4)
    assert paid.window_bps == 8 * 24 * 25 and paid.level > 0
    for _ in range(25 + 25 * len(RATE_LEVELS)):  # paid: back to the packets' own rate and level 0
        paid.prepare(enc, 0)
        paid.update(4)
    assert paid.window_bps == 800 and paid.level == 0
    off = KeypointRateController(0, 0.75)
    for _ in range(100):
        off.update(50)
    assert off.level == 0 and off.window_bps == 10_000


def test_budget_off_is_the_plain_keypoint_encoder(expressive, model):
    from avfr.proto import KeypointEncoder, encode_keypoints

    frames, _, keypoints, media = expressive
    enc = _encoder(model, keypoint_budget_bps=0)
    plain = KeypointEncoder(enc.session, kp_hysteresis_steps=enc.config.kp_hysteresis_steps)
    expected = [encode_keypoints(plain.packet(np.asarray(kp, np.float32), np.asarray(jac, np.float32), 3600 * i),
                                 enc.session) for i, (kp, jac) in enumerate(keypoints)]
    assert media == expected


def test_budget_on_the_expressive_clip(expressive, model):
    """The rate control cuts the most expressive dev clip down to its coarsest level, no further: it exceeds
    the budget only there (7-bit jacobians: coarser levels cost more picture than the bits are worth; the table
    in `avfr.sender.EncoderConfig`)."""
    from avfr.proto import KeypointDecoder
    from avfr.sender.rate_control import RATE_LEVELS

    frames, priors, keypoints, plain = expressive
    enc = _encoder(model)
    assert enc.config.keypoint_budget_bps == BUDGET_BPS  # the call's own budget
    enc.extractor = _Replay(priors)  # the same frames' priors and keypoints as the budget-0 run
    enc.keypoint_model = _Replay(keypoints)
    enc.start(frames[0])
    media, levels = [], []
    for i, rgb in enumerate(frames):
        levels.append(enc.stats.rate_level)  # the level this frame is coded at
        media += [m.data for m in enc.encode_frame(i, rgb) if m.channel == MEDIA_CHANNEL_LABEL]
    n = len(frames)
    assert len(media) == n == enc.stats.keypoint_packets
    sizes = np.array([len(d) for d in media])
    windows = [8 * int(sizes[a:a + 50].sum()) / 2 for a in range(25, n - 49)]  # every full 2 s window after 1 s
    plain_windows = [8 * sum(len(d) for d in plain[a:a + 50]) / 2 for a in range(25, n - 49)]
    assert max(plain_windows) > BUDGET_BPS  # the clip needs the rate control
    assert max(windows) <= 0.85 * max(plain_windows) and sum(sizes) <= 0.85 * sum(len(d) for d in plain)
    top = len(RATE_LEVELS) - 1
    for a, bps in zip(range(25, n - 49), windows, strict=True):
        if bps > BUDGET_BPS:  # over the budget only at the coarsest level, most of that window
            assert np.mean(np.array(levels[a:a + 50]) == top) >= 0.5, (a, bps)
    assert enc.stats.rate_level > 0 or enc.stats.rate_held_frames > 0
    assert enc.stats.kp_hysteresis_steps >= 0.75 and enc.stats.jac_hysteresis_steps >= 0.5
    dec = KeypointDecoder(enc.session)
    decoded = [dec.decode_bytes(d) for d in media]
    assert len(decoded) == n and all(k is not None and k.exact for k in decoded)
    assert [k.seq for k in decoded] == list(range(n)) and dec.broken == 0
    np.testing.assert_array_equal(decoded[-1].kp, enc._last_sent[2])  # the far end decodes what the sender holds
