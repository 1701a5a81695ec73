"""Reduced-size anchors: H.266 low delay and AV1 at a smaller picture and frame rate, shown as a receiver would.

A WebRTC sender under a tight budget lowers resolution and frame rate (ENVIRONMENT.md, section 9). Each
configuration is an :class:`avfr.benchmarks.anchors.AnchorSpec` of its own, named ``<codec>-s<size>f<fps>``
(``vvc-s128f12.5``: H.266 low delay, 128x128, 12.5 fps), with the full-size anchor's flags, QP search and
bitstream rate (bytes x 8 over the whole 25 fps clip's duration). The clip is decimated to every ``step``-th
frame and scaled down with ``flags=area``; the decoded pictures are scaled up to 256x256 (Lanczos) and each is
shown until the next one arrives (:func:`to_display`), so the row is scored frame by frame against the 256x256,
25 fps original like every other row. ``<codec>-small`` names the whole grid of one codec (:data:`FAMILIES`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

import cv2
import numpy as np

from avfr.benchmarks import anchors

REDUCED_BASES = ("vvc", "av1")  # the call-like anchors with reduced-size variants
SIZES = (256, 192, 128, 96)  # px, square
RATES_FPS = (25.0, 12.5, 6.25)  # 6.25: at the floor an H.266 inter picture costs ~16 B, so only fewer pictures
#   reach ~1 kbit/s (96x96 at QP 63 on a 3 s clip: 2.06 kbit/s at 12.5 fps, 1.25 at 6.25)
_FULL = {"size": anchors.FRAME_SIZE, "fps": float(anchors.FPS)}


def reduced_name(base: str, size: int, fps: float) -> str:
    """Row name of one configuration: ``vvc-s128f12.5``."""
    return f"{base}-s{size}f{fps:g}"


def grid(base: str) -> tuple[str, ...]:
    """Every reduced configuration of one anchor (all sizes x frame rates but the full 256x256 at 25 fps)."""
    return tuple(reduced_name(base, s, f) for s in SIZES for f in RATES_FPS
                 if (s, f) != (anchors.FRAME_SIZE, float(anchors.FPS)))


FAMILIES = {f"{base}-small": grid(base) for base in REDUCED_BASES}  # --codecs alias -> its configurations


def reduced_specs(vvenc_preset: str = "medium", threads: int = 2) -> dict[str, anchors.AnchorSpec]:
    """The reduced-size anchors by row name: the full-size spec with another name, size and frame rate."""
    full = anchors.anchor_specs(vvenc_preset, threads)
    out = {}
    for base in REDUCED_BASES:
        for name in grid(base):
            size, fps = name.removeprefix(f"{base}-s").split("f")
            out[name] = replace(full[base], name=name, label=f"{full[base].label}, {size}x{size} at {fps} fps",
                                size=int(size), fps=float(fps))
    return out


def bench_specs(vvenc_preset: str = "medium", threads: int = 2) -> dict[str, anchors.AnchorSpec]:
    """Every anchor ``avfr-codec bench`` knows: the full-size ones, then the reduced-size ones."""
    return {**anchors.anchor_specs(vvenc_preset, threads), **reduced_specs(vvenc_preset, threads)}


def is_reduced(spec: anchors.AnchorSpec) -> bool:
    return spec.size != anchors.FRAME_SIZE or spec.step > 1


def spec_fields(spec: anchors.AnchorSpec) -> dict:
    """The spec as its resume key hashes it: a full-size spec without ``size`` / ``fps`` (the fields came later;
    leaving them out keeps the keys of parts saved before them)."""
    fields = asdict(spec)
    if not is_reduced(spec):
        for k in _FULL:
            fields.pop(k)
    return fields


def display_flags(spec: anchors.AnchorSpec) -> str:
    """The report's flags of an anchor, with how a reduced one is shown."""
    if not is_reduced(spec):
        return spec.flags()
    return (f"{spec.flags()}   (display: every decoded picture scaled to {anchors.FRAME_SIZE}x{anchors.FRAME_SIZE} "
            f"with Lanczos (OpenCV), repeated {spec.step}x to {anchors.FPS} fps)")


def to_display(decoded: np.ndarray, num_frames: int, step: int) -> np.ndarray:
    """What a receiver shows: decoded pictures scaled up to 256x256 (Lanczos), each held for ``step`` frames.

    Args:
        decoded: uint8 (N, S, S, 3) RGB, the decoded pictures of frames 0, step, 2 * step, ... of the clip.
        num_frames: T, the clip's frame count at 25 fps.
        step: clip frames per decoded picture.

    Returns:
        uint8 (T, 256, 256, 3): frame t is decoded picture ``min(t // step, N - 1)``, aligned 1:1 with the original.
    """
    n, size = len(decoded), anchors.FRAME_SIZE
    if decoded.shape[1:3] == (size, size):
        up = decoded
    else:
        # (N, 256, 256, 3)
        up = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LANCZOS4) for f in decoded])
    index = np.minimum(np.arange(num_frames) // step, n - 1)  # (T,) the picture shown at each 25 fps frame
    return np.ascontiguousarray(up[index])


def decode_display(spec: anchors.AnchorSpec, bitstream: bytes, num_frames: int, ffmpeg: str
                   ) -> tuple[np.ndarray, float]:
    """Decode an anchor's bitstream to what is shown: uint8 (num_frames, 256, 256, 3), and the seconds taken
    (decoding plus, for a reduced anchor, the upscale and frame repeat)."""
    start = time.perf_counter()
    decoded, _ = anchors.decode(spec, bitstream, math.ceil(num_frames / spec.step), ffmpeg)
    shown = to_display(decoded, num_frames, spec.step) if is_reduced(spec) else decoded
    return shown, time.perf_counter() - start
