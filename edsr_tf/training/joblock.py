"""An exclusive lock on a training job folder (``--out_dir``).

Two trainings writing the same folder would interleave their checkpoints,
weights and ``run_config.json``. The first run holds ``<out_dir>/train.lock``
(an ``fcntl.flock`` on a file naming its pid, host and start time) until it
ends, also on an exception; a second run is refused with a message naming the
folder and the holder. The kernel drops a ``flock`` when its process dies, so a
lock file left behind by a killed run is stale by construction and taken over
(with a note). Where ``fcntl`` is missing, the file is created with ``O_EXCL``
and a lock of a dead pid on this host counts as stale.

Workers of one multi-worker job share ``out_dir``: the chief (worker 0) takes
``train.lock`` (so a second single-worker run is refused too), each other
worker ``train.worker_<i>.lock``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from edsr_tf.fileio import pid_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None

LOCK_NAME = "train.lock"


class JobLockError(RuntimeError):
    """The job folder is in use by another training run."""


def lock_path(folder: str | os.PathLike, worker_index: int = 0) -> Path:
    """The lock file of ``folder`` for worker ``worker_index`` (0: chief / single worker)."""
    name = LOCK_NAME if worker_index == 0 else f"train.worker_{worker_index}.lock"
    return Path(folder) / name


def _read_holder(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(info: dict) -> str:
    """``pid 123 on host h since 2024-...`` (or what of it is known)."""
    if not info.get("pid"):
        return "an unknown process"
    text = f"pid {info['pid']}"
    if info.get("host"):
        text += f" on {info['host']}"
    if info.get("started"):
        text += f" since {info['started']}"
    return text


class JobLock:
    """Exclusive lock on a job folder: ``with JobLock(folder): ...`` or ``acquire()``/``release()``.

    ``stale`` holds the previous holder's pid/host when a stale lock was taken over.
    """

    def __init__(self, folder: str | os.PathLike, worker_index: int = 0):
        self.folder = Path(folder)
        self.path = lock_path(folder, worker_index)
        self.stale: dict | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _info(self) -> bytes:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        return (json.dumps(info) + "\n").encode()

    def _refuse(self, info: dict) -> JobLockError:
        return JobLockError(
            f"{self.folder} is in use by another training run ({describe_holder(info)}, lock file "
            f"{self.path}): wait for it to end or use another folder"
        )

    def acquire(self) -> "JobLock":
        """Takes the lock or raises :class:`JobLockError`; returns ``self``."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        acquire = self._acquire_flock if fcntl is not None else self._acquire_excl
        acquire()
        return self

    def _acquire_flock(self) -> None:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refuse(_read_holder(self.path)) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder may have removed the file between our open and flock:
            # then we hold a lock on a deleted file, and must start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                previous = _read_holder(self.path)
                if previous.get("pid"):  # a holder that ended without releasing (killed)
                    self.stale = previous
                os.ftruncate(fd, 0)
                os.pwrite(fd, self._info(), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return
        raise JobLockError(f"could not lock {self.path}: it keeps being replaced")

    def _acquire_excl(self) -> None:  # pragma: no cover - platforms without fcntl
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = _read_holder(self.path)
                pid = info.get("pid")
                if info.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
                    self.stale = info
                    self.path.unlink(missing_ok=True)
                    continue
                raise self._refuse(info) from None
            os.write(fd, self._info())
            os.fsync(fd)
            self._fd = fd
            return
        raise self._refuse(_read_holder(self.path))

    def release(self) -> None:
        """Removes the lock file and drops the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.path.unlink()  # while still locked: no one can take a file we delete
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a lock object dropped without release(): do not leak the lock
        try:
            self.release()
        except Exception:
            pass
