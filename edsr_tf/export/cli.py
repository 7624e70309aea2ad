"""Command line: ``edsr-export --weights W --formats ... --out_dir DIR`` (``python -m export`` in a checkout).

Flags are parsed once into typed values (tuples of formats and quantizations, a resolved
scale, a tile shape) that make an :class:`~edsr_tf.export.common.ExportOptions`; the
library's errors are printed in this command's flag spelling. Exit status: 0 ok, 1 the
export or its verification failed, 2 bad arguments; errors are one line, ``error: ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from edsr_tf.cli_args import (
    ArgumentParser,
    CommandFailed,
    CommandLine,
    UsageError,
    add_flag,
    add_scale_flag,
    add_verbose_flag,
    comma_list,
    max_pixels_arg,
    non_negative_int,
    positive_float,
    positive_int,
    program_name,
    run_command,
)
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
Writes OUT_DIR/savedmodel/<name>/<version>/ (TF Serving),
OUT_DIR/tflite/<name>_<variant>[_tileHxW].tflite, OUT_DIR/onnx/<name>_<variant>.onnx,
OUT_DIR/report.json and OUT_DIR/report.md, replacing OUT_DIR as one unit. --formats opencv writes
OUT_DIR/opencv/<name>.onnx for OpenCV 5's dnn_superres (readModel, setModel("edsr", S), upsample),
checked there (needs opencv-contrib-python-headless>=5).
A re-export of the same model writes the next SavedModel version (1/, 2/, ...) and keeps the
earlier ones; an OUT_DIR holding another model's export is refused unless --overwrite. Every artifact
is run in its runtime and compared with the Keras model; one that fails (fp32: differs by more
than --tolerance) is left out and listed in the report, and the command exits 1.
--formats web writes OUT_DIR/web/, a static page that upscales in the browser with ONNX Runtime Web
(the pinned version, installed once with npm into --web_runtime), checked in headless Chromium when found;
from a shipped model it also carries the JPEG-robust one for compressed JPEGs (--web_jpeg_model).
Exit status: 0 ok, 1 the export or its verification failed, 2 bad arguments.
"""


def example(prog: str) -> str:
    """The help's example, in the command's name as it was run."""
    return (f"\nexample:\n  {prog} --weights runs/edsr_x2/best.weights.h5 --formats savedmodel,tflite,onnx \\\n"
            "      --quantize none,fp16,dynamic,int8 --out_dir exports/edsr_x2\n")


#: The model exported when --weights is not given: the shipped EDSR-baseline x2.
DEFAULT_WEIGHTS = "edsr_baseline_x2"
#: ``--web_jpeg_model`` values besides a model: the shipped JPEG-robust model where it fits, or none.
WEB_JPEG_AUTO, WEB_JPEG_NONE = "auto", "none"


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


def _names_arg(allowed: Sequence[str], what: str):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.lower() for n in comma_list(text))
        if not names:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}")
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad)}; expected some of {', '.join(allowed)}")
        return names

    return parse


def tile_shape_arg(text: str) -> tuple[int, int]:
    """``--tile H,W`` (or ``N`` for N,N) as ``(H, W)``."""
    try:
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W with positive integers, e.g. 128,128, got {text!r}")
    return parts[0], parts[1]


