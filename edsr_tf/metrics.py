"""PSNR and SSIM exactly as SR papers (and EDSR) report them (NumPy).

Protocol (MATLAB evaluation scripts of the SR literature):

1. the output is quantized first: rounded and clipped to uint8 (:func:`quantize`);
2. RGB images are compared on the Y channel of ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` returns it
   for uint8 input, i.e. ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` **rounded to an
   integer** (:func:`rgb_to_y`); a grayscale (one-channel) image is compared on its own intensity;
3. a border of ``scale`` pixels is shaved (``scale + 6`` and RGB for DIV2K validation);
4. PSNR = 10 log10(255^2 / MSE); SSIM = Wang et al.'s ``ssim_index``: 11x11 Gaussian window
   (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map. For RGB
   (``y_channel=False``) SSIM is the mean over the three channels.

PSNR of identical images is ``inf`` (MSE = 0), as MATLAB returns.

Every evaluation (the evaluate CLI, validation and the final table of training, export
verification, the benchmarks) scores through :func:`evaluate_pair`, via
:func:`edsr_tf.evaluation.evaluate_set` where whole sets are scored.
"""

from __future__ import annotations

import math
import numpy as np

from edsr_tf.images import quantize_to

__all__ = [
    "evaluate_pair",
    "gaussian_window",
    "psnr",
    "quantize",
    "rgb_to_y",
    "ssim",
]

PEAK = 255.0
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
DIV2K_EXTRA_SHAVE = 6  # DIV2K validation protocol: RGB, shave scale + 6
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def quantize(img: np.ndarray) -> np.ndarray:
    """Round half away from zero and clip to [0, 255], as uint8 (MATLAB's ``uint8(x)``).

    uint8 input is returned unchanged; other integer types are clipped. The one rounding of
    the repository: :func:`edsr_tf.images.quantize_to` with 8 bits.
    """
    return quantize_to(img, 8)


