"""Building blocks shared by EDSR and MDSR (reference: EDSR-PyTorch ``model/common.py``)."""

from __future__ import annotations

import math

import keras

from edsr_tf.models.layers import DepthToSpace, Scale


def conv(filters: int, kernel_size: int, name: str, dtype=None) -> keras.layers.Conv2D:
    """A 'same'-padded conv with bias, as the reference's ``default_conv``."""
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=True, name=name, dtype=dtype
    )


class ResBlock:
    """conv-ReLU-conv, times ``res_scale``, plus input. No BatchNorm (the paper's point).

    Holds its layers so the same block can be applied to several inputs (MDSR's
    per-scale sub-models share one set of weights).
    """

    def __init__(self, n_feats: int, kernel_size: int, res_scale: float, name: str):
        self.conv1 = conv(n_feats, kernel_size, f"{name}_conv1")
        self.relu = keras.layers.ReLU(name=f"{name}_relu")
        self.conv2 = conv(n_feats, kernel_size, f"{name}_conv2")
        self.scale = Scale(res_scale, name=f"{name}_scale") if res_scale != 1.0 else None
        self.add = keras.layers.Add(name=f"{name}_add")

    def __call__(self, x):
        res = self.conv2(self.relu(self.conv1(x)))
        if self.scale is not None:
            res = self.scale(res)
        return self.add([x, res])


def upsampler_stages(scale: int) -> list[int]:
    """Shuffle factors of the upsampler: ×2^n → n stages of 2; ×3 → one of 3."""
    if scale == 3:
        return [3]
    if scale >= 2 and (scale & (scale - 1)) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"unsupported scale {scale}: expected 2, 3, 4 or 8")


class Upsampler:
    """[conv(F → r²F), depth_to_space(r)] per stage (the sub-pixel upsampler)."""

    def __init__(self, scale: int, n_feats: int, name: str, dtype=None):
        self.stages = []
        for i, r in enumerate(upsampler_stages(scale)):
            self.stages.append(
                (
                    conv(r * r * n_feats, 3, f"{name}_{i}_conv", dtype=dtype),
                    DepthToSpace(r, name=f"{name}_{i}_shuffle", dtype=dtype),
                )
            )

    def __call__(self, x):
        for c, shuffle in self.stages:
            x = shuffle(c(x))
        return x
