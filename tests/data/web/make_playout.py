"""Fixture of the browser receiver's playout test (web/test/decoder.test.mjs), made by the Python reference.

Writes ``playout_grid_lwbsza.json`` next to this script: the real Python ``avfr.receiver.Decoder``
(``render=False``: jitter buffer, keypoint stream, Opus, no generator) fed the recorded call of
``stream_grid_lwbsza.json`` (``make_stream.py``; copied into ``messages``, so this fixture stands alone) on a
few deterministic arrival schedules, and what it decided:

- ``schedules[].events``: what the decoder got, in order: ``["recv", message, now_s]`` (``message``: an index
  into ``messages``, or ``{"channel", "data"}`` (base64) for one made here: a corrupt or forged
  packet), ``["tick", now_s]``, ``["finish"]``;
- ``schedules[].frames``: one entry per decided frame (FrameJob), in order: the event that decided it, index,
  ts_90k, concealed, held_frames, whether it has keypoints, and the sum of |kp| (to 1e-4);
- ``schedules[].sources``: the event that completed each source image (SourceJob) and its id;
- ``schedules[].replies``: every reply (REFRESH / STATS / ERROR) as hex, with the event after which it was
  queued;
- ``refusals``: Hellos (and a few other first messages) a receiver refuses, with Python's reply bytes;
- ``schedules[].audio``: the Opus decoder's calls in order, one letter each (D: decode, C: conceal,
  S: silence), and ``schedules[].stats``: the final counters.

Schedules: ``offline`` (loss, reordering, duplicates, a late packet and junk, no clock), ``early_media``
(media before the Hello, stats every 10 frames, reorder depth 2), ``realtime`` (jitter, 10 % loss, a 0.5 s
stall, a forged seq 150 frames ahead; ticks every 10 ms). The JS decoder given the same events must make the
same decisions.

Run from the repository root (the ``avfr`` package, with its venv)::

    python tests/data/web/make_playout.py
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    WIRE_VERSION,
    Session,
    decode_hello,
    decode_keypoints,
    encode_hello,
    encode_keypoints,
    peek_type,
)
from avfr.proto.framing import COMPACT_DELTA_BIT, MessageType

HERE = Path(__file__).resolve().parent
STREAM = HERE / "stream_grid_lwbsza.json"
OUT = HERE / "playout_grid_lwbsza.json"
C, M = CONTROL_CHANNEL_LABEL, MEDIA_CHANNEL_LABEL
TICK_S = 0.01


def _load() -> tuple[dict, list[tuple[str, bytes]]]:
    stream = json.loads(STREAM.read_text())
    return stream, [(m["channel"], base64.b64decode(m["data"])) for m in stream["messages"]]


def _frames_of(msgs: list[tuple[str, bytes]]) -> list[int]:
    """Per message, the media frame it belongs to in send order (-1 before the first keypoint packet)."""
    out, frame = [], -1
    for channel, data in msgs:
        frame += channel == M and peek_type(data) != MessageType.AUDIO
        out.append(frame)
    return out


def _is_media(msg: tuple[str, bytes]) -> bool:
    return msg[0] == M


def _offline(msgs):
    """No clock: every 11th media message lost, neighbours swapped, duplicates, one packet 8 frames late, junk."""
    media = [i for i, m in enumerate(msgs) if _is_media(m)]
    lost = set(media[5::11])
    order = [i for i in range(len(msgs) - 1) if i not in lost]  # the end anchor goes last
    for k in range(20, len(order) - 2, 9):
        if _is_media(msgs[order[k]]) and _is_media(msgs[order[k + 1]]):
            order[k], order[k + 1] = order[k + 1], order[k]
    late = next(i for i in media[60:] if i in order)
    order.remove(late)
    order.insert(order.index(next(i for i in media[84:] if i in order)), late)
    events: list[list] = []
    for n, i in enumerate(order):
        events.append(["recv", i, 0.0])
        if n % 17 == 3 and _is_media(msgs[i]):
            events.append(["recv", i, 0.0])  # duplicate
        if n == 40:
            events.append(["recv", {"channel": M, "data": _b64(bytes([COMPACT_DELTA_BIT]))}, 0.0])  # no payload
            events.append(["recv", {"channel": M, "data": _b64(b"\x00" * 9)}, 0.0])
    events.append(["recv", len(msgs) - 1, 0.0])
    events.append(["finish"])
    return {}, events


def _early_media(msgs):
    """Six media messages before the Hello; stats every 10 frames; reorder depth 2; a few losses."""
    media = [i for i, m in enumerate(msgs) if _is_media(m)]
    early = media[:6]
    lost = {media[30], media[31], media[100]}
    order = early + [i for i in range(len(msgs)) if i not in early and i not in lost]
    events = [["recv", i, 0.0] for i in order] + [["finish"]]
    return {"stats_interval_frames": 10, "reorder_frames": 2}, events


def _forged(msgs, session: Session, frames_ahead: int) -> bytes:
    """The first media KEY packet with its seq moved `frames_ahead` frames later (a corrupt but valid packet)."""
    data = next(d for ch, d in msgs if ch == M and peek_type(d) == MessageType.KEYPOINTS_KEY)
    packet = decode_keypoints(data, session)
    forged = type(packet)(**{**packet.__dict__, "seq": (packet.seq + frames_ahead) & 0xFFFF})
    return encode_keypoints(forged, session)


def _realtime(msgs, session: Session):
    """25 fps sender, up to 100 ms jitter, 10 % media loss, frames 40-44 stalled 0.5 s, one forged packet."""
    rng = np.random.default_rng(7)
    frame = np.maximum(np.array(_frames_of(msgs)), 0)
    media = np.array([_is_media(m) for m in msgs])
    send = 0.04 * frame + media * rng.uniform(0.0, 0.1, len(msgs))
    send = np.where((frame >= 40) & (frame <= 44) & media, send + 0.5, send)
    drop = {int(i) for i in np.flatnonzero(media) if rng.random() < 0.1}
    end_s = 0.04 * int(frame.max()) + 0.6
    arrivals = sorted([(round(float(t), 6), i) for i, t in enumerate(send[:-1]) if i not in drop])
    arrivals.append((round(end_s, 6), len(msgs) - 1))
    forged_at = next(n for n, (_, i) in enumerate(arrivals) if frame[i] == 12 and media[i])
    forged = {"channel": M, "data": _b64(_forged(msgs, session, 150))}
    events: list[list] = []
    now = 0.0
    for n, (t, i) in enumerate(arrivals):
        while now + TICK_S < t:
            now = round(now + TICK_S, 6)
            events.append(["tick", now])
        events.append(["recv", i, t])
        if n == forged_at:
            events.append(["recv", forged, round(t + 0.001, 6)])
    events.append(["tick", round(now + 1.0, 6)])
    events.append(["finish"])
    return {"realtime": True}, events


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Recorder:
    """Wraps the decoder's OpusDecoder to write down its calls (D / C / S)."""

    def __init__(self, opus, log: list[str]) -> None:
        self._opus, self._log = opus, log

    def decode(self, payload: bytes) -> None:
        self._log.append("D")
        self._opus.decode(payload)

    def conceal(self) -> None:
        self._log.append("C")
        self._opus.conceal()

    def silence(self) -> None:
        self._log.append("S")
        self._opus.silence()

    def take(self):
        return self._opus.take()


