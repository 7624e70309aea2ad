"""Degraded LR for training models that meet photos as users have them (JPEG, noise, blur).

One ``tf.data`` stage, applied to whole batches right after the LR is made and before the
patches reach the model, in the order a camera or a web pipeline degrades an image::

    HR crop (patch + margin) ─[Gaussian blur, HR px]─▶ MATLAB bicubic ↓s ─[Poisson (shot) noise]─
    ─[Gaussian (read) noise]─[real JPEG at a random quality]─▶ LR crop of the patch at a random
    offset ⟷ clean HR crop

* JPEG is real libjpeg (``tf.image.adjust_jpeg_quality``: encode at the quality, decode;
  4:2:0 chroma), applied to the whole LR crop of ``patch + margin`` pixels, and the training
  patch is then cut at a random offset in ``0..margin``: the 8x8 block grid falls anywhere
  in the patch, so the model cannot learn where block edges are from the patch border.
* Each patch draws on its own whether it is degraded at all (``*_prob``), so a share of the
  patches stays clean and the model keeps its bicubic skill.
* Blur (before downscaling) needs HR-only sources, where the pipeline makes the LR.
* Stateless randomness seeded by (seed, batch number): the same seed gives the same
  batches, so ``--resume`` stays exact.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import tensorflow as tf


class DegradationError(ValueError):
    """A degradation setting out of range (the message names the setting)."""


def _range(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DegradationError(f"{name} must be two numbers LOW,HIGH, got {value!r}") from None
    if not (lo <= a <= b <= hi) or (integer and (a != int(a) or b != int(b))):
        kind = "integers" if integer else "numbers"
        raise DegradationError(f"{name} must be {kind} with {lo:g} <= LOW <= HIGH <= {hi:g}, got {value!r}")
    return (int(a), int(b)) if integer else (a, b)


@dataclasses.dataclass(frozen=True)
class Degradation:
    """What is done to the LR of each training patch; the default does nothing.

    ``jpeg_prob``: share of patches JPEG-compressed, at a quality drawn uniformly from
    ``jpeg_quality`` (inclusive). ``noise_prob``/``noise_sigma``: additive Gaussian noise,
    standard deviation in grey levels (0..255 scale), rounded to uint8 after.
    ``poisson_prob``/``poisson_scale``: shot noise as a sensor makes it (Real-ESRGAN's
    Poisson noise): a pixel of grey level v becomes v + scale·(Poisson(v) - v), so its standard
    deviation is scale·sqrt(v) grey levels (scale 0.5: 5.7 at mid-grey, none in black). ``blur_prob``/
    ``blur_sigma``: Gaussian blur of the HR crop before downscaling, sigma in HR pixels.
    ``margin``: LR pixels cut around the patch after degrading (the random offset).
    """

    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 95)
    noise_prob: float = 0.0
    noise_sigma: tuple[float, float] = (1.0, 5.0)
    poisson_prob: float = 0.0
    poisson_scale: tuple[float, float] = (0.05, 0.5)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    margin: int = 8

    def __post_init__(self) -> None:
        for name in ("jpeg_prob", "noise_prob", "poisson_prob", "blur_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise DegradationError(f"{name} must be in [0, 1], got {v!r}")
        object.__setattr__(self, "jpeg_quality", _range("jpeg_quality", self.jpeg_quality, 1, 100, True))
        object.__setattr__(self, "noise_sigma", _range("noise_sigma", self.noise_sigma, 0, 50))
        object.__setattr__(self, "poisson_scale", _range("poisson_scale", self.poisson_scale, 0, 3))
        object.__setattr__(self, "blur_sigma", _range("blur_sigma", self.blur_sigma, 0.1, 4))
        if not isinstance(self.margin, int) or not 0 <= self.margin <= 64:
            raise DegradationError(f"margin must be an integer in 0..64, got {self.margin!r}")

    @property
    def active(self) -> bool:
        return self.jpeg_prob > 0 or self.noise_prob > 0 or self.poisson_prob > 0 or self.blur_prob > 0

    @property
    def crop_margin(self) -> int:
        """Extra LR pixels the pipeline crops around each patch (0 when nothing is done)."""
        return self.margin if self.active else 0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Degradation":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (d or {}).items()})

    def describe(self) -> str:
        """One line for logs and model cards."""
        if not self.active:
            return "clean bicubic LR"
        parts = []
        if self.blur_prob:
            parts.append(f"{self.blur_prob:.0%} Gaussian blur sigma {self.blur_sigma[0]:g}-{self.blur_sigma[1]:g} "
                         "HR px before downscaling")
        if self.poisson_prob:
            parts.append(f"{self.poisson_prob:.0%} Poisson noise scale {self.poisson_scale[0]:g}-"
                         f"{self.poisson_scale[1]:g}")
        if self.noise_prob:
            parts.append(f"{self.noise_prob:.0%} Gaussian noise sigma {self.noise_sigma[0]:g}-"
                         f"{self.noise_sigma[1]:g} grey levels")
        if self.jpeg_prob:
            parts.append(f"{self.jpeg_prob:.0%} JPEG at quality {self.jpeg_quality[0]}-{self.jpeg_quality[1]}")
        return "LR " + ", then ".join(parts) + f" (whole crops, random {self.margin}-px grid offset)"


# ------------------------------------------------------------------------------ in-graph ops

def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, max_sigma: float) -> tf.Tensor:
    """Per-image Gaussian blur of float ``[N,H,W,C]``; ``sigma`` ``[N]`` (0 = unchanged).

    Separable, reflect-padded; one depthwise convolution for the whole batch (images moved to
    channels) instead of N small ones.
    """
    radius = max(1, int(math.ceil(3.0 * max_sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    s = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)[:, None]
    k = tf.exp(-0.5 * tf.square(x[None, :] / s))
    k = k / tf.reduce_sum(k, axis=1, keepdims=True)  # [N, K]; sigma→0 gives a delta
    shape = tf.shape(images)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    y = tf.transpose(images, [1, 2, 0, 3])  # [H, W, N, C]
    y = tf.reshape(y, tf.stack([1, h, w, n * c]))
    kc = tf.reshape(tf.repeat(k, c, axis=0), [n * c, -1])  # [N*C, K], channel-major per image
    kc = tf.transpose(kc)  # [K, N*C]
    y = tf.pad(y, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    y = tf.nn.depthwise_conv2d(y, kc[:, None, :, None], [1, 1, 1, 1], "VALID")
    y = tf.nn.depthwise_conv2d(y, kc[None, :, :, None], [1, 1, 1, 1], "VALID")
    y = tf.reshape(y, tf.stack([h, w, n, c]))
    return tf.transpose(y, [2, 0, 1, 3])


def jpeg_batch(lr_uint8: tf.Tensor, quality: tf.Tensor, on: tf.Tensor) -> tf.Tensor:
    """Real JPEG (encode at ``quality[i]``, decode) of the patches where ``on[i]``; uint8 ``[N,H,W,3]``."""
    def one(args):
        img, q, flag = args
        return tf.cond(flag, lambda: tf.image.adjust_jpeg_quality(img, q), lambda: img)

    out = tf.map_fn(one, (lr_uint8, tf.cast(quality, tf.int32), on),
                    fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return tf.ensure_shape(out, lr_uint8.shape)


def _offset_crops(lr: tf.Tensor, hr: tf.Tensor, scale: int, patch: int, oy: tf.Tensor,
                  ox: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``[N,p,p,C]`` LR crops at (oy, ox) and the aligned ``[N,sp,sp,C]`` HR crops."""
    def one(args):
        a, b, y, x = args
        return (a[y:y + patch, x:x + patch], b[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale])

    lr_c, hr_c = tf.map_fn(one, (lr, hr, oy, ox), fn_output_signature=(
        tf.TensorSpec([patch, patch, None], lr.dtype), tf.TensorSpec([patch * scale, patch * scale, None], hr.dtype)))
    return lr_c, hr_c


