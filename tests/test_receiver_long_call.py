"""Long calls through the real Decoder (render=False): frame and audio indexes past the 16-bit seq's half and
full range (32768 and 65536 frames after the start anchor: 21 min 50 s and 43 min 41 s at 25 fps) and the
32-bit ts's half range, offline and in realtime mode.

The media are made to be recognisable: frame n's keypoints spell n (a KEY packet on even frames; on odd frames a
DELTA that adds one level to every y), and the fake Opus decoder turns audio packet a (payload: a) into 320
samples of value a (-1: concealed), so every frame can be checked to carry its own keypoints and speech. The
log-mel of each frame's window is stubbed too (a pure function of the speech checked here; it is most of the
decoder's time per frame), so that 100,000 frames take seconds.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    Audio,
    AudioParams,
    Hello,
    KeypointsDelta,
    KeypointsKey,
    MessageType,
    Session,
    SourceImage,
    encode_audio,
    encode_hello,
    encode_keypoints,
    encode_source_chunk,
    peek_type,
    split_source_image,
)
from avfr.proto.quant import KP_ABS_MAX, dequantise

C, M = CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL
U32 = 1 << 32
SEQ0 = 65000  # the seq also wraps near frame 536, 66072, ...
TS0 = U32 - 3600 * 1000  # the ts wraps at frame 1000
DIGITS = 3  # keypoints 0..2 carry frame n's digits in x
_MEL = np.zeros((80, 19), np.float32)


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


class _TaggedOpus:
    """Stands in for OpusDecoder: packet a (payload: uint32 a) decodes to 320 samples of value a, a lost one
    to -1, silence to -2; no codec delay."""

    def __init__(self, bitrate_bps: int) -> None:
        self._out: list[np.ndarray] = []

    def decode(self, payload: bytes) -> None:
        self._out.append(np.full(320, struct.unpack(">I", payload)[0], np.float32))

    def conceal(self) -> None:
        self._out.append(np.full(320, -1.0, np.float32))

    def silence(self) -> None:
        self._out.append(np.full(320, -2.0, np.float32))

    def take(self) -> np.ndarray:
        out = np.concatenate(self._out) if self._out else np.zeros(0, np.float32)
        self._out = []
        return out


class _Call:
    """The sender's messages of a call with recognisable media (module doc), and what each frame must show."""

    def __init__(self, model) -> None:
        from avfr.codec.runtime import encode_source_image

        self.hello = Hello(model.model_id, model.weights_sha256, audio=AudioParams(bitrate_bps=12_000))
        self.session = Session.from_hello(self.hello)
        self.k, self.bits = self.session.num_kp, self.session.quant.kp_bits
        image = np.zeros((256, 256, 3), np.uint8)
        image[64:192, 64:192] = 200
        self.head = [(C, encode_hello(self.hello))] + [
            (C, encode_source_chunk(c)) for c in split_source_image(SourceImage(1, "webp", encode_source_image(image)))
        ]
        zeros_kp, zeros_jac = np.zeros((self.k, 2), np.int32), np.zeros((self.k, 2, 2), np.int32)
        self._delta = encode_keypoints(KeypointsDelta(1, 0, 0, np.array([0, 1, 0, 0, 0, 0]), zeros_kp, zeros_jac),
                                       self.session)  # the same bytes for every odd frame but the seq

    def levels(self, n: np.ndarray) -> np.ndarray:
        """Keypoint levels (..., K, 2) of frames n (int array)."""
        n = np.asarray(n, np.int64)
        kp_q = np.zeros(n.shape + (self.k, 2), np.int32)
        for d in range(DIGITS):
            kp_q[..., d, 0] = ((n - n % 2) >> (self.bits * d)) % (1 << self.bits) - (1 << (self.bits - 1))
        kp_q[..., 1] = (n % 2)[..., None]
        return kp_q

    def keypoints(self, n: int) -> bytes:
        seq = (SEQ0 + n) & 0xFFFF
        if n % 2:
            return bytes([0x80 | (seq & 0x7F)]) + self._delta[1:]
        packet = KeypointsKey(seq, (TS0 + 3600 * n) % U32, self.levels(n), np.zeros((self.k, 2, 2), np.int32))
        return encode_keypoints(packet, self.session)

    @staticmethod
    def audio(a: int) -> bytes:
        return encode_audio(Audio(a & 0xFFFF, (TS0 + 1800 * a) % U32, struct.pack(">I", a)))

    def frame(self, n: int) -> list[tuple[str, bytes]]:
        """Frame n's media in send order (the start anchor after frame 0's keypoints)."""
        kp = self.keypoints(n)
        return [(M, kp)] + [(C, kp)] * (n == 0) + [(M, self.audio(a)) for a in (2 * n, 2 * n + 1)]

    def check(self, jobs, lost_kp=frozenset(), lost_audio=frozenset()) -> None:
        """Each frame job shows its own keypoints and speech (held ones / concealment where they were lost)."""
        n = np.array([j.index for j in jobs], np.int64)
        assert np.array_equal([j.ts_90k for j in jobs], (TS0 + 3600 * n) % U32)
        lost = np.isin(n, list(lost_kp))
        own = np.where(lost, n - 1, n)  # a lost (odd) frame holds the KEY frame before it
        expected = dequantise(self.levels(own), self.bits, KP_ABS_MAX)
        np.testing.assert_array_equal(np.stack([j.kp for j in jobs]), expected)
        assert np.array_equal([(j.concealed, j.held_frames) for j in jobs], np.stack([lost, lost], axis=1))
        a = np.stack([2 * n, 2 * n + 1], axis=1)  # (B, 2) the packets of each frame's own 40 ms
        audio = np.where(np.isin(a, list(lost_audio)), -1.0, a)
        np.testing.assert_array_equal(np.stack([j.pcm for j in jobs]), np.repeat(audio, 320, axis=1))


