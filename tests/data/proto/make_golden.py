"""Golden vectors of the avfr wire format: writes tests/data/proto/v<WIRE_VERSION>/*.bin.

Run once per wire version:  python tests/data/proto/make_golden.py
It refuses to overwrite a file with different bytes: a change that breaks a golden vector must bump
WIRE_VERSION (a new folder), never regenerate the old one. tests/test_proto_packets.py imports this file for
the expected objects (`golden_messages`) and the exact errors of the corrupt variants (`corrupt_messages`).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from avfr.proto import (
    WIRE_VERSION,
    Audio,
    AudioParams,
    Error,
    ErrorCode,
    Hello,
    KeypointsDelta,
    KeypointsKey,
    Message,
    QuantParams,
    Refresh,
    Session,
    SourceImage,
    Stats,
    encode_message,
    split_source_image,
)
from avfr.proto.framing import MessageType, pack_body

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / f"v{WIRE_VERSION}"

WEIGHTS_SHA256 = hashlib.sha256(b"avfr golden weights").hexdigest()
SESSION = Session()  # K=10, 25 fps, 8/5 bits, jacobians in [-4, 4)
SESSION_96 = Session(num_kp=4, quant=QuantParams(9, 6, 2.0))
SOURCE = SourceImage(7, "webp", bytes(range(256)) * 5 + b"avfr")  # 1284 bytes -> 2 chunks of 1024


def _key() -> KeypointsKey:
    kp_q = np.array([[-128, 127], [0, 0], [1, -1], [64, -64], [-3, 5], [100, -100], [17, 33], [-77, 12],
                     [2, 2], [-1, 0]], dtype=np.int32)
    jac_q = np.tile(np.array([[4, 0], [0, 4]], dtype=np.int32), (10, 1, 1))  # identity at step 0.25
    jac_q[1] = [[-16, 15], [3, -2]]
    return KeypointsKey(seq=65535, ts_90k=4_294_965_000, kp_q=kp_q, jac_q=jac_q)


def _delta() -> KeypointsDelta:
    kp_res = np.zeros((10, 2), dtype=np.int32)
    kp_res[[0, 3, 7], 0] = [1, -2, 1]
    kp_res[[1, 3], 1] = [-1, 5]
    jac_res = np.zeros((10, 2, 2), dtype=np.int32)
    jac_res[4, 0, 1] = -1
    common = np.array([1, -1, 0, 0, 0, 0], dtype=np.int32)
    return KeypointsDelta(
        seq=1, ref_seq=65535, ts_offset_90k=-40, common=common, kp_res=kp_res, jac_res=jac_res
    )


def golden_messages() -> dict[str, tuple[Message, Session | None]]:
    """File stem -> (expected message, session needed to decode it)."""
    chunks = split_source_image(SOURCE, chunk_bytes=1024)
    key96 = KeypointsKey(
        seq=3, ts_90k=10_800, kp_q=np.array([[-256, 255], [0, 1], [-5, 9], [100, -3]], dtype=np.int32),
        jac_q=np.array([[[16, 0], [0, 16]], [[-32, 31], [1, -1]], [[15, 14], [-13, 12]], [[0, 0], [0, 0]]],
                       dtype=np.int32),
    )
    return {
        "hello": (Hello("avfr-k10-small", WEIGHTS_SHA256), None),
        "hello_causal": (
            Hello(
                "avfr-k4-test", WEIGHTS_SHA256, num_kp=4, fps=30, quant=QuantParams(9, 6, 2.0),
                key_interval_frames=50, audio=AudioParams("opus", 24_000, 1, 20, 24_000), causal_window=True,
            ),
            None,
        ),
        "error": (
            Error(ErrorCode.UNKNOWN_MODEL, "unknown model 'x' (this receiver holds: avfr-k10-small)"), None
        ),
        "refresh": (Refresh(want_key=True, want_source=False), None),
        "refresh_source": (Refresh(want_key=False, want_source=True), None),
        "stats": (Stats(1000, 2, 3, 4, 5, 2000, 6, 12.5, 80.0), None),
        "source_chunk_0": (chunks[0], None),
        "source_chunk_1": (chunks[1], None),
        "keypoints_key": (_key(), SESSION),
        "keypoints_delta": (_delta(), SESSION),
        "keypoints_key_k4": (key96, SESSION_96),
        "audio": (Audio(seq=65535, ts_90k=123_456_789, payload=bytes([0x48, 0x0B]) + b"\x5a" * 38), None),
    }


def corrupt_messages() -> dict[str, tuple[bytes, Session | None, str]]:
    """File stem -> (bytes, session, exact ProtocolError message) for broken variants of the golden set."""
    g = {name: encode_message(msg, session) for name, (msg, session) in golden_messages().items()}
    hello, key, delta = g["hello"], g["keypoints_key"], g["keypoints_delta"]
    next_hello = bytes([((WIRE_VERSION + 1) << 4) | 1]) + hello[1:]
    v1_hello = bytes([0x11]) + hello[1:]
    four, nan = b"\xcb\x40\x10" + bytes(6), b"\xcb\x7f\xf8" + bytes(6)  # float64 4.0 and NaN
    nan_hello = hello.replace(four, nan)
    return {
        "empty": (b"", None, "empty message"),
        "unknown_type": (bytes([(WIRE_VERSION << 4) | 0x0F]) + b"\x90", None, "unknown message type 15"),
        "hello_version3": (next_hello, None, "wire version 3 not supported (this build speaks 2)"),
        "hello_version1": (v1_hello, None, "wire version 1 not supported (this build speaks 2)"),
        "hello_truncated": (
            hello[:-5], None, "HELLO: malformed msgpack body (ValueError: Unpack failed: incomplete input)"
        ),
        "hello_nan_jac_abs_max": (nan_hello, None, "Hello.jac_abs_max is not finite (nan)"),
        "hello_bad_sha": (
            hello.replace(WEIGHTS_SHA256.encode(), WEIGHTS_SHA256.upper().encode()), None,
            f"Hello.weights_sha256={WEIGHTS_SHA256.upper()[:40]!r} does not match [0-9a-f]{{64}}",
        ),
        "keypoints_key_truncated": (
            key[:-1], SESSION, "KEYPOINTS_KEY is 51 bytes, expected 52 for K=10, 8/5 bits"
        ),
        "keypoints_key_wrong_k": (
            key, SESSION_96, "KEYPOINTS_KEY is 52 bytes, expected 28 for K=4, 9/6 bits"
        ),
        "keypoints_delta_trailing": (
            delta + b"\x00", SESSION,
            f"KEYPOINTS_DELTA payload is {len(delta) - 1 + 1} bytes, its bins end in byte {len(delta) - 1}",
        ),
        "keypoints_delta_header_only": (delta[:1], SESSION, "KEYPOINTS_DELTA is 1 bytes, minimum 2"),
        "keypoints_delta_tagged": (
            bytes([(WIRE_VERSION << 4) | int(MessageType.KEYPOINTS_DELTA), 0, 1]) + delta[1:], SESSION,
            "a KEYPOINTS_DELTA has no tag byte in this version (its first byte has bit 7 set)",
        ),
        "audio_no_payload": (g["audio"][:7], None, "AUDIO is 7 bytes, minimum 8"),
        "stats_negative": (
            g["stats"].replace(b"\xcd\x03\xe8", b"\xff", 1), None,  # 1000 -> -1
            "Stats.received=-1 out of range [0, 4294967295]",
        ),
        "source_chunk_truncated": (
            g["source_chunk_1"][:-1], None,
            "SOURCE_CHUNK: malformed msgpack body (ValueError: Unpack failed: incomplete input)",
        ),
        "source_chunk_short_payload": (
            pack_body(
                MessageType.SOURCE_CHUNK, [7, "webp", 1284, SOURCE.sha256, 1024, 1, 2, SOURCE.data[1024:-1]]
            ),
            None, "SourceChunk.payload of chunk 1 is 259 bytes, expected 260..260",
        ),
        "refresh_int_flag": (
            g["refresh"].replace(b"\xc3", b"\x01", 1), None, "Refresh.want_key must be a bool, got int"
        ),
    }


def _files() -> dict[str, bytes]:
    files = {f"{name}.bin": encode_message(msg, s) for name, (msg, s) in golden_messages().items()}
    files.update({f"bad/{name}.bin": data for name, (data, _, _) in corrupt_messages().items()})
    return files


def check() -> list[str]:
    """Golden files that are missing or whose bytes this build no longer produces (empty: all good)."""
    problems = []
    for rel, data in sorted(_files().items()):
        path = OUT_DIR / rel
        if not path.exists():
            problems.append(f"{rel} missing")
        elif path.read_bytes() != data:
            problems.append(f"{rel} changed")
    return problems


def main() -> int:
    """Write the missing vectors; refuse (exit 1) when an existing one would change."""
    changed = [p for p in check() if p.endswith("changed")]
    if changed:
        print(f"golden vectors {', '.join(changed)}: bump WIRE_VERSION instead of regenerating",
              file=sys.stderr)
        return 1
    for rel, data in sorted(_files().items()):
        path = OUT_DIR / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path.relative_to(HERE)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
