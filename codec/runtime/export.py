"""ONNX export of the three inference graphs (legacy exporter, ``dynamo=False``, opset 17).

Graphs (batch 1, static shapes, float32):

- ``sender``: ``frame`` (1, 5, 256, 256) -> ``kp`` (1, K, 2), ``jac`` (1, K, 2, 2).
  Runs on every captured frame at the sender.
- ``receiver_source``: ``source`` (1, 5, 256, 256) -> ``kp_source``, ``jac_source``, ``src64``, ``src128``,
  ``source_out``, ``feat64``, ``skip128``, ``skip256``. Runs once per source image; the receiver caches the
  outputs.
- ``receiver_frame``: the 8 cached tensors + ``kp_driving`` (1, K, 2) + ``jac_driving`` (1, K, 2, 2) +
  ``mel`` (1, 1, 80, 19) [+ ``held_frames`` (1, 1): for how many frames the keypoints have been held in
  place of lost ones, models trained with ``--hold-kp`` only] -> ``frame`` (1, 3, 256, 256) in (0, 1). Runs per
  received frame.

Relative motion (cross-identity) is *not* in the graphs: ``kp_driving`` / ``jac_driving`` are fed already
adapted. The receiver applies :func:`avfr.codec.runtime.sessions.relative_motion` (numpy, the twin of
:func:`avfr.codec.nets.keypoints.relative_motion`) when the call asks for it; same-identity calls feed the
sender's keypoints unchanged.

Files are written as ``<name>-<graph>-<sha8>.onnx`` (sha8 = first 8 hex digits of the file's SHA-256) next to
a ``<name>.json`` manifest listing the files, their full SHA-256, K and the model config.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avfr.codec.nets import AvfrModel
from avfr.codec.runtime.sessions import HOLD_INPUT, MANIFEST_DEVICES, MANIFEST_FORMAT

logger = logging.getLogger(__name__)

OPSET = 17

SENDER_INPUTS = ("frame",)
SENDER_OUTPUTS = ("kp", "jac")
SOURCE_INPUTS = ("source",)
SOURCE_OUTPUTS = ("kp_source", "jac_source", "src64", "src128", "source_out", "feat64", "skip128", "skip256")
FRAME_INPUTS = (
    "kp_source",
    "jac_source",
    "src64",
    "src128",
    "source_out",
    "feat64",
    "skip128",
    "skip256",
    "kp_driving",
    "jac_driving",
    "mel",
)
FRAME_OUTPUTS = ("frame",)


class SenderGraph(nn.Module):
    """frame (1, 5, 256, 256) -> kp (1, K, 2), jac (1, K, 2, 2)."""

    def __init__(self, model: AvfrModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.detect(frame)


class ReceiverSourceGraph(nn.Module):
    """source (1, 5, 256, 256) -> the 8 cached source tensors (see ``AvfrModel.encode_source``)."""

    def __init__(self, model: AvfrModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, source: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.model.encode_source(source)


class ReceiverFrameGraph(nn.Module):
    """8 cached source tensors + kp_driving + jac_driving + mel [+ held_frames (1, 1), ``hold_input`` models]
    -> frame (1, 3, 256, 256) in (0, 1)."""

    def __init__(self, model: AvfrModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        kp_source: Tensor,
        jac_source: Tensor,
        src64: Tensor,
        src128: Tensor,
        source: Tensor,
        feat64: Tensor,
        skip128: Tensor,
        skip256: Tensor,
        kp_driving: Tensor,
        jac_driving: Tensor,
        mel: Tensor,
        held_frames: Tensor | None = None,
    ) -> Tensor:
        image, _, _ = self.model.render(
            kp_source,
            jac_source,
            src64,
            src128,
            source,
            feat64,
            skip128,
            skip256,
            kp_driving,
            jac_driving,
            mel,
            held_frames,
        )
        return image


@dataclass(frozen=True)
class ExportedModel:
    """Paths (and SHA-256 hex digests) of one exported model."""

    manifest: Path
    sender: Path
    receiver_source: Path
    receiver_frame: Path
    sha256: dict[str, str]


def _export_bytes(
    module: nn.Module, args: tuple[Tensor, ...], inputs: tuple[str, ...], outputs: tuple[str, ...]
) -> bytes:
    buf = io.BytesIO()
    module = module.eval()  # the exporter restores the wrapper's mode afterwards, recursively
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy tracer warns about static shapes / InstanceNorm; the graphs are static by design
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            do_constant_folding=True,
        )
    return buf.getvalue()


def same_computation(a: bytes, b: bytes) -> bool:
    """True when two ONNX graphs compute the same thing: the same nodes, attributes, weights and graph inputs /
    outputs, in the same order, with only the exporter's internal value and node names differing (the legacy
    exporter numbers folded weights by the whole traced module's size, so one detector inside a wider model
    exports under other names)."""
    import onnx

    return _canonical(onnx.load_from_string(a)) == _canonical(onnx.load_from_string(b))


def _canonical(model: Any) -> bytes:
    g = model.graph
    keep = {v.name for v in (*g.input, *g.output)}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        return name if not name or name in keep else names.setdefault(name, f"v{len(names)}")

    for node in g.node:
        node.name = ""
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for init in g.initializer:
        init.name = rename(init.name)
    ordered = sorted(g.initializer, key=lambda t: int(t.name[1:]) if t.name[1:].isdigit() else -1)
    copies = [type(t)() for t in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del g.initializer[:]
    g.initializer.extend(copies)
    del g.value_info[:]
    return model.SerializeToString()


def example_inputs(model: AvfrModel, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic example (source, driving, mel) for tracing and parity tests, batch 1.

    Returns:
        source (1, 5, 256, 256), driving (1, 5, 256, 256) in [0, 1], mel (1, 1, 80, 19) ~ log-mel range.
    """
    g = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    base = torch.rand(1, 5, size // 16, size // 16, generator=g)
    source = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    noise = 0.05 * torch.randn(1, 5, size, size, generator=g)
    driving = (source.roll(shifts=(6, -4), dims=(2, 3)) + noise).clamp(0, 1)
    mel = torch.randn(1, 1, model.config.audio.n_mels, model.config.audio.n_frames, generator=g) * 2 - 6
    return source, driving, mel


def export_model(model: AvfrModel, out_dir: str | Path, name: str | None = None, detector: str | None = None,
                 device: str = "cpu") -> ExportedModel:
    """Export the three graphs of ``model`` (put in eval mode, on CPU) and write the manifest.

    Args:
        model: the model (weights as loaded).
        out_dir: output folder (created).
        name: file prefix (default: the config name).
        detector: the keypoint detector's name, what the Hello's ``model_id`` says (default: ``name``; a
            generator trained on another model's frozen detector takes that model's detector name).
        device: what the generator is sized for, "cpu" or "gpu" (the manifest's ``device``).

    Returns:
        :class:`ExportedModel` with the written paths.
    """
    if device not in MANIFEST_DEVICES:
        raise ValueError(f"device must be one of {MANIFEST_DEVICES}, got {device!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or model.config.name
    model = model.cpu().eval()
    source, driving, mel = example_inputs(model)
    with torch.no_grad():
        kp_d, jac_d = model.detect(driving)
        cache = model.encode_source(source)
    frame_args: tuple[Tensor, ...] = (*cache, kp_d, jac_d, mel)
    frame_inputs = FRAME_INPUTS
    if model.config.generator.hold_input:
        frame_args, frame_inputs = (*frame_args, torch.full((1, 1), 2.0)), (*FRAME_INPUTS, HOLD_INPUT)
    graphs = {
        "sender": _export_bytes(SenderGraph(model), (driving,), SENDER_INPUTS, SENDER_OUTPUTS),
        "receiver_source": _export_bytes(
            ReceiverSourceGraph(model), (source,), SOURCE_INPUTS, SOURCE_OUTPUTS
        ),
        "receiver_frame": _export_bytes(ReceiverFrameGraph(model), frame_args, frame_inputs, FRAME_OUTPUTS),
    }
    paths: dict[str, Path] = {}
    digests: dict[str, str] = {}
    for graph, data in graphs.items():
        digest = hashlib.sha256(data).hexdigest()
        path = out / f"{name}-{graph}-{digest[:8]}.onnx"
        path.write_bytes(data)
        paths[graph] = path
        digests[graph] = digest
        logger.info("exported %s (%d bytes)", path, len(data))
    manifest = out / f"{name}.json"
    manifest.write_text(
        json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "name": name,
                "detector": detector or name,
                "device": device,
                "num_kp": model.config.num_kp,
                "image_size": model.config.image_size,
                "use_audio": model.config.use_audio,
                "use_priors": model.config.use_priors,
                "opset": OPSET,
                "graphs": {g: {"file": p.name, "sha256": digests[g]} for g, p in paths.items()},
                "config": model.config.to_dict(),
            },
            indent=2,
        )
    )
    return ExportedModel(
        manifest, paths["sender"], paths["receiver_source"], paths["receiver_frame"], digests
    )
