"""Pure keypoint math for AVFR-GAN / FOMM (no parameters, export-safe).

Conventions used across ``avfr.codec``:

- Coordinates are normalised to [-1, 1] with ``x`` first, ``y`` second, the same convention as
  ``F.grid_sample`` with ``align_corners=False``: -1 is the left/top *edge* of the image and pixel ``i`` of
  ``n`` has its centre at ``(2 i + 1) / n - 1``. A coordinate then names the same physical place at every
  resolution (64x64 motion, 128x128 and 256x256 decoder), so flows can be resized freely.
- Jacobians are 2x2 matrices ``jac[..., r, c] = d x_r / d z_c`` (FOMM first-order terms).
- 2x2 products and inverses are written element-wise (closed form): ``torch.inverse`` does not export to
  ONNX, and element-wise ops are left in float32 under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor


def coordinate_grid(shape: tuple[int, int], ref: Tensor) -> Tensor:
    """Pixel-centre coordinate grid in [-1, 1].

    Args:
        shape: (h, w) of the grid.
        ref: tensor whose device and dtype the grid takes.

    Returns:
        (h, w, 2) grid, ``grid[i, j] = (x_j, y_i)`` with ``x_j = (2 j + 1) / w - 1``.
    """
    h, w = shape
    xs = (torch.arange(w, device=ref.device, dtype=ref.dtype) * 2 + 1) / w - 1  # (w,)
    ys = (torch.arange(h, device=ref.device, dtype=ref.dtype) * 2 + 1) / h - 1  # (h,)
    gx = xs.view(1, w).expand(h, w)
    gy = ys.view(h, 1).expand(h, w)
    return torch.stack([gx, gy], dim=-1)  # (h, w, 2)


def kp_to_gaussian(kp: Tensor, shape: tuple[int, int], kp_variance: float) -> Tensor:
    """Render keypoints as isotropic Gaussian heatmaps.

    Args:
        kp: (B, K, 2) keypoints in [-1, 1].
        shape: (h, w) of the heatmaps.
        kp_variance: variance of the Gaussian in normalised units (FOMM: 0.01).

    Returns:
        (B, K, h, w) heatmaps with peak value 1.
    """
    grid = coordinate_grid(shape, kp)  # (h, w, 2)
    diff = grid[None, None] - kp[:, :, None, None, :]  # (B, K, h, w, 2)
    return torch.exp(-0.5 * (diff * diff).sum(-1) / kp_variance)  # (B, K, h, w)


def matmul_2x2(a: Tensor, b: Tensor) -> Tensor:
    """Batched 2x2 matrix product written element-wise (broadcasts leading dims).

    Args:
        a: (..., 2, 2).
        b: (..., 2, 2).

    Returns:
        (..., 2, 2) ``a @ b``.
    """
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


def matvec_2x2(a: Tensor, v: Tensor) -> Tensor:
    """Batched 2x2 matrix times 2-vector, element-wise.

    Args:
        a: (..., 2, 2).
        v: (..., 2).

    Returns:
        (..., 2) ``a @ v``.
    """
    return (a * v.unsqueeze(-2)).sum(-1)


def inverse_2x2(m: Tensor, eps: float = 1e-6) -> Tensor:
    """Closed-form inverse of 2x2 matrices (ONNX friendly, no ``torch.inverse``).

    The determinant is pushed away from 0 by ``eps`` (keeping its sign) so degenerate jacobians give large
    but finite values instead of inf/NaN.

    Args:
        m: (..., 2, 2).
        eps: smallest |det| used.

    Returns:
        (..., 2, 2) inverse.
    """
    a = m[..., 0, 0]
    b = m[..., 0, 1]
    c = m[..., 1, 0]
    d = m[..., 1, 1]
    det = a * d - b * c  # (...,)
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    det = sign * torch.clamp(det.abs(), min=eps)
    row0 = torch.stack([d, -b], dim=-1)
    row1 = torch.stack([-c, a], dim=-1)
    return torch.stack([row0, row1], dim=-2) / det[..., None, None]


def relative_motion(
    kp_driving: Tensor,
    jac_driving: Tensor,
    kp_driving_initial: Tensor,
    jac_driving_initial: Tensor,
    kp_source: Tensor,
    jac_source: Tensor,
    movement_scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """FOMM relative motion for cross-identity reenactment.

    The driving motion relative to the first driving frame is applied on top of the source keypoints, so the
    source face shape is kept: ``kp = kp_s + scale * (kp_d - kp_d0)``, ``jac = jac_d @ inv(jac_d0) @ jac_s``.
    With ``kp_d == kp_d0`` (first frame) the result is the source keypoints themselves.
    ``avfr.codec.runtime.sessions.relative_motion`` is the numpy twin used by the receiver.

    Args:
        kp_driving: (B, K, 2) current driving keypoints.
        jac_driving: (B, K, 2, 2).
        kp_driving_initial: (B, K, 2) keypoints of the driving frame matched to the source pose.
        jac_driving_initial: (B, K, 2, 2).
        kp_source: (B, K, 2).
        jac_source: (B, K, 2, 2).
        movement_scale: FOMM ``adapt_movement_scale`` factor (1.0: off).

    Returns:
        kp (B, K, 2) and jac (B, K, 2, 2) to feed the generator as driving keypoints.
    """
    kp = kp_source + movement_scale * (kp_driving - kp_driving_initial)
    jac = matmul_2x2(matmul_2x2(jac_driving, inverse_2x2(jac_driving_initial)), jac_source)
    return kp, jac


def random_affine(batch: int, sigma: float, ref: Tensor) -> Tensor:
    """Random affine transforms near identity for the equivariance loss (FOMM ``sigma_affine``).

    Args:
        batch: B.
        sigma: std of the perturbation of the 2x3 matrix.
        ref: tensor for device/dtype.

    Returns:
        (B, 2, 3) matrices ``[A | t]`` mapping ``z -> A z + t`` in normalised coordinates.
    """
    eye = torch.zeros(2, 3, device=ref.device, dtype=ref.dtype)
    eye[0, 0] = 1.0
    eye[1, 1] = 1.0
    return eye[None] + sigma * torch.randn(batch, 2, 3, device=ref.device, dtype=ref.dtype)


def affine_points(theta: Tensor, points: Tensor) -> Tensor:
    """Apply affine transforms to points.

    Args:
        theta: (B, 2, 3) ``[A | t]``.
        points: (B, ..., 2) coordinates.

    Returns:
        (B, ..., 2) ``A p + t``.
    """
    extra = points.dim() - 2
    a = theta[:, :, :2].reshape(theta.shape[0], *([1] * extra), 2, 2)  # (B, 1.., 2, 2)
    t = theta[:, :, 2].reshape(theta.shape[0], *([1] * extra), 2)  # (B, 1.., 2)
    return matvec_2x2(a, points) + t


def affine_jacobian(theta: Tensor, num_kp: int) -> Tensor:
    """Jacobian of ``z -> A z + t`` at every keypoint (constant ``A``).

    Args:
        theta: (B, 2, 3).
        num_kp: K.

    Returns:
        (B, K, 2, 2).
    """
    return theta[:, None, :, :2].expand(theta.shape[0], num_kp, 2, 2)


def affine_warp_image(image: Tensor, theta: Tensor) -> Tensor:
    """Resample an image so that output(z) = image(A z + t) (the FOMM "transformed frame").

    Keypoints detected in the output map back to the input with :func:`affine_points`.

    Args:
        image: (B, C, H, W).
        theta: (B, 2, 3).

    Returns:
        (B, C, H, W), zeros outside the input.
    """
    _, _, h, w = image.shape
    grid = coordinate_grid((h, w), image)[None].expand(image.shape[0], h, w, 2)  # (B, H, W, 2)
    grid = affine_points(theta, grid)  # (B, H, W, 2)
    return torch.nn.functional.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )


def warp(image: Tensor, flow: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Backward warp: output(z) = image(flow(z)), resizing the flow to the image size when needed.

    Args:
        image: (B, C, H, W).
        flow: (B, h, w, 2) sampling grid in [-1, 1] (x, y).
        padding_mode: ``grid_sample`` padding ("zeros" or "border").

    Returns:
        (B, C, H, W).
    """
    _, _, h, w = image.shape
    if flow.shape[1] != h or flow.shape[2] != w:
        flow = resize_flow(flow, (h, w))
    return torch.nn.functional.grid_sample(
        image, flow.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


def resize_flow(flow: Tensor, shape: tuple[int, int]) -> Tensor:
    """Bilinearly resize a sampling grid.

    The displacement ``flow - identity`` is resized (values are absolute coordinates, so they are not
    rescaled) and the identity grid of the target size is added back, so border pixels, which bilinear
    interpolation clamps, keep their exact positions.

    Args:
        flow: (B, h, w, 2).
        shape: (H, W) target.

    Returns:
        (B, H, W, 2).
    """
    _, h, w, _ = flow.shape
    disp = (flow - coordinate_grid((h, w), flow)[None]).permute(0, 3, 1, 2)  # (B, 2, h, w)
    disp = torch.nn.functional.interpolate(disp, size=shape, mode="bilinear", align_corners=False)
    return disp.permute(0, 2, 3, 1) + coordinate_grid(shape, flow)[None]  # (B, H, W, 2)
