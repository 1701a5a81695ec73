"""Training losses of AVFR-GAN (paper eq. 3, 4), adapted to what can run offline here.

Generator loss = multi-scale L1 + perceptual term + FOMM equivariance + GAN (+ an auxiliary warp term).

Perceptual term. The paper uses LPIPS, whose AlexNet/VGG backbones are torch-hub downloads that cannot be
fetched on this machine (no PyPI wheel ships ImageNet weights; see ENVIRONMENT.md §5), and FOMM's VGG
pyramid loss has the same problem. We replace it with two weight-free terms:

- an MS-SSIM-style structural term, ``mean over the image pyramid (256, 128, 64, 32 px) of 1 - SSIM``
  (Gaussian 11x11 window, sigma 1.5). Averaging 1 - SSIM per scale instead of multiplying the contrast /
  structure terms with fractional exponents (Wang et al. 2003) avoids NaNs from negative per-scale values
  early in training, and keeps the multi-scale sensitivity to local structure and contrast;
- discriminator feature matching (pix2pixHD): L1 between the discriminator's intermediate features of the
  real and the generated frame at every scale. This is a *learned* perceptual distance, trained on our own
  data, and it is what LPIPS approximates with an ImageNet network.

Equivariance (FOMM): the driving frame is resampled by a random affine transform T; keypoints detected on
the transformed frame, mapped through T, must match the driving keypoints, and ``inv(J_d) A J_t`` must be
the identity. The affine jacobian is exact (no autograd through the transform).

GAN: least-squares (LSGAN) objective, multi-scale. Its weight can be 0 (warm-up): the discriminator is then
not even run in :class:`GeneratorLoss`.

Auxiliary ``warp_l1``: L1 at 64 and 32 px between the pixel-space warped source and the driving frame. It
gives the keypoints / dense motion a direct signal from the first step (helps a tiny compute budget); set its
weight to 0 to train exactly with the paper's terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avfr.codec.nets import (
    MOUTH_STD_PCT,
    AvfrModel,
    MultiScaleDiscriminator,
    affine_jacobian,
    affine_points,
    affine_warp_image,
    inverse_2x2,
    matmul_2x2,
    random_affine,
)


@dataclass(frozen=True)
class LossWeights:
    l1: float = 10.0  # multi-scale L1 (mean over the pyramid)
    ssim: float = 5.0  # MS-SSIM-style term (mean over the pyramid of 1 - SSIM)
    feature_matching: float = 10.0  # discriminator feature matching (needs the discriminator)
    gan: float = 1.0  # LSGAN generator term; 0 = warm-up without the discriminator
    equivariance_kp: float = 10.0
    equivariance_jac: float = 10.0
    warp_l1: float = 1.0  # auxiliary: pixel-warped source vs driving at 64 / 32 px
    mouth_l1: float = 0.0  # auxiliary: L1 inside the driving frame's mouth box (needs boxes; 0 = off)
    audio_mouth: float = 0.0  # auxiliary: L1 of the audio encoder's mouth head (in standard deviations; 0 = off)
    pyramid_levels: int = 4  # 256, 128, 64, 32 px
    sigma_affine: float = 0.05  # std of the random affine transform for equivariance


def image_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """x (B, C, H, W) -> [x, x/2, x/4, ...] by 2x2 average pooling (``levels`` entries)."""
    out = [x]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


def _gaussian_window(size: int, sigma: float, channels: int, ref: Tensor) -> Tensor:
    t = torch.arange(size, device=ref.device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # (C, 1, s, s)


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of images in [0, 1] (computed in float32, valid convolution).

    Args:
        x, y: (B, C, H, W), H and W >= window.

    Returns:
        scalar tensor.
    """
    x = x.float()
    y = y.float()
    c = x.shape[1]
    win = _gaussian_window(window, sigma, c, x)
    c1, c2 = 0.01**2, 0.03**2
    mu_x = F.conv2d(x, win, groups=c)
    mu_y = F.conv2d(y, win, groups=c)
    sxx = F.conv2d(x * x, win, groups=c) - mu_x * mu_x
    syy = F.conv2d(y * y, win, groups=c) - mu_y * mu_y
    sxy = F.conv2d(x * y, win, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return (num / den).mean()


def multiscale_ssim_loss(x: Tensor, y: Tensor, levels: int = 4) -> Tensor:
    """Mean over the pyramid of 1 - SSIM (window shrinks to 7 below 64 px). x, y (B, C, H, W) -> scalar."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        losses = []
        for xs, ys in zip(image_pyramid(x.float(), levels), image_pyramid(y.float(), levels), strict=True):
            win = 11 if xs.shape[-1] >= 64 else 7
            losses.append(1 - ssim(xs, ys, window=win, sigma=1.5 if win == 11 else 1.0))
        return torch.stack(losses).mean()


def multiscale_l1(x: Tensor, y: Tensor, levels: int = 4) -> Tensor:
    """Mean over the pyramid of the mean absolute error. x, y (B, C, H, W) -> scalar."""
    px = image_pyramid(x.float(), levels)
    py = image_pyramid(y.float(), levels)
    return torch.stack([(a - b).abs().mean() for a, b in zip(px, py, strict=True)]).mean()


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Rectangles as masks.

    Args:
        boxes: (B, 4) (x0, y0, x1, y1) in [-1, 1] grid coordinates (align_corners=False).
        height, width: mask size in px.

    Returns:
        float32 (B, 1, height, width): 1 at pixels whose centre lies in the box, else 0.
    """
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) / width * 2 - 1  # (W,)
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) / height * 2 - 1  # (H,)
    b = boxes.float()
    in_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] <= b[:, 2:3])  # (B, W)
    in_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] <= b[:, 3:4])  # (B, H)
    return (in_y[:, :, None] & in_x[:, None, :]).float()[:, None]


