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
]

