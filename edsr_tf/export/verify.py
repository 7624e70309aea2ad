"""Runs every export in its own runtime and compares it with the Keras model.

fp32 exports must match the Keras output within a max-abs tolerance on the
[0, 255] scale; quantized exports are scored by PSNR (Y, ``scale`` px shaved)
against the HR images, next to the Keras model's PSNR, and the drop in dB.
LR images are made and outputs scored as everywhere else
(:func:`edsr_tf.evaluation.lr_from_hr`, :func:`edsr_tf.metrics.evaluate_pair`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import statistics
import struct
import time
import zlib
from pathlib import Path
from typing import Protocol

import keras
import numpy as np

from edsr_tf.errors import first_line
from edsr_tf.export.common import (
    FP32_TOLERANCE,
    MAX_LR_SIDE,
    ExportError,
    ExportUsageError,
    VerificationError,
)
from edsr_tf.evaluation import lr_from_hr
from edsr_tf.metrics import evaluate_pair, quantize


class Runner(Protocol):
    """Anything that maps float32 ``[N,H,W,3]`` in [0,255] to float32 ``[N,sH,sW,3]``."""

    runtime: str

    def run(self, images: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class VerificationImage:
    """An HR image and its bicubic LR (both uint8 RGB)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray


def make_pair(name: str, hr: np.ndarray, scale: int, max_lr_side: int | None = MAX_LR_SIDE) -> VerificationImage:
    """Center-crops ``hr`` to a multiple of ``scale`` (and ``max_lr_side``), makes its bicubic LR."""
    h, w = hr.shape[:2]
    lh, lw = h // scale, w // scale
    if max_lr_side:
        lh, lw = min(lh, max_lr_side), min(lw, max_lr_side)
    if lh < 1 or lw < 1:
        raise ExportError(f"verification image {name!r} ({h}x{w}) is smaller than the scale {scale}")
    y, x = (h - lh * scale) // 2, (w - lw * scale) // 2
    crop = np.ascontiguousarray(hr[y : y + lh * scale, x : x + lw * scale, :3])
    lr, hr = lr_from_hr(crop, scale, name=name)
    return VerificationImage(name, lr, hr)


def verification_images(
    scale: int,
    images: list[tuple[str, np.ndarray]] | None = None,
    max_lr_side: int | None = MAX_LR_SIDE,
) -> list[VerificationImage]:
    """LR/HR pairs for verification; default: the held-out embedded photograph(s)."""
    if images is None:
        from edsr_tf.sample_data import EVAL_IMAGES, sample_images

        images = list(sample_images(EVAL_IMAGES).items())
    return [make_pair(n, hr, scale, max_lr_side) for n, hr in images]


#: Stems of LR files in the benchmark layouts: ``<name>_LR`` (image_SRF_<s>), ``<name>x<s>`` (LR_bicubic).
_LR_STEM = re.compile(r"(_LR|[xX][0-9]+)$")

VERIFY_DIR_LAYOUTS = (
    "a folder of HR images; a benchmark set <Set>/ with HR/ (+ LR_bicubic/X<s>/) or image_SRF_<s>/; "
    "an image_SRF_<s> folder (its *_HR files are used); or a DIV2K folder"
)


