"""Settings of a bench run and the per-clip parts it resumes from.

A clip's result is made of parts (:func:`clip_parts`): the still row, each avfr operating point, the
cross-identity rows and each anchor codec (its rows at every target rate and its rate searches). Each part is
saved as ``<out>/clips/<clip_id>.parts/<name>-<key>.json`` (plus a PNG of its strip frames, for the strip's
columns), keyed by a hash of exactly the settings that change it (:class:`ClipPart`), and reused by any later
run into the same folder that needs it. So a new avfr model, or new points, re-runs only the avfr (and cross)
rows; a new rate or preset re-runs only the anchors; older parts stay for runs that go back. The assembled
result is ``<out>/clips/<clip_id>.json`` (keyed by the whole :class:`BenchConfig`: a re-run with the same
settings reads just that file, :func:`load_done`); rows keep a fixed order, so a resumed clip equals a fresh run
but for timings.

Anchor parts saved before their rows carried the byte counts of the rate accountings
(:data:`avfr.benchmarks.accounting.ANCHOR_FIELDS`) get them from the bitstreams kept in ``<out>/work``
(:func:`load_saved`), and are recomputed where those are gone; the parts' keys are unchanged. A run at another
speech rate (``BenchConfig.opus_kbps``) re-runs the avfr parts only: their key names the rate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from avfr.benchmarks import accounting, anchors, reduced
from avfr.benchmarks.avfr_call import (
    AUDIO_BITRATE_BPS,
    AVFR_PATH_VERSION,
    AVFR_POINTS,
    SOURCE_WEBP_QUALITY,
    array_digest,
)
from avfr.benchmarks.evaluator import METRICS_VERSION, identity_status
from avfr.codec.data import SAMPLES_PER_FRAME
from avfr.proto import WIRE_VERSION

ANCHOR_SEARCH_VERSION = 2  # 2: vvenc QP searched on cheap probes (1: every probe at the reported preset)
STRIP_FRAMES = 4


@dataclass(frozen=True)
class BenchConfig:
    """Settings of a run (their hash keys the assembled per-clip files; :func:`clip_parts` keys the parts)."""

    bitrates_kbps: tuple[float, ...]
    codecs: tuple[str, ...]
    avfr_points: tuple[str, ...]
    cross: bool = False
    max_frames: int = 0  # 0: whole clips
    vvenc_preset: str = "medium"
    max_probes: int = 4
    threads: int = 2
    identity: bool = True
    probe_preset: str = "faster"  # vvenc preset of the QP-search probes ("" or = vvenc_preset: direct search)
    model: str = ""  # SHA-256 prefix of the avfr model's ONNX manifest ("" without avfr): a new model re-runs
    opus_kbps: float = AUDIO_BITRATE_BPS / 1000  # the speech's Opus rate (avfr's sender; every row's kbps_call)

    def key(self) -> str:
        """Hash of the settings, the versions, and each avfr point's definition and sender (EncoderConfig): a new
        point definition or call default must not reuse an assembled clip whose avfr parts it changes."""
        senders = ({p: {"point": asdict(AVFR_POINTS[p]), "sender": _sender(p, self)} for p in self.avfr_points}
                   if "avfr" in self.codecs else {})
        keyed = {**asdict(self), "avfr_path_version": AVFR_PATH_VERSION, "metrics_version": METRICS_VERSION,
                 "anchor_search_version": ANCHOR_SEARCH_VERSION,
                 "rate_accounting_version": accounting.RATE_ACCOUNTING_VERSION, "avfr_senders": senders}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def audio_bitrate_bps(self) -> int:
        """The sender's ``EncoderConfig.audio_bitrate_bps``: ``opus_kbps`` in bit/s."""
        return round(self.opus_kbps * 1000)

    def clip_frames(self, clip_num_frames: int) -> int:
        """Frames benchmarked of a clip of ``clip_num_frames`` frames (``max_frames``, 0: all)."""
        return clip_num_frames if self.max_frames <= 0 else min(self.max_frames, clip_num_frames)

    def featured_point(self) -> str:
        """The avfr point of the frame strip and the cross-identity rows: q7 (the call's default) when benched,
        else the first."""
        return "q7" if "q7" in self.avfr_points else self.avfr_points[0]


STRIP_ANCHORS = ("vvc", "av1")  # anchor columns of the frame strip (their lowest-rate encode)