def degrade(lr: tf.Tensor | None, hr: tf.Tensor, *, scale: int, patch_size: int, degradation: Degradation,
            seed: tf.Tensor, downscale=None) -> tuple[tf.Tensor, tf.Tensor]:
    """One batch through the stage: float32 ``(lr [N,p,p,3], hr [N,sp,sp,3])`` in [0, 255].

    ``hr``: ``[N, s(p+m), s(p+m), 3]`` crops (uint8 values); ``lr``: their aligned
    ``[N, p+m, p+m, 3]`` LR crops, or None to make them from the (possibly blurred) HR with
    ``downscale(hr_float, scale)`` (MATLAB bicubic, uint8 values out). ``seed``: a
    stateless seed pair for this batch. The HR target is never degraded.
    """
    d = degradation
    n = tf.shape(hr)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)

    def uniform(i: int, lo: float, hi: float) -> tf.Tensor:
        return tf.random.stateless_uniform([n], seeds[i], minval=lo, maxval=hi)

    def chosen(i: int, prob: float) -> tf.Tensor:
        return tf.random.stateless_uniform([n], seeds[i]) < prob

    hr_f = tf.cast(hr, tf.float32)
    if lr is None:
        src = hr_f
        if d.blur_prob > 0:
            sigma = tf.where(chosen(0, d.blur_prob), uniform(1, *d.blur_sigma), 0.0)
            src = gaussian_blur(hr_f, sigma, d.blur_sigma[1])
        lr_f = downscale(src, scale)
    else:
        if d.blur_prob > 0:
            raise DegradationError("blur needs LR made from the HR (an HR-only source), not LR files")
        lr_f = tf.cast(lr, tf.float32)
    if d.poisson_prob > 0:
        # Seeds folded from seeds[4] (not a longer split): the other draws stay what they were,
        # so a run started before Poisson noise existed resumes to the same batches.
        sub = [tf.random.experimental.stateless_fold_in(seeds[4], i) for i in (1, 2, 3)]
        on = tf.random.stateless_uniform([n], sub[0]) < d.poisson_prob
        strength = tf.where(on, tf.random.stateless_uniform([n], sub[1], *d.poisson_scale), 0.0)
        lam = tf.maximum(lr_f, 0.0)
        shot = tf.random.stateless_poisson(tf.shape(lr_f), sub[2], lam, dtype=tf.float32) - lam
        lr_f = tf.clip_by_value(tf.floor(lr_f + shot * strength[:, None, None, None] + 0.5), 0.0, 255.0)
    if d.noise_prob > 0:
        sigma = tf.where(chosen(2, d.noise_prob), uniform(3, *d.noise_sigma), 0.0)
        noise = tf.random.stateless_normal(tf.shape(lr_f), seeds[4]) * sigma[:, None, None, None]
        lr_f = tf.clip_by_value(tf.floor(lr_f + noise + 0.5), 0.0, 255.0)
    if d.jpeg_prob > 0:
        q_lo, q_hi = d.jpeg_quality
        quality = tf.random.stateless_uniform([n], seeds[5], minval=q_lo, maxval=q_hi + 1, dtype=tf.int32)
        lr_u8 = tf.cast(tf.clip_by_value(tf.round(lr_f), 0.0, 255.0), tf.uint8)
        lr_f = tf.cast(jpeg_batch(lr_u8, quality, chosen(6, d.jpeg_prob)), tf.float32)
    m = d.crop_margin
    offsets = tf.random.stateless_uniform([2, n], seeds[7], minval=0, maxval=m + 1, dtype=tf.int32)
    return _offset_crops(lr_f, hr_f, scale, patch_size, offsets[0], offsets[1])
