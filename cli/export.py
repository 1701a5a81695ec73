"""``avfr-codec export``: a training checkpoint -> shippable weights (fp16 torch + three ONNX graphs)."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
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
    p.add_argument("--detector-of", metavar="MANIFEST", type=Path, default=None,
                   help="the model whose frozen keypoint detector this one was trained on (`train --init-detector`): "
                   "its manifest, e.g. models/avfr-small.json; the exported sender graph must be byte-identical to "
                   "that model's, and the manifest takes its detector name, so both generators read one stream")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="what the generator is sized for (the manifest's device; a receiver with CUDA prefers "
                   "a gpu generator of the same detector; default: cpu)")
    p.add_argument("--replace", action="store_true",
                   help="delete OUT_DIR's older <name>-*.pt / .onnx files (those not written now)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from avfr.cli import CliError
    from avfr.codec.nets import load_weights, save_weights
    from avfr.codec.runtime import ExportedModel, export_model, load_manifest
    from avfr.codec.runtime.export import same_computation
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
    detector = None
    if args.detector_of is not None:
        try:
            detector = load_manifest(args.detector_of)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(f"--detector-of {args.detector_of}: not a readable manifest ({exc})") from exc
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out, prefix=".export-") as tmp_dir:
        tmp = Path(tmp_dir)  # everything is written here first: nothing lands in OUT_DIR if a check fails
        digest = save_weights(model, tmp / "weights.pt")
        (tmp / "weights.pt").replace(tmp / f"{name}-{digest[:8]}.pt")
        exported = export_model(load_weights(tmp / f"{name}-{digest[:8]}.pt", expected_sha256=digest), tmp,
                                name=name, detector=detector.detector if detector else None, device=args.device)
        if detector is not None:  # the manifest names that model's own sender graph file (shared or copied)
            theirs = detector.sender.read_bytes()
            if not same_computation(exported.sender.read_bytes(), theirs):
                raise CliError(f"the exported sender graph does not compute what {detector.name}'s "
                               f"({detector.sha256['sender'][:8]}) does: this model's keypoint detector is not "
                               "that model's (train it with --init-detector and --freeze-detector); nothing written")
            data = json.loads(exported.manifest.read_text())
            data["graphs"]["sender"] = {"file": detector.sender.name, "sha256": detector.sha256["sender"]}
            exported.manifest.write_text(json.dumps(data, indent=2))
            exported.sender.unlink()
            if detector.sender.parent.resolve() != args.out.resolve():
                (tmp / detector.sender.name).write_bytes(theirs)
        for path in sorted(tmp.iterdir()):
            path.replace(args.out / path.name)
    man = load_manifest(args.out / f"{name}.json")
    weights = args.out / f"{name}-{digest[:8]}.pt"
    exported = ExportedModel(args.out / f"{name}.json", man.sender, man.receiver_source, man.receiver_frame,
                             man.sha256)
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
