"""avfr.sender's choice of the automatic refresh image (EncoderConfig.refresh_pick) on real frames: the neutral
score, the window of recent face frames, and the Encoder sending (and its replica holding) the frame picked."""

from __future__ import annotations

import numpy as np
import pytest
from codec_data_helpers import first_frames

from avfr.proto import CONTROL_CHANNEL_LABEL, MessageType, decode_message, encode_refresh, peek_type
from avfr.proto.control import Refresh

CLIP = "edtalk_expr"  # expressive: its frames 25..49 hold wide-open eyes (33..37) and end on an open mouth (49)
FRAMES = 50
INTERVAL = 25  # drift checks after frames 24 (the baseline) and 49 (a refresh: see _run)


@pytest.fixture(scope="module")
def clip():
    """(frames uint8 (FRAMES, 256, 256, 3), the mediapipe priors of each, the extractor) of CLIP's first frames."""
    from avfr.codec.data import PriorExtractor

    frames = first_frames(CLIP, FRAMES)
    extractor = PriorExtractor()
    try:
        priors = [extractor(rgb) for rgb in frames]
        assert all(p.face_found for p in priors)
        yield np.stack(frames), priors, extractor
    finally:
        extractor.close()


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def test_neutral_score(clip):
    from avfr.sender.drift import neutral_score

    _, priors, _ = clip
    scores = np.array([neutral_score(p.landmarks) for p in priors])
    assert np.isfinite(scores).all() and (np.abs(scores) < 0.3).all()
    lm = priors[0].landmarks
    assert neutral_score(1.7 * lm + 30.0) == pytest.approx(scores[0], abs=1e-6)  # zoom and shift: the same face
    assert np.isnan(neutral_score(np.full_like(lm, np.nan)))  # no face
    closed = lm.copy()
    closed[[145, 374]] = closed[[159, 386]]  # lids shut
    opened = lm.copy()
    opened[14] = opened[14] + [0.0, 20.0]  # the lower lip drops 20 px
    assert neutral_score(closed) < scores[0] and neutral_score(opened) < scores[0]


def test_window_holds_recent_faces_and_picks_the_most_neutral(clip):
    from avfr.sender.drift import NEUTRAL_TIE, NeutralWindow, neutral_score

    frames, priors, _ = clip
    window = NeutralWindow(INTERVAL)
    assert window.pick() is None
    for i in range(FRAMES):
        landmarks = np.full((478, 2), np.nan, np.float32) if i == FRAMES - 2 else priors[i].landmarks
        window.add(i, frames[i], landmarks)
    held = [i for i, _ in window.scores]
    assert held == [i for i in range(FRAMES - INTERVAL, FRAMES) if i != FRAMES - 2]  # faces of the last 25
    index, rgb = window.pick()
    scores = dict(window.scores)
    best = max(scores.values())
    assert index in held and scores[index] == pytest.approx(neutral_score(priors[index].landmarks))
    assert scores[index] >= best - NEUTRAL_TIE
    assert all(s < best - NEUTRAL_TIE for i, s in scores.items() if i > index)  # the latest of the ties
    assert scores[index] > scores[FRAMES - 1] + 0.05 and index < FRAMES - 1  # not the open-mouthed last frame
    np.testing.assert_array_equal(rgb, frames[index])
    assert not np.shares_memory(rgb, frames[index])  # a copy: the camera may reuse its buffer
    window.add(FRAMES, frames[index], priors[index].landmarks)  # the same face again, later: it wins the tie
    assert window.pick()[0] == FRAMES
    window.add(FRAMES + 3 * INTERVAL, frames[0], np.full((478, 2), np.nan, np.float32))  # long without a face
    assert window.pick() is None and window.scores == []


class _Priors:
    """PriorExtractor stand-in: the clip's priors for its frames, the extractor's for other images."""

    def __init__(self, clip) -> None:
        frames, priors, self._extractor = clip
        self._known = {rgb.tobytes(): p for rgb, p in zip(frames, priors, strict=True)}

    def __call__(self, rgb):
        known = self._known.get(np.ascontiguousarray(rgb).tobytes())
        return self._extractor(rgb) if known is None else known