@dataclass(frozen=True)
class ClipPart:
    """One independently reusable piece of a clip's result.

    Saved as ``<out>/clips/<clip_id>.parts/<name>-<key>.json``, plus ``<name>-<key>.png`` (its frames of the
    strip, stacked vertically) when it has a strip column. The key hashes everything that changes the part's
    rows and nothing else, so any later run into the same folder that needs the part reuses it.

    Attributes:
        kind: "still", "avfr" (one operating point), "cross" (the cross-identity rows) or "anchor" (one codec's
            rows at every target rate, and its rate searches).
        arg: the operating point ("avfr", "cross"), the codec ("anchor"), "" ("still").
        key: 16 hex digits of the SHA-256 of ``fields``.
        fields: canonical JSON of what the key hashes (copied into the part file).
        steps: progress-bar ticks when it is computed.
    """

    kind: str
    arg: str
    key: str
    fields: str
    steps: int

    @property
    def name(self) -> str:
        """The file name's stem: still, avfr-<point>, cross-<point> or the anchor codec."""
        return {"still": "still", "anchor": self.arg}.get(self.kind, f"{self.kind}-{self.arg}")

    def path(self, out_dir: Path, clip_id: str) -> Path:
        """The part's JSON file."""
        return out_dir / "clips" / f"{clip_id}.parts" / f"{self.name}-{self.key}.json"


def _part(kind: str, arg: str, steps: int, **fields: object) -> ClipPart:
    text = json.dumps(fields, sort_keys=True)
    return ClipPart(kind, arg, hashlib.sha256(text.encode()).hexdigest()[:16], text, steps)


def _sender(point: str, config: BenchConfig) -> dict:
    """Every setting of the sender an avfr point runs (``EncoderConfig``), so that a change of the call's
    defaults (the rate budget, the refresh) re-runs the avfr parts instead of reusing stale rows."""
    return asdict(AVFR_POINTS[point].encoder_config(config.threads, audio_bitrate_bps=config.audio_bitrate_bps))


def clip_parts(clip, config: BenchConfig, cross_source: np.ndarray | None = None) -> list[ClipPart]:
    """The parts of a clip's result, in the order of its rows.

    Keys: every part hashes the benchmarked frames, speech and reference landmarks, the metrics version and
    whether rows get an identity distance. The still row adds the source's WebP quality; an avfr point adds
    the model's manifest hash, the wire version (its packet sizes are the rate), its settings
    (:class:`avfr.benchmarks.avfr_call.AvfrPoint`, and every field of the ``EncoderConfig`` it runs), the path
    version, ``threads`` and the speech's Opus rate (the generator hears it decoded); the cross part adds the cross
    source image; an anchor codec adds its encoder flags (with the preset and threads; a reduced-size anchor
    also its size and frame rate), those of its QP-search probes, the target rates, ``max_probes`` and the
    search version. The speech rate keys no still or anchor part: their speech columns are computed when the
    clip is assembled (:func:`avfr.benchmarks.accounting.speech_stream`), under the whole config's key.

    Args:
        clip: a prepared clip (``avfr.codec.data.cache.ClipArrays``).
        config: the run's settings.
        cross_source: uint8 (256, 256, 3) source image of the cross-identity rows (None: no cross rows).
    """
    n = config.clip_frames(clip.num_frames)
    base = {"num_frames": n, "metrics_version": METRICS_VERSION,
            "inputs": array_digest(clip.frames[:n], clip.pcm[: n * SAMPLES_PER_FRAME], clip.landmarks[:n]),
            "identity": identity_status(config.identity)[0]}
    parts = [_part("still", "", 1, **base, source_quality=SOURCE_WEBP_QUALITY)]
    if "avfr" in config.codecs:
        avfr = {**base, "model": config.model, "threads": config.threads, "avfr_path_version": AVFR_PATH_VERSION,
                "wire_version": WIRE_VERSION,
                "source_quality": SOURCE_WEBP_QUALITY, "audio_bitrate_bps": config.audio_bitrate_bps}
        parts += [_part("avfr", p, 1, **avfr, point=asdict(AVFR_POINTS[p]), sender=_sender(p, config))
                  for p in config.avfr_points]
        if config.cross and cross_source is not None:
            p = config.featured_point()
            parts.append(_part("cross", p, 1, **avfr, point=asdict(AVFR_POINTS[p]), sender=_sender(p, config),
                               cross_source=array_digest(cross_source)))
    specs, cheap = reduced.bench_specs(config.vvenc_preset, config.threads), probe_specs(config)
    for codec in config.codecs:
        if codec != "avfr":
            parts.append(_part("anchor", codec, len(config.bitrates_kbps), **base,
                               spec=reduced.spec_fields(specs[codec]),
                               probe_spec=reduced.spec_fields(cheap[codec]) if codec in cheap else None,
                               bitrates_kbps=list(config.bitrates_kbps), max_probes=config.max_probes,
                               anchor_search_version=ANCHOR_SEARCH_VERSION))
    return parts