def _decoder(model, monkeypatch, **config):
    import avfr.receiver.decoder as decoder_module
    import avfr.receiver.speech as speech_module
    from avfr.receiver import Decoder, DecoderConfig

    monkeypatch.setattr(decoder_module, "OpusDecoder", _TaggedOpus)
    monkeypatch.setattr(speech_module, "log_mel_window", lambda window: _MEL)
    return Decoder(DecoderConfig(**config), model, render=False)


def _take(dec, call: _Call, decided: list[int], **lost) -> int:
    """Check the frame jobs queued so far; returns the key requests among the replies."""
    from avfr.receiver import FrameJob

    jobs = [job for job in dec.take_jobs() if isinstance(job, FrameJob)]
    if jobs:
        call.check(jobs, **lost)
        decided.extend(job.index for job in jobs)
    return sum(peek_type(r) == MessageType.REFRESH for r in dec.take_replies())


@pytest.mark.slow
def test_offline_call_past_both_seq_marks_keeps_every_frame_its_own(model, monkeypatch):
    """70,001 frames (46 min 40 s) in order: every one decided with its own keypoints and speech."""
    frames = 70_001  # the last (even) frame is a KEY packet: the end anchor
    call = _Call(model)
    dec = _decoder(model, monkeypatch)
    decided: list[int] = []
    refreshes = 0
    for channel, data in call.head:
        dec.receive(channel, data, now_s=0.0)
    for n in range(frames):
        for channel, data in call.frame(n):
            dec.receive(channel, data, now_s=0.0)
        if n % 500 == 0 or n == frames - 1:
            refreshes += _take(dec, call, decided)
    dec.receive(C, call.keypoints(frames - 1), now_s=0.0)  # end anchor
    dec.finish()
    refreshes += _take(dec, call, decided)
    assert decided == list(range(frames)) and dec.finished
    s = dec.stats
    assert (s.lost, s.concealed, s.dropped_late, s.dropped_malformed, s.dropped_broken, s.audio_concealed) == (0,) * 6
    assert s.audio_received == 2 * frames and refreshes == 0


