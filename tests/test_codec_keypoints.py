"""Tests for avfr.codec.nets.keypoints (pure keypoint math)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avfr.codec.nets import (
    affine_jacobian,
    affine_points,
    affine_warp_image,
    coordinate_grid,
    inverse_2x2,
    kp_to_gaussian,
    matmul_2x2,
    random_affine,
    relative_motion,
    resize_flow,
    warp,
)
from avfr.codec.runtime import sessions as runtime


def test_inverse_2x2_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(7, 5, 2, 2, generator=g, dtype=torch.float64) + 2 * torch.eye(2, dtype=torch.float64)
    ours = inverse_2x2(m).numpy()
    np.testing.assert_allclose(ours, np.linalg.inv(m.numpy()), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(runtime.inverse_2x2(m.numpy()), np.linalg.inv(m.numpy()), rtol=1e-9, atol=1e-9)


def test_inverse_2x2_singular_is_finite() -> None:
    m = torch.zeros(3, 2, 2)
    assert torch.isfinite(inverse_2x2(m)).all()


def test_matmul_2x2_matches_matmul() -> None:
    a = torch.randn(4, 3, 2, 2)
    b = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(matmul_2x2(a, b), a @ b)


def test_coordinate_grid_pixel_centres() -> None:
    grid = coordinate_grid((4, 8), torch.zeros(1))
    assert grid.shape == (4, 8, 2)
    assert torch.allclose(grid[0, :, 0], (torch.arange(8) * 2 + 1) / 8 - 1)
    assert torch.allclose(grid[:, 0, 1], (torch.arange(4) * 2 + 1) / 4 - 1)
    # identity warp with align_corners=False reproduces the image
    img = torch.rand(1, 3, 4, 8)
    out = F.grid_sample(img, grid[None], mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, img)


def test_kp_to_gaussian_shape_and_peak() -> None:
    kp = torch.tensor([[[0.0, 0.0], [-0.5, 0.5]]])
    heat = kp_to_gaussian(kp, (64, 32), 0.01)
    assert heat.shape == (1, 2, 64, 32)
    assert float(heat.max()) <= 1.0
    # the peak of the second keypoint is where the grid is closest to (-0.5, 0.5)
    idx = int(heat[0, 1].flatten().argmax())
    y, x = divmod(idx, 32)
    grid = coordinate_grid((64, 32), kp)
    assert torch.allclose(grid[y, x], kp[0, 1], atol=1 / 32 + 1e-6)


def test_relative_motion_identity_case() -> None:
    g = torch.Generator().manual_seed(1)
    kp_s = torch.rand(2, 10, 2, generator=g) * 2 - 1
    jac_s = torch.eye(2) + 0.1 * torch.randn(2, 10, 2, 2, generator=g)
    kp_d = torch.rand(2, 10, 2, generator=g) * 2 - 1
    jac_d = torch.eye(2) + 0.1 * torch.randn(2, 10, 2, 2, generator=g)
    kp, jac = relative_motion(kp_d, jac_d, kp_d, jac_d, kp_s, jac_s)
    torch.testing.assert_close(kp, kp_s)
    torch.testing.assert_close(jac, jac_s, atol=1e-5, rtol=1e-5)
    # a pure translation of the driving keypoints moves the result by the same amount
    kp2, _ = relative_motion(kp_d + 0.1, jac_d, kp_d, jac_d, kp_s, jac_s)
    torch.testing.assert_close(kp2, kp_s + 0.1)


def test_relative_motion_numpy_twin_matches() -> None:
    g = torch.Generator().manual_seed(2)
    args = [
        torch.rand(1, 10, 2, generator=g),
        torch.eye(2) + 0.2 * torch.randn(1, 10, 2, 2, generator=g),
        torch.rand(1, 10, 2, generator=g),
        torch.eye(2) + 0.2 * torch.randn(1, 10, 2, 2, generator=g),
        torch.rand(1, 10, 2, generator=g),
        torch.eye(2) + 0.2 * torch.randn(1, 10, 2, 2, generator=g),
    ]
    kp_t, jac_t = relative_motion(*args, movement_scale=0.8)
    kp_n, jac_n = runtime.relative_motion(*(a.numpy() for a in args), movement_scale=0.8)
    np.testing.assert_allclose(kp_n, kp_t.numpy(), atol=1e-6)
    np.testing.assert_allclose(jac_n, jac_t.numpy(), atol=1e-5)


def test_affine_equivariance_of_a_blob() -> None:
    # a Gaussian blob at p in the original is found at T^-1(p) in the transformed frame
    p = torch.tensor([[[0.2, -0.1]]])
    img = kp_to_gaussian(p, (128, 128), 0.005)  # (1, 1, 128, 128)
    theta = torch.tensor([[[1.05, 0.1, 0.05], [-0.08, 0.95, -0.03]]])
    out = affine_warp_image(img, theta)
    grid = coordinate_grid((128, 128), out)
    w = out[0, 0] / out[0, 0].sum()
    found = (w[..., None] * grid).sum((0, 1))  # centroid in the transformed frame
    mapped = affine_points(theta, found.view(1, 1, 2))
    torch.testing.assert_close(mapped, p, atol=2e-2, rtol=0)
    assert affine_jacobian(theta, 10).shape == (1, 10, 2, 2)
    assert random_affine(3, 0.05, img).shape == (3, 2, 3)


def test_warp_and_resize_flow() -> None:
    img = torch.rand(2, 3, 32, 32)
    ident = coordinate_grid((8, 8), img)[None].expand(2, 8, 8, 2)
    big = resize_flow(ident, (32, 32))
    torch.testing.assert_close(big[0], coordinate_grid((32, 32), img), atol=1e-6, rtol=0)
    out = warp(img, ident)
    assert out.shape == img.shape
