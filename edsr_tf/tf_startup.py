"""TensorFlow's start-up lines, kept off the command-line tools' stderr unless ``--verbose``.

TensorFlow 2.21 logs through Abseil before it reads ``TF_CPP_MIN_LOG_LEVEL``: importing it
prints ``WARNING: All log messages before absl::InitializeLog() is called ...`` and info lines
(oneDNN, ``Could not find cuda drivers``), twice (two libraries load them), and its first device
query on a machine without a GPU prints ``E0000 ... failed call to cuInit``, an error line for a
normal state. :func:`install` makes the first ``import tensorflow`` run with file descriptor 2
captured, lists the devices while still captured, then writes back every captured line except
those (:func:`kept_lines`): a GPU that is present but fails, a missing CUDA library, a Python
warning, all still show. A failed import shows everything it printed.

Only the front ends call :func:`install` (the library never touches file descriptors).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Callable

#: Abseil's pre-initialisation banner, and its info/warning lines (``I0000 ...``, ``W0000 ...``).
NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d"),
)
#: The first line of any Abseil log record (its later lines carry no prefix).
RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
#: The later lines of the multi-line info records above (cpu_feature_guard's advice). Only these
#: known ones go with their record: any other line may be Python's own output, and stays.
CONTINUATIONS = (re.compile(r"^To enable the following instructions: "),)
#: The error line of a machine without a GPU driver (dropped only there, see :func:`kept_lines`).
CUINIT_FAILED = re.compile(r"^E\d{4} .*failed call to cuInit")
#: What TensorFlow's CUDA stub says when no driver library is installed.
NO_DRIVER = "Could not find cuda drivers"
#: The NVIDIA driver's control device: present wherever a GPU driver is loaded.
NVIDIA_CONTROL_DEVICE = "/dev/nvidiactl"


def kept_lines(text: str, driver_present: bool | None = None) -> list[str]:
    """The lines of captured start-up output worth showing.

    Abseil's banner and info/warning records (with their known :data:`CONTINUATIONS`) go; the cuInit error
    goes only where no GPU driver is
    present (``driver_present`` False; None: the output says there is none, or no
    :data:`NVIDIA_CONTROL_DEVICE`), as elsewhere it is a GPU that failed. Anything else stays:
    other errors, fatal lines, Python warnings, anything printed that is not a log record.
    """
    if driver_present is None:
        driver_present = NO_DRIVER not in text and os.path.exists(NVIDIA_CONTROL_DEVICE)
    kept, dropping = [], False
    for line in text.splitlines():
        if RECORD.match(line) or any(p.match(line) for p in NOISE):
            dropping = any(p.match(line) for p in NOISE) or (
                not driver_present and bool(CUINIT_FAILED.match(line)))
        elif not (dropping and any(p.match(line) for p in CONTINUATIONS)):
            dropping = False
        if not dropping:
            kept.append(line)
    return kept


def _write_stderr(lines: list[str]) -> None:
    if lines:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()


def run_quietly(load: Callable[[], None]) -> None:
    """Runs ``load`` with file descriptor 2 (C++ and Python writes alike) sent to a temporary
    file, then writes back its :func:`kept_lines` (all of it when ``load`` raises). Without a
    usable descriptor 2, just runs ``load``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr descriptor (a daemon): nothing to quiet
        load()
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = True
        try:
            load()
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            _write_stderr(text.splitlines() if failed else kept_lines(text))


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, and its first device query, under :func:`run_quietly`."""

    def __init__(self, inner: importlib.abc.Loader):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        def load() -> None:
            self._inner.exec_module(module)
            module.config.list_physical_devices()  # cuInit runs (and complains) here

        try:
            run_quietly(load)
        finally:  # the module keeps its own loader, not this wrapper
            module.__loader__ = self._inner
            if module.__spec__ is not None:
                module.__spec__.loader = self._inner


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders, once, and wraps its loader."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietFinder()


def install() -> None:
    """Quiets TensorFlow's start-up from its first import on (no-op when already imported)."""
    if "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Undoes :func:`install` (if TensorFlow was not imported meanwhile)."""
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)