def verify_hr_files(directory: str | os.PathLike, scale: int) -> list[tuple[str, Path]]:
    """The HR image files ``--verify-dir`` names for ``scale``: ``[(name, path)]``.

    Accepts the layouts of :mod:`edsr_tf.benchmark_sets` (read with it) and a
    per-scale ``image_SRF_<s>`` folder, whose ``*_LR`` files are skipped. A folder of
    LR files alone (``*_LR``, ``*x2``) is refused: verification needs HR images.
    """
    from edsr_tf.benchmark_sets import DatasetNotFoundError, find_dataset
    from edsr_tf.images import IMAGE_SUFFIXES

    d = Path(directory)
    if not d.is_dir():
        raise ExportUsageError(f"--verify-dir {d}: not a folder")
    d = d.resolve()
    files = sorted(p for p in d.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    hr_named = [p for p in files if p.stem.endswith("_HR")]
    if hr_named:
        return [(p.stem[: -len("_HR")], p) for p in hr_named]
    try:
        div2k = {"div2k", "div2k_valid_hr", "div2k_train_hr"}
        if any(p.is_dir() and p.name.lower() in div2k for p in d.iterdir()):
            found = find_dataset(d, "div2k", scale)
        else:
            found = find_dataset(d.parent, d.name, scale)
    except DatasetNotFoundError as e:
        raise ExportUsageError(f"--verify-dir {d}: {e}; expected {VERIFY_DIR_LAYOUTS}") from None
    pairs = found.pairs
    if found.layout == "hr_only" and all(_LR_STEM.search(p.hr.stem) for p in pairs):
        shown = ", ".join(p.hr.name for p in pairs[:3]) + (", ..." if len(pairs) > 3 else "")
        raise ExportUsageError(
            f"--verify-dir {d}: holds LR images ({shown}); verification needs HR images: {VERIFY_DIR_LAYOUTS}"
        )
    return [(p.name, p.hr) for p in pairs]


def tile_images(images: list[VerificationImage], tile: tuple[int, int], scale: int) -> list[VerificationImage]:
    """Top-left ``tile``-sized LR crops (edge-padded if smaller) and their HR crops."""
    th, tw = tile
    out = []
    for im in images:
        lr, hr = im.lr, im.hr
        ph, pw = max(0, th - lr.shape[0]), max(0, tw - lr.shape[1])
        if ph or pw:
            lr = np.pad(lr, ((0, ph), (0, pw), (0, 0)), mode="edge")
            hr = np.pad(hr, ((0, ph * scale), (0, pw * scale), (0, 0)), mode="edge")
        out.append(
            VerificationImage(f"{im.name}_tile", lr[:th, :tw].copy(), hr[: th * scale, : tw * scale].copy())
        )
    return out


class KerasRunner:
    """The reference: the Keras model (clipped to [0, 255]) in a compiled tf.function."""

    runtime = "keras"

    def __init__(self, model: keras.Model):
        import tensorflow as tf

        self.model = model
        self._fn = tf.function(
            lambda x: tf.clip_by_value(model(x, training=False), 0.0, 255.0), reduce_retracing=True
        )
        self._cache: dict[tuple, np.ndarray] = {}

    def run(self, images: np.ndarray) -> np.ndarray:
        return self._fn(np.asarray(images, np.float32)).numpy()

    def reference(self, image: VerificationImage) -> np.ndarray:
        """Cached Keras output for one verification image, ``[sH, sW, 3]``."""
        key = (image.name, image.lr.shape)
        if key not in self._cache:
            self._cache[key] = self.run(image.lr[None].astype(np.float32))[0]
        return self._cache[key]


def measure_latency(runner: Runner, images: np.ndarray, runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``runner.run(images)`` in milliseconds."""
    for _ in range(warmup):
        runner.run(images)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        runner.run(images)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def verify_runner(
    runner: Runner,
    reference: KerasRunner,
    images: list[VerificationImage],
    scale: int,
    *,
    tolerance: float | None = FP32_TOLERANCE,
    latency_runs: int = 5,
    label: str = "export",
) -> dict:
    """Runs ``runner`` on ``images``; returns parity, PSNR and latency figures.

    Never raises for a bad result: ``record["passed"]`` is False and ``record["failure"]``
    says what failed and by how much when the output shape is wrong, not finite, or
    (``tolerance`` set: fp32 exports) differs from Keras by more than ``tolerance``.
    The caller leaves a failing artifact out of the export and reports it.
    """
    max_diff, mean_diffs, psnrs, ref_psnrs = 0.0, [], [], []
    failure = None
    for im in images:
        out = np.asarray(runner.run(im.lr[None].astype(np.float32)))
        ref = reference.reference(im)
        if out.shape != (1,) + ref.shape:
            failure = (f"output shape {list(out.shape)} for input {list(im.lr.shape)}, "
                       f"expected {[1, *ref.shape]}")
            break
        out = out[0]
        if not np.all(np.isfinite(out)):
            failure = f"non-finite values in the output for {im.name}"
            break
        diff = np.abs(out.astype(np.float64) - ref)
        max_diff = max(max_diff, float(diff.max()))
        mean_diffs.append(float(diff.mean()))
        psnrs.append(evaluate_pair(out, im.hr, scale, with_ssim=False)["psnr"])
        ref_psnrs.append(evaluate_pair(ref, im.hr, scale, with_ssim=False)["psnr"])
    record = {
        "runtime": runner.runtime,
        "max_abs_diff": None,
        "mean_abs_diff": None,
        "psnr_db": None,
        "keras_psnr_db": None,
        "psnr_drop_db": None,
        "tolerance": tolerance,
        "verified_on": [f"{im.name} {im.lr.shape[1]}x{im.lr.shape[0]}" for im in images],
    }
    if failure is None:
        export_psnr = float(np.mean(psnrs))
        keras_psnr = float(np.mean(ref_psnrs))
        record.update({
            "max_abs_diff": max_diff,
            "mean_abs_diff": float(np.mean(mean_diffs)),
            "psnr_db": export_psnr,
            "keras_psnr_db": keras_psnr,
            "psnr_drop_db": keras_psnr - export_psnr,
        })
        if tolerance is not None and not max_diff <= tolerance:
            failure = (f"max |export - keras| = {max_diff:.4g} on [0,255] exceeds the tolerance "
                       f"{tolerance:g}; the export diverges from the Keras model")
    record["passed"] = failure is None
    if failure is not None:
        record["failure"] = failure
        return record
    if latency_runs > 0:
        x = images[0].lr[None].astype(np.float32)
        record["latency_ms"] = measure_latency(runner, x, runs=latency_runs)
        record["latency_input"] = list(x.shape)
    return record


def png_header(width: int, height: int) -> bytes:
    """The first 33 bytes of a PNG (signature + IHDR) declaring ``width`` x ``height``, no data."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


#: Largest --max-pixels for which the export also checks the tensor signatures' limit
#: (the check sends a uint8 tensor of max_pixels + 1 pixels).
_TENSOR_LIMIT_CHECK_MAX = 1 << 24


def check_input_limit(runner, max_pixels: int) -> list[str]:
    """Checks that the signatures refuse an input of ``max_pixels + 1`` LR pixels.

    ``serving_bytes`` gets a PNG header alone (no pixel data) declaring the size: it
    must be refused from the header, before decoding. ``serving_uint8`` gets a
    1 x 1 x (max_pixels + 1) tensor (when that is at most 48 MB).
    """
    import tensorflow as tf

    from edsr_tf.export.savedmodel import LIMIT_TEXT

    checks = []
    width = min(max_pixels + 1, 2**31 - 1)
    height = -(-(max_pixels + 1) // width)
    probes = [("serving_bytes", f"PNG header {width}x{height}",
               lambda: runner.run_bytes([png_header(width, height)]))]
    if max_pixels < _TENSOR_LIMIT_CHECK_MAX:
        probes.append(("serving_uint8", f"uint8 [1, 1, {max_pixels + 1}, 3]",
                       lambda: runner.run_uint8(np.zeros((1, 1, max_pixels + 1, 3), np.uint8), "serving_uint8")))
    for sig, what, call in probes:
        try:
            call()
        except tf.errors.InvalidArgumentError as e:
            if LIMIT_TEXT not in str(e):
                raise VerificationError(
                    f"SavedModel signature {sig}: {what} past --max_pixels {max_pixels} failed with another "
                    f"error: {first_line(e)}"
                ) from None
        else:
            raise VerificationError(
                f"SavedModel signature {sig} accepted {what}, past --max_pixels {max_pixels}")
        checks.append(f"{sig}: {what} (> max_pixels {max_pixels}) refused")
    return checks


def check_serving_metadata(runner, scale: int, max_pixels: int | None = None) -> list[str]:
    """Checks the ``scale`` (and ``max_pixels``) recorded in a serving SavedModel."""
    meta = runner.metadata
    want = {"scale": int(scale)} | ({"max_pixels": int(max_pixels)} if max_pixels is not None else {})
    got = {k: meta.get(k) for k in want}
    if got != want:
        raise VerificationError(f"SavedModel metadata {got} does not match the export's {want}")
    return ["metadata: " + ", ".join(f"{k} {v}" for k, v in want.items())]


def check_serving_signatures(runner, image: VerificationImage, max_pixels: int | None = None,
                             scale: int | None = None) -> list[str]:
    """Checks the uint8 and bytes signatures of a serving SavedModel against ``predict_float``.

    ``serving_default`` (float in) and ``serving_uint8`` must both equal the rounded
    float output, and ``serving_bytes`` must return a PNG that decodes to it. With
    ``max_pixels``, inputs past it must be refused (:func:`check_input_limit`). With
    ``scale``, the recorded metadata must match (:func:`check_serving_metadata`).
    """
    from PIL import Image

    checks = check_serving_metadata(runner, scale, max_pixels) if scale is not None else []
    x = image.lr[None]
    expected = quantize(runner.run(x.astype(np.float32)))
    for sig, inp in (("serving_default", x.astype(np.float32)), ("serving_uint8", x)):
        got = runner.run_uint8(inp, sig)
        if got.dtype != np.uint8 or got.shape != expected.shape or not np.array_equal(got, expected):
            bad = np.abs(got.astype(int) - expected.astype(int)).max() if got.shape == expected.shape else "-"
            raise VerificationError(
                f"SavedModel signature {sig}: uint8 output {got.dtype} {list(got.shape)} does not equal "
                f"the rounded float output (max diff {bad})"
            )
        checks.append(f"{sig}: uint8 {list(got.shape)} == round(predict_float)")
    buf = io.BytesIO()
    Image.fromarray(image.lr).save(buf, format="PNG")
    (png,) = runner.run_bytes([buf.getvalue()])
    if not png.startswith(b"\x89PNG"):
        raise VerificationError("SavedModel signature serving_bytes did not return PNG bytes")
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if not np.array_equal(decoded, expected[0]):
        raise VerificationError("SavedModel signature serving_bytes: decoded PNG differs from serving_uint8")
    checks.append(f"serving_bytes: PNG {decoded.shape[1]}x{decoded.shape[0]} == serving_uint8")
    if max_pixels is not None:
        checks += check_input_limit(runner, max_pixels)
    return checks

