"""Decoded-image cache: each image decoded once into an ``.npy`` file, checked before every use.

Decoding a 2K PNG costs tens of milliseconds; reading the decoded array back costs about a
millisecond, so training pipelines read from here instead of decoding every epoch. Layout,
per image (``<stem>-<hash of the source>``)::

    <cache_dir>/0001-3f2a....npy    uint8 [H, W, 3], standard NumPy format (np.load works)
    <cache_dir>/0001-3f2a....json   manifest: source, its mtime_ns and size, shape, data
                                    offset/length in the .npy, CRC-32 of the array bytes

An entry is used only if its manifest matches the source's current path, mtime and size
(else *stale*) and the ``.npy`` has the recorded length and CRC-32 (else *corrupt*); otherwise
it is decoded again and rewritten, and the reason is logged. Both files are written to a
temporary name and renamed into place, data first, so an interrupted build or two processes
building the same cache never leave an entry that passes the check with wrong data.

The decoder the cached and uncached paths share lives here too: :func:`decode_rgb` (in-graph,
header checked against the pixel limit first), :func:`decode_image_file` (eager, errors name
the file) and :func:`find_unreadable`. This module imports :mod:`edsr_tf.data.sources`, never
the other way round.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edsr_tf.data.sources import DataError, DataSource, image_pairs
from edsr_tf.errors import first_line
from edsr_tf.fileio import atomic_write

log = logging.getLogger("edsr_tf.data")

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CachedImage:
    """A valid cache entry: where the raw uint8 pixels are in ``path`` and their shape."""

    path: Path
    offset: int
    shape: tuple[int, int, int]


def decode_rgb(contents: Any, max_pixels: int | None = None) -> Any:
    """In-graph decode of PNG/JPEG/BMP bytes to uint8 RGB ``[H, W, 3]`` (grey/alpha → RGB).

    The single decoder for the cached and uncached paths, so both yield identical pixels;
    16-bit PNGs are reduced to 8 bits (DIV2K and the benchmarks are 8-bit). An image whose
    header claims more than ``max_pixels`` pixels (None: :data:`edsr_tf.images.DEFAULT_MAX_PIXELS`,
    the limit of every edsr-tf reader; 0: none) fails with ``InvalidArgumentError`` before
    it is decoded.
    """
    import tensorflow as tf

    from edsr_tf.images import header_size_tf, resolve_max_pixels

    limit = resolve_max_pixels(max_pixels)
    deps = []
    if limit is not None:
        _, w, h = header_size_tf(contents)
        deps.append(tf.debugging.Assert(
            w * h <= limit,
            ["image too large: width, height", w, h,
             f"is over the max_pixels limit of {limit} pixels (a decompression bomb?)"],
        ))
    with tf.control_dependencies(deps):
        img = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


def decode_image_file(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Decodes an image file to uint8 RGB ``[H, W, 3]`` with the same op the pipeline uses.

    Raises :class:`DataError` naming the file when it is missing, larger than ``max_pixels``
    (as :func:`edsr_tf.images.read_image`: the header is checked before decoding) or cannot
    be decoded.
    """
    import tensorflow as tf

    from edsr_tf.images import ImageTooLargeError, check_pixels, header_size

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # a JPEG's frame header may follow large EXIF/ICC blocks
    except OSError as e:
        raise DataError(f"cannot decode image {path}: {e.strerror or e}") from None
    found = header_size(head)
    if found is not None:
        try:
            check_pixels(path, found[1], found[2], max_pixels)
        except ImageTooLargeError as e:
            raise DataError(f"cannot decode image {e}") from None
    try:
        return decode_rgb(tf.io.read_file(os.fspath(path)), max_pixels).numpy()
    except (tf.errors.OpError, ValueError) as e:
        raise DataError(f"cannot decode image {path}: {first_line(e)}") from None


def find_unreadable(source: DataSource, scales: Sequence[int]) -> list[str]:
    """``"path: reason"`` for every file of a div2k/folder source that cannot be decoded.

    Used to name the culprit when the pipeline's in-graph decoder fails mid-run
    (TensorFlow's error does not say which file it was reading).
    """
    paths: dict[Path, None] = {}
    for scale in scales:
        for train in (True, False):
            try:
                pairs = image_pairs(source, scale, train=train)
            except DataError:
                continue
            for pair in pairs:
                paths[pair.hr_path] = None
                if pair.lr_path is not None:
                    paths[pair.lr_path] = None
    bad = []
    for path in paths:
        try:
            decode_image_file(path)
        except DataError as e:
            # Drop TF's node/op decorations: "{{function_node ...}} Invalid PNG data [Op:...]".
            reason = re.sub(r"\{\{.*?\}\}|\[Op:.*?\].*$", "", str(e)).strip()
            bad.append(reason.removeprefix("cannot decode image ").replace(":  ", ": "))
    return bad


def _crc32_of(path: Path, offset: int, nbytes: int) -> int:
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = nbytes
        while remaining > 0:
            chunk = f.read(min(remaining, 1 << 24))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
    return crc


