"""``avfr-codec widen``: a wider model (``wide``) that starts exactly where a trained ``small`` one is."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``widen`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "widen",
        help="start a wider generator from a trained small one (same function, same keypoint detector)",
        description="Write a weights file of a wider config (default `wide`: small's keypoint detector, a wider "
        "dense motion and generator) that computes what MODEL computes: the old channels keep their weights, the "
        "new ones start from random weights that nothing reads yet, extra SPADE blocks start as the identity. "
        "Train it with `avfr-codec train --config wide --init OUT --freeze-detector ...`; the keypoint stream "
        "(the sender graph) stays MODEL's.",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="a weights file of the narrower model, e.g. "
                   "models/avfr-small-*.pt")
    p.add_argument("--config", default="wide", help="the wider config (default: wide)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the weights file to write (.pt)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new channels' initialisation")
    p.set_defaults(func=_widen)


def _widen(args: argparse.Namespace) -> int:
    from avfr.cli import CliError
    from avfr.codec.train import widen_weights

    if not args.model.is_file():
        raise CliError(f"{args.model}: no such file")
    if args.out.exists() and args.out.resolve() == args.model.resolve():
        raise CliError(f"--out {args.out} is MODEL: write the wider model elsewhere")
    result = widen_weights(args.model, args.config, args.out, seed=args.seed)
    print(f"wrote {args.out}: {result.config} from {result.source_config} ({result.copied} tensors copied, "
          f"{result.widened} widened, {result.new_blocks} new blocks as the identity), sha256 {result.sha256[:8]}")
    return 0
