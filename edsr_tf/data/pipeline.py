"""tf.data pipelines: infinite shuffled training patches and whole-image evaluation pairs.

Training, per scale::

    image table ─new permutation every epoch (stateless)─enumerate─▶ parallel map: read (cache or PNG),
    K aligned random crops + dihedral augmentation, seeded by (seed, element number)
    ─unbatch─shuffle(patches)─batch─▶ float32 (+ LR made by imresize for HR-only folders)

Each decoded image gives ``crops_per_image`` patches, which a patch-level shuffle buffer
mixes across images, so decoding is paid once per K patches (not once per patch) and
batches still mix many images. With several scales (MDSR) one such pipeline per scale is
built and every batch comes whole from one of them, chosen at random (seeded).

For HR-only folders the LR patch is made from the (augmented) HR patch with MATLAB's bicubic
imresize in-graph, rounded to uint8 values between and after the two 1-D passes as MATLAB
does for uint8 images, so it equals ``imresize(hr_patch_uint8, output_shape=(p, p))`` (up to
rare float ties) and is quantised like a real LR PNG. ``datasets/prepare.py`` instead writes
whole-image LR files once (the MATLAB way, for a paired ``lr_root`` source).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from edsr_tf.data.cache import CachedImage, DecodedImageCache, decode_rgb
from edsr_tf.data.degrade import Degradation, degrade
from edsr_tf.data.patches import quantize, random_aligned_crops, random_crops
from edsr_tf.data.sources import (
    DataError,
    DataSource,
    DataWarning,
    ImagePair,
    image_pairs,
    tfds_builder,
    tfds_name_for,
    tfds_split,
)

log = logging.getLogger("edsr_tf.data")

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_CROPS_PER_IMAGE = 16
DEFAULT_SHUFFLE_BUFFER = 1024


def _scales(scales: int | Sequence[int]) -> tuple[int, ...]:
    out = (int(scales),) if isinstance(scales, (int, np.integer)) else tuple(int(s) for s in scales)
    if not out or any(s < 1 for s in out) or len(set(out)) != len(out):
        raise DataError(f"scales must be distinct positive integers, got {scales!r}")
    return out


def _seeds(seed: int, *salt: int, n: int = 1) -> list[int]:
    """Independent non-negative 31-bit seeds derived from ``seed`` and ``salt``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *salt]).generate_state(n)
    return [int(v) >> 1 for v in state]


# ------------------------------------------------------------------------------ image tables

