"""Builds, verifies and reports every requested export of one model.

Everything is written into a hidden staging folder ``.<out>.partial-<host>-<pid>-...``
next to ``out``, verified there, and then replaces ``out`` as one unit. On any error
the staging folder is deleted, so a failed export leaves no artifact behind; one left
by a killed process is removed by the next export to the same ``out``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from edsr_tf.export import onnx as onnx_export
from edsr_tf.export import savedmodel, tflite, web
from edsr_tf.export.calibration import calibration_patches, read_rgb
from edsr_tf.export.common import (
    DEFAULT_FORMATS,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    FP32_TOLERANCE,
    QUANTIZATIONS,
    SUPPORTED,
    ExportError,
    ExportUsageError,
    Progress,
    VerificationError,
    artifact_name,
    clean_stale,
    dir_size,
    export_conversion_savedmodel,
    first_line,
    foreign_export,
    inference_model,
    install,
    is_disk_full,
    savedmodel_versions,
    staging_dir,
    variant_label,
)
from edsr_tf.export.report import table, write_report
from edsr_tf.export.verify import (
    MAX_LR_SIDE,
    KerasRunner,
    check_serving_signatures,
    tile_images,
    verification_images,
    verify_hr_files,
    verify_runner,
)
from edsr_tf.inference import activation_bytes_per_pixel
from edsr_tf.models import ModelConfig, load_model, model_for_scale


#: Activation memory of one request at --max-pixels above which the report warns.
LARGE_REQUEST_BYTES = 8 << 30


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_list(value: str | Sequence[str], allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → validated tuple in ``allowed`` order."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise ExportUsageError(f"{flag}: empty; expected a comma-separated subset of {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ExportUsageError(f"{flag}: unknown value(s) {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return tuple(a for a in allowed if a in items)


def parse_tile(value: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"H,W"`` (or ``"N"`` for a square) → ``(H, W)`` positive ints."""
    if value is None or value == "":
        return None
    try:
        parts = [int(v) for v in value.split(",")] if isinstance(value, str) else [int(v) for v in value]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ExportUsageError(f"--tile {value!r}: expected H,W with positive integers, e.g. 128,128")
    return parts[0], parts[1]


def export(
    weights: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scale: int | None = None,
    **kwargs,
) -> dict:
    """Loads ``weights`` (a ``.weights.h5``/``.keras`` with embedded config) and exports it.

    See :func:`export_model` for the options. Raises ``ModelFileError`` for an
    unreadable or mismatched weights file before anything is written.
    """
    model, config = load_model(weights)
    return export_model(model, config, out, scale=scale, weights=str(weights), **kwargs)


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


