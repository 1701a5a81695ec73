"""Anchor video codecs for the benchmark: H.266 (vvenc), H.265 (x265), AV1 (SVT-AV1) through FFmpeg.

All run from the imageio-ffmpeg binary on raw RGB frames (256x256, 25 fps) piped in, and write a raw
bitstream (no container), so the achieved rate is ``len(bitstream) * 8 / duration``. A spec may encode a reduced
size and frame rate (``AnchorSpec.size``, ``fps``; :mod:`avfr.benchmarks.reduced`). Call-like low delay:
no picture reordering, no future references, one intra picture at the start (``vvc``, ``hevc``, ``av1``);
``vvc-ra`` is H.266 random access (vvenc's default GOP with reordering, intra period 10 s), H.266's best
case, not call-like.

Rate targets are requests: vvenc's low-delay rate control overshoots several times over (see the project's
ENVIRONMENT.md, section 8), so :func:`search_rate` looks for the QP (or, for SVT-AV1's CBR, the requested
rate) whose achieved rate is closest to the target, with few probes: log(rate) is close to linear in QP
(about x2 per 6 QP), so it starts at the largest QP (the floor) and refines by the secant in log-rate.
Where the floor is above the target, the floor is used and flagged.

vvenc at ``-preset medium`` is slow here (~6 fps at 256x256), so its QP is searched by :func:`search_rate_probed`:
the floor is encoded at the reported settings, the QP search runs on cheap probes (the same flags at ``-preset
faster``, whole clip: 5-8x faster, rate within ~5-10 %), and only the QP found is encoded at the reported
settings (plus one correction when that misses by more than the tolerance): reported rates and metrics come from
reported-settings bitstreams. x265 and SVT-AV1 encode in under a second and keep the direct search.
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
        size: side of the encoded picture, px (< 256: the input is scaled down with ``flags=area``).
        fps: encoded frame rate, 25 / an integer: every ``step``-th frame of the 25 fps clip is encoded.
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
    size: int = FRAME_SIZE
    fps: float = FPS

    @property
    def step(self) -> int:  # frames of the 25 fps clip per encoded frame (1 at 25 fps, 2 at 12.5 fps)
        return round(FPS / self.fps)

    @property
    def encoder(self) -> str:
        """The FFmpeg encoder (the ``-c:v`` value)."""
        return self.args_template[self.args_template.index("-c:v") + 1]

    def encoder_args(self, param: int) -> list[str]:
        """Encoder arguments for one parameter value."""
        return [a.replace("{p}", str(param)) for a in self.args_template]

    def flags(self) -> str:
        """The encoder flags as a command-line string (for the report)."""
        small = self.step > 1 or self.size != FRAME_SIZE
        pre = (["-r", f"{self.fps:g}", "-vf", f"scale={self.size}:{self.size}:flags=area"] if small else []) + [
            "-pix_fmt", self.pix_fmt]
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
    wanted = {s.encoder for s in specs}
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
    """Encode RGB frames (every ``spec.step``-th, scaled to ``spec.size`` when smaller).

    Args:
        spec: the anchor.
        frames: uint8 (T, 256, 256, 3) RGB at 25 fps.
        param: QP or requested kbit/s (``spec.control``).
        ffmpeg: FFmpeg binary.

    Returns:
        The encode; its ``num_frames`` is T (the rate is over the whole clip's duration at 25 fps).

    Raises:
        RuntimeError: FFmpeg failed.
    """
    t, h, w, _ = frames.shape
    scale = ["-vf", f"scale={spec.size}:{spec.size}:flags=area"] if spec.size != w else []
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", f"{spec.fps:g}", "-i", "-", *scale, "-pix_fmt", spec.pix_fmt, *spec.encoder_args(param),
           "-f", spec.stream_format, "-"]
    start = time.perf_counter()
    out = _run(cmd, np.ascontiguousarray(frames[:: spec.step], np.uint8).tobytes())
    return Encoded(param, out, time.perf_counter() - start, t)


def decode(spec: AnchorSpec, bitstream: bytes, num_frames: int, ffmpeg: str) -> tuple[np.ndarray, float]:
    """Decode a raw bitstream to RGB at the encoded size and rate.

    Returns:
        (uint8 (num_frames, spec.size, spec.size, 3), decode seconds); short output is padded with its last frame.

    Raises:
        RuntimeError: FFmpeg failed or produced nothing.
    """
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-c:v", spec.decoder, "-f", spec.stream_format, "-i", "-",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    start = time.perf_counter()
    raw = _run(cmd, bitstream)
    seconds = time.perf_counter() - start
    frames = np.frombuffer(raw, np.uint8).reshape(-1, spec.size, spec.size, 3)
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
        chosen: the encode (at the reported settings) whose achieved rate is closest to the target (log ratio).
        at_floor: the target is below the encoder's floor (largest QP / lowest rate it reaches).
        probes: (param, achieved kbit/s) of every encode at the reported settings, in order.
        cheap_probes: (param, achieved kbit/s) of the cheap probes that guided the search (:func:`search_rate_probed`).
        method: "direct" (every probe at the reported settings) or "probed" (cheap probes, then the reported
            encode and at most one correction).
    """

    target_kbps: float
    chosen: Encoded
    at_floor: bool
    probes: tuple[tuple[int, float], ...]
    cheap_probes: tuple[tuple[int, float], ...] = ()
    method: str = "direct"


def _log_err(e: Encoded, target_kbps: float) -> float:
    return abs(math.log(max(e.kbps, 1e-6) / target_kbps))


def _next_qp(known: dict[int, Encoded], target_kbps: float, qp: int, e: Encoded) -> int | None:
    """The next QP to probe after ``e`` (at ``qp``), from every rate known so far (in probe order).

    Returns:
        The QP (unclamped), or None when two adjacent QPs already bracket the target.
    """
    lower = [p for p, v in known.items() if v.kbps > target_kbps]  # QPs giving too many bits
    upper = [p for p, v in known.items() if v.kbps <= target_kbps]
    if lower and upper:
        p0, p1 = max(lower), min(upper)  # bracket: p0 < p1
        if p1 - p0 <= 1:
            return None
        r0, r1 = math.log(known[p0].kbps), math.log(known[p1].kbps)
        frac = (r0 - math.log(target_kbps)) / max(r0 - r1, 1e-9)
        return min(p1 - 1, max(p0 + 1, round(p0 + frac * (p1 - p0))))
    # log-rate slope per QP of the two latest probes, kept to x2 per 4..8 QP (the curve flattens near the floor,
    # where the intra picture dominates); x2 per 6 QP before there are two
    slope = math.log(2.0) / 6.0
    if len(known) >= 2:
        (pa, ea), (pb, eb) = list(known.items())[-2:]
        if pa != pb and ea.kbps > 0 and eb.kbps > 0:
            slope = (math.log(ea.kbps) - math.log(eb.kbps)) / (pb - pa)
        slope = min(math.log(2.0) / 4.0, max(math.log(2.0) / 8.0, slope))
    return round(qp - math.log(target_kbps / e.kbps) / slope)


def search_rate(spec: AnchorSpec, target_kbps: float, probe: Callable[[int], Encoded],
                max_probes: int = 4, tolerance: float = 0.1, floor: Encoded | None = None) -> SearchResult:
    """Find the parameter whose achieved rate is closest to a target.

    Args:
        spec: the anchor (its control and range).
        target_kbps: requested kbit/s.
        probe: encodes at a parameter (callers cache it, so probes shared between targets are free).
        max_probes: most distinct parameters tried for this target.
        tolerance: stop when |log(rate / target)| < log(1 + tolerance).
        floor: QP control only: an encode at the largest QP made elsewhere (e.g. at slower settings) whose rate
            starts the search instead of probing the largest QP; it brackets the search but is never chosen,
            and the result never says ``at_floor`` (the caller judges the floor).

    Returns:
        The search result.
    """
    tried: dict[int, Encoded] = {}

    def run(param: int) -> Encoded:
        if param not in tried:
            tried[param] = probe(param)
        return tried[param]

    def err(e: Encoded) -> float:
        return _log_err(e, target_kbps)

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
        top = floor if floor is not None else run(spec.param_max)
        known = {spec.param_max: top} if floor is not None else tried  # what brackets the search (floor included)
        if floor is None and top.kbps >= target_kbps:
            at_floor = True
        else:
            # rate ~ top.kbps * 2 ** ((param_max - qp) / 6)
            qp = round(spec.param_max - 6.0 * math.log2(target_kbps / top.kbps))
            while len(tried) < max_probes:
                qp = max(spec.param_min, min(spec.param_max - 1, qp))
                if qp in tried:
                    break
                e = run(qp)
                if floor is not None:
                    known[qp] = e
                if err(e) < math.log1p(tolerance):
                    break
                nxt = _next_qp(known, target_kbps, qp, e)
                if nxt is None:
                    break
                qp = nxt
        best = top if at_floor else min(tried.values(), key=err)
    probes = tuple((p, e.kbps) for p, e in tried.items())
    return SearchResult(float(target_kbps), best, at_floor, probes)


def search_rate_probed(spec: AnchorSpec, target_kbps: float, probe: Callable[[int], Encoded],
                       cheap_probe: Callable[[int], Encoded], max_probes: int = 4, tolerance: float = 0.1
                       ) -> SearchResult:
    """QP search on cheap probes, then the encode at the reported settings (plus at most one correction).

    Steps (QP control only):

    1. ``probe(param_max)`` at the reported settings: the encoder's floor. A target at or below it is
       ``at_floor`` and that encode is chosen; a floor within the tolerance below the target is chosen too.
    2. :func:`search_rate` with ``cheap_probe`` (e.g. vvenc ``-preset faster`` on the whole clip, 5-8x faster
       than ``medium`` at the QPs that matter, its rate within ~5-10 % of medium's), started from the floor's
       rate, to half the tolerance and up to ``max_probes + 2`` cheap probes.
    3. ``probe(qp)`` at the cheap search's QP. When its achieved rate misses the target by more than the
       tolerance, one correction: the cheap rate curve scaled by the measured reported/cheap rate ratio gives
       the QP closest to the target (the secant continues on the cheap probes, up to ``max_probes`` more),
       encoded at the reported settings (one QP further when the curve gives the same QP again).
    4. The encode closest to the target among the reported-settings encodes of steps 1-3.

    Every reported rate is thus measured from a bitstream made at the reported settings; the cheap probes only
    choose the QP.

    Args:
        spec: the anchor (``control == "qp"``).
        target_kbps: requested kbit/s.
        probe: encodes at the reported settings (cached by the caller).
        cheap_probe: encodes at the cheap settings (cached by the caller).
        max_probes: probes of the direct search this replaces (the cheap search may use two more).
        tolerance: relative rate error accepted without a correction encode.

    Returns:
        The search result (``method == "probed"``).

    Raises:
        ValueError: the anchor is not QP-controlled.
    """
    if spec.control != "qp":
        raise ValueError(f"{spec.name}: probed search needs QP control, not {spec.control}")
    tol = math.log1p(tolerance)
    finals: dict[int, Encoded] = {}
    cheap: dict[int, Encoded] = {}

    def run(param: int) -> Encoded:
        if param not in finals:
            finals[param] = probe(param)
        return finals[param]

    def run_cheap(param: int) -> Encoded:
        if param not in cheap:
            cheap[param] = cheap_probe(param)
        return cheap[param]

    def result(at_floor: bool) -> SearchResult:
        best = finals[spec.param_max] if at_floor else min(finals.values(), key=lambda e: _log_err(e, target_kbps))
        return SearchResult(float(target_kbps), best, at_floor, tuple((p, e.kbps) for p, e in finals.items()),
                            tuple((p, e.kbps) for p, e in cheap.items()), "probed")

    top = run(spec.param_max)
    if top.kbps >= target_kbps:
        return result(at_floor=True)
    if _log_err(top, target_kbps) < tol:
        return result(at_floor=False)
    guess = search_rate(spec, target_kbps, run_cheap, max_probes + 2, tolerance / 2, floor=top)
    first = run(guess.chosen.param)
    if _log_err(first, target_kbps) < tol:
        return result(at_floor=False)
    # the reported settings spend `ratio` times the cheap rate here: continue on the cheap curve (the probes made
    # so far bracket it) towards target / ratio
    goal = target_kbps / (first.kbps / max(guess.chosen.kbps, 1e-6))
    known = {spec.param_max: top, **cheap}

    def closest() -> Encoded:
        return min(cheap.values(), key=lambda e: _log_err(e, goal))

    for _ in range(max_probes):
        near = closest()
        if _log_err(near, goal) < math.log1p(tolerance / 2):
            break
        nxt = _next_qp(known, goal, near.param, near)
        if nxt is None:
            break
        nxt = max(spec.param_min, min(spec.param_max - 1, nxt))
        if nxt in cheap:
            break
        known[nxt] = run_cheap(nxt)
    qp = closest().param
    if qp == first.param:  # the cheap curve moves by a whole QP less than the miss: step one QP
        qp = max(spec.param_min, min(spec.param_max - 1, first.param + (1 if first.kbps > target_kbps else -1)))
    run(qp)
    return result(at_floor=False)
