"""Save/load models in Keras 3 formats with their :class:`ModelConfig` embedded.

``.weights.h5``: Keras' weights file plus a root HDF5 attribute ``edsr_tf_config``
(JSON) and, for a quantization-aware trained model, ``edsr_tf_int8_ranges`` (JSON: layer
name → [min, max] of its int8 activation, see :mod:`edsr_tf.models.qat`). ``.keras``: Keras' archive plus a member ``edsr_tf_config.json``. Either
file alone is enough to rebuild the model. Writes go to a temporary file in the
destination folder and are renamed into place, so a crash never leaves a
half-written file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import keras

from edsr_tf import pretrained
from edsr_tf.errors import first_line
from edsr_tf.fileio import atomic_path
from edsr_tf.models.config import ModelConfig
from edsr_tf.models.factory import build_model

CONFIG_ATTR = "edsr_tf_config"
CONFIG_MEMBER = "edsr_tf_config.json"
INT8_RANGES_ATTR = "edsr_tf_int8_ranges"


#: Largest embedded config read (ours are a few hundred bytes): a bigger one is refused unread.
MAX_CONFIG_BYTES = 64 << 10
#: Keras' archive member holding the weights of a ``.keras`` file.
KERAS_WEIGHTS_MEMBER = "model.weights.h5"


class ModelFileError(ValueError):
    """A weights/model file is missing, unreadable or does not fit its config."""


def _check_zip_members(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuses an archive member that claims less than its compressed data (deflate never
    shrinks by expanding): such a member decompresses past its declared size, a zip bomb
    whose declared sizes would otherwise look harmless."""
    for info in zf.infolist():
        if info.compress_size > info.file_size + info.file_size // 64 + 1024:
            raise ModelFileError(
                f"{path}: member {info.filename} holds {info.compress_size} compressed bytes for "
                f"{info.file_size} (a zip bomb?)"
            )


def _read_config_member(path: Path, zf: zipfile.ZipFile) -> bytes | None:
    """The config member of a ``.keras`` archive, never decompressing more than
    :data:`MAX_CONFIG_BYTES` (a zip-bomb member is refused from its declared size)."""
    if CONFIG_MEMBER not in zf.namelist():
        return None
    _check_zip_members(path, zf)
    if zf.getinfo(CONFIG_MEMBER).file_size > MAX_CONFIG_BYTES:
        raise ModelFileError(
            f"{path}: invalid embedded model config ({zf.getinfo(CONFIG_MEMBER).file_size} bytes, "
            f"more than {MAX_CONFIG_BYTES})"
        )
    with zf.open(CONFIG_MEMBER) as f:
        return f.read(MAX_CONFIG_BYTES + 1)


def _suffix(path: Path) -> str:
    name = path.name
    if name.endswith(".weights.h5"):
        return ".weights.h5"
    if name.endswith(".keras"):
        return ".keras"
    raise ModelFileError(
        f"{path}: expected a file ending in '.weights.h5' or '.keras'"
    )


