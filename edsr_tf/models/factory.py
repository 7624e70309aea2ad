"""Config → Keras model, and a model's single-scale view."""

from __future__ import annotations

import keras

from edsr_tf.models.config import ModelConfig, resolve_scale
from edsr_tf.models.edsr import edsr
from edsr_tf.models.mdsr import mdsr, mdsr_scale_model


def build_model(config: ModelConfig, *, upsampler_dtype: str | None = "float32") -> keras.Model:
    """Builds the (untrained) Keras model that ``config`` describes.

    ``upsampler_dtype``: float32 (training: fp16 must not overflow there) or None (the global
    policy: what bf16 inference uses, :func:`edsr_tf.inference_precision.bf16_model`).
    """
    if config.arch == "edsr":
        return edsr(config.scale, config.n_resblocks, config.n_feats, config.res_scale,
                    upsampler_dtype=upsampler_dtype)
    return mdsr(config.scales, config.n_resblocks, config.n_feats, config.res_scale,
                upsampler_dtype=upsampler_dtype)


def model_for_scale(model: keras.Model, config: ModelConfig, scale: int | str | None = None) -> keras.Model:
    """A single-input, single-output model for ``scale`` sharing ``model``'s weights.

    EDSR: the model itself (``scale`` must match or be None). MDSR: the per-scale
    sub-model; ``scale`` may be None only if the MDSR has one scale. The scale is
    checked by :func:`~edsr_tf.models.config.resolve_scale` (``ScaleError``, a ``ValueError``).
    """
    scale = resolve_scale(config, scale)
    if config.arch == "edsr":
        return model
    return mdsr_scale_model(model, scale)
