"""EDSR / MDSR model builders, presets and Keras 3 save/load with embedded config."""

from edsr_tf.models.config import PRESETS, ModelConfig
from edsr_tf.models.edsr import edsr
from edsr_tf.models.factory import build_model, model_for_scale
from edsr_tf.models.io import load_model, read_config, save_model
from edsr_tf.models.layers import DIV2K_RGB_MEAN, DepthToSpace, MeanShift, Scale
from edsr_tf.models.mdsr import mdsr, mdsr_scale_model

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
    "edsr_baseline",
    "edsr_paper",
    "mdsr_baseline",
    "mdsr_paper",
]


def edsr_baseline(scale: int = 2):
    """EDSR baseline: 16 blocks, 64 features, res_scale 1 (1,369,859 params at ×2)."""
    return build_model(ModelConfig.from_preset("edsr_baseline", scale))


def edsr_paper(scale: int = 2):
    """EDSR as in the paper: 32 blocks, 256 features, res_scale 0.1 (40,729,603 at ×2)."""
    return build_model(ModelConfig.from_preset("edsr", scale))


def mdsr_baseline(scales=(2, 3, 4)):
    """MDSR baseline: 16 shared blocks, 64 features (3,227,203 params)."""
    return build_model(ModelConfig.from_preset("mdsr_baseline", scales))


def mdsr_paper(scales=(2, 3, 4)):
    """MDSR as in the paper: 80 shared blocks, 64 features (7,953,987 params)."""
    return build_model(ModelConfig.from_preset("mdsr", scales))
