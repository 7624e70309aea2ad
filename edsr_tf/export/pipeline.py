"""Builds, verifies and reports every requested export of one model.

Everything is written into a hidden staging folder ``.<out>.partial-<host>-<pid>-...``
next to ``out``, verified there, and then replaces ``out`` as one unit. On any error
the staging folder is deleted, so a failed export leaves no artifact behind; one left
by a killed process is removed by the next export to the same ``out``.

The steps of :func:`export_model`: :func:`plan_export` (the options against the model,
``out`` and the verification images), :func:`calibration_data`, then per scale
:func:`keras_reference` and, per format, an artifact builder (``_BUILDERS``) whose
candidates :class:`_Build` verifies and records; last :func:`build_report` and
:func:`_install_verified` (report files, atomic swap).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np

from edsr_tf.errors import first_line
from edsr_tf.export import onnx as onnx_export
from edsr_tf.export import opencv, savedmodel, tflite, web, web_runtime
from edsr_tf.export.calibration import calibration_patches, read_rgb
from edsr_tf.export.common import (
    ExportError,
    ExportOptions,
    ExportUsageError,
    Progress,
    VerificationError,
    artifact_name,
    clean_stale,
    dir_size,
    export_conversion_savedmodel,
    foreign_export,
    inference_model,
    install,
    is_disk_full,
    parse_list,
    parse_tile,
    savedmodel_versions,
    staging_dir,
    variant_label,
)
from edsr_tf.export.report import step_line, table, write_report
from edsr_tf.export.verify import (
    KerasRunner,
    VerificationImage,
    check_serving_signatures,
    tile_images,
    verification_images,
    verify_hr_files,
    verify_runner,
)
from edsr_tf.inference import activation_bytes_per_pixel
from edsr_tf.models import ModelConfig, load_model, model_for_scale

__all__ = ["ExportOptions", "ExportPlan", "export", "export_model", "parse_list", "parse_tile", "plan_export"]

#: Activation memory of one request at --max-pixels above which the report warns.
LARGE_REQUEST_BYTES = 8 << 30


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export(
    weights: str | os.PathLike,
    out: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    progress: Progress | None = _stderr,
) -> dict:
    """Loads ``weights`` (a ``.weights.h5``/``.keras`` with embedded config, or a shipped
    model's name such as ``"edsr_baseline_x2"``) and exports it.

    See :func:`export_model` for ``options``. Raises ``ModelFileError`` for an unreadable
    or mismatched weights file (or a damaged shipped one) before anything is written.
    """
    from edsr_tf.models.io import resolve_weights

    options = ExportOptions() if options is None else options
    path = resolve_weights(weights)  # the shipped file for a name (SHA-256 checked)
    model, config = load_model(path)
    return export_model(model, config, out, options, weights=str(path), progress=progress)


def _work_error(e: BaseException, out: Path) -> ExportError | None:
    """A one-line :class:`ExportError` for an OS/TensorFlow failure while exporting, else None."""
    if is_disk_full(e):
        return ExportError(f"--out {out}: disk full while writing the export ({first_line(e)}); "
                           "nothing was written")
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        return ExportError(f"--out {out}: {e.strerror or first_line(e)}{where}; nothing was written")
    if type(e).__module__.startswith("tensorflow"):
        if type(e).__name__ == "ResourceExhaustedError":
            return ExportError(f"out of memory while exporting ({first_line(e)}); "
                               "lower --verify-max-side or free memory")
        return ExportError(f"TensorFlow {type(e).__name__}: {first_line(e)}")
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    parent = path.parent
    with contextlib.suppress(OSError):  # an emptied savedmodel/<name>/ folder goes too
        if parent.name != "savedmodel" and parent.parent.name == "savedmodel":
            parent.rmdir()


def _failure_summary(failed: list[dict]) -> str:
    return "; ".join(f"{a['model']} {a['format']} {a['variant']}"
                     f"{' tile' if a.get('tile') else ''}: {a['failure']}" for a in failed)


# --------------------------------------------------------------------------------------
# Plan: the options against the model, the output folder and the verification images
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What one export will build, checked before anything is written."""

    options: ExportOptions
    out: Path
    scales: tuple[int, ...]
    names: tuple[str, ...]
    images: dict[int, list[VerificationImage]]
    foreign: str | None
    old_versions: dict[str, list[int]]
    #: The web page's JPEG-robust model per exported scale (``options.web_jpeg_weights``, resolved).
    web_jpeg: dict[int, Path] = dataclasses.field(default_factory=dict)

    @property
    def keep_versions(self) -> bool:
        """Whether ``out``'s earlier SavedModel versions are kept (not when replacing another model)."""
        return self.foreign is None

    def new_version(self, name: str) -> int:
        old = self.old_versions[name]
        return max(old) + 1 if old else 1

    @property
    def total_steps(self) -> int:
        per_scale = sum(2 if (f == "tflite" and self.options.tile) else 1 for f, _ in self.options.jobs)
        return per_scale * len(self.scales)

    def initial_notes(self) -> list[str]:
        notes = [f"{f} does not support {', '.join(qs)}: skipped" for f, qs in self.options.skipped.items() if qs]
        if self.foreign:
            notes.append(f"--overwrite: replaced the export of another model ({self.foreign})")
        return notes


def _output_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.is_symlink() and out.is_dir():  # replace the folder it points to, keep the link
        out = Path(os.path.realpath(out))
    if os.path.lexists(out) and not out.is_dir():
        raise ExportUsageError(f"--out {out}: exists and is not a folder")
    return out


def _verification_images(options: ExportOptions, scales: tuple[int, ...]) -> dict[int, list[VerificationImage]]:
    """Verification LR/HR pairs per scale (a benchmark set's HR may differ per scale)."""
    read_cache: dict[Path, np.ndarray] = {}
    images_by_scale = {}
    for s in scales:
        hr_images = list(options.verify_images) if options.verify_images is not None else None
        if hr_images is None and options.verify_dir is not None:
            hr_images = []
            for n, path in verify_hr_files(options.verify_dir, s):
                if path not in read_cache:
                    read_cache[path] = read_rgb(path)
                hr_images.append((n, read_cache[path]))
        images_by_scale[s] = verification_images(s, hr_images, options.verify_max_side)
        if "savedmodel" in options.formats:
            _check_fits_max_pixels(images_by_scale[s], options.max_pixels)
    return images_by_scale


def _check_fits_max_pixels(images: list[VerificationImage], max_pixels: int) -> None:
    for im in images:
        px = im.lr.shape[0] * im.lr.shape[1]
        if px > max_pixels:
            raise ExportUsageError(
                f"--max-pixels {max_pixels}: verification image {im.name} is "
                f"{im.lr.shape[1]}x{im.lr.shape[0]} = {px} LR px, past the limit; "
                "lower --verify-max-side or raise --max-pixels")


def plan_export(model: keras.Model, config: ModelConfig, out: str | os.PathLike, options: ExportOptions,
                say: Progress = lambda _m: None) -> ExportPlan:
    """Checks ``options`` against ``model`` and ``out`` and reads the verification images.

    Raises :class:`ExportUsageError` (nothing written) for a scale the model lacks, an
    ``out`` that is a file or holds another model's export (unless ``options.overwrite``),
    verification images past ``max_pixels``; for ``web``, installs the pinned ONNX Runtime Web
    when missing (:func:`~edsr_tf.export.web_runtime.ensure`: ExportUsageError without npm), and
    :class:`ExportUsageError` when OpenCV 5 is missing (``opencv``). Removes what killed exports
    to ``out`` left behind.
    """
    if "web" in options.formats:
        web_runtime.ensure(options.web_runtime, say)  # installed now (npm) or a clear error, before any work
    if "opencv" in options.formats:
        opencv.require_opencv()  # OpenCV missing (or 4.x): ExportUsageError before anything is written
    scales = tuple(config.scales) if options.scale is None else (options.scale,)
    for s in scales:
        try:
            model_for_scale(model, config, s)
        except ValueError as e:
            raise ExportUsageError(f"--scale: {e}") from None
    out = _output_folder(out)
    clean_stale(out, say)  # first: it may put back an export a killed run had moved aside
    foreign = foreign_export(out, config)
    if foreign and not options.overwrite:
        raise ExportUsageError(
            f"--out {out}: holds the export of another model ({foreign}); choose an empty folder, "
            "or pass --overwrite to replace that export")
    names = tuple(artifact_name(config, s) for s in scales)
    web_jpeg = _web_jpeg_plan(options, scales)
    images = _verification_images(options, scales)
    old_versions = {n: (savedmodel_versions(out / "savedmodel" / n) if foreign is None else []) for n in names}
    return ExportPlan(options, out, scales, names, images, foreign, old_versions, web_jpeg)


def _web_jpeg_plan(options: ExportOptions, scales: tuple[int, ...]) -> dict[int, Path]:
    """``{scale: weights file}`` of ``options.web_jpeg_weights``; :class:`ExportUsageError` (one
    line, naming the flag) for a model that cannot be read or is not a single-scale model of an
    exported scale."""
    spec = options.web_jpeg_weights
    if spec is None or "web" not in options.formats:
        return {}
    from edsr_tf.models.io import ModelFileError, read_config, resolve_weights

    try:
        path = resolve_weights(spec)
        jpeg_config = read_config(path)
    except ModelFileError as e:
        raise ExportUsageError(f"--web_jpeg_model {spec}: {first_line(e)}") from None
    exported = "/".join(f"x{s}" for s in scales)
    if len(jpeg_config.scales) != 1 or jpeg_config.scales[0] not in scales:
        have = "/".join(f"x{s}" for s in jpeg_config.scales)
        raise ExportUsageError(f"--web_jpeg_model {spec}: a {have} model; the page's JPEG model must be a "
                               f"single-scale model of the exported scale ({exported})")
    return {jpeg_config.scales[0]: path}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """int8 calibration patches: for the dynamic-shape models and for the tile models."""

    full: np.ndarray | None = None
    tile: np.ndarray | None = None


def calibration_data(options: ExportOptions, say: Progress = lambda _m: None) -> Calibration:
    """The calibration patches an int8 job needs (none without one)."""
    if not any(q == "int8" for _, q in options.jobs):
        return Calibration()
    say(f"calibration: {options.num_calibration} patches of {options.calibration_size}px from "
        f"{options.calibration_dir or 'the embedded sample photographs'}")
    full = calibration_patches(options.calibration_dir, num_patches=options.num_calibration,
                               patch_size=options.calibration_size)
    tile = None
    if options.tile:
        tile = calibration_patches(options.calibration_dir, num_patches=options.num_calibration,
                                   patch_size=options.tile)
    return Calibration(full, tile)


# --------------------------------------------------------------------------------------
# Per scale: the Keras reference; per format: the artifacts to verify
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ScaleTarget:
    """One scale of the model: its network, the Keras reference and the images it is verified on."""

    scale: int
    name: str
    net: keras.Model
    reference: KerasRunner
    images: list[VerificationImage]
    conv_dir: Path | None = None  # the SavedModel TFLite/ONNX/web convert from


@dataclasses.dataclass
class Candidate:
    """An artifact written into staging, ready to be verified."""

    fmt: str
    quant: str
    path: Path
    runner: object
    images: list[VerificationImage]
    extra: dict = dataclasses.field(default_factory=dict)
    post: Callable[[], dict] | None = None  # further checks once parity passed; raises VerificationError
    rounding: float = 0.0  # the runtime rounds its output (OpenCV: uint8): fp32 parity allows this much more


def keras_reference(target: ScaleTarget, latency_runs: int, weights: str | None) -> dict:
    """The Keras model's own PSNR and latency on the verification images (the report's reference)."""
    rec = verify_runner(target.reference, target.reference, target.images, target.scale, tolerance=None,
                        latency_runs=latency_runs, label=f"keras {target.name}")
    return {
        "runtime": "keras",
        "weights": str(weights or "(in memory)"),
        "size_bytes": int(Path(weights).stat().st_size) if weights else 0,
        **{k: rec.get(k) for k in ("psnr_db", "latency_ms", "latency_input", "verified_on")},
    }


class _Build:
    """The state of one export while it writes, verifies and records artifacts in ``staging``."""

    def __init__(self, plan: ExportPlan, calibration: Calibration, staging: Path,
                 weights: str | None, say: Progress, int8_ranges: dict | None = None):
        self.plan, self.options, self.calibration = plan, plan.options, calibration
        self.staging, self.work = staging, staging / ".work"
        self.weights, self.say = weights, say
        self.int8_ranges = int8_ranges
        self.step = 0
        self.artifacts: list[dict] = []
        self.notes = plan.initial_notes()
        self.reference: dict[str, dict] = {}
        self.verification: dict = {}
        self.serving: dict[str, dict] = {}

    def target(self, model: keras.Model, config: ModelConfig, scale: int, name: str) -> ScaleTarget:
        """The scale's network and Keras reference (recorded), and its conversion SavedModel if needed."""
        net = model_for_scale(model, config, scale)
        target = ScaleTarget(scale, name, net, KerasRunner(net), self.plan.images[scale])
        ref = keras_reference(target, self.options.latency_runs, self.weights)
        self.reference[name] = ref
        self.verification = {
            "images": ref["verified_on"], "shave": "scale px",
            "tolerance": self.options.tolerance, "latency_runs": self.options.latency_runs,
            "latency_input": ref.get("latency_input"),
        }
        self.say(f"{name}: keras reference PSNR {ref['psnr_db']:.2f} dB on {', '.join(ref['verified_on'])}")
        if any(f in ("tflite", "onnx", "web") for f, _ in self.options.jobs):
            target.conv_dir = export_conversion_savedmodel(inference_model(net), self.work / f"{name}_dynamic")
        return target

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(text)

    def onnx_source(self, target: ScaleTarget) -> Path:
        """The fp32 ONNX conversion (kept in .work: also the int8 and web source, safe from a failure)."""
        source = self.work / f"{target.name}_fp32.onnx"
        if not source.exists():
            onnx_export.convert(target.conv_dir, source)
        return source

    def verify(self, target: ScaleTarget, c: Candidate) -> dict:
        """Runs ``c`` against the Keras reference; the record, ``passed`` False with a ``failure`` if it failed."""
        tol = self.options.tolerance + c.rounding if c.quant == "none" else None
        rec = verify_runner(c.runner, target.reference, c.images, target.scale, tolerance=tol,
                            latency_runs=self.options.latency_runs, label=self._label(target, c))
        rec.update({"model": target.name, "scale": target.scale, "format": c.fmt, "variant": variant_label(c.quant),
                    "path": str(c.path.relative_to(self.staging)), "size_bytes": dir_size(c.path)})
        rec.update(c.extra)
        drop, limit = rec.get("psnr_drop_db"), self.options.max_psnr_drop
        if rec["passed"] and c.quant != "none" and limit is not None and drop is not None and drop > limit:
            rec["passed"] = False
            rec["failure"] = f"PSNR drop {drop:.3f} dB exceeds --max_psnr_drop {limit:g}"
        if rec["passed"] and c.post is not None:
            try:
                rec.update(c.post())
            except VerificationError as e:
                rec["passed"], rec["failure"] = False, str(e)
        rec["written"] = bool(rec["passed"])
        return rec

    def record(self, target: ScaleTarget, c: Candidate) -> None:
        """Verifies ``c`` and adds it to the report; a failing artifact is removed from staging."""
        self.step += 1
        rec = self.verify(target, c)
        self.artifacts.append(rec)
        where = f"[{self.step}/{self.plan.total_steps}] {self._label(target, c)}"
        if not rec["passed"]:
            _remove(c.path)
            self.say(f"{where}: FAILED, left out: {rec['failure']}")
            return
        self.say(f"{where}: {step_line(rec)} ✓")

    @staticmethod
    def _label(target: ScaleTarget, c: Candidate) -> str:
        return f"{c.fmt} {variant_label(c.quant)} {c.path.name if c.fmt != 'savedmodel' else target.name}"


def _savedmodel_artifacts(build: _Build, t: ScaleTarget, quant: str) -> Iterator[Candidate]:
    max_pixels = build.options.max_pixels
    version = build.plan.new_version(t.name)
    path = savedmodel.save_serving_model(t.net, t.scale, build.staging / "savedmodel" / t.name / str(version),
                                         max_pixels=max_pixels)
    runner = savedmodel.SavedModelRunner(path)
    per_px = activation_bytes_per_pixel(t.net)
    serving = build.serving[t.name] = {
        "max_pixels": max_pixels,
        "activation_bytes_per_lr_pixel": per_px,
        "activation_bytes_at_max_pixels": per_px * max_pixels,
    }
    if per_px * max_pixels > LARGE_REQUEST_BYTES:
        build.note(f"savedmodel/{t.name}: a request of --max_pixels {max_pixels} LR px needs "
                   f"~{per_px * max_pixels / 2**30:.1f} GiB of activations "
                   f"({per_px} bytes per LR pixel); lower --max_pixels to fit the server")
    yield Candidate("savedmodel", quant, path, runner, t.images,
                    {"signatures": list(savedmodel.SIGNATURES), "version": version, **serving},
                    post=lambda: {"checks": check_serving_signatures(runner, t.images[0], max_pixels, t.scale)})


def _tflite_artifacts(build: _Build, t: ScaleTarget, quant: str) -> Iterator[Candidate]:
    tile = build.options.tile
    variants = [(None, t.conv_dir, build.calibration.full)]
    if tile:
        tile_dir = build.work / f"{t.name}_tile{tile[0]}x{tile[1]}"
        if not tile_dir.exists():
            export_conversion_savedmodel(inference_model(t.net), tile_dir, (1, tile[0], tile[1], 3))
        variants.append((tile, tile_dir, build.calibration.tile))
    for tl, src, cal in variants:
        suffix = f"_tile{tl[0]}x{tl[1]}" if tl else ""
        path = build.staging / "tflite" / f"{t.name}_{variant_label(quant)}{suffix}.tflite"
        qat = (t.net, build.int8_ranges) if quant == "int8" and build.int8_ranges else None
        tflite.write(tflite.convert(src, quant, cal, qat=qat), path)
        runner = tflite.TFLiteRunner(path)
        yield Candidate("tflite", quant, path, runner, tile_images(t.images, tl, t.scale) if tl else t.images,
                        {"input_dtype": runner.input_dtype.name, "tile": list(tl) if tl else None,
                         "tensor_dtypes": runner.tensor_dtypes()})


def _onnx_artifacts(build: _Build, t: ScaleTarget, quant: str) -> Iterator[Candidate]:
    source = build.onnx_source(t)
    if quant == "none":
        path = build.staging / "onnx" / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
    else:
        qat = (t.net, build.int8_ranges) if build.int8_ranges else None
        path = onnx_export.quantize_int8(source, build.staging / "onnx" / f"{t.name}_int8.onnx",
                                         build.calibration.full, qat=qat)
    yield Candidate("onnx", quant, path, onnx_export.OnnxRunner(path), t.images, {"opset": onnx_export.OPSET})


def _web_artifacts(build: _Build, t: ScaleTarget, quant: str) -> Iterator[Candidate]:
    """The static page: the fp32 ONNX + ONNX Runtime Web (export/web.py), checked in Chromium;
    with ``--web_jpeg_model``, the JPEG-robust model beside it (:func:`_web_jpeg_model`)."""
    source = build.onnx_source(t)
    jpeg = _web_jpeg_model(build, t)
    path, runner, extra, check = web.export_web(build.staging, t.net, t.scale, t.name, source,
                                                t.reference, t.images, weights=build.weights, say=build.say,
                                                node_modules=web_runtime.find(build.options.web_runtime),
                                                jpeg=jpeg)
    yield Candidate("web", quant, path, runner, t.images, extra, post=check)


def _web_jpeg_model(build: _Build, t: ScaleTarget) -> web.JpegModel | None:
    """The page's JPEG-robust model for ``t``'s scale, converted to ONNX as the main model is and
    verified in onnxruntime against its own Keras model on the same images and fp32 tolerance
    (the record says whether it passed; a failure fails the web artifact); None without one."""
    weights = build.plan.web_jpeg.get(t.scale)
    if weights is None:
        return None
    model, config = load_model(weights)
    net = model_for_scale(model, config, t.scale)
    name = web.JPEG_NAME.format(name=t.name)
    conv_dir = export_conversion_savedmodel(inference_model(net), build.work / f"{name}_dynamic")
    source = build.work / f"{name}_fp32.onnx"
    onnx_export.convert(conv_dir, source)
    reference = KerasRunner(net)
    rec = verify_runner(onnx_export.OnnxRunner(source), reference, t.images, t.scale,
                        tolerance=build.options.tolerance, latency_runs=0, label=f"web jpeg {name}")
    verdict = (f"max|Δ| {rec['max_abs_diff']:.2e} against its Keras model" if rec["passed"]
               else f"FAILED: {rec['failure']}")
    build.say(f"{name}: the page's JPEG-robust model ({Path(weights).name}) in onnxruntime: {verdict}")
    return web.JpegModel(name, net, source, reference, str(weights), rec)


def _opencv_artifacts(build: _Build, t: ScaleTarget, quant: str) -> Iterator[Candidate]:
    """The ONNX file for OpenCV's dnn_superres (export/opencv.py), run through ``upsample`` as users do."""
    path = opencv.convert(t.net, build.staging / "opencv" / f"{t.name}.onnx", build.work)
    runner = opencv.OpenCVRunner(path, t.scale)
    extra = {"opencv": opencv.version(), "algorithm": opencv.ALGORITHM, "input": "BGR uint8 (cv2.imread)",
             "output": "BGR uint8, rounded by OpenCV",
             "usage": f'sr.readModel("{path.name}"); sr.setModel("{opencv.ALGORITHM}", {t.scale})'}
    yield Candidate("opencv", quant, path, runner, t.images, extra, rounding=opencv.OUTPUT_ROUNDING,
                    post=lambda: opencv.check_levels(runner, t.reference, t.images))


#: Per format: ``(build, target, quantization)`` → the artifacts to verify, written one at a time.
_BUILDERS: dict[str, Callable[[_Build, ScaleTarget, str], Iterator[Candidate]]] = {
    "savedmodel": _savedmodel_artifacts,
    "tflite": _tflite_artifacts,
    "onnx": _onnx_artifacts,
    "opencv": _opencv_artifacts,
    "web": _web_artifacts,
}


# --------------------------------------------------------------------------------------
# Report, install
# --------------------------------------------------------------------------------------


def _savedmodel_versions(build: _Build) -> dict[str, list[int]]:
    """The versions ``out`` will hold per model; notes the kept earlier ones."""
    versions = {}
    for n in build.plan.names:
        old = build.plan.old_versions[n]
        written = [a["version"] for a in build.artifacts
                   if a["format"] == "savedmodel" and a["model"] == n and a["passed"]]
        versions[n] = sorted(set(old) | set(written))
        if old and written:
            build.notes.append(
                f"savedmodel/{n}: wrote version {written[0]}; kept earlier versions "
                f"{', '.join(map(str, old))} (TF Serving serves the latest; "
                "its model_version_policy can pin or roll back)")
    return versions


def build_report(build: _Build, config: ModelConfig) -> dict:
    """report.json's content: the artifacts (each verified, ``passed`` per artifact and overall),
    the Keras reference per model, the options, machine and library versions."""
    import onnxruntime
    import tensorflow as tf

    options = build.options
    failed = [a for a in build.artifacts if not a["passed"]]
    versions = _savedmodel_versions(build) if "savedmodel" in options.formats else None
    report = {
        "models": list(build.plan.names),
        "weights": str(build.weights or "(in memory)"),
        "config": config.to_dict(),
        "formats": list(options.formats),
        "quantize": list(options.quantize),
        "tile": list(options.tile) if options.tile else None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "machine_threads": os.cpu_count(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "onnxruntime": onnxruntime.__version__,
                     **({"opencv": opencv.version()} if "opencv" in options.formats else {})},
        "verification": build.verification,
        "reference": build.reference,
        "artifacts": build.artifacts,
        "passed": not failed,
        "failed": [{k: a.get(k) for k in ("model", "format", "variant", "tile", "path", "failure",
                                           "max_abs_diff", "psnr_drop_db")} for a in failed],
        "notes": build.notes,
    }
    if versions is not None:
        report["savedmodel_versions"] = versions
        report["serving"] = {"max_pixels": options.max_pixels, "models": build.serving}
    return report


def _install_verified(report: dict, staging: Path, plan: ExportPlan) -> None:
    """Writes the report into ``staging`` and swaps it in as ``out``; none of it if every artifact failed."""
    failed = report["failed"]
    if failed and len(failed) == len(report["artifacts"]):
        raise VerificationError(
            f"every artifact failed verification, nothing was written: {_failure_summary(failed)}", report)
    for folder in staging.iterdir():  # a format folder emptied by failures
        with contextlib.suppress(OSError):
            folder.rmdir()
    write_report(report, staging)
    install(staging, plan.out, keep_versions=plan.keep_versions)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A staging folder next to ``out``, deleted on any error; OS/TF errors become one-line ExportErrors."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out)
    try:
        try:
            yield staging
        except (ExportError, KeyboardInterrupt):
            raise
        except Exception as e:
            err = _work_error(e, out)
            if err is None:
                raise
            raise err from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export_model(
    model: keras.Model,
    config: ModelConfig,
    out: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    weights: str | None = None,
    int8_ranges: dict[str, tuple[float, float]] | None = None,
    progress: Progress | None = _stderr,
) -> dict:
    """Exports ``model`` to ``out`` as ``options`` asks (formats × quantizations), verified; returns the report.

    Layout: ``out/savedmodel/<name>/<version>/`` (TF Serving), ``out/tflite/<name>_<variant>[_tileHxW].tflite``,
    ``out/onnx/<name>_<variant>.onnx``, ``out/opencv/<name>.onnx`` (OpenCV dnn_superres), ``out/web/``,
    ``out/report.json``, ``out/report.md``. ``<name>``
    is e.g. ``edsr_baseline_x2``; an MDSR model gives one artifact per scale unless ``options.scale`` is set.

    ``out`` is replaced as one unit (:func:`~edsr_tf.export.common.install`): a re-export of
    the same model (same config) drops the previous TFLite/ONNX files and reports, keeps
    the earlier SavedModel versions and writes the next one (``1/``, ``2/``, ...), and
    keeps files of the user's. An ``out`` holding another model's export is refused
    (:class:`ExportUsageError`) unless ``options.overwrite``; then its versions are not kept.
    The SavedModel signatures refuse inputs past ``options.max_pixels`` LR pixels.

    Every artifact is verified. One that fails (fp32: differs from Keras by more than
    ``tolerance``; quantized: loses more than ``max_psnr_drop`` dB, if set) is left out,
    listed in the report (``passed: false`` with the failure), and :class:`VerificationError`
    (carrying the report) is raised after the others are installed (none installed, and no
    report written, if none passed). The Keras model's own PSNR/latency is the report's
    ``reference`` section, not an artifact.

    ``int8_ranges``: activation ranges of a quantization-aware trained model
    (:mod:`edsr_tf.models.qat`), used by the int8 exports instead of a calibration; by
    default those stored in ``weights``, if any.

    ``weights``: the file the model came from (reported). Front ends turn text
    (``"savedmodel,tflite"``, ``"128,128"``) into options with :meth:`ExportOptions.parse`.
    """
    say = progress or (lambda _m: None)
    options = ExportOptions() if options is None else options
    if int8_ranges is None and weights:
        from edsr_tf.models import read_int8_ranges

        int8_ranges = read_int8_ranges(weights)
    plan = plan_export(model, config, out, options, say)
    calibration = calibration_data(options, say)
    with _staging(plan.out) as staging:
        build = _Build(plan, calibration, staging, weights, say, int8_ranges)
        if int8_ranges and any(q == "int8" for _, q in options.jobs):
            build.note("int8: activation ranges from quantization-aware training (not calibrated)")
        for scale, name in zip(plan.scales, plan.names):
            target = build.target(model, config, scale, name)
            for fmt, quant in options.jobs:
                for candidate in _BUILDERS[fmt](build, target, quant):
                    build.record(target, candidate)
        shutil.rmtree(build.work, ignore_errors=True)
        report = build_report(build, config)
        _install_verified(report, staging, plan)
    say("")
    say(table(report))
    failed = report["failed"]
    if failed:
        raise VerificationError(
            f"{len(failed)} of {len(report['artifacts'])} artifacts failed verification and were left out of "
            f"{plan.out} (see report.md): {_failure_summary(failed)}", report)
    say(f"\nwrote {plan.out} (report.json, report.md)")
    return report
