"""Inference precision of ``upscale``/``evaluate``: fp32, bf16 or int8, all tiled the same way.

* ``fp32``: the Keras model as loaded (:func:`edsr_tf.inference.upscale_tiles` runs it
  through its compiled ``tf.function``).
* ``bf16``: the same network rebuilt under Keras' ``mixed_bfloat16`` policy with the weights
  copied in (:func:`bf16_model`): bfloat16 compute (the upsampler too), float32 variables; the
  tail and the mean shift stay float32 as the model builders declare them, so the output is float32.
  Fast only where the hardware computes bfloat16 (a GPU, or a CPU with AVX512-BF16/AMX-BF16;
  :func:`bf16_slow_reason` says when not); elsewhere oneDNN emulates it.
* ``int8``: a full-integer TFLite model run with LiteRT (:func:`int8_runner`). For a weights
  file it is a shipped ``<name>.int8.tflite`` (:func:`edsr_tf.pretrained.shipped_tflite`) or
  else converted once by the export code (:func:`edsr_tf.export.pipeline.export_model`,
  TFLite int8 calibrated on the embedded photographs, verified) and cached under
  :func:`cache_dir`, keyed by the weights file's SHA-256 and the scale.

The int8 model has a dynamic input shape; it runs as an :class:`edsr_tf.inference.Runner`
whose receptive field and activation estimate come from the Keras network it was
converted from, so it is tiled (and self-ensembled) exactly as the Keras model is.

Library code: never imports a command-line module; messages name no flags.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edsr_tf.errors import first_line

if TYPE_CHECKING:  # TensorFlow loads lazily: the CLIs' --help imports this module
    import keras

    from edsr_tf.inference import Runner
    from edsr_tf.models import ModelConfig

#: The precisions a model can run in.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
#: What picks one of :data:`PRECISIONS` for this machine (:func:`resolve_precision`).
AUTO = "auto"
#: The values of ``--precision`` of ``upscale`` and ``evaluate``.
CHOICES: tuple[str, ...] = (AUTO, *PRECISIONS)
#: ``evaluate``'s default: paper figures must not depend on the machine.
DEFAULT_PRECISION = "fp32"
#: ``upscale``'s default: bf16 where it is native (within 0.01 dB of fp32 for the shipped models).
UPSCALE_DEFAULT_PRECISION = AUTO
#: Environment variable naming the cache folder (default ``~/.cache/edsr_tf``).
CACHE_ENV = "EDSR_TF_CACHE"
#: Bumped when the int8 conversion changes, so older cached models are not reused.
INT8_CACHE_VERSION = 1
#: LR side of the verification crop of an int8 conversion: a sanity check, kept small
#: because the conversion runs on the user's first ``--precision int8`` call.
INT8_VERIFY_SIDE = 96

Say = Callable[[str], None]


class PrecisionError(RuntimeError):
    """A precision cannot be set up here: missing runtime, unusable cache, failed conversion."""


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def resolve_precision(precision: str, gpus: int | None = None) -> tuple[str, str]:
    """``(one of PRECISIONS, why)`` for ``precision``; ``why`` is empty unless it is ``auto``.

    ``auto`` is bf16 where the hardware computes bfloat16 natively (GPUs of compute capability
    8.0+, a CPU with AVX512-BF16 or AMX-BF16 and no GPU: what ``--mixed_precision=auto`` of
    training calls bf16), else fp32; int8 is never automatic (it changes the output). ``gpus``:
    as :func:`edsr_tf.precision.explain_mixed_precision` (None asks TensorFlow).
    """
    if precision != AUTO:
        _check(precision)
        return precision, ""
    from edsr_tf.precision import explain_mixed_precision

    mode, why = explain_mixed_precision(AUTO, gpus)
    if mode == "bf16":
        return "bf16", why
    if mode == "fp16":  # GPUs older than compute capability 8.0: no bfloat16 units
        why = why.split(":")[0] + ": no native bfloat16 (needs compute capability 8.0+)"
    return "fp32", why


# ----------------------------------------------------------------------------- bf16


def bf16_slow_reason() -> str | None:
    """Why bfloat16 will be slow on this machine (no GPU and no native CPU bfloat16), or None."""
    import tensorflow as tf

    from edsr_tf.precision import CPU_BF16_FLAGS, cpu_model_name, cpu_supports_bf16

    if tf.config.list_physical_devices("GPU") or cpu_supports_bf16():
        return None
    return (f"the CPU ({cpu_model_name()}) has no {'/'.join(CPU_BF16_FLAGS)} and there is no GPU: "
            "bfloat16 is emulated and will be slower than fp32")


def bf16_model(model: "keras.Model", config: "ModelConfig", scale: int) -> "keras.Model":
    """``model`` (at ``scale``) rebuilt with bfloat16 compute and ``model``'s weights.

    ``config``: the model's :class:`~edsr_tf.models.ModelConfig` (the network is rebuilt
    from it under ``mixed_bfloat16``, then the dtype policy is restored). ``model`` may be a
    whole MDSR or its scale view. The result's output is float32.
    """
    import keras

    from edsr_tf.inference import single_scale_model
    from edsr_tf.models import build_model, model_for_scale

    source = single_scale_model(model, int(scale))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        # The upsampler in bfloat16 too (at x4 it is over a third of the FLOPs); tail and mean
        # stay float32. Within 0.01 dB of fp32 on Set5 (tests/test_precision_default.py).
        net = model_for_scale(build_model(config, upsampler_dtype=None), config, int(scale))
    finally:
        keras.config.set_dtype_policy(previous)
    weights = source.get_weights()
    shapes = [tuple(w.shape) for w in net.weights]
    if shapes != [tuple(w.shape) for w in weights]:
        raise ValueError(f"{config.preset or config.arch} x{scale}: the bfloat16 rebuild does not match "
                         "the model's weights (a model not built from this config?)")
    net.set_weights(weights)  # mixed policy: float32 variables, so the values copy exactly
    if net.output.dtype != "float32":  # the builders end in float32 layers; keep the contract anyway
        inputs = keras.Input(shape=(None, None, 3), dtype="float32")
        net = keras.Model(inputs, keras.ops.cast(net(inputs), "float32"), name=f"{net.name}_bf16")
    return net


# ----------------------------------------------------------------------------- int8


def cache_dir() -> Path:
    """``$EDSR_TF_CACHE`` if set (and not empty), else ``~/.cache/edsr_tf``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edsr_tf"


