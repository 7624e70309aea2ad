"""TFLite (LiteRT) export: fp32, fp16, dynamic-range and full-integer int8, run with LiteRT.

Full-integer int8 uses the converter's calibration (min/max of every activation over
the representative patches) and then *refines* the ranges before quantizing:

- every activation range is replaced by the one that minimises the expected
  quantization error (rounding noise inside the range + clipping outside it) over
  the calibration activations. Min/max ranges are set by rare outliers: a residual
  branch whose values lie mostly within ±30 gets a ±100 range, i.e. a step 3× too
  coarse. On EDSR-baseline this roughly halves the PSNR drop of int8 at no cost in
  speed (same ops, same kernels);
- the tail conv and the final clip get exactly [0, 255]: int8 saturation then *is*
  the clip, and the step is one grey level, so the uint8 output equals the rounded
  float result instead of a value rounded twice (once on a ~1.2 step, once on 1);
- the input and what is computed from it without weights (the mean shift) keep the
  calibrated range: pixel values are known exactly and must never be clipped.

The refinement reads the calibrated model with ``flatbuffer_utils`` and re-quantizes
with ``mlir_quantize``, the internals ``tf.lite.experimental.QuantizationDebugger``
uses; ``int8_ranges="minmax"`` gives the plain converter result.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from edsr_tf.errors import first_line
from edsr_tf.export.common import ExportError
from edsr_tf.quant_ranges import mse_range

#: Activation range policies for full-integer int8 (see the module docstring).
INT8_RANGES: tuple[str, ...] = ("mse", "minmax")
#: Activation values kept per tensor for the range search (random subsample).
_RANGE_SAMPLES = 1 << 18


def convert(
    savedmodel_dir: str | os.PathLike,
    quantization: str = "none",
    representative: Sequence[np.ndarray] | None = None,
    *,
    int8_ranges: str = "mse",
    qat: tuple | None = None,
) -> bytes:
    """Converts a ``model.export`` SavedModel to a TFLite flatbuffer.

    ``quantization``: "none" (float32), "fp16" (float16 weights), "dynamic"
    (int8 weights, float activations) or "int8" (full integer: int8 weights and
    activations, uint8 input and output, calibrated on ``representative`` patches
    of real images; ``int8_ranges`` "mse" refines the activation ranges, "minmax"
    keeps the converter's). ``qat``: ``(keras_model, ranges)`` of a quantization-aware
    trained model (:mod:`edsr_tf.models.qat`): its activation ranges are used as they are
    (the patches only locate the tensors). The SavedModel must end in a clip to [0, 255]
    (``common.inference_model``) for the int8 output range to be right.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir))
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if not representative:
            raise ExportError("int8 TFLite export needs calibration patches")
        if int8_ranges not in INT8_RANGES:
            raise ExportError(f"unknown int8 range policy {int8_ranges!r} (expected one of {INT8_RANGES})")
        patches = [np.asarray(p, dtype=np.float32) for p in representative]

        def dataset():
            for p in patches:
                yield [p]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 in/out: apps feed and receive raw pixels, no float anywhere.
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        if qat is not None:
            return _guarded(lambda: _int8_refined(converter, patches, qat), quantization)
        if int8_ranges == "mse":
            return _guarded(lambda: _int8_refined(converter, patches), quantization)
    elif quantization != "none":
        raise ExportError(f"unknown TFLite quantization {quantization!r}")
    return _guarded(converter.convert, quantization)


def _guarded(fn, quantization: str) -> bytes:
    try:
        return fn()
    except ExportError:
        raise
    except Exception as e:  # the converter raises ConverterError / RuntimeError variously
        raise ExportError(f"TFLite conversion ({quantization}) failed: {first_line(e)}") from e


