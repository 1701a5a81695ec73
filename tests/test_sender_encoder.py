"""avfr.sender.Encoder on real frames: packets, anchors, no-face hold, Refresh/Error handling, drift refresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = "retalking_2"


@pytest.fixture(scope="module")
def clip():
    from avfr.codec.video import VideoReader

    video = DATA / "clips" / f"{CLIP}.mp4"
    if not video.exists():
        pytest.skip(f"../shared/data not found: {video}")
    frames = []
    for i, rgb in enumerate(VideoReader(video)):
        if i >= 12:
            break
        frames.append(rgb)
    return frames


@pytest.fixture(scope="module")
def model():
    from avfr.sender.model import load_call_model

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
    from avfr.proto import KeypointDecoder, decode_keypoints

    enc = _encoder(model)
    enc.start(clip[0])
    dec = KeypointDecoder(enc.session)
    frames = [clip[0], clip[1], np.zeros_like(clip[0]), np.full_like(clip[0], 128), clip[2]]
    decoded = []
    for i, rgb in enumerate(frames):
        data = enc.encode_frame(i, rgb)[0].data
        decoded.append(dec.decode(decode_keypoints(data, enc.session)))
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
    enc.on_control(b"\xff\x00garbage")  # ignored
    enc.on_control(encode_error(Error(ErrorCode.UNKNOWN_MODEL, "no such model")))
    assert enc.stopped and "UNKNOWN_MODEL" in enc.stats.refused
    assert enc.encode_frame(3, clip[3]) == [] and enc.finish() == []


def test_drift_triggers_a_new_source(clip, model):
    from avfr.sender.encoder import DRIFT_LAG_FRAMES

    enc = _encoder(model, drift_check_interval_frames=1, min_refresh_interval_frames=1, drift_threshold_db=3.0)
    enc.start(clip[0])
    for i in range(DRIFT_LAG_FRAMES + 1):
        assert enc.encode_frame(i, clip[i])  # the first check (of frame 0) sets the baseline
    baseline = enc.stats.last_drift_psnr_db
    assert enc.stats.refreshes == 0 and enc.last_replica[0] == 0
    out = []
    for i in range(DRIFT_LAG_FRAMES + 1, 2 * DRIFT_LAG_FRAMES + 2):
        dark = (clip[i].astype(np.float32) * 0.35).astype(np.uint8)  # the light went down
        out += enc.encode_frame(i, dark)
    assert enc.stats.last_drift_psnr_db < baseline - 3.0
    assert enc.stats.refreshes == 1
    assert any(isinstance(decode_message(m.data), SourceChunk) for m in out if m.channel == CONTROL_CHANNEL_LABEL)
    assert enc.stats.source_images == 2 and enc.stats.source_bytes > 0


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
    from avfr.proto import KeypointDecoder, decode_keypoints

    enc = _encoder(model)
    enc.start(clip[0])
    dec = KeypointDecoder(enc.session)
    first = dec.decode(decode_keypoints(enc.encode_frame(0, clip[0])[0].data, enc.session))
    held = enc.encode_hold(1)
    assert len(held) == 1 and len(held[0].data) == 4  # a "not moved" delta
    again = dec.decode(decode_keypoints(held[0].data, enc.session))
    np.testing.assert_array_equal(again.kp, first.kp)
    assert again.ts_90k == 3600 and enc.stats.held_frames == 1