def _run(model, msgs, config: dict, events: list[list]) -> dict:
    import avfr.receiver.decoder as decoder_module
    from avfr.receiver import Decoder, DecoderConfig

    frames, sources, replies, audio = [], [], [], []
    real_opus = decoder_module.OpusDecoder
    decoder_module.OpusDecoder = lambda bitrate_bps: _Recorder(real_opus(bitrate_bps), audio)
    try:
        dec = Decoder(DecoderConfig(**config), model, render=False)
        _feed(dec, msgs, events, frames, sources, replies)
    finally:
        decoder_module.OpusDecoder = real_opus
    return _summary(dec, frames, sources, replies, audio)


def _feed(dec, msgs, events, frames, sources, replies) -> None:
    from avfr.receiver import FrameJob, SourceJob

    for n, event in enumerate(events):
        if event[0] == "recv":
            ref = event[1]
            channel, data = msgs[ref] if isinstance(ref, int) else (ref["channel"], base64.b64decode(ref["data"]))
            dec.receive(channel, data, now_s=event[2])
        elif event[0] == "tick":
            dec.tick(now_s=event[1])
        else:
            dec.finish()
        for job in dec.take_jobs():
            if isinstance(job, SourceJob):
                sources.append({"event": n, "imageId": job.image_id})
            elif isinstance(job, FrameJob):
                frames.append({"event": n, "index": job.index, "ts90k": job.ts_90k, "concealed": job.concealed,
                               "heldFrames": job.held_frames, "hasKp": job.kp is not None,
                               "kpAbsSum": None if job.kp is None else round(float(np.abs(job.kp).sum()), 4)})
        replies.extend({"event": n, "hex": r.hex()} for r in dec.take_replies())


