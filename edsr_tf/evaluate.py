"""Paper-protocol evaluation: ``python -m edsr_tf.evaluate`` (a front end of :mod:`edsr_tf.evaluation`).

For every image of every requested set: the LR (official file, or made from the
HR with MATLAB-bicubic ``imresize`` when absent) is super-resolved (or
bicubic-upscaled with ``--bicubic``), rounded to uint8 and scored against the HR
cropped to LR size × scale by :func:`edsr_tf.evaluation.evaluate_set` (Y channel,
``scale`` px shaved; DIV2K: RGB, ``scale + 6`` shaved). An official LR must be
``floor(HR / scale)`` in both dimensions, and every LR file must match an HR image:
anything else is an error naming the file, found from the headers before any model work,
as are unwritable ``--json``/``--save-dir`` paths. A grayscale HR is scored
on its own intensity; the model's three output channels are averaged for it.
Prints a markdown PSNR/SSIM table (mean over images per set) and optionally
writes everything, per image included, as JSON (atomically; the schema of
:data:`edsr_tf.evaluation.RESULT_KEYS`, non-finite numbers as null).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from edsr_tf.benchmark_sets import DatasetNotFoundError, find_datasets, pair_problems
from edsr_tf.cli_args import (
    WEIGHTS_HELP,
    add_list_models,
    add_max_pixels,
    output_path_error,
    print_error,
    quiet_tensorflow,
    sr_args_error,
    tile_arg,
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


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m edsr_tf.evaluate``."""
    from edsr_tf.inference import DEFAULT_TILE

    p = argparse.ArgumentParser(
        prog="python -m edsr_tf.evaluate",
        description="PSNR/SSIM on SR benchmark sets with the papers' protocol "
        "(uint8 output, Y of BT.601, scale px shaved; DIV2K: RGB, scale+6).",
    )
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--bicubic", action="store_true", help="evaluate MATLAB-bicubic upscaling instead of a model")
    p.add_argument("--dataset-dir", required=True, type=Path,
                   help="folder holding <Set>/ (or benchmark/<Set>/) and/or DIV2K/")
    p.add_argument("--datasets", default=DEFAULT_DATASETS,
                   help=f"comma-separated set names (default {DEFAULT_DATASETS}; B100=BSD100; DIV2K)")
    p.add_argument("--scale", type=int, help="upscaling factor (default: the model's; required for "
                   "--bicubic and multi-scale MDSR)")
    p.add_argument("--self-ensemble", action="store_true", help="geometric x8 self-ensemble (EDSR+)")
    p.add_argument("--tile", type=tile_arg, default=DEFAULT_TILE,
                   help="LR tile size, 0 = whole image, 'auto' (default) = memory-bounded; exact "
                        "with the default overlap")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LR context pixels per tile side (default: the model's receptive-field radius)")
    p.add_argument("--batch", type=int, default=1, help="tiles per model call (default 1)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images of each set")
    p.add_argument("--json", type=Path, help="also write the results (per image too) to this JSON file")
    p.add_argument("--save-dir", type=Path, help="also write the SR images to <save-dir>/<set>/")
    add_max_pixels(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_list_models(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation CLI; returns the exit code (0 ok, 1 evaluation failed, 2 bad arguments)."""
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    problem = sr_args_error(args)
    if not problem and args.limit is not None and args.limit < 0:
        problem = f"--limit must be >= 0, got {args.limit}"
    # Outputs are checked now, not after the whole evaluation.
    if not problem and args.json is not None:
        problem = output_path_error(args.json, "--json", folder=False)
    if not problem and args.save_dir is not None:
        problem = output_path_error(args.save_dir, "--save-dir", folder=True)
    if problem:
        print_error(problem)
        return 2
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if not names:
        print_error("--datasets is empty")
        return 2

    config = None
    if args.bicubic:
        scale = args.scale
        method = "Bicubic"
    else:
        from edsr_tf.models.io import ModelFileError, read_config

        try:
            config = read_config(args.weights)  # the scale, before any model is built
        except ModelFileError as e:
            print_error(str(e))
            return 2
        if args.scale is None and len(config.scales) != 1:
            print_error(f"--weights {args.weights}: model has scales {list(config.scales)}: pass "
                        "--scale to choose one")
            return 2
        scale = args.scale or config.scales[0]
        if scale not in config.scales:
            print_error(f"--weights {args.weights}: model was built for scale(s) "
                        f"{list(config.scales)}, not x{scale}")
            return 2
        method = (config.preset or config.arch) + ("+" if args.self_ensemble else "")
    try:
        sets = find_datasets(args.dataset_dir, names, scale)
    except DatasetNotFoundError as e:
        print_error(str(e))
        return 2
    problems = [f"{bset.name}: {p}" for bset in sets
                for p in pair_problems(bset, limit=args.limit, max_pixels=args.max_pixels)]
    if problems:
        for p in problems[:20]:
            print_error(p)
        if len(problems) > 20:
            print_error(f"... and {len(problems) - 20} more problems")
        print_error("nothing evaluated: fix or remove these files")
        return 1

    if args.bicubic:
        sr_fn = bicubic_sr(scale)
    else:
        from edsr_tf.inference import small_tile_warning
        from edsr_tf.models import load_model, model_for_scale

        try:
            model, config = load_model(args.weights)
            model = model_for_scale(model, config, scale)
        except (ModelFileError, ValueError) as e:
            print_error(str(e) if isinstance(e, ModelFileError) else f"--weights {args.weights}: {e}")
            return 2
        warning = small_tile_warning(model, scale, args.tile, args.tile_overlap)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        sr_fn = model_sr(
            model, scale, tile=args.tile or None, tile_overlap=args.tile_overlap,
            self_ensemble=args.self_ensemble, batch_size=args.batch,
        )
    results = []
    t0 = time.perf_counter()
    for bset in sets:
        on_image = None
        if args.save_dir is not None:
            def on_image(scored, folder=args.save_dir / bset.name, scale=scale):
                write_image(folder / f"{scored.image.name}_x{scale}.png", scored.sr)
        try:
            results.append(
                evaluate_set(sr_fn, eval_set_from_benchmark(bset, max_pixels=args.max_pixels),
                             limit=args.limit, progress=not args.quiet, on_image=on_image)
            )
        except (EvaluationError, ImageReadError, ValueError, OSError) as e:
            print_error(f"{bset.name}: {e}")
            return 1
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
            "self_ensemble": bool(args.self_ensemble),
            "tile": None if args.bicubic else (args.tile or None),
            "tile_overlap": args.tile_overlap,
            "seconds": round(seconds, 3),
            "results": results,
        }
        try:
            write_json(args.json, doc)
        except OSError as e:
            print_error(f"--json {args.json}: cannot write ({e.strerror or e})")
            return 1
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
