"""Fixtures of the browser receiver's wire-decoder tests (web/test/*.test.mjs), made by the Python reference.

Writes four JSON files next to this script:

- ``proto_v2.json`` (``v{WIRE_VERSION}``): what ``avfr.proto.decode_message`` makes of every golden vector in
  tests/data/proto/v2 (field by field), the exact refusal (code and text) of every vector in v2/bad/ and of
  every frozen v1 vector (tests/data/proto/v1: UNSUPPORTED_VERSION), and Python's bytes for a set of REFRESH /
  STATS / ERROR messages (the browser's encoders must produce the same bytes). Also Python's verdict
  (accepted, or the error code) on every truncation and single-bit flip of every golden vector, and what
  KeypointDecoder makes of the golden KEY then DELTA.
- ``source_images.json``: ``source_image_size`` (codec/runtime/source_image.py) on small real WebP / PNG /
  JPEG files, crafted headers and header bit flips, each with Python's answer (size or error text).
- ``stream_grid_lwbsza.json``: a real call. The Python sender (``avfr.sender.Encoder``: mediapipe priors,
  the shipped sender ONNX graph, ``KeypointEncoder``, Opus) runs on the first 4 s of
  ../shared/data/clips/grid_lwbsza.mp4 (the whole clip: 3 s, 75 frames) and every message it sends is
  recorded in send order with its channel (Hello, source chunks, start and end anchors, KEY/DELTA, AUDIO).
  At frame 60 the sender gets a REFRESH(want_key, want_source), as a receiver would send it, so the stream
  holds a second source image and an extra KEY. The stream starts near both wraps (seq 65500, ts_90k
  2**32 - 180000), so seq and ts_90k wrap inside it. Also: what ``decode_message`` makes of each message,
  and the completed source images (sha256, size from ``source_image_size``). DELTA packets carry only their
  seq's 7 low bits: each is decoded next to the seq after the previous keypoint packet's (as a receiver would).
- ``stream_grid_lwbsza_keypoints.json``: what ``KeypointDecoder`` outputs (dequantised float32 kp / jac,
  exact and key flags, needs_key, broken) when fed the media channel's keypoint packets in order: all of
  them, and a lossy variant (every 7th packet dropped, plus packets 49 and 50: a lost KEY) with concealment
  on and off.

Run from the repository root (the ``avfr`` package, with its venv; needs mediapipe and onnxruntime)::

    python tests/data/web/make_stream.py               # every fixture
    python tests/data/web/make_stream.py --proto-only  # the first two (no model, no clip)

Write the fixtures of this build's wire version; delete those of older versions (proto_v1.json).

The sender is deterministic on one machine (onnxruntime on CPU, one thread), so a rerun gives the same
messages; a rerun on other hardware may differ in a few keypoint levels, which is fine: the JS tests compare
with whatever the file holds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from avfr.proto import (
    CONTROL_CHANNEL_LABEL,
    MEDIA_CHANNEL_LABEL,
    WIRE_VERSION,
    Audio,
    Capabilities,
    Error,
    ErrorCode,
    Hello,
    KeypointDecoder,
    KeypointsDelta,
    KeypointsKey,
    ModelInfo,
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
    error_from_exception,
    peek_type,
    validate_hello,
)
from avfr.proto.framing import MessageType

HERE = Path(__file__).resolve().parent  # tests/data/web
REPO = HERE.parents[2]  # the avfr package root
GOLDEN_DIR = REPO / "tests" / "data" / "proto"
VERSION_DIR = GOLDEN_DIR / f"v{WIRE_VERSION}"  # this build's golden vectors
FROZEN_DIR = GOLDEN_DIR / "v1"  # an older version's vectors: every one refused with UNSUPPORTED_VERSION
PROTO_FIXTURE = f"proto_v{WIRE_VERSION}.json"
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "grid_lwbsza.mp4"
FPS = 25
SECONDS = 4.0
REFRESH_AT_FRAME = 60  # the sender gets REFRESH(want_key, want_source) before this frame
FIRST_SEQ = 65_500  # seq wraps after 36 frames
TS0_90K = (1 << 32) - 2 * 90_000  # ts_90k wraps after 2 s
KEY_INTERVAL_FRAMES = 50
LOST_EXTRA = (49, 50)  # keypoint packets (by position among the media keypoint packets) lost besides every 7th


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _ints(arr: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(arr).ravel()]


def _floats(arr: np.ndarray) -> list[float]:
    assert arr.dtype == np.float32
    return [float(v) for v in arr.ravel()]  # float32 -> the float64 of the same value (exact in JSON)


def session_json(s: Session) -> dict:
    """A Session as the JS `makeSession` takes it."""
    a = s.audio
    return {
        "numKp": s.num_kp, "fps": s.fps, "kpBits": s.quant.kp_bits, "jacBits": s.quant.jac_bits,
        "jacAbsMax": s.quant.jac_abs_max, "keyIntervalFrames": s.key_interval_frames,
        "audio": {"codec": a.codec, "sampleRateHz": a.sample_rate_hz, "channels": a.channels,
                  "frameMs": a.frame_ms, "bitrateBps": a.bitrate_bps},
        "causalWindow": s.causal_window,
    }


def message_json(msg: object, full_payload: bool = True) -> dict:
    """A decoded message field by field, as the JS test writes its own decoded message (bytes in base64 or
    hex; with full_payload=False, long payloads as their sha256 hex and length)."""

    def payload(data: bytes) -> dict:
        if full_payload:
            return {"payload": _b64(data)}
        return {"payloadSha256": hashlib.sha256(data).hexdigest(), "payloadBytes": len(data)}

    if isinstance(msg, Hello):
        out = {"type": 1, "modelId": msg.model_id, "weightsSha256": msg.weights_sha256}
        return {**out, **{k: v for k, v in session_json(Session.from_hello(msg)).items()}}
    if isinstance(msg, Error):
        return {"type": 2, "code": int(msg.code), "text": msg.text}
    if isinstance(msg, Refresh):
        return {"type": 3, "wantKey": msg.want_key, "wantSource": msg.want_source}
    if isinstance(msg, Stats):
        return {"type": 4, "received": msg.received, "droppedMalformed": msg.dropped_malformed,
                "droppedLate": msg.dropped_late, "droppedBroken": msg.dropped_broken, "concealed": msg.concealed,
                "audioReceived": msg.audio_received, "audioConcealed": msg.audio_concealed,
                "jitterMs": msg.jitter_ms, "delayMs": msg.delay_ms}
    if isinstance(msg, SourceChunk):
        return {"type": 5, "imageId": msg.image_id, "format": msg.format, "totalBytes": msg.total_bytes,
                "sha256": msg.sha256.hex(), "chunkBytes": msg.chunk_bytes, "index": msg.index, "count": msg.count,
                **payload(msg.payload)}
    if isinstance(msg, KeypointsKey):
        return {"type": 6, "seq": msg.seq, "ts90k": msg.ts_90k, "kpQ": _ints(msg.kp_q), "jacQ": _ints(msg.jac_q)}
    if isinstance(msg, KeypointsDelta):
        return {"type": 7, "seq": msg.seq, "refSeq": msg.ref_seq, "refDistance": msg.ref_distance,
                "tsOffset90k": msg.ts_offset_90k, "common": _ints(msg.common), "kpRes": _ints(msg.kp_res),
                "jacRes": _ints(msg.jac_res)}
    if isinstance(msg, Audio):
        return {"type": 8, "seq": msg.seq, "ts90k": msg.ts_90k, **payload(msg.payload)}
    raise TypeError(type(msg).__name__)


def _load_make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def proto_fixture() -> dict:
    """Golden vectors decoded, bad and frozen (older version) vectors refused, and encoder outputs."""
    golden = _load_make_golden()
    sessions = {"default": golden.SESSION, "k4": golden.SESSION_96}
    name_of = {id(s): n for n, s in sessions.items()}
    good = []
    for name, (expected, session) in sorted(golden.golden_messages().items()):
        decoded = decode_message((VERSION_DIR / f"{name}.bin").read_bytes(), session)
        assert decoded == expected, name
        good.append({"name": name, "session": None if session is None else name_of[id(session)],
                     "expected": message_json(decoded)})
    bad = []
    for name, (data, session, text) in sorted(golden.corrupt_messages().items()):
        assert (VERSION_DIR / "bad" / f"{name}.bin").read_bytes() == data, name
        try:
            decode_message(data, session)
        except ProtocolError as exc:
            assert str(exc) == text, (name, str(exc))
            bad.append({"name": name, "session": None if session is None else name_of[id(session)],
                        "code": int(exc.code), "message": text})
        else:
            raise AssertionError(f"bad/{name}.bin decodes")
    frozen = []
    for path in sorted(FROZEN_DIR.glob("*.bin")):
        try:
            decode_message(path.read_bytes(), golden.SESSION)
        except ProtocolError as exc:
            assert exc.code == ErrorCode.UNSUPPORTED_VERSION, path.name
            frozen.append({"name": path.stem, "code": int(exc.code), "message": str(exc)})
        else:
            raise AssertionError(f"v1/{path.name} decodes")
    refresh = [{"msg": {"wantKey": k, "wantSource": s}, "hex": encode_refresh(Refresh(k, s)).hex()}
               for k in (True, False) for s in (True, False)]
    stats = []
    for st in (Stats(), Stats(1000, 2, 3, 4, 5, 2000, 6, 12.5, 80.0),
               Stats(0xFFFFFFFF, 127, 128, 255, 256, 65_535, 65_536, 0.1, 1.0e6),
               Stats(31, 32, 0x7F, 0x80, 0xFFFF, 0x10000, 0xFFFFFFFE, 1234.5678, 5e-324),
               Stats(received=7, jitter_ms=0.0, delay_ms=333.33333333333337)):
        stats.append({"msg": {k: v for k, v in message_json(st).items() if k != "type"},
                      "hex": encode_stats(st).hex()})
    errors = []
    for err in (Error(ErrorCode.UNKNOWN_MODEL, "unknown model 'x' (this receiver holds: avfr-k10-small)"),
                Error(ErrorCode.MALFORMED, ""), Error(ErrorCode.INTERNAL, "x" * 31),
                Error(ErrorCode.UNSUPPORTED_PARAMS, "y" * 32), Error(ErrorCode.WEIGHTS_MISMATCH, "z" * 200),
                Error(ErrorCode.UNEXPECTED_MESSAGE, "caf\u00e9 \u2014 \u4e2d\u6587 \U0001f600"),
                Error(ErrorCode.UNSUPPORTED_VERSION, "\U0001f600" * 200)):
        errors.append({"msg": {"code": int(err.code), "text": err.text}, "hex": encode_error(err).hex()})
    from_exception = []
    for text, code in (("\U0001f600" * 150 + "a" * 100, ErrorCode.MALFORMED),
                       (f"wire version {WIRE_VERSION + 1} not supported (this build speaks {WIRE_VERSION})",
                        ErrorCode.UNSUPPORTED_VERSION)):
        from_exception.append({"message": text, "code": int(code),
                               "hex": encode_error(error_from_exception(ProtocolError(text, code))).hex()})
    dec = KeypointDecoder(golden.SESSION)
    key_then_delta = [_frame_json(dec.decode_bytes((VERSION_DIR / f"{name}.bin").read_bytes()))
                      for name in ("keypoints_key", "keypoints_delta")]
    return {
        "sessions": {n: session_json(s) for n, s in sessions.items()},
        "wireVersion": WIRE_VERSION, "golden": good, "bad": bad, "frozen": frozen,
        "verdicts": _verdicts(golden, sessions["default"]),
        "keyThenDelta": key_then_delta, "validateHello": _validate_cases(golden),
        "encoders": {"refresh": refresh, "stats": stats, "error": errors, "errorFromException": from_exception},
    }


def _validate_cases(golden) -> list[dict]:
    """validate_hello on the golden Hellos against a few receivers (capabilities in JS makeCapabilities form)."""
    hellos = {n: m for n, (m, _) in golden.golden_messages().items() if isinstance(m, Hello)}
    sha = golden.WEIGHTS_SHA256
    cases = [
        ("hello", {"models": [{"modelId": "avfr-k10-small", "weightsSha256": sha}]}),
        ("hello", {"models": [{"modelId": "b-model", "weightsSha256": sha},
                              {"modelId": "a.model", "weightsSha256": sha}]}),
        ("hello", {"models": []}),
        ("hello", {"models": [{"modelId": "avfr-k10-small", "weightsSha256": "0" * 64}]}),
        ("hello", {"models": [{"modelId": "avfr-k10-small", "weightsSha256": sha, "numKp": 4}]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [25, 30]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "kpBits": [4, 8]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "jacAbsMax": [0.25, 1.5]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "audioCodecs": ["opus", "lyra"], "audioSampleRatesHz": [16000]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "audioCodecs": ["lyra"]}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "maxAudioBitrateBps": 16000}),
        ("hello_causal", {"models": [{"modelId": "avfr-k4-test", "weightsSha256": sha, "numKp": 4}], "fps": [30],
                          "causalWindowModes": [False]}),
        ("hello", {"models": [{"modelId": "avfr-k10-small", "weightsSha256": sha}], "causalWindowModes": [True]}),
    ]
    names = {"fps": "fps", "kpBits": "kp_bits", "jacBits": "jac_bits", "jacAbsMax": "jac_abs_max",
             "audioCodecs": "audio_codecs", "audioSampleRatesHz": "audio_sample_rates_hz",
             "audioChannels": "audio_channels", "audioFrameMs": "audio_frame_ms",
             "maxAudioBitrateBps": "max_audio_bitrate_bps", "causalWindowModes": "causal_window_modes"}
    out = []
    for hello_name, caps in cases:
        models = tuple(ModelInfo(m["modelId"], m["weightsSha256"], m.get("numKp", 10)) for m in caps["models"])
        kwargs = {names[k]: (v if isinstance(v, int) else tuple(v)) for k, v in caps.items() if k != "models"}
        error = validate_hello(hellos[hello_name], Capabilities(models, **kwargs))
        out.append({"hello": hello_name, "caps": caps,
                    "expected": None if error is None else {"code": int(error.code), "text": error.text}})
    return out


def _verdict(data: bytes, session: Session) -> str:
    """'0' when decode_message accepts the bytes, else the refusal's error code (one digit)."""
    try:
        decode_message(data, session)
    except ProtocolError as exc:
        return str(int(exc.code))
    return "0"


