"""MATLAB-compatible bicubic ``imresize`` in NumPy and TensorFlow.

This is the resize that made the standard SR benchmark LR images (Set5, Set14, B100, Urban100,
DIV2K ``LR_bicubic``) and the papers' "Bicubic" column, so it reproduces MATLAB's ``imresize(A, s,
'bicubic')`` rather than PIL/OpenCV/``tf.image.resize``:

- Keys cubic kernel with a = -0.5, support 4;
- when downscaling (scale < 1) the kernel is stretched by 1/scale (antialiasing);
- output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1/scale)``;
- out-of-range taps mirror the image symmetrically (``[1..n, n..1]``, edge pixel repeated);
- weights of every output pixel are normalised to sum to one;
- the dimension with the smaller scale is resized first and, for integer images, the intermediate
  result is rounded back to the integer type between the two passes, exactly as MATLAB does
  (``imresizemex`` returns the class of its input). This matters: with it, DIV2K's official X2 LR
  of a uint8 HR is reproduced bit for bit; rounding only once matches 85% of its pixels.

Output size is ``ceil(scale * size)`` like MATLAB, except that a product within 1e-6 of an integer
counts as that integer: ``100 * 1.1`` is 110.00000000000001 in floating point, and MATLAB would
return 111 rows where 110 is meant.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # TensorFlow is imported lazily: NumPy-only users need not pay its import cost
    import tensorflow as tf

__all__ = [
    "bicubic_upscale",
    "bicubic_upscale_banded",
    "contributions",
    "imresize",
    "imresize_tf",
    "output_length",
    "resize_matrix",
    "resize_matrix_tf",
]

KERNEL_WIDTH = 4.0  # support of the bicubic kernel, in input pixels (before antialiasing)
_SIZE_EPS = 1e-6  # tolerance when turning scale * size into an integer output size


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    ) * ((absx > 1) & (absx <= 2))


def output_length(in_length: int, scale: float) -> int:
    """MATLAB's output size ``ceil(scale * in_length)``, tolerant to floating-point noise."""
    value = in_length * scale
    nearest = round(value)
    if abs(value - nearest) < _SIZE_EPS:
        return max(int(nearest), 1)
    return max(int(math.ceil(value)), 1)


def _check_scale(scale: float) -> float:
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"imresize: scale must be a positive number, got {scale!r}") from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"imresize: scale must be a positive finite number, got {scale}")
    return scale


@lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based input indices ``([out, P] float64, [out, P] int64)`` of one dimension.

    Direct vectorised transcription of MATLAB's ``contributions`` (bicubic, antialiasing on),
    with symmetric boundary handling; all-zero columns are dropped as MATLAB does. The arrays are
    cached and read-only.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"imresize: sizes must be >= 1, got in={in_length}, out={out_length}")
    kernel_width = KERNEL_WIDTH
    if scale < 1:
        kernel_width = KERNEL_WIDTH / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may be outside
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric padding: aux = [1..n, n..1], indexed modulo its length (0-based here).
    zero_based = np.mod(indices.astype(np.int64) - 1, 2 * in_length)
    zero_based = np.where(zero_based < in_length, zero_based, 2 * in_length - 1 - zero_based)
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    zero_based = np.ascontiguousarray(zero_based[:, keep])
    weights.setflags(write=False)
    zero_based.setflags(write=False)
    return weights, zero_based


def resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """Dense ``[out, in]`` float64 matrix ``M`` with ``resized = M @ signal`` along one axis."""
    weights, indices = contributions(in_length, out_length, float(scale))
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], indices.shape)
    np.add.at(matrix, (rows, indices), weights)  # add: mirrored taps can hit the same pixel
    return matrix