@pytest.mark.slow
def test_realtime_call_across_the_seq_half_range_with_jitter_and_loss(model, monkeypatch):
    """Realtime, 25 fps on the clock: in order up to frame 32700, then 30 ms of jitter and some loss around
    frame 32768 (the seq 32768 frames after the start anchor): the losses are concealed, every other frame
    is its own, nothing comes late."""
    frames, window = 32_851, range(32_700, 32_850)
    call = _Call(model)
    dec = _decoder(model, monkeypatch, realtime=True)
    rng = np.random.default_rng(7)
    lost_kp = {n for n in window if n % 2 and (rng.random() < 0.15 or n in (32_767, 32_769))}
    lost_audio = {a for a in range(2 * window.start, 2 * window.stop) if rng.random() < 0.05} | {65_536}
    decided: list[int] = []
    for channel, data in call.head:
        dec.receive(channel, data, now_s=0.0)
    for n in range(window.start):
        for channel, data in call.frame(n):
            dec.receive(channel, data, now_s=0.04 * n)
        if n % 500 == 0:
            _take(dec, call, decided)
    events = []  # (arrival s, order, message or None: a tick)
    for n in range(window.start, frames):
        kp = [] if n in lost_kp else [(M, call.keypoints(n))]
        audio = [(M, call.audio(a)) for a in (2 * n, 2 * n + 1) if a not in lost_audio]
        for msg in kp + audio:
            events.append((0.04 * n + (rng.uniform(0.0, 0.03) if n in window else 0.0), len(events), msg))
    t0, t1 = 0.04 * window.start, 0.04 * frames
    events += [(t, len(events) + i, None) for i, t in enumerate(np.arange(t0, t1, 0.01))]
    for t, _, msg in sorted(events):
        if msg is None:
            dec.tick(now_s=t)
        else:
            dec.receive(*msg, now_s=t)
    dec.receive(C, call.keypoints(frames - 1), now_s=t1 + 0.5)  # end anchor
    dec.finish()
    _take(dec, call, decided, lost_kp=lost_kp, lost_audio=lost_audio)
    assert decided == list(range(frames)) and dec.finished
    s = dec.stats
    assert (s.lost, s.audio_concealed) == (len(lost_kp), len(lost_audio))
    assert (s.dropped_late, s.late_frames, s.dropped_malformed, s.dropped_broken) == (0, 0, 0, 0)


def test_jitter_buffer_past_the_ts_half_range():
    """2**31 ticks (6 h 37 min) after the start anchor: keypoints and audio still land on their own indexes (a
    buffer fast-forwarded there: the frames before are decided and gone)."""
    from avfr.receiver.config import DecoderConfig, DecoderStats
    from avfr.receiver.playout import AudioGap, JitterBuffer, needed_samples

    session = Session()
    start = 600_000  # 600000 * 3600 > 2**31 ticks; the seq wrapped 9 times
    buf = JitterBuffer(DecoderConfig(), DecoderStats())
    buf.start(SEQ0, TS0, session)
    buf.next_frame, buf._audio_next = start, 2 * start  # fast-forward (private: no public way to get there)
    blank = np.zeros((session.num_kp, 2), np.int32), np.zeros((session.num_kp, 2, 2), np.int32)
    for n in range(start, start + 10):
        key = KeypointsKey((SEQ0 + n) & 0xFFFF, (TS0 + 3600 * n) % U32, *blank)
        assert buf.put_keypoints(key, 0.0) == n
        for a in (2 * n, 2 * n + 1):
            assert buf.put_audio(Audio(a & 0xFFFF, (TS0 + 1800 * a) % U32, struct.pack(">I", a)), 0.0)
    buf.end_at((SEQ0 + start + 9) & 0xFFFF)
    for n in range(start, start + 10):
        due = buf.due(0.0)
        assert (due.index, due.have_kp) == (n, True)
        assert buf.pop_keypoints(n).seq == (SEQ0 + n) & 0xFFFF
        while 320 * buf._audio_next < needed_samples(n, False):
            payload = buf.next_audio(due.ended)
            assert payload is AudioGap.PAST_END or struct.unpack(">I", payload)[0] == buf._audio_next - 1
        buf.decided(n)
        assert buf.ts_90k(n) == (TS0 + 3600 * n) % U32
    assert buf.ended
