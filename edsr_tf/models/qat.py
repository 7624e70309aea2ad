"""Quantization-aware training (QAT) for Keras 3: fake-quant that simulates TFLite int8.

tfmot does not support Keras 3, so the simulation is written here, op for op as the
TFLite converter quantizes an EDSR graph (checked against LiteRT by
``tests/test_qat.py``: the int8 ``.tflite`` agrees with the QAT model within a grey
level or two):

- conv weights: per output channel, symmetric, int8 in [-127, 127], step max|w|/127;
- activations: per tensor, asymmetric int8 (256 levels, 0 exactly representable), at
  every tensor TFLite stores in int8: the input, the mean shift, each conv output
  unless the conv is fused with what follows (ReLU, a constant ``Scale`` or the output
  mean shift fold into it), ReLU, ``Add``; ``depth_to_space`` only moves values (same
  scale as its input) and gets none;
- the input gets [0, 255] and the output [0, 255]: a uint8 image in, and int8
  saturation at the output *is* the clip to [0, 255] with a step of one grey level;
  the mean-shifted input gets the exact range of ``pixel - mean``.

The QAT model shares its variables with the float model it wraps, so training it
trains the float model; the activation ranges are non-trainable variables of the
:class:`FakeQuant` layers, set by :func:`calibrate` (the range with least expected
int8 error over real activations) and saved beside the weights (``save_model(...,
int8_ranges=...)``). An int8 export of such a file uses those ranges, not a new
calibration.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from edsr_tf.models.layers import DepthToSpace, MeanShift, Scale
from edsr_tf.quant_ranges import mse_range

#: Pixel range of the model's input and output (uint8 images).
PIXEL_RANGE = (0.0, 255.0)
#: Activation values kept per tensor for the range search during calibration.
_RANGE_SAMPLES = 1 << 18


class QATError(ValueError):
    """The model cannot be simulated (an op TFLite would quantize in a way not modelled)."""


@keras.saving.register_keras_serializable(package="edsr_tf")
class FakeQuant(keras.layers.Layer):
    """Per-tensor asymmetric int8 fake quantization with a stored range.

    Rounds to the 256-level grid of ``[min, max]`` nudged so that 0 is a level, as
    TFLite's (scale, zero point) does; gradients pass straight through inside the
    range and are zero outside it. ``fixed`` ranges (input, output) are never
    recalibrated.
    """

    def __init__(self, lo: float = 0.0, hi: float = 0.0, fixed: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.lo, self.hi, self.fixed = float(lo), float(hi), bool(fixed)

    def build(self, input_shape):
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer=keras.initializers.Constant(self.lo),
            trainable=False)
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer=keras.initializers.Constant(self.hi),
            trainable=False)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        return tf.quantization.fake_quant_with_min_max_vars(
            x, self.range_min, self.range_max, num_bits=8, narrow_range=False)

    def step(self) -> tf.Tensor:
        """The int8 step of the range (as TFLite's scale)."""
        return (self.range_max - self.range_min) / 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"lo": self.lo, "hi": self.hi, "fixed": self.fixed})
        return config


def _kernel_step(kernel: tf.Tensor) -> tf.Tensor:
    """TFLite's per-output-channel weight step max|w|/127, as the float32 it stores, in float64."""
    k64 = tf.cast(tf.stop_gradient(kernel), tf.float64)
    step = tf.maximum(tf.reduce_max(tf.abs(k64), axis=[0, 1, 2]), 1e-12) / 127.0
    return tf.cast(tf.cast(step, tf.float32), tf.float64)


