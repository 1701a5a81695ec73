"""Training precision on a CPU: bf16 autocast where the CPU has native bf16, fp32 validation, fp32 SSIM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avfr.codec.nets import CONFIGS, AvfrModel, MultiScaleDiscriminator
from avfr.codec.train.config import TrainConfig, autocast_for, cpu_bf16_native
from avfr.codec.train.losses import multiscale_ssim_loss
from avfr.codec.train.networks import build_losses

CPU = torch.device("cpu")
native = pytest.mark.skipif(not cpu_bf16_native(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")


def _conv_dtype(ctx: object) -> torch.dtype:
    x = torch.rand(1, 3, 16, 16)
    w = torch.rand(4, 3, 3, 3)
    with ctx:
        return F.conv2d(x, w).dtype


@native
def test_cpu_training_step_autocasts_to_bf16() -> None:
    assert _conv_dtype(autocast_for(CPU, TrainConfig())) == torch.bfloat16


def test_validation_and_no_amp_stay_fp32() -> None:
    """`cpu=False` (validation) and `--no-amp` keep CPU figures in fp32 whatever the CPU."""
    assert _conv_dtype(autocast_for(CPU, TrainConfig(), cpu=False)) == torch.float32
    assert _conv_dtype(autocast_for(CPU, TrainConfig(amp=False))) == torch.float32


@native
def test_ssim_loss_runs_in_fp32_under_bf16_autocast() -> None:
    """SSIM's variances (E[x^2] - E[x]^2) cancel badly in bf16: the loss turns autocast off inside."""
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    ref = multiscale_ssim_loss(x, y, levels=2)
    with autocast_for(CPU, TrainConfig()):
        got = multiscale_ssim_loss(x, y, levels=2)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


@native
def test_a_bf16_generator_step_is_finite_and_close_to_fp32() -> None:
    """The recipe's generator loss (mouth L1, wire error off for determinism, GAN on) in bf16 stays within a few
    per cent of fp32 on the same weights and inputs, and its gradients are finite."""
    torch.manual_seed(0)
    model = AvfrModel(CONFIGS["small"]).train()
    disc = MultiScaleDiscriminator(CONFIGS["small"].discriminator)
    _, g_obj, _ = build_losses(model, disc, mouth_l1=5.0, equivariance=False)
    src, drv = torch.rand(2, 5, 256, 256), torch.rand(2, 5, 256, 256)
    mel = torch.randn(2, 1, 80, 19) - 6
    mouth = torch.tensor([[-0.3, 0.2, 0.3, 0.6]] * 2)  # (x0, y0, x1, y1) in grid units
    with torch.no_grad():
        fp32, _, _ = g_obj(src, drv, mel, mouth)
    with autocast_for(CPU, TrainConfig()):
        bf16, image, terms = g_obj(src, drv, mel, mouth)
    bf16.backward()
    assert float(terms["mouth_l1"]) > 0
    assert image.dtype == torch.float32  # the generator's last layer leaves autocast (a sigmoid in fp32)
    assert torch.isfinite(bf16)
    assert abs(float(bf16.detach()) - float(fp32)) <= 0.05 * abs(float(fp32))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
