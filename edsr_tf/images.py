"""Image files in and out: PNG (8/16-bit), JPEG, BMP, WebP; grayscale and alpha kept.

Pillow decodes everything except 16-bit RGB(A) PNGs, which it silently reduces
to 8 bits; those (and 16-bit grayscale PNGs, for one code path) go through
``tf.io.decode_png``/``encode_png``, which keep all 16 bits. TensorFlow is
imported lazily so 8-bit work does not pay for it.

Only still PNG, JPEG, BMP and WebP images are read: GIF, TIFF and the other formats
Pillow knows, and animated PNG/WebP, are refused with an error naming the file
(:data:`OTHER_IMAGE_SUFFIXES` lists what folder scans skip with a notice).

Decompression bombs: every reader (:func:`read_image`, its 16-bit path, and the
training data cache's decoder, :mod:`edsr_tf.data.cache`) refuses an image of
more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, 100 Mpx)
from the size in its header, before decoding anything (:func:`header_size`). Only the
header is read before that check (:func:`read_header`); the file is then read whole only
if its size fits the image it claims (:func:`max_file_bytes`), and a JPEG too short to
hold its frame (:func:`jpeg_min_bytes`: a truncated file that libjpeg would pad with grey)
is refused, so a tiny or sparse file never costs more than the image it could really hold.

Writes are atomic: the encoded bytes go to a temporary file in the destination
folder that is renamed into place, so an interrupted run never leaves a
half-written image (or JSON) behind.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import stat
import struct
import threading
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from edsr_tf.errors import first_line
from edsr_tf.fileio import atomic_write
from edsr_tf.fileio import atomic_write_bytes  # noqa: F401  (re-exported)

#: File suffixes read by :func:`read_image` (and looked for in input folders).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: Suffixes of image formats that are *not* read (GIF, TIFF, ...): a folder scan skips these
#: with a notice instead of silently (other files, e.g. ``.txt``, are ignored without one).
OTHER_IMAGE_SUFFIXES: tuple[str, ...] = (
    ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".heic", ".heif",
    ".avif", ".jp2", ".jxl", ".psd", ".pcx", ".dds", ".exr", ".hdr", ".apng",
)

#: Largest image (width × height) any reader decodes unless told otherwise (``max_pixels``,
#: ``--max-pixels``). 100 Mpx is above every common camera (61 Mpx full frame; 8K video is
#: 33 Mpx; DIV2K images are under 3 Mpx) and keeps the decoded image under 0.6 GB (16-bit RGB)
#: and the upscaler's float32 copy at 1.2 GB. A 420 KB PNG can claim 144 Mpx (2.9 GB
#: decoded): such a file is refused from its header, before anything is decoded.
DEFAULT_MAX_PIXELS = 100_000_000

#: Pillow format names read by :func:`read_image` (MPO: a camera JPEG with extra pictures;
#: its first picture, the main image, is read).
_READ_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "WEBP": "WebP"}

#: Pillow format name per suffix, for writing.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An input image is missing, unreadable, truncated or of an unsupported kind."""


class ImageTooLargeError(ImageReadError):
    """An image's header claims more pixels than the reader's ``max_pixels`` (a decompression bomb?)."""


class ImageWriteError(ValueError):
    """An image cannot be written in the requested format (e.g. 16-bit JPEG)."""


def format_megapixels(pixels: int) -> str:
    """``100 Mpx``, ``143.9 Mpx``, ``0.0016 Mpx``: pixels in megapixels, short."""
    mpx = pixels / 1e6
    if mpx == int(mpx):
        return f"{int(mpx)} Mpx"
    return f"{mpx:.1f} Mpx" if mpx >= 1 else f"{mpx:.2g} Mpx"


def resolve_max_pixels(max_pixels: int | None) -> int | None:
    """``None`` → :data:`DEFAULT_MAX_PIXELS`; ``0`` → no limit (``None``); else the value (>= 0)."""
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    max_pixels = int(max_pixels)
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0 (0 = no limit), got {max_pixels}")
    return max_pixels or None


