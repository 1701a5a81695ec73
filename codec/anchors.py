"""Anchor video codecs for the benchmark: H.266 (vvenc), H.265 (x265), AV1 (SVT-AV1) through FFmpeg.

All run from the imageio-ffmpeg binary on raw RGB frames (256x256, 25 fps) piped in, and write a raw
bitstream (no container), so the achieved rate is ``len(bitstream) * 8 / duration``. Call-like low delay:
no picture reordering, no future references, one intra picture at the start (``vvc``, ``hevc``, ``av1``);
``vvc-ra`` is H.266 random access (vvenc's default GOP with reordering, intra period 10 s), H.266's best
case, not call-like.

Rate targets are requests: vvenc's low-delay rate control overshoots several times over (see the project's
ENVIRONMENT.md, section 8), so :func:`search_rate` looks for the QP (or, for SVT-AV1's CBR, the requested
rate) whose achieved rate is closest to the target, with few probes: log(rate) is close to linear in QP
(about x2 per 6 QP), so it starts at the largest QP (the floor) and refines by the secant in log-rate.
Where the floor is above the target, the floor is used and flagged.
"""

from __future__ import annotations

import logging
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

FPS = 25
FRAME_SIZE = 256
_VVENC_LOW_DELAY = ("GOPSize=8:PicReordering=0:DecodingRefreshType=0:IntraPeriod=-1:POC0IDR=1:STA=0:NumRefPics=0:"
                    "MCTFFutureReference=0:IntraQPOffset=-1:AccessUnitDelimiter=0")


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor encoder configuration.

    Attributes:
        name: row label ("vvc", "vvc-ra", "hevc", "av1").
        label: human-readable name.
        control: "qp" (searched over [param_min, param_max], rate falls with it) or "kbps" (requested rate).
        param_min, param_max: searched range of the control parameter.
        pix_fmt: encoder input pixel format.
        stream_format: FFmpeg muxer of the raw bitstream (also the demuxer for decoding).
        decoder: FFmpeg decoder.
        args_template: encoder arguments; ``{p}`` is replaced by the parameter (QP, or kbit/s).
    """

    name: str
    label: str
    control: str
    param_min: int
    param_max: int
    pix_fmt: str
    stream_format: str
    decoder: str
    args_template: tuple[str, ...] = field(default=())

    def encoder_args(self, param: int) -> list[str]:
        """Encoder arguments for one parameter value."""
        return [a.replace("{p}", str(param)) for a in self.args_template]

    def flags(self) -> str:
        """The encoder flags as a command-line string (for the report)."""
        pre = ["-pix_fmt", self.pix_fmt]
        flags = " ".join(pre + list(self.args_template) + ["-f", self.stream_format])
        return f"{flags}   (decode: -c:v {self.decoder})"


def anchor_specs(vvenc_preset: str = "medium", threads: int = 2) -> dict[str, AnchorSpec]:
    """The anchors by row name (flags from ENVIRONMENT.md section 8, measured on this machine)."""
    t = str(threads)
    return {
        "vvc": AnchorSpec(
            "vvc", "H.266 vvenc low delay", "qp", 20, 63, "yuv420p10le", "vvc", "vvc",
            ("-c:v", "libvvenc", "-preset", vvenc_preset, "-threads", t, "-qp", "{p}",
             "-vvenc-params", _VVENC_LOW_DELAY)),
        "vvc-ra": AnchorSpec(
            "vvc-ra", "H.266 vvenc random access", "qp", 20, 63, "yuv420p10le", "vvc", "vvc",
            ("-c:v", "libvvenc", "-preset", vvenc_preset, "-threads", t, "-qp", "{p}", "-period", "10",
             "-vvenc-params", "AccessUnitDelimiter=0")),
        "hevc": AnchorSpec(
            "hevc", "H.265 x265 zerolatency", "qp", 20, 51, "yuv420p", "hevc", "hevc",
            ("-c:v", "libx265", "-preset", "medium", "-tune", "zerolatency", "-x265-params",
             f"keyint=-1:scenecut=0:info=0:log-level=error:pools={t}:qp={{p}}")),
        "av1": AnchorSpec(
            "av1", "AV1 SVT-AV1 low delay CBR", "kbps", 1, 2000, "yuv420p", "obu", "libdav1d",
            ("-c:v", "libsvtav1", "-preset", "8", "-b:v", "{p}k", "-svtav1-params",
             f"pred-struct=1:keyint=-1:rc=2:lp={t}")),
    }


def missing_encoders(specs: list[AnchorSpec], ffmpeg: str) -> list[str]:
    """Encoders of ``specs`` that the FFmpeg binary lacks (old imageio-ffmpeg builds have no libvvenc)."""
    listing = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = {line.split()[1] for line in listing.splitlines() if len(line.split()) > 1}
    wanted = {s.encoder_args(0)[s.encoder_args(0).index("-c:v") + 1] for s in specs}
    return sorted(wanted - names)


@dataclass(frozen=True)
class Encoded:
    """One encode: the bitstream and what it cost."""

    param: int
    bitstream: bytes
    encode_s: float
    num_frames: int

    @property
    def kbps(self) -> float:
        """Achieved rate, kbit/s, from the bitstream size over the clip's duration at 25 fps."""
        return len(self.bitstream) * 8.0 / (self.num_frames / FPS) / 1000.0


def _run(cmd: list[str], data: bytes) -> bytes:
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-600:]}")
    return proc.stdout


