"""Config → Keras model, and a model's single-scale view."""

from __future__ import annotations

import keras

from edsr_tf.models.config import ModelConfig
from edsr_tf.models.edsr import edsr
from edsr_tf.models.mdsr import mdsr, mdsr_scale_model


def build_model(config: ModelConfig) -> keras.Model:
    """Builds the (untrained) Keras model that ``config`` describes."""
    if config.arch == "edsr":
        return edsr(config.scale, config.n_resblocks, config.n_feats, config.res_scale)
    return mdsr(config.scales, config.n_resblocks, config.n_feats)


def model_for_scale(model: keras.Model, config: ModelConfig, scale: int | None = None) -> keras.Model:
    """A single-input, single-output model for ``scale`` sharing ``model``'s weights.

    EDSR: the model itself (``scale`` must match or be None). MDSR: the per-scale
    sub-model; ``scale`` may be None only if the MDSR has one scale.
    """
    if scale is None:
        if len(config.scales) != 1:
            raise ValueError(
                f"model has scales {list(config.scales)}: pass --scale to choose one"
            )
        scale = config.scales[0]
    scale = int(scale)
    if scale not in config.scales:
        raise ValueError(
            f"model was built for scale(s) {list(config.scales)}, not x{scale}"
        )
    if config.arch == "edsr":
        return model
    return mdsr_scale_model(model, scale)
