"""Export EDSR/MDSR to SavedModel (TF Serving), TFLite (LiteRT) and ONNX, each verified.

Entry points: :func:`export` (from a weights file) and :func:`export_model` (from a
Keras model), both taking an :class:`ExportOptions`; the command line is ``python -m export``
(:mod:`edsr_tf.export.cli`); front ends turn their text into options with :meth:`ExportOptions.parse`.
TensorFlow is imported only when an export runs, so the CLI's ``--help`` is instant.
"""

from edsr_tf.export.common import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    FP32_TOLERANCE,
    QUANTIZATIONS,
    SUPPORTED,
    ExportError,
    ExportOptions,
    ExportUsageError,
    VerificationError,
    artifact_name,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "FP32_TOLERANCE",
    "QUANTIZATIONS",
    "SUPPORTED",
    "ExportError",
    "ExportOptions",
    "ExportUsageError",
    "VerificationError",
    "artifact_name",
    "export",
    "export_model",
]


def __getattr__(name: str):
    if name in ("export", "export_model"):
        from edsr_tf.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