def rgb_to_y(img_uint8: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` on uint8 RGB ``[..., 3]``: float64 integers in [16, 235]."""
    img = np.asarray(img_uint8)
    if img.dtype != np.uint8:
        raise TypeError(f"rgb_to_y: expected uint8 RGB (quantize first), got dtype {img.dtype}")
    if img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"rgb_to_y: expected RGB with a last axis of 3, got shape {img.shape}")
    y = 16.0 + (img.astype(np.float64) @ _Y_WEIGHTS) / 255.0
    return np.floor(y + 0.5)  # MATLAB returns uint8: round half away from zero


def _is_gray(img: np.ndarray) -> bool:
    return img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 1)


def _prepare(
    sr: np.ndarray, hr: np.ndarray, shave: int, y_channel: bool, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize, convert to the compared channel(s), shave: two float64 [h, w, c] arrays."""
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    for label, img in (("sr", sr), ("hr", hr)):
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (1, 3)):
            raise ValueError(
                f"{name}: {label} must be HxW, HxWx1 or HxWx3, got shape {img.shape}"
            )
        if img.dtype in (np.uint16, np.uint32, np.uint64):
            # Clipping a 16-bit image to 255 would give a meaningless figure.
            raise ValueError(
                f"{name}: {label} is {img.dtype}; metrics take uint8 or float in [0, 255] "
                "(scale 16-bit images to 8 bits first)"
            )
    if sr.shape != hr.shape:
        if _is_gray(sr) and _is_gray(hr) and sr.shape[:2] == hr.shape[:2]:
            pass  # HxW vs HxWx1: same image layout
        else:
            raise ValueError(
                f"{name}: sr and hr shapes differ: sr {sr.shape} vs hr {hr.shape}"
                + (
                    " (one is grayscale, the other RGB: convert them to the same layout first)"
                    if _is_gray(sr) != _is_gray(hr)
                    else ""
                )
            )
    shave = int(shave)
    if shave < 0:
        raise ValueError(f"{name}: shave must be >= 0, got {shave}")
    height, width = hr.shape[:2]
    if height <= 2 * shave or width <= 2 * shave:
        raise ValueError(
            f"{name}: shaving {shave} px leaves nothing of a {height}x{width} image"
        )
    out = []
    for img in (sr, hr):
        img = quantize(img)
        if _is_gray(img):
            # MATLAB convention: one channel is compared on its own intensity, not converted.
            chan = img.reshape(height, width, 1).astype(np.float64)
        elif y_channel:
            chan = rgb_to_y(img)[..., None]
        else:
            chan = img.astype(np.float64)
        if shave:
            chan = chan[shave:-shave, shave:-shave]
        out.append(chan)
    return out[0], out[1]


def _psnr_from_mse(mse: float) -> float:
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(PEAK * PEAK / mse)


def psnr(sr: np.ndarray, hr: np.ndarray, shave: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of ``sr`` against ``hr`` (paper protocol; ``inf`` for identical images).

    Inputs: HxW, HxWx1 or HxWx3, uint8 or float in [0, 255] (float is quantized first).
    RGB is compared on rounded Y (``y_channel=True``) or on all three channels.
    """
    a, b = _prepare(sr, hr, shave, y_channel, "psnr")
    return _psnr_from_mse(float(np.mean((a - b) ** 2)))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``[H, W, C]`` with ``g`` along H and W."""
    k = g.shape[0]
    h = img.shape[0] - k + 1
    w = img.shape[1] - k + 1
    rows = g[0] * img[0:h]
    for i in range(1, k):
        rows = rows + g[i] * img[i : i + h]
    out = g[0] * rows[:, 0:w]
    for i in range(1, k):
        out = out + g[i] * rows[:, i : i + w]
    return out


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wang et al.'s SSIM map from Gaussian 'valid' filtering."""
    g = gaussian_window()
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    mu_a2, mu_b2, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a, g) - mu_a2
    var_b = _filter_valid(b * b, g) - mu_b2
    cov = _filter_valid(a * b, g) - mu_ab
    return ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_a2 + mu_b2 + c1) * (var_a + var_b + c2))


def _ssim_channels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM of each channel of two float64 ``[H, W, C]`` arrays (Wang et al.)."""
    if a.shape[0] < SSIM_WINDOW or a.shape[1] < SSIM_WINDOW:
        raise ValueError(
            f"ssim: the compared region ({a.shape[0]}x{a.shape[1]} after shaving) is smaller "
            f"than the {SSIM_WINDOW}x{SSIM_WINDOW} window"
        )
    return _ssim_map(a, b).mean(axis=(0, 1))


def ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 0, y_channel: bool = True) -> float:
    """SSIM of ``sr`` against ``hr`` (Wang et al.'s ``ssim_index``, paper protocol).

    Same inputs and conversions as :func:`psnr`; RGB with ``y_channel=False`` averages the
    per-channel SSIMs.
    """
    a, b = _prepare(sr, hr, shave, y_channel, "ssim")
    return float(np.mean(_ssim_channels(a, b)))


def smallest_scored_side(scale: int, *, div2k: bool = False) -> int:
    """Smallest HR side :func:`evaluate_pair` can score at ``scale``: cropped to a multiple of
    ``scale`` and shaved on both sides, it must still hold the SSIM window."""
    scale = int(scale)
    shave = scale + DIV2K_EXTRA_SHAVE if div2k else scale
    return -(-(2 * shave + SSIM_WINDOW) // scale) * scale


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int, *, div2k: bool = False,
                  with_ssim: bool = True) -> dict:
    """``{"psnr": dB, "ssim": value}`` with the paper protocol for ``scale``.

    Benchmarks (Set5, Set14, B100, Urban100): Y channel, shave ``scale``. ``div2k=True``: RGB,
    shave ``scale + 6`` (DIV2K validation as in the EDSR paper). ``hr`` must already be cropped to
    the size of ``sr``. ``with_ssim=False``: PSNR only (``"ssim"`` is None), for quick checks.
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"evaluate_pair: scale must be >= 1, got {scale}")
    shave = scale + DIV2K_EXTRA_SHAVE if div2k else scale
    y_channel = not div2k
    a, b = _prepare(sr, hr, shave, y_channel, "evaluate_pair")
    return {
        "psnr": _psnr_from_mse(float(np.mean((a - b) ** 2))),
        "ssim": float(np.mean(_ssim_channels(a, b))) if with_ssim else None,
    }
