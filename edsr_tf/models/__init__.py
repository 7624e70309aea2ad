"""EDSR / MDSR model builders, presets and Keras 3 save/load with embedded config.

The names below are imported on first use, so ``edsr_tf.models.config`` (presets, scale
parsing) is usable without importing TensorFlow, e.g. by a command line printing ``--help``.
"""

from __future__ import annotations

import importlib
import sys
import types

#: Public name → the submodule that defines it.
_EXPORTS = {
    "PRESETS": "config",
    "ModelConfig": "config",
    "edsr": "edsr",
    "mdsr": "mdsr",
    "mdsr_scale_model": "mdsr",
    "build_model": "factory",
    "model_for_scale": "factory",
    "save_model": "io",
    "load_model": "io",
    "read_config": "io",
    "DIV2K_RGB_MEAN": "layers",
    "DepthToSpace": "layers",
    "MeanShift": "layers",
    "Scale": "layers",
}

__all__ = [
    "PRESETS",
    "ModelConfig",
    "edsr",
    "mdsr",
    "mdsr_scale_model",
    "build_model",
    "model_for_scale",
    "save_model",
    "load_model",
    "read_config",
    "DIV2K_RGB_MEAN",
    "DepthToSpace",
    "MeanShift",
    "Scale",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Keeps ``edsr_tf.models.edsr``/``.mdsr`` the builder functions, as an eager import did:
    loading the submodules of the same names would otherwise bind the modules there."""

    def __setattr__(self, name, value):
        if name in ("edsr", "mdsr") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
