"""EDSR / MDSR model builders, presets and Keras 3 save/load with embedded config.

The names below are imported on first use, so ``edsr_tf.models.config`` (presets, scale
parsing) is usable without importing TensorFlow, e.g. by a command line printing ``--help``.
"""

from __future__ import annotations

import sys
import types

from edsr_tf.lazy import lazy_exports

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
    "read_int8_ranges": "io",
    "DIV2K_RGB_MEAN": "layers",
    "DepthToSpace": "layers",
    "MeanShift": "layers",
    "Scale": "layers",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """Keeps ``edsr_tf.models.edsr``/``.mdsr`` the builder functions, as an eager import did:
    loading the submodules of the same names would otherwise bind the modules there."""

    def __setattr__(self, name, value):
        if name in ("edsr", "mdsr") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