def load_part(path: Path, part: ClipPart, strip_shape: tuple[int, ...]) -> dict | None:
    """A saved part (its strip frames, uint8 ``strip_shape``, under "strip_frames"), or None when it is absent,
    unreadable or not this part."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != part.key or not isinstance(data.get("rows"), list):
        return None
    if data.get("strip_kbps") is not None:
        png = path.with_suffix(".png")
        image = cv2.imread(str(png), cv2.IMREAD_COLOR) if png.is_file() else None
        s, h, w, c = strip_shape
        if image is None or image.shape != (s * h, w, c):
            return None
        data["strip_frames"] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).reshape(strip_shape)
    return data


def save_part(path: Path, part: ClipPart, data: dict, strip_frames: np.ndarray | None) -> dict:
    """Write a part (PNG first, then the JSON, each by an atomic rename) and return it as :func:`load_part`
    would read it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if strip_frames is not None:
        s, h, w, c = strip_frames.shape
        tmp = path.with_name(f"{path.stem}.tmp.png")
        if not cv2.imwrite(str(tmp), cv2.cvtColor(strip_frames.reshape(s * h, w, c), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {tmp}")
        tmp.replace(path.with_suffix(".png"))
    text = json.dumps({"part": part.name, "key": part.key, "fields": json.loads(part.fields), **data}, indent=1)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    saved = json.loads(text)
    if strip_frames is not None:
        saved["strip_frames"] = strip_frames
    return saved


def load_saved(out_dir: Path, clip, config: BenchConfig, part: ClipPart, strip_shape: tuple[int, ...]
               ) -> dict | None:
    """A clip's saved part (:func:`load_part`); an anchor part whose rows lack the byte counts of the rate
    accountings gets them from its bitstreams in ``<out>/work/<clip_id>/<codec>``, or is None (recomputed) when
    one of them is gone or does not match (:func:`avfr.benchmarks.accounting.fill_anchor_fields`)."""
    data = load_part(part.path(out_dir, clip.clip_id), part, strip_shape)
    if data is None or part.kind != "anchor":
        return data
    spec = reduced.bench_specs(config.vvenc_preset, config.threads)[part.arg]
    n = config.clip_frames(clip.num_frames)
    flags = {r.get("param"): " ".join(spec.encoder_args(r.get("param"))) for r in data["rows"]}
    ok = accounting.fill_anchor_fields(data["rows"], out_dir / "work" / clip.clip_id / part.arg, flags,
                                       spec.stream_format, n, n / anchors.FPS)
    return data if ok else None


def strip_indices(num_frames: int) -> np.ndarray:
    """The frames of the strip: int64 (<= STRIP_FRAMES,), spread evenly over ``num_frames``."""
    return np.unique(np.linspace(0, num_frames - 1, min(STRIP_FRAMES, num_frames)).round().astype(int))


def clip_strip_shape(clip, config: BenchConfig) -> tuple[int, ...]:
    """The shape of a clip's strip frames: (S, 256, 256, 3), S from :func:`strip_indices`."""
    return (len(strip_indices(config.clip_frames(clip.num_frames))), *clip.frames.shape[1:])


def missing_parts(out_dir: Path, clip, config: BenchConfig, cross_source: np.ndarray | None = None
                  ) -> list[ClipPart]:
    """The parts of a clip that :func:`avfr.benchmarks.rate_quality.run_clip` has to compute (no valid saved
    file in ``out_dir``)."""
    shape = clip_strip_shape(clip, config)
    return [p for p in clip_parts(clip, config, cross_source) if load_saved(out_dir, clip, config, p, shape) is None]


def probe_specs(config: BenchConfig) -> dict[str, anchors.AnchorSpec]:
    """The cheap-probe variants of the vvenc anchors, reduced-size ones included (``config.probe_preset``; empty
    when it is off)."""
    if not config.probe_preset or config.probe_preset == config.vvenc_preset:
        return {}
    cheap = reduced.bench_specs(config.probe_preset, config.threads)
    return {c: cheap[c] for c in config.codecs if c in cheap and cheap[c].encoder == "libvvenc"}


def load_done(out_dir: Path, clip_id: str, config: BenchConfig) -> dict | None:
    """A finished clip's saved result, when it was made with the same settings (``config.key()``)."""
    path = out_dir / "clips" / f"{clip_id}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    return data if data.get("config_key") == config.key() else None
