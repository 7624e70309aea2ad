"""JPEG as users' photos have it: re-compression at a quality, and the quality of a JPEG file.

A leaf module (NumPy and Pillow only). :func:`jpeg_roundtrip` is the evaluation protocol for
compressed inputs (``evaluate --lr_jpeg_quality Q``: the LR is saved as a baseline JPEG at
quality Q with Pillow's defaults, 4:2:0 chroma, and read back). :func:`estimate_quality`
reads the IJG quality a JPEG was saved with from its luminance quantization table, which is
how ``upscale`` decides that an input is really compressed (and picks the JPEG-robust model).
Training degrades in-graph instead (:mod:`edsr_tf.data.degrade`, TensorFlow's libjpeg).
"""

from __future__ import annotations

import io
import os

import numpy as np

#: The IJG (libjpeg) standard luminance quantization table, natural (row-major) order: the
#: table every libjpeg-based encoder (Pillow, TensorFlow, most cameras and phones) scales by
#: the quality setting.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.int64)

#: At or below this estimated quality an input counts as compressed: the 8x8 block grid is
#: then visible enough for a model trained on clean LR to sharpen it (phones save 90-95).
COMPRESSED_QUALITY = 90


class JpegError(ValueError):
    """A bad quality value or an image that cannot be JPEG-encoded."""


def check_quality(quality: int) -> int:
    """``quality`` as an int in 1..100, else :class:`JpegError`."""
    try:
        q = int(quality)
    except (TypeError, ValueError):
        raise JpegError(f"JPEG quality must be an integer in 1..100, got {quality!r}") from None
    if not 1 <= q <= 100 or q != quality:
        raise JpegError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    return q


def ijg_table(quality: int, base: np.ndarray = IJG_LUMINANCE) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` of ``base`` (baseline: values clipped to 1..255)."""
    q = check_quality(quality)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((base * scale + 50) // 100, 1, 255)


def estimate_quality(luminance_table) -> int:
    """The IJG quality (1..100) whose scaled standard table is closest to ``luminance_table``.

    ``luminance_table``: the 64 values of a JPEG's first quantization table in natural order
    (Pillow's ``Image.quantization[0]``). Tables of other encoders get the nearest IJG
    quality, which is what matters here: how coarsely the image was quantized.
    """
    t = np.asarray(list(luminance_table), dtype=np.int64).ravel()
    if t.size != 64:
        raise JpegError(f"a JPEG quantization table has 64 values, got {t.size}")
    errors = [np.abs(ijg_table(q) - t).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def file_quality(path: str | os.PathLike) -> int | None:
    """The estimated JPEG quality of the file at ``path``, or None if it is not a JPEG.

    Reads the header only (Pillow parses the quantization tables without decoding pixels).
    Raises OSError for an unreadable file; an image of another format gives None.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "JPEG":
                return None
            tables = getattr(im, "quantization", None) or {}
    except UnidentifiedImageError:
        return None
    if 0 not in tables:
        return None
    try:
        return estimate_quality(tables[0])
    except JpegError:
        return None


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (uint8 ``[H,W]`` or ``[H,W,3]``) saved as a JPEG at ``quality`` and decoded again.

    Pillow's defaults for the rest (baseline, 4:2:0 chroma subsampling for RGB, standard
    tables), i.e. what a photo saved by most software looks like. Same shape and dtype out.
    """
    from PIL import Image

    q = check_quality(quality)
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise JpegError(f"JPEG needs a uint8 [H,W] or [H,W,3] image, got {a.dtype} {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=q)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        out = np.asarray(im.convert("L" if a.ndim == 2 else "RGB"))
    return out
