"""Whole-image super-resolution with a Keras model: tiling, self-ensemble, batching.

Tiling is exact, not blended: each tile's *core* (``tile`` × ``tile`` LR pixels)
is predicted from a *window* that adds ``tile_overlap`` real neighbouring pixels
on every side (shifted inwards at the image border, so all windows of an image
have one shape and batch together), and only the core of the output is kept.
A convolution stack with 'same' zero padding sees the image border only through
pixels within its receptive-field radius, so with ``tile_overlap`` ≥ that radius
the tiled output equals the untiled one up to float rounding. The default
overlap is the radius computed from the model's convolutions
(:func:`receptive_field_radius`: 36-37 LR pixels for edsr_baseline, 68-69 for
the paper's EDSR). A smaller overlap is faster but only approximately equal.

Memory is one batch of windows plus the output, whatever the input size:
:func:`upscale_array` writes tiles in place into one preallocated float32
array; :func:`upscale_tiles` yields the tiles so a caller (the upscale CLI) can
quantize them straight into a uint8/uint16 image. ``tile="auto"`` picks the
largest tile whose estimated activations fit :data:`DEFAULT_TILE_MEMORY`.

A Keras model runs through one compiled ``tf.function`` per (model, scale)
(:func:`_predict_fn`: input signature ``[None, None, None, 3]`` float32 and
``reduce_retracing``, so every window shape and batch size reuses one trace),
never eagerly. Anything else that maps a float32 batch to its upscaled batch
(a TFLite interpreter, :mod:`edsr_tf.inference_precision`) runs through the same tiling
as a :class:`Runner`.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from edsr_tf.dihedral import N_DIHEDRAL, dihedral, dihedral_inverse, transposes

#: Activation memory one tile window may use (estimated by :func:`auto_tile`): an
#: edsr_baseline x4 window is then 354 LR px (tile 280 + 2x37 overlap) and a 2040x1356
#: input at x4 (8K output) peaks at 2.4 GiB RSS (benchmarks/upscale_memory.py).
DEFAULT_TILE_MEMORY = 3 << 29  # 1.5 GiB

#: What the CLIs' ``--tile`` defaults to: a per-model size from :func:`auto_tile`.
DEFAULT_TILE = "auto"

ProgressFn = Callable[[int, int], None]


class AxisTile(NamedTuple):
    """One tile along one axis, in LR pixels: the window fed to the model and its kept core."""

    win_start: int
    win_len: int
    core_start: int
    core_len: int


def axis_tiles(n: int, tile: int | None, overlap: int) -> list[AxisTile]:
    """Splits an axis of ``n`` pixels into cores of ``tile`` with ``overlap`` context each side.

    An axis that fits in one window (``n <= tile + 2*overlap``) is not split:
    that is cheaper and trivially exact. Windows near the border are shifted
    inwards rather than shrunk, so every window has the same length.
    """
    if n < 1:
        raise ValueError(f"empty axis ({n} px)")
    if tile is None or tile <= 0 or n <= tile + 2 * overlap:
        return [AxisTile(0, n, 0, n)]
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    win_len = tile + 2 * overlap
    tiles = []
    for core in range(0, n, tile):
        core_len = min(tile, n - core)
        win = min(max(core - overlap, 0), n - win_len)
        tiles.append(AxisTile(win, win_len, core, core_len))
    return tiles


def tile_grid(h: int, w: int, tile: int | None, overlap: int) -> list[tuple[AxisTile, AxisTile]]:
    """All (row tile, column tile) pairs of an ``h`` × ``w`` image, row-major."""
    return [(ty, tx) for ty in axis_tiles(h, tile, overlap) for tx in axis_tiles(w, tile, overlap)]


def _layers_in_order(model) -> Iterator:
    import keras

    for layer in model.layers:  # functional models list layers in topological order
        if isinstance(layer, keras.Model):
            yield from _layers_in_order(layer)
        else:
            yield layer


def _conv_layers(model) -> Iterator:
    import keras

    for layer in _layers_in_order(model):
        if isinstance(layer, keras.layers.Conv2D):
            yield layer


def receptive_field_radius(model) -> int:
    """Conservative receptive-field radius of ``model`` in LR pixels.

    Each k×k convolution (dilation d) adds d·(k-1)/2 pixels. Convolutions
    after an upsampler add less in LR units; counting them as LR pixels
    over-estimates by at most one or two pixels, which keeps tiling exact for
    any conv stack (edsr_baseline ×2: 36, paper EDSR: 68, MDSR adds 8 for its
    two 5×5 pre-processing blocks).
    """
    radius = 0
    for layer in _conv_layers(model):
        reach = max(d * (k - 1) for k, d in zip(layer.kernel_size, layer.dilation_rate))
        radius += -(-reach // 2)  # ceil: an even kernel reaches further on one side
    return radius


def single_scale_model(model, scale: int):
    """MDSR's dict-output model → its single-scale view; any other model unchanged."""
    if isinstance(model.output, dict):
        from edsr_tf.models.mdsr import mdsr_scale_model

        return mdsr_scale_model(model, scale)
    return model



