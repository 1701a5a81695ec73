"""Keypoint stream rate and speed of avfr.proto on synthetic random-walk keypoints.

Prints JSON lines: one per (bit depths, key interval, motion) with bytes/packet, kbit/s, key and delta packet
sizes and encode/decode microseconds per packet (median, p95, after a warm-up); one per loss scenario (frames
lost to broken prediction chains); one with the size of every other message.

    python benchmarks/bench_proto.py            # full table (~1 min on 2 cores)
    python benchmarks/bench_proto.py --quick    # defaults only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import msgpack
import numpy as np

import avfr
from avfr.proto import (
    Audio,
    Hello,
    KeypointDecoder,
    KeypointEncoder,
    KeypointsKey,
    QuantParams,
    Refresh,
    Session,
    SourceImage,
    Stats,
    dequantise_keypoints,
    encode_message,
    quantise_keypoints,
    split_source_image,
)
from avfr.proto.synthetic import random_walk_keypoints

DEPTHS = [(8, 5), (7, 6), (8, 6), (9, 6), (9, 8), (10, 8), (12, 10)]
KEY_INTERVALS = [25, 100, 250]
MOTIONS = [(0.5, 0.005), (1.0, 0.01), (2.0, 0.02)]  # (keypoint px/frame RMS, jacobian step RMS)
DEFAULT = Session()


def _device() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _common() -> dict[str, object]:
    return {
        "device": _device(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
        "avfr": avfr.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def _stats_us(seconds: list[float]) -> tuple[float, float]:
    us = np.asarray(seconds) * 1e6
    return round(float(np.median(us)), 1), round(float(np.percentile(us, 95)), 1)


def bench_rate(session: Session, kp: np.ndarray, jac: np.ndarray, warmup: int = 50) -> dict[str, object]:
    """Encode and decode the whole track; sizes of every packet, times after `warmup` packets."""
    enc, dec = KeypointEncoder(session), KeypointDecoder(session)
    sizes, keys, t_enc, t_dec = [], [], [], []
    for t in range(len(kp)):
        t0 = time.perf_counter()
        packet = enc.packet(kp[t], jac[t], t * session.ts_step_90k)
        data = encode_message(packet, session)
        t1 = time.perf_counter()
        frame = dec.decode_bytes(data)
        t2 = time.perf_counter()
        if frame is None:
            raise RuntimeError("lossless stream broke its own prediction chain")
        sizes.append(len(data))
        keys.append(isinstance(packet, KeypointsKey))
        if t >= warmup:
            t_enc.append(t1 - t0)
            t_dec.append(t2 - t1)
    sizes_a, keys_a = np.asarray(sizes), np.asarray(keys)
    delta = sizes_a[~keys_a]
    enc_med, enc_p95 = _stats_us(t_enc)
    dec_med, dec_p95 = _stats_us(t_dec)
    return {
        "bytes_per_packet": round(float(sizes_a.mean()), 3),
        "kbps": round(float(sizes_a.mean()) * 8 * session.fps / 1000, 3),
        "key_bytes": int(sizes_a[keys_a][0]),
        "key_packets": int(keys_a.sum()),
        "delta_bytes_mean": round(float(delta.mean()), 3),
        "delta_bytes_p95": float(np.percentile(delta, 95)),
        "encode_us_median": enc_med,
        "encode_us_p95": enc_p95,
        "decode_us_median": dec_med,
        "decode_us_p95": dec_p95,
    }


def bench_loss(
    session: Session, kp: np.ndarray, jac: np.ndarray, loss: float, refresh_delay_frames: int | None,
    conceal: bool, seed: int,
) -> dict[str, object]:
    """Bernoulli packet loss; the receiver asks for a key (arriving `refresh_delay_frames` later) or waits.

    Counts frames shown without their own exact keypoints and the error of the concealed ones (pixels at
    256 px, against the quantised truth).
    """
    rng = np.random.default_rng(seed)
    enc, dec = KeypointEncoder(session), KeypointDecoder(session, conceal_broken=conceal)
    lost = dropped = concealed = 0
    errors_px: list[float] = []
    request_at: int | None = None
    for t in range(len(kp)):
        if request_at is not None and t >= request_at:
            enc.request_key()
            request_at = None
        data = encode_message(enc.packet(kp[t], jac[t], t * session.ts_step_90k), session)
        if rng.random() < loss:
            lost += 1
            continue
        frame = dec.decode_bytes(data)
        if dec.needs_key and refresh_delay_frames is not None and request_at is None:
            request_at = t + refresh_delay_frames
        if frame is None:
            dropped += 1
        elif not frame.exact:
            concealed += 1
            truth = dequantise_keypoints(*quantise_keypoints(kp[t], jac[t], session.quant), session.quant)[0]
            errors_px.append(float(np.sqrt(np.mean((frame.kp - truth) ** 2))) * 128)
    return {
        "lost": lost,
        "dropped": dropped,
        "concealed": concealed,
        "frames_without_exact_keypoints": round((lost + dropped + concealed) / len(kp), 4),
        "frames_not_drawn_from_own_packet": round((lost + dropped) / len(kp), 4),
        "concealed_kp_err_px_rms": _rms(errors_px),
    }


def _rms(values: list[float]) -> float | None:
    return round(float(np.sqrt(np.mean(np.square(values)))), 3) if values else None


def message_sizes() -> dict[str, int]:
    """Bytes on the wire of every non-keypoint message with typical content."""
    sha = hashlib.sha256(b"weights").hexdigest()
    image = SourceImage(1, "webp", bytes(20_000))
    return {
        "hello": len(encode_message(Hello("avfr-k10-small", sha))),
        "refresh": len(encode_message(Refresh())),
        "stats": len(encode_message(Stats(1000, 1, 2, 3, 4, 2000, 5, 12.5, 80.0))),
        "source_chunk_16k": len(encode_message(split_source_image(image)[0])),
        "source_20kB_total": sum(len(encode_message(c)) for c in split_source_image(image)),
        "audio_40B_opus": len(encode_message(Audio(0, 0, bytes(40)))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500, help="frames per synthetic track (25 fps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="default settings only")
    args = parser.parse_args(argv)
    common = _common()
    q = DEFAULT.quant
    print(json.dumps({"bench": "proto_messages", **message_sizes(), **common}))
    runs = [(q.kp_bits, q.jac_bits, DEFAULT.key_interval_frames, 1.0, 0.01)]
    if not args.quick:
        runs += [(kb, jb, ki, px, jr) for kb, jb in DEPTHS for ki in KEY_INTERVALS for px, jr in MOTIONS
                 if (kb, jb, ki, px, jr) != runs[0]]
    tracks: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    for kb, jb, ki, px, jr in runs:
        if (px, jr) not in tracks:
            tracks[(px, jr)] = random_walk_keypoints(args.frames, DEFAULT.num_kp, px, jr, seed=args.seed)
        session = Session(quant=QuantParams(kb, jb, q.jac_abs_max), key_interval_frames=ki)
        result = bench_rate(session, *tracks[(px, jr)])
        print(json.dumps({
            "bench": "proto_keypoints", "default": (kb, jb, ki, px, jr) == runs[0],
            "kp_bits": kb, "jac_bits": jb, "jac_abs_max": q.jac_abs_max, "key_interval_frames": ki,
            "rms_step_px": px, "jac_rms_step": jr,
            "num_kp": DEFAULT.num_kp, "fps": DEFAULT.fps, "frames": args.frames, **result, **common,
        }))
    kp, jac = tracks[(1.0, 0.01)]
    for loss in (0.01, 0.05):
        for delay in (None, 4):  # periodic keys only / a Refresh answered 4 frames (160 ms) later
            for conceal in (False, True):
                result = bench_loss(DEFAULT, kp, jac, loss, delay, conceal, args.seed)
                print(json.dumps({
                    "bench": "proto_loss", "loss": loss, "refresh_delay_frames": delay,
                    "conceal_broken": conceal,
                    "key_interval_frames": DEFAULT.key_interval_frames, **result, **common,
                }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
