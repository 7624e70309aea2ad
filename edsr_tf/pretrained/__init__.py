"""Trained models shipped inside the package, usable by name (``edsr_baseline_x4``).

``manifest.json`` beside this file lists each model: its weights file (in this folder,
config embedded, stored as float16), SHA-256 and size, and its model card (training data,
steps, schedule, precision, wall time, hardware, PSNR/SSIM on Set5/Set14 with and without
self-ensemble, TFLite int8/dynamic-range drop). A file is checked against its SHA-256
every time it is resolved: a damaged or replaced file is refused, never loaded silently.

Nothing here downloads anything: the files are part of the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: The folder that holds the shipped files and their manifest.
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"


class PretrainedError(ValueError):
    """A shipped model name is unknown, or its file is missing or does not match the manifest."""


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """One manifest entry: a shipped weights file and its model card."""

    name: str
    file: str
    sha256: str
    size: int
    arch: str
    preset: str
    scales: tuple[int, ...]
    card: dict[str, Any]
    directory: Path = PACKAGE_DIR
    #: The shipped full-integer TFLite model (from quantization-aware training, or post-training
    #: for the models without a QAT run): file, sha256, size, figures.
    int8_tflite: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.file

    def figures(self) -> str:
        """The Set5/Set14 PSNR of its card, e.g. ``"Set5 x4 30.80 dB, Set14 x4 27.65 dB"``."""
        figures = []
        for entry in self.card.get("results", []):
            if entry.get("self_ensemble"):
                continue
            figures.append(f"{entry['set']} x{entry['scale']} {entry['psnr']:.2f} dB")
        # A JPEG-robust model is for compressed inputs: show those figures too.
        jpeg = [f"{e['set']} {e['psnr']:.2f} dB (bicubic {e['bicubic_psnr']:.2f})"
                for e in self.card.get("jpeg_results", [])]
        if jpeg:
            q = self.card["jpeg_results"][0].get("lr_jpeg_quality")
            figures.append(f"on LR JPEG q{q}: " + ", ".join(jpeg))
        return ", ".join(figures) if figures else "no figures recorded"

    def summary(self) -> str:
        """One line: name, preset, scales and figures (for ``--list_models``)."""
        scales = "/".join(f"x{s}" for s in self.scales)
        line = f"{self.name:<22} {self.preset} {scales}: {self.figures()}"
        drops = (self.int8_tflite or {}).get("psnr_drop_db", {})
        if drops:
            parts = ", ".join(f"{k} {v.get('qat_int8', v.get('ptq_int8')):+.3f} dB" for k, v in drops.items()
                              if "qat_int8" in v or "ptq_int8" in v)
            line += f"; int8 .tflite drop {parts}"
        return line


def _manifest_path(directory: Path) -> Path:
    return directory / MANIFEST


def load_manifest(directory: str | os.PathLike | None = None) -> dict[str, PretrainedModel]:
    """The shipped models by name (empty when nothing is shipped yet)."""
    base = Path(directory) if directory is not None else PACKAGE_DIR
    path = _manifest_path(base)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        models = {}
        for name, entry in doc["models"].items():
            models[name] = PretrainedModel(
                name=name, file=entry["file"], sha256=entry["sha256"], size=int(entry["size"]),
                arch=entry["arch"], preset=entry["preset"],
                scales=tuple(int(s) for s in entry["scales"]), card=dict(entry.get("card", {})),
                directory=base, int8_tflite=entry.get("int8_tflite"),
            )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PretrainedError(f"{path}: unreadable manifest of shipped models ({e})") from None
    return models


def list_models(directory: str | os.PathLike | None = None) -> list[PretrainedModel]:
    """The shipped models, sorted by name."""
    return [m for _, m in sorted(load_manifest(directory).items())]


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_path(model: PretrainedModel) -> Path:
    """The model's file, after checking its size and SHA-256 against the manifest."""
    path = model.path
    if not path.is_file():
        raise PretrainedError(f"shipped model {model.name!r}: file {path} is missing (reinstall edsr-tf)")
    size = path.stat().st_size
    if size != model.size:
        raise PretrainedError(f"shipped model {model.name!r}: {path} has {size} bytes, the manifest "
                              f"says {model.size}; the file is damaged or was replaced")
    digest = sha256_of(path)
    if digest != model.sha256:
        raise PretrainedError(f"shipped model {model.name!r}: SHA-256 of {path} is {digest}, the "
                              f"manifest says {model.sha256}; the file is damaged or was replaced")
    return path