def export_model(
    model: keras.Model,
    config: ModelConfig,
    out: str | os.PathLike,
    *,
    scale: int | None = None,
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    quantize: str | Sequence[str] = ("none",),
    calibration_dir: str | os.PathLike | None = None,
    tile: str | Sequence[int] | None = None,
    verify_dir: str | os.PathLike | None = None,
    verify_images: list[tuple[str, np.ndarray]] | None = None,
    verify_max_side: int | None = MAX_LR_SIDE,
    tolerance: float = FP32_TOLERANCE,
    max_psnr_drop: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    latency_runs: int = 5,
    num_calibration: int = 32,
    calibration_size: int = 64,
    weights: str | None = None,
    progress: Progress | None = _stderr,
) -> dict:
    """Exports ``model`` to ``out`` in each of ``formats`` × ``quantize``, verified; returns the report.

    Layout: ``out/savedmodel/<name>/<version>/`` (TF Serving), ``out/tflite/<name>_<variant>[_tileHxW].tflite``,
    ``out/onnx/<name>_<variant>.onnx``, ``out/report.json``, ``out/report.md``. ``<name>`` is
    e.g. ``edsr_baseline_x2``; an MDSR model gives one artifact per scale unless ``scale`` is set.

    ``out`` is replaced as one unit (:func:`~edsr_tf.export.common.install`): a re-export of
    the same model (same config) drops the previous TFLite/ONNX files and reports, keeps
    the earlier SavedModel versions and writes the next one (``1/``, ``2/``, ...), and
    keeps files of the user's. An ``out`` holding another model's export is refused
    (:class:`ExportUsageError`) unless ``overwrite``; then its versions are not kept.
    The SavedModel signatures refuse inputs past ``max_pixels`` LR pixels.

    Every artifact is verified. One that fails (fp32: differs from Keras by more than
    ``tolerance``; quantized: loses more than ``max_psnr_drop`` dB, if set) is left out,
    listed in the report with what failed, and :class:`VerificationError` is raised
    after the others are installed (none installed if none passed).
    """
    say = progress or (lambda _m: None)
    formats = parse_list(formats, FORMATS, "--formats")
    if "web" in formats:
        web.runtime_dist()  # a missing npm runtime fails here, naming the install command
    quants = parse_list(quantize, QUANTIZATIONS, "--quantize")
    tile_hw = parse_tile(tile)
    if tile_hw and "tflite" not in formats:
        raise ExportUsageError("--tile applies to TFLite exports only: add tflite to --formats")
    for q in quants:
        if not any(q in SUPPORTED[f] for f in formats):
            supported = "; ".join(f + ": " + "/".join(SUPPORTED[f]) for f in formats)
            raise ExportUsageError(f"--quantize {q}: no requested format supports it ({supported})")
    if not (tolerance > 0):
        raise ExportUsageError(f"--tolerance must be > 0, got {tolerance}")
    if int(max_pixels) < 1:
        raise ExportUsageError(f"--max-pixels must be >= 1, got {max_pixels}")
    max_pixels = int(max_pixels)
    scales = list(config.scales) if scale is None else [int(scale)]
    for s in scales:
        try:
            model_for_scale(model, config, s)
        except ValueError as e:
            raise ExportUsageError(f"--scale: {e}") from None
    out = Path(out)
    if out.is_symlink() and out.is_dir():  # replace the folder it points to, keep the link
        out = Path(os.path.realpath(out))
    if os.path.lexists(out) and not out.is_dir():
        raise ExportUsageError(f"--out {out}: exists and is not a folder")
    clean_stale(out, say)  # first: it may put back an export a killed run had moved aside
    foreign = foreign_export(out, config)
    if foreign and not overwrite:
        raise ExportUsageError(
            f"--out {out}: holds the export of another model ({foreign}); choose an empty folder, "
            "or pass --overwrite to replace that export")
    keep_versions = foreign is None

    jobs = [(f, q) for f in formats for q in quants if q in SUPPORTED[f]]
    skipped = {f: [q for q in quants if q not in SUPPORTED[f]] for f in formats}
    names = [artifact_name(config, s) for s in scales]

    # verification images, per scale (a benchmark set's HR may differ per scale)
    read_cache: dict[Path, np.ndarray] = {}
    images_by_scale = {}
    for s in scales:
        hr_images = verify_images
        if hr_images is None and verify_dir is not None:
            hr_images = []
            for n, path in verify_hr_files(verify_dir, s):
                if path not in read_cache:
                    read_cache[path] = read_rgb(path)
                hr_images.append((n, read_cache[path]))
        images_by_scale[s] = verification_images(s, hr_images, verify_max_side)
        if "savedmodel" in formats:
            for im in images_by_scale[s]:
                px = im.lr.shape[0] * im.lr.shape[1]
                if px > max_pixels:
                    raise ExportUsageError(
                        f"--max-pixels {max_pixels}: verification image {im.name} is "
                        f"{im.lr.shape[1]}x{im.lr.shape[0]} = {px} LR px, past the limit; "
                        "lower --verify-max-side or raise --max-pixels")

    needs_calibration = any(q == "int8" for _, q in jobs)
    calib = calib_tile = None
    if needs_calibration:
        say(f"calibration: {num_calibration} patches of {calibration_size}px from "
            f"{calibration_dir or 'the embedded sample photographs'}")
        calib = calibration_patches(calibration_dir, num_patches=num_calibration, patch_size=calibration_size)
        if tile_hw:
            calib_tile = calibration_patches(calibration_dir, num_patches=num_calibration, patch_size=tile_hw)

    old_versions = {n: (savedmodel_versions(out / "savedmodel" / n) if keep_versions else []) for n in names}
    new_version = {n: (max(v) + 1 if v else 1) for n, v in old_versions.items()}

    per_model_steps = sum(1 + (1 if (f == "tflite" and tile_hw) else 0) for f, _ in jobs)
    total = per_model_steps * len(scales)
    step = 0
    notes = [f"{f} does not support {', '.join(qs)}: skipped" for f, qs in skipped.items() if qs]
    if foreign:
        notes.append(f"--overwrite: replaced the export of another model ({foreign})")
    artifacts: list[dict] = []
    keras_psnr: dict[str, float] = {}
    verification = {}
    serving: dict[str, dict] = {}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out)
    work = staging / ".work"
    try:
        try:
            for s, name in zip(scales, names):
                sub = model_for_scale(model, config, s)
                reference = KerasRunner(sub)
                images = images_by_scale[s]
                ref_rec = verify_runner(reference, reference, images, s, tolerance=None,
                                        latency_runs=latency_runs, label=f"keras {name}")
                keras_psnr[name] = ref_rec["psnr_db"]
                verification = {
                    "images": ref_rec["verified_on"], "shave": "scale px",
                    "tolerance": tolerance, "latency_runs": latency_runs,
                    "latency_input": ref_rec.get("latency_input"),
                }
                artifacts.append({"model": name, "scale": s, "format": "keras", "variant": "fp32",
                                  "path": str(weights or "(in memory)"), "reference": True,
                                  "size_bytes": int(Path(weights).stat().st_size) if weights else 0,
                                  **ref_rec})
                say(f"{name}: keras reference PSNR {ref_rec['psnr_db']:.2f} dB on "
                    f"{', '.join(ref_rec['verified_on'])}")
                conv_dir = None
                if any(f in ("tflite", "onnx", "web") for f, _ in jobs):
                    conv_dir = export_conversion_savedmodel(inference_model(sub), work / f"{name}_dynamic")

                def record(fmt, quant, path, runner, imgs, extra=None, post=None):
                    nonlocal step
                    step += 1
                    label = f"{fmt} {variant_label(quant)} {path.name if fmt != 'savedmodel' else name}"
                    tol = tolerance if quant == "none" else None
                    rec = verify_runner(runner, reference, imgs, s, tolerance=tol,
                                        latency_runs=latency_runs, label=label)
                    rec.update({"model": name, "scale": s, "format": fmt, "variant": variant_label(quant),
                                "path": str(path.relative_to(staging)), "size_bytes": dir_size(path)})
                    rec.update(extra or {})
                    drop = rec.get("psnr_drop_db")
                    if (rec["passed"] and quant != "none" and max_psnr_drop is not None
                            and drop is not None and drop > max_psnr_drop):
                        rec["passed"] = False
                        rec["failure"] = f"PSNR drop {drop:.3f} dB exceeds --max-psnr-drop {max_psnr_drop:g}"
                    if rec["passed"] and post is not None:
                        try:
                            rec.update(post())
                        except VerificationError as e:
                            rec["passed"], rec["failure"] = False, str(e)
                    rec["written"] = bool(rec["passed"])
                    artifacts.append(rec)
                    if not rec["passed"]:
                        _remove(path)
                        say(f"[{step}/{total}] {label}: FAILED, left out: {rec['failure']}")
                        return
                    parity = (f"max|Δ| {rec['max_abs_diff']:.2e}" if quant == "none"
                              else f"PSNR {rec['psnr_db']:.2f} dB (drop {rec['psnr_drop_db']:+.3f} dB)")
                    say(f"[{step}/{total}] {label}: {rec['size_bytes'] / 1e6:.2f} MB, {parity}, "
                        f"{rec.get('latency_ms', float('nan')):.1f} ms ✓")

                for fmt, quant in jobs:
                    if fmt == "savedmodel":
                        version = new_version[name]
                        path = savedmodel.save_serving_model(
                            sub, s, staging / "savedmodel" / name / str(version), max_pixels=max_pixels)
                        runner = savedmodel.SavedModelRunner(path)
                        per_px = activation_bytes_per_pixel(sub)
                        serving[name] = {
                            "max_pixels": max_pixels,
                            "activation_bytes_per_lr_pixel": per_px,
                            "activation_bytes_at_max_pixels": per_px * max_pixels,
                        }
                        if per_px * max_pixels > LARGE_REQUEST_BYTES:
                            note = (f"savedmodel/{name}: a request of --max-pixels {max_pixels} LR px needs "
                                    f"~{per_px * max_pixels / 2**30:.1f} GiB of activations "
                                    f"({per_px} bytes per LR pixel); lower --max-pixels to fit the server")
                            notes.append(note)
                            say(note)
                        record(fmt, quant, path, runner, images,
                               {"signatures": list(savedmodel.SIGNATURES), "version": version,
                                **serving[name]},
                               post=lambda runner=runner: {
                                   "checks": check_serving_signatures(runner, images[0], max_pixels)})
                    elif fmt == "tflite":
                        variants = [(None, conv_dir, calib)]
                        if tile_hw:
                            tile_dir = work / f"{name}_tile{tile_hw[0]}x{tile_hw[1]}"
                            if not tile_dir.exists():
                                export_conversion_savedmodel(inference_model(sub), tile_dir,
                                                             (1, tile_hw[0], tile_hw[1], 3))
                            variants.append((tile_hw, tile_dir, calib_tile))
                        for t, src, cal in variants:
                            suffix = f"_tile{t[0]}x{t[1]}" if t else ""
                            path = staging / "tflite" / f"{name}_{variant_label(quant)}{suffix}.tflite"
                            tflite.write(tflite.convert(src, quant, cal), path)
                            runner = tflite.TFLiteRunner(path)
                            imgs = tile_images(images, t, s) if t else images
                            record(fmt, quant, path, runner, imgs,
                                   {"input_dtype": runner.input_dtype.name, "tile": list(t) if t else None,
                                    "tensor_dtypes": runner.tensor_dtypes()})
                    elif fmt == "onnx":
                        source = work / f"{name}_fp32.onnx"  # also the int8 source: kept out of a failure
                        if not source.exists():
                            onnx_export.convert(conv_dir, source)
                        if quant == "none":
                            path = staging / "onnx" / source.name
                            path.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(source, path)
                        else:
                            path = onnx_export.quantize_int8(
                                source, staging / "onnx" / f"{name}_int8.onnx", calib)
                        runner = onnx_export.OnnxRunner(path)
                        record(fmt, quant, path, runner, images, {"opset": onnx_export.OPSET})
                    elif fmt == "web":  # static page: the fp32 ONNX + ONNX Runtime Web (export/web.py)
                        source = work / f"{name}_fp32.onnx"
                        if not source.exists():
                            onnx_export.convert(conv_dir, source)
                        path, runner, extra, check = web.export_web(
                            staging, sub, s, name, source, reference, images, weights=weights, say=say)
                        record(fmt, quant, path, runner, images, extra, post=check)
            shutil.rmtree(work, ignore_errors=True)
            import onnxruntime
            import tensorflow as tf

            produced = [a for a in artifacts if not a.get("reference")]
            failed = [a for a in produced if not a["passed"]]
            versions = {}
            if "savedmodel" in formats:
                for n in names:
                    written = [a["version"] for a in produced
                               if a["format"] == "savedmodel" and a["model"] == n and a["passed"]]
                    versions[n] = sorted(set(old_versions[n]) | set(written))
                    if old_versions[n] and written:
                        notes.append(
                            f"savedmodel/{n}: wrote version {written[0]}; kept earlier versions "
                            f"{', '.join(map(str, old_versions[n]))} (TF Serving serves the latest; "
                            "its model_version_policy can pin or roll back)")
            report = {
                "models": names,
                "weights": str(weights or "(in memory)"),
                "config": config.to_dict(),
                "formats": list(formats),
                "quantize": list(quants),
                "tile": list(tile_hw) if tile_hw else None,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
                "machine_threads": os.cpu_count(),
                "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                             "onnxruntime": onnxruntime.__version__},
                "verification": verification,
                "keras_psnr_db": keras_psnr,
                "artifacts": artifacts,
                "passed": not failed,
                "failed": [{k: a.get(k) for k in ("model", "format", "variant", "tile", "path", "failure",
                                                   "max_abs_diff", "psnr_drop_db")} for a in failed],
                "notes": notes,
            }
            if "savedmodel" in formats:
                report["savedmodel_versions"] = versions
                report["serving"] = {"max_pixels": max_pixels, "models": serving}
            if failed and len(failed) == len(produced):
                raise VerificationError(
                    f"every artifact failed verification, nothing was written: {_failure_summary(failed)}")
            for folder in staging.iterdir():  # a format folder emptied by failures
                with contextlib.suppress(OSError):
                    folder.rmdir()
            write_report(report, staging)
            install(staging, out, keep_versions=keep_versions)
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
    say("")
    say(table(report))
    if failed:
        raise VerificationError(
            f"{len(failed)} of {len(produced)} artifacts failed verification and were left out of {out} "
            f"(see report.md): {_failure_summary(failed)}", report)
    say(f"\nwrote {out} (report.json, report.md)")
    return report