def encode(spec: AnchorSpec, frames: np.ndarray, param: int, ffmpeg: str) -> Encoded:
    """Encode RGB frames.

    Args:
        spec: the anchor.
        frames: uint8 (T, 256, 256, 3) RGB at 25 fps.
        param: QP or requested kbit/s (``spec.control``).
        ffmpeg: FFmpeg binary.

    Raises:
        RuntimeError: FFmpeg failed.
    """
    t, h, w, _ = frames.shape
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(FPS), "-i", "-", "-pix_fmt", spec.pix_fmt, *spec.encoder_args(param), "-f", spec.stream_format,
           "-"]
    start = time.perf_counter()
    out = _run(cmd, np.ascontiguousarray(frames, np.uint8).tobytes())
    return Encoded(param, out, time.perf_counter() - start, t)


def decode(spec: AnchorSpec, bitstream: bytes, num_frames: int, ffmpeg: str) -> tuple[np.ndarray, float]:
    """Decode a raw bitstream to RGB.

    Returns:
        (uint8 (num_frames, 256, 256, 3), decode seconds); short output is padded with its last frame.

    Raises:
        RuntimeError: FFmpeg failed or produced nothing.
    """
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-c:v", spec.decoder, "-f", spec.stream_format, "-i", "-",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    start = time.perf_counter()
    raw = _run(cmd, bitstream)
    seconds = time.perf_counter() - start
    frames = np.frombuffer(raw, np.uint8).reshape(-1, FRAME_SIZE, FRAME_SIZE, 3)
    if len(frames) == 0:
        raise RuntimeError(f"{spec.name}: decoder returned no frames")
    if len(frames) != num_frames:
        logger.warning("%s: decoded %d frames, expected %d", spec.name, len(frames), num_frames)
        frames = np.concatenate([frames, np.repeat(frames[-1:], max(0, num_frames - len(frames)), 0)])[:num_frames]
    return frames, seconds


@dataclass(frozen=True)
class SearchResult:
    """Chosen encode for one target rate.

    Attributes:
        target_kbps: the request.
        chosen: the encode whose achieved rate is closest to the target (log ratio).
        at_floor: the target is below the encoder's floor (largest QP / lowest rate it reaches).
        probes: (param, achieved kbit/s) of every probe used, in order.
    """

    target_kbps: float
    chosen: Encoded
    at_floor: bool
    probes: tuple[tuple[int, float], ...]


def search_rate(spec: AnchorSpec, target_kbps: float, probe: Callable[[int], Encoded],
                max_probes: int = 4, tolerance: float = 0.1) -> SearchResult:
    """Find the parameter whose achieved rate is closest to a target.

    Args:
        spec: the anchor (its control and range).
        target_kbps: requested kbit/s.
        probe: encodes at a parameter (callers cache it, so probes shared between targets are free).
        max_probes: most distinct parameters tried for this target.
        tolerance: stop when |log(rate / target)| < log(1 + tolerance).

    Returns:
        The search result.
    """
    tried: dict[int, Encoded] = {}

    def run(param: int) -> Encoded:
        if param not in tried:
            tried[param] = probe(param)
        return tried[param]

    def err(e: Encoded) -> float:
        return abs(math.log(max(e.kbps, 1e-6) / target_kbps))

    at_floor = False
    if spec.control == "kbps":
        param = max(spec.param_min, min(spec.param_max, round(target_kbps)))
        for _ in range(max_probes):
            e = run(param)
            if err(e) < math.log1p(tolerance):
                break
            nxt = max(spec.param_min, min(spec.param_max, round(param * target_kbps / max(e.kbps, 1e-6))))
            if nxt in tried:
                break
            param = nxt
        best = min(tried.values(), key=err)
        at_floor = best.kbps > target_kbps * (1 + tolerance) and spec.param_min in tried
    else:
        top = run(spec.param_max)
        if top.kbps >= target_kbps:
            at_floor = True
        else:
            # rate ~ top.kbps * 2 ** ((param_max - qp) / 6)
            qp = round(spec.param_max - 6.0 * math.log2(target_kbps / top.kbps))
            while len(tried) < max_probes:
                qp = max(spec.param_min, min(spec.param_max - 1, qp))
                if qp in tried:
                    break
                e = run(qp)
                if err(e) < math.log1p(tolerance):
                    break
                lower = [p for p, v in tried.items() if v.kbps > target_kbps]  # QPs giving too many bits
                upper = [p for p, v in tried.items() if v.kbps <= target_kbps]
                if lower and upper:
                    p0, p1 = max(lower), min(upper)  # bracket: p0 < p1
                    if p1 - p0 <= 1:
                        break
                    r0, r1 = math.log(tried[p0].kbps), math.log(tried[p1].kbps)
                    frac = (r0 - math.log(target_kbps)) / max(r0 - r1, 1e-9)
                    qp = min(p1 - 1, max(p0 + 1, round(p0 + frac * (p1 - p0))))
                else:
                    # log-rate slope per QP of the two latest probes, kept to x2 per 4..8 QP (the curve flattens
                    # near the floor, where the intra picture dominates); x2 per 6 QP before there are two
                    slope = math.log(2.0) / 6.0
                    if len(tried) >= 2:
                        (pa, ea), (pb, eb) = list(tried.items())[-2:]
                        if pa != pb and ea.kbps > 0 and eb.kbps > 0:
                            slope = (math.log(ea.kbps) - math.log(eb.kbps)) / (pb - pa)
                        slope = min(math.log(2.0) / 4.0, max(math.log(2.0) / 8.0, slope))
                    qp = round(qp - math.log(target_kbps / e.kbps) / slope)
        best = min(tried.values(), key=err)
        if at_floor:
            best = top
    probes = tuple((p, e.kbps) for p, e in tried.items())
    return SearchResult(float(target_kbps), best, at_floor, probes)