def masked_l1(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the masked pixels (all channels). x, y (B, C, H, W), mask (B, 1, H, W) -> scalar.

    Zero when the mask is empty.
    """
    num = ((x.float() - y.float()).abs() * mask).sum()
    return num / (mask.sum() * x.shape[1]).clamp_min(1.0)


@dataclass(frozen=True)
class WireNoise:
    """What the keypoint stream does to the driving keypoints on the wire, simulated in training.

    The receiver never sees the detector's float keypoints: the sender quantises them (``avfr.proto.quant``:
    b-bit fixed point) and holds a keypoint until it moves by more than a hysteresis threshold. Training on
    the same error makes the generator robust to it (and gives the audio a reason to carry the mouth).

    Attributes:
        prob: share of the batch that gets the wire's error (the rest stays exact).
        kp_step: keypoint quantisation step in [-1, 1] units (7 bits: 1/64).
        kp_error_steps: keypoint error drawn uniformly in +-this many steps (hysteresis 0.75 = the call's).
        jac_step, jac_abs_max: jacobian entries rounded to this step and clamped to [-A, A - step] (the call's
            7 bits over A = 3 since session 8; sessions 1-7 trained and called with 6 bits over A = 4).
    """

    prob: float = 0.75
    kp_step: float = 1.0 / 64
    kp_error_steps: float = 0.75
    jac_step: float = 3.0 / 64
    jac_abs_max: float = 3.0

    def apply(self, kp: Tensor, jac: Tensor) -> tuple[Tensor, Tensor]:
        """kp (B, K, 2), jac (B, K, 2, 2) -> the same with the wire's error on a random ``prob`` share of rows.

        No gradient flows through the jacobian rounding (use it with a frozen detector, or accept it).
        """
        b = kp.shape[0]
        pick = (torch.rand(b, device=kp.device) < self.prob).to(kp.dtype)  # (B,)
        noise = (torch.rand_like(kp) * 2 - 1) * (self.kp_error_steps * self.kp_step)
        kp_w = (kp + noise * pick[:, None, None]).clamp(-1.0, 1.0 - self.kp_step)
        jac_q = (torch.floor(jac / self.jac_step + 0.5) * self.jac_step).clamp(-self.jac_abs_max,
                                                                              self.jac_abs_max - self.jac_step)
        jac_q = jac + (jac_q - jac).detach()  # straight-through
        jac_w = torch.where(pick[:, None, None, None] > 0, jac_q, jac)
        return kp_w, jac_w


def equivariance_losses(
    model: AvfrModel, driving: Tensor, kp: Tensor, jac: Tensor, sigma: float
) -> tuple[Tensor, Tensor]:
    """FOMM equivariance with a random affine transform.

    Args:
        model: provides ``detect``.
        driving: (B, 5, 256, 256) driving frames.
        kp, jac: (B, K, 2), (B, K, 2, 2) detected on ``driving``.
        sigma: affine perturbation std.

    Returns:
        keypoint loss, jacobian loss (scalars).
    """
    b, k, _ = kp.shape
    theta = random_affine(b, sigma, kp)  # (B, 2, 3) float32
    transformed = affine_warp_image(driving, theta.to(driving.dtype))  # (B, 5, 256, 256)
    kp_t, jac_t = model.detect(transformed)  # in transformed-frame coordinates
    loss_kp = (kp - affine_points(theta, kp_t.float())).abs().mean()
    mapped = matmul_2x2(affine_jacobian(theta, k), jac_t.float())  # (B, K, 2, 2) = A J_t
    value = matmul_2x2(inverse_2x2(jac.float()), mapped)  # should be the identity
    eye = torch.eye(2, device=kp.device, dtype=value.dtype).expand_as(value)
    loss_jac = (eye - value).abs().mean()
    return loss_kp, loss_jac


def lsgan_generator(logits: list[Tensor]) -> Tensor:
    """LSGAN generator term: mean over scales of mean((1 - D(fake))^2)."""
    return torch.stack([((1 - lg.float()) ** 2).mean() for lg in logits]).mean()


def feature_matching(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """Mean L1 between discriminator features of fake and (detached) real, over scales and layers."""
    terms = []
    for ff, fr in zip(fake, real, strict=True):
        for a, b in zip(ff, fr, strict=True):
            terms.append((a.float() - b.detach().float()).abs().mean())
    return torch.stack(terms).mean()


class GeneratorLoss(nn.Module):
    """Generator objective (paper eq. 4 with the substitutions above).

    Gradients also reach the discriminator's parameters through the GAN / feature-matching terms: zero the
    discriminator's grads (``d_opt.zero_grad()``) before its own backward, and step only the generator
    optimiser with this loss.
    """

    def __init__(
        self, model: AvfrModel, discriminator: MultiScaleDiscriminator, weights: LossWeights,
        wire_noise: WireNoise | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.discriminator = discriminator
        self.weights = weights
        self.wire_noise = wire_noise

    def forward(
        self, source: Tensor, driving: Tensor, mel: Tensor, mouth_box: Tensor | None = None,
        kp_image: Tensor | None = None, held_frames: Tensor | None = None, mouth_shape: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One generator pass + losses.

        Args:
            source: (B, 5, 256, 256) in [0, 1].
            driving: (B, 5, 256, 256) in [0, 1].
            mel: (B, 1, 80, 19) log-mel window of the driving frame.
            mouth_box: (B, 4) mouth boxes of the driving frames (``TrainSet.sample_with_mouth``); the
                ``mouth_l1`` term is computed only when it is given and its weight is > 0.
            kp_image: (B, 5, 256, 256) frames the driving keypoints are detected from instead of ``driving``
                (held keypoints, ``TrainSet.sample_batch``); the target stays ``driving``.
            held_frames: (B, 1) how many frames ``kp_image`` lies before ``driving`` (a ``hold_input`` model's
                input; None = 0).
            mouth_shape: (B, 3) the driving frames' mouth measures (``TrainSet.mouth_measures``, NaN rows are
                skipped): the ``audio_mouth`` term's target, read from the mel alone by the audio encoder's head.

        Returns:
            total (scalar), generated (B, 3, 256, 256) in (0, 1) (with grad), terms: detached scalars by name
            (unweighted values).
        """
        w = self.weights
        kp_frames = driving if kp_image is None else kp_image
        if self.wire_noise is None and kp_image is None:
            image, _, _, kp_d, jac_d, warped_rgb, _ = self.model.forward_train(source, driving, mel)
        else:  # forward_train with the wire's error / held keypoints (equivariance sees the exact detection)
            kp_s, jac_s, *cache = self.model.encode_source(source)
            kp_d, jac_d = self.model.detect(kp_frames)
            kp_w, jac_w = (kp_d, jac_d) if self.wire_noise is None else self.wire_noise.apply(kp_d, jac_d)
            image, warped_rgb, _ = self.model.render(kp_s, jac_s, *cache, kp_w, jac_w, mel, held_frames)
        target = driving[:, :3].float()
        terms: dict[str, Tensor] = {}
        total = image.new_zeros(())
        terms["l1"] = multiscale_l1(image, target, w.pyramid_levels)
        total = total + w.l1 * terms["l1"]
        if w.ssim > 0:
            terms["ssim"] = multiscale_ssim_loss(image, target, w.pyramid_levels)
            total = total + w.ssim * terms["ssim"]
        if w.warp_l1 > 0:
            wp = image_pyramid(warped_rgb.float(), 4)[2:]
            tp = image_pyramid(target, 4)[2:]
            terms["warp_l1"] = torch.stack([(a - b).abs().mean() for a, b in zip(wp, tp, strict=True)]).mean()
            total = total + w.warp_l1 * terms["warp_l1"]
        if w.mouth_l1 > 0 and mouth_box is not None:
            mask = box_mask(mouth_box, image.shape[-2], image.shape[-1])
            terms["mouth_l1"] = masked_l1(image, target, mask)
            total = total + w.mouth_l1 * terms["mouth_l1"]
        if w.audio_mouth > 0 and mouth_shape is not None and self.model.audio_encoder is not None:
            valid = torch.isfinite(mouth_shape).all(1)
            pred = self.model.audio_encoder.mouth(mel).float()  # (B, 3) % of the face height
            std = pred.new_tensor(MOUTH_STD_PCT)
            err = ((pred - torch.nan_to_num(mouth_shape.float())) / std).abs().mean(1)  # (B,) in std units
            terms["audio_mouth"] = (err * valid).sum() / valid.sum().clamp(min=1)
            total = total + w.audio_mouth * terms["audio_mouth"]
        if w.equivariance_kp > 0 or w.equivariance_jac > 0:
            eq_kp, eq_jac = equivariance_losses(self.model, kp_frames, kp_d, jac_d, w.sigma_affine)
            terms["eq_kp"] = eq_kp
            terms["eq_jac"] = eq_jac
            total = total + w.equivariance_kp * eq_kp + w.equivariance_jac * eq_jac
        if w.gan > 0 or w.feature_matching > 0:
            feats_fake, logits_fake = self.discriminator(image)
            if w.gan > 0:
                terms["gan"] = lsgan_generator(logits_fake)
                total = total + w.gan * terms["gan"]
            if w.feature_matching > 0:
                with torch.no_grad():
                    feats_real, _ = self.discriminator(target)
                terms["feature_matching"] = feature_matching(feats_fake, feats_real)
                total = total + w.feature_matching * terms["feature_matching"]
        terms = {k: v.detach() for k, v in terms.items()}
        terms["total"] = total.detach()
        return total, image, terms


class DiscriminatorLoss(nn.Module):
    """LSGAN discriminator objective (paper eq. 3 in least-squares form), multi-scale."""

    def __init__(self, discriminator: MultiScaleDiscriminator) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """real, fake (B, 3, 256, 256) in [0, 1] (fake is detached here) -> total scalar, terms."""
        _, logits_real = self.discriminator(real)
        _, logits_fake = self.discriminator(fake.detach())
        d_real = torch.stack([((1 - lg.float()) ** 2).mean() for lg in logits_real]).mean()
        d_fake = torch.stack([(lg.float() ** 2).mean() for lg in logits_fake]).mean()
        total = d_real + d_fake
        return total, {"d_real": d_real.detach(), "d_fake": d_fake.detach(), "d_total": total.detach()}
