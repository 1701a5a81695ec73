"""A receiver never waits forever for a sender that stopped (`avfr.receiver.liveness`), and its counters keep
network loss, lateness and skipped renders apart (Decoder with render=False; the messages of a real stream)."""

from __future__ import annotations

import pytest
from test_receiver_decoder import NUM_FRAMES, M, _media_frame, _stream

from avfr.proto import peek_type
from avfr.proto.framing import MessageType


@pytest.fixture(scope="module")
def model():
    from avfr.codec.runtime import load_call_model

    return load_call_model()


def _decoder(model, **config):
    from avfr.receiver import Decoder, DecoderConfig

    return Decoder(DecoderConfig(**config), model, render=False)


def _no_source(msgs):
    return [(ch, d) for ch, d in msgs if peek_type(d) != MessageType.SOURCE_CHUNK]


@pytest.mark.parametrize("realtime", [False, True])
def test_no_source_image_times_out(model, realtime):
    from avfr.receiver import CallTimeoutError

    msgs, _ = _stream(model)
    dec = _decoder(model, realtime=realtime, source_timeout_s=3.0, silence_timeout_s=0.0)
    for i, (channel, data) in enumerate(_no_source(msgs)[:-1]):  # all but the end anchor, one every 40 ms
        dec.receive(channel, data, now_s=0.01 * i)
    assert dec.frames_decided == 0  # nothing can be drawn without a source image
    dec.check_alive(now_s=2.9)
    with pytest.raises(CallTimeoutError, match="no source image within 3 s"):
        dec.check_alive(now_s=3.1)
    dec = _decoder(model, realtime=realtime, source_timeout_s=0.0, silence_timeout_s=0.0)
    for channel, data in _no_source(msgs):
        dec.receive(channel, data, now_s=0.0)
    dec.check_alive(now_s=1e6)  # turned off
    dec.finish()  # the sender hung up: this call can never show a frame
    with pytest.raises(CallTimeoutError, match="ended before the sender sent a source image"):
        dec.check_alive(now_s=1e6)


@pytest.mark.parametrize("realtime", [False, True])
def test_a_sender_that_falls_silent_times_out(model, realtime):
    from avfr.receiver import CallTimeoutError

    msgs, _ = _stream(model)
    dec = _decoder(model, realtime=realtime, silence_timeout_s=2.0)
    dec.connected(now_s=0.0)
    dec.check_alive(now_s=1.9)
    with pytest.raises(CallTimeoutError, match="silent"):
        dec.check_alive(now_s=2.0)  # the call is up, but no Hello ever came
    frame = _media_frame(msgs)
    dec = _decoder(model, realtime=realtime, silence_timeout_s=2.0)
    dec.connected(now_s=0.0)
    for i, (channel, data) in enumerate(msgs):
        if frame[i] < 10:  # the sender stops after frame 9 and keeps the call open
            dec.receive(channel, data, now_s=0.04 * max(frame[i], 0))
            dec.tick(now_s=0.04 * max(frame[i], 0))
    dec.tick(now_s=5.0)
    assert 0 < dec.frames_decided < 10 and not dec.finished  # playout waits for the late sender...
    dec.check_alive(now_s=0.36 + 1.9)
    with pytest.raises(CallTimeoutError, match=r"no message for 2\.\d s \(silence timeout 2 s\)"):
        dec.check_alive(now_s=0.36 + 2.1)  # ... so only the silence clock ends the call
    done = _decoder(model, realtime=realtime, silence_timeout_s=2.0)
    for channel, data in msgs:
        done.receive(channel, data, now_s=0.0)
    done.tick(now_s=3.0)
    assert done.finished
    done.check_alive(now_s=1e6)  # a call that ended is not silent


def test_default_timeouts():
    from avfr.receiver import DecoderConfig

    config = DecoderConfig()
    assert config.source_timeout_s == 10.0 and config.silence_timeout_s == 10.0


def test_reordered_packet_counts_as_late_not_lost(model):
    """Arrival order: frame 5's keypoint packet overtaken by 4 newer frames is concealed, then arrives: late."""
    msgs, _ = _stream(model)
    frame = _media_frame(msgs)
    kp5 = next(i for i, (ch, d) in enumerate(msgs) if ch == M and frame[i] == 5 and peek_type(d) != MessageType.AUDIO)
    order = [i for i in range(len(msgs)) if i != kp5]
    order.insert(next(j for j, i in enumerate(order) if frame[i] == 10), kp5)  # after frame 9's packets
    dec = _decoder(model)
    for i in order:
        dec.receive(*msgs[i], now_s=0.0)
    dec.finish()
    s = dec.stats
    assert dec.frames_decided == NUM_FRAMES
    assert s.lost == 0 and s.late_frames == 1 and s.dropped_late == 1 and s.concealed >= 1


def test_realtime_late_and_lost_apart(model):
    """Realtime: a packet past its deadline is concealed; it counts lost until it arrives, then late."""
    msgs, _ = _stream(model)
    frame = _media_frame(msgs)
    kp = [i for i, (ch, d) in enumerate(msgs) if ch == M and peek_type(d) != MessageType.AUDIO]
    late, gone = kp[10], kp[12]
    dec = _decoder(model, realtime=True)
    for i, (channel, data) in enumerate(msgs):
        if frame[i] <= 14 and i not in (late, gone):
            dec.receive(channel, data, now_s=0.0)
    dec.tick(now_s=10.0)
    assert dec.frames_decided >= 13 and dec.stats.lost == 2 and dec.stats.late_frames == 0
    dec.receive(*msgs[late], now_s=10.0)
    assert dec.stats.lost == 1 and dec.stats.late_frames == 1 and dec.stats.dropped_late == 1


def test_stats_line_keeps_loss_lateness_and_skips_apart():
    from avfr.benchmarks import stats_line
    from avfr.receiver import DecoderStats
    from avfr.sender.track import SenderLinkStats

    stats = DecoderStats(frames_out=40, frames_decided=50, lost=2, late_frames=3, dropped_late=7,
                         render_skipped=10, concealed=5, delay_ms=80.0)
    link = SenderLinkStats(capture_s={49: 1.0})
    line = stats_line(None, stats, link, {49: 1.25}, 2.0, realtime=True)
    assert "latency 250 ms" in line and "delay 80 ms" in line
    assert "lost 2 late 3" in line and "skipped 10" in line and "late packets 7" in line
    offline = stats_line(None, stats, link, {49: 21.0}, 2.0, realtime=False)
    assert "latency" not in offline and "delay" not in offline and "arrival order" in offline
    assert "lost 2 late 3" in offline
