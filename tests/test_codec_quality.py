"""Metric code of the benchmark (avfr.benchmarks.pixel_metrics, landmark_metrics, identity): identities, known
orderings, synthetic landmarks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from avfr.benchmarks import identity, landmark_metrics, pixel_metrics
from avfr.codec.data import mouth

RNG = np.random.default_rng(7)


def _video(t: int = 3, size: int = 256) -> np.ndarray:
    """Smooth synthetic RGB video (gradients + a moving disc), uint8 (t, size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for k in range(t):
        img = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx + k)], -1) * 200 + 20
        cv2.circle(img, (80 + 10 * k, 128), 40, (250, 60, 60), -1)
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def _noisy(video: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(video + RNG.normal(0, sigma, video.shape), 0, 255).astype(np.uint8)


def _blurred(video: np.ndarray, k: int) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (k, k), 0) for f in video])


def test_identical_inputs() -> None:
    v = _video()
    assert pixel_metrics.psnr_db(v, v) == math.inf
    assert pixel_metrics.l1(v, v) == 0.0
    assert pixel_metrics.ssim(v, v) == pytest.approx(1.0, abs=1e-9)  # float64 maths
    assert pixel_metrics.ms_ssim(v, v) == pytest.approx(1.0, abs=1e-9)


def test_known_degradations_are_ordered() -> None:
    v = _video()
    mild, strong = _noisy(v, 4), _noisy(v, 20)
    assert pixel_metrics.psnr_db(mild, v) > pixel_metrics.psnr_db(strong, v) > 10
    assert pixel_metrics.ssim(mild, v) > pixel_metrics.ssim(strong, v)
    assert pixel_metrics.ms_ssim(mild, v) > pixel_metrics.ms_ssim(strong, v)
    assert pixel_metrics.l1(mild, v) < pixel_metrics.l1(strong, v)
    light, heavy = _blurred(v, 3), _blurred(v, 15)
    assert pixel_metrics.ssim(light, v) > pixel_metrics.ssim(heavy, v)


def test_ssim_matches_torchmetrics() -> None:
    """The OpenCV float64 SSIM / MS-SSIM are torchmetrics' metrics (run in float64 as the reference)."""
    import torch
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure,
        structural_similarity_index_measure,
    )

    v = _video(2, 192)  # torchmetrics in float64 is slow: small frames (MS-SSIM needs >= 176 px)
    test = _noisy(_blurred(v, 5), 30)
    a = torch.from_numpy(test.astype(np.float64) / 255).permute(0, 3, 1, 2)
    b = torch.from_numpy(v.astype(np.float64) / 255).permute(0, 3, 1, 2)
    want_ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none").numpy()
    want_ms = multiscale_structural_similarity_index_measure(a, b, data_range=1.0, reduction="none",
                                                             normalize="relu").numpy()
    got_ssim, got_ms = pixel_metrics.ssim_frames(test, v)
    np.testing.assert_allclose(got_ssim, want_ssim, atol=1e-7)
    np.testing.assert_allclose(got_ms, want_ms, atol=1e-7)
    assert pixel_metrics.ssim(test, v) == pytest.approx(float(want_ssim.mean()), abs=1e-7)
    assert pixel_metrics.ms_ssim(test, v) == pytest.approx(float(want_ms.mean()), abs=1e-7)
    with pytest.raises(ValueError, match="MS-SSIM"):
        pixel_metrics.ssim_frames(_video(1, 128), _video(1, 128))
    assert np.isfinite(pixel_metrics.ssim_frames(_video(1, 128), _video(1, 128), multiscale=False)[0]).all()


def test_psnr_known_value() -> None:
    a = np.zeros((1, 8, 8, 3), np.uint8)
    b = np.full((1, 8, 8, 3), 51, np.uint8)  # error 0.2 everywhere -> 13.979 dB
    assert pixel_metrics.psnr_db(a, b) == pytest.approx(-20 * math.log10(0.2), abs=1e-4)
    assert pixel_metrics.l1(a, b) == pytest.approx(0.2, abs=1e-7)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        pixel_metrics.l1(_video(2), _video(3))


def test_vmaf_identical_and_ordered() -> None:
    v = _video(4)
    same = pixel_metrics.vmaf(v, v)
    mild, strong = pixel_metrics.vmaf(_blurred(v, 3), v), pixel_metrics.vmaf(_blurred(v, 21), v)
    assert same > 95
    assert same >= mild > strong


