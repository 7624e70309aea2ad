"""Command line: ``python -m export --weights W --formats ... --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from edsr_tf.export.common import (
    DEFAULT_FORMATS,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    FP32_TOLERANCE,
    QUANTIZATIONS,
    ExportError,
    ExportUsageError,
)

EPILOG = """\
Writes DIR/savedmodel/<name>/<version>/ (TF Serving), DIR/tflite/<name>_<variant>[_tileHxW].tflite,
DIR/onnx/<name>_<variant>.onnx, DIR/report.json and DIR/report.md, replacing DIR as one unit.
A re-export of the same model writes the next SavedModel version (1/, 2/, ...) and keeps the
earlier ones; a DIR holding another model's export is refused unless --overwrite. Every artifact
is run in its runtime and compared with the Keras model; one that fails (fp32: differs by more
than --tolerance) is left out and listed in the report, and the command exits 1.
--formats web writes DIR/web/, a static page that upscales in the browser (ONNX Runtime Web,
installed by `npm ci --prefix edsr_tf/export/web_page`), checked in headless Chromium when found.
Exit status: 0 ok, 1 the export or its verification failed, 2 bad arguments.

example:
  python -m export --weights runs/edsr_x2/best.weights.h5 --formats savedmodel,tflite,onnx \\
      --quantize none,fp16,dynamic,int8 --out exports/edsr_x2
"""


#: The model exported when --weights is not given: the shipped EDSR-baseline x2.
DEFAULT_WEIGHTS = "edsr_baseline_x2"


def default_weights() -> str:
    """``DEFAULT_WEIGHTS`` if this installation ships it, else an :class:`ExportError` saying so."""
    from edsr_tf import pretrained

    try:
        shipped = pretrained.load_manifest()
    except pretrained.PretrainedError as e:
        raise ExportError(f"no --weights given, and the shipped models cannot be read: {e}") from None
    if DEFAULT_WEIGHTS not in shipped:
        raise ExportError(
            f"no --weights given, and the default model {DEFAULT_WEIGHTS} is not shipped in this "
            f"installation (shipped: {', '.join(sorted(shipped)) or 'none'}); pass --weights with a "
            "model file (.weights.h5 or .keras) or a shipped model's name")
    return DEFAULT_WEIGHTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export an EDSR/MDSR model to SavedModel, TFLite and ONNX, verified end to end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        fromfile_prefix_chars="@",
    )
    p.add_argument("--weights", default=None,
                   help="a shipped model's name (python -m edsr_tf.pretrained lists them) or a model "
                        f"file (.weights.h5 or .keras) with embedded config (default: {DEFAULT_WEIGHTS})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scale", type=int, default=None,
                   help="scale to export (MDSR: default all of its scales, one artifact each)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"comma list of {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)}; "
                        "web: a static page that upscales in the browser)")
    p.add_argument("--quantize", default="none",
                   help=f"comma list of {', '.join(QUANTIZATIONS)} (none = float32; "
                        "fp16/dynamic: TFLite only; int8: TFLite and ONNX)")
    p.add_argument("--calibration-dir", default=None,
                   help="images for int8 calibration (default: the embedded sample photographs)")
    p.add_argument("--calibration-samples", type=int, default=32, help="number of calibration patches")
    p.add_argument("--calibration-size", type=int, default=64, help="calibration patch side (LR px)")
    p.add_argument("--tile", default=None,
                   help="H,W: also write fixed-shape TFLite models [1,H,W,3] for accelerators")
    p.add_argument("--verify-dir", default=None,
                   help="HR images to verify on (LR made by bicubic downscaling; default: embedded photo): "
                        "a folder of HR images, a benchmark set (Set5/ with HR/ or image_SRF_<s>/), "
                        "an image_SRF_<s> folder (its *_HR files), or a DIV2K folder")
    p.add_argument("--verify-max-side", type=int, default=192,
                   help="center-crop verification LR images to at most this side (0: whole image)")
    p.add_argument("--tolerance", type=float, default=FP32_TOLERANCE,
                   help="max |export - keras| on [0,255] allowed for fp32 exports")
    p.add_argument("--max-psnr-drop", type=float, default=None,
                   help="fail if a quantized export loses more than this many dB (default: report only)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="SavedModel: refuse requests of more LR pixels than this (N x H x W; serving_bytes: "
                        f"W x H per image, from its header, before decoding); default {DEFAULT_MAX_PIXELS} "
                        "(report.json 'serving' gives the memory it needs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export of another model in --out (its SavedModel versions are dropped)")
    p.add_argument("--latency-runs", type=int, default=5, help="timed runs per artifact (0: skip)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0 ok, 1 export/verification error, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edsr_tf.export.pipeline import export
    from edsr_tf.models.io import ModelFileError

    try:
        if args.calibration_samples < 1 or args.calibration_size < 4:
            raise ExportUsageError("--calibration-samples must be >= 1 and --calibration-size >= 4")
        if args.latency_runs < 0:
            raise ExportUsageError("--latency-runs must be >= 0")
        if args.max_pixels < 1:
            raise ExportUsageError(f"--max-pixels must be >= 1, got {args.max_pixels}")
        export(
            args.weights or default_weights(),
            args.out,
            scale=args.scale,
            formats=args.formats,
            quantize=args.quantize,
            calibration_dir=args.calibration_dir,
            tile=args.tile,
            verify_dir=args.verify_dir,
            verify_max_side=args.verify_max_side or None,
            tolerance=args.tolerance,
            max_psnr_drop=args.max_psnr_drop,
            max_pixels=args.max_pixels,
            overwrite=args.overwrite,
            latency_runs=args.latency_runs,
            num_calibration=args.calibration_samples,
            calibration_size=args.calibration_size,
            progress=None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
        )
    except ExportUsageError as e:
        print(f"python -m export: error: {e}", file=sys.stderr)
        return 2
    except (ExportError, ModelFileError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. --out's parent not writable, disk full outside the export proper
        where = f": {e.filename}" if e.filename else ""
        print(f"export failed: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export interrupted; nothing written", file=sys.stderr)
        return 130
    return 0