class DecodedImageCache:
    """A folder of decoded images keyed by source; see the module docstring.

    ``verify=True`` (default) checks the CRC-32 of every entry when this object first uses it
    (about 1 ms per 2K image once in the page cache, plus reading it from disk otherwise);
    ``verify=False`` checks only manifests and file sizes.
    Counters ``decoded``, ``reused`` and ``rebuilt`` tell what the last calls did.
    """

    def __init__(self, cache_dir: str | os.PathLike, *, verify: bool = True) -> None:
        self.dir = Path(cache_dir).expanduser()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create cache directory {self.dir}: {e.strerror}") from None
        self.verify = verify
        self._checked: dict[str, tuple[dict[str, Any], CachedImage]] = {}  # verified this process
        self.decoded = 0
        self.reused = 0
        self.rebuilt = 0

    # -- naming and validation -------------------------------------------------------------
    def _files(self, key: str) -> tuple[Path, Path]:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(key).stem)[:40]
        base = self.dir / f"{stem}-{digest}"
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def lookup(self, key: str, fingerprint: dict[str, Any]) -> CachedImage | None:
        """The valid entry for ``key`` whose manifest records ``fingerprint``, else None."""
        known = self._checked.get(key)
        if known is not None and known[0] == fingerprint:  # e.g. the HR of every MDSR scale
            return known[1]
        entry, reason = self._check(key, fingerprint)
        if entry is not None:
            self._checked[key] = (dict(fingerprint), entry)
        if entry is None and reason != "missing":
            log.warning("decoded-image cache: rebuilding entry for %s (%s)", key, reason)
            self.rebuilt += 1
        return entry

    def _check(self, key: str, fingerprint: dict[str, Any]) -> tuple[CachedImage | None, str]:
        npy, meta_path = self._files(key)
        if not meta_path.is_file() and not npy.is_file():
            return None, "missing"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            return None, f"unreadable manifest {meta_path.name}: {e}"
        if meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
            return None, "manifest of another format or source"
        for name, value in fingerprint.items():
            if meta.get(name) != value:
                return None, f"stale: source {name} changed ({meta.get(name)!r} -> {value!r})"
        try:
            shape = tuple(int(v) for v in meta["shape"])
            offset, nbytes, crc = int(meta["offset"]), int(meta["nbytes"]), int(meta["crc32"])
            size = npy.stat().st_size
        except (KeyError, TypeError, ValueError) as e:
            return None, f"incomplete manifest: {e}"
        except OSError:
            return None, f"corrupt: {npy.name} missing"
        if len(shape) != 3 or nbytes != int(np.prod(shape)) or size != offset + nbytes:
            return None, f"corrupt: {npy.name} has {size} bytes, expected {offset + nbytes}"
        if self.verify and _crc32_of(npy, offset, nbytes) != crc:
            return None, f"corrupt: checksum of {npy.name} does not match its manifest"
        return CachedImage(npy, offset, shape), "ok"  # type: ignore[arg-type]

    # -- writing -----------------------------------------------------------------------------
    def store(self, key: str, fingerprint: dict[str, Any], array: np.ndarray) -> CachedImage:
        """Writes ``array`` (uint8 [H, W, 3]) for ``key``; returns the entry."""
        array = np.ascontiguousarray(array, dtype=np.uint8)
        if array.ndim != 3:
            raise ValueError(f"cache entries are [H, W, C] arrays, got shape {array.shape}")
        npy, meta_path = self._files(key)
        header: dict[str, int] = {}

        def write_npy(f) -> None:
            np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
            header["offset"] = f.tell()
            f.write(array.tobytes())

        atomic_write(npy, write_npy)
        meta = dict(fingerprint, format=FORMAT_VERSION, key=key, shape=list(array.shape),
                    offset=header["offset"], nbytes=array.nbytes,
                    crc32=zlib.crc32(memoryview(array).cast("B")))
        atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1)), mode="w")
        self.decoded += 1
        entry = CachedImage(npy, header["offset"], tuple(array.shape))  # type: ignore[arg-type]
        self._checked[key] = (dict(fingerprint), entry)
        return entry

    # -- image files -------------------------------------------------------------------------
    @staticmethod
    def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
        """What identifies a source file's content cheaply: absolute path, mtime, size."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e.strerror}") from None
        return {"source": os.fspath(p), "mtime_ns": st.st_mtime_ns, "size": st.st_size}

    def file_entry(self, path: str | os.PathLike) -> CachedImage:
        """The cache entry of an image file, decoding it if missing, stale or corrupt."""
        fp = self.file_fingerprint(path)
        entry = self.lookup(fp["source"], fp)
        if entry is not None:
            self.reused += 1
            return entry
        return self.store(fp["source"], fp, decode_image_file(path))

    def file_entries(self, paths: Sequence[str | os.PathLike], *,
                     workers: int | None = None) -> list[CachedImage]:
        """:meth:`file_entry` for many files, in threads (decoding and CRC release the GIL)."""
        workers = workers or min(8, os.cpu_count() or 1)
        todo = list(paths)
        if len(todo) > 1:
            log.info("decoded-image cache %s: checking %d images", self.dir, len(todo))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            entries = list(pool.map(self.file_entry, todo))
        return entries

    def entries_for(self, keys_and_fingerprints: Iterable[tuple[str, dict[str, Any]]],
                    arrays: Callable[[], Iterable[np.ndarray]]) -> list[CachedImage]:
        """Entries for keyed items that cannot be read one by one (a tfds split).

        If any entry is missing or invalid, ``arrays()`` is iterated once in key order and the
        invalid entries rewritten.
        """
        items = list(keys_and_fingerprints)
        found = [self.lookup(k, fp) for k, fp in items]
        if all(e is not None for e in found):
            self.reused += len(found)
            return found  # type: ignore[return-value]
        log.info("decoded-image cache %s: decoding %d of %d images", self.dir,
                 sum(e is None for e in found), len(found))
        n = 0
        for i, array in enumerate(arrays()):
            if i >= len(items):
                break
            if found[i] is None:
                found[i] = self.store(items[i][0], items[i][1], array)
            n += 1
        if n < len(items):
            raise DataError(f"expected {len(items)} images for the cache in {self.dir}, the source gave {n}")
        return found  # type: ignore[return-value]
