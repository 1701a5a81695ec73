"""``avfr-codec export``: a training checkpoint -> shippable weights (fp16 torch + three ONNX graphs)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "export",
        help="export a training checkpoint as shippable weights and ONNX graphs",
        description="Write <name>-<sha8>.pt (fp16 torch weights), <name>-<graph>-<sha8>.onnx (sender, "
        "receiver_source, receiver_frame) and the manifest <name>.json into OUT_DIR. The graphs are "
        "traced from the fp16-rounded weights, so the .pt and the ONNX files compute the same model.",
    )
    p.add_argument("checkpoint", type=Path,
                   help="training checkpoint (RUN_DIR/ckpt-best.pt or ckpt-last.pt) or weights file "
                   "(RUN_DIR/weights-*.pt)")
    p.add_argument("--out", metavar="OUT_DIR", type=Path, required=True, help="output folder (e.g. models)")
    p.add_argument("--name", default=None, help="file prefix (default: avfr-<config>)")
    p.add_argument("--replace", action="store_true",
                   help="delete OUT_DIR's older <name>-*.pt / .onnx files (those not written now)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from avfr.cli import CliError
    from avfr.codec.nets import load_weights, save_weights
    from avfr.codec.runtime import export_model
    from avfr.codec.train import load_checkpoint, model_from_checkpoint

    if not args.checkpoint.is_file():
        raise CliError(f"no checkpoint at {args.checkpoint}")
    try:
        model = model_from_checkpoint(args.checkpoint)
        origin = f"step {int(load_checkpoint(args.checkpoint)['step'])} of {args.checkpoint}"
    except ValueError:  # not a training checkpoint: a weights file (fp16 already)
        try:
            model = load_weights(args.checkpoint)
        except ValueError as exc:
            raise CliError(f"{args.checkpoint}: neither a training checkpoint nor a weights file") from exc
        origin = f"weights {args.checkpoint}"
    name = args.name or f"avfr-{model.config.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / f".{name}-export.pt"
    digest = save_weights(model, tmp)
    weights = args.out / f"{name}-{digest[:8]}.pt"
    tmp.replace(weights)
    exported = export_model(load_weights(weights, expected_sha256=digest), args.out, name=name)
    written = {weights, exported.sender, exported.receiver_source, exported.receiver_frame}
    if args.replace:
        for old in sorted(args.out.glob(f"{name}-*")):
            if old.suffix in (".pt", ".onnx") and old not in written:
                old.unlink()
                print(f"removed {old}")
    print(f"{origin} -> {name}:")
    for path in sorted(written | {exported.manifest}):
        print(f"  {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
