"""Weight averaging ("model soup", SWA-style): the uniform mean of several models of one fine-tuning trajectory.

A fine-tune at a constant learning rate oscillates around a good region (sessions 5-7: ±0.2 dB dev PSNR from
snapshot to snapshot); the mean of its snapshots sits nearer the centre of that region than any one of them
(Izmailov et al. 2018, "Averaging weights leads to wider optima"). Every member must have the same model config
and parameter names; floating tensors (BatchNorm running statistics included) are averaged in float64 and
stored as float16 (`save_weights`), integer buffers (BatchNorm batch counters) take the largest value.

The keypoint detector decides what the sender sends: averaging models whose detectors differ would make a new
sender graph, which no receiver of the old one accepts (the Hello names the detector). So members must share
the detector bit for bit (at float16, the precision weights files store) unless ``allow_detector_change``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["DETECTOR_PREFIX", "AveragedWeights", "average_weights"]

DETECTOR_PREFIX = "kp_detector."  # state-dict keys of the keypoint detector (the sender graph)
MAX_MEMBERS = 256


@dataclass(frozen=True)
class AveragedWeights:
    """What `average_weights` wrote: the file's sha256, the members, and whether the detector changed."""

    sha256: str
    members: tuple[str, ...]
    detector_changed: bool
    config_name: str


def _read_member(path: Path) -> tuple[dict, dict[str, Tensor]]:
    """(model config dict, state dict) of a weights file or a training checkpoint's generator."""
    from avfr.codec.train.checkpoint import CHECKPOINT_FORMAT, read_model_file

    data = read_model_file(path)
    if data["format"] == CHECKPOINT_FORMAT:  # tuples as lists, as in a weights file's JSON config
        return json.loads(json.dumps(data["model_config"])), dict(data["model"])
    return json.loads(data["config"]), dict(data["state_dict"])


def average_weights(paths: Sequence[str | Path], out: str | Path,
                    allow_detector_change: bool = False) -> AveragedWeights:
    """Write the uniform average of ``paths`` (weights files and/or training checkpoints) as a weights file.

    Args:
        paths: 2..256 members of one model config.
        out: the weights file to write (`save_weights` format, float16).
        allow_detector_change: average members whose keypoint detectors differ (a new sender graph).

    Returns:
        The written file's sha256 and what was averaged.

    Raises:
        ValueError: fewer than 2 or more than 256 members, different configs or parameters, or detectors that
            differ without ``allow_detector_change``. Nothing is written then.
        FileNotFoundError: a member is missing.
    """
    from avfr.codec.nets import AvfrConfig, AvfrModel, save_weights

    members = [Path(p) for p in paths]
    if not 2 <= len(members) <= MAX_MEMBERS:
        raise ValueError(f"averaging needs 2..{MAX_MEMBERS} models, got {len(members)}")
    config, first = _read_member(members[0])
    sums = {k: v.double() if v.is_floating_point() else v.clone() for k, v in first.items()}
    detector = {k: v.half() for k, v in first.items() if k.startswith(DETECTOR_PREFIX) and v.is_floating_point()}
    detector_changed = False
    for path in members[1:]:
        cfg, state = _read_member(path)
        if cfg != config:
            raise ValueError(f"{path}: model config differs from {members[0]}'s")
        if state.keys() != sums.keys():
            raise ValueError(f"{path}: parameter names differ from {members[0]}'s")
        for key, value in state.items():
            if value.shape != sums[key].shape:
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, not {tuple(sums[key].shape)}")
            if value.is_floating_point():
                sums[key] += value.double()
                if key in detector and not torch.equal(value.half(), detector[key]):
                    detector_changed = True
            else:
                sums[key] = torch.maximum(sums[key], value)
    if detector_changed and not allow_detector_change:
        raise ValueError("the members' keypoint detectors differ: their average would need a new sender graph "
                         "(allow it explicitly, and export under a new detector name)")
    model = AvfrModel(AvfrConfig.from_dict(config))
    model.load_state_dict({k: (v / len(members)).float() if v.is_floating_point() else v for k, v in sums.items()})
    digest = save_weights(model, out)  # written only once everything checked out
    return AveragedWeights(digest, tuple(str(p) for p in members), detector_changed, str(config.get("name", "")))