def activation_bytes_per_pixel(model) -> int:
    """Estimated float32 bytes of live activations per LR input pixel at the model's widest layer.

    For each convolution, input + output channels times the area factor of the
    upsamplers before it (conv layers in topological order; depth_to_space keeps
    the element count). The widest is the last upsampler conv (x4: 1024 floats
    per LR pixel out, 256 in, for 64 features). The factor 2.5 covers
    TensorFlow's extra buffers (measured on CPU, edsr_baseline x4, windows 266-400 px).
    """
    from edsr_tf.models.layers import DepthToSpace

    factor, widest = 1, 0
    for layer in _layers_in_order(model):
        if isinstance(layer, DepthToSpace):
            factor *= layer.block_size**2
        elif hasattr(layer, "kernel_size") and hasattr(layer, "filters"):
            c_in = int(layer.kernel.shape[-2])
            widest = max(widest, (c_in + int(layer.filters)) * factor)
    return int(widest * 4 * 2.5)


def auto_tile(model, overlap: int, memory_bytes: int = DEFAULT_TILE_MEMORY) -> int:
    """Largest tile (multiple of 8) whose window fits ``memory_bytes`` of activations.

    Never below ``2 * overlap`` (and 32): smaller tiles would spend most of the
    time on context, so very wide models (paper EDSR x4) exceed the budget instead.
    """
    return _auto_tile(activation_bytes_per_pixel(model), overlap, memory_bytes)


