"""The one evaluation path: LR from HR, the SR call, ``evaluate_set``, results as JSON and markdown.

Used by every front end that scores images: ``python -m edsr_tf.evaluate``, validation and
the final table of training (``eval.json``/``eval.md``), export verification
(:mod:`edsr_tf.export.verify`: :func:`lr_from_hr`) and the benchmarks. Protocol as the papers
(:func:`edsr_tf.metrics.evaluate_pair`): SR output rounded to uint8
(:func:`edsr_tf.images.quantize_to`), PSNR/SSIM on the rounded Y of BT.601 with ``scale``
pixels shaved (DIV2K validation: RGB, ``scale + 6``); a grayscale image is scored on its
own intensity (the model's three output channels are averaged for it). A missing LR is made
from the HR cropped to a multiple of ``scale`` with MATLAB-bicubic ``imresize``.

Results (:func:`evaluate_set`) are plain dicts with exactly the keys of :data:`RESULT_KEYS`
(per image: :data:`IMAGE_KEYS`); figures that were not computed are None. Written as JSON
by :func:`to_json` (valid JSON: a non-finite number, e.g. the infinite PSNR of an exactly
reproduced image, is written as null) and as a table by :func:`markdown_table`.

Layering: this module uses the leaves (metrics, imresize, images), benchmark-set discovery
and, for a model, :mod:`edsr_tf.inference`; it never imports a command-line module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Iterator, NamedTuple

import numpy as np

from edsr_tf.images import ImageReadError, LoadedImage, quantize_to, read_image

#: A super-resolver: LR image (``[h,w]`` gray or ``[h,w,3]`` RGB, uint8) → SR uint8, same layout.
SRFn = Callable[[np.ndarray], np.ndarray]

PROTOCOL_Y = "Y (BT.601), shave scale"
PROTOCOL_DIV2K = "RGB, shave scale+6"

#: Keys of one set's result (:func:`evaluate_set`), in this order.
RESULT_KEYS = (
    "set",            # the set's name (a benchmark's folder name, e.g. "Set5", "BSD100")
    "scale",          # upscaling factor
    "images",         # number of images scored
    "protocol",       # PROTOCOL_Y or PROTOCOL_DIV2K
    "psnr",           # mean PSNR (dB) of the evaluated method; null if infinite
    "ssim",           # mean SSIM
    "bicubic_psnr",   # mean PSNR of MATLAB bicubic on the same LR (bicubic=True), else null
    "bicubic_ssim",   # mean SSIM of bicubic, else null
    "generated_lr",   # how many LR images were made from the HR (no LR file)
    "path",           # folder of a benchmark set, else null
    "layout",         # benchmark layout ("edsr", "srf", "hr_only", "div2k"), else null
    "lr_jpeg_quality",  # LR JPEG-compressed at this quality before SR (compressed-input protocol), else null
    "per_image",      # list of per-image results (IMAGE_KEYS)
)

#: Keys of one image's result (``per_image``), in this order.
IMAGE_KEYS = ("image", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "generated_lr")


class EvaluationError(ValueError):
    """An image of an evaluation set cannot be evaluated (unreadable, too small, wrong LR size)."""


# ------------------------------------------------------------------ images and sets

def lr_from_hr(hr: np.ndarray, scale: int, *, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR): ``hr`` cropped (top-left) to a multiple of ``scale``, and its MATLAB-bicubic LR.

    The LR is ``imresize(hr, 1/scale)`` on the uint8 image, as MATLAB makes the official LR
    files (it reproduces DIV2K's and EDSR-PyTorch's benchmark LR exactly).
    """
    from edsr_tf.imresize import imresize

    scale = int(scale)
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    if h == 0 or w == 0:
        raise EvaluationError(f"{name}: {hr.shape[1]}x{hr.shape[0]} is smaller than x{scale}")
    hr = hr[:h, :w]
    return imresize(hr, scale=1.0 / scale), hr


def _uint8_channels(img: LoadedImage) -> np.ndarray:
    """The image as stored (``[h,w]`` or ``[h,w,3]``) in uint8 (16-bit files scaled by 1/257)."""
    a = img.channels()
    if img.bit_depth == 16:
        a = quantize_to(a.astype(np.float64) / 257.0, 8)
    return a


