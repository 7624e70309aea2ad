"""Builds, verifies and reports every requested export of one model.

Everything is written into a hidden staging folder next to ``out``; it is moved
into place only after every fp32 export has matched the Keras model. On any error
the staging folder is deleted, so a failed export leaves no artifact behind.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from edsr_tf.export import onnx as onnx_export
from edsr_tf.export import savedmodel, tflite
from edsr_tf.export.calibration import calibration_patches, load_images
from edsr_tf.export.common import (
    FORMATS,
    FP32_TOLERANCE,
    QUANTIZATIONS,
    SUPPORTED,
    ExportError,
    Progress,
    VerificationError,
    artifact_name,
    dir_size,
    export_conversion_savedmodel,
    inference_model,
    move_into_place,
    variant_label,
)
from edsr_tf.export.report import table, write_report
from edsr_tf.export.verify import (
    MAX_LR_SIDE,
    KerasRunner,
    check_serving_signatures,
    tile_images,
    verification_images,
    verify_runner,
)
from edsr_tf.models import ModelConfig, load_model, model_for_scale


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_list(value: str | Sequence[str], allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → validated tuple in ``allowed`` order."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise ExportError(f"{flag}: empty; expected a comma-separated subset of {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ExportError(f"{flag}: unknown value(s) {', '.join(bad)}; expected some of {', '.join(allowed)}")
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
        raise ExportError(f"--tile {value!r}: expected H,W with positive integers, e.g. 128,128")
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


def export_model(
    model: keras.Model,
    config: ModelConfig,
    out: str | os.PathLike,
    *,
    scale: int | None = None,
    formats: str | Sequence[str] = FORMATS,
    quantize: str | Sequence[str] = ("none",),
    calibration_dir: str | os.PathLike | None = None,
    tile: str | Sequence[int] | None = None,
    verify_dir: str | os.PathLike | None = None,
    verify_images: list[tuple[str, np.ndarray]] | None = None,
    verify_max_side: int | None = MAX_LR_SIDE,
    tolerance: float = FP32_TOLERANCE,
    max_psnr_drop: float | None = None,
    latency_runs: int = 5,
    num_calibration: int = 32,
    calibration_size: int = 64,
    weights: str | None = None,
    progress: Progress | None = _stderr,
) -> dict:
    """Exports ``model`` to ``out`` in each of ``formats`` × ``quantize``, verified; returns the report.

    Layout: ``out/savedmodel/<name>/1/`` (TF Serving), ``out/tflite/<name>_<variant>[_tileHxW].tflite``,
    ``out/onnx/<name>_<variant>.onnx``, ``out/report.json``, ``out/report.md``. ``<name>`` is
    e.g. ``edsr_baseline_x2``; an MDSR model gives one artifact per scale unless ``scale`` is set.
    fp32 exports that differ from Keras by more than ``tolerance`` raise :class:`VerificationError`;
    quantized ones raise it only if ``max_psnr_drop`` (dB) is set and exceeded.
    """
    say = progress or (lambda _m: None)
    formats = parse_list(formats, FORMATS, "--formats")
    quants = parse_list(quantize, QUANTIZATIONS, "--quantize")
    tile_hw = parse_tile(tile)
    if tile_hw and "tflite" not in formats:
        raise ExportError("--tile applies to TFLite exports only: add tflite to --formats")
    for q in quants:
        if not any(q in SUPPORTED[f] for f in formats):
            supported = "; ".join(f + ": " + "/".join(SUPPORTED[f]) for f in formats)
            raise ExportError(f"--quantize {q}: no requested format supports it ({supported})")
    if not (tolerance > 0):
        raise ExportError(f"--tolerance must be > 0, got {tolerance}")
    scales = list(config.scales) if scale is None else [int(scale)]
    for s in scales:
        try:
            model_for_scale(model, config, s)
        except ValueError as e:
            raise ExportError(f"--scale: {e}") from None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")

    jobs = [(f, q) for f in formats for q in quants if q in SUPPORTED[f]]
    skipped = {f: [q for q in quants if q not in SUPPORTED[f]] for f in formats}
    needs_calibration = any(q == "int8" for _, q in jobs)
    calib = calib_tile = None
    if needs_calibration:
        say(f"calibration: {num_calibration} patches of {calibration_size}px from "
            f"{calibration_dir or 'the embedded sample photographs'}")
        calib = calibration_patches(calibration_dir, num_patches=num_calibration, patch_size=calibration_size)
        if tile_hw:
            calib_tile = calibration_patches(calibration_dir, num_patches=num_calibration, patch_size=tile_hw)
    hr_images = verify_images
    if hr_images is None and verify_dir is not None:
        hr_images = load_images(verify_dir, flag="--verify-dir")

    per_model_steps = sum(1 + (1 if (f == "tflite" and tile_hw) else 0) for f, _ in jobs)
    total = per_model_steps * len(scales)
    step = 0
    notes = [f"{f} does not support {', '.join(qs)}: skipped" for f, qs in skipped.items() if qs]
    artifacts: list[dict] = []
    keras_psnr: dict[str, float] = {}
    names = [artifact_name(config, s) for s in scales]
    verification = {}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    work = staging / ".work"
    try:
        for s, name in zip(scales, names):
            sub = model_for_scale(model, config, s)
            reference = KerasRunner(sub)
            images = verification_images(s, hr_images, verify_max_side)
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
            if any(f in ("tflite", "onnx") for f, _ in jobs):
                conv_dir = export_conversion_savedmodel(inference_model(sub), work / f"{name}_dynamic")

            def record(fmt, quant, path, runner, imgs, extra=None):
                nonlocal step
                step += 1
                label = f"{fmt} {variant_label(quant)} {path.name if fmt != 'savedmodel' else name}"
                tol = tolerance if quant == "none" else None
                rec = verify_runner(runner, reference, imgs, s, tolerance=tol,
                                    latency_runs=latency_runs, label=label)
                rec.update({"model": name, "scale": s, "format": fmt, "variant": variant_label(quant),
                            "path": str(path.relative_to(staging)), "size_bytes": dir_size(path)})
                rec.update(extra or {})
                if quant != "none" and max_psnr_drop is not None and rec["psnr_drop_db"] > max_psnr_drop:
                    rec["passed"] = False
                    raise VerificationError(
                        f"{label}: PSNR drop {rec['psnr_drop_db']:.3f} dB exceeds --max-psnr-drop {max_psnr_drop}")
                artifacts.append(rec)
                parity = (f"max|Δ| {rec['max_abs_diff']:.2e}" if quant == "none"
                          else f"PSNR {rec['psnr_db']:.2f} dB (drop {rec['psnr_drop_db']:+.3f} dB)")
                say(f"[{step}/{total}] {label}: {rec['size_bytes'] / 1e6:.2f} MB, {parity}, "
                    f"{rec.get('latency_ms', float('nan')):.1f} ms ✓")

            for fmt, quant in jobs:
                if fmt == "savedmodel":
                    path = savedmodel.save_serving_model(sub, s, staging / "savedmodel" / name / "1")
                    runner = savedmodel.SavedModelRunner(path)
                    checks = check_serving_signatures(runner, images[0])
                    record(fmt, quant, path, runner, images,
                           {"signatures": list(savedmodel.SIGNATURES), "checks": checks})
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
                    fp32 = staging / "onnx" / f"{name}_fp32.onnx"
                    if not fp32.exists():
                        target = fp32 if "none" in quants else work / fp32.name
                        onnx_export.convert(conv_dir, target)
                        fp32 = target
                    if quant == "none":
                        path = fp32
                    else:
                        path = onnx_export.quantize_int8(fp32, staging / "onnx" / f"{name}_int8.onnx", calib)
                    runner = onnx_export.OnnxRunner(path)
                    record(fmt, quant, path, runner, images, {"opset": onnx_export.OPSET})
        shutil.rmtree(work, ignore_errors=True)
        import onnxruntime
        import tensorflow as tf

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
            "notes": notes,
        }
        write_report(report, staging)
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say("")
    say(table(report))
    say(f"\nwrote {out} (report.json, report.md)")
    return report
