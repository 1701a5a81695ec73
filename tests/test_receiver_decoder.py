"""avfr.receiver.Decoder without the generator (render=False): jitter buffer, concealment, refusals, fuzz."""

from __future__ import annotations

import numpy as np
import pytest

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    Audio,
    AudioParams,
    ErrorCode,
    Hello,
    KeypointEncoder,
    QuantParams,
    Session,
    SourceImage,
    decode_message,
    encode_audio,
    encode_hello,
    encode_source_chunk,
    split_source_image,
)
from avfr.proto.control import Error, Refresh

C, M = CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL
NUM_FRAMES = 20


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _stream(model, num_frames: int = NUM_FRAMES, causal: bool = False, seed: int = 0):
    """Sender-order messages of a synthetic call: Hello, source, start anchor, then per frame kp + 2 audio."""
    from avfr.codec.runtime import OpusEncoder, encode_source_image

    rng = np.random.default_rng(seed)
    hello = Hello(model.model_id, model.weights_sha256, quant=QuantParams(6, 6, 4.0), causal_window=causal,
                  audio=AudioParams(bitrate_bps=12_000))
    session = Session.from_hello(hello)
    image = np.zeros((256, 256, 3), np.uint8)
    image[64:192, 64:192] = 200
    chunks = split_source_image(SourceImage(1, "webp", encode_source_image(image)))
    msgs = [(C, encode_hello(hello))] + [(C, encode_source_chunk(c)) for c in chunks]
    kp_enc = KeypointEncoder(session)
    opus = OpusEncoder(12_000)
    kp = rng.uniform(-0.5, 0.5, (10, 2)).astype(np.float32)
    jac = np.tile(np.eye(2, dtype=np.float32), (10, 1, 1))
    audio_seq = 0
    for i in range(num_frames):
        kp = np.clip(kp + rng.normal(0, 0.01, kp.shape), -0.9, 0.9).astype(np.float32)
        if i == num_frames - 1:
            kp_enc.request_key()  # so the end anchor below is the last frame's own (KEY) packet
        data = kp_enc.encode(kp, jac, 3600 * i)
        msgs.append((M, data))
        if i == 0:
            msgs.append((C, data))
        for payload in opus.encode((0.1 * rng.standard_normal(640)).astype(np.float32)):
            msgs.append((M, encode_audio(Audio(audio_seq, 1800 * audio_seq, payload))))
            audio_seq += 1
    msgs.append((C, data))  # end anchor
    return msgs, session


def _run(model, msgs, **config):
    from avfr.receiver import Decoder, DecoderConfig

    dec = Decoder(DecoderConfig(**config), model, render=False)
    for channel, data in msgs:
        dec.receive(channel, data, now_s=0.0)
    dec.finish()
    return dec


def _frames(dec):
    from avfr.receiver import FrameJob

    return [j for j in dec.take_jobs() if isinstance(j, FrameJob)]


def test_in_order_stream(model):
    msgs, _ = _stream(model)
    dec = _run(model, msgs)
    jobs = dec.take_jobs()
    assert type(jobs[0]).__name__ == "SourceJob"
    frames = [j for j in jobs[1:]]
    assert [f.index for f in frames] == list(range(NUM_FRAMES))
    assert dec.stats.lost == 0 and dec.stats.concealed == 0 and dec.stats.dropped_malformed == 0
    assert frames[3].mel.shape == (80, 19) and frames[3].pcm.shape == (640,)
    assert np.abs(frames[5].pcm).max() > 0.01  # decoded speech
    assert frames[1].ts_90k == 3600


def test_reordering_within_depth_changes_nothing(model):
    msgs, _ = _stream(model)
    head, media = msgs[:4], msgs[4:-1]
    swapped = list(media)
    for i in range(0, len(swapped) - 1, 2):
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    a = _frames(_run(model, msgs))
    dec = _run(model, head + swapped + msgs[-1:])
    b = _frames(dec)
    assert dec.stats.lost == 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.kp, y.kp)
        np.testing.assert_array_equal(x.mel, y.mel)


def test_lost_packet_is_concealed_and_a_key_requested(model):
    msgs, session = _stream(model)
    from avfr.proto import peek_type
    from avfr.proto.framing import MessageType

    kp_positions = [i for i, (ch, d) in enumerate(msgs) if ch == M and peek_type(d) != MessageType.AUDIO]
    drop = kp_positions[7]
    dec = _run(model, msgs[:drop] + msgs[drop + 1 :])
    frames = _frames(dec)
    assert [f.index for f in frames] == list(range(NUM_FRAMES))
    assert dec.stats.lost == 1 and dec.stats.concealed >= 2 and dec.stats.dropped_broken >= 1
    np.testing.assert_array_equal(frames[7].kp, frames[6].kp)  # held
    replies = [decode_message(r) for r in dec.take_replies()]
    assert any(isinstance(r, Refresh) and r.want_key for r in replies)


