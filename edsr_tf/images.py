"""Image files in and out: PNG (8/16-bit), JPEG, BMP, WebP; grayscale and alpha kept.

Pillow decodes everything except 16-bit RGB(A) PNGs, which it silently reduces
to 8 bits; those (and 16-bit grayscale PNGs, for one code path) go through
``tf.io.decode_png``/``encode_png``, which keep all 16 bits. TensorFlow is
imported lazily so 8-bit work does not pay for it.

Writes are atomic: the encoded bytes go to a temporary file in the destination
folder that is renamed into place, so an interrupted run never leaves a
half-written image (or JSON) behind.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from edsr_tf.fileio import atomic_write_bytes  # noqa: F401  (re-exported)

#: File suffixes read by :func:`read_image` (and looked for in input folders).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: Pillow format name per suffix, for writing.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An input image is missing, unreadable, truncated or of an unsupported kind."""


class ImageWriteError(ValueError):
    """An image cannot be written in the requested format (e.g. 16-bit JPEG)."""


@dataclasses.dataclass
class LoadedImage:
    """A decoded image, normalised for the model.

    ``rgb`` is always ``[H, W, 3]`` (a grayscale image is replicated into three
    channels so any RGB model accepts it; ``grayscale`` remembers to write one
    channel back). ``rgb`` and ``alpha`` share one dtype: uint8 for 8-bit files,
    uint16 for 16-bit PNGs.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    grayscale: bool
    bit_depth: int
    path: Path
    format: str = "PNG"

    @property
    def max_value(self) -> int:
        """Largest code value: 255 or 65535."""
        return 255 if self.bit_depth == 8 else 65535

    def rgb_float255(self) -> np.ndarray:
        """``rgb`` as float32 in [0, 255] (16-bit values divided by 257), the model's range."""
        x = self.rgb.astype(np.float32)
        if self.bit_depth == 16:
            x /= 257.0
        return x

    def channels(self) -> np.ndarray:
        """The image as stored: ``[H, W]`` grayscale or ``[H, W, 3]`` RGB (no alpha)."""
        return self.rgb[..., 0] if self.grayscale else self.rgb


def _png_bit_depth(data: bytes) -> int | None:
    # IHDR is always the first chunk: signature(8) len(4) 'IHDR'(4) w(4) h(4) depth(1).
    if data[:8] == _PNG_SIGNATURE and len(data) > 24 and data[12:16] == b"IHDR":
        return data[24]
    return None


def _read_png16(path: Path, data: bytes) -> LoadedImage:
    import tensorflow as tf

    try:
        arr = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as e:
        msg = getattr(e, "message", str(e)).strip().splitlines()[0]
        raise ImageReadError(f"{path}: not a readable 16-bit PNG ({msg})") from None
    c = arr.shape[-1]
    gray = c in (1, 2)
    rgb = np.repeat(arr[..., :1], 3, axis=-1) if gray else arr[..., :3]
    alpha = arr[..., -1] if c in (2, 4) else None
    return LoadedImage(
        np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha),
        gray, 16, path, "PNG",
    )