def _resize_axis(x: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Weighted sum of gathered rows along ``axis`` (float64); one pass per kernel tap."""
    moved = np.moveaxis(x, axis, 0)
    if not moved.flags.c_contiguous:
        moved = np.ascontiguousarray(moved)  # gathers of whole contiguous rows are fast
    shape = (weights.shape[0],) + moved.shape[1:]
    out = np.zeros(shape, dtype=np.float64)
    gathered = np.empty(shape, dtype=moved.dtype)  # buffers reused across taps: few allocations
    term = np.empty(shape, dtype=np.float64)
    expand = (slice(None),) + (None,) * (moved.ndim - 1)
    for tap in range(weights.shape[1]):
        np.take(moved, indices[:, tap], axis=0, out=gathered)
        np.multiply(weights[:, tap][expand], gathered, out=term)
        out += term
    return np.moveaxis(out, 0, axis)


def _round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's conversion of a double to an integer class: round half away from zero, saturate."""
    info = np.iinfo(dtype)
    rounded = np.floor(x + 0.5)
    if info.min < 0:  # signed types: negative halves round away from zero too
        rounded = np.where(x < 0, np.ceil(x - 0.5), rounded)
    return np.clip(rounded, info.min, info.max).astype(dtype)


def _target_sizes(
    in_shape: Sequence[int], scale: float | None, output_shape: Sequence[int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    if scale is not None:
        scale = _check_scale(scale)
        return (output_length(in_shape[0], scale), output_length(in_shape[1], scale)), (scale, scale)
    try:
        out_h, out_w = (int(v) for v in output_shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"imresize: output_shape must be two integers (height, width), got {output_shape!r}"
        ) from None
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize: output_shape must be positive, got {output_shape!r}")
    return (out_h, out_w), (out_h / in_shape[0], out_w / in_shape[1])


def imresize(
    img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize an HxW or HxWxC image like MATLAB's ``imresize(img, scale|[h w], 'bicubic')``.

    Give exactly one of ``scale`` (same factor for both axes) and ``output_shape`` ``(h, w)``.
    Integer images (uint8, uint16, ...) come back in the same dtype, rounded and saturated as
    MATLAB does (also between the two passes); float images come back as float64, not clipped.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected an HxW or HxWxC image, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"imresize: empty image of shape {img.shape}")
    if img.dtype == np.bool_ or not (
        np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)
    ):
        raise TypeError(f"imresize: expected an integer or float image, got dtype {img.dtype}")
    (out_h, out_w), scales = _target_sizes(img.shape, scale, output_shape)
    integer = np.issubdtype(img.dtype, np.integer)
    out: np.ndarray = img
    sizes = (out_h, out_w)
    # MATLAB: resize the dimension with the smaller scale first (stable sort: rows on ties).
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        weights, indices = contributions(out.shape[axis], sizes[axis], scales[axis])
        out = _resize_axis(out, axis, weights, indices)
        if integer:
            out = _round_to(out, img.dtype)
    if not integer:
        out = out.astype(np.float64, copy=False)
    return np.ascontiguousarray(out)


def bicubic_upscale(lr_uint8: np.ndarray, scale: int | float) -> np.ndarray:
    """The papers' "Bicubic" baseline: MATLAB bicubic upscaling computed in float, rounded once.

    The LR image (uint8, or float in [0, 255]) is resized as float64 and the result rounded and
    clipped to uint8 at the end, as a model output is. This is the protocol of the SR literature's
    "Bicubic" column (their MATLAB scripts resize ``im2double``/Y data) and of the reference figures
    in ``../shared/data/README.md``. ``imresize(lr_uint8, scale)`` instead reproduces MATLAB on a
    uint8 array, which also rounds between the two passes; that costs about 0.005 dB (Set5 x2).
    """
    lr = np.asarray(lr_uint8)
    if lr.dtype == np.bool_ or not (
        np.issubdtype(lr.dtype, np.integer) or np.issubdtype(lr.dtype, np.floating)
    ):
        raise TypeError(f"bicubic_upscale: expected an integer or float image, got {lr.dtype}")
    return _round_to(imresize(lr.astype(np.float64), scale=scale), np.uint8)


def bicubic_upscale_banded(img: np.ndarray, scale: int | float, *, band_rows: int = 64) -> np.ndarray:
    """:func:`bicubic_upscale` of an integer ``[H,W]``/``[H,W,C]`` image, in its dtype, in bands.

    Equal bit for bit to ``bicubic_upscale`` (rounded and clipped to the input's integer
    dtype once, at the end), but computed one channel and ``band_rows`` output rows at a
    time (rows pass, then columns pass, as :func:`imresize` orders equal scales), each band
    rounded straight into the output: besides the output and one channel of input, it holds
    about ``3 * band_rows * out_width`` float64 values, not three full-size float64 images.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3) or not np.issubdtype(img.dtype, np.integer) or img.dtype == np.bool_:
        raise TypeError(f"bicubic_upscale_banded: expected an integer [H,W] or [H,W,C] image, "
                        f"got {img.dtype} {img.shape}")
    scale = _check_scale(scale)
    h, w = img.shape[:2]
    out_h, out_w = output_length(h, scale), output_length(w, scale)
    row_weights, row_indices = contributions(h, out_h, scale)
    col_weights, col_indices = contributions(w, out_w, scale)
    out = np.empty((out_h, out_w) + img.shape[2:], img.dtype)
    planes = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    for c, plane in enumerate(planes):
        plane = np.ascontiguousarray(plane)  # one channel, in its integer dtype
        target = out if img.ndim == 2 else out[..., c]
        for r in range(0, out_h, band_rows):
            band = _resize_axis(plane, 0, row_weights[r : r + band_rows], row_indices[r : r + band_rows])
            band = _resize_axis(band, 1, col_weights, col_indices)
            target[r : r + band_rows] = _round_to(band, img.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# TensorFlow


def _cubic_tf(x: "tf.Tensor") -> "tf.Tensor":
    import tensorflow as tf

    absx = tf.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = tf.cast(absx <= 1, x.dtype)
    far = tf.cast((absx > 1) & (absx <= 2), x.dtype)
    return (1.5 * absx3 - 2.5 * absx2 + 1.0) * near + (
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    ) * far


def resize_matrix_tf(in_length, out_length, scale) -> "tf.Tensor":
    """In-graph dense ``[out, in]`` float64 resize matrix; same maths as :func:`resize_matrix`.

    Every argument may be a Python number or a scalar tensor (dynamic shapes inside tf.data).
    """
    import tensorflow as tf

    in_length = tf.cast(in_length, tf.int64)
    out_length = tf.cast(out_length, tf.int64)
    # A Python float must become float64 directly (tf.cast of it would go through float32).
    scale = tf.cast(scale, tf.float64) if tf.is_tensor(scale) else tf.constant(scale, tf.float64)
    downscale = scale < 1.0
    kernel_scale = tf.where(downscale, scale, tf.constant(1.0, tf.float64))
    kernel_width = KERNEL_WIDTH / kernel_scale
    x = tf.range(1, out_length + 1, dtype=tf.int64)
    u = tf.cast(x, tf.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = tf.floor(u - kernel_width / 2.0)
    taps = tf.cast(tf.math.ceil(kernel_width), tf.int64) + 2
    indices = left[:, None] + tf.cast(tf.range(taps), tf.float64)[None, :]
    weights = kernel_scale * _cubic_tf(kernel_scale * (u[:, None] - indices))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    zero_based = tf.math.floormod(tf.cast(indices, tf.int64) - 1, 2 * in_length)
    zero_based = tf.where(zero_based < in_length, zero_based, 2 * in_length - 1 - zero_based)
    rows = tf.broadcast_to(x[:, None] - 1, tf.shape(zero_based, out_type=tf.int64))
    coords = tf.reshape(tf.stack([rows, zero_based], axis=-1), [-1, 2])
    # scatter_nd sums duplicates, which mirrored taps produce near the borders.
    return tf.scatter_nd(coords, tf.reshape(weights, [-1]), tf.stack([out_length, in_length]))


def _tf_output_length(in_length, scale: float) -> "tf.Tensor":
    import tensorflow as tf

    value = tf.cast(in_length, tf.float64) * scale
    nearest = tf.round(value)
    out = tf.where(tf.abs(value - nearest) < _SIZE_EPS, nearest, tf.math.ceil(value))
    return tf.maximum(tf.cast(out, tf.int64), 1)


def imresize_tf(
    img: "tf.Tensor",
    scale: float | None = None,
    output_shape: "tuple[int, int] | tf.Tensor | None" = None,
    *,
    matlab_uint8: bool = False,
) -> "tf.Tensor":
    """MATLAB bicubic resize in-graph on ``[H, W, C]`` or ``[N, H, W, C]`` tensors.

    Same weights as :func:`imresize`, built with TF ops from the runtime shape, so it works inside
    ``tf.data`` map functions and ``tf.function`` with unknown height/width. ``scale`` is a Python
    number; ``output_shape`` may be ints or a tensor. Returns a float tensor (float32 unless the
    input is float64/float16/bfloat16, whose dtype is kept), not rounded or clipped: the float
    version of MATLAB's result.

    ``matlab_uint8=True`` emulates MATLAB on a uint8 image instead: the values are rounded (half
    away from zero) and clipped to [0, 255] after each pass, the smaller-scale dimension first, so
    an LR made in-graph from a uint8 HR equals the official (DIV2K, benchmark) LR files; the result
    is still a float tensor, holding integers.
    """
    import tensorflow as tf

    img = tf.convert_to_tensor(img)
    rank = img.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            f"imresize_tf: expected a [H, W, C] or [N, H, W, C] tensor, got shape {img.shape}"
        )
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize_tf: give exactly one of scale and output_shape")
    dtype = img.dtype if img.dtype.is_floating else tf.float32
    compute = tf.float64 if dtype == tf.float64 else tf.float32
    batched = tf.cast(img if rank == 4 else img[None], compute)
    shape = tf.shape(batched, out_type=tf.int64)
    in_h, in_w = shape[1], shape[2]
    if scale is not None:
        scale = _check_scale(scale)
        out_h, out_w = _tf_output_length(in_h, scale), _tf_output_length(in_w, scale)
        scale_h = scale_w = tf.constant(scale, tf.float64)
    else:
        if isinstance(output_shape, (tuple, list)) and len(output_shape) != 2:
            raise ValueError(
                f"imresize_tf: output_shape must be (height, width), got {output_shape!r}"
            )
        size = tf.cast(tf.convert_to_tensor(output_shape), tf.int64)
        out_h, out_w = size[0], size[1]
        scale_h = tf.cast(out_h, tf.float64) / tf.cast(in_h, tf.float64)
        scale_w = tf.cast(out_w, tf.float64) / tf.cast(in_w, tf.float64)
    mat_h = tf.cast(resize_matrix_tf(in_h, out_h, scale_h), compute)
    mat_w = tf.cast(resize_matrix_tf(in_w, out_w, scale_w), compute)

    def rows(x: "tf.Tensor") -> "tf.Tensor":
        out = tf.einsum("oh,nhwc->nowc", mat_h, x)
        return _round_uint8_tf(out) if matlab_uint8 else out

    def cols(x: "tf.Tensor") -> "tf.Tensor":
        out = tf.einsum("pw,nhwc->nhpc", mat_w, x)
        return _round_uint8_tf(out) if matlab_uint8 else out

    if not matlab_uint8 or scale is not None:
        # Without rounding the two passes commute; with one scale MATLAB does rows first.
        out = cols(rows(batched))
    else:
        out = tf.cond(scale_w < scale_h, lambda: rows(cols(batched)), lambda: cols(rows(batched)))
    out = tf.cast(out, dtype)
    static = batched.shape
    if scale is not None:
        h = output_length(static[1], scale) if static[1] is not None else None
        w = output_length(static[2], scale) if static[2] is not None else None
    elif isinstance(output_shape, (tuple, list)):
        h, w = (int(v) for v in output_shape)
    else:
        h = w = None
    out = tf.ensure_shape(out, [static[0], h, w, static[3]])  # keep what is statically known
    return out if rank == 4 else out[0]


def _round_uint8_tf(x: "tf.Tensor") -> "tf.Tensor":
    import tensorflow as tf

    return tf.floor(tf.clip_by_value(x, 0.0, 255.0) + 0.5)
