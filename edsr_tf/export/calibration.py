"""Calibration data for int8 exports: real image patches, shared by TFLite and ONNX."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edsr_tf.export.common import ExportError, ExportUsageError
from edsr_tf.images import IMAGE_SUFFIXES, ImageReadError, read_image
from edsr_tf.metrics import quantize


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 RGB ``[H, W, 3]`` (16-bit reduced, alpha dropped)."""
    try:
        img = read_image(path)
    except ImageReadError as e:
        raise ExportError(str(e)) from None
    return np.ascontiguousarray(quantize(img.rgb_float255()))


def load_images(directory: str | os.PathLike, flag: str = "--calibration-dir") -> list[tuple[str, np.ndarray]]:
    """All images in ``directory`` (sorted by name) as (name, uint8 RGB)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExportUsageError(f"{flag} {directory}: not a folder")
    files = sorted(
        p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise ExportUsageError(f"{flag} {directory}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return [(p.stem, read_rgb(p)) for p in files]


def default_images() -> list[tuple[str, np.ndarray]]:
    """The embedded training photographs (scikit-image), read offline."""
    from edsr_tf.sample_data import TRAIN_IMAGES, sample_images

    return list(sample_images(TRAIN_IMAGES).items())


def calibration_patches(
    directory: str | os.PathLike | None = None,
    *,
    num_patches: int = 32,
    patch_size: int | tuple[int, int] = 64,
    seed: int = 0,
) -> list[np.ndarray]:
    """Random crops (float32 ``[1, ph, pw, 3]`` in [0, 255]) of real images.

    The images are used as model *inputs*, as an app would feed them. Patches are
    spread evenly over the images. The first patch gets one pure black and one pure
    white pixel so that calibration always sees the full input range: a uint8-input
    int8 model then takes raw pixel values (scale 1, zero point 0).
    """
    images = load_images(directory) if directory is not None else default_images()
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    rng = np.random.default_rng(seed)
    patches = []
    for i in range(num_patches):
        _, img = images[i % len(images)]
        h, w = img.shape[:2]
        if h < ph or w < pw:  # small image: edge-pad to the patch size
            img = np.pad(img, ((0, max(0, ph - h)), (0, max(0, pw - w)), (0, 0)), mode="edge")
            h, w = img.shape[:2]
        y = int(rng.integers(0, h - ph + 1))
        x = int(rng.integers(0, w - pw + 1))
        patches.append(img[None, y : y + ph, x : x + pw].astype(np.float32))
    patches[0] = patches[0].copy()
    patches[0][0, 0, 0, :] = 0.0
    patches[0][0, -1, -1, :] = 255.0
    return patches
