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


def _stream(model, num_frames: int = NUM_FRAMES, causal: bool = False, seed: int = 0, speech=None):
    """Sender-order messages of a synthetic call: Hello, source, start anchor, then per frame kp + 2 audio.

    speech: float32 (num_frames * 640,) 16 kHz to send (default: noise at 0.1 rms).
    """
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
        pcm = (0.1 * rng.standard_normal(640)).astype(np.float32)
        for payload in opus.encode(pcm if speech is None else speech[640 * i : 640 * (i + 1)]):
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
    wrong = bytes([0x31]) + msgs[0][1][1:]
    dec = _run(model, [(C, wrong)])
    replies = [decode_message(r) for r in dec.take_replies()]
    assert replies[0].code == ErrorCode.UNSUPPORTED_VERSION


def test_duplicate_hello_and_corrupt_packets_are_counted(model):
    msgs, _ = _stream(model)
    junk = [(M, bytes([0x80])), (M, b"\x00" * 9), (M, bytes([0x26]) + b"\x01" * 30), (C, b"\xff")]
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


def _media_frame(msgs) -> list[int]:
    """For each message, the frame it belongs to in sender order (-1: before the first keypoint packet)."""
    from avfr.proto import peek_type
    from avfr.proto.framing import MessageType

    out, frame = [], -1
    for channel, data in msgs:
        frame += channel == M and peek_type(data) != MessageType.AUDIO
        out.append(frame)
    return out


def _realtime_call(model, msgs, send_s, end_s: float, drop=frozenset(), tick_s: float = 0.01):
    """A realtime Decoder fed message i at send_s[i] (s), the last one (the end anchor) at end_s, and
    ticked every tick_s like ReceivingPeer does; the messages numbered in `drop` never arrive."""
    from avfr.receiver import Decoder, DecoderConfig

    dec = Decoder(DecoderConfig(realtime=True), model, render=False)
    events = sorted([(t, i) for i, t in enumerate(send_s[:-1]) if i not in drop] + [(end_s, len(msgs) - 1)])
    now = 0.0
    for t, i in events:
        while now + tick_s < t:
            now += tick_s
            dec.tick(now_s=now)
        dec.receive(*msgs[i], now_s=t)
    return dec


def test_realtime_deadline_declares_loss(model):
    from avfr.receiver import Decoder, DecoderConfig

    msgs, _ = _stream(model, causal=True)  # a frame needs its own audio only
    frame = _media_frame(msgs)
    tenth = [i for i, f in enumerate(frame) if f == 10 and msgs[i][0] == M]
    gone = {tenth[0], tenth[-1]}  # frame 10's keypoint packet and its second audio packet
    dec = Decoder(DecoderConfig(realtime=True), model, render=False)
    for i, (channel, data) in enumerate(msgs):
        if frame[i] <= 11 and i not in gone:  # frame 11 is newer, but reordering could still fill frame 10
            dec.receive(channel, data, now_s=0.0)
    assert dec.frames_decided == 10
    dec.tick(now_s=10.0)  # frame 10's deadline passed and newer media came: lost, concealed
    assert dec.frames_decided == 11  # frame 11 waits for audio the sender has not sent yet
    assert dec.stats.lost == 1 and dec.stats.audio_concealed == 1
    assert dec.stats.delay_ms >= 40.0


def test_realtime_playout_waits_for_a_sender_that_runs_late(model):
    """Media the sender has not sent yet is not lost: no frame past the end, no speech concealed."""
    msgs, _ = _stream(model)
    frame = np.maximum(np.array(_media_frame(msgs)), 0)
    stalled = np.where(frame < 10, 0.04 * frame, 0.04 * frame + 2.0)  # frames 10.. come 2 s late
    dec = _realtime_call(model, msgs, stalled, end_s=stalled[-2] + 0.5)
    assert dec.frames_decided == NUM_FRAMES
    assert dec.stats.lost == 0 and dec.stats.audio_concealed == 0 and dec.stats.dropped_late == 0
    slow = 0.08 * frame  # a sender at half speed (heavy CPU load)
    dec = _realtime_call(model, msgs, slow, end_s=slow[-2] + 0.5)
    assert dec.frames_decided == NUM_FRAMES
    assert dec.stats.lost == 0 and dec.stats.audio_concealed == 0 and dec.stats.dropped_late == 0


def test_realtime_output_length_under_loss_and_jitter(model):
    """30 % loss, up to 100 ms jitter, an end anchor 0.6 s after the last frame: the losses are declared at
    their deadlines, and exactly the frames sent come out."""
    msgs, _ = _stream(model, num_frames=40)
    rng = np.random.default_rng(5)
    frame = np.maximum(np.array(_media_frame(msgs)), 0)
    media = np.array([channel == M for channel, _ in msgs])
    send_s = 0.04 * frame + media * rng.uniform(0.0, 0.1, len(msgs))
    drop = {int(i) for i in np.flatnonzero(media) if rng.random() < 0.3}
    dec = _realtime_call(model, msgs, send_s, end_s=0.04 * 39 + 0.6, drop=drop)
    assert dec.frames_decided == 40 and dec.finished
    assert dec.stats.lost > 0 and dec.stats.audio_concealed > 0


