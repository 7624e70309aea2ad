"""Small resumable HTTP download with checksum, shared by the download scripts (stdlib only)."""

from __future__ import annotations

import hashlib
import sys
import time
import urllib.error
import urllib.request
import tarfile
import zipfile
from pathlib import Path

CHUNK = 1 << 20


def run_job(job) -> int:
    """Runs ``job()`` as a command: one-line errors (exit 1), Ctrl-C explains how to resume (130)."""
    try:
        job()
    except (DownloadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


class DownloadError(RuntimeError):
    """A download or checksum failed (message says which URL/file and what to do)."""


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress(name: str, done: int, total: int | None, start: float) -> None:
    rate = done / max(time.monotonic() - start, 1e-6) / 2**20
    pct = f"{100 * done / total:5.1f}%" if total else "     "
    sys.stderr.write(f"\r  {name}: {pct} {done / 2**20:9.1f} MiB  {rate:6.1f} MiB/s")
    sys.stderr.flush()


def fetch(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
          md5: str | None = None) -> Path:
    """Downloads ``url`` to ``dest`` (resuming ``dest.part`` with an HTTP Range request) and checks
    size and checksum; a complete, verified ``dest`` is kept without downloading again."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (size is None or dest.stat().st_size == size):
        if _verify(dest, sha256, md5, remove=False):
            print(f"  {dest.name}: already downloaded and verified")
            return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        request = urllib.request.Request(url, headers={"User-Agent": "edsr-tf-datasets"})
        if have:
            request.add_header("Range", f"bytes={have}-")
            print(f"  {dest.name}: resuming at {have / 2**20:.1f} MiB")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                if have and resp.status != 206:  # server ignored Range: start over
                    have = 0
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length else size
                start = time.monotonic()
                with open(part, "ab" if have else "wb") as f:
                    done = have
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        f.write(block)
                        done += len(block)
                        _progress(dest.name, done, total, start)
                sys.stderr.write("\n")
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"downloading {url} failed ({e}); run the same command again to resume "
                                f"from {part}, or download it by hand into {dest.parent}") from None
    if size is not None and part.stat().st_size != size:
        raise DownloadError(f"{part}: {part.stat().st_size} bytes, expected {size}; run again to resume")
    if not _verify(part, sha256, md5, remove=True):
        raise DownloadError(f"{url}: checksum mismatch, the partial file was removed; run again")
    part.replace(dest)
    if sha256 is None and md5 is None:
        print(f"  {dest.name}: no published checksum; sha256 {file_digest(dest, 'sha256')}")
    return dest


def _verify(path: Path, sha256: str | None, md5: str | None, *, remove: bool) -> bool:
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected and file_digest(path, algorithm) != expected.lower():
            if remove:
                path.unlink()
            return False
    return True


def extract(archive: Path, dest: Path) -> None:
    """Extracts a .zip or .tar archive into ``dest`` (refusing paths that leave ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    print(f"  extracting {archive.name} into {dest}")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            _check_members(archive, names, root)
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _check_members(archive, tf.getnames(), root)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: also refuses links and devices
                tf.extractall(dest, filter="data")
            else:
                tf.extractall(dest)
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


def _check_members(archive: Path, names: list[str], root: Path) -> None:
    for name in names:
        if not (root / name).resolve().is_relative_to(root):
            raise DownloadError(f"{archive}: member {name!r} would be written outside {root}")