def _round_away(x: tf.Tensor) -> tf.Tensor:
    """Rounds ties away from zero (TFLite's ``std::round``), not up as ``floor(x + 0.5)``."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def fake_quant_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """Per-output-channel symmetric int8 weights (TFLite's conv weights): step max|w|/127,
    ties rounded away from zero as TFLite does; gradients pass straight through."""
    k = tf.cast(kernel, tf.float32)
    # The division in float64 by the float32 step TFLite stores: fp16-trained weights
    # put many values within float32 rounding of a tie.
    step = _kernel_step(k)
    q = tf.clip_by_value(_round_away(tf.cast(tf.stop_gradient(k), tf.float64) / step), -127.0, 127.0)
    return k + tf.stop_gradient(tf.cast(q * step, tf.float32) - k)


def fake_quant_bias(bias: tf.Tensor, kernel: tf.Tensor, input_step: tf.Tensor) -> tf.Tensor:
    """The bias as TFLite stores it: int32 at (input step x weight step) per channel."""
    b = tf.cast(bias, tf.float32)
    step = _kernel_step(kernel) * tf.cast(tf.stop_gradient(input_step), tf.float64)
    q = _round_away(tf.cast(tf.stop_gradient(b), tf.float64) / step)
    return b + tf.stop_gradient(tf.cast(q * step, tf.float32) - b)


class QuantConv(keras.layers.Layer):
    """Runs a (shared) ``Conv2D`` with int8 fake-quantized weights and the bias rounded as
    TFLite stores it (int32 at the product of the input and weight steps)."""

    def __init__(self, conv: keras.layers.Conv2D, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=f"{conv.name}_q", **kwargs)
        cfg = conv.get_config()
        if (tuple(cfg["strides"]) != (1, 1) or tuple(cfg["dilation_rate"]) != (1, 1)
                or cfg["padding"] != "same" or cfg.get("groups", 1) != 1
                or cfg["activation"] not in (None, "linear")):
            raise QATError(f"{conv.name}: only stride-1 'same' convs without activation are simulated")
        self.conv = conv
        self.input_quant: FakeQuant | None = None  # set by quantize_model: gives the bias step

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        y = tf.nn.conv2d(x, fake_quant_kernel(self.conv.kernel), strides=1, padding="SAME")
        if self.conv.use_bias:
            b = self.conv.bias
            if self.input_quant is not None:
                b = fake_quant_bias(b, self.conv.kernel, self.input_quant.step())
            y = tf.nn.bias_add(y, tf.cast(b, tf.float32))
        return y

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


def quantize_constant(values: np.ndarray) -> np.ndarray:
    """A constant operand as TFLite stores it for an int8 ``ADD``: per tensor, asymmetric,
    its range widened to include 0 (the mean shift's [-114.44, -103.02] gets a step of 0.449)."""
    c = np.asarray(values, np.float64)
    lo, hi = min(0.0, float(c.min())), max(0.0, float(c.max()))
    if hi == lo:
        return c.astype(np.float32)
    scale = (hi - lo) / 255.0
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    q = np.clip(np.round(c / scale) + zero, -128, 127)
    return ((q - zero) * scale).astype(np.float32)


class QuantShift(keras.layers.Layer):
    """The input mean shift with its constant rounded as TFLite's int8 ``ADD`` stores it."""

    def __init__(self, shift: MeanShift, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=f"{shift.name}_q", **kwargs)
        values = [shift.sign * shift.rgb_range * m for m in shift.rgb_mean]
        self.constant = quantize_constant(np.array(values))

    def call(self, inputs):
        return tf.cast(inputs, tf.float32) + tf.constant(self.constant)

    def compute_output_shape(self, input_shape):
        return input_shape


def _consumers(model: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    """Layer name → the layers that take its output."""
    out: dict[str, list] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                parent = t._keras_history.operation
                out.setdefault(parent.name, []).append(layer)
    return out


def _fuses_into_conv(layer) -> bool:
    """Ops the converter folds into the conv before them (no int8 tensor between)."""
    return isinstance(layer, (keras.layers.ReLU, Scale)) or (
        isinstance(layer, MeanShift) and layer.sign > 0)


def quantized_tensors(model: keras.Model) -> dict[str, tuple[float, float] | None]:
    """Layer name → fixed range, or None (calibrated), for every layer whose output TFLite
    stores in int8 (module docstring); raises :class:`QATError` for ops not modelled."""
    consumers = _consumers(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise QATError("QAT simulates single-input, single-output models (EDSR); MDSR is not supported")
    output_layer = model.outputs[0]._keras_history.operation
    points: dict[str, tuple[float, float] | None] = {}
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, keras.layers.InputLayer):
            points[name] = PIXEL_RANGE
        elif isinstance(layer, MeanShift):
            shifts = [layer.sign * layer.rgb_range * m for m in layer.rgb_mean]
            if layer is output_layer:
                points[name] = PIXEL_RANGE
            elif layer.sign < 0:
                points[name] = (PIXEL_RANGE[0] + min(shifts), PIXEL_RANGE[1] + max(shifts))
            else:
                raise QATError(f"{name}: a mean shift inside the network is not simulated")
        elif isinstance(layer, keras.layers.Conv2D):
            after = consumers.get(name, [])
            if len(after) == 1 and _fuses_into_conv(after[0]):
                continue
            if any(_fuses_into_conv(c) for c in after):
                raise QATError(f"{name}: output used both fused and unfused")
            points[name] = None
        elif isinstance(layer, (keras.layers.ReLU, Scale, keras.layers.Add)):
            points[name] = None
        elif isinstance(layer, DepthToSpace):
            continue
        else:
            raise QATError(f"{name}: {type(layer).__name__} is not simulated by QAT")
    return points


def quantize_model(model: keras.Model, ranges: Mapping[str, tuple[float, float]] | None = None) -> keras.Model:
    """The QAT model of a float EDSR ``model`` (sharing its variables).

    ``ranges``: layer name → (min, max) for the calibrated tensors (e.g. from a file's
    stored ranges or :func:`calibrate`); missing ones start at (0, 0) until calibrated.
    """
    points = quantized_tensors(model)
    ranges = dict(ranges or {})
    fq: dict[str, FakeQuant] = {}
    for name, fixed in points.items():
        lo, hi = fixed if fixed is not None else ranges.get(name, (0.0, 0.0))
        fq[name] = FakeQuant(lo, hi, fixed=fixed is not None, name=f"{name}_fq")
    qconv = {layer.name: QuantConv(layer) for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)}
    qconv.update({layer.name: QuantShift(layer) for layer in model.layers
                  if isinstance(layer, MeanShift) and layer.sign < 0})

    input_name = model.layers[0].name
    takes_input = {c.name for c in _consumers(model)[input_name]}

    def call(layer, *args, **kwargs):
        if layer.name in takes_input:  # the uint8 input, as TFLite quantizes it
            args = (fq[input_name](args[0]),) + args[1:]
        if isinstance(layer, keras.layers.Conv2D):
            qconv[layer.name].input_quant = _quantizer_of(args[0])
        out = (qconv[layer.name] if layer.name in qconv else layer)(*args, **kwargs)
        return fq[layer.name](out) if layer.name in fq else out

    qat = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    return keras.Model(qat.inputs[0], qat.outputs[0], name=f"{model.name}_qat")


def _quantizer_of(tensor) -> "FakeQuant | None":
    """The FakeQuant that set ``tensor``'s int8 grid (through shuffles, which keep it)."""
    op = tensor._keras_history.operation
    while isinstance(op, DepthToSpace):
        op = op._inbound_nodes[0].input_tensors[0]._keras_history.operation
    return op if isinstance(op, FakeQuant) else None


def fake_quant_layers(qat_model: keras.Model) -> dict[str, FakeQuant]:
    """Source layer name → its :class:`FakeQuant` layer."""
    return {layer.name[: -len("_fq")]: layer for layer in qat_model.layers if isinstance(layer, FakeQuant)}


def int8_ranges(qat_model: keras.Model) -> dict[str, tuple[float, float]]:
    """The activation ranges of a QAT model: layer name → (min, max), fixed ones included."""
    return {name: (float(fq.range_min.numpy()), float(fq.range_max.numpy()))
            for name, fq in fake_quant_layers(qat_model).items()}


def set_int8_ranges(qat_model: keras.Model, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Sets the calibrated ranges of a QAT model (fixed ones are kept)."""
    for name, fq in fake_quant_layers(qat_model).items():
        if not fq.fixed and name in ranges:
            lo, hi = ranges[name]
            fq.range_min.assign(min(float(lo), 0.0))
            fq.range_max.assign(max(float(hi), 0.0))


def activation_probe(model: keras.Model, names: Iterable[str]) -> keras.Model:
    """A model returning the float outputs of the layers ``names`` (in that order)."""
    return keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])


def layer_of(value: np.ndarray, outputs: Mapping[str, np.ndarray], nchw: bool = False) -> str | None:
    """The layer whose float output (``outputs``: name → NHWC value, e.g. of
    :func:`activation_probe`) equals ``value`` to float tolerance, else None: how an exported
    graph's tensor is located in the Keras model by value, not by the converter's names.
    ``nchw``: also compare in NCHW (tf2onnx keeps convolutions there)."""
    value = np.asarray(value)
    best, err = None, np.inf
    for name, k in outputs.items():
        for view in ((k, k.transpose(0, 3, 1, 2)) if nchw and k.ndim == 4 else (k,)):
            if view.shape == value.shape:
                e = float(np.max(np.abs(view - value)))
                if e < err:
                    best, err = name, e
    return best if best is not None and err <= 1e-3 * max(1.0, float(np.max(np.abs(value)))) else None


def calibrate(model: keras.Model, qat_model: keras.Model, batches: Iterable[np.ndarray],
              seed: int = 0) -> dict[str, tuple[float, float]]:
    """Sets the QAT model's calibrated ranges from the float ``model``'s activations on
    ``batches`` (float LR images in [0, 255]): per tensor, the range with least expected
    int8 error (:func:`edsr_tf.quant_ranges.mse_range`). Returns the ranges set."""
    names = [n for n, fq in fake_quant_layers(qat_model).items() if not fq.fixed]
    probe = activation_probe(model, names)
    run = tf.function(lambda x: probe(x, training=False), reduce_retracing=True)
    rng = np.random.default_rng(seed)
    batches = [np.asarray(b, np.float32) for b in batches]
    if not batches:
        raise QATError("calibration needs at least one batch")
    per = max(1, _RANGE_SAMPLES // len(batches))
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for b in batches:
        outs = run(tf.constant(b))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, a in zip(names, outs):
            a = np.asarray(a, np.float32).ravel()
            lo[n], hi[n] = min(lo[n], float(a.min())), max(hi[n], float(a.max()))
            samples[n].append(a[rng.integers(0, a.size, per)] if a.size > per else a)
    ranges = {}
    for n in names:
        a, b = mse_range(np.concatenate(samples[n]), min(lo[n], 0.0), max(hi[n], 0.0))
        ranges[n] = (min(a, 0.0), max(b, 0.0))
    set_int8_ranges(qat_model, ranges)
    return ranges