def _from_pil(path: Path, im) -> LoadedImage:
    fmt = im.format or "PNG"
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
    elif mode in ("1",):
        im = im.convert("L")
    elif mode in ("La",):
        im = im.convert("LA")
    elif mode in ("RGBa",):
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(f"{path}: 32-bit integer image is not supported (expected 8/16-bit)")
        gray16 = arr.astype(np.uint16)
        return LoadedImage(np.repeat(gray16[..., None], 3, axis=-1), None, True, 16, path, fmt)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(
            f"{path}: unsupported pixel mode {mode!r} (expected grayscale, RGB or RGBA, 8 or 16 bits)"
        )
    arr = np.asarray(im, dtype=np.uint8)
    if mode in ("L", "LA"):
        g = arr if mode == "L" else arr[..., 0]
        rgb = np.repeat(g[..., None], 3, axis=-1)
        alpha = arr[..., 1] if mode == "LA" else None
        gray = True
    else:
        rgb = arr[..., :3]
        alpha = arr[..., 3] if mode == "RGBA" else None
        gray = False
    return LoadedImage(
        np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha),
        gray, 8, path, fmt,
    )


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Reads an image file fully (truncated data is an error, never silently padded).

    JPEG EXIF orientation is applied, since the written output carries no EXIF.
    Raises :class:`ImageReadError` naming ``path`` for anything unreadable.
    """
    from PIL import Image, ImageFile, ImageOps

    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageReadError(f"{path}: empty file")
    if _png_bit_depth(data) == 16:
        return _read_png16(path, data)
    # Pillow pads truncated files with grey when this global is set; insist on errors.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt = im.format
            im = ImageOps.exif_transpose(im) or im
            im.format = fmt
            return _from_pil(path, im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if isinstance(e, Image.UnidentifiedImageError):
            reason = "not an image file Pillow can decode (expected PNG, JPEG, BMP or WebP)"
        raise ImageReadError(f"{path}: unreadable or truncated image ({reason})") from None


def encode_image(
    image: np.ndarray, suffix: str = ".png", *, alpha: np.ndarray | None = None, quality: int = 95
) -> bytes:
    """Encodes uint8/uint16 ``[H,W]``, ``[H,W,1]`` or ``[H,W,3]`` (+ optional ``[H,W]`` alpha).

    16-bit data can only be written as PNG; JPEG has no alpha channel.
    """
    suffix = suffix.lower()
    if suffix not in _FORMATS:
        raise ImageWriteError(f"unsupported output suffix {suffix!r}: expected one of {sorted(_FORMATS)}")
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ImageWriteError(f"expected an [H,W] or [H,W,3] image, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"expected uint8 or uint16 pixels, got {image.dtype}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != image.shape[:2] or alpha.dtype != image.dtype:
            raise ImageWriteError(
                f"alpha must be {image.shape[:2]} {image.dtype}, got {alpha.shape} {alpha.dtype}"
            )
    planes = image[..., None] if image.ndim == 2 else image
    if alpha is not None:
        planes = np.concatenate([planes, alpha[..., None]], axis=-1)
    if image.dtype == np.uint16:
        if suffix != ".png":
            raise ImageWriteError(f"16-bit images can only be written as PNG, not {suffix}")
        import tensorflow as tf

        return tf.io.encode_png(np.ascontiguousarray(planes)).numpy()
    from PIL import Image

    fmt = _FORMATS[suffix]
    if fmt == "JPEG" and alpha is not None:
        raise ImageWriteError("JPEG has no alpha channel: write the image as PNG or WebP")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[-1]]
    im = Image.fromarray(np.ascontiguousarray(planes if mode != "L" else planes[..., 0]), mode)
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and quality >= 100:
        kwargs = {"lossless": True}
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    quality: int = 95,
) -> Path:
    """Encodes ``image`` in the format of ``path``'s suffix and writes it atomically.

    ``image``: uint8 or uint16, ``[H,W]``/``[H,W,1]`` (grayscale) or ``[H,W,3]``;
    ``alpha``: optional ``[H,W]`` of the same dtype. Returns ``path``.
    """
    path = Path(path)
    try:
        data = encode_image(image, path.suffix, alpha=alpha, quality=quality)
    except ImageWriteError as e:
        raise ImageWriteError(f"{path}: {e}") from None
    return atomic_write_bytes(path, data)


def quantize_to(img: np.ndarray, bit_depth: int, *, rows_per_chunk: int = 256) -> np.ndarray:
    """Float image in [0, 255] → uint8, or uint16 (×257) for ``bit_depth`` 16.

    Clipped, then rounded half away from zero as MATLAB's ``uint8(x)``: for 8 bits
    this equals :func:`edsr_tf.metrics.quantize`. Works through row blocks so an
    8K float image needs no full-size float64 temporaries (upscaler peak memory).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    x = np.asarray(img)
    dtype, hi, mul = (np.uint8, 255.0, 1.0) if bit_depth == 8 else (np.uint16, 65535.0, 257.0)
    out = np.empty(x.shape, dtype)
    for r in range(0, max(x.shape[0], 1), rows_per_chunk):
        block = x[r : r + rows_per_chunk].astype(np.float64)  # as metrics.quantize
        if mul != 1.0:
            block *= mul
        np.clip(block, 0.0, hi, out=block)
        block += 0.5
        np.floor(block, out=block)
        out[r : r + rows_per_chunk] = block
    return out
