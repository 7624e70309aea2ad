"""Skip where an optional test input is absent, except under CI=true, where that is a failure.

CI must run every test: a missing install step or a missing ../shared/data must turn it red,
not quietly shrink the suite.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """``pytest.skip(reason)`` on a user's machine, ``pytest.fail`` under CI=true."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}; CI must run this test")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """Imports ``name``, or skips (fails under CI) with ``reason``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(f"{name} is not installed ({reason})")