def test_speech_keeps_its_level_unclipped(model):
    """A 440 Hz tone peaking at 0.9 comes out at the sent level (within 0.5 dB) and below full scale."""
    n = 50
    t = np.arange(640 * n) / 16000
    ramp = np.clip(np.minimum(t, t[-1] - t) / 0.1, 0.0, 1.0)  # 100 ms fades
    tone = (0.9 * ramp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    msgs, _ = _stream(model, num_frames=n, speech=tone)
    pcm = np.concatenate([f.pcm for f in _frames(_run(model, msgs))])
    assert len(pcm) == len(tone)
    steady = slice(3200, len(tone) - 3200)

    def rms(x):
        return np.sqrt(np.mean(x[steady].astype(np.float64) ** 2))

    assert abs(20 * np.log10(rms(pcm) / rms(tone))) < 0.5
    assert np.abs(pcm).max() < 1.0


def test_causal_window_uses_only_the_past(model):
    from avfr.codec.data import log_mel_window, pcm_window

    msgs, _ = _stream(model, causal=True)
    frames = _frames(_run(model, msgs))
    pcm = np.concatenate([f.pcm for f in frames])
    for f in frames[5:8]:
        np.testing.assert_allclose(f.mel, log_mel_window(pcm_window(pcm, f.index, causal=True)), atol=1e-5)


def _forged_ahead(model, data: bytes, session, min_ahead: int) -> bytes:
    """`data` (a real KEY packet) with one bit flipped so that its seq is `min_ahead`..200 frames later."""
    from avfr.proto import ProtocolError, decode_keypoints, seq_diff

    seq = decode_keypoints(data, session).seq
    for bit in range(8 * len(data)):
        forged = bytearray(data)
        forged[bit // 8] ^= 1 << (bit % 8)
        try:
            ahead = seq_diff(decode_keypoints(bytes(forged), session).seq, seq)
        except ProtocolError:
            continue
        if min_ahead <= ahead <= 200:
            return bytes(forged)
    raise AssertionError("no bit flip moves the seq far enough ahead")


def test_realtime_one_forged_packet_far_ahead_moves_nothing(model):
    """A corrupted seq 100+ frames ahead neither moves the playout clock nor declares media lost: exactly the
    frames sent come out, nothing is lost or concealed, and no receive decides a burst of frames."""
    from avfr.receiver import Decoder, DecoderConfig

    msgs, session = _stream(model, num_frames=60)
    frame = np.maximum(np.array(_media_frame(msgs)), 0)
    send_s = 0.04 * frame + 0.01 * (np.arange(len(msgs)) % 3)  # a little jitter
    tenth = next(i for i, f in enumerate(frame) if f == 10 and msgs[i][0] == M)
    key = next(data for (channel, data), f in zip(msgs, frame, strict=True)
               if f == 0 and channel == M and data[0] < 0x80)
    forged = _forged_ahead(model, key, session, min_ahead=110)  # a DELTA's 7 seq bits reach 63 frames at most
    events = sorted([(t, i) for i, t in enumerate(send_s[:-1])] + [(0.04 * 59 + 0.6, len(msgs) - 1)])
    events.insert(events.index((send_s[tenth], tenth)) + 1, (send_s[tenth] + 0.001, -1))
    dec = Decoder(DecoderConfig(realtime=True), model, render=False)
    now, most = 0.0, 0
    for t, i in events:
        while now + 0.01 < t:
            now += 0.01
            dec.tick(now_s=now)
        before = dec.frames_decided
        dec.receive(*(msgs[i] if i >= 0 else (M, forged)), now_s=t)
        most = max(most, dec.frames_decided - before)
    dec.tick(now_s=now + 1.0)
    assert abs(dec.frames_decided - 60) <= 2 and dec.finished
    assert dec.stats.lost == 0 and dec.stats.audio_concealed == 0 and dec.stats.dropped_late == 0
    assert most <= 3


def test_realtime_backlog_flushed_then_realtime_is_followed(model):
    """A sender that starts 1 s late, catches up at double speed (transit falls 1 s) and then runs in real
    time: nothing lost, late or concealed, every frame out."""
    msgs, _ = _stream(model, num_frames=60)
    frame = np.maximum(np.array(_media_frame(msgs)), 0)
    send_s = np.maximum(1.0 + 0.02 * frame, 0.04 * frame + 0.02)
    dec = _realtime_call(model, msgs, send_s, end_s=0.04 * 59 + 0.6)
    assert dec.frames_decided == 60 and dec.finished
    assert dec.stats.lost == 0 and dec.stats.audio_concealed == 0 and dec.stats.dropped_late == 0


def test_a_delta_leaving_its_level_range_asks_for_a_key_at_once(model):
    """The frame is dropped (malformed) and concealed, and REFRESH(want_key) goes back when that frame is
    decided, not one frame later when the next delta misses its reference."""
    from avfr.proto import KeypointsDelta, decode_keypoints, encode_keypoints, peek_type
    from avfr.proto.framing import MessageType
    from avfr.receiver import Decoder, DecoderConfig

    msgs, session = _stream(model, causal=True)  # a frame is decided on its own audio: one at a time
    frame = _media_frame(msgs)
    at = next(i for i, (ch, d) in enumerate(msgs) if frame[i] == 5 and ch == M and peek_type(d) != MessageType.AUDIO)
    seq = decode_keypoints(msgs[at][1], session).seq
    zeros = np.zeros((10, 2), int), np.zeros((10, 2, 2), int)
    out = KeypointsDelta(seq, (seq - 1) & 0xFFFF, 0, np.array([63, 0, 0, 0, 0, 0]), *zeros)  # x + 63 > 31
    msgs[at] = (M, encode_keypoints(out, session))
    dec = Decoder(DecoderConfig(), model, render=False)
    asked_at = []
    for channel, data in msgs:
        dec.receive(channel, data, now_s=0.0)
        if any(isinstance(r, Refresh) and r.want_key for r in map(decode_message, dec.take_replies())):
            asked_at.append(dec.frames_decided)
    assert asked_at[0] == 6  # right after frame 5
    assert dec.stats.dropped_malformed == 1 and dec.stats.concealed >= 1
