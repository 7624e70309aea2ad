"""EDSR (Lim et al., CVPRW 2017) as a Keras functional model."""

from __future__ import annotations

import keras

from edsr_tf.models.blocks import ResBlock, Upsampler, conv
from edsr_tf.models.layers import MeanShift


def edsr(
    scale: int = 2,
    n_resblocks: int = 16,
    n_feats: int = 64,
    res_scale: float = 1.0,
    name: str | None = None,
    upsampler_dtype: str | None = "float32",
) -> keras.Model:
    """Builds EDSR for one scale.

    Input: float RGB ``[N, H, W, 3]`` in [0, 255], any H×W. Output: ``[N, sH, sW, 3]``
    in the same range (not clipped). The DIV2K mean is subtracted at the input and
    added back at the output. The last layers (upsampler, tail, mean) run in float32
    so fp16 training does not overflow. ``upsampler_dtype=None`` lets the upsampler follow the
    global dtype policy instead (bf16 inference: at x4 it holds over a third of the FLOPs); the
    tail and the mean stay float32. The variables are the same either way.
    """
    inputs = keras.Input(shape=(None, None, 3), name="lr")
    x = MeanShift(-1.0, name="sub_mean")(inputs)
    x = conv(n_feats, 3, "head")(x)
    res = x
    for i in range(n_resblocks):
        res = ResBlock(n_feats, 3, res_scale, name=f"body_{i}")(res)
    res = conv(n_feats, 3, "body_conv")(res)
    x = keras.layers.Add(name="global_skip")([x, res])
    x = Upsampler(scale, n_feats, name="upsample", dtype=upsampler_dtype)(x)
    x = conv(3, 3, "tail", dtype="float32")(x)
    outputs = MeanShift(+1.0, name="add_mean", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name or f"edsr_x{scale}")
