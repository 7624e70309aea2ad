"""Paper-protocol evaluation: ``edsr-evaluate`` / ``python -m edsr_tf.evaluate`` (a front end of :mod:`edsr_tf.evaluation`).

For every image of every requested set: the LR (official file, or made from the
HR with MATLAB-bicubic ``imresize`` when absent) is super-resolved (or
bicubic-upscaled with ``--bicubic``), rounded to uint8 and scored against the HR
cropped to LR size × scale by :func:`edsr_tf.evaluation.evaluate_set` (Y channel,
``scale`` px shaved; DIV2K: RGB, ``scale + 6`` shaved). An official LR must be
``floor(HR / scale)`` in both dimensions, and every LR file must match an HR image:
anything else is an error naming the file, found from the headers before any model work,
as are unwritable ``--json``/``--save_dir`` paths. A grayscale HR is scored
on its own intensity; the model's three output channels are averaged for it.
Prints a markdown PSNR/SSIM table (mean over images per set) and optionally
writes everything, per image included, as JSON (atomically; the schema of
:data:`edsr_tf.evaluation.RESULT_KEYS`, non-finite numbers as null).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from edsr_tf.benchmark_sets import DatasetNotFoundError, find_datasets, pair_problems
from edsr_tf.cli_args import (
    ArgumentParser,
    CommandFailed,
    CommandLine,
    UsageError,
    add_flag,
    add_max_pixels,
    add_sr_flags,
    add_verbose_flag,
    comma_list,
    non_negative_int,
    output_path_error,
    program_name,
    resolve_weights,
    run_command,
    sr_args_error,
)
from edsr_tf.evaluation import (
    EvaluationError,
    bicubic_sr,
    eval_set_from_benchmark,
    evaluate_set,
    markdown_table,
    model_sr,
    write_json,
)
from edsr_tf.images import ImageReadError, write_image

DEFAULT_DATASETS = "Set5,Set14,B100,Urban100"


def jpeg_quality(text: str) -> int:
    """argparse type: an integer JPEG quality in 1..100."""
    from argparse import ArgumentTypeError

    try:
        q = int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected an integer in 1..100, got {text!r}") from None
    if not 1 <= q <= 100:
        raise ArgumentTypeError(f"expected an integer in 1..100, got {text!r}")
    return q


def build_parser() -> ArgumentParser:
    """The command line of ``edsr-evaluate`` / ``python -m edsr_tf.evaluate``."""
    p = ArgumentParser(
        prog=program_name("edsr-evaluate", ("edsr_tf.evaluate",)),
        description="PSNR/SSIM on SR benchmark sets with the papers' protocol "
        "(uint8 output, Y of BT.601, scale px shaved; DIV2K: RGB, scale+6).",
        epilog="Exit code 0: evaluated; 1: the evaluation failed (a bad image or LR file, each "
               "named on stderr); 2: bad arguments or weights.",
    )
    add_sr_flags(p, bicubic_help="evaluate MATLAB-bicubic upscaling instead of a model",
                 ensemble_help="geometric x8 self-ensemble (EDSR+)")
    add_flag(p, "--dataset_dir", "--dataset-dir", required=True, type=Path, metavar="DIR",
             help="folder holding <Set>/ (or benchmark/<Set>/) and/or DIV2K/")
    add_flag(p, "--eval_sets", "--datasets", type=comma_list, default=comma_list(DEFAULT_DATASETS),
             metavar="SET[,SET...]",
             help=f"comma-separated set names, as train.py's --eval_sets (default {DEFAULT_DATASETS}; "
                  "B100=BSD100; DIV2K)")
    p.add_argument("--limit", type=non_negative_int, default=None, metavar="N",
                   help="evaluate only the first N images of each set")
    p.add_argument("--json", type=Path, help="also write the results (per image too) to this JSON file")
    add_flag(p, "--save_dir", "--save-dir", type=Path, metavar="DIR",
             help="also write the SR images to <save_dir>/<set>/")
    add_flag(p, "--lr_jpeg_quality", "--lr-jpeg-quality", type=jpeg_quality, default=None, metavar="Q",
             help="protocol for compressed inputs: save each LR (official or MATLAB-bicubic) as a JPEG "
                  "at quality Q (1..100, Pillow, 4:2:0) and read it back before the model or bicubic")
    add_max_pixels(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verbose_flag(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation CLI; returns the exit code (0 ok, 1 evaluation failed, 2 bad arguments)."""
    return run_command(build_parser(), argv, _evaluate)