def test_held_frames_count_the_frames_since_the_last_decoded_keypoints(model):
    msgs, _ = _stream(model)
    from avfr.proto import peek_type
    from avfr.proto.framing import MessageType

    kp_positions = [i for i, (ch, d) in enumerate(msgs) if ch == M and peek_type(d) != MessageType.AUDIO]
    drop = {kp_positions[7], kp_positions[8]}
    frames = _frames(_run(model, [m for i, m in enumerate(msgs) if i not in drop]))
    held = [f.held_frames for f in frames]
    assert held[:7] == [0] * 7 and held[7:9] == [1, 2]
    assert held[9] == 0  # decoded again (a delta on a lost reference is concealed, but it is this frame's)
    np.testing.assert_array_equal(frames[8].kp, frames[6].kp)


def test_lost_audio_is_concealed(model):
    msgs, _ = _stream(model)
    from avfr.proto import peek_type
    from avfr.proto.framing import MessageType

    audio = [i for i, (ch, d) in enumerate(msgs) if ch == M and peek_type(d) == MessageType.AUDIO]
    keep = [m for i, m in enumerate(msgs) if i not in set(audio[10:13])]
    dec = _run(model, keep)
    assert dec.stats.audio_concealed == 3
    assert len(_frames(dec)) == NUM_FRAMES


def test_media_before_hello_is_held(model):
    msgs, _ = _stream(model)
    early = [m for m in msgs if m[0] == M][:6]  # the control channel is ordered: only media can overtake
    dec = _run(model, early + [m for m in msgs if all(m is not e for e in early)])
    assert len(_frames(dec)) == NUM_FRAMES and dec.stats.lost == 0


def test_unknown_model_is_refused(model):
    msgs, _ = _stream(model)
    bad = Hello("other-model", "0" * 64)
    dec = _run(model, [(C, encode_hello(bad))] + msgs[1:])
    replies = [decode_message(r) for r in dec.take_replies()]
    assert isinstance(replies[0], Error) and replies[0].code == ErrorCode.UNKNOWN_MODEL
    assert dec.refused and not _frames(dec)


def test_wrong_version_hello_gets_an_error(model):
    msgs, _ = _stream(model)
    wrong = bytes([0x21]) + msgs[0][1][1:]
    dec = _run(model, [(C, wrong)])
    replies = [decode_message(r) for r in dec.take_replies()]
    assert replies[0].code == ErrorCode.UNSUPPORTED_VERSION


def test_duplicate_hello_and_corrupt_packets_are_counted(model):
    msgs, _ = _stream(model)
    junk = [(M, bytes([0x17, 0, 0])), (M, b"\x00" * 9), (M, bytes([0x26]) + b"\x01" * 30), (C, b"\xff")]
    dec = _run(model, msgs[:8] + junk + [msgs[0]] + msgs[8:])
    assert dec.stats.dropped_malformed == len(junk)
    assert dec.stats.duplicate_hellos == 1
    assert len(_frames(dec)) == NUM_FRAMES


def test_random_bytes_never_raise(model):
    msgs, _ = _stream(model, num_frames=8)
    rng = np.random.default_rng(3)
    noisy = list(msgs[:4])
    for channel, data in msgs[4:]:
        noisy.append((channel, data))
        for _ in range(2):
            raw = bytearray(data)
            raw[rng.integers(len(raw))] ^= 1 << int(rng.integers(8))
            noisy.append((channel, bytes(raw)))
        noisy.append((channel, rng.bytes(int(rng.integers(1, 64)))))
    dec = _run(model, noisy)
    assert dec.stats.dropped_malformed > 0


def test_realtime_deadline_declares_loss(model):
    from avfr.receiver import Decoder, DecoderConfig

    msgs, _ = _stream(model)
    dec = Decoder(DecoderConfig(realtime=True), model, render=False)
    for channel, data in msgs[:-12]:
        dec.receive(channel, data, now_s=0.0)
    decided = dec.frames_decided
    dec.tick(now_s=10.0)
    assert dec.frames_decided > decided
    assert dec.stats.delay_ms >= 40.0


def test_causal_window_uses_only_the_past(model):
    from avfr.codec.data import log_mel_window, pcm_window

    msgs, _ = _stream(model, causal=True)
    frames = _frames(_run(model, msgs))
    pcm = np.concatenate([f.pcm for f in frames])
    for f in frames[5:8]:
        np.testing.assert_allclose(f.mel, log_mel_window(pcm_window(pcm, f.index, causal=True)), atol=1e-5)