def _face(t: int) -> np.ndarray:
    """Synthetic (t, 478, 2) landmarks: a fixed cloud with a 100 px tall face (10 -> 152)."""
    base = RNG.uniform(60, 200, (478, 2)).astype(np.float64)
    base[mouth.FACE_TOP] = (128, 60)
    base[mouth.FACE_BOTTOM] = (128, 160)
    base[mouth.MOUTH_UPPER_INNER] = (128, 140)
    base[mouth.MOUTH_LOWER_INNER] = (128, 142)
    return np.repeat(base[None], t, 0)


def test_landmark_distance_and_miss() -> None:
    ref = _face(4)
    assert landmark_metrics.landmark_distance(ref, ref) == (0.0, 0.0)
    moved = ref + np.array([3.0, 4.0])
    assert landmark_metrics.landmark_distance(moved, ref)[0] == pytest.approx(5.0)
    moved[1] = np.nan  # a missed face: left out and counted
    lmd, miss = landmark_metrics.landmark_distance(moved, ref)
    assert lmd == pytest.approx(5.0) and miss == pytest.approx(0.25)
    lips = landmark_metrics.lip_indices()
    assert len(lips) == 40 and mouth.MOUTH_UPPER_INNER in lips and mouth.MOUTH_LOWER_INNER in lips
    only_lips = ref.copy()
    only_lips[:, lips] += 2.0
    assert landmark_metrics.landmark_distance(only_lips, ref, lips)[0] == pytest.approx(2 * math.sqrt(2))
    assert (landmark_metrics.landmark_distance(only_lips, ref)[0]
            < landmark_metrics.landmark_distance(only_lips, ref, lips)[0])


def test_jitter_and_motion() -> None:
    lm = _face(10)
    assert landmark_metrics.landmark_jitter(lm) == 0.0
    drift = lm + np.arange(10)[:, None, None] * 2.0  # constant velocity: no jitter
    assert landmark_metrics.landmark_jitter(drift) == pytest.approx(0.0, abs=1e-9)
    shake = lm + (np.arange(10) % 2)[:, None, None] * np.array([1.0, 0.0])  # +-1 px alternation: |2| per frame
    assert landmark_metrics.landmark_jitter(shake) == pytest.approx(2.0)
    other = _face(10) + 50.0  # another face doing the same motion
    assert landmark_metrics.motion_distance(other + (drift - lm), drift) == pytest.approx(0.0, abs=1e-9)
    assert landmark_metrics.motion_distance(other, drift) > 1.0


def test_sync_proxy_finds_the_lag() -> None:
    t, lag = 200, 2
    signal = np.convolve(RNG.normal(size=t + 20), np.ones(3) / 3, "same")[:t + 20]
    lm = _face(t)
    lm[:, mouth.MOUTH_LOWER_INNER, 1] = 142 + 5 * (signal[:t] - signal.min())  # lips never cross
    # audio follows the mouth by `lag` frames; its dB envelope is linear in the signal
    amp = 0.05 * np.exp(0.5 * np.concatenate([np.zeros(lag), signal[: t - lag]]))
    pcm = (np.repeat(amp, 640) * np.where(np.arange(t * 640) % 2, 1.0, -1.0)).astype(np.float32)
    corr, found = landmark_metrics.sync_proxy(lm, pcm)
    assert found == lag and corr > 0.9
    silent, _ = landmark_metrics.sync_proxy(lm, np.zeros(t * 640, np.float32))
    assert math.isnan(silent)
    assert mouth.mouth_opening(lm).shape == (t,)


def test_identity_backend_reports() -> None:
    ok, note = identity.identity_backend()
    assert isinstance(note, str) and note
    if not ok:
        with pytest.raises(ImportError):
            identity.IdentityEmbedder()
        return
    emb = identity.IdentityEmbedder()
    v = _video(2)
    assert emb.distance([v[0]], v[0]) == pytest.approx(0.0, abs=1e-6)
    # the source's embedding is kept for the next call with the same source, and replaced for another one
    far = emb.distance([v[0]], v[1])
    assert emb.distance([v[0]], v[1]) == pytest.approx(far, abs=1e-9)
    assert emb.distance([v[0]], v[0]) == pytest.approx(0.0, abs=1e-6)


def test_identity_degrades_without_dlib(monkeypatch: pytest.MonkeyPatch) -> None:
    real = identity.importlib.util.find_spec
    monkeypatch.setattr(identity.importlib.util, "find_spec",
                        lambda name, *a: None if name == "dlib" else real(name, *a))
    ok, note = identity.identity_backend()
    assert not ok and "[bench]" in note
    with pytest.raises(ImportError, match="dlib"):
        identity.IdentityEmbedder()
