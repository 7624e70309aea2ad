"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

Every file edsr-tf writes goes through here, so an interrupted run never leaves a
half-written weights file, image, cache entry or report behind.

The temporary file lives in a private (0700) folder made by ``mkdtemp`` next to the
destination, so nobody else can plant a symlink at its name in a shared writable
folder, and writers that insist on creating the file themselves (Keras, h5py) can.
Files are created with the usual ``0o666 & ~umask`` by the ``open`` that makes
them; the process umask is never changed (that would race with other threads).

:func:`pid_alive` is the owner check of what is named after the process that made it (a
training job's lock, an export's staging folder), before a later run removes it as stale.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a fresh temporary path next to ``path``; renames it into place on success.

    ``suffix`` lets writers that insist on an extension (Keras' ``.weights.h5``)
    see one. The temporary file does not exist when yielded; it is in a private
    folder of its own (see the module docstring). On error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    private = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = os.path.join(private, f"data{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _exclusive_mode(mode: str) -> str:
    """``"wb"``/``"w"`` → ``"xb"``/``"x"``: the temporary file is created with O_EXCL."""
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode ('w' or 'wb'), got {mode!r}")
    return mode.replace("w", "x")


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> Path:
    """Calls ``write(f)`` on a temporary file opened with ``mode``, then renames it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, _exclusive_mode(mode)) as f:
            write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data), "wb")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), "wb")


def make_dir(path: str | os.PathLike) -> Path:
    """Creates the folder ``path`` (not its parents) with mode ``0o755 & ~umask``;
    raises ``FileExistsError`` if it exists.

    ``os.mkdir`` does not follow a symlink at ``path``, and unlike ``mkdtemp`` the
    folder is not private (0700).
    """
    os.mkdir(path, 0o755)
    return Path(path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host: the owner check of a lock or staging folder
    named after its process, before a later run removes it as stale.

    Errs on "alive" (nothing is removed) when the answer is unclear; ``pid`` <= 0 or past
    the OS's range names no process.
    """
    if pid <= 0:  # 0 and negative numbers address process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # not a process id this OS can have
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True