def _run(model, clip, pick: str):
    """Encode the clip with drift checks every INTERVAL frames, the second of which refreshes (a threshold of
    -100 dB: every check after the baseline drifted); returns (encoder, refresh chunks, images the replica got)."""
    from avfr.sender import Encoder, EncoderConfig

    frames, _, _ = clip
    cfg = EncoderConfig(drift_check_interval_frames=INTERVAL, drift_threshold_db=-100.0,
                        min_refresh_interval_frames=1, refresh_payback_s=0, refresh_pick=pick)
    enc = Encoder(cfg, model, extractor=_Priors(clip))
    replica_sources = []
    set_source = enc._drift.set_source
    enc._drift.set_source = lambda rgb, extractor: (replica_sources.append(rgb.copy()), set_source(rgb, extractor))
    enc.start(frames[0])
    chunks = []
    for i in range(FRAMES):
        out = enc.encode_frame(i, frames[i])
        chunks += _chunks(out)
    assert enc.stats.drift_checks == 2 and enc.stats.refreshes == 1 and len(replica_sources) == 2
    return enc, chunks, replica_sources


def _chunks(out) -> list:
    """The SourceChunk messages among an Encoder's output."""
    return [decode_message(m.data) for m in out
            if m.channel == CONTROL_CHANNEL_LABEL and peek_type(m.data) == MessageType.SOURCE_CHUNK]


def _sent(chunks) -> bytes:
    return b"".join(c.payload for c in sorted(chunks, key=lambda c: c.index))


def _as_refresh(rgb: np.ndarray, cfg) -> bytes:
    """The WebP bytes of an automatic refresh of `rgb`."""
    import cv2

    from avfr.codec.runtime import encode_source_image

    small = cv2.resize(rgb, (cfg.refresh_size, cfg.refresh_size), interpolation=cv2.INTER_AREA)
    return encode_source_image(small, cfg.refresh_quality)


def test_neutral_pick_sends_that_frame_and_the_replica_holds_it(clip, model):
    from avfr.codec.runtime import decode_source_image
    from avfr.sender.drift import NEUTRAL_TIE, neutral_score

    frames, priors, _ = clip
    enc, chunks, replica_sources = _run(model, clip, "neutral")
    index = enc.stats.refresh_frame
    scores = {i: neutral_score(priors[i].landmarks) for i in range(FRAMES - INTERVAL, FRAMES)}
    assert FRAMES - INTERVAL <= index < FRAMES - 1  # a face frame since the last check, not the current one
    assert scores[index] >= max(scores.values()) - NEUTRAL_TIE
    data = _sent(chunks)
    assert data == _as_refresh(frames[index], enc.config)  # 96 px q30 of the frame picked
    np.testing.assert_array_equal(replica_sources[-1], decode_source_image(data))  # the replica: as sent
    np.testing.assert_array_equal(enc._source_rgb, replica_sources[-1])
    # a refresh the receiver asks for still sends the current frame, full size
    enc.on_control(encode_refresh(Refresh(want_key=False, want_source=True)))
    out = enc.encode_frame(FRAMES, frames[-1])
    asked = _chunks(out)
    assert decode_source_image(_sent(asked)).shape == (256, 256, 3)
    assert enc.stats.refresh_frame == FRAMES and enc.stats.refreshes == 2


def test_current_pick_sends_the_frame_of_the_check(clip, model):
    frames, _, _ = clip
    enc, chunks, _ = _run(model, clip, "current")
    assert enc.stats.refresh_frame == FRAMES - 1 and enc._neutral is None
    assert _sent(chunks) == _as_refresh(frames[FRAMES - 1], enc.config)


def test_unknown_pick_is_refused():
    from avfr.sender import EncoderConfig

    with pytest.raises(ValueError, match="refresh_pick"):
        EncoderConfig(refresh_pick="happiest")
