"""The 8 flips/rotations of an image (the dihedral group of the square), defined once.

Transform ``k`` (0..7) is read from its bits, applied in this order:

- bit 0: flip left-right (reverse the W axis),
- bit 1: flip up-down (reverse the H axis),
- bit 2: transpose (swap H and W; with the flips this gives the 90° rotations).

This is EDSR-PyTorch's order (``common.augment``: hflip, vflip, rot90-as-transpose; and
``forward_x8``'s list of the 8 inputs). Training augmentation (:mod:`edsr_tf.data.patches`,
in-graph, one ``k`` per patch drawn uniformly from 0..7) and the self-ensemble
(:func:`edsr_tf.inference.upscale_tiles`, EDSR+) both use it.

:func:`dihedral` works on NumPy arrays (returns views) and on TensorFlow tensors alike, for a
Python int ``k``; :func:`index_maps` gives the same transforms as gather indices, for a
per-element ``k`` tensor inside ``tf.data``. TensorFlow is never imported here.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

#: Number of dihedral transforms (identity, flips, 90° rotations and their combinations).
N_DIHEDRAL = 8

#: The axes (H, W) of channel-last images ``[..., H, W, C]``.
IMAGE_AXES = (-3, -2)


def _check(k) -> int:
    k = int(k)
    if not 0 <= k < N_DIHEDRAL:
        raise ValueError(f"dihedral transform index must be in 0..{N_DIHEDRAL - 1}, got {k}")
    return k


def transposes(k: int) -> bool:
    """True when transform ``k`` swaps height and width (so a non-square image changes shape)."""
    return bool(_check(k) & 4)


def inverse(k: int) -> int:
    """The index ``j`` with ``dihedral(dihedral(x, k), j) == x``.

    Flips alone are their own inverses; with the transpose, a flip before it is a flip of the
    other axis after it, so the inverse swaps bits 0 and 1.
    """
    k = _check(k)
    if not k & 4:
        return k
    return 4 | (k & 1) << 1 | (k & 2) >> 1


def _is_tensor(x) -> bool:
    tf = sys.modules.get("tensorflow")  # not imported: x cannot be a tensor
    return tf is not None and not isinstance(x, np.ndarray) and tf.is_tensor(x)


def dihedral(x, k: int, axes: tuple[int, int] = IMAGE_AXES):
    """Transform ``k`` of ``x`` (NumPy array or TensorFlow tensor); ``axes``: its (H, W) axes.

    The default axes fit ``[H, W, C]`` images and ``[N, H, W, C]`` batches. NumPy input gives a
    view (no copy).
    """
    k = _check(k)
    h_ax, w_ax = axes
    if _is_tensor(x):
        import tensorflow as tf

        if k & 1:
            x = tf.reverse(x, [w_ax])
        if k & 2:
            x = tf.reverse(x, [h_ax])
        if k & 4:
            rank = x.shape.rank
            perm = list(range(rank))
            perm[h_ax % rank], perm[w_ax % rank] = perm[w_ax % rank], perm[h_ax % rank]
            x = tf.transpose(x, perm)
        return x
    x = np.asarray(x)
    if k & 1:
        x = np.flip(x, w_ax)
    if k & 2:
        x = np.flip(x, h_ax)
    if k & 4:
        x = np.swapaxes(x, h_ax, w_ax)
    return x


def dihedral_inverse(y, k: int, axes: tuple[int, int] = IMAGE_AXES):
    """Undoes transform ``k``: ``dihedral_inverse(dihedral(x, k), k) == x``."""
    return dihedral(y, inverse(k), axes)


@functools.lru_cache(maxsize=None)
def index_maps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source (row, col) of every output pixel of each transform on a ``size`` × ``size`` patch.

    ``rows[k], cols[k]`` (``[8, size, size]`` int32): ``dihedral(p, k)[i, j] ==
    p[rows[k, i, j], cols[k, i, j]]``; in-graph augmentation gathers with them.
    """
    grid = np.stack(np.mgrid[0:size, 0:size].astype(np.int32), axis=-1)  # [S, S, 2]: (row, col)
    maps = np.stack([dihedral(grid, k) for k in range(N_DIHEDRAL)])  # [8, S, S, 2]
    rows, cols = np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols
