"""TFLite (LiteRT) export: fp32, fp16, dynamic-range and full-integer int8, run with LiteRT."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edsr_tf.export.common import ExportError


def convert(
    savedmodel_dir: str | os.PathLike,
    quantization: str = "none",
    representative: Sequence[np.ndarray] | None = None,
) -> bytes:
    """Converts a ``model.export`` SavedModel to a TFLite flatbuffer.

    ``quantization``: "none" (float32), "fp16" (float16 weights), "dynamic"
    (int8 weights, float activations) or "int8" (full integer: int8 weights and
    activations, uint8 input and output, calibrated on ``representative`` patches
    of real images).
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
        patches = list(representative)

        def dataset():
            for p in patches:
                yield [np.asarray(p, dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 in/out: apps feed and receive raw pixels, no float anywhere.
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif quantization != "none":
        raise ExportError(f"unknown TFLite quantization {quantization!r}")
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError / RuntimeError variously
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"TFLite conversion ({quantization}) failed: {first}") from e


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
        self._prepare(tuple(x.shape))
        dtype = self.input_dtype
        if dtype != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output_index)
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