def build_parser() -> ArgumentParser:
    prog = program_name("edsr-export", ("export", "edsr_tf.export.cli"))
    p = ArgumentParser(
        prog=prog,
        description="Export an EDSR/MDSR model to SavedModel, TFLite and ONNX, verified end to end.",
        epilog=EPILOG + example(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        fromfile_prefix_chars="@",
    )
    p.add_argument("--weights", default=None,
                   help="a shipped model's name (python -m edsr_tf.pretrained lists them) or a model "
                        f"file (.weights.h5 or .keras) with embedded config (default: {DEFAULT_WEIGHTS})")
    add_flag(p, "--out_dir", "--out", required=True, type=Path, metavar="DIR", help="output folder")
    add_scale_flag(p, single=True,
                   help="scale to export (MDSR: default all of its scales, one artifact each)")
    p.add_argument("--formats", type=_names_arg(FORMATS, "format(s)"), default=DEFAULT_FORMATS,
                   metavar="F[,F...]",
                   help=f"comma list of {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)}; "
                        "opencv: for cv2.dnn_superres; web: a static page that upscales in the browser)")
    p.add_argument("--quantize", type=_names_arg(QUANTIZATIONS, "quantization(s)"), default=("none",),
                   metavar="Q[,Q...]",
                   help=f"comma list of {', '.join(QUANTIZATIONS)} (none = float32; "
                        "fp16/dynamic: TFLite only; int8: TFLite and ONNX)")
    add_flag(p, "--calibration_dir", "--calibration-dir", type=Path, default=None, metavar="DIR",
             help="images for int8 calibration (default: the embedded sample photographs)")
    add_flag(p, "--calibration_samples", "--calibration-samples", type=positive_int, default=32,
             metavar="N", help="number of calibration patches")
    add_flag(p, "--calibration_size", "--calibration-size", type=positive_int, default=64,
             metavar="N", help="calibration patch side (LR px, >= 4)")
    p.add_argument("--tile", type=tile_shape_arg, default=None, metavar="H,W",
                   help="also write fixed-shape TFLite models [1,H,W,3] for accelerators")
    add_flag(p, "--verify_dir", "--verify-dir", type=Path, default=None, metavar="DIR",
             help="HR images to verify on (LR made by bicubic downscaling; default: embedded photo): "
                  "a folder of HR images, a benchmark set (Set5/ with HR/ or image_SRF_<s>/), "
                  "an image_SRF_<s> folder (its *_HR files), or a DIV2K folder")
    add_flag(p, "--verify_max_side", "--verify-max-side", type=non_negative_int, default=192,
             metavar="N", help="center-crop verification LR images to at most this side (0: whole image)")
    p.add_argument("--tolerance", type=positive_float, default=FP32_TOLERANCE,
                   help="max |export - keras| on [0,255] allowed for fp32 exports")
    add_flag(p, "--max_psnr_drop", "--max-psnr-drop", type=float, default=None, metavar="DB",
             help="fail if a quantized export loses more than this many dB (default: report only)")
    add_flag(p, "--max_pixels", "--max-pixels", type=max_pixels_arg, default=DEFAULT_MAX_PIXELS,
             metavar="N",
             help="SavedModel: refuse requests of more LR pixels than this (N x H x W; serving_bytes: "
                  f"W x H per image, from its header, before decoding); default {DEFAULT_MAX_PIXELS} "
                  "('2M' = 2,000,000; report.json 'serving' gives the memory it needs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export of another model in --out_dir (its SavedModel versions are dropped)")
    add_flag(p, "--latency_runs", "--latency-runs", type=non_negative_int, default=5, metavar="N",
             help="timed runs per artifact (0: skip)")
    add_flag(p, "--web_runtime", type=Path, default=None, metavar="DIR",
             help="web: the folder ONNX Runtime Web is taken from, or installed into with npm when it "
                  "is not there (default: a checkout's web_page/node_modules, else "
                  "$EDSR_TF_CACHE/web_runtime, i.e. ~/.cache/edsr_tf/web_runtime)")
    add_flag(p, "--web_jpeg_model", "--web-jpeg-model", default=WEB_JPEG_AUTO, metavar="auto|none|W",
             help="web: a second, JPEG-robust model the page picks for JPEG files (camera photos "
                  "included) of estimated quality <= 90, as edsr-upscale does (?input= in the page's "
                  "address overrides): auto (default) = the shipped edsr_baseline_x<s>_jpeg when "
                  "--weights is a shipped bicubic-trained model and one ships for its scale, else none; "
                  "none = the exported model only; or a shipped model's name or a .weights.h5/.keras file "
                  "(a single-scale model of the exported scale)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_verbose_flag(p)
    return p


def options_from_args(args: argparse.Namespace):
    """The :class:`~edsr_tf.export.common.ExportOptions` of parsed flags (raises ExportUsageError)."""
    from edsr_tf.export.common import ExportOptions

    return ExportOptions(
        formats=args.formats,
        quantize=args.quantize,
        scale=args.scale,
        tile=args.tile,
        calibration_dir=args.calibration_dir,
        num_calibration=args.calibration_samples,
        calibration_size=args.calibration_size,
        verify_dir=args.verify_dir,
        verify_max_side=args.verify_max_side or None,
        tolerance=args.tolerance,
        max_psnr_drop=args.max_psnr_drop,
        max_pixels=args.max_pixels,
        overwrite=args.overwrite,
        latency_runs=args.latency_runs,
        web_runtime=args.web_runtime,
        web_jpeg_weights=web_jpeg_weights(args),
    )


def web_jpeg_weights(args: argparse.Namespace) -> str | None:
    """``--web_jpeg_model`` resolved: ``auto`` → the shipped JPEG-robust model that fits
    ``--weights`` (its default included) and ``--scale``, or None
    (:func:`edsr_tf.export.web.auto_jpeg_weights`); ``none`` → None; else the model as given.
    A value other than ``auto`` without web in ``--formats`` is an :class:`ExportUsageError`."""
    value = args.web_jpeg_model
    if "web" not in args.formats:
        if value != WEB_JPEG_AUTO:
            raise ExportUsageError(f"--web_jpeg_model {value}: applies to the web page only; add web to "
                                   f"--formats (now {','.join(args.formats)}) or drop --web_jpeg_model")
        return None
    if value == WEB_JPEG_NONE:
        return None
    if value == WEB_JPEG_AUTO:
        from edsr_tf.export.web import auto_jpeg_weights

        return auto_jpeg_weights(args.weights or DEFAULT_WEIGHTS, args.scale)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0 ok, 1 export/verification error, 2 bad arguments)."""
    return run_command(build_parser(), argv, _export)


def _export(cli: CommandLine) -> int | None:
    args = cli.args
    try:
        options = options_from_args(args)
    except ExportUsageError as e:
        raise UsageError(str(e)) from None
    progress = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if "web" in options.formats:  # before TensorFlow loads: without npm this exits 2 at once
        _web_runtime(options, progress)
    from edsr_tf.export.pipeline import export
    from edsr_tf.models.io import ModelFileError

    try:
        export(args.weights or default_weights(), args.out_dir, options, progress=progress)
    except ExportUsageError as e:
        raise UsageError(str(e)) from None
    except (ExportError, ModelFileError) as e:
        raise CommandFailed(f"export failed: {e}") from None
    except OSError as e:  # e.g. --out_dir's parent not writable, disk full outside the export proper
        where = f": {e.filename}" if e.filename else ""
        raise CommandFailed(f"export failed: {e.strerror or e}{where}") from None
    except KeyboardInterrupt:
        print("export interrupted; nothing written", file=sys.stderr)
        return 130


def _web_runtime(options, progress) -> None:
    """ONNX Runtime Web found, or installed with npm (:func:`edsr_tf.export.web_runtime.ensure`)."""
    from edsr_tf.export import web_runtime

    try:
        web_runtime.ensure(options.web_runtime, progress or (lambda _m: None))
    except ExportUsageError as e:
        raise UsageError(str(e)) from None
    except ExportError as e:
        raise CommandFailed(f"export failed: {e}") from None
