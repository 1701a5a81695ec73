"""The drift refresh's trial: an automatic refresh goes out only if the replica draws better from it."""

from __future__ import annotations

import numpy as np
import pytest
from codec_data_helpers import first_frames

from avfr.proto import CONTROL_CHANNEL_LABEL, MessageType, SourceChunk, decode_message, peek_type

CLIP = "retalking_2"
FRAMES = 16


@pytest.fixture(scope="module")
def clip():
    return first_frames(CLIP, FRAMES)


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _run(model, clip, min_gain_db: float, dark: bool):
    """Check every frame with a threshold of -100 dB (every check after the baseline drifted); from frame 8 on
    the camera frames are darkened (`dark`) or left as they are. Returns the Encoder and its source chunks."""
    from avfr.sender import Encoder, EncoderConfig

    cfg = EncoderConfig(drift_check_interval_frames=1, drift_threshold_db=-100.0, min_refresh_interval_frames=1,
                        refresh_payback_s=0, refresh_min_gain_db=min_gain_db)
    enc = Encoder(cfg, model)
    enc.start(clip[0])
    chunks = []
    for i in range(FRAMES):
        rgb = (clip[i].astype(np.float32) * 0.35).astype(np.uint8) if dark and i >= 8 else clip[i]
        chunks += [decode_message(o.data) for o in enc.encode_frame(i, rgb)
                   if o.channel == CONTROL_CHANNEL_LABEL and peek_type(o.data) == MessageType.SOURCE_CHUNK]
    return enc, chunks


def test_a_refresh_that_would_not_draw_better_is_not_sent(clip, model):
    """On an unchanged, well-drawn clip a 96 px refresh image cannot beat the full-size first source: every
    drifted check is declined, nothing is sent, and the replica keeps the source the far end holds."""
    enc, chunks = _run(model, clip, min_gain_db=1.0, dark=False)
    assert enc.stats.drift_checks >= 8 and enc.stats.refreshes == 0 and chunks == []
    assert enc.stats.refreshes_declined == enc.stats.drift_checks - 1  # all but the baseline check
    drift = enc._drift
    assert drift._baseline_psnr_db == pytest.approx(enc.stats.last_drift_psnr_db)  # the current level
    assert drift.last_refresh_frame < 0  # a declined refresh used up no interval
    # the replica still draws what the far end draws: the trial restored the first source's tensors
    index, picture = enc.last_replica
    assert index == FRAMES - 1 - 4 and picture.shape == (256, 256, 3)
    again = drift.replica.frame(*drift._last_check[1:])
    np.testing.assert_array_equal(again, picture)


def test_without_a_minimum_gain_every_drifted_check_refreshes(clip, model):
    enc, chunks = _run(model, clip, min_gain_db=0.0, dark=False)
    assert enc.stats.refreshes_declined == 0 and enc.stats.refreshes >= 1 and chunks


def test_a_refresh_that_draws_better_is_sent(clip, model):
    """The light goes down: the dark refresh image draws the dark frames far better than the bright source."""
    enc, chunks = _run(model, clip, min_gain_db=1.0, dark=True)
    assert enc.stats.refreshes >= 1 and chunks and all(isinstance(c, SourceChunk) for c in chunks)
    # the replica holds the refresh the far end holds (the trial's tensors, reused): as if computed afresh
    from avfr.codec.runtime import source_input

    drift = enc._drift
    held = drift.replica.source_tensors
    drift.replica.set_source(source_input(enc._source_rgb, enc.extractor)[0])
    for name, tensor in held.items():
        np.testing.assert_array_equal(tensor, drift.replica.source_tensors[name], err_msg=name)
    assert 8 <= enc.stats.refresh_frame
    assert enc.stats.refreshes_declined <= 7  # the checks of the bright frames before