def _int8_refined(converter, patches: list[np.ndarray], qat: tuple | None = None) -> bytes:
    """Calibrates, replaces the activation ranges (module docstring, or the QAT model's),
    quantizes to int8."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.tools import flatbuffer_utils

    converter._experimental_calibrate_only = True  # float model + per-tensor min/max
    calibrated = bytes(converter.convert())
    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    graph = model.subgraphs[0]
    ranges = (qat_ranges(calibrated, model, patches[0], *qat) if qat is not None
              else refined_ranges(calibrated, model, patches))
    for i, (lo, hi) in ranges.items():
        q = graph.tensors[i].quantization
        q.min, q.max = [float(lo)], [float(hi)]
    edited = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    quantized = tfl_convert.mlir_quantize(edited, input_data_type=tf.uint8, output_data_type=tf.uint8)
    return drop_noop_clip(quantized)


def drop_noop_clip(flatbuffer: bytes) -> bytes:
    """Removes the output clip ops of an int8 model where they cannot change a value.

    With the output range exactly [0, 255] (scale 1, zero point −128), the clip to
    [0, 255] the SavedModel ends with is int8 saturation already: ``MINIMUM`` with 255
    and ``RELU`` (max with the zero point) are no-ops. XNNPACK does not take them in int8,
    so they ran single-threaded on builtin kernels at the output resolution (3.5 % of the
    int8 time at ×4). An op is dropped only when its input and output have the same
    quantization and (``MINIMUM``) its constant is the top of the int8 range or
    (``RELU``) the zero point is the bottom; the output is bit-identical.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    names = _op_names(model)

    def quant(i):
        q = graph.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            return None
        return (float(q.scale[0]), int(q.zeroPoint[0]), graph.tensors[i].type)

    def const_value(i):
        buf = model.buffers[graph.tensors[i].buffer].data
        return None if buf is None or len(buf) != 1 else int(np.frombuffer(bytes(buf), np.int8)[0])

    kept, dropped = [], 0
    rename: dict[int, int] = {}
    for op in graph.operators:
        ins = [rename.get(int(i), int(i)) for i in op.inputs]
        op.inputs = np.array(ins, dtype=np.int32)
        name, out = names[op.opcodeIndex], int(op.outputs[0])
        q_in, q_out = quant(ins[0]), quant(out)
        noop = q_in is not None and q_in == q_out and out not in {int(o) for o in graph.outputs}
        if noop and name == "MINIMUM" and len(ins) == 2:
            noop = quant(ins[1]) == q_out and const_value(ins[1]) == 127
        elif noop and name == "RELU":
            noop = q_out[1] == -128
        else:
            noop = False
        if noop:
            rename[out] = ins[0]
            dropped += 1
        else:
            kept.append(op)
    if not dropped:
        return flatbuffer
    graph.operators = kept
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _op_names(model) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [by_code.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]


