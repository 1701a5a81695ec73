"""Fuzz the wire parsers and the receiving Decoder with random bytes and damaged, reordered real messages.

The seed corpus is a real call: the Encoder's messages for the first ``--frames`` frames of a dev clip (Hello,
WebP source chunks, KEY/DELTA packets, start/end anchors, Opus packets), plus an Error, a Refresh and a Stats.
Each input is made by one mutator (seeded): ``random`` bytes (half of them behind a valid tag byte),
``flip`` (1-8 bit flips of a real message), ``bytes`` (1-4 bytes overwritten with edge values), ``resize``
(truncated or extended), ``splice`` (head of one message, tail of another), ``retag`` (another type nibble
on a real body), ``msgpack`` (a control message's body unpacked, one field replaced, repacked) or ``real``
(an undamaged real message out of order, so the stream arrives reordered and duplicated).

Every input goes through ``peek_type`` and ``decode_message`` (with and without the session), then what
parsed goes on to ``KeypointDecoder.decode`` (a stream decoder fed the real packets), ``validate_hello`` /
``Session.from_hello`` and ``SourceAssembler.push``; and into ``Decoder.receive`` (render=False) on a live
call: between inputs the real stream goes on in order on a simulated clock (40 ms a frame), and a fresh
Decoder (realtime and arrival-order in turn) starts when it has ended. ``ProtocolError`` from a parser, or a
drop the Decoder counts, is the expected outcome; any other exception (or any exception out of ``receive``,
``tick`` or ``finish``) is a finding, printed once per (target, type, line) with the input's hex; the
Decoder's findings also write the messages it got since it started to ``--out`` for a replay.

    python benchmarks/fuzz_decoder.py [--inputs 1000000] [--time-limit-s 0] [--clip retalking_2] [--seed 1]

Prints progress JSON lines (inputs/s, ETA) to stderr, a JSON line per finding and a summary JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np

MUTATORS = ("random", "flip", "bytes", "resize", "splice", "retag", "msgpack", "real")
EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0xCF, 0xD3, 0xCB)
EDGE_VALUES = (None, True, -1, 0, 1 << 31, 1 << 32, 1 << 63, -(1 << 63), 2.5, float("nan"), float("inf"), "",
               "x" * 300, b"", b"\x00" * 70, [], {}, [[[]]], {"a": 1})


class Mutator:
    """Seeded inputs from the real messages: ``next()`` -> (mutator name, channel, bytes)."""

    def __init__(self, corpus: list[tuple[str, bytes]], seed: int) -> None:
        self.corpus = corpus
        self.rng = random.Random(seed)
        from avfr.proto import CONTROL_CHANNEL_TYPES, WIRE_VERSION, peek_type

        self.tag_base = WIRE_VERSION << 4  # a valid tag's high nibble (0x80 and up: a compact DELTA)
        self.control = [(c, d) for c, d in corpus if d and peek_type(d) in CONTROL_CHANNEL_TYPES]  # msgpack bodies

    def _rand(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def next(self) -> tuple[str, str, bytes]:
        rng = self.rng
        kind = rng.choice(MUTATORS)
        channel, data = rng.choice(self.corpus)
        buf = bytearray(data)
        if kind == "random":
            n = rng.choice((rng.randrange(0, 16), rng.randrange(0, 64), rng.randrange(0, 2100)))
            buf = bytearray(self._rand(n))
            if buf and rng.random() < 0.5:
                buf[0] = self.tag_base | rng.randrange(1, 9) if rng.random() < 0.8 else 0x80 | rng.randrange(128)
        elif kind == "flip":
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(buf) * 8)
                buf[pos // 8] ^= 1 << (pos % 8)
        elif kind == "bytes":
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(buf))
                buf[pos] = rng.choice(EDGE_BYTES) if rng.random() < 0.7 else rng.randrange(256)
        elif kind == "resize":
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] if rng.random() < 0.6 else buf + self._rand(rng.randrange(1, 64))
        elif kind == "splice":
            _, other = rng.choice(self.corpus)
            buf = buf[: rng.randrange(len(buf) + 1)] + other[rng.randrange(len(other) + 1):]
        elif kind == "retag":
            buf[0] = (buf[0] & 0xF0) | rng.randrange(16)
        elif kind == "msgpack":
            channel, data = rng.choice(self.control)
            buf = bytearray(data[:1] + self._mutate_body(data[1:]))
        return kind, channel, bytes(buf)

    def _mutate_body(self, body: bytes) -> bytes:
        rng = self.rng
        fields = msgpack.unpackb(body, raw=False)
        target, key = fields, None
        while isinstance(target, list) and target:  # descend into nested arrays at random
            key = rng.randrange(len(target))
            if isinstance(target[key], list) and target[key] and rng.random() < 0.5:
                target = target[key]
                continue
            break
        roll = rng.random()
        if isinstance(target, list) and key is not None and roll < 0.8:
            target[key] = rng.choice(EDGE_VALUES)
        elif isinstance(target, list) and roll < 0.9:
            target.append(rng.choice(EDGE_VALUES))
        elif isinstance(target, list) and target:
            target.pop()
        return msgpack.packb(fields, use_bin_type=True)


class LiveCall:
    """A Decoder on a live call: the real stream in order on a simulated clock, fuzz inputs in between."""

    def __init__(self, stream: list[tuple[int, str, bytes]], model: object) -> None:
        self.stream, self.model = stream, model
        self.realtime = True
        self.decoders = 0
        self.totals: Counter = Counter()
        self._new()

    def _new(self) -> None:
        from avfr.receiver import Decoder, DecoderConfig

        self.realtime = not self.realtime
        self.dec = Decoder(DecoderConfig(realtime=self.realtime), self.model, render=False)
        self.pos, self.clock, self.fed = 0, 0.0, []
        self.decoders += 1

    def _receive(self, channel: str, data: bytes) -> None:
        self.fed.append((channel, data))
        self.dec.receive(channel, data, now_s=self.clock if self.realtime else 0.0)
        self.dec.take_jobs()
        self.dec.take_replies()

    def step(self, channel: str, data: bytes, advance: int) -> None:
        """Feed one fuzz input, then `advance` real messages (starting a new Decoder after the stream's end)."""
        self._receive(channel, data)
        for _ in range(advance):
            if self.pos >= len(self.stream):
                self.dec.finish()
                for key in ("dropped_malformed", "dropped_late", "duplicates", "refused_messages", "lost"):
                    self.totals[key] += getattr(self.dec.stats, key)
                self._new()
            frame, ch, raw = self.stream[self.pos]
            self.pos += 1
            self.clock = max(self.clock, max(0, frame) * 0.04 + 0.005)
            if self.realtime:
                self.dec.tick(self.clock)
            self._receive(ch, raw)


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame of the traceback inside the avfr package (else the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/main/" in f.filename or "avfr" in f.filename] or frames
    f = inside[-1] if inside else None
    return f"{Path(f.filename).name}:{f.lineno} ({f.name}: {f.line})" if f else "?"


def _shape(text: str) -> str:
    return re.sub(r"-?\d+(\.\d+)?", "N", text)[:70]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--clip", default="retalking_2")
    parser.add_argument("--frames", type=int, default=50, help="frames of the clip recorded for the corpus")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--time-limit-s", type=float, default=0.0, help="stop early after this long (0: never)")
    parser.add_argument("--advance", type=float, default=0.5, help="real messages fed per fuzz input (mean)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress-every", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/avfr_fuzz"), help="Decoder findings' replays")
    args = parser.parse_args(argv)

    from avfr.benchmarks.bench_impairment import record
    from avfr.codec.runtime import load_call_model
    from avfr.proto import (
        Error,
        ErrorCode,
        Hello,
        KeypointDecoder,
        KeypointsDelta,
        KeypointsKey,
        MessageType,
        ProtocolError,
        Refresh,
        Session,
        SourceAssembler,
        SourceChunk,
        Stats,
        decode_message,
        encode_error,
        encode_refresh,
        encode_stats,
        peek_type,
        validate_hello,
    )
    from avfr.receiver import Decoder

    model = load_call_model()
    rec = record(args.data, args.clip, args.frames, 1, model)
    corpus = [(c, d) for _, c, d in rec.messages]
    corpus += [("avfr-control", encode_error(Error(ErrorCode.MALFORMED, "bad"))),
               ("avfr-control", encode_refresh(Refresh(want_key=True, want_source=True))),
               ("avfr-control", encode_stats(Stats(1, 2, 3, 4, 5, 6, 7, 8.0, 9.0)))]
    hello = decode_message(rec.messages[0][2])
    session = Session.from_hello(hello)
    caps = Decoder(None, model, render=False).capabilities
    keypoint_types = (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA)
    media = [d for _, c, d in rec.messages if c == "avfr-media" and peek_type(d) in keypoint_types]
    kp_real = [decode_message(d, session, near_seq=i) for i, d in enumerate(media)]  # seq i: extend a delta there
    mutator = Mutator(corpus, args.seed)
    call = LiveCall(rec.messages, model)
    kp_dec, assembler = KeypointDecoder(session), SourceAssembler()
    rng = random.Random(args.seed + 1)

    counts: Counter = Counter()  # (target, outcome)
    reasons: Counter = Counter()  # ProtocolError messages by shape
    by_mutator: Counter = Counter()
    findings: dict[tuple[str, str, str], dict] = {}
    warned: Counter = Counter()

    def on_warning(message, category, filename, lineno, *rest) -> None:
        warned[f"{category.__name__} {Path(filename).name}:{lineno}: {str(message)[:60]}"] += 1

    def finding(target: str, exc: BaseException, kind: str, channel: str, data: bytes, i: int) -> None:
        key = (target, type(exc).__name__, _where(exc))
        counts[(target, type(exc).__name__)] += 1
        if key in findings:
            findings[key]["count"] += 1
            return
        row = {"finding": target, "exception": f"{type(exc).__name__}: {str(exc)[:200]}", "at": key[2],
               "input_index": i, "mutator": kind, "channel": channel, "input_hex": data.hex(), "count": 1}
        if target.startswith("Decoder"):
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"finding_{len(findings)}.json"
            path.write_text(json.dumps({"realtime": call.realtime, "messages": [[c, d.hex()] for c, d in call.fed]}))
            row["replay"] = str(path)
        findings[key] = row
        print(json.dumps(row), flush=True)

    def parse(target: str, fn, kind: str, channel: str, data: bytes, i: int):
        try:
            out = fn()
            counts[(target, "ok")] += 1
            return out
        except ProtocolError as exc:
            counts[(target, "ProtocolError")] += 1
            if target == "decode_message":
                reasons[_shape(str(exc))] += 1
        except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
            finding(target, exc, kind, channel, data, i)
        return None

    times = np.empty(args.inputs, np.float64)
    slow_inputs: list[dict] = []
    logging.disable(logging.CRITICAL)  # the Decoder logs every ignored Hello / refusal
    warnings.simplefilter("always")
    warnings.showwarning = on_warning
    t_start = last = time.perf_counter()
    done = 0
    for i in range(args.inputs):
        kind, channel, data = mutator.next()
        by_mutator[kind] += 1
        t0 = time.perf_counter()
        parse("peek_type", lambda d=data: peek_type(d), kind, channel, data, i)
        parse("decode_message_no_session", lambda d=data: decode_message(d), kind, channel, data, i)
        msg = parse("decode_message", lambda d=data: decode_message(d, session), kind, channel, data, i)
        if isinstance(msg, (KeypointsKey, KeypointsDelta)):
            parse("KeypointDecoder.decode", lambda m=msg: kp_dec.decode(m), kind, channel, data, i)
            real = kp_real[i % len(kp_real)]  # keep the stream decoder's state close to a real one
            parse("KeypointDecoder.decode(real)", lambda m=real: kp_dec.decode(m), kind, channel, data, i)
        elif isinstance(msg, Hello):
            parse("validate_hello", lambda m=msg: (validate_hello(m, caps), Session.from_hello(m)), kind, channel,
                  data, i)
        elif isinstance(msg, SourceChunk):
            parse("SourceAssembler.push", lambda m=msg, t=i * 1e-3: assembler.push(m, t), kind, channel, data, i)
        if rng.random() < 0.1:
            channel = rng.choice(("avfr-control", "avfr-media"))
        advance = int(args.advance) + int(rng.random() < args.advance - int(args.advance))
        try:
            call.step(channel, data, advance)
        except Exception as exc:  # noqa: BLE001 - receive/tick/finish must never raise
            finding("Decoder.receive/tick/finish", exc, kind, channel, data, i)
            call._new()
        times[i] = time.perf_counter() - t0
        if times[i] > 0.1 and len(slow_inputs) < 20:  # one input that stalls the receiver is a finding too
            slow_inputs.append({"input_index": i, "ms": round(1000 * times[i], 1), "mutator": kind,
                                "channel": channel, "realtime": call.realtime, "input_hex": data.hex()})
            print(json.dumps({"finding": "slow input", **slow_inputs[-1]}), flush=True)
        done = i + 1
        now = time.perf_counter()
        if done % args.progress_every == 0:
            rate = done / (now - t_start)
            print(json.dumps({"progress": done, "inputs_per_s": round(rate, 1),
                              "eta_s": round((args.inputs - done) / rate, 1), "findings": len(findings)}),
                  file=sys.stderr, flush=True)
            last = now
        if args.time_limit_s and now - t_start > args.time_limit_s:
            break
    del last
    wall = time.perf_counter() - t_start
    t = times[min(1000, done // 10):done] * 1e6  # the first 1000 inputs warm up
    import onnxruntime

    print(json.dumps({
        "bench": "fuzz_decoder", "inputs": done, "inputs_requested": args.inputs,
        "stopped_by_time_limit": done < args.inputs, "wall_s": round(wall, 1),
        "inputs_per_s": round(done / wall, 1), "input_us": {"median": round(float(np.median(t)), 1),
                                                            "p95": round(float(np.percentile(t, 95)), 1),
                                                            "max": round(float(t.max()), 1)},
        "by_mutator": dict(by_mutator), "outcomes": {f"{a} {b}": n for (a, b), n in sorted(counts.items())},
        "findings": [{k: v for k, v in f.items() if k != "input_hex"} for f in findings.values()],
        "slow_inputs_over_100ms": [{k: v for k, v in f.items() if k != "input_hex"} for f in slow_inputs],
        "protocol_errors_top": reasons.most_common(25), "warnings": warned.most_common(10),
        "decoders": call.decoders, "decoder_drops": dict(call.totals), "corpus_messages": len(corpus),
        "device": f"{platform.machine()} cpu x{os.cpu_count()}", "python": platform.python_version(),
        "numpy": np.__version__, "msgpack": ".".join(map(str, msgpack.version)), "onnxruntime": onnxruntime.__version__,
        "seed": args.seed, "command": "python " + " ".join(sys.argv)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
