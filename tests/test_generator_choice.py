"""One keypoint stream, several generators: the Hello names the detector, a wider generator trained on the shipped
detector (frozen) reads the shipped sender's stream, and a receiver with CUDA prefers it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_codec_train import _split, cache_dir, clips  # noqa: F401 - the module's fixtures (real dev/train clips)
from train_helpers import assert_same_state

from avfr.codec.data import ClipArrays
from avfr.codec.nets import CONFIGS, AvfrModel, load_weights
from avfr.codec.runtime import (
    ReceiverModel,
    generator_for,
    load_call_model,
    load_manifest,
    shipped_manifest,
    shipped_torch_weights,
)
from avfr.codec.train import LAST_CKPT, TrainConfig, train
from avfr.codec.train.checkpoint import init_detector
from avfr.proto import Capabilities, ErrorCode, Hello, ModelInfo, validate_hello


def _detector_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in state.items() if k.startswith("kp_detector.")}


def test_the_hello_names_the_detector_not_the_generator() -> None:
    model = load_call_model()
    man = model.manifest
    assert (model.model_id, model.weights_sha256) == (man.detector, man.sha256["sender"])
    assert man.detector == "avfr-small" and man.device == "cpu" and model.generator == "avfr-small"
    assert len(model.manifest_sha256) == 64 and model.manifest_sha256 != model.weights_sha256


def test_init_detector_needs_a_frozen_detector_that_fits(tmp_path: Path) -> None:
    path, _ = shipped_torch_weights()
    with pytest.raises(ValueError, match="freeze_detector"):
        TrainConfig(config="wide", init_detector=str(path))
    wide = AvfrModel(CONFIGS["wide"])
    init_detector(path, wide)
    assert_same_state(_detector_state(wide.state_dict()), _detector_state(load_weights(path).state_dict()))
    small = CONFIGS["small"]
    other = AvfrModel(dataclasses.replace(small, kp=dataclasses.replace(small.kp, block_expansion=8)))
    with pytest.raises(ValueError, match="does not fit"):
        init_detector(path, other)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        init_detector(tmp_path / "junk.pt", wide)


def test_a_wide_generator_on_the_shipped_detector(clips: list[ClipArrays], tmp_path: Path,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from avfr.cli import main

    shipped, _ = shipped_torch_weights()
    cfg = TrainConfig(config="wide", batch_size=1, steps=1, gan_warmup_steps=0, num_threads=2, device="cpu",
                      freeze_detector=True, init_detector=str(shipped))
    train(cfg, _split(clips, "train"), [], tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / LAST_CKPT
    trained = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    assert_same_state(_detector_state(trained), _detector_state(load_weights(shipped).state_dict()), "detector")

    # exported beside a copy of the shipped model: the manifest shares its sender graph file and detector name
    shared = tmp_path / "models"
    shared.mkdir()
    small_manifest = load_manifest(shipped_manifest())
    for path in (shipped_manifest(), small_manifest.sender):
        shutil.copy(path, shared / path.name)
    assert main(["export", str(ckpt), "--out", str(shared), "--detector-of", str(shared / "avfr-small.json"),
                 "--device", "gpu"]) == 0
    wide = load_manifest(shared / "avfr-wide.json")
    assert (wide.detector, wide.device, wide.sender) == ("avfr-small", "gpu", shared / small_manifest.sender.name)
    assert wide.sha256["sender"] == small_manifest.sha256["sender"]
    assert not list(shared.glob("avfr-wide-sender-*.onnx")) and len(list(shared.glob("avfr-wide-*.onnx"))) == 2

    # exported elsewhere: a copy of the shipped sender graph goes with it
    assert main(["export", str(ckpt), "--out", str(tmp_path / "elsewhere"), "--detector-of",
                 str(shipped_manifest())]) == 0
    copied = load_manifest(tmp_path / "elsewhere" / "avfr-wide.json")
    assert copied.sender.read_bytes() == small_manifest.sender.read_bytes() and copied.device == "cpu"

    # the shipped sender's Hello is accepted by a receiver holding only the wide generator, which draws it
    sender = load_call_model()
    receiver = load_call_model(shared / "avfr-wide.json")
    caps = Capabilities(models=(ModelInfo(receiver.model_id, receiver.weights_sha256, wide.num_kp),))
    assert validate_hello(Hello(sender.model_id, sender.weights_sha256), caps) is None
    refused = validate_hello(Hello(sender.model_id, "0" * 64), caps)
    assert refused is not None and refused.code == ErrorCode.WEIGHTS_MISMATCH
    source = np.random.default_rng(0).random((5, 256, 256), dtype=np.float32)
    gen = ReceiverModel.from_manifest(wide, threads=1)
    gen.set_source(source)
    kp, jac = gen.source_keypoints
    image = gen.frame(kp, jac, np.full((80, 19), -6.0, np.float32))
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8

    # a receiver with CUDA prefers the gpu generator of the same detector; one of another detector is ignored
    monkeypatch.setattr("avfr.codec.runtime.weights.models_dir", lambda: shared)
    assert generator_for("cuda") == shared / "avfr-wide.json"
    assert generator_for("cpu") == shared / "avfr-small.json"
    data = json.loads((shared / "avfr-wide.json").read_text())
    data["graphs"]["sender"]["sha256"] = "1" * 64
    (shared / "avfr-wide.json").write_text(json.dumps(data))
    assert generator_for("cuda") == shared / "avfr-small.json"

    # a model whose detector is not the shipped one is refused, and nothing is written
    out = tmp_path / "refused"
    train(TrainConfig(batch_size=1, steps=0, num_threads=2, device="cpu"), _split(clips, "train"), [],
          tmp_path / "fresh", progress=False)
    assert main(["export", str(tmp_path / "fresh" / LAST_CKPT), "--out", str(out),
                 "--detector-of", str(shipped_manifest())]) == 2
    assert [p.name for p in out.iterdir()] == []