def check_pixels(path: str | os.PathLike, width: int, height: int, max_pixels: int | None) -> None:
    """Raises :class:`ImageTooLargeError` naming ``path`` when ``width × height`` is over the limit.

    ``max_pixels``: as :func:`resolve_max_pixels` (None = the default, 0 = no limit).
    """
    limit = resolve_max_pixels(max_pixels)
    pixels = int(width) * int(height)
    if limit is not None and pixels > limit:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {format_megapixels(pixels)} is over the "
            f"{format_megapixels(limit)} limit (a decompression bomb? raise the limit with "
            "--max-pixels / max_pixels= if the image is genuine)"
        )


def _u16le(b: bytes, i: int) -> int:
    return b[i] | b[i + 1] << 8


def jpeg_min_bytes(width: int, height: int) -> int:
    """The fewest bytes a complete JPEG of ``width × height`` can have.

    Every 8×8 block of the full-resolution component costs at least one bit of entropy-coded
    data (a Huffman code is at least one bit long), so a file holds at most 512 pixels per
    byte. A shorter file is truncated: libjpeg would pad it with grey at the full size (a
    630-byte file claiming 9000×9000 decodes to 81 Mpx). Arithmetic-coded JPEGs could in
    theory be shorter; they are all but unused, and are refused like a truncated file.
    """
    return -(-width // 8) * -(-height // 8) // 8


#: Bytes allowed in an image file beyond its pixels (metadata: EXIF, ICC profiles, text).
FILE_SLACK_BYTES = 64 << 20


def max_file_bytes(width: int, height: int) -> int:
    """The largest file edsr-tf reads for a ``width × height`` image (:data:`FILE_SLACK_BYTES`
    more than an uncompressed 16-bit RGBA PNG of it, the largest encoding it can have).

    Files are read whole before decoding, so this bounds what a file that lies about its
    size (a sparse 4 GiB file behind a small header) can cost.
    """
    return 9 * width * height + FILE_SLACK_BYTES


def _jpeg_size_at(read, limit: int) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker of a JPEG (the main image), else None.

    ``read(offset, n)`` returns up to ``n`` bytes at ``offset`` (bytes or a file alike):
    segments are skipped by their length, so only marker headers are read. ``limit``:
    the offset past which the frame header is not looked for.
    """
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    i = 2
    while i < limit:
        head = read(i, 2)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        if head[1] == 0xFF:  # fill byte
            i += 1
            continue
        marker = head[1]
        i += 2
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # EOI / SOS before any SOF
            return None
        seg = read(i, 7 if marker in sof else 2)
        if len(seg) < 2:
            return None
        if marker in sof:
            if len(seg) < 7:
                return None
            height, width = seg[3] << 8 | seg[4], seg[5] << 8 | seg[6]
            return (width, height) if width and height else None
        i += seg[0] << 8 | seg[1]
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker of JPEG bytes (the main image), else None."""
    return _jpeg_size_at(lambda i, n: data[i : i + n], len(data))


def header_size(data: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` from the header of PNG, JPEG, BMP, WebP or GIF bytes.

    Reads a few header bytes only (JPEG: the markers up to the first frame header), so it
    is safe on any input; ``None`` when the bytes are none of these formats or too short.
    The width/height are the stored ones (before any JPEG EXIF rotation).
    :func:`header_size_tf` reads the same fields in-graph.
    """
    b = bytes(data[:32])
    try:
        if b[:8] == _PNG_SIGNATURE and b[12:16] == b"IHDR":
            width, height = struct.unpack(">II", b[16:24])
            return "PNG", width, height
        if b[:2] == b"\xff\xd8":
            size = _jpeg_size(data)
            return None if size is None else ("JPEG", *size)
        if b[:6] in (b"GIF87a", b"GIF89a"):
            return "GIF", _u16le(b, 6), _u16le(b, 8)
        if b[:2] == b"BM":
            if struct.unpack("<I", b[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
                return "BMP", _u16le(b, 18), _u16le(b, 20)
            width, height = struct.unpack("<ii", b[18:26])
            return "BMP", abs(width), abs(height)
        if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
            chunk = b[12:16]
            if chunk == b"VP8X":
                return ("WEBP", 1 + (b[24] | b[25] << 8 | b[26] << 16),
                        1 + (b[27] | b[28] << 8 | b[29] << 16))
            if chunk == b"VP8L":
                return ("WEBP", 1 + (b[21] | (b[22] & 0x3F) << 8),
                        1 + (b[22] >> 6 | b[23] << 2 | (b[24] & 0x0F) << 10))
            if chunk == b"VP8 ":
                return "WEBP", _u16le(b, 26) & 0x3FFF, _u16le(b, 28) & 0x3FFF
    except (IndexError, struct.error):
        return None
    return None


#: The formats :func:`header_size_tf` tells apart; its format code is the index here (0: other).
HEADER_FORMATS: tuple[str, ...] = ("", "PNG", "JPEG", "BMP", "GIF", "WEBP")


def header_size_tf(data: Any) -> tuple[Any, Any, Any]:
    """:func:`header_size` in-graph: ``(format, width, height)`` int64 scalars from a string tensor.

    The same fields read with TF ops, so a ``tf.data`` pipeline or a SavedModel signature can
    check the size before decoding. ``format`` indexes :data:`HEADER_FORMATS` (0 with width =
    height = 0 for other bytes); a JPEG's size is ``tf.io.extract_jpeg_shape``'s (which fails
    on a JPEG without a frame header, where :func:`header_size` returns None).
    """
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32]), 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def u16le(i):
        return b[i] + 256 * b[i + 1]

    def u24le(i):
        return b[i] + 256 * b[i + 1] + 65536 * b[i + 2]

    def u32be(i):
        return ((b[i] * 256 + b[i + 1]) * 256 + b[i + 2]) * 256 + b[i + 3]

    def i32le_abs(i):  # BMP: a negative height means top-down rows
        v = b[i] + 256 * b[i + 1] + 65536 * b[i + 2] + 16777216 * b[i + 3]
        return tf.abs(tf.where(v >= 2**31, v - 2**32, v))

    def starts(sig: bytes, at: int = 0):
        return tf.reduce_all(tf.equal(b[at : at + len(sig)], tf.constant(list(sig), tf.int64)))

    code = {name: i for i, name in enumerate(HEADER_FORMATS)}
    is_png = starts(_PNG_SIGNATURE) & starts(b"IHDR", 12)
    is_bmp = starts(b"BM")
    is_webp = starts(b"RIFF") & starts(b"WEBP", 8)
    is_jpeg = starts(b"\xff\xd8")
    cases = [  # (condition, format, width, height), first match wins, as in header_size
        (is_png, "PNG", u32be(16), u32be(20)),
        (starts(b"GIF87a") | starts(b"GIF89a"), "GIF", u16le(6), u16le(8)),
        (is_bmp & tf.equal(u16le(14), 12), "BMP", u16le(18), u16le(20)),  # OS/2 BITMAPCOREHEADER
        (is_bmp, "BMP", i32le_abs(18), i32le_abs(22)),
        (is_webp & starts(b"VP8X", 12), "WEBP", 1 + u24le(24), 1 + u24le(27)),
        (is_webp & starts(b"VP8L", 12), "WEBP",
         1 + b[21] + 256 * (b[22] % 64), 1 + b[22] // 64 + 4 * b[23] + 1024 * (b[24] % 16)),
        (is_webp & starts(b"VP8 ", 12), "WEBP", u16le(26) % 16384, u16le(28) % 16384),
    ]
    found = tf.cond(  # extract_jpeg_shape fails on other bytes: run it on JPEGs only
        is_jpeg,
        lambda: tf.concat([[code["JPEG"]], tf.cast(tf.io.extract_jpeg_shape(data)[1::-1], tf.int64)], 0),
        lambda: tf.zeros([3], tf.int64),
    )
    for cond, name, w, h in reversed(cases):
        found = tf.where(cond, tf.stack([tf.constant(code[name], tf.int64), w, h]), found)
    return found[0], found[1], found[2]


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a file's header says, without decoding it (:func:`probe_image`).

    ``width``/``height`` are as :func:`read_image` returns the image (JPEG EXIF rotation
    applied); ``format``: "PNG", "JPEG", "BMP" or "WebP"; ``bit_depth``: 8 or 16.
    """

    path: Path
    width: int
    height: int
    bit_depth: int
    format: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


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


#: Serialises the rare temporary raise of Pillow's own (global) bomb limit, see _pil_open.
_PIL_LIMIT_LOCK = threading.Lock()


def _pil_open(data: bytes, pixels: int):
    """Pillow's lazy ``Image.open`` of ``data``, whose header size (``pixels``) is already checked.

    Pillow warns above its own ``MAX_IMAGE_PIXELS`` (89.5 Mpx) and refuses above twice that;
    our limit replaces it, so for an image already accepted at a larger size Pillow's limit
    is lifted for the ``open`` call only (under a lock).
    """
    from PIL import Image

    buf = io.BytesIO(data)
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or pixels <= limit:
        return Image.open(buf)
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(buf)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _unsupported_format(path: Path, data: bytes) -> ImageReadError:
    """The error for bytes that are not PNG/JPEG/BMP/WebP, naming the format when Pillow knows it."""
    from PIL import Image

    kind = None
    head = header_size(data)
    if head is not None:
        kind = head[0]
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:  # Pillow's own bomb limits apply here
                kind = im.format
        except Exception:  # noqa: BLE001 - anything Pillow cannot even identify
            kind = None
    if kind is None:
        return ImageReadError(
            f"{path}: not an image file edsr-tf reads (expected PNG, JPEG, BMP or WebP)"
        )
    return ImageReadError(f"{path}: {kind} images are not supported (expected PNG, JPEG, BMP or WebP)")


def _probe(path: Path, data: bytes, max_pixels: int | None):
    """(ImageInfo, lazily opened Pillow image or None for the 16-bit PNG path); checks the limit."""
    from PIL import Image, ImageFile

    head = header_size(data)
    if head is None and (data[:8] == _PNG_SIGNATURE or data[:2] == b"\xff\xd8"):
        kind = "PNG" if data[:1] == b"\x89" else "JPEG"
        raise ImageReadError(f"{path}: unreadable or truncated image ({kind} without a valid header)")
    if head is None or head[0] not in _READ_FORMATS:
        raise _unsupported_format(path, data)
    fmt, width, height = head
    check_pixels(path, width, height, max_pixels)  # before Pillow allocates anything
    if fmt == "PNG" and _png_bit_depth(data) == 16:
        if _png_is_animated(data):
            raise ImageReadError(f"{path}: animated PNG is not supported (only still images)")
        return ImageInfo(path, width, height, 16, "PNG"), None
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # Pillow pads truncated files with grey when set
    try:
        im = _pil_open(data, width * height)
    except Image.DecompressionBombError as e:  # a frame larger than the header's size
        raise ImageTooLargeError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if isinstance(e, Image.UnidentifiedImageError):
            reason = "Pillow cannot decode it"
        raise ImageReadError(f"{path}: unreadable or truncated image ({reason})") from None
    kind = _READ_FORMATS.get(im.format or "")
    if kind is None:
        im.close()
        raise ImageReadError(
            f"{path}: {im.format} images are not supported (expected PNG, JPEG, BMP or WebP)"
        )
    if kind in ("PNG", "WebP") and getattr(im, "n_frames", 1) > 1:
        n = im.n_frames
        im.close()
        raise ImageReadError(f"{path}: animated {kind} ({n} frames) is not supported (only still images)")
    w, h = im.size
    check_pixels(path, w, h, max_pixels)
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: read_image decides
        orientation = 1
    if orientation in (5, 6, 7, 8):  # exif_transpose turns these by 90 degrees
        w, h = h, w
    depth = 16 if im.mode.startswith("I;16") or im.mode == "I" else 8
    return ImageInfo(path, w, h, depth, kind), im


def _png_is_animated(data: bytes) -> bool:
    """Whether a PNG has an ``acTL`` chunk (APNG) before its image data."""
    i = 8
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        if kind == b"acTL":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        i += 12 + length
    return False


#: Bytes read from a file's start before anything else (every header but a JPEG's is in them).
_HEAD_BYTES = 64 << 10
#: How far into a JPEG its frame header is looked for (EXIF, ICC and XMP segments come first).
_JPEG_HEADER_LIMIT = 16 << 20


def check_file_size(path: str | os.PathLike, fmt: str, width: int, height: int, size: int) -> None:
    """Raises :class:`ImageReadError` naming ``path`` when a file of ``size`` bytes cannot be the
    ``width × height`` image its header claims: larger than :func:`max_file_bytes`, or a JPEG
    shorter than :func:`jpeg_min_bytes` (truncated: it would decode as grey padding)."""
    if size > max_file_bytes(width, height):
        raise ImageReadError(
            f"{path}: a file of {size} bytes is larger than any {width}x{height} image needs "
            f"(at most {max_file_bytes(width, height)}); refused unread"
        )
    if fmt == "JPEG" and size < jpeg_min_bytes(width, height):
        raise ImageReadError(
            f"{path}: unreadable or truncated image ({size} bytes cannot hold a {width}x{height} "
            f"JPEG, which needs at least {jpeg_min_bytes(width, height)})"
        )


def _read_bytes(path: Path, max_pixels: int | None) -> bytes:
    """The file's bytes, read whole only once its header passed :func:`check_pixels` and its
    size :func:`check_file_size`; an unrecognised header gives its first bytes only (enough
    for :func:`_probe` to name the format)."""
    try:
        st = path.stat()
    except OSError as e:  # ENOENT, but also a symlink loop or a folder without search permission
        why = "no such file" if e.errno == errno.ENOENT else f"cannot read ({e.strerror or e})"
        raise ImageReadError(f"{path}: {why}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD_BYTES)
            if not head:
                raise ImageReadError(f"{path}: empty file")
            found = header_size(head)
            if found is None and head[:2] == b"\xff\xd8" and size > len(head):
                def read(offset: int, n: int) -> bytes:
                    f.seek(offset)
                    return f.read(n)

                jpeg = _jpeg_size_at(read, min(size, _JPEG_HEADER_LIMIT))
                found = None if jpeg is None else ("JPEG", *jpeg)
            if found is None:
                return head
            fmt, width, height = found
            check_pixels(path, width, height, max_pixels)  # before reading the rest
            check_file_size(path, fmt, width, height, size)
            f.seek(len(head))
            return head + f.read(size - len(head))  # not past the size checked (a growing file)
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None


def probe_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageInfo:
    """Size, bit depth and format of an image file from its header, without decoding it.

    Raises :class:`ImageReadError` for what :func:`read_image` would refuse before decoding
    (missing, not PNG/JPEG/BMP/WebP, animated) and :class:`ImageTooLargeError` past
    ``max_pixels`` (None: :data:`DEFAULT_MAX_PIXELS`; 0: no limit).
    """
    path = Path(path)
    info, im = _probe(path, _read_bytes(path, max_pixels), max_pixels)
    if im is not None:
        im.close()
    return info


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
        raise ImageReadError(f"{path}: not a readable 16-bit PNG ({first_line(e)})") from None
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


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> LoadedImage:
    """Reads an image file fully (truncated data is an error, never silently padded).

    Still PNG (8/16-bit), JPEG, BMP and WebP only. JPEG EXIF orientation is applied,
    since the written output carries no EXIF. An image of more than ``max_pixels``
    pixels (None: :data:`DEFAULT_MAX_PIXELS`; 0: no limit) is refused from its header,
    before decoding. Raises :class:`ImageReadError` naming ``path`` for anything unreadable.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    data = _read_bytes(path, max_pixels)
    _, im = _probe(path, data, max_pixels)
    if im is None:
        return _read_png16(path, data)
    try:
        with im:
            im.load()
            fmt = "JPEG" if im.format == "MPO" else im.format
            im = ImageOps.exif_transpose(im) or im
            im.format = fmt
            return _from_pil(path, im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        raise ImageReadError(f"{path}: unreadable or truncated image ({reason})") from None


def encode_image(
    image: np.ndarray, suffix: str = ".png", *, alpha: np.ndarray | None = None, quality: int = 95
) -> bytes:
    """Encodes uint8/uint16 ``[H,W]``, ``[H,W,1]`` or ``[H,W,3]`` (+ optional ``[H,W]`` alpha).

    16-bit data can only be written as PNG; JPEG has no alpha channel.
    """
    buf = io.BytesIO()
    _encoder(image, suffix, alpha=alpha, quality=quality)(buf)
    return buf.getvalue()


def _encoder(
    image: np.ndarray, suffix: str, *, alpha: np.ndarray | None = None, quality: int = 95
) -> Callable[[IO[bytes]], None]:
    """Checks ``image`` for :func:`encode_image`; returns what encodes it into a binary file.

    Encoding straight into the destination file keeps the compressed bytes out of memory
    (up to the raw size for a noisy image, twice over with ``BytesIO.getvalue``).
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

        def write_png16(f: IO[bytes]) -> None:
            f.write(tf.io.encode_png(np.ascontiguousarray(planes)).numpy())

        return write_png16
    from PIL import Image

    fmt = _FORMATS[suffix]
    if fmt == "JPEG" and alpha is not None:
        raise ImageWriteError("JPEG has no alpha channel: write the image as PNG or WebP")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[-1]]
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and quality >= 100:
        kwargs = {"lossless": True, "exact": True}  # exact: keep the colour under alpha 0 too

    def write(f: IO[bytes]) -> None:
        im = Image.fromarray(np.ascontiguousarray(planes if mode != "L" else planes[..., 0]), mode)
        im.save(f, format=fmt, **kwargs)

    return write


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
        encode = _encoder(image, path.suffix, alpha=alpha, quality=quality)
    except ImageWriteError as e:
        raise ImageWriteError(f"{path}: {e}") from None
    return atomic_write(path, encode, "wb")


def quantize_to(img: np.ndarray, bit_depth: int = 8, *, rows_per_chunk: int = 256) -> np.ndarray:
    """Image values in [0, 255] → uint8, or uint16 (×257) for ``bit_depth`` 16.

    Clipped, then rounded half away from zero as MATLAB's ``uint8(x)``: the one
    round-and-clip of the repository (:func:`edsr_tf.metrics.quantize` is this with 8
    bits; model outputs, 16-bit files scored in 8 bits, eval sets made from float
    datasets all go through it). An array already of the target dtype is returned
    unchanged; integer input is taken as values on the 0-255 scale (clipped);
    boolean or non-numeric input is a ``TypeError``. Works through row blocks so an
    8K float image needs no full-size float64 temporaries (upscaler peak memory).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    x = np.asarray(img)
    dtype, hi, mul = (np.uint8, 255.0, 1.0) if bit_depth == 8 else (np.uint16, 65535.0, 257.0)
    if x.dtype == dtype:
        return x
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"quantize: expected a float or integer image, got dtype {x.dtype}")
    if x.ndim == 0:
        return dtype(np.floor(min(max(float(x) * mul, 0.0), hi) + 0.5))
    out = np.empty(x.shape, dtype)
    for r in range(0, max(x.shape[0], 1), rows_per_chunk):
        block = x[r : r + rows_per_chunk].astype(np.float64)
        if mul != 1.0:
            block *= mul
        np.clip(block, 0.0, hi, out=block)
        block += 0.5
        np.floor(block, out=block)
        out[r : r + rows_per_chunk] = block
    return out
