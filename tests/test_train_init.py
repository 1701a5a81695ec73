"""Starting a run from other weights: a wider model widened from a trained small one (same function, same
keypoint detector), and the speech ablation's --no-audio arm from a model with speech."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from train_helpers import assert_same_state

from avfr.codec.nets import CONFIGS, AvfrModel, load_weights, save_weights
from avfr.codec.runtime import shipped_torch_weights
from avfr.codec.train import TrainConfig, widen_model
from avfr.codec.train.checkpoint import init_weights
from avfr.codec.train.networks import build_networks


def _inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, 5, 256, 256, generator=g)
    driving = torch.rand(batch, 5, 256, 256, generator=g)
    mel = torch.randn(batch, 1, 80, 19, generator=g) * 2 - 6
    return source, driving, mel


def _perturbed_small(seed: int = 3) -> AvfrModel:
    """A small model whose every tensor is random and non-trivial (BatchNorm statistics and output conv too)."""
    torch.manual_seed(seed)
    model = AvfrModel(CONFIGS["small"])
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.uniform_(0.5, 2.0)
                else:
                    t.add_(0.05 * torch.randn_like(t))
    return model


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_widened_model_draws_what_the_small_one_draws(mode: str) -> None:
    small = _perturbed_small()
    torch.manual_seed(4)
    wide = AvfrModel(CONFIGS["wide"])
    copied, widened, blocks = widen_model(small, wide)
    assert copied > 0 and widened > 0 and blocks == 3  # enc_blocks.1, dec64.1, dec128.0
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in small.parameters())
    small.train(mode == "train")
    wide.train(mode == "train")  # train mode: BatchNorm's batch statistics of the old channels are unchanged
    with torch.no_grad():
        a = small(*_inputs())
        b = wide(*_inputs())
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(y, x, atol=2e-5, rtol=1e-4)
    assert_same_state({k: v for k, v in wide.state_dict().items() if k.startswith("kp_detector.")},
                      {k: v for k, v in small.state_dict().items() if k.startswith("kp_detector.")}, "detector")


def test_the_new_channels_learn() -> None:
    small = _perturbed_small()
    wide = AvfrModel(CONFIGS["wide"])
    widen_model(small, wide)
    wide.train()
    image = wide(*_inputs(batch=1))[0]
    (image - 0.5).square().mean().backward()
    grads = dict(wide.named_parameters())
    # a new block's zero last conv, the new rows of a widened conv and its old rows' new columns get gradient
    assert grads["generator.dec128.0.conv1.weight"].grad.abs().sum() > 0
    fuse = grads["generator.fuse.weight"].grad  # (d64 wide, inputs, 1, 1)
    d64_small = CONFIGS["small"].generator.dec_channels[0]
    assert fuse[:d64_small, CONFIGS["small"].generator.enc_channels[2]:CONFIGS["wide"].generator.enc_channels[2]]\
        .abs().sum() > 0


def test_widen_writes_a_wide_weights_file_that_trains_from_the_shipped_model(tmp_path: Path) -> None:
    from avfr.cli import main

    shipped, _ = shipped_torch_weights()
    out = tmp_path / "wide0.pt"
    assert main(["widen", str(shipped), "--out", str(out)]) == 0
    small, wide = load_weights(shipped), load_weights(out)
    assert wide.config.name == "wide"
    with torch.no_grad():
        torch.testing.assert_close(wide(*_inputs(batch=1))[0], small(*_inputs(batch=1))[0], atol=2e-3, rtol=0)
    cfg = TrainConfig(config="wide", init_from=str(out), freeze_detector=True, device="cpu")
    model, disc = build_networks(cfg)
    init_weights(out, cfg, model, disc)
    assert_same_state(model.state_dict(), wide.state_dict(), "wide")

    assert main(["widen", str(shipped), "--out", str(shipped)]) == 2  # never overwrites its input
    assert main(["widen", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert main(["widen", str(out), "--config", "small", "--out", str(tmp_path / "narrow.pt")]) == 1  # narrowing
    assert main(["widen", str(shipped), "--config", "paper", "--out", str(tmp_path / "p.pt")]) == 1  # other detector


def test_widen_refuses_models_that_do_not_fit() -> None:
    small = AvfrModel(CONFIGS["small"])
    other_kp = dataclasses.replace(CONFIGS["wide"], kp=dataclasses.replace(CONFIGS["wide"].kp, block_expansion=8))
    with pytest.raises(ValueError, match="keypoint detector"):
        widen_model(small, AvfrModel(other_kp))
    with pytest.raises(ValueError, match="use_audio"):
        widen_model(small, AvfrModel(dataclasses.replace(CONFIGS["wide"], use_audio=False)))
    deeper = dataclasses.replace(CONFIGS["small"], generator=dataclasses.replace(CONFIGS["small"].generator,
                                                                                 dec_blocks=(1, 1, 0)))
    with pytest.raises(ValueError, match="no place for"):  # a block of the source that the target lacks
        widen_model(AvfrModel(deeper), AvfrModel(CONFIGS["small"]))


def test_a_no_audio_arm_starts_from_a_model_with_speech(tmp_path: Path) -> None:
    shipped, _ = shipped_torch_weights()
    with_speech = load_weights(shipped)
    cfg = TrainConfig(use_audio=False, init_from=str(shipped), freeze_detector=True, device="cpu")
    model, disc = build_networks(cfg)
    init_weights(shipped, cfg, model, disc)
    assert model.audio_encoder is None and model.attention_encoder is None
    kept = {k: v for k, v in with_speech.state_dict().items() if not k.startswith(("audio_", "attention_"))}
    assert_same_state(model.state_dict(), kept, "no-audio arm")

    # the other way round stays refused: a model without speech has no speech branch to start one from
    mute = tmp_path / "mute.pt"
    save_weights(model, mute)
    full = TrainConfig(init_from=str(mute), device="cpu")
    model2, disc2 = build_networks(full)
    with pytest.raises(ValueError, match="use_audio"):
        init_weights(mute, full, model2, disc2)
