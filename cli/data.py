"""``avfr-codec data``: prepare the clip cache (frames, mediapipe priors, speech) and report on it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_DIR_HELP = (
    "a data folder with manifest.json (clips/<id>.mp4 + <id>.wav, splits), a folder of plain "
    "talking-head videos, or one video file"
)
_CACHE_HELP = "cache folder (default: $XDG_CACHE_HOME/avfr-codec or ~/.cache/avfr-codec)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data prepare`` and ``data report`` to the ``avfr-codec`` parser."""
    data = subparsers.add_parser(
        "data",
        help="prepare the training/evaluation clip cache and report on it",
        description="Decode clips to 256x256 RGB at 25 fps with 16 kHz speech, run mediapipe face mesh "
        "and selfie segmentation once per frame, and cache the result outside the data folder.",
    )
    commands = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: _usage(data))

    prepare = commands.add_parser(
        "prepare",
        help="build the cache (incremental; corrupt entries are rebuilt)",
        description="Build the cache entries of DIR. Valid entries are skipped; partial or corrupt ones "
        "are rebuilt. Clips that cannot be read are recorded and reported, not fatal.",
    )
    prepare.add_argument("dir", metavar="DIR", type=Path, help=_DIR_HELP)
    prepare.add_argument("--cache", metavar="DIR", type=Path, default=None, help=_CACHE_HELP)
    prepare.add_argument("--split", default=None, help="only clips of this split (train, dev)")
    prepare.add_argument("--verify", action="store_true", help="also checksum the arrays of existing entries")
    prepare.add_argument("--force", action="store_true", help="rebuild every entry")
    prepare.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=_prepare)

    report = commands.add_parser(
        "report",
        help="print clips, frames, faces, speech seconds and every problem found",
        description="Print one line per clip (frames, frames with a face, frames with 2 faces, speech "
        "seconds, audio), the problems found in it, and a total line. Missing entries are "
        "prepared first unless --no-prepare.",
    )
    report.add_argument("dir", metavar="DIR", type=Path, help=_DIR_HELP)
    report.add_argument("--cache", metavar="DIR", type=Path, default=None, help=_CACHE_HELP)
    report.add_argument("--split", default=None, help="only clips of this split (train, dev)")
    report.add_argument("--no-prepare", action="store_true", help="do not prepare missing entries")
    report.set_defaults(func=_report)

    bundle = commands.add_parser(
        "bundle",
        help="pack the prepared clips small for a GPU training box (avfr-codec train --arrays)",
        description="Write a training bundle (avfr.codec.data.bundle, format version 2): re-encoded RGB and mask "
        "videos, PCA-coded landmarks (within 1/16 px) and 8-bit clean + Opus round-trip log-mels, for a box "
        "without mediapipe, PyAV or libopus. The defaults are the travel preset: all 167 clips of "
        "../shared/data in under 30 MB.",
    )
    bundle.add_argument("dir", metavar="DIR", type=Path, help=_DIR_HELP)
    bundle.add_argument("--out", metavar="BUNDLE_DIR", type=Path, required=True, help="bundle folder")
    bundle.add_argument("--cache", metavar="DIR", type=Path, default=None, help=_CACHE_HELP)
    bundle.add_argument("--crf", type=int, default=None,
                        help="libx264 quality of the RGB video, lower = larger (default: 28)")
    bundle.add_argument("--mask-crf", type=int, default=None,
                        help="libx264 quality of the segmentation-mask video (default: 40)")
    bundle.set_defaults(func=_bundle)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _prepare(args: argparse.Namespace) -> int:
    from avfr.codec.data import default_cache_dir, prepare

    cache_dir = args.cache or default_cache_dir()
    summary = prepare(args.dir, cache_dir, split=args.split, verify=args.verify, force=args.force,
                      progress=not args.quiet)
    failed = [e.clip_id for e in summary.entries if e.failed]
    flagged = sum(1 for e in summary.entries if e.problems and not e.failed)
    print(
        f"prepared {len(summary.entries)} clips in {cache_dir} ({summary.wall_s:.1f} s): "
        f"{len(summary.built)} built, {len(summary.rebuilt)} rebuilt, {len(summary.skipped)} up to date; "
        f"{flagged} with problems, {len(failed) + len(summary.missing)} unusable "
        f"(see `avfr-codec data report`)"
    )
    for clip_id in failed:
        entry = next(e for e in summary.entries if e.clip_id == clip_id)
        print(f"  {clip_id}: {entry.failed}")
    for clip_id, why in summary.missing.items():
        print(f"  {clip_id}: {why}")
    usable = len(summary.entries) - len(failed)
    return 0 if usable > 0 else 1


def _report(args: argparse.Namespace) -> int:
    from avfr.codec.data import cached_entries, default_cache_dir, format_report, prepare

    cache_dir = args.cache or default_cache_dir()
    if args.no_prepare:
        entries, missing = cached_entries(args.dir, cache_dir, split=args.split)
        missing = {k: f"{v}: run `avfr-codec data prepare`" for k, v in missing.items()}
    else:
        summary = prepare(args.dir, cache_dir, split=args.split, progress=True)
        entries, missing = summary.entries, summary.missing
    print(format_report(entries, missing))
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from avfr.codec.data import load_clips, manifest_releases, write_bundle

    clips = load_clips(args.dir, args.cache)
    quality = {k: v for k, v in (("crf", args.crf), ("mask_crf", args.mask_crf)) if v is not None}
    size = write_bundle(clips, args.out, releases=manifest_releases(args.dir), **quality)
    print(f"bundle of {len(clips)} clips ({sum(c.num_frames for c in clips)} frames) in {args.out}: "
          f"{size / 1e6:.1f} MB")
    return 0