def _image_size(path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def _check_sizes(pairs: Sequence[ImagePair], sizes: Sequence[tuple[tuple[int, int], tuple[int, int] | None]],
                 scale: int, patch_size: int | None) -> list[int]:
    """Indices of the pairs to use: raises for an LR that does not fit HR/scale; skips, with one
    notice giving the count, images smaller than a training patch (several T91 images are 78 px:
    one small image must not stop a long run); raises only when no image is large enough."""
    hp = None if patch_size is None else patch_size * scale
    keep, small = [], []
    for i, (pair, (hr, lr)) in enumerate(zip(pairs, sizes)):
        if lr is not None and (abs(hr[0] // scale - lr[0]) > 1 or abs(hr[1] // scale - lr[1]) > 1):
            raise DataError(f"LR image {pair.lr_path} is {lr[1]}x{lr[0]} but HR image {pair.hr_path} "
                            f"is {hr[1]}x{hr[0]}: not an x{scale} pair")
        if hp is not None and (hr[0] < hp or hr[1] < hp
                               or (lr is not None and (lr[0] < patch_size or lr[1] < patch_size))):
            small.append(i)
        else:
            keep.append(i)
    if small and not keep:
        pair, (hr, _) = pairs[small[0]], sizes[small[0]]
        raise DataError(f"every training image is smaller than the HR patch {hp}x{hp} (patch_size "
                        f"{patch_size} at x{scale}), e.g. {pair.hr_path} ({hr[1]}x{hr[0]}); use a "
                        "smaller patch_size")
    if small:
        first = pairs[small[0]]
        warnings.warn(f"skipping {len(small)} of {len(pairs)} training images smaller than the HR patch "
                      f"{hp}x{hp} (patch_size {patch_size} at x{scale}), e.g. {first.hr_path}",
                      DataWarning, stacklevel=2)
    return keep


def _table_from_entries(hr: Sequence[CachedImage], lr: Sequence[CachedImage] | None) -> dict[str, Any]:
    def cols(entries: Sequence[CachedImage]) -> dict[str, np.ndarray]:
        return {"path": np.array([os.fspath(e.path) for e in entries]),
                "offset": np.array([e.offset for e in entries], np.int64),
                "shape": np.array([e.shape for e in entries], np.int32)}

    return {"hr": cols(hr), **({"lr": cols(lr)} if lr is not None else {})}


def _load(col: dict[str, tf.Tensor]) -> tf.Tensor:
    """uint8 [H, W, 3] from one table column: an image file, a cache entry or a decoded image."""
    if "image" in col:
        return col["image"]
    contents = tf.io.read_file(col["path"])
    if "offset" not in col:
        return decode_rgb(contents)
    shape = col["shape"]
    nbytes = tf.reduce_prod(tf.cast(shape, tf.int64))
    raw = tf.io.decode_raw(tf.strings.substr(contents, col["offset"], nbytes), tf.uint8)
    return tf.reshape(raw, shape)


class _Images:
    """The images of one scale, as a tf.data-ready table (or a tfds dataset)."""

    def __init__(self, table: dict[str, Any] | None, count: int, generated: bool,
                 tfds_dataset: tf.data.Dataset | None = None) -> None:
        self.table, self.count, self.generated, self.tfds_dataset = table, count, generated, tfds_dataset

    def dataset(self, *, shuffle_seed: int | None, repeat: bool) -> tf.data.Dataset:
        if self.tfds_dataset is not None:
            return self.tfds_dataset.repeat() if repeat else self.tfds_dataset
        if shuffle_seed is None:
            ds = tf.data.Dataset.from_tensor_slices(self.table)
            return ds.repeat() if repeat else ds
        if not repeat:
            raise ValueError("a shuffled image table is only built as an endless stream")
        table = tf.nest.map_structure(tf.constant, self.table)
        return _epoch_order(self.count, shuffle_seed).map(
            lambda i: tf.nest.map_structure(lambda col: tf.gather(col, i), table))


def _epoch_order(count: int, seed: int) -> tf.data.Dataset:
    """Endless stream of indices into ``range(count)``: a new permutation every epoch.

    Stateless (epoch number + seed), unlike ``shuffle(reshuffle_each_iteration=True)``,
    whose per-epoch seeds come from a generator shared by every iterator of the dataset and
    not restored from an iterator checkpoint: a restored iterator would then replay other
    epochs than the saved one.
    """
    def permutation(epoch: tf.Tensor) -> tf.Tensor:
        keys = tf.random.stateless_uniform([count], tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.argsort(keys)

    return tf.data.Dataset.counter().map(permutation).unbatch()


def _stateless_choices(n: int, seed: int) -> tf.data.Dataset:
    """Endless stream of independent uniform draws from ``range(n)`` (stateless, as above)."""
    return tf.data.Dataset.counter().map(lambda i: tf.random.stateless_uniform(
        [], tf.stack([tf.constant(seed, tf.int64), i]), maxval=n, dtype=tf.int64))


def _tfds_images(source: DataSource, scale: int, *, train: bool, cache: DecodedImageCache | None,
                 shuffle_seed: int | None) -> _Images:
    import tensorflow_datasets as tfds

    builder = tfds_builder(source, scale)
    split = tfds_split(source, train=train)
    try:
        count = builder.info.splits[split].num_examples
    except Exception as e:
        raise DataError(f"tfds dataset {builder.info.full_name}: bad split {split!r}: {e}") from None
    if cache is None:
        read = tfds.ReadConfig(shuffle_seed=shuffle_seed) if shuffle_seed is not None else None
        ds = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None, read_config=read)
        ds = ds.map(lambda ex: {"lr": {"image": ex["lr"]}, "hr": {"image": ex["hr"]}})
        return _Images(None, count, False, ds)

    name = tfds_name_for(source, scale)
    base = {"tfds": name, "version": str(builder.info.version), "data_dir": os.fspath(builder.data_dir)}

    def keyed(which: str):
        return [(f"tfds:{name}:{split}:{i}:{which}", dict(base, source=f"{split}:{i}:{which}"))
                for i in range(count)]

    def arrays(which: str):
        def gen():
            for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
                yield ex[which]
        return gen

    hr = cache.entries_for(keyed("hr"), arrays("hr"))
    lr = cache.entries_for(keyed("lr"), arrays("lr"))
    return _Images(_table_from_entries(hr, lr), count, False)


def _file_images(source: DataSource, scale: int, *, train: bool, cache: DecodedImageCache | None,
                 patch_size: int | None) -> _Images:
    pairs = image_pairs(source, scale, train=train)
    generated = pairs[0].lr_path is None
    if cache is not None:
        hr = cache.file_entries([p.hr_path for p in pairs])
        lr = None if generated else cache.file_entries([p.lr_path for p in pairs])
        sizes = [(h.shape[:2], None if lr is None else lr[i].shape[:2]) for i, h in enumerate(hr)]
        keep = _check_sizes(pairs, sizes, scale, patch_size)
        hr = [hr[i] for i in keep]
        lr = None if lr is None else [lr[i] for i in keep]
        return _Images(_table_from_entries(hr, lr), len(keep), generated)
    sizes = [(_image_size(p.hr_path), None if generated else _image_size(p.lr_path)) for p in pairs]
    pairs = [pairs[i] for i in _check_sizes(pairs, sizes, scale, patch_size)]
    table = {"hr": {"path": np.array([os.fspath(p.hr_path) for p in pairs])}}
    if not generated:
        table["lr"] = {"path": np.array([os.fspath(p.lr_path) for p in pairs])}
    return _Images(table, len(pairs), generated)


def _images(source: DataSource, scale: int, *, train: bool, cache: DecodedImageCache | None,
            patch_size: int | None, shuffle_seed: int | None) -> _Images:
    if not isinstance(source, DataSource):
        raise DataError(f"expected an edsr_tf.data.DataSource, got {type(source).__name__}")
    if source.kind == "tfds":
        return _tfds_images(source, scale, train=train, cache=cache, shuffle_seed=shuffle_seed)
    return _file_images(source, scale, train=train, cache=cache, patch_size=patch_size)


# ------------------------------------------------------------------------------ LR generation

def downscale_patches(hr: tf.Tensor, scale: int) -> tf.Tensor:
    """MATLAB ``imresize(hr_uint8, 1/scale)`` of uint8-valued ``[N, sH, sW, 3]`` → float32 LR.

    Two 1-D passes (rows first, as MATLAB on equal scales), each rounded to uint8 values as
    MATLAB does for integer images; float64 maths as NumPy's imresize.
    """
    from edsr_tf.imresize import imresize_tf

    shape = tf.shape(hr)
    x = tf.cast(hr, tf.float64)
    x = quantize(imresize_tf(x, output_shape=tf.stack([shape[1] // scale, shape[2]])))
    x = quantize(imresize_tf(x, output_shape=tf.stack([shape[1] // scale, shape[2] // scale])))
    return tf.cast(x, tf.float32)


# ------------------------------------------------------------------------------ training

def _scale_train_dataset(source: DataSource, scale: int, *, patch_size: int, batch_size: int, seed: int,
                         deterministic: bool, cache: DecodedImageCache | None, crops_per_image: int,
                         shuffle_buffer: int, degradation: Degradation) -> tf.data.Dataset:
    order_seed, crop_seed, patch_seed = _seeds(seed, scale, n=3)
    (degrade_seed,) = _seeds(seed, scale, 1, n=1)
    # Degraded LR is made on a crop `margin` px larger, then cut at a random offset.
    crop_size = patch_size + degradation.crop_margin
    images = _images(source, scale, train=True, cache=cache, patch_size=crop_size, shuffle_seed=order_seed)
    if degradation.blur_prob > 0 and not images.generated:
        raise DataError("blur (before downscaling) needs an HR-only source: this one has LR files")
    hp = crop_size * scale

    def crop(counter: tf.Tensor, row: dict[str, Any]):
        pair_seed = tf.stack([tf.constant(crop_seed, tf.int64), counter])
        hr = _load(row["hr"])
        if images.generated:
            return random_crops(hr, hp, crops_per_image, pair_seed)
        lr = _load(row["lr"])
        if images.tfds_dataset is not None:  # sizes not checked up front
            lr_s, hr_s = tf.shape(lr), tf.shape(hr)
            fits = tf.reduce_all([lr_s[0] >= crop_size, lr_s[1] >= crop_size, hr_s[0] >= hp, hr_s[1] >= hp])
            tf.debugging.Assert(fits, ["image smaller than the patch: LR", lr_s, "HR", hr_s])
        return random_aligned_crops(lr, hr, scale, crop_size, crops_per_image, pair_seed)

    ds = images.dataset(shuffle_seed=order_seed, repeat=True).enumerate()
    ds = ds.map(crop, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    # The stream is endless, so reshuffling "each iteration" would add nothing but the shared
    # seed generator that iterator checkpoints do not restore (see _epoch_order).
    ds = ds.unbatch().shuffle(shuffle_buffer, seed=patch_seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size, drop_remainder=True)
    if degradation.active:
        def degraded(i: tf.Tensor, batch):
            lr, hr = (None, batch) if images.generated else batch
            return degrade(lr, hr, scale=scale, patch_size=patch_size, degradation=degradation,
                           seed=tf.stack([tf.constant(degrade_seed, tf.int64), i]), downscale=downscale_patches)

        ds = ds.enumerate().map(degraded, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    elif images.generated:
        ds = ds.map(lambda hr: (downscale_patches(hr, scale), tf.cast(hr, tf.float32)),
                    num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.map(lambda lr, hr: (tf.cast(lr, tf.float32), tf.cast(hr, tf.float32)))
    return ds


def build_train_dataset(
    source: DataSource,
    scales: int | Sequence[int],
    *,
    patch_size: int = 48,
    batch_size: int = 16,
    seed: int | None = None,
    deterministic: bool = False,
    cache_dir: str | os.PathLike | None = None,
    crops_per_image: int = DEFAULT_CROPS_PER_IMAGE,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    degradation: Degradation | None = None,
) -> tf.data.Dataset:
    """Infinite dataset of ``(lr, hr)`` float32 batches ``[B,p,p,3]`` / ``[B,sp,sp,3]`` in [0, 255].

    Random aligned crops with the 8 dihedral augmentations (same transform on LR and HR),
    ``crops_per_image`` patches per decoded image mixed by a ``shuffle_buffer``-patch shuffle.
    With several ``scales`` every batch holds one scale drawn at random (the scale is
    ``hr.shape[1] // lr.shape[1]``). ``seed`` fixes crops, augmentations and order; with
    ``deterministic=True`` too, two datasets with the same seed yield identical batches
    (``deterministic=False`` lets parallel map return elements out of order: faster, same
    patches but in varying order). ``cache_dir``: decoded-image cache (see
    :mod:`edsr_tf.data.cache`), built on first use, reused and re-checked afterwards.
    ``degradation``: JPEG/noise/blur applied to the LR of each batch
    (:mod:`edsr_tf.data.degrade`; None or the default: clean bicubic LR).
    """
    scales_t = _scales(scales)
    degradation = degradation or Degradation()
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size),
                        ("crops_per_image", crops_per_image), ("shuffle_buffer", shuffle_buffer)):
        if int(value) < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0]) >> 1
    cache = DecodedImageCache(cache_dir) if cache_dir is not None else None
    per_scale = [
        _scale_train_dataset(source, s, patch_size=int(patch_size), batch_size=int(batch_size), seed=int(seed),
                             deterministic=deterministic, cache=cache, crops_per_image=int(crops_per_image),
                             shuffle_buffer=int(shuffle_buffer), degradation=degradation)
        for s in scales_t
    ]
    if len(per_scale) == 1:
        ds = per_scale[0]
    else:
        (choice_seed,) = _seeds(seed, 0, n=1)
        ds = tf.data.Dataset.choose_from_datasets(per_scale, _stateless_choices(len(per_scale), choice_seed))
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.prefetch(AUTOTUNE).with_options(options)


def prepare_cache(source: DataSource, scales: int | Sequence[int], cache_dir: str | os.PathLike, *,
                  train: bool = True, evaluation: bool = True) -> DecodedImageCache:
    """Builds (or checks and repairs) the decoded-image cache of a source ahead of training.

    Covers the training and/or evaluation ranges of every scale; a range with no images is
    skipped with a log line. Returns the cache (its counters say what was decoded).
    """
    cache = DecodedImageCache(cache_dir)
    for s in _scales(scales):
        for part, wanted in (("train", train), ("eval", evaluation)):
            if not wanted:
                continue
            try:
                images = _images(source, s, train=part == "train", cache=cache, patch_size=None, shuffle_seed=None)
            except DataError as e:
                if part == "train":
                    raise
                log.info("cache: no x%d evaluation images (%s)", s, e)
                continue
            log.info("cache: x%d %s: %d images ready", s, part, images.count)
    return cache


# ------------------------------------------------------------------------------ evaluation

def build_eval_dataset(source: DataSource, scale: int, *, limit: int | None = None,
                       cache_dir: str | os.PathLike | None = None) -> tf.data.Dataset:
    """Finite dataset of whole images ``(lr, hr)`` float32 ``[1,h,w,3]`` / ``[1,sh,sw,3]``.

    Uses the evaluation part of ``data_range`` (DIV2K: 801-900 by default; tfds: the
    validation split). HR is cropped to ``LR × scale``; for HR-only folders, HR is cropped to
    a multiple of ``scale`` and LR made with MATLAB's bicubic imresize (uint8, as MATLAB).
    ``limit`` keeps the first images only.
    """
    (scale,) = _scales(scale)
    cache = DecodedImageCache(cache_dir) if cache_dir is not None else None
    images = _images(source, scale, train=False, cache=cache, patch_size=None, shuffle_seed=None)
    ds = images.dataset(shuffle_seed=None, repeat=False)
    if limit is not None:
        if int(limit) < 1:
            raise DataError(f"limit must be a positive integer, got {limit!r}")
        ds = ds.take(int(limit))

    def numpy_lr(hr: np.ndarray) -> np.ndarray:
        from edsr_tf.imresize import imresize

        return imresize(hr, output_shape=(hr.shape[0] // scale, hr.shape[1] // scale))

    def pair(row: dict[str, Any]):
        hr = _load(row["hr"])
        if images.generated:
            hs = tf.shape(hr)
            hr = hr[: hs[0] // scale * scale, : hs[1] // scale * scale]
            lr = tf.numpy_function(numpy_lr, [hr], tf.uint8, stateful=False)
            lr = tf.ensure_shape(lr, [None, None, 3])
        else:
            lr = _load(row["lr"])
            ls, hs = tf.shape(lr), tf.shape(hr)
            h = tf.minimum(ls[0], hs[0] // scale)
            w = tf.minimum(ls[1], hs[1] // scale)
            lr, hr = lr[:h, :w], hr[: h * scale, : w * scale]
        return tf.cast(lr, tf.float32)[None], tf.cast(hr, tf.float32)[None]

    ds = ds.map(pair, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(2)
