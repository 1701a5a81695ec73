"""``avfr-codec bench``: rate-quality curves of avfr against a still image and H.266 / H.265 / AV1."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avfr.benchmarks import BenchConfig

logger = logging.getLogger(__name__)

ANCHORS = ("vvc", "vvc-ra", "hevc", "av1")
REDUCED_HELP = ("vvc-small / av1-small: H.266 low delay / AV1 at reduced size and frame rate (e.g. vvc-s128f12.5 = "
                "128x128 at 12.5 fps; sizes 256/192/128/96, 25, 12.5 or 6.25 fps), shown upscaled (Lanczos) and "
                "frame-repeated to 256x256 at 25 fps; not in the default set (each configuration is a full QP search)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "bench",
        help="rate-quality benchmark: avfr vs still vs H.266/H.265/AV1 on talking-head clips",
        description="Run avfr's sender -> packets -> receiver path and anchor encoders (imageio-ffmpeg: libvvenc, "
        "libx265, libsvtav1; low delay, QP searched to the requested rates) on every clip, measure quality "
        "(L1, PSNR, SSIM, MS-SSIM, VMAF, LMD, mouth LMD, lip-sync proxy, identity distance, jitter) and write "
        "report.json, report.md, plots and frame strips. A re-run into the same --out reuses every part of a "
        "clip whose settings did not change (the still row, each anchor codec, each avfr point): a new --model "
        "or new --avfr-points re-run only the avfr rows.",
    )
    p.add_argument("--clips", metavar="DIR", type=Path, required=True,
                   help="folder with manifest.json, a folder of <id>.mp4 (+ <id>.wav) clips, or one video")
    p.add_argument("--bitrate", default="2,4,8,16,32", help="anchor target rates, kbit/s, comma-separated")
    p.add_argument("--codecs", default="avfr,vvc,vvc-ra,hevc,av1",
                   help="avfr and anchors among vvc (H.266 low delay), vvc-ra (H.266 random access), hevc, av1 "
                   f"(default: these); {REDUCED_HELP}; the still row is always made")
    p.add_argument("--avfr-points", default="q6,q7,q8,q10",
                   help="avfr operating points (q6, q7 = the call default, q8, q10)")
    p.add_argument("--cross", action="store_true", help="also cross-identity reenactment (no-reference metrics)")
    p.add_argument("--out", metavar="REPORT_DIR", type=Path, required=True, help="report folder")
    p.add_argument("--split", default=None, help="only clips of this split (with a manifest: train, dev)")
    p.add_argument("--ids", default=None, help="only these clip ids, comma-separated")
    p.add_argument("--max-frames", type=int, default=0, help="use at most this many frames per clip (0: all)")
    p.add_argument("--model", metavar="MANIFEST", type=Path, default=None,
                   help="avfr model: an ONNX manifest written by `avfr-codec export` (default: the shipped model)")
    p.add_argument("--cache", metavar="DIR", type=Path, default=None, help="prepared-clip cache folder")
    p.add_argument("--vvenc-preset", default="medium", help="vvenc preset of the reported encodes (default: medium)")
    p.add_argument("--probe-preset", default="faster",
                   help="vvenc preset of the cheap whole-clip probes that search the QP; only the QP found (plus "
                   "at most one correction) is encoded at --vvenc-preset (default: faster; 'off' or the same "
                   "preset as --vvenc-preset: every probe at --vvenc-preset)")
    p.add_argument("--max-probes", type=int, default=4, help="encodes per target in the QP search (default: 4)")
    p.add_argument("--threads", type=int, default=2, help="encoder / onnxruntime threads (default: 2)")
    p.add_argument("--opus-kbps", type=float, default=12.0,
                   help="the speech's Opus rate, 6..16 kbit/s (default 12, the call's): avfr's sender codes the "
                   "speech at it (the generator hears it decoded) and every row's whole-call kbps_call counts it")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity distance")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench)


def _parse_codecs(text: str) -> tuple[str, ...]:
    """--codecs: names, with ``<codec>-small`` expanded to its reduced-size configurations."""
    from avfr.benchmarks.reduced import FAMILIES, reduced_specs
    from avfr.cli import CliError

    codecs = [n for c in text.split(",") if c.strip() for n in FAMILIES.get(c.strip(), (c.strip(),))]
    bad = [c for c in codecs if c not in ("avfr", *ANCHORS, *reduced_specs())]
    if bad:
        raise CliError(f"unknown codec(s) {', '.join(bad)}: choose from avfr, {', '.join(ANCHORS)}, "
                       f"{', '.join(FAMILIES)} or one configuration such as vvc-s128f12.5")
    return tuple(dict.fromkeys(codecs))


def bench_config(args: argparse.Namespace) -> tuple[BenchConfig, Path | None]:
    """The run's settings from the parsed arguments, and the avfr model's manifest (None without avfr).

    Raises:
        CliError: a bad --bitrate, --avfr-points, --codecs, --opus-kbps or --model.
    """
    from avfr.benchmarks import AVFR_POINTS, BenchConfig
    from avfr.benchmarks.accounting import OPUS_KBPS_RANGE
    from avfr.cli import CliError

    try:
        rates = tuple(float(r) for r in args.bitrate.split(",") if r.strip())
    except ValueError as exc:
        raise CliError(f"--bitrate must be comma-separated numbers: {exc}") from exc
    if not rates or min(rates) <= 0:
        raise CliError("--bitrate needs at least one positive rate")
    points = tuple(p.strip() for p in args.avfr_points.split(",") if p.strip())
    if not points or any(p not in AVFR_POINTS for p in points):
        raise CliError(f"--avfr-points: choose from {', '.join(AVFR_POINTS)}")
    low, high = OPUS_KBPS_RANGE
    if not low <= args.opus_kbps <= high:
        raise CliError(f"--opus-kbps must be in {low:g}..{high:g}, got {args.opus_kbps:g}")
    probe_preset = "" if args.probe_preset in ("off", "", args.vvenc_preset) else args.probe_preset
    codecs = _parse_codecs(args.codecs)
    model, manifest = "", None
    if "avfr" in codecs:  # the model's manifest (it names every graph's SHA-256) keys the resume files
        from avfr.codec.nets import file_sha256
        from avfr.codec.runtime import shipped_manifest

        manifest = args.model if args.model is not None else shipped_manifest()
        if not manifest.is_file():
            raise CliError(f"--model: no manifest at {manifest}")
        model = file_sha256(manifest)[:16]
    return BenchConfig(tuple(sorted(rates)), codecs, points, args.cross, args.max_frames, args.vvenc_preset,
                       args.max_probes, args.threads, not args.no_identity, probe_preset, model,
                       float(args.opus_kbps)), manifest


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import subprocess

    from avfr.benchmarks import ffmpeg_exe, identity_backend

    out = {}
    for pkg in ("avfr-codec", "onnxruntime", "mediapipe", "torch", "torchmetrics", "numpy", "imageio-ffmpeg",
                "dlib-bin"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    first = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True).stdout
    out["ffmpeg"] = first.splitlines()[0] if first else "?"
    out["identity"] = identity_backend()[1]
    return out


def _bench(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from avfr.benchmarks import (
        AVFR_POINTS,
        CALL_SECONDS,
        SOURCE_WEBP_QUALITY,
        AvfrModels,
        Evaluator,
        envelope,
        ffmpeg_exe,
        identity_status,
        load_done,
        missing_encoders,
        missing_parts,
        probe_specs,
        run_clip,
        verdict,
    )
    from avfr.benchmarks import report as bench_report
    from avfr.benchmarks.bd_rate import bd_rate_points
    from avfr.benchmarks.reduced import bench_specs, display_flags
    from avfr.cli import CliError
    from avfr.codec.data import default_cache_dir, load_clips

    config, manifest = bench_config(args)
    points = config.avfr_points
    specs = bench_specs(config.vvenc_preset, config.threads)
    missing = missing_encoders([specs[c] for c in config.codecs if c in specs], ffmpeg_exe())
    if missing:
        raise CliError(f"the imageio-ffmpeg binary lacks {', '.join(missing)}: update imageio-ffmpeg or drop "
                       "those codecs from --codecs")
    clips = load_clips(args.clips, args.cache or default_cache_dir(), split=args.split)
    if args.ids:
        wanted = {i.strip() for i in args.ids.split(",")}
        clips = [c for c in clips if c.clip_id in wanted]
    if not clips:
        raise CliError(f"no clips in {args.clips}" + (f" (split {args.split})" if args.split else ""))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    results = []
    done = {c.clip_id: load_done(out, c.clip_id, config) for c in clips}
    cross_src = {}  # clip index -> the cross-identity source: the next clip's frame 0 (another identity)
    if config.cross and len(clips) > 1:
        cross_src = {k: np.ascontiguousarray(clips[(k + 1) % len(clips)].frames[0]) for k in range(len(clips))}
    # what is left to compute: the parts without a saved file (a new model re-runs only the avfr parts)
    todo = [p for k, c in enumerate(clips) if done[c.clip_id] is None
            for p in missing_parts(out, c, config, cross_src.get(k))]
    bar = tqdm(total=sum(p.steps for p in todo), unit="step", disable=args.quiet or not todo, file=sys.stderr)
    need_models = any(p.kind in ("avfr", "cross") for p in todo)
    models = AvfrModels.load(args.threads, args.model) if need_models else None
    evaluator = Evaluator.create(config.identity) if todo else None
    try:
        for k, clip in enumerate(clips):
            if done[clip.clip_id] is not None:
                logger.info("%s: reusing %s", clip.clip_id, out / "clips" / f"{clip.clip_id}.json")
                results.append(done[clip.clip_id])
                continue

            def tick(msg: str, _clip: str = clip.clip_id) -> None:
                bar.set_postfix_str(f"{_clip}: {msg}")
                bar.update(1)

            results.append(run_clip(clip, config, out, models, evaluator, cross_src.get(k), tick))
    finally:
        bar.close()
        if models is not None:
            models.close()
        if evaluator is not None:
            evaluator.close()

    probed = probe_specs(config)
    id_ok, id_note = identity_status(config.identity)
    rows = [r for res in results for r in res["rows"]]
    means = bench_report.mean_rows(rows)
    every_clip = [m for m in means if m.get("num_clips") == len(results)]  # a curve's points over the same clips
    ref = [res["reference"] for res in results]
    avfr_src = [r["source_bytes"] - r.get("refresh_bytes", 0) for r in rows if r["codec"] == "avfr"
                and r.get("source_bytes")]  # the first source image of each clip
    report = {
        "command": "avfr-codec bench " + shlex.join(sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv
                                                    else sys.argv[1:]),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "audio": f"Opus {config.opus_kbps:g} kbit/s, 16 kHz mono, 20 ms frames",
        "avfr_source": (f"WebP q{SOURCE_WEBP_QUALITY}, mean {np.mean(avfr_src) / 1000:.1f} kB = "
                        f"{np.mean(avfr_src) * 8 / CALL_SECONDS / 1000:.2f} kbit/s over 5 min"
                        if avfr_src else "n/a"),
        "avfr_points": {p: vars(AVFR_POINTS[p]) for p in points},
        "avfr_model": ({"manifest": str(manifest), "manifest_sha256_16": config.model} if manifest is not None
                       else None),
        "anchor_flags": {c: display_flags(specs[c]) + (f"   (QP search: -preset {config.probe_preset} probes, see "
                                                 "anchor_search)" if c in probed else "")
                         for c in config.codecs if c in specs},
        "anchor_search": bench_report.search_note(config.vvenc_preset, config.probe_preset, sorted(probed),
                                                  config.max_probes),
        "identity": id_note,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "versions": _versions(),
        "clips": [{k: res.get(k) for k in ("clip", "split", "num_frames", "duration_s", "has_audio", "problems",
                                           "strip", "reference", "speech", "searches")} for res in results],
        "no_audio_clips": [res["clip"] for res in results if not res["has_audio"]],
        "reference_mean": {k: bench_report._mean([r.get(k) for r in ref]) for k in ("sync_corr", "jitter")},
        "rows": rows + means,
        "cross_rows": [r for res in results for r in res["cross_rows"]],
        "anchor_floors_kbps": bench_report.floors(results, {c: s for c, s in specs.items() if c in ANCHORS}),
        "envelope": envelope.envelope(results, config.bitrates_kbps),
        "rate_accounting": verdict.ACCOUNTING_NOTE,
        "line_of_truth": verdict.line_of_truth(means),
        "bd_rate_pct": bench_report.bd_rates(every_clip),
        "bd_rate_pct_clip": bench_report.bd_rates(every_clip, "clip"),
        "bd_points": bd_rate_points(every_clip),
        "bd_points_clip": bd_rate_points(every_clip, "clip"),
        "target_check": bench_report.target_check(means),
        "wall_s": round(time.perf_counter() - started, 1),
        "note": "avfr rows run the call's own media path (avfr.sender.Encoder -> messages -> avfr.receiver.Decoder, "
                "no network); video kbit/s counts the keypoint packets on the media channel only.",
    }
    if config.cross and len(clips) < 2:
        logger.warning("--cross needs at least two clips (the source comes from another clip): skipped")
        report["cross_note"] = "cross-identity rows skipped: needs at least two clips"
    if not id_ok:
        report["id_dist_note"] = f"id_dist is null: {report['identity']}"
    report["plots"] = [p.name for p in bench_report.plot_curves(means, out, report["envelope"])]
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False, default=str))
    (out / "report.md").write_text(bench_report.markdown(report))
    print(f"wrote {out / 'report.md'} ({len(results)} clips, {len(rows)} rows)")
    if report["line_of_truth"]:
        print("  " + report["line_of_truth"])
    for line in report["target_check"]:
        print("  " + line)
    return 0
