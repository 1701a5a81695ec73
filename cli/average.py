"""``avfr-codec average``: the uniform mean of several weights files / checkpoints of one fine-tune."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``average`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "average",
        help="average the weights of several snapshots of one fine-tune (a model soup)",
        description="Write the uniform mean of MODEL files (weights files such as RUN_DIR/weights-step*.pt or "
        "models/avfr-small-*.pt, and training checkpoints) as one fp16 weights file, ready for `avfr-codec "
        "export`. All must share the model config; their keypoint detectors must be identical (a frozen-detector "
        "fine-tune), so the average keeps the shipped sender graph and its keypoint stream.",
    )
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="2..256 weights files or checkpoints")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the weights file to write (.pt)")
    p.add_argument("--allow-detector-change", action="store_true",
                   help="average members whose detectors differ (a new sender graph: export it under a new name)")
    p.set_defaults(func=_average)


def _average(args: argparse.Namespace) -> int:
    from avfr.cli import CliError
    from avfr.codec.train import average_weights

    if len(args.models) < 2:
        raise CliError("give at least two models to average")
    if args.out.exists() and args.out.resolve() in {m.resolve() for m in args.models}:
        raise CliError(f"--out {args.out} is one of the models: write the average elsewhere")
    result = average_weights(args.models, args.out, allow_detector_change=args.allow_detector_change)
    changed = " (the keypoint detector changed: a new sender graph)" if result.detector_changed else ""
    print(f"wrote {args.out}: {result.config_name}, the mean of {len(result.members)} models, "
          f"sha256 {result.sha256[:8]}{changed}")
    return 0