def _auto_tile(bytes_per_pixel: int, overlap: int, memory_bytes: int = DEFAULT_TILE_MEMORY) -> int:
    """:func:`auto_tile` from a per-pixel activation estimate (what a :class:`Runner` carries)."""
    per_px = max(int(bytes_per_pixel), 1)
    window = int((memory_bytes / per_px) ** 0.5)
    floor = max(32, -(-2 * overlap // 8) * 8)
    return max(floor, (window - 2 * overlap) // 8 * 8)


def resolve_tile(runner: "Runner", tile: int | str | None, overlap: int, batch_size: int = 1) -> int | None:
    """The LR tile side :func:`upscale_tiles` uses: ``"auto"`` is :func:`_auto_tile` of
    :data:`DEFAULT_TILE_MEMORY` shared by the ``batch_size`` windows of one call (so
    ``--batch 8`` gets smaller tiles, not 8x the memory); None/0: the whole image."""
    if tile == "auto":
        return _auto_tile(runner.bytes_per_pixel, overlap, DEFAULT_TILE_MEMORY // max(int(batch_size), 1))
    return tile or None


def working_memory(model, scale: int, height: int, width: int, *, tile: int | str | None = DEFAULT_TILE,
                   tile_overlap: int | None = None, batch_size: int = 1, self_ensemble: bool = False) -> int:
    """Estimated bytes :func:`upscale_tiles` holds besides its input and the caller's output.

    One model call's activations (``batch`` windows × window pixels × the runner's
    ``bytes_per_pixel``) plus its float32 input and output batches and the per-window
    accumulators. A caller adds the images it holds to bound a whole run (upscale's
    ``--max_memory``).
    """
    runner = as_runner(model, scale)
    overlap = runner.radius if tile_overlap is None else int(tile_overlap)
    t = resolve_tile(runner, tile, overlap, batch_size)
    rows, cols = axis_tiles(height, t, overlap), axis_tiles(width, t, overlap)
    win_px = rows[0].win_len * cols[0].win_len
    windows = len(rows) * len(cols)
    per_call = min(batch_size, windows * (N_DIHEDRAL if self_ensemble else 1))
    kept = min(batch_size, windows)
    hr_px = win_px * scale * scale
    return (per_call * win_px * (runner.bytes_per_pixel + 12)  # activations + float32 input batch
            + (per_call + kept) * hr_px * 12)  # output batch + accumulators, float32 RGB


def small_tile_warning(model, scale: int, tile, tile_overlap: int | None = None) -> str | None:
    """A warning when an explicit ``tile`` is smaller than the overlap (slow, not wrong), else None.

    Each window is ``tile + 2 * overlap`` pixels wide, so a tile below the overlap spends
    most of the work on context: ``--tile 1`` with a 36 px overlap computes 5,329 times the
    pixels it keeps.
    """
    if not isinstance(tile, int) or isinstance(tile, bool) or tile <= 0:
        return None
    radius = receptive_field_radius(single_scale_model(model, scale))
    overlap = radius if tile_overlap is None else int(tile_overlap)
    if tile >= overlap:
        return None
    cost = ((tile + 2 * overlap) / tile) ** 2
    # An overlap past the receptive field buys nothing: advise lowering it, not a huge tile.
    advice = (f"--tile {overlap} or more" if overlap <= radius else
              f"--tile_overlap {radius} (the model's receptive field; more changes nothing) "
              f"with --tile {radius} or more")
    return (f"--tile {tile} is smaller than the tile overlap ({overlap} px per side): every tile "
            f"computes {cost:,.0f}x the pixels it keeps; use --tile auto (the default) or {advice}")


# model → {scale: tf.function}. Weak keys so a discarded model (and its graph) is freed.
_PREDICT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _predict_fn(model, scale: int):
    import tensorflow as tf

    per_model = _PREDICT_CACHE.setdefault(model, {})
    fn = per_model.get(scale)
    if fn is None:
        net = single_scale_model(model, scale)
        ref = weakref.ref(net)  # no strong cycle from the cache value back to its key
        keep = net  # MDSR views must live as long as the cache entry

        # One trace for every window shape and batch size (fully dynamic signature).
        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
            reduce_retracing=True,
        )
        def predict(x):
            return ref()(x, training=False)

        predict._edsr_tf_net = keep if keep is not model else None
        per_model[scale] = fn = predict
    return fn


@dataclasses.dataclass(frozen=True)
class Runner:
    """A batch super-resolver and the geometry tiling needs: what :func:`upscale_tiles` runs.

    ``predict``: float32 ``[N, h, w, 3]`` in [0, 255] → float32 ``[N, sh, sw, 3]`` (any
    ``h``, ``w``, ``N``). ``radius``: receptive-field radius in LR pixels (the default,
    exact, tile overlap). ``bytes_per_pixel``: activation estimate per LR pixel for
    ``tile="auto"``. A non-Keras runtime of a Keras network (TFLite) takes both from the
    network it was converted from (:func:`keras_runner`), so it tiles exactly as Keras does.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    radius: int
    bytes_per_pixel: int
    label: str = "keras"


def keras_runner(model, scale: int) -> Runner:
    """``model`` at ``scale`` (an MDSR: its ``x{scale}`` output) as a :class:`Runner`.

    Runs the compiled :func:`_predict_fn`, shared by every runner of the same model.
    """
    import tensorflow as tf

    net = single_scale_model(model, int(scale))
    fn = _predict_fn(model, int(scale))
    return Runner(lambda batch: fn(tf.constant(batch, tf.float32)).numpy(),
                  receptive_field_radius(net), activation_bytes_per_pixel(net), "keras")


def as_runner(model_or_runner, scale: int) -> Runner:
    """A :class:`Runner` as given; a Keras model through :func:`keras_runner`."""
    if isinstance(model_or_runner, Runner):
        return model_or_runner
    return keras_runner(model_or_runner, scale)


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def upscale_tiles(
    model,
    scale: int,
    rgb_float: np.ndarray,
    *,
    tile: int | str | None = None,
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    batch_size: int = 1,
    progress: ProgressFn | None = None,
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Yields ``(rows, cols, block)``: float32 HR blocks and where they go in the output.

    The blocks tile the ``[sH, sW]`` output exactly once. :func:`upscale_array`
    assembles them; callers that want another output dtype (the CLI writes
    uint8/uint16 directly) consume this instead and never hold a full-size float image.

    Args:
      model: Keras model mapping float32 ``[N,H,W,3]`` in [0,255] to ``[N,sH,sW,3]``
        (EDSR, an MDSR scale view, or a whole MDSR: its ``x{scale}`` output is used),
        or a :class:`Runner` (e.g. a TFLite model, :mod:`edsr_tf.inference_precision`).
      scale: the upscaling factor.
      rgb_float: ``[H, W, 3]`` image in [0, 255] (any numeric dtype).
      tile: LR core size of a tile; None or 0 = whole image in one pass; "auto" =
        :func:`auto_tile` (memory-bounded; what the CLIs use).
      tile_overlap: LR context pixels on each side of a tile; None = the model's
        :func:`receptive_field_radius` (exact). Smaller is faster, approximate.
      self_ensemble: average the outputs of the 8 flips/rotations (EDSR+), the transforms of
        :mod:`edsr_tf.dihedral`, each undone on its output before averaging.
      batch_size: windows (or ensemble transforms) per model call.
      progress: called as ``progress(done_tiles, total_tiles)`` after each batch.
    """
    scale = int(scale)
    x = np.asarray(rgb_float)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {x.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(tile, str) and tile != "auto":
        raise ValueError(f"tile must be an int, None or 'auto', got {tile!r}")
    if isinstance(tile, int) and tile < 0:
        raise ValueError(f"tile must be >= 0 (0 = no tiling), got {tile}")
    x = x.astype(np.float32, copy=False)
    h, w = x.shape[:2]
    runner = as_runner(model, scale)
    overlap = runner.radius if tile_overlap is None else int(tile_overlap)
    if overlap < 0:
        raise ValueError(f"tile_overlap must be >= 0, got {overlap}")
    tile = resolve_tile(runner, tile, overlap, batch_size)
    predict = runner.predict
    grid = tile_grid(h, w, tile or None, overlap)
    transforms = list(range(N_DIHEDRAL)) if self_ensemble else [0]

    done = 0
    for windows in _chunks(grid, batch_size):
        acc: list[np.ndarray | None] = [None] * len(windows)
        jobs = [(i, t) for i in range(len(windows)) for t in transforms]
        # Transposing transforms change a non-square window's shape: batch each shape separately.
        for group in ([j for j in jobs if not transposes(j[1])], [j for j in jobs if transposes(j[1])]):
            for sub in _chunks(group, batch_size):
                crops = []
                for i, t in sub:
                    ty, tx = windows[i]
                    win = x[ty.win_start : ty.win_start + ty.win_len, tx.win_start : tx.win_start + tx.win_len]
                    crops.append(dihedral(win, t))
                batch = np.stack(crops)
                del crops
                y = np.asarray(predict(batch))
                if y.shape[1:3] != (batch.shape[1] * scale, batch.shape[2] * scale):
                    raise ValueError(
                        f"model output {tuple(y.shape)} for input {tuple(batch.shape)} is not x{scale}: "
                        "wrong scale for these weights?"
                    )
                for (i, t), yi in zip(sub, y):
                    yi = dihedral_inverse(yi, t)
                    if acc[i] is None:
                        acc[i] = np.array(yi, np.float32)
                    else:
                        acc[i] += yi
                del y, batch
        done += len(windows)
        if progress is not None:
            progress(done, len(grid))
        for (ty, tx), a in zip(windows, acc):
            if len(transforms) > 1:
                a /= len(transforms)
            oy, ox = (ty.core_start - ty.win_start) * scale, (tx.core_start - tx.win_start) * scale
            rows = slice(ty.core_start * scale, (ty.core_start + ty.core_len) * scale)
            cols = slice(tx.core_start * scale, (tx.core_start + tx.core_len) * scale)
            yield rows, cols, a[oy : oy + ty.core_len * scale, ox : ox + tx.core_len * scale]


def upscale_array(model, scale: int, rgb_float: np.ndarray, **options: Any) -> np.ndarray:
    """Super-resolves one RGB image with ``model``: the blocks of :func:`upscale_tiles`, assembled.

    Takes the arguments of :func:`upscale_tiles` (``tile``, ``tile_overlap``, ``self_ensemble``,
    ``batch_size``, ``progress``: keywords only).

    Returns:
      float32 ``[sH, sW, 3]``, not rounded or clipped.
    """
    h, w = np.shape(rgb_float)[:2]
    out = np.empty((h * int(scale), w * int(scale), 3), np.float32)
    for rows, cols, block in upscale_tiles(model, scale, rgb_float, **options):
        out[rows, cols] = block
    return out