def _output_chain(graph, names: list[str], producer: dict) -> dict[int, tuple[float, float]]:
    """The output tensor back to the conv that feeds it, through the clip ops: [0, 255] each
    (empty when the graph does not end that way)."""
    fixed: dict[int, tuple[float, float]] = {}
    t = int(graph.outputs[0])
    while t in producer:
        fixed[t] = (0.0, 255.0)
        op = producer[t]
        name = names[op.opcodeIndex]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return fixed
        if name not in ("MINIMUM", "MAXIMUM", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE"):
            return {}  # not the expected clip: leave the output side alone
        t = int(op.inputs[0])
    return fixed


def _float_activations(calibrated: bytes, patch: np.ndarray, indices) -> dict[int, np.ndarray]:
    """Runs the float (calibrate-only) model on ``patch``; tensor index → value."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": we need the activations
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(patch.shape), strict=False)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.asarray(patch, np.float32))
    interp.invoke()
    return {i: interp.get_tensor(i) for i in indices}


def qat_ranges(calibrated: bytes, model, patch: np.ndarray, keras_model,
               ranges: dict[str, tuple[float, float]]) -> dict[int, tuple[float, float]]:
    """Tensor index → the QAT model's (min, max) for every activation of a calibrated model.

    Each int8 tensor of the converted graph is located in the Keras model by value (the
    float TFLite tensor equals a layer output on ``patch``), so the mapping does not rely
    on the converter's tensor names; ``depth_to_space`` outputs take their input's range
    (TFLite requires it), the output and its clip get [0, 255]. Raises
    :class:`ExportError` if a tensor matches no simulated layer: then the QAT simulation
    does not quantize where TFLite does.
    """
    from edsr_tf.models.qat import activation_probe, layer_of

    graph = model.subgraphs[0]
    names = _op_names(model)
    producer = {int(o): op for op in graph.operators for o in op.outputs}
    activations = [
        i for i, t in enumerate(graph.tensors)
        if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
    ]
    out = _output_chain(graph, names, producer)
    inputs = {int(i) for i in graph.inputs}
    shuffles = {i for i in activations if i in producer and names[producer[i].opcodeIndex] == "DEPTH_TO_SPACE"}
    todo = [i for i in activations if i not in out and i not in shuffles]
    layer_names = list(ranges)
    keras_out = activation_probe(keras_model, layer_names)(np.asarray(patch, np.float32), training=False)
    keras_out = [np.asarray(a) for a in (keras_out if isinstance(keras_out, (list, tuple)) else [keras_out])]
    keras_by_name = dict(zip(layer_names, keras_out))
    tfl = _float_activations(calibrated, patch, todo)
    for i in todo:
        if i in inputs:
            out[i] = (0.0, 255.0)
            continue
        best = layer_of(tfl[i], keras_by_name)
        if best is None:
            tname = graph.tensors[i].name.decode(errors="replace")
            raise ExportError(f"QAT ranges: tensor {tname!r} matches no simulated layer "
                              "(the QAT simulation does not quantize where TFLite does)")
        out[i] = tuple(float(v) for v in ranges[best])
    for i in shuffles:  # in graph order: a chain of shuffles inherits through
        src = int(producer[i].inputs[0])
        if src not in out:
            raise ExportError("QAT ranges: depth_to_space input has no range")
        out[i] = out[src]
    return out


def refined_ranges(calibrated: bytes, model, patches: Sequence[np.ndarray]) -> dict[int, tuple[float, float]]:
    """Tensor index → new (min, max) for the activations of a calibrated model."""
    from ai_edge_litert.interpreter import Interpreter

    graph = model.subgraphs[0]
    names = _op_names(model)
    producer = {int(o): op for op in graph.operators for o in op.outputs}
    calibrated_range = {
        i: (float(t.quantization.min[0]), float(t.quantization.max[0]))
        for i, t in enumerate(graph.tensors)
        if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
    }
    inputs = {int(i) for i in graph.inputs}
    # Output side: the clip ops back to the conv that feeds them get exactly [0, 255].
    fixed = _output_chain(graph, names, producer)
    # Input side: the graph input and weight-free ops on it keep their calibrated range.
    keep = set(inputs)
    for op in graph.operators:
        if names[op.opcodeIndex] in ("ADD", "SUB", "MUL", "QUANTIZE") and inputs & {int(i) for i in op.inputs}:
            keep.update(int(o) for o in op.outputs)
    search = [i for i in calibrated_range if i not in fixed and i not in keep]

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": we need the activations
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    inp = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    per_patch = max(1, _RANGE_SAMPLES // max(1, len(patches)))
    samples: dict[int, list[np.ndarray]] = {i: [] for i in search}
    shape = None
    for p in patches:
        if p.shape != shape:
            interp.resize_tensor_input(inp["index"], list(p.shape), strict=False)
            interp.allocate_tensors()
            shape = p.shape
        interp.set_tensor(inp["index"], p)
        interp.invoke()
        for i in search:
            a = interp.get_tensor(i).ravel()
            samples[i].append(a[rng.integers(0, a.size, min(a.size, per_patch))] if a.size > per_patch else a.copy())
    out = dict(fixed)
    for i in search:
        values = np.concatenate(samples[i])
        lo, hi = calibrated_range[i]
        out[i] = mse_range(values, min(lo, float(values.min())), max(hi, float(values.max())))
    return out


def write(flatbuffer: bytes, path: str | os.PathLike) -> Path:
    """Writes a flatbuffer atomically."""
    from edsr_tf.images import atomic_write_bytes

    return atomic_write_bytes(path, flatbuffer)


class TFLiteRunner:
    """Runs a ``.tflite`` model with the LiteRT interpreter on float ``[N,H,W,3]`` images.

    Dynamic-shape models are resized to each input (``resize_tensor_input`` then
    ``allocate_tensors``: a model converted from ``(None, None, 3)`` reports
    ``[1, 1, 1, 3]`` until resized). Quantized uint8/int8 inputs and outputs are
    (de)quantized with the model's own parameters.

    Safe to share between threads (as a Keras model is): a LiteRT interpreter is not, so
    each :meth:`run` (resize, set, invoke, get) holds the runner's lock; the interpreter
    itself uses ``num_threads`` inside one call.
    """

    runtime = "litert"

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.interpreter = Interpreter(
            model_path=str(self.path), num_threads=num_threads or os.cpu_count() or 1
        )
        self.input = self.interpreter.get_input_details()[0]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.signature = tuple(int(d) for d in self.input["shape_signature"])
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()
        if all(d > 0 for d in self.signature):  # fixed-shape (tile) model
            self.interpreter.allocate_tensors()
            self._shape = tuple(int(d) for d in self.input["shape"])

    @property
    def fixed_shape(self) -> tuple[int, ...] | None:
        """The input shape of a fixed-shape (tile) model, else None."""
        return self.signature if all(d > 0 for d in self.signature) else None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    def _prepare(self, shape: tuple[int, ...]) -> None:
        if shape == self._shape:
            return
        if self.fixed_shape is not None:
            raise ValueError(
                f"{self.path.name} has a fixed input shape {list(self.fixed_shape)}, "
                f"got {list(shape)}: tile the image or use the dynamic-shape export"
            )
        self.interpreter.resize_tensor_input(self.input["index"], list(shape), strict=False)
        self.interpreter.allocate_tensors()
        self._shape = shape

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 ``[N,H,W,3]`` in [0, 255] → float32 ``[N,sH,sW,3]``."""
        x = np.asarray(images, dtype=np.float32)
        dtype = self.input_dtype
        if dtype != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        with self._lock:  # one interpreter: resize, input, invoke and output belong together
            self._prepare(tuple(x.shape))
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output_index)  # a copy
            out = self.interpreter.get_output_details()[0]
        if y.dtype != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def tensor_dtypes(self) -> dict[str, str]:
        """Dtype name → count over all tensors (to confirm what a quantized model holds)."""
        counts: dict[str, int] = {}
        for t in self.interpreter.get_tensor_details():
            name = np.dtype(t["dtype"]).name
            counts[name] = counts.get(name, 0) + 1
        return counts
