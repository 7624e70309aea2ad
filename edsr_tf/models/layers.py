"""Small registered layers used by the EDSR/MDSR functional graphs.

Keras 3 functional models refuse raw ``tf.*`` ops on symbolic tensors, so the
few non-Keras ops we need live in tiny serializable layers: ``.keras`` files
then load without ``safe_mode`` tricks.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

#: DIV2K RGB mean, in [0, 1]; multiplied by the RGB range (255) where used.
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


@keras.saving.register_keras_serializable(package="edsr_tf")
class DepthToSpace(keras.layers.Layer):
    """``tf.nn.depth_to_space`` (NHWC, DCR order) as a layer: the sub-pixel shuffle."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.block_size
        return (
            n,
            None if h is None else h * r,
            None if w is None else w * r,
            None if c is None else c // (r * r),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size})
        return config


@keras.saving.register_keras_serializable(package="edsr_tf")
class MeanShift(keras.layers.Layer):
    """Adds ``sign * rgb_range * mean`` per channel; a constant, not a weight.

    The reference implements this as a frozen 1x1 conv; it carries no trainable
    state, so it is not counted in the parameter totals.
    """

    def __init__(
        self,
        sign: float = -1.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        rgb_range: float = 255.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sign = float(sign)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.rgb_range = float(rgb_range)

    def call(self, inputs):
        shift = tf.constant(
            [self.sign * self.rgb_range * m for m in self.rgb_mean], dtype=inputs.dtype
        )
        return inputs + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"sign": self.sign, "rgb_mean": list(self.rgb_mean), "rgb_range": self.rgb_range}
        )
        return config


@keras.saving.register_keras_serializable(package="edsr_tf")
class Scale(keras.layers.Layer):
    """Multiplies by a fixed constant: EDSR's residual scaling (``res_scale``)."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return inputs * tf.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config
