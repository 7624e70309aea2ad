"""MDSR (multi-scale EDSR) as one Keras functional model with one output per scale."""

from __future__ import annotations

from typing import Sequence

import keras

from edsr_tf.models.blocks import ResBlock, Upsampler, conv
from edsr_tf.models.layers import MeanShift


def output_name(scale: int) -> str:
    """Name of the MDSR output (and sub-model) for ``scale``."""
    return f"x{scale}"


def mdsr(
    scales: Sequence[int] = (2, 3, 4),
    n_resblocks: int = 16,
    n_feats: int = 64,
    res_scale: float = 1.0,
    name: str = "mdsr",
    upsampler_dtype: str | None = "float32",
) -> keras.Model:
    """Builds MDSR: shared head/body/tail, per-scale pre-processing and upsamplers.

    ``res_scale`` scales the residual of each shared body block, as in EDSR (the
    per-scale 5×5 pre-processing blocks keep 1, as in the reference); it adds no
    weights, and the default 1.0 is the paper's MDSR.

    Returns one functional model whose outputs are a dict ``{"x2": ..., "x3": ...}``;
    it holds the single set of weights. Use :func:`mdsr_scale_model` for a model of
    one scale that shares those weights (training one scale per batch, export).
    """
    scales = tuple(int(s) for s in scales)
    if not scales or len(set(scales)) != len(scales):
        raise ValueError(f"MDSR scales must be distinct and non-empty, got {scales}")
    inputs = keras.Input(shape=(None, None, 3), name="lr")
    x = MeanShift(-1.0, name="sub_mean")(inputs)
    x = conv(n_feats, 3, "head")(x)

    body = [ResBlock(n_feats, 3, res_scale, name=f"body_{i}") for i in range(n_resblocks)]
    body_conv = conv(n_feats, 3, "body_conv")
    tail = conv(3, 3, "tail", dtype="float32")
    add_mean = MeanShift(+1.0, name="add_mean", dtype="float32")

    outputs = {}
    for s in scales:
        h = x
        for j in range(2):
            h = ResBlock(n_feats, 5, 1.0, name=f"pre_x{s}_{j}")(h)
        res = h
        for block in body:
            res = block(res)
        res = body_conv(res)
        h = keras.layers.Add(name=f"global_skip_x{s}")([h, res])
        h = Upsampler(s, n_feats, name=f"upsample_x{s}", dtype=upsampler_dtype)(h)
        h = tail(h)
        outputs[output_name(s)] = keras.layers.Identity(name=output_name(s), dtype="float32")(
            add_mean(h)
        )
    return keras.Model(inputs, outputs, name=name)


def mdsr_scale_model(model: keras.Model, scale: int) -> keras.Model:
    """A single-scale model over the same layers (and weights) as the MDSR ``model``."""
    key = output_name(scale)
    if key not in model.output:
        have = sorted(model.output)
        raise ValueError(f"MDSR model has no scale {scale}: it has {have}")
    return keras.Model(model.input, model.output[key], name=f"{model.name}_{key}")
