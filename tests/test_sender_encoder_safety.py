"""avfr.sender.Encoder: the peer's Error text is made printable, and close() releases what the Encoder opened."""

from __future__ import annotations

import numpy as np
import pytest

from avfr.proto import ErrorCode, encode_error
from avfr.proto.control import Error

FACE = np.zeros((256, 256, 3), np.uint8)
FACE[64:192, 64:192] = 200


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _config():
    from avfr.sender import EncoderConfig

    return EncoderConfig(drift_check_interval_frames=0)


def test_error_text_from_the_peer_is_printable(model, caplog):
    from avfr.sender import Encoder

    enc = Encoder(_config(), model)
    enc.start(FACE)
    enc.on_control(encode_error(Error(ErrorCode.UNKNOWN_MODEL, "\x1b[2J\x1b]0;owned\x07bye\r\n\u202eevil")))
    assert enc.stopped
    assert enc.stats.refused == "UNKNOWN_MODEL: \\x1b[2J\\x1b]0;owned\\x07bye\\x0d\\x0a\\u202eevil"
    assert enc.stats.refused.isprintable()
    assert all(r.getMessage().isprintable() for r in caplog.records)
    enc.close()


def test_close_releases_the_extractor_it_built_but_not_one_passed_in(model):
    from avfr.codec.data import PriorExtractor
    from avfr.sender import Encoder

    with Encoder(_config(), model) as enc:
        own = enc.extractor
        enc.start(FACE)
        enc.encode_frame(0, FACE)
    assert own._face_mesh is None and own._segmenter is None  # mediapipe graphs closed
    with pytest.raises(RuntimeError, match="close"):
        enc.encode_frame(1, FACE)
    enc.close()  # idempotent
    with PriorExtractor() as shared:
        with Encoder(_config(), model, shared) as enc:
            enc.start(FACE)
        assert shared._face_mesh is not None  # the caller's extractor stays open
        assert shared(FACE).mesh.shape == (256, 256)