def is_model_name(spec: str | os.PathLike) -> bool:
    """True for a bare name (no folder, no weights suffix), i.e. not meant as a file path."""
    text = os.fspath(spec)
    return not (os.sep in text or "/" in text or text.endswith((".h5", ".keras")))


def resolve(spec: str | os.PathLike, directory: str | os.PathLike | None = None) -> Path:
    """A weights path for ``spec``: a shipped model's name (verified) or a file path as given.

    A bare name that is neither a shipped model nor an existing file is an error that lists
    the shipped names.
    """
    text = os.fspath(spec)
    models = load_manifest(directory)
    if text in models:
        return verified_path(models[text])
    if is_model_name(text) and not Path(text).exists():
        known = ", ".join(sorted(models)) or "none"
        raise PretrainedError(f"{text!r} is neither a weights file nor a shipped model (shipped: {known})")
    return Path(text)


def default_model(scale: int, directory: str | os.PathLike | None = None) -> PretrainedModel:
    """The shipped single-scale model used for ``scale`` when no weights are given."""
    models = load_manifest(directory)
    name = f"edsr_baseline_x{int(scale)}"
    if name in models:
        return models[name]
    for model in sorted(models.values(), key=lambda m: m.name):
        if int(scale) in model.scales and not model.name.endswith(JPEG_SUFFIX):
            return model
    have = sorted({s for m in models.values() for s in m.scales})
    raise PretrainedError(f"no shipped model for x{scale} (shipped scales: {have or 'none'})")


#: Name suffix of the shipped JPEG-robust models (trained on JPEG-compressed LR):
#: ``edsr_baseline_x2_jpeg`` beside the bicubic-trained ``edsr_baseline_x2``.
JPEG_SUFFIX = "_jpeg"


def jpeg_model(scale: int, directory: str | os.PathLike | None = None) -> PretrainedModel | None:
    """The shipped JPEG-robust model for ``scale``, or None when none is shipped."""
    return load_manifest(directory).get(f"edsr_baseline_x{int(scale)}{JPEG_SUFFIX}")


#: File name of a shipped model's full-integer TFLite conversion, beside its weights.
INT8_TFLITE = "{name}.int8.tflite"


def shipped_tflite(name: str, directory: str | os.PathLike | None = None) -> Path | None:
    """The ``<name>.int8.tflite`` shipped beside the shipped model ``name``, or None.

    None when ``name`` is not a shipped model or no such file is shipped: ``--precision
    int8`` then converts the weights once and caches the result
    (:mod:`edsr_tf.inference_precision`). A file the manifest records (``int8_tflite``) is
    checked against its size and SHA-256.
    """
    models = load_manifest(directory)
    if name not in models:
        return None
    path = models[name].directory / INT8_TFLITE.format(name=name)
    if not path.is_file():
        return None
    recorded = models[name].int8_tflite
    if recorded and (path.stat().st_size != recorded.get("size") or sha256_of(path) != recorded.get("sha256")):
        raise PretrainedError(f"shipped model {name!r}: {path} does not match the SHA-256/size the manifest "
                              "records; the file is damaged or was replaced")
    return path


def format_models(directory: str | os.PathLike | None = None) -> str:
    """The shipped models, one line each (for ``--list-models``)."""
    models = list_models(directory)
    if not models:
        return "no shipped models in this installation"
    return "\n".join(m.summary() for m in models)


__all__ = [
    "PACKAGE_DIR",
    "PretrainedError",
    "PretrainedModel",
    "default_model",
    "format_models",
    "is_model_name",
    "list_models",
    "load_manifest",
    "resolve",
    "sha256_of",
    "shipped_tflite",
    "verified_path",
]
