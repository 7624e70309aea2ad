"""Shared pieces of the export stack: names, errors, the conversion-input model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # keras/TF load lazily so `python -m export --help` answers at once
    import keras

    from edsr_tf.models import ModelConfig

#: Export formats, in the order they are built.
FORMATS: tuple[str, ...] = ("savedmodel", "tflite", "onnx")
#: Quantization variants; "none" is the float32 export.
QUANTIZATIONS: tuple[str, ...] = ("none", "fp16", "dynamic", "int8")
#: Which variants each format supports (SavedModel serves float32 only).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "savedmodel": ("none",),
    "tflite": ("none", "fp16", "dynamic", "int8"),
    "onnx": ("none", "int8"),
}
#: Default fp32 parity tolerance: max |export - keras| on the [0, 255] scale.
FP32_TOLERANCE = 1e-2

Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """An export could not be produced (conversion failed, bad option, ...)."""


class VerificationError(ExportError):
    """An exported artifact does not reproduce the Keras model within tolerance."""


def variant_label(quant: str) -> str:
    """File-name label of a quantization variant ("none" → "fp32")."""
    return "fp32" if quant == "none" else quant


def artifact_name(config: "ModelConfig", scale: int) -> str:
    """Base name of one exported model, e.g. ``edsr_baseline_x2``."""
    if config.preset:
        base = config.preset
    else:
        base = f"{config.arch}_b{config.n_resblocks}_f{config.n_feats}"
    return f"{base}_x{int(scale)}"


def inference_model(model: "keras.Model", name: str = "edsr_inference") -> "keras.Model":
    """``model`` followed by a clip to [0, 255]: the graph every export carries.

    Clipping inside the exported graph makes each runtime return valid pixel
    values, and gives int8 exports a known output range.
    """
    import keras

    inputs = keras.Input(shape=(None, None, 3), name="images", dtype="float32")
    outputs = keras.ops.clip(model(inputs), 0.0, 255.0)
    return keras.Model(inputs, outputs, name=name)


def export_conversion_savedmodel(
    model: "keras.Model", path: str | os.PathLike, input_shape: Sequence[int | None] | None = None
) -> Path:
    """Writes the SavedModel that TFLite and tf2onnx convert from (``model.export``).

    With Keras 3, ``TFLiteConverter.from_keras_model`` and ``tf2onnx.convert.from_keras``
    are broken; converting the SavedModel of ``model.export`` is the supported route.
    ``input_shape`` (e.g. ``(1, 64, 64, 3)``) fixes the input shape for tile exports.
    """
    import tensorflow as tf

    path = Path(path)
    shape = list(input_shape) if input_shape is not None else [None, None, None, 3]
    model.export(
        str(path),
        format="tf_saved_model",
        verbose=False,
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")],
    )
    return path


def dir_size(path: str | os.PathLike) -> int:
    """Total bytes of a file or of every file below a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def move_into_place(staging: Path, out: Path) -> None:
    """Moves the verified contents of ``staging`` into ``out`` and removes ``staging``.

    If ``out`` does not exist the whole folder is renamed in one step. Otherwise each
    top-level artifact (a file or a SavedModel version folder) replaces its previous
    version, so a re-export never mixes old and new files of one artifact.
    """
    if not out.exists():
        os.replace(staging, out)
        return
    for src in sorted(staging.rglob("*")):
        rel = src.relative_to(staging)
        dst = out / rel
        if src.is_dir():
            # SavedModel version folders (.../<name>/<version>) move as a unit.
            if rel.parts[0] == "savedmodel" and len(rel.parts) == 3:
                dst.parent.mkdir(parents=True, exist_ok=True)
                old = None
                if dst.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
                    os.replace(dst, old / dst.name)
                os.replace(src, dst)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            continue
        if not src.exists():  # moved with its version folder
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)