def _verdicts(golden, default: Session) -> dict:
    """Per golden vector: Python's verdict on every truncation data[:n] (n = 0..len-1) and on every single-bit
    flip (bit i of the message: byte i // 8, mask 1 << (i % 8)), decoded with its session (default if none)."""
    out = {}
    for name, (_, session) in sorted(golden.golden_messages().items()):
        data = (VERSION_DIR / f"{name}.bin").read_bytes()
        session = session or default
        flips = []
        for bit in range(8 * len(data)):
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            flips.append(_verdict(bytes(flipped), session))
        out[name] = {"truncations": "".join(_verdict(data[:n], session) for n in range(len(data))),
                     "flips": "".join(flips)}
    return out


def source_images_fixture() -> dict:
    """`source_image_size` on small real images of each accepted format, on crafted headers (bombs, wrong
    formats, animations; the cases of tests/test_codec_source_image.py) and on every single-bit flip of the
    first 64 bytes of the real images: each case with Python's answer, [width, height] or the error text."""
    import cv2

    from avfr.codec.runtime import encode_source_image, source_image_size

    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), np.uint8)

    def encoded(ext: str, params=()) -> bytes:
        ok, buf = cv2.imencode(ext, rgb, list(params))
        assert ok
        return buf.tobytes()

    def riff(*chunks: tuple[bytes, bytes]) -> bytes:
        body = b"".join(k + struct.pack("<I", len(v)) + v + b"\x00" * (len(v) & 1) for k, v in chunks)
        return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body

    def vp8(width: int, height: int, key: bool = True) -> bytes:
        return bytes([0 if key else 1, 0, 0]) + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(20)

    def vp8l(width: int, height: int) -> bytes:
        return b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + bytes(20)

    def vp8x(width: int, height: int, flags: int = 0) -> bytes:
        return bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")

    def png_header(width: int, height: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")

    webp = encode_source_image(rgb)
    (size,) = struct.unpack_from("<I", webp, 16)
    bitstream = (webp[12:16], webp[20 : 20 + size])
    progressive = encoded(".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    good = {"webp_vp8": ("webp", webp), "webp_vp8l": ("webp", encoded(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))),
            "webp_vp8x": ("webp", riff((b"VP8X", vp8x(16, 12)), bitstream)), "png": ("png", encoded(".png")),
            "jpeg": ("jpeg", encoded(".jpg")), "jpeg_progressive": ("jpeg", progressive)}
    crafted = {
        "png_bomb": ("png", png_header(32768, 32767)), "png_1025": ("png", png_header(1025, 16)),
        "png_zero": ("png", png_header(0, 16)), "png_4g": ("png", png_header(0xFFFFFFFF, 16)),
        "png_max": ("png", png_header(1024, 1024)),
        "vp8_bomb": ("webp", riff((b"VP8 ", vp8(16383, 16383)))),
        "vp8_hint_bits": ("webp", riff((b"VP8 ", vp8(0xC000 | 64, 0x4000 | 32)))),
        "vp8l_bomb": ("webp", riff((b"VP8L", vp8l(16384, 16384)))),
        "vp8l_version": ("webp", riff((b"VP8L", b"\x2f" + struct.pack("<I", 0xE0000000 | 63) + bytes(20)))),
        "vp8x_bomb": ("webp", riff((b"VP8X", vp8x(1 << 24, 1 << 24)), (b"VP8 ", vp8(64, 64)))),
        "vp8x_mismatch": ("webp", riff((b"VP8X", vp8x(64, 64)), (b"VP8L", vp8l(16384, 16384)))),
        "vp8x_animated": ("webp", riff((b"VP8X", vp8x(64, 64, flags=0x02)), (b"VP8 ", vp8(64, 64)))),
        "vp8x_odd_chunk": ("webp", riff((b"VP8X", vp8x(64, 48)), (b"ICCP", b"abc"), (b"VP8 ", vp8(64, 48)))),
        "vp8_not_key": ("webp", riff((b"VP8 ", vp8(64, 64, key=False)))),
        "webp_no_bitstream": ("webp", riff((b"VP8X", vp8x(64, 64)), (b"EXIF", b"x" * 9))),
        "webp_first_chunk": ("webp", riff((b"ALPH", b"\x00\x01"), (b"VP8 ", vp8(64, 64)))),
        "webp_first_chunk_binary": ("webp", riff((b"\x00\xffA'", b"\x00\x01"), (b"VP8 ", vp8(64, 64)))),
        "webp_truncated": ("webp", webp[:30]),
        "jpeg_bomb": ("jpeg", b"\xff\xd8\xff\xc0\x00\x11\x08\x80\x00\x80\x00\x03" + bytes(20)),
        "jpeg_dnl": ("jpeg", b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x40\x03" + bytes(20)),
        "jpeg_lossless": ("jpeg", b"\xff\xd8\xff\xc3\x00\x11\x08\x00\x40\x00\x40\x03" + bytes(20)),
        "jpeg_scans": ("jpeg", progressive + b"\xff\xda" * 40),
        "jpeg_fill_bytes": ("jpeg", b"\xff\xd8\xff\xff\xff\xc2\x00\x11\x08\x00\x30\x00\x40\x03" + bytes(20)),
        "jpeg_short_segment": ("jpeg", b"\xff\xd8\xff\xe0\x00\x01" + bytes(20)),
        "jpeg_no_frame": ("jpeg", b"\xff\xd8" + b"\xff\xfe\x00\x02" * 70),
        "avif": ("avif", b"\x00\x00\x00\x1cftypavif" + bytes(40)), "gif": ("gif", b"GIF89a"),
        "png_as_webp": ("webp", encoded(".png")), "webp_as_png": ("png", webp),
        "bmp_as_jpeg": ("jpeg", encoded(".bmp")),
    }

    def answer(data: bytes, fmt: str) -> list[int] | str:
        try:
            return list(source_image_size(data, fmt))
        except ValueError as exc:
            return str(exc)

    cases = [{"name": n, "format": f, "data": _b64(d), "expected": answer(d, f)}
             for n, (f, d) in {**good, **crafted}.items()]
    flips = []
    for name, (fmt, data) in good.items():
        answers = []
        for bit in range(8 * min(64, len(data))):
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            answers.append(answer(bytes(flipped), fmt))
        flips.append({"name": name, "answers": answers})
    return {"cases": cases, "flips": flips}


def _record_call(clip: Path, seconds: float) -> list:
    """The real sender on the clip: every OutMessage in send order (as SendingPeer sends them)."""
    from avfr.codec.runtime import load_call_model
    from avfr.sender import Encoder, EncoderConfig
    from avfr.sender.track import FileSource

    config = EncoderConfig(drift_check_interval_frames=0, key_interval_frames=KEY_INTERVAL_FRAMES,
                           ts0_90k=TS0_90K, first_seq=FIRST_SEQ, threads=1)
    frames = FileSource(clip, max_frames=round(seconds * FPS))
    out = []
    with Encoder(config, load_call_model()) as enc:
        started = False
        for frame in frames:
            if not started:
                out += enc.start(frame.rgb)
                started = True
            if frame.index == REFRESH_AT_FRAME:
                enc.on_control(encode_refresh(Refresh(want_key=True, want_source=True)))
            out += enc.encode_frame(frame.index, frame.rgb)
            out += enc.encode_audio(frame.pcm)
        out += enc.finish()
    return out


def _frame_json(frame) -> dict | None:
    if frame is None:
        return None
    return {"seq": frame.seq, "ts90k": frame.ts_90k, "key": frame.key, "exact": frame.exact,
            "kp": _floats(frame.kp), "jac": _floats(frame.jac)}


def _decoder_run(name: str, packets: list[tuple[int, bytes]], session: Session, conceal: bool) -> dict:
    dec = KeypointDecoder(session, conceal_broken=conceal)
    steps = []
    for index, data in packets:
        frame = dec.decode_bytes(data)
        steps.append({"message": index, "frame": _frame_json(frame), "needsKey": dec.needs_key,
                      "broken": dec.broken})
    return {"name": name, "concealBroken": conceal, "steps": steps}


def stream_fixtures(clip: Path, seconds: float) -> tuple[dict, dict]:
    """(messages fixture, keypoint decoder fixture) of a real call."""
    from avfr.codec.runtime import source_image_size

    sent = _record_call(clip, seconds)
    hello = decode_message(sent[0].data)
    assert isinstance(hello, Hello)
    session = Session.from_hello(hello)
    messages, decoded = [], []
    assembler, images = SourceAssembler(), []
    near_seq = 0  # the seq after the previous keypoint packet's: a DELTA's 7 seq bits are extended next to it
    for i, m in enumerate(sent):
        msg = decode_message(m.data, session, near_seq)
        if isinstance(msg, (KeypointsKey, KeypointsDelta)):
            near_seq = (msg.seq + 1) & 0xFFFF
        messages.append({"channel": m.channel, "data": _b64(m.data)})
        decoded.append(message_json(msg, full_payload=False))
        if isinstance(msg, SourceChunk):
            image = assembler.push(msg, 0.001 * i)
            if image is not None:
                width, height = source_image_size(image.data, image.format)
                images.append({"imageId": image.image_id, "format": image.format, "bytes": len(image.data),
                               "sha256": hashlib.sha256(image.data).hexdigest(), "width": width,
                               "height": height, "completedBy": i})
    kp_packets = [(i, m.data) for i, m in enumerate(sent) if m.channel == MEDIA_CHANNEL_LABEL
                  and peek_type(m.data) in (MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA)]
    seqs = [decoded[i]["seq"] for i, _ in kp_packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), "keypoint seqs are not consecutive"
    assert 0 in seqs and seqs[0] > seqs[-1], "the keypoint seq does not wrap inside the stream"
    kept = [p for j, p in enumerate(kp_packets) if j % 7 != 6 and j not in LOST_EXTRA]
    runs = [_decoder_run("lossless", kp_packets, session, True), _decoder_run("lossy", kept, session, True),
            _decoder_run("lossy_no_concealment", kept, session, False)]
    lossy = runs[1]["steps"]
    assert any(s["frame"] and not s["frame"]["exact"] for s in lossy), "the lossy run conceals nothing"
    control = sum(m.channel == CONTROL_CHANNEL_LABEL for m in sent)
    about = {"clip": clip.name, "seconds": seconds, "frames": len(kp_packets), "messages": len(sent),
             "controlMessages": control, "refreshAtFrame": REFRESH_AT_FRAME,
             "lost": f"every 7th keypoint packet (position % 7 == 6) and positions {list(LOST_EXTRA)}"}
    stream = {"about": about, "session": session_json(session), "messages": messages, "decoded": decoded,
              "images": images}
    keypoints = {"about": about, "session": session_json(session), "runs": runs}
    return stream, keypoints


def _write(name: str, data: dict) -> None:
    path = HERE / name
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n"
    path.write_text(text, encoding="ascii")
    print(f"wrote {path.relative_to(REPO)} ({len(text)} bytes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video (+ .wav next to it)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of the recorded call")
    parser.add_argument("--proto-only", action="store_true",
                        help=f"only {PROTO_FIXTURE} and source_images.json (no model, no clip)")
    args = parser.parse_args(argv)
    _write(PROTO_FIXTURE, proto_fixture())
    for old in sorted(HERE.glob("proto_v*.json")):
        if old.name != PROTO_FIXTURE:
            old.unlink()
            print(f"deleted {old.relative_to(REPO)} (an older wire version)")
    _write("source_images.json", source_images_fixture())
    if args.proto_only:
        return 0
    if not args.clip.exists():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 1
    stream, keypoints = stream_fixtures(args.clip, args.seconds)
    _write(f"stream_{args.clip.stem}.json", stream)
    _write(f"stream_{args.clip.stem}_keypoints.json", keypoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
