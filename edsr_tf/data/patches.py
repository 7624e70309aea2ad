"""Aligned random crops and the 8 dihedral augmentations, in-graph (usable in tf.data.map).

The transforms are :mod:`edsr_tf.dihedral`'s (the ones the self-ensemble uses), applied
through its :func:`~edsr_tf.dihedral.index_maps`; ``k`` is drawn uniformly from 0..7 per patch.

Randomness comes from stateless ops seeded by the caller (seed pair derived from the
element's index in the stream), so a pipeline with a fixed seed yields the same patches
no matter how many parallel calls run or in which order they finish.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edsr_tf.dihedral import N_DIHEDRAL, index_maps

def _gather_crops(img: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor, size: int,
                  ks: tf.Tensor | None = None) -> tf.Tensor:
    """``[K, size, size, C]`` crops of ``img`` ``[H, W, C]`` at top-left corners (ys, xs),
    each transformed by its dihedral ``ks`` (identity if None).

    One gather from the flattened image with per-crop index maps: it copies only the output
    (less than half the CPU of cropping then flipping/transposing with tf.where).
    """
    rows, cols = index_maps(size)
    if ks is None:
        rows, cols, ks = rows[:1], cols[:1], tf.zeros_like(ys)
    width = tf.cast(tf.shape(img)[1], tf.int64)
    r = tf.cast(ys, tf.int64)[:, None, None] + tf.gather(rows.astype(np.int64), ks)
    c = tf.cast(xs, tf.int64)[:, None, None] + tf.gather(cols.astype(np.int64), ks)
    flat = tf.reshape(img, tf.stack([-1, tf.shape(img)[2]]))
    return tf.gather(flat, r * width + c)


def _crop_randomness(seed: tf.Tensor, count: int, max_y: tf.Tensor, max_x: tf.Tensor):
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    ys = tf.random.stateless_uniform([count], seeds[0], minval=0, maxval=max_y + 1, dtype=tf.int32)
    xs = tf.random.stateless_uniform([count], seeds[1], minval=0, maxval=max_x + 1, dtype=tf.int32)
    ks = tf.random.stateless_uniform([count], seeds[2], minval=0, maxval=N_DIHEDRAL, dtype=tf.int32)
    return ys, xs, ks


def random_aligned_crops(lr: tf.Tensor, hr: tf.Tensor, scale: int, patch_size: int, count: int,
                         seed: tf.Tensor, augment: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """``count`` aligned patch pairs: LR ``[K,p,p,C]`` at (y, x) ↔ HR ``[K,sp,sp,C]`` at (sy, sx).

    The same dihedral transform is applied to both members of a pair. ``seed`` is a stateless
    seed pair ``[2]``. Offsets stay inside both images, so an HR slightly smaller than
    ``LR × scale`` (odd sizes) is handled; images smaller than a patch must be rejected
    before (the pipeline checks sizes up front and names the file).
    """
    lr_shape, hr_shape = tf.shape(lr), tf.shape(hr)
    hp = patch_size * scale
    max_y = tf.minimum(lr_shape[0] - patch_size, (hr_shape[0] - hp) // scale)
    max_x = tf.minimum(lr_shape[1] - patch_size, (hr_shape[1] - hp) // scale)
    ys, xs, ks = _crop_randomness(seed, count, max_y, max_x)
    ks = ks if augment else None
    return _gather_crops(lr, ys, xs, patch_size, ks), _gather_crops(hr, ys * scale, xs * scale, hp, ks)


def random_crops(img: tf.Tensor, size: int, count: int, seed: tf.Tensor,
                 augment: bool = True) -> tf.Tensor:
    """``count`` random ``size``×``size`` crops of one image (for LR made from the HR patch)."""
    shape = tf.shape(img)
    ys, xs, ks = _crop_randomness(seed, count, shape[0] - size, shape[1] - size)
    return _gather_crops(img, ys, xs, size, ks if augment else None)


def quantize(x: tf.Tensor) -> tf.Tensor:
    """Rounds half away from zero (as MATLAB, for x >= 0) and clips to [0, 255], stays float."""
    return tf.clip_by_value(tf.floor(x + 0.5), 0.0, 255.0)