def load_pair(hr_path: str | os.PathLike, lr_path: str | os.PathLike | None, scale: int, *,
              max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 arrays of one test image, HR cropped to LR size × ``scale``.

    A given LR must be ``floor(HR / scale)`` in both dimensions, else
    :class:`EvaluationError` naming the LR file and both sizes. A missing LR
    (``lr_path=None``) is made with :func:`lr_from_hr`. Gray/RGB layouts of the pair
    are unified to the HR's. ``max_pixels``: as :func:`edsr_tf.images.read_image`.
    """
    from edsr_tf.benchmark_sets import lr_size_problem

    hr = _uint8_channels(read_image(hr_path, max_pixels=max_pixels))
    if lr_path is None:
        return lr_from_hr(hr, scale, name=str(hr_path))
    lr = _uint8_channels(read_image(lr_path, max_pixels=max_pixels))
    if lr.ndim != hr.ndim:  # e.g. a gray HR saved with an RGB LR: follow the HR.
        lr = lr[..., 0] if hr.ndim == 2 else np.repeat(lr[..., None], 3, axis=-1)
    problem = lr_size_problem(Path(hr_path), (hr.shape[1], hr.shape[0]), Path(lr_path),
                              (lr.shape[1], lr.shape[0]), scale)
    if problem:
        raise EvaluationError(problem)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    return lr, hr[:h, :w]


@dataclasses.dataclass
class EvalImage:
    """One LR/HR pair; uint8 ``[H, W, 3]`` (or ``[H, W]`` for grayscale)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray
    generated_lr: bool = False


@dataclasses.dataclass
class EvalSet:
    """Images of one evaluation set at one scale.

    ``images`` is a list (in memory) or, for a benchmark folder, a lazy sequence that
    reads each pair when it is reached (:func:`eval_set_from_benchmark`).
    """

    name: str
    scale: int
    images: Sequence[EvalImage]
    div2k: bool = False
    path: str | None = None
    layout: str | None = None
    #: The LR were JPEG-compressed at this quality (None: as read).
    lr_jpeg_quality: int | None = None


class _PairImages(Sequence):
    """The pairs of a benchmark set, read (and checked) one at a time."""

    def __init__(self, pairs, scale: int, max_pixels: int | None, lr_jpeg_quality: int | None = None):
        self._pairs, self._scale, self._max_pixels = list(pairs), int(scale), max_pixels
        self._jpeg = lr_jpeg_quality

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return _PairImages(self._pairs[i], self._scale, self._max_pixels, self._jpeg)
        pair = self._pairs[i]
        try:
            lr, hr = load_pair(pair.hr, pair.lr, self._scale, max_pixels=self._max_pixels)
        except ImageReadError as e:
            raise EvaluationError(str(e)) from None
        if self._jpeg is not None:
            from edsr_tf.jpeg import jpeg_roundtrip

            lr = jpeg_roundtrip(lr, self._jpeg)
        return EvalImage(pair.name, lr, hr, generated_lr=pair.lr is None)


def eval_set_from_benchmark(bset, *, max_pixels: int | None = None,
                            lr_jpeg_quality: int | None = None) -> EvalSet:
    """A :class:`edsr_tf.benchmark_sets.BenchmarkSet` as an :class:`EvalSet` read lazily.

    ``lr_jpeg_quality``: the protocol for compressed inputs: each LR (official or made by
    MATLAB bicubic) is saved as a JPEG at this quality and read back
    (:func:`edsr_tf.jpeg.jpeg_roundtrip`) before the model or bicubic sees it.
    """
    if lr_jpeg_quality is not None:
        from edsr_tf.jpeg import check_quality

        lr_jpeg_quality = check_quality(lr_jpeg_quality)
    return EvalSet(bset.name, int(bset.scale), _PairImages(bset.pairs, bset.scale, max_pixels, lr_jpeg_quality),
                   div2k=bset.div2k, path=str(bset.root), layout=bset.layout, lr_jpeg_quality=lr_jpeg_quality)


def load_benchmark_set(dataset_dir: str | os.PathLike, name: str, scale: int, *,
                       max_pixels: int | None = None) -> EvalSet:
    """Set5/Set14/... found by :mod:`edsr_tf.benchmark_sets` (any known layout), read now.

    HR is cropped to LR size × scale; a missing LR is made from the HR (:func:`load_pair`).
    Raises ``DatasetNotFoundError`` naming the folder when the set is absent.
    """
    from edsr_tf.benchmark_sets import find_dataset

    found = eval_set_from_benchmark(find_dataset(dataset_dir, name, scale), max_pixels=max_pixels)
    return dataclasses.replace(found, images=list(found.images))


def eval_set_from_hr(name: str, hr_images: dict[str, np.ndarray], scale: int) -> EvalSet:
    """An :class:`EvalSet` of uint8 HR images, each LR made with :func:`lr_from_hr`."""
    images = [EvalImage(key, *lr_from_hr(hr, scale, name=key), generated_lr=True)
              for key, hr in hr_images.items()]
    return EvalSet(name, int(scale), images)


def eval_set_from_dataset(
    name: str, dataset, scale: int, *, div2k: bool = False, names: Sequence[str] | None = None,
    generated_lr: bool = False,
) -> EvalSet:
    """Materialises a ``build_eval_dataset`` dataset (``[1,h,w,3]`` float pairs in [0, 255])."""
    images = []
    for i, (lr, hr) in enumerate(dataset):
        label = names[i] if names is not None and i < len(names) else f"{i:04d}"
        images.append(EvalImage(label, quantize_to(np.asarray(lr)[0], 8), quantize_to(np.asarray(hr)[0], 8),
                                generated_lr=generated_lr))
    if not images:
        raise ValueError(f"evaluation set {name!r} is empty")
    return EvalSet(name, int(scale), images, div2k=div2k)


# ------------------------------------------------------------------ super-resolvers

def bicubic_sr(scale: int) -> SRFn:
    """The papers' Bicubic baseline (MATLAB imresize of the LR, uint8 result)."""
    from edsr_tf.imresize import bicubic_upscale

    return lambda lr: bicubic_upscale(lr, scale)


def model_sr(model, scale: int, **upscale_kwargs) -> SRFn:
    """A model (Keras, or an :class:`edsr_tf.inference.Runner`) as an :data:`SRFn`: uint8 LR →
    uint8 SR (gray: the 3 outputs averaged).

    Keywords go to :func:`edsr_tf.inference.upscale_array` (``tile``, ``tile_overlap``,
    ``self_ensemble``, ``batch_size``); an MDSR model runs its ``x{scale}`` output.
    """
    from edsr_tf.inference import upscale_array

    def run(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[..., None], 3, axis=-1) if lr.ndim == 2 else lr
        sr = upscale_array(model, scale, rgb.astype(np.float32), **upscale_kwargs)
        if lr.ndim == 2:
            sr = sr.mean(axis=-1, dtype=np.float32)
        return quantize_to(sr, 8)

    return run


def _is_keras_model(obj) -> bool:
    keras = sys.modules.get("keras")  # not imported: obj cannot be a Keras model
    return keras is not None and isinstance(obj, keras.Model)


# ------------------------------------------------------------------ evaluation

class ScoredImage(NamedTuple):
    """What :func:`evaluate_set` passes to ``on_image`` for each image."""

    image: EvalImage
    sr: np.ndarray  # uint8, the layout of image.hr
    scores: dict    # the image's row of ``per_image`` (IMAGE_KEYS)


def _mean(values: Sequence[float]) -> float:
    """Mean over images; infinite (an image reproduced exactly) if any is, as MATLAB's mean."""
    return float(np.mean(values))


def evaluate_set(
    sr,
    eval_set: EvalSet,
    *,
    bicubic: bool = False,
    tile: int | str | None = None,
    limit: int | None = None,
    progress: bool = False,
    on_image: Callable[[ScoredImage], None] | None = None,
) -> dict:
    """Scores ``sr`` on ``eval_set``: mean and per-image PSNR/SSIM (keys: :data:`RESULT_KEYS`).

    Args:
      sr: an :data:`SRFn` (:func:`model_sr`, :func:`bicubic_sr`), or a Keras model, run
        with ``model_sr(model, eval_set.scale, tile=tile)``.
      eval_set: the images (:class:`EvalSet`).
      bicubic: also score MATLAB bicubic on the same LR (``bicubic_psnr``/``bicubic_ssim``).
      tile: the LR tile size when ``sr`` is a model (None = whole image).
      limit: score only the first ``limit`` images (None or 0: all).
      progress: a progress bar on stderr.
      on_image: called with a :class:`ScoredImage` after each image (e.g. to save the SR
        image, or keep one for TensorBoard).

    Raises :class:`EvaluationError` for an unreadable image or an SR output whose shape is
    not the HR's.
    """
    from edsr_tf.imresize import bicubic_upscale
    from edsr_tf.metrics import evaluate_pair

    s = int(eval_set.scale)
    sr_fn = model_sr(sr, s, tile=tile or None) if _is_keras_model(sr) else sr
    n = min(len(eval_set.images), limit) if limit else len(eval_set.images)
    if n == 0:
        raise EvaluationError(f"{eval_set.name}: no images to evaluate")
    indices: Iterator[int] = iter(range(n))
    if progress:
        from tqdm import tqdm

        indices = tqdm(range(n), desc=f"{eval_set.name} x{s}", unit="img", leave=False, file=sys.stderr)
    rows = []
    for i in indices:
        img = eval_set.images[i]
        out = sr_fn(img.lr)
        if out.shape != img.hr.shape:
            raise EvaluationError(
                f"{eval_set.name}/{img.name}: SR output {out.shape} does not match HR {img.hr.shape} "
                "(wrong scale?)"
            )
        try:
            m = evaluate_pair(out, img.hr, s, div2k=eval_set.div2k)
        except ValueError as e:  # too small to score: name the image (pair_problems checks sets first)
            raise EvaluationError(f"{eval_set.name}/{img.name}: {e}") from None
        b = evaluate_pair(bicubic_upscale(img.lr, s), img.hr, s, div2k=eval_set.div2k) if bicubic else None
        row = {
            "image": img.name,
            "psnr": m["psnr"],
            "ssim": m["ssim"],
            "bicubic_psnr": b["psnr"] if b else None,
            "bicubic_ssim": b["ssim"] if b else None,
            "generated_lr": bool(img.generated_lr),
        }
        rows.append(row)
        if on_image is not None:
            on_image(ScoredImage(img, out, row))
    return {
        "set": eval_set.name,
        "scale": s,
        "images": len(rows),
        "protocol": PROTOCOL_DIV2K if eval_set.div2k else PROTOCOL_Y,
        "psnr": _mean([r["psnr"] for r in rows]),
        "ssim": _mean([r["ssim"] for r in rows]),
        "bicubic_psnr": _mean([r["bicubic_psnr"] for r in rows]) if bicubic else None,
        "bicubic_ssim": _mean([r["bicubic_ssim"] for r in rows]) if bicubic else None,
        "generated_lr": sum(r["generated_lr"] for r in rows),
        "path": eval_set.path,
        "layout": eval_set.layout,
        "lr_jpeg_quality": eval_set.lr_jpeg_quality,
        "per_image": rows,
    }


# ------------------------------------------------------------------ output

def markdown_table(results: Sequence[dict], *, method: str = "model", title: str | None = None) -> str:
    """Paper-style table, one row per set: PSNR (dB) to 2 decimals, SSIM to 4.

    With bicubic figures in any result: ``bicubic PSNR | <method> PSNR | gain (dB) |
    bicubic SSIM | <method> SSIM`` (a missing figure is ``-``); else ``<method> PSNR |
    <method> SSIM``. Ends with a newline; an infinite PSNR shows as ``inf``.
    """
    with_bicubic = any(r.get("bicubic_psnr") is not None for r in results)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [title, ""] if title else []
    if with_bicubic:
        lines += [
            f"| set | scale | images | bicubic PSNR | {method} PSNR | gain (dB) | bicubic SSIM "
            f"| {method} SSIM |",
            "|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines += [f"| set | scale | images | {method} PSNR | {method} SSIM |", "|---|---|---|---|---|"]
    for r in results:
        head = f"| {r['set']} | x{r['scale']} | {r['images']} |"
        if with_bicubic:
            bp, bs = r.get("bicubic_psnr"), r.get("bicubic_ssim")
            gain = r["psnr"] - bp if bp is not None else None
            gain = None if gain is not None and math.isnan(gain) else gain  # inf - inf
            lines.append(f"{head} {fmt(bp, '.2f')} | {r['psnr']:.2f} | {fmt(gain, '+.2f')} | "
                         f"{fmt(bs, '.4f')} | {r['ssim']:.4f} |")
        else:
            lines.append(f"{head} {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return "\n".join(lines) + "\n"


def json_safe(x):
    """``x`` with non-finite floats as None and NumPy scalars as Python numbers (JSON-ready)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def to_json(doc: dict) -> str:
    """``doc`` as indented, valid JSON (non-finite numbers as null), with a final newline."""
    return json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, doc: dict) -> Path:
    """Writes :func:`to_json` of ``doc`` to ``path`` atomically."""
    from edsr_tf.fileio import atomic_write_text

    path = Path(path)
    atomic_write_text(path, to_json(doc))
    return path


def write_results(out_dir: str | os.PathLike, results: Sequence[dict], *, title: str | None = None,
                  method: str = "model", extra: dict | None = None) -> tuple[Path, Path]:
    """Writes ``eval.json`` (``{"results": [...], **extra}``) and ``eval.md`` atomically into ``out_dir``."""
    from edsr_tf.fileio import atomic_write_text

    out = Path(out_dir)
    jpath = write_json(out / "eval.json", {"results": list(results), **(extra or {})})
    mpath = out / "eval.md"
    atomic_write_text(mpath, markdown_table(results, method=method, title=title))
    return jpath, mpath