def int8_cache_path(digest: str, scale: int) -> Path:
    """Where the int8 TFLite model of the weights with SHA-256 ``digest`` at ``scale`` is cached."""
    return cache_dir() / "tflite" / f"{digest}_x{int(scale)}_int8_v{INT8_CACHE_VERSION}.tflite"


def _shipped_int8(spec: str, digest: str, scale: int) -> Path | None:
    """A shipped ``.int8.tflite`` for ``spec`` (a shipped name, or a file with a shipped model's SHA-256)."""
    from edsr_tf import pretrained

    models = pretrained.load_manifest()
    name = spec if spec in models else next((n for n, m in models.items() if m.sha256 == digest), None)
    if name is None or tuple(models[name].scales) != (int(scale),):
        return None
    return pretrained.shipped_tflite(name)


def convert_int8(weights: str | os.PathLike, scale: int, dest: str | os.PathLike) -> Path:
    """Converts ``weights`` at ``scale`` to a full-integer TFLite model at ``dest`` (atomically).

    The export code does the work (:func:`edsr_tf.export.pipeline.export_model`: int8
    calibrated on the embedded photographs, then verified against Keras) in a private folder
    next to ``dest``; the verified file is then renamed into place, so a killed conversion
    leaves no partial model.
    """
    from edsr_tf.export.common import ExportError, ExportOptions
    from edsr_tf.export.pipeline import export_model
    from edsr_tf.models import load_model
    from edsr_tf.models.io import resolve_weights

    dest = Path(dest)
    weights = resolve_weights(weights)  # a shipped model's name → its file (reported by the export)
    model, config = load_model(weights)
    options = ExportOptions(formats=("tflite",), quantize=("int8",), scale=int(scale), latency_runs=0,
                            verify_max_side=INT8_VERIFY_SIDE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        out = work / "export"
        try:
            report = export_model(model, config, out, options, weights=str(weights), progress=None)
        except ExportError as e:
            raise PrecisionError(f"int8 conversion of {weights} failed: {e}") from None
        made = [a for a in report["artifacts"]
                if a["format"] == "tflite" and a["variant"] == "int8" and a["passed"]]
        if not made:
            raise PrecisionError(f"int8 conversion of {weights} produced no TFLite model")
        os.replace(out / made[0]["path"], dest)  # same folder tree: an atomic rename
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def int8_tflite(weights: str | os.PathLike, scale: int, *, say: Say | None = None) -> Path:
    """The full-integer TFLite model of ``weights`` (a file or a shipped name) at ``scale``.

    In order: the shipped ``<name>.int8.tflite``; the cached conversion
    (:func:`int8_cache_path`); else :func:`convert_int8` now, into the cache, after one line
    to ``say``. Raises :class:`PrecisionError` when the cache cannot be written or the
    conversion fails; ``ModelFileError`` for unreadable weights.
    """
    from edsr_tf.models.io import resolve_weights
    from edsr_tf.pretrained import sha256_of

    path = resolve_weights(weights)
    digest = sha256_of(path)
    shipped = _shipped_int8(os.fspath(weights), digest, scale)
    if shipped is not None:
        return shipped
    cached = int8_cache_path(digest, scale)
    if cached.is_file():
        return cached
    if say is not None:
        say(f"converting {weights} x{scale} to a full-integer TFLite model (once; cached as {cached})")
    try:
        return convert_int8(path, scale, cached)
    except OSError as e:
        raise PrecisionError(f"cannot write the int8 model to {cached.parent} ({e.strerror or e}); "
                             f"set {CACHE_ENV} to a writable folder") from None


def tflite_runner(path: str | os.PathLike, model: "keras.Model", scale: int, *,
                  num_threads: int | None = None) -> "Runner":
    """A TFLite model as an :class:`~edsr_tf.inference.Runner`, tiled as Keras ``model`` at ``scale``.

    ``model``: the Keras network the TFLite model was converted from (its receptive field
    and activation estimate set the tile overlap and ``tile="auto"``).
    """
    try:
        from edsr_tf.export.tflite import TFLiteRunner
    except ImportError as e:  # pragma: no cover - ai-edge-litert is a runtime requirement
        raise PrecisionError(f"int8 needs the LiteRT runtime: pip install ai-edge-litert ({e})") from None
    from edsr_tf.inference import Runner, activation_bytes_per_pixel, receptive_field_radius, single_scale_model

    net = single_scale_model(model, int(scale))
    try:
        interpreter = TFLiteRunner(path, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:  # LiteRT's error for a damaged or foreign flatbuffer
        raise PrecisionError(f"{path}: LiteRT cannot load it ({first_line(e)})") from None
    if interpreter.fixed_shape is not None:
        raise PrecisionError(f"{path}: a fixed-shape (tile) TFLite model; int8 needs the dynamic-shape one")
    return Runner(interpreter.run, receptive_field_radius(net), activation_bytes_per_pixel(net),
                  f"tflite {interpreter.input_dtype.name}")


def int8_runner(weights: str | os.PathLike, model: "keras.Model", scale: int, *,
                say: Say | None = None) -> "Runner":
    """``weights`` at ``scale`` as a full-integer TFLite :class:`~edsr_tf.inference.Runner`
    (:func:`int8_tflite`), tiled as the Keras ``model`` loaded from the same weights."""
    path = int8_tflite(weights, scale, say=say)
    try:
        return tflite_runner(path, model, scale)
    except PrecisionError as e:
        if cache_dir() in path.parents:  # written by us: a fresh conversion fixes it
            raise PrecisionError(f"{e}; delete it to convert again") from None
        raise


# ----------------------------------------------------------------------------- all of them


def with_precision(model: "keras.Model", config: "ModelConfig", scale: int, precision: str, *,
                   weights: str | os.PathLike | None = None,
                   say: Say | None = None) -> "keras.Model | Runner":
    """What :func:`edsr_tf.inference.upscale_tiles` should run for ``precision``.

    fp32: ``model`` itself; bf16: :func:`bf16_model`; int8: :func:`int8_runner` (needs
    ``weights``, the file or shipped name ``model`` was loaded from). ``say`` gets the
    one-line notes (bf16 on a CPU without native bfloat16; an int8 conversion starting).
    ``auto`` is decided by :func:`resolve_precision`.
    """
    precision, _why = resolve_precision(precision)
    if precision == "fp32":
        return model
    if precision == "bf16":
        reason = bf16_slow_reason()
        if reason and say is not None:
            say(reason)
        return bf16_model(model, config, scale)
    if weights is None:
        raise ValueError("int8 needs the weights file the model was loaded from")
    return int8_runner(weights, model, scale, say=say)