def save_model(model: keras.Model, path: str | os.PathLike, config: ModelConfig,
               int8_ranges: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Writes ``model`` (with ``config``, and the QAT ``int8_ranges`` if given) to ``path``
    atomically; returns the path. ``int8_ranges`` need a ``.weights.h5`` file."""
    path = Path(path)
    suffix = _suffix(path)
    if int8_ranges is not None and suffix != ".weights.h5":
        raise ModelFileError(f"{path}: int8 ranges (QAT) are stored in .weights.h5 files only")
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        if suffix == ".weights.h5":
            model.save_weights(tmp)
            with h5py.File(tmp, "a") as f:
                f.attrs[CONFIG_ATTR] = config.to_json()
                if int8_ranges is not None:
                    f.attrs[INT8_RANGES_ATTR] = json.dumps(
                        {k: [float(v[0]), float(v[1])] for k, v in int8_ranges.items()})
        else:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(CONFIG_MEMBER, config.to_json())
    return path


def resolve_weights(spec: str | os.PathLike) -> Path:
    """A weights path for ``spec``: a shipped model's name (SHA-256 checked) or a file path."""
    try:
        return pretrained.resolve(spec)
    except pretrained.PretrainedError as e:
        raise ModelFileError(str(e)) from None


def read_config(path: str | os.PathLike) -> ModelConfig:
    """Reads the embedded :class:`ModelConfig` of a ``.weights.h5``/``.keras`` file (or of a
    shipped model given by name, see :mod:`edsr_tf.pretrained`)."""
    path = resolve_weights(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such weights file")
    try:
        if suffix == ".weights.h5":
            with h5py.File(path, "r") as f:
                text = f.attrs.get(CONFIG_ATTR)
        else:
            with zipfile.ZipFile(path) as zf:
                text = _read_config_member(path, zf)
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(f"{path}: not a readable {suffix} file ({e})") from None
    if text is None:
        raise ModelFileError(
            f"{path}: no edsr-tf model config inside; write it with edsr_tf.models.save_model, "
            "edsr_tf.convert or train.py"
        )
    if len(text) > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{path}: invalid embedded model config (more than {MAX_CONFIG_BYTES} bytes)")
    try:
        if isinstance(text, bytes):
            text = text.decode()
        return ModelConfig.from_json(text)
    except RecursionError:  # json.loads of deeply nested arrays/objects
        raise ModelFileError(f"{path}: invalid embedded model config (nested too deeply)") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{path}: invalid embedded model config ({e})") from None


def read_int8_ranges(path: str | os.PathLike) -> dict[str, tuple[float, float]] | None:
    """The QAT activation ranges stored in a ``.weights.h5`` file (or shipped model), else None."""
    path = resolve_weights(path)
    if _suffix(path) != ".weights.h5":
        return None
    try:
        with h5py.File(path, "r") as f:
            text = f.attrs.get(INT8_RANGES_ATTR)
    except OSError as e:
        raise ModelFileError(f"{path}: not a readable .weights.h5 file ({e})") from None
    if text is None:
        return None
    try:
        data = json.loads(text.decode() if isinstance(text, bytes) else text)
        return {str(k): (float(v[0]), float(v[1])) for k, v in data.items()}
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise ModelFileError(f"{path}: invalid stored int8 ranges ({e})") from None


def _weights_in_file(path) -> tuple[int, int]:
    """(tensors, values) of the model's layers in a Keras ``.weights.h5`` file (a path or an
    open binary file; no optimizer state)."""
    counts = [0, 0]

    def visit(name, obj):
        if name.split("/")[0] in ("optimizer", "metrics"):
            return
        if isinstance(obj, h5py.Dataset) and obj.shape:
            counts[0] += 1
            counts[1] += int(obj.size)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return counts[0], counts[1]


def _describe(config: ModelConfig) -> str:
    scales = "/".join(f"x{s}" for s in config.scales)
    return (f"{config.preset or config.arch} {scales}, {config.n_resblocks} blocks, "
            f"{config.n_feats} features")


def _keras_load_reason(e: Exception) -> str:
    """Keras' many-line load error (with a tensor dump) as one short clause."""
    text = str(e)
    parts = []
    m = re.search(r"A total of (\d+) objects could not be loaded", text)
    if m:
        parts.append(f"{m.group(1)} layers could not be loaded")
    m = re.search(r"name=([\w.]+)", text)
    shapes = re.search(r"variable\.shape=(\([\d, ]*\)), Received: value\.shape=(\([\d, ]*\))", text)
    if shapes:
        where = f" {m.group(1)}" if m else ""
        parts.append(f"e.g.{where} needs {shapes.group(1)}, the file has {shapes.group(2)}")
    if not parts:
        parts.append(first_line(e)[:200])
    return "; ".join(parts)


def load_model(path: str | os.PathLike) -> tuple[keras.Model, ModelConfig]:
    """Rebuilds the model stored at ``path`` (or shipped as ``path``, e.g. ``"edsr_baseline_x4"``)
    and loads its weights; float16 files load into the float32 model.

    Weights that do not fit the embedded config (another model's file, a damaged file) raise
    :class:`ModelFileError` with a one-line reason; Keras' per-layer warnings are not shown.
    Both formats build the model from the embedded config and read only the weights (a
    ``.keras`` file's ``config.json`` is not parsed); zip-bomb members are refused unpacked.
    """
    path = resolve_weights(path)
    config = read_config(path)
    suffix = _suffix(path)
    # A .keras file is loaded like a .weights.h5 one: the model is built from our (checked)
    # config and only Keras' weights member is read, through the same count check; Keras'
    # own config.json (any size, any layers) is never parsed.
    model = build_model(config)
    expected = (len(model.weights), sum(int(w.numpy().size) for w in model.weights))
    try:
        if suffix == ".weights.h5":
            found = _weights_in_file(path)
        else:
            with zipfile.ZipFile(path) as zf:
                info = zf.getinfo(KERAS_WEIGHTS_MEMBER)
                if info.file_size > 8 * expected[1] + (16 << 20):  # float64 + HDF5 overhead
                    raise ModelFileError(
                        f"{path}: {KERAS_WEIGHTS_MEMBER} of {info.file_size} bytes is far larger than "
                        f"the weights of {_describe(config)} (a zip bomb?)"
                    )
                with zf.open(info) as f:
                    found = _weights_in_file(f)
    except KeyError:
        raise ModelFileError(f"{path}: no {KERAS_WEIGHTS_MEMBER} inside (not a Keras archive)") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(f"{path}: not a readable {suffix} file ({e})") from None
    if found != expected:
        raise ModelFileError(
            f"{path}: weights do not fit the embedded config ({_describe(config)}): the file "
            f"holds {found[0]} tensors / {found[1]:,} values, that model has {expected[0]} / "
            f"{expected[1]:,} (weights of another model?)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns per layer; we raise one line instead
            model.load_weights(path)
    except OSError as e:  # the file went bad while read: not another model's weights
        raise ModelFileError(f"{path}: cannot read the weights ({_keras_load_reason(e)})") from e
    except Exception as e:  # Keras raises ValueError/KeyError variously for weights that do not fit
        raise ModelFileError(
            f"{path}: weights do not fit the embedded config ({_describe(config)}): "
            f"{_keras_load_reason(e)} (weights of another model?)"
        ) from e  # the cause kept for EDSR_TF_DEBUG tracebacks; the message stays one line
    bad = [w.path for w in model.weights if not bool(keras.ops.all(keras.ops.isfinite(w.value)))]
    if bad:  # a diverged training's weights would give black images with exit 0
        raise ModelFileError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}): a diverged "
            "training? use an earlier checkpoint"
        )
    return model, config
