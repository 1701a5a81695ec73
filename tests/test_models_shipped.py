"""The shipped model in models/: hashes verified at load, torch weights and ONNX graphs agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avfr.codec.nets import file_sha256, load_weights
from avfr.codec.runtime import SHIPPED_MODEL, example_inputs, models_dir, shipped_manifest, shipped_torch_weights
from avfr.codec.runtime import sessions as runtime

ATOL = 1e-3


def test_every_shipped_file_is_small_and_named_by_its_hash() -> None:
    files = sorted(models_dir().glob(f"{SHIPPED_MODEL}-*"))
    assert len(files) == 4  # torch weights + 3 ONNX graphs
    for path in files:
        assert path.stat().st_size < 20 * 2**20, path
        assert file_sha256(path).startswith(path.stem.rsplit("-", 1)[1]), path
    card = (models_dir() / "MODEL_CARD.md").read_text()
    for path in files:
        assert path.name in card, f"{path.name} is not described in the model card"


def test_torch_weights_refuse_a_wrong_hash() -> None:
    path, sha8 = shipped_torch_weights()
    assert load_weights(path, expected_sha256=sha8).config.name == "small"
    with pytest.raises(ValueError):
        load_weights(path, expected_sha256="00000000")


def test_shipped_onnx_matches_shipped_torch_weights() -> None:
    path, sha8 = shipped_torch_weights()
    model = load_weights(path, expected_sha256=sha8).eval()
    manifest = runtime.load_manifest(shipped_manifest())
    assert json.loads(shipped_manifest().read_text())["config"]["name"] == model.config.name
    source, driving, mel = example_inputs(model, seed=5)
    with torch.no_grad():
        kp_ref, jac_ref = model.detect(driving)
        frame_ref = model.render(*model.encode_source(source), kp_ref, jac_ref, mel)[0]
    sender = runtime.SenderModel(manifest.sender, threads=2, expected_sha256=manifest.sha256["sender"])
    kp, jac = sender.keypoints(driving.numpy())
    assert np.abs(kp - kp_ref[0].numpy()).max() < ATOL
    assert np.abs(jac - jac_ref[0].numpy()).max() < ATOL
    receiver = runtime.ReceiverModel.from_manifest(manifest, threads=2)
    receiver.set_source(source.numpy())
    frame = receiver.frame_float(kp_ref[0].numpy(), jac_ref[0].numpy(), mel[0, 0].numpy())
    assert np.abs(frame - frame_ref.numpy()).max() < ATOL
