"""Tests for avfr.codec.nets.model / losses / discriminator: shapes, training steps, ablations, weight files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from avfr.codec.nets import (
    CONFIGS,
    AvfrConfig,
    AvfrModel,
    MultiScaleDiscriminator,
    file_sha256,
    load_weights,
    save_weights,
)
from avfr.codec.train import DiscriminatorLoss, GeneratorLoss, LossWeights, multiscale_ssim_loss, ssim


def _inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, 5, 256, 256, generator=g)
    driving = torch.rand(batch, 5, 256, 256, generator=g)
    mel = torch.randn(batch, 1, 80, 19, generator=g) * 2 - 6
    return source, driving, mel


def _check_outputs(model: AvfrModel, batch: int) -> None:
    k = model.config.num_kp
    with torch.no_grad():
        out, kp_s, jac_s, kp_d, jac_d = model.eval()(*_inputs(batch))
    assert out.shape == (batch, 3, 256, 256)
    assert kp_s.shape == kp_d.shape == (batch, k, 2)
    assert jac_s.shape == jac_d.shape == (batch, k, 2, 2)
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(kp_s.abs().max()) <= 1


def _train_step(config: AvfrConfig, batch: int, weights: LossWeights) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = AvfrModel(config).train()
    disc = MultiScaleDiscriminator(config.discriminator)
    g_loss = GeneratorLoss(model, disc, weights)
    d_loss = DiscriminatorLoss(disc)
    source, driving, mel = _inputs(batch)
    total, fake, terms = g_loss(source, driving, mel)
    assert fake.shape == (batch, 3, 256, 256)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the keypoint detector and the audio branch get a learning signal
    assert float(model.kp_detector.kp_head.weight.grad.abs().sum()) > 0
    if model.audio_encoder is not None:
        assert float(model.audio_encoder.project.weight.grad.abs().sum()) > 0
    disc.zero_grad()
    d_total, d_terms = d_loss(driving[:, :3], fake)
    d_total.backward()
    assert torch.isfinite(d_total)
    assert all(torch.isfinite(p.grad).all() for p in disc.parameters() if p.grad is not None)
    return {**terms, **d_terms}


def test_small_shapes() -> None:
    _check_outputs(AvfrModel(CONFIGS["small"]), batch=2)


def test_paper_shapes() -> None:
    _check_outputs(AvfrModel(CONFIGS["paper"]), batch=1)


def test_small_training_step_all_losses() -> None:
    terms = _train_step(CONFIGS["small"], 1, LossWeights())
    for name in ("l1", "ssim", "warp_l1", "eq_kp", "eq_jac", "gan", "feature_matching", "total", "d_total"):
        assert name in terms and torch.isfinite(terms[name])


def test_small_training_step_warmup_skips_discriminator() -> None:
    terms = _train_step(CONFIGS["small"], 1, LossWeights(gan=0.0, feature_matching=0.0))
    assert "gan" not in terms and "feature_matching" not in terms


def test_paper_training_step() -> None:
    terms = _train_step(CONFIGS["paper"], 1, LossWeights())
    assert torch.isfinite(terms["total"])


def test_untrained_generator_outputs_warped_source() -> None:
    model = AvfrModel(CONFIGS["small"]).eval()
    with torch.no_grad():
        out, *_, warped, _ = model.forward_train(*_inputs(1))
    assert float((out - warped.clamp(1e-3, 1 - 1e-3)).abs().max()) < 1e-2


def test_ablation_no_audio() -> None:
    config = dataclasses.replace(CONFIGS["small"], use_audio=False)
    model = AvfrModel(config).eval()
    assert model.audio_encoder is None and model.attention_encoder is None
    source, driving, mel = _inputs(1)
    with torch.no_grad():
        a = model(source, driving, mel)[0]
        b = model(source, driving, torch.zeros_like(mel))[0]
    torch.testing.assert_close(a, b)


def test_ablation_no_priors() -> None:
    config = dataclasses.replace(CONFIGS["small"], use_priors=False)
    model = AvfrModel(config).eval()
    source, driving, mel = _inputs(1)
    other_s, other_d = source.clone(), driving.clone()
    other_s[:, 3:] = torch.rand_like(other_s[:, 3:])
    other_d[:, 3:] = 0.0
    with torch.no_grad():
        a = model(source, driving, mel)
        b = model(other_s, other_d, mel)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    # with priors on, the mesh / mask channels matter
    with_priors = AvfrModel(CONFIGS["small"]).eval()
    with torch.no_grad():
        assert not torch.allclose(with_priors.detect(source)[0], with_priors.detect(other_s)[0])


def test_audio_changes_output() -> None:
    torch.manual_seed(0)
    model = AvfrModel(CONFIGS["small"]).eval()
    torch.nn.init.normal_(model.generator.out.weight, std=0.05)  # the untrained residual is tiny
    source, driving, mel = _inputs(1)
    with torch.no_grad():
        a = model(source, driving, mel)[0]
        b = model(source, driving, mel + 3.0)[0]
    assert not torch.allclose(a, b)


def test_config_dict_round_trip() -> None:
    for config in CONFIGS.values():
        assert AvfrConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown field"):
        AvfrConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="Enc_query"):
        dataclasses.replace(
            CONFIGS["small"], audio=dataclasses.replace(CONFIGS["small"].audio, query_channels=7)
        )


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = AvfrModel(dataclasses.replace(CONFIGS["small"], use_priors=False)).eval()
    path = tmp_path / "model.pt"
    digest = save_weights(model, path)
    assert digest == file_sha256(path)
    assert path.stat().st_size < 20 * 1024 * 1024
    loaded = load_weights(path, expected_sha256=digest[:8])
    assert loaded.config == model.config
    source, driving, mel = _inputs(1)
    with torch.no_grad():
        a = model(source, driving, mel)[0]
        b = loaded(source, driving, mel)[0]
    assert float((a - b).abs().max()) < 5e-3  # fp16 storage
    with pytest.raises(ValueError, match="does not match"):
        load_weights(path, expected_sha256="0" * 64)


def test_ssim_identical_and_different() -> None:
    x = torch.rand(2, 3, 64, 64)
    assert abs(float(ssim(x, x)) - 1.0) < 1e-5
    assert float(multiscale_ssim_loss(x, x)) < 1e-5
    assert float(multiscale_ssim_loss(x, torch.rand_like(x))) > 0.5


def test_box_mask_and_masked_l1() -> None:
    from avfr.codec.train import box_mask, masked_l1

    mask = box_mask(torch.tensor([[-1.0, -1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), 8, 8)
    assert mask.shape == (2, 1, 8, 8)
    assert float(mask[0].sum()) == 16 and float(mask[0, 0, :4, :4].sum()) == 16  # the top-left quarter
    assert float(mask[1].sum()) == 0  # an empty box
    x, y = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    y[0, :, :4, :4] = 0.5  # differs only inside the box of sample 0
    y[0, :, 4:, 4:] = 1.0  # and outside it
    assert float(masked_l1(x, y, mask)) == pytest.approx(0.5)
    assert float(masked_l1(x, y, torch.zeros_like(mask))) == 0.0


def test_mouth_term_only_with_boxes() -> None:
    model, disc = AvfrModel(CONFIGS["small"]), MultiScaleDiscriminator(CONFIGS["small"].discriminator)
    loss = GeneratorLoss(model, disc, LossWeights(gan=0.0, feature_matching=0.0, mouth_l1=5.0))
    src, drv, mel = torch.rand(1, 5, 256, 256), torch.rand(1, 5, 256, 256), torch.randn(1, 1, 80, 19)
    _, _, without = loss(src, drv, mel)
    assert "mouth_l1" not in without
    torch.manual_seed(0)
    total, _, terms = loss(src, drv, mel, torch.tensor([[-0.3, 0.1, 0.3, 0.5]]))
    assert 0 < float(terms["mouth_l1"]) < 1 and torch.isfinite(total)


def test_wire_noise_matches_the_call_quantiser() -> None:
    import numpy as np

    from avfr.codec.train import WireNoise
    from avfr.proto.quant import QuantParams, dequantise, quantise
    from avfr.sender import EncoderConfig

    call = EncoderConfig()
    params = QuantParams(kp_bits=call.kp_bits, jac_bits=call.jac_bits, jac_abs_max=call.jac_abs_max)
    wire = WireNoise(prob=1.0)
    assert wire.kp_step == params.kp_step and wire.jac_step == params.jac_step
    kp = torch.rand(4, 10, 2) * 1.8 - 0.9
    jac = torch.randn(4, 10, 2, 2) * 2
    kp_w, jac_w = wire.apply(kp, jac)
    assert float((kp_w - kp).abs().max()) <= 0.75 * params.kp_step + 1e-6
    assert float((kp_w - kp).abs().max()) > 0.2 * params.kp_step  # it does move them
    expected = dequantise(quantise(jac.numpy(), params.jac_bits, params.jac_abs_max), params.jac_bits,
                          params.jac_abs_max)
    np.testing.assert_allclose(jac_w.numpy(), expected, atol=1e-6)
    kp_0, jac_0 = WireNoise(prob=0.0).apply(kp, jac)
    assert torch.equal(kp_0, kp) and torch.equal(jac_0, jac)
    model, disc = AvfrModel(CONFIGS["small"]), MultiScaleDiscriminator(CONFIGS["small"].discriminator)
    loss = GeneratorLoss(model, disc, LossWeights(gan=0.0, feature_matching=0.0), wire)
    total, image, _ = loss(torch.rand(1, 5, 256, 256), torch.rand(1, 5, 256, 256), torch.randn(1, 1, 80, 19))
    total.backward()
    assert image.shape == (1, 3, 256, 256) and torch.isfinite(total)


def test_hold_input_starts_as_the_model_without_it_and_then_matters() -> None:
    torch.manual_seed(0)
    plain = AvfrModel(CONFIGS["small"]).eval()
    torch.nn.init.normal_(plain.generator.out.weight, std=0.05)  # make the decoder matter
    held_cfg = dataclasses.replace(CONFIGS["small"],
                                   generator=dataclasses.replace(CONFIGS["small"].generator, hold_input=True))
    held = AvfrModel(held_cfg).eval()
    missing, unexpected = held.load_state_dict(plain.state_dict(), strict=False)  # what --init does
    assert not unexpected and missing and all(".hold_" in k for k in missing)
    source, driving, mel = _inputs(1)
    with torch.no_grad():
        cache = plain.encode_source(source)
        kp, jac = plain.detect(driving)
        ref = plain.render(*cache, kp, jac, mel)[0]
        for frames in (None, 0.0, 3.0):
            h = None if frames is None else torch.full((1, 1), frames)
            torch.testing.assert_close(held.render(*cache, kp, jac, mel, h)[0], ref, atol=0, rtol=0)
        torch.nn.init.normal_(held.generator.hold_fuse.weight, std=0.5)
        torch.nn.init.normal_(held.generator.hold_audio_gain.weight, std=0.5)
        torch.testing.assert_close(held.render(*cache, kp, jac, mel, torch.zeros(1, 1))[0], ref, atol=0, rtol=0)
        moved = held.render(*cache, kp, jac, mel, torch.full((1, 1), 3.0))[0]
    assert float((moved - ref).abs().max()) > 1e-3


def test_audio_mouth_head_reads_the_mel_and_only_exists_when_asked() -> None:
    cfg = dataclasses.replace(CONFIGS["small"], audio=dataclasses.replace(CONFIGS["small"].audio, mouth_head=True))
    model = AvfrModel(cfg)
    _, _, mel = _inputs(2)
    out = model.audio_encoder.mouth(mel)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert float(model.audio_encoder.trunk.convs[0].weight.grad.abs().sum()) > 0  # the encoder learns from it
    with pytest.raises(RuntimeError, match="mouth head"):
        AvfrModel(CONFIGS["small"]).audio_encoder.mouth(mel)