def _summary(dec, frames, sources, replies, audio) -> dict:
    s = dec.stats
    stats = {name: getattr(s, name) for name in (
        "received", "dropped_malformed", "dropped_late", "dropped_broken", "concealed", "audio_received",
        "audio_concealed", "lost", "late_frames", "duplicates", "duplicate_hellos", "refused_messages",
        "keypoint_bytes", "audio_bytes", "source_bytes", "sources", "key_requests", "frames_decided")}
    stats["jitter_ms"], stats["delay_ms"] = round(s.jitter_ms, 9), round(s.delay_ms, 9)
    assert all(math.isfinite(v) for v in stats.values())
    return {"frames": frames, "sources": sources, "replies": replies, "audio": "".join(audio),
            "stats": {_camel(k): v for k, v in stats.items()}, "finished": dec.finished}


def _refusals(model, msgs) -> list[dict]:
    """A decoder's first messages that are refused, and Python's reply (ERROR) and counters."""
    from avfr.receiver import Decoder

    hello = decode_hello(msgs[0][1])
    audio = hello.audio
    bad = [
        replace(hello, model_id="other-model"),
        replace(hello, weights_sha256="0" * 64),
        replace(hello, num_kp=12),
        replace(hello, fps=30),
        replace(hello, audio=replace(audio, sample_rate_hz=48_000)),
        replace(hello, audio=replace(audio, frame_ms=10)),
        replace(hello, audio=replace(audio, bitrate_bps=200_000)),
        replace(hello, audio=replace(audio, codec="flac")),
    ]
    cases = [[(C, encode_hello(h))] for h in bad]
    cases.append([(C, bytes([(WIRE_VERSION + 1) << 4 | 1]) + msgs[0][1][1:])])  # another wire version
    cases.append([(C, bytes([(WIRE_VERSION - 1) << 4 | 1]) + msgs[0][1][1:])])  # the previous one
    anchor = next(d for ch, d in msgs if ch == C and peek_type(d) == MessageType.KEYPOINTS_KEY)
    cases.append([(C, anchor), msgs[0]])  # keypoints before the Hello, then a good Hello
    # a truncated Hello (the reply's text is msgpack's own: code only)
    cases.append([(C, bytes([WIRE_VERSION << 4 | 1, 0x93]))])
    out = []
    for n, case in enumerate(cases):
        dec = Decoder(model=model, render=False)
        for channel, data in case:
            dec.receive(channel, data, now_s=0.0)
        dec.receive(M, msgs[5][1], now_s=0.0)  # ignored once refused, held otherwise
        out.append({"exactText": n < len(cases) - 1, "messages": [{"channel": ch, "data": _b64(d)} for ch, d in case],
                    "replies": [r.hex() for r in dec.take_replies()], "refused": dec.refused,
                    "droppedMalformed": dec.stats.dropped_malformed, "refusedMessages": dec.stats.refused_messages})
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def main() -> None:
    from avfr.codec.runtime import load_call_model

    model = load_call_model()
    stream, msgs = _load()
    session = Session.from_hello(decode_hello(msgs[0][1]))
    out = {"about": {"stream": STREAM.name, "made_by": "tests/data/web/make_playout.py", "tick_s": TICK_S,
                     "frames": stream["about"]["frames"]},
           "messages": stream["messages"],
           "capabilities": {"modelId": model.model_id, "weightsSha256": model.weights_sha256,
                            "numKp": model.manifest.num_kp},
           "refusals": _refusals(model, msgs), "schedules": []}
    for name, (config, events) in (("offline", _offline(msgs)), ("early_media", _early_media(msgs)),
                                   ("realtime", _realtime(msgs, session))):
        result = _run(model, msgs, config, events)
        out["schedules"].append({"name": name, "config": {_camel(k): v for k, v in config.items()},
                                 "events": events, **result})
        s = result["stats"]
        print(f"{name}: {len(events)} events, {len(result['frames'])} frames, lost {s['lost']}, "
              f"concealed {s['concealed']}, audio concealed {s['audioConcealed']}, late {s['droppedLate']}, "
              f"replies {len(result['replies'])}")
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
