"""Tests for avfr.codec.runtime (export, sessions): ONNX parity of the three graphs, runtime round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avfr.codec.nets import CONFIGS, AvfrModel
from avfr.codec.runtime import SOURCE_OUTPUTS, ExportedModel, example_inputs, export_model
from avfr.codec.runtime import sessions as runtime

ATOL = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[AvfrModel, ExportedModel]:
    torch.manual_seed(0)
    model = AvfrModel(CONFIGS["small"]).eval()
    torch.nn.init.normal_(model.generator.out.weight, std=0.05)  # make the decoder matter for parity
    return model, export_model(model, tmp_path_factory.mktemp("onnx"))


def test_files_and_manifest(exported: tuple[AvfrModel, ExportedModel]) -> None:
    model, ex = exported
    for graph, path in (
        ("sender", ex.sender),
        ("receiver_source", ex.receiver_source),
        ("receiver_frame", ex.receiver_frame),
    ):
        assert path.name == f"small-{graph}-{ex.sha256[graph][:8]}.onnx"
        assert runtime.make_session(path, threads=1, expected_sha256=ex.sha256[graph]) is not None
    data = json.loads(ex.manifest.read_text())
    assert data["num_kp"] == model.config.num_kp and data["opset"] == 17
    man = runtime.load_manifest(ex.manifest)
    assert man.sender == ex.sender and man.sha256 == ex.sha256
    with pytest.raises(ValueError, match="does not match"):
        runtime.make_session(ex.sender, expected_sha256="deadbeef")


def test_graph_parity(exported: tuple[AvfrModel, ExportedModel]) -> None:
    model, ex = exported
    source, driving, mel = example_inputs(model, seed=3)  # not the tracing inputs
    with torch.no_grad():
        kp_ref, jac_ref = model.detect(driving)
        cache_ref = model.encode_source(source)
        frame_ref = model.render(*cache_ref, kp_ref, jac_ref, mel)[0]
    sender = runtime.make_session(ex.sender, threads=2)
    kp, jac = sender.run(None, {"frame": driving.numpy()})
    assert np.abs(kp - kp_ref.numpy()).max() < ATOL
    assert np.abs(jac - jac_ref.numpy()).max() < ATOL
    rsrc = runtime.make_session(ex.receiver_source, threads=2)
    cache = rsrc.run(None, {"source": source.numpy()})
    for name, a, b in zip(SOURCE_OUTPUTS, cache, cache_ref, strict=True):
        assert np.abs(a - b.numpy()).max() < ATOL, name
    rfrm = runtime.make_session(ex.receiver_frame, threads=2)
    feed = dict(zip(SOURCE_OUTPUTS, (t.numpy() for t in cache_ref), strict=True))
    feed.update(kp_driving=kp_ref.numpy(), jac_driving=jac_ref.numpy(), mel=mel.numpy())
    (frame,) = rfrm.run(None, {i.name: feed[i.name] for i in rfrm.get_inputs()})
    assert frame.shape == (1, 3, 256, 256)
    assert np.abs(frame - frame_ref.numpy()).max() < ATOL


def test_runtime_round_trip(exported: tuple[AvfrModel, ExportedModel]) -> None:
    model, ex = exported
    man = runtime.load_manifest(ex.manifest)
    sender = runtime.SenderModel(man.sender, threads=1, expected_sha256=man.sha256["sender"])
    receiver = runtime.ReceiverModel.from_manifest(man, threads=1)
    assert not receiver.has_source
    with pytest.raises(RuntimeError):
        receiver.frame(np.zeros((10, 2)), np.zeros((10, 2, 2)), np.zeros((80, 19)))
    source, driving, mel = example_inputs(model, seed=4)
    receiver.set_source(source[0].numpy())
    kp, jac = sender.keypoints(driving[0].numpy())
    assert kp.shape == (10, 2) and jac.shape == (10, 2, 2)
    img = receiver.frame(kp, jac, mel[0, 0].numpy())
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    with torch.no_grad():
        ref = model(source, driving, mel)[0][0].permute(1, 2, 0).numpy() * 255
    assert np.abs(img.astype(np.float32) - ref).max() <= 1.0
    # relative motion at the first driving frame == the source keypoints
    kp_s, jac_s = receiver.source_keypoints
    kp_r, jac_r = runtime.relative_motion(kp, jac, kp, jac, kp_s, jac_s)
    np.testing.assert_allclose(kp_r, kp_s, atol=1e-6)
    np.testing.assert_allclose(jac_r, jac_s, atol=1e-4)
    assert receiver.frame(kp_r, jac_r, mel[0, 0].numpy()).shape == (256, 256, 3)


def test_runtime_rejects_bad_shapes(exported: tuple[AvfrModel, ExportedModel]) -> None:
    _, ex = exported
    sender = runtime.SenderModel(ex.sender, threads=1)
    with pytest.raises(ValueError, match="frame"):
        sender.keypoints(np.zeros((3, 256, 256), np.float32))


def test_export_without_audio(tmp_path: Path) -> None:
    model = AvfrModel(dataclasses.replace(CONFIGS["small"], use_audio=False)).eval()
    ex = export_model(model, tmp_path)
    receiver = runtime.ReceiverModel(ex.receiver_source, ex.receiver_frame, threads=1)
    assert "mel" not in receiver.frame_inputs  # unused input is dropped by the exporter
    source, driving, mel = example_inputs(model)
    receiver.set_source(source.numpy())
    kp, jac = runtime.SenderModel(ex.sender, threads=1).keypoints(driving.numpy())
    assert receiver.frame(kp, jac, mel.numpy()).shape == (256, 256, 3)


def test_default_providers() -> None:
    providers = runtime.default_providers()
    assert providers[-1] == "CPUExecutionProvider"


def test_export_with_hold_input_matches_torch(tmp_path: Path) -> None:
    gen = dataclasses.replace(CONFIGS["small"].generator, hold_input=True)
    torch.manual_seed(1)
    model = AvfrModel(dataclasses.replace(CONFIGS["small"], generator=gen)).eval()
    torch.nn.init.normal_(model.generator.out.weight, std=0.05)
    torch.nn.init.normal_(model.generator.hold_fuse.weight, std=0.5)
    torch.nn.init.normal_(model.generator.hold_audio_gain.weight, std=0.5)
    ex = export_model(model, tmp_path)
    receiver = runtime.ReceiverModel(ex.receiver_source, ex.receiver_frame, threads=1)
    assert receiver.uses_hold and runtime.HOLD_INPUT in receiver.frame_inputs
    source, driving, mel = example_inputs(model)
    receiver.set_source(source.numpy())
    with torch.no_grad():
        cache = model.encode_source(source)
        kp, jac = model.detect(driving)
        for held in (0, 3, 20):  # 20: clamped to HOLD_MAX_FRAMES inside the graph as in torch
            ref = model.render(*cache, kp, jac, mel, torch.full((1, 1), float(held)))[0].numpy()
            got = receiver.frame_float(kp.numpy(), jac.numpy(), mel.numpy(), held_frames=held)
            np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)
    assert not np.array_equal(receiver.frame(kp.numpy(), jac.numpy(), mel.numpy(), 0),
                              receiver.frame(kp.numpy(), jac.numpy(), mel.numpy(), 4))