def _evaluate(cli: CommandLine) -> None:
    args = cli.args
    problem = sr_args_error(args)
    # Outputs are checked now, not after the whole evaluation.
    if not problem and args.json is not None:
        problem = output_path_error(args.json, "--json", folder=False)
    if not problem and args.save_dir is not None:
        problem = output_path_error(args.save_dir, "--save_dir", folder=True)
    if not problem and not args.eval_sets:
        problem = "--eval_sets is empty"
    if problem:
        raise UsageError(problem)
    tiling = cli.tiling

    config = None
    if args.bicubic:
        scale = args.scale
        method = "Bicubic"
    else:
        config, scale = resolve_weights(args.weights, args.scale)
        method = (config.preset or config.arch) + ("+" if tiling.self_ensemble else "")
        if cli.resolve_precision() != "fp32":
            method += f" {args.precision}"
    if args.lr_jpeg_quality is not None:
        method += f" (LR JPEG q{args.lr_jpeg_quality})"
    try:
        sets = find_datasets(args.dataset_dir, list(args.eval_sets), scale)
    except DatasetNotFoundError as e:
        raise UsageError(str(e)) from None
    problems = [f"{bset.name}: {p}" for bset in sets
                for p in pair_problems(bset, limit=args.limit, max_pixels=args.max_pixels)]
    if problems:
        for p in problems[:20]:
            cli.error(p)
        if len(problems) > 20:
            cli.error(f"... and {len(problems) - 20} more problems")
        raise CommandFailed("nothing evaluated: fix or remove these files")

    if args.bicubic:
        sr_fn = bicubic_sr(scale)
    else:
        model, config = cli.load_runner(args.weights, scale)  # --precision: Keras, bf16 or TFLite int8
        sr_fn = model_sr(model, scale, **tiling.kwargs())
    results = []
    t0 = time.perf_counter()
    for bset in sets:
        on_image = None
        if args.save_dir is not None:
            def on_image(scored, folder=args.save_dir / bset.name, scale=scale):
                write_image(folder / f"{scored.image.name}_x{scale}.png", scored.sr)
        try:
            results.append(
                evaluate_set(sr_fn, eval_set_from_benchmark(bset, max_pixels=args.max_pixels,
                                                            lr_jpeg_quality=args.lr_jpeg_quality),
                             limit=args.limit, progress=not args.quiet, on_image=on_image)
            )
        except (EvaluationError, ImageReadError, ValueError, OSError) as e:
            raise CommandFailed(f"{bset.name}: {e}") from None
        if results[-1]["generated_lr"]:
            print(f"note: {bset.name}: {results[-1]['generated_lr']} LR images made with imresize "
                  "(no official LR file found)", file=sys.stderr)
    seconds = time.perf_counter() - t0
    print(markdown_table(results, method=method), end="")
    if args.json:
        doc = {
            "method": method,
            "weights": None if args.bicubic else str(args.weights),
            "config": None if config is None else config.to_dict(),
            "scale": scale,
            "self_ensemble": bool(tiling.self_ensemble),
            "precision": None if args.bicubic else args.precision,
            "tile": None if args.bicubic else tiling.tile,
            "tile_overlap": tiling.overlap,
            "lr_jpeg_quality": args.lr_jpeg_quality,
            "seconds": round(seconds, 3),
            "results": results,
        }
        try:
            write_json(args.json, doc)
        except OSError as e:
            raise CommandFailed(f"--json {args.json}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
