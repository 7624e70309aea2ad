"""Package attributes imported on first use (PEP 562 ``__getattr__``/``__dir__``).

A package lists its public names without importing the submodules that define them, so
e.g. a command line can print ``--help`` without importing TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` of ``package``, whose ``exports`` map each public name
    to the submodule defining it.

    A name is imported from ``<package>.<submodule>`` when first read, then kept in the
    package's namespace (later reads do not come back here). ``__all__`` lists the names
    in the order of ``exports``.
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__, list(exports)
