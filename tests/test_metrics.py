"""PSNR / SSIM: paper protocol (quantize, rounded Y, grayscale, shave), errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import structural_similarity

from edsr_tf.metrics import (
    evaluate_pair,
    gaussian_window,
    psnr,
    quantize,
    rgb_to_y,
    ssim,
)


@pytest.fixture(scope="module")
def pair(photo):
    """A real photo and a degraded float version of it (noise, values beyond [0, 255])."""
    rng = np.random.default_rng(0)
    hr = photo[:120, :160]
    sr = hr.astype(np.float64) + rng.normal(0.0, 6.0, hr.shape)
    sr[:3, :3] = 300.0  # out of range: must be clipped by quantization
    return sr, hr


def test_quantize_rounds_half_away_and_clips():
    x = np.array([-3.0, 0.49, 0.5, 1.5, 2.5, 254.5, 255.4, 300.0])
    np.testing.assert_array_equal(quantize(x), [0, 0, 1, 2, 3, 255, 255, 255])
    assert quantize(x).dtype == np.uint8
    u = np.array([1, 2, 3], np.uint8)
    assert quantize(u) is u
    np.testing.assert_array_equal(quantize(np.array([-5, 7, 999], np.int32)), [0, 7, 255])
    with pytest.raises(TypeError, match="dtype"):
        quantize(np.array(["a"]))


def test_rgb_to_y_matches_rounded_rgb2ycbcr(photo):
    # scikit-image's rgb2ycbcr is an independent implementation of the same BT.601 formula.
    expected = np.round(rgb2ycbcr(photo)[..., 0])
    np.testing.assert_array_equal(rgb_to_y(photo), expected)
    corners = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]], np.uint8)
    np.testing.assert_array_equal(rgb_to_y(corners), [16, 235, 81, 145])
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_y(photo.astype(np.float32))
    with pytest.raises(ValueError, match="last axis of 3"):
        rgb_to_y(photo[..., :2])


def test_identical_images():
    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert psnr(img, img) == math.inf
    assert psnr(img.astype(np.float32) + 0.49, img) == math.inf  # quantized first
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_values():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 255, (30, 40), dtype=np.uint8)
    # A uniform offset of one grey level: MSE = 1, PSNR = 20 log10(255).
    assert psnr(gray + 1, gray) == pytest.approx(20 * math.log10(255), abs=1e-12)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    assert psnr(rgb + 1, rgb, y_channel=False) == pytest.approx(20 * math.log10(255), abs=1e-12)
    # Four pixels off by 10 among 30*40: MSE = 400 / 1200.
    sr = gray.astype(np.int64)
    sr[10, 10:14] += 10
    expected = 10 * math.log10(255**2 / (400 / 1200))
    assert psnr(sr.astype(np.float64), gray) == pytest.approx(expected, abs=1e-12)
    # ... shaving 2 px keeps them: MSE = 400 / (26 * 36).
    assert psnr(sr.astype(np.float64), gray, shave=2) == pytest.approx(
        10 * math.log10(255**2 / (400 / (26 * 36))), abs=1e-12
    )


def test_shave_removes_the_border():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert math.isfinite(psnr(sr, hr, shave=2))
    assert psnr(sr, hr, shave=3) == math.inf
    assert ssim(sr, hr, shave=3) == pytest.approx(1.0)


def test_grayscale_is_compared_on_its_own_intensity():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    direct = 10 * math.log10(255**2 / np.mean((sr.astype(float) - hr) ** 2))
    assert psnr(sr, hr) == pytest.approx(direct, abs=1e-12)
    assert psnr(sr[..., None], hr[..., None]) == pytest.approx(direct, abs=1e-12)
    assert psnr(sr[..., None], hr) == pytest.approx(direct, abs=1e-12)  # HxWx1 vs HxW
    # The same image stored as three equal channels is an RGB image: compared on its Y.
    y_sr = np.round(16 + 219 / 255 * sr.astype(float) + 1e-9)
    y_hr = np.round(16 + 219 / 255 * hr.astype(float) + 1e-9)
    via_y = 10 * math.log10(255**2 / np.mean((y_sr - y_hr) ** 2))
    stacked = psnr(np.repeat(sr[..., None], 3, -1), np.repeat(hr[..., None], 3, -1))
    assert stacked == pytest.approx(via_y, abs=1e-9)
    assert abs(stacked - direct) > 0.1


def test_ssim_matches_scikit_image(pair):
    sr, hr = pair
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    # skimage filters with padding, then averages the map over the region 5 px from the border:
    # exactly MATLAB's 'valid' region.
    y_sr, y_hr = rgb_to_y(quantize(sr)), rgb_to_y(hr)
    assert ssim(sr, hr) == pytest.approx(structural_similarity(y_sr, y_hr, **kwargs), abs=1e-9)
    rgb_ref = structural_similarity(
        quantize(sr).astype(np.float64), hr.astype(np.float64), channel_axis=-1, **kwargs
    )
    assert ssim(sr, hr, y_channel=False) == pytest.approx(rgb_ref, abs=1e-9)
    shaved = ssim(sr, hr, shave=4)
    ref = structural_similarity(y_sr[4:-4, 4:-4], y_hr[4:-4, 4:-4], **kwargs)
    assert shaved == pytest.approx(ref, abs=1e-9)
    assert 0.3 < shaved < 0.99


def test_gaussian_window_is_fspecial():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0)
    x = np.arange(-5, 6)
    two_d = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(np.outer(g, g), two_d / two_d.sum(), atol=1e-15)


def test_evaluate_pair_protocols(pair):
    sr, hr = pair
    result = evaluate_pair(sr, hr, 3)
    assert result == {"psnr": psnr(sr, hr, shave=3), "ssim": ssim(sr, hr, shave=3)}
    div2k = evaluate_pair(sr, hr, 2, div2k=True)
    assert div2k["psnr"] == psnr(sr, hr, shave=8, y_channel=False)
    assert div2k["ssim"] == ssim(sr, hr, shave=8, y_channel=False)
    assert div2k["psnr"] != result["psnr"]
    assert evaluate_pair(sr, hr, 3, with_ssim=False) == {"psnr": result["psnr"], "ssim": None}
    with pytest.raises(ValueError, match="scale"):
        evaluate_pair(sr, hr, 0)


def test_clear_errors():
    a = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(10, 12, 3\).*\(10, 13, 3\)"):
        psnr(a, np.zeros((10, 13, 3), np.uint8))
    with pytest.raises(ValueError, match="grayscale"):
        psnr(a, np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=r"HxWx3.*\(10, 12, 4\)"):
        ssim(np.zeros((10, 12, 4)), np.zeros((10, 12, 4)))
    with pytest.raises(ValueError, match="shaving 5 px"):
        psnr(a, a, shave=5)
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(a, a, shave=1)
    with pytest.raises(ValueError, match="shave must be >= 0"):
        psnr(a, a, shave=-1)
    with pytest.raises(ValueError, match="uint16"):
        psnr(a.astype(np.uint16), a)
