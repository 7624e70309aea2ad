"""Paper-protocol evaluation: ``python -m edsr_tf.evaluate``.

For every image of every requested set: the LR (official file, or made from the
HR with MATLAB-bicubic ``imresize`` when absent) is super-resolved (or
bicubic-upscaled with ``--bicubic``), rounded to uint8 and scored against the HR
cropped to LR size × scale with :func:`edsr_tf.metrics.evaluate_pair` (Y channel,
``scale`` px shaved; DIV2K: RGB, ``scale + 6`` shaved). An official LR must be
``floor(HR / scale)`` in both dimensions, and every LR file must match an HR image:
anything else is an error naming the file, found from the headers before any model work,
as are unwritable ``--json``/``--save-dir`` paths. A grayscale HR is scored
on its own intensity; the model's three output channels are averaged for it.
Prints a markdown PSNR/SSIM table (mean over images per set) and optionally
writes everything, per image included, as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edsr_tf.benchmark_sets import (
    BenchmarkSet,
    DatasetNotFoundError,
    find_datasets,
    lr_size_problem,
    pair_problems,
)
from edsr_tf.cli_args import (
    WEIGHTS_HELP,
    add_list_models,
    add_max_pixels,
    output_path_error,
    print_error,
    quiet_tensorflow,
    sr_args_error,
)
from edsr_tf.images import ImageReadError, LoadedImage, atomic_write_bytes, read_image, write_image

DEFAULT_DATASETS = "Set5,Set14,B100,Urban100"

#: A super-resolver: LR image ([h,w] gray or [h,w,3] RGB, uint8) → SR uint8 of the same layout.
SRFn = Callable[[np.ndarray], np.ndarray]


class EvaluationError(ValueError):
    """An image of a benchmark set cannot be evaluated (unreadable, too small, ...)."""


def _to_uint8(img: LoadedImage) -> np.ndarray:
    """The image as stored ([h,w] or [h,w,3]) in uint8 (16-bit files scaled by 1/257)."""
    a = img.channels()
    if img.bit_depth == 16:
        from edsr_tf.metrics import quantize

        a = quantize(a.astype(np.float64) / 257.0)
    return a


def load_pair(pair_hr: Path, pair_lr: Path | None, scale: int, *,
              max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 arrays of one test image, HR cropped to LR size × ``scale``.

    A given LR must be ``floor(HR / scale)`` in both dimensions, else
    :class:`EvaluationError` naming the LR file and both sizes. A missing LR is made
    from the HR (first cropped to a multiple of ``scale``) with MATLAB-bicubic
    ``imresize``. Gray/RGB layouts of the pair are unified to the HR's. ``max_pixels``:
    as :func:`edsr_tf.images.read_image`.
    """
    from edsr_tf.imresize import imresize

    hr = _to_uint8(read_image(pair_hr, max_pixels=max_pixels))
    if pair_lr is None:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        if h == 0 or w == 0:
            raise EvaluationError(f"{pair_hr}: {hr.shape[1]}x{hr.shape[0]} is smaller than x{scale}")
        hr = hr[:h, :w]
        return imresize(hr, scale=1.0 / scale), hr
    lr = _to_uint8(read_image(pair_lr, max_pixels=max_pixels))
    if lr.ndim != hr.ndim:  # e.g. a gray HR saved with an RGB LR: follow the HR.
        lr = lr[..., 0] if hr.ndim == 2 else np.repeat(lr[..., None], 3, axis=-1)
    problem = lr_size_problem(Path(pair_hr), (hr.shape[1], hr.shape[0]), Path(pair_lr),
                              (lr.shape[1], lr.shape[0]), scale)
    if problem:
        raise EvaluationError(problem)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    return lr, hr[:h, :w]


def bicubic_sr(scale: int) -> SRFn:
    """The papers' Bicubic baseline (MATLAB imresize, uint8 result)."""
    from edsr_tf.imresize import bicubic_upscale

    return lambda lr: bicubic_upscale(lr, scale)


def model_sr(model, scale: int, **upscale_kwargs) -> SRFn:
    """A model-based super-resolver (keywords go to :func:`edsr_tf.inference.upscale_array`)."""
    from edsr_tf.images import quantize_to
    from edsr_tf.inference import upscale_array

    def run(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[..., None], 3, axis=-1) if lr.ndim == 2 else lr
        sr = upscale_array(model, scale, rgb.astype(np.float32), **upscale_kwargs)
        if lr.ndim == 2:
            sr = sr.mean(axis=-1, dtype=np.float32)
        return quantize_to(sr, 8)

    return run


def evaluate_set(
    bset: BenchmarkSet,
    sr_fn: SRFn,
    *,
    limit: int | None = None,
    save_dir: Path | None = None,
    progress: bool = False,
    max_pixels: int | None = None,
) -> dict:
    """Scores ``sr_fn`` on ``bset``: mean PSNR/SSIM and per-image figures."""
    from edsr_tf.metrics import evaluate_pair

    pairs = bset.pairs[:limit] if limit else bset.pairs
    per_image = []
    it = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc=f"{bset.name} x{bset.scale}", unit="img", leave=False, file=sys.stderr)
    for pair in it:
        try:
            lr, hr = load_pair(pair.hr, pair.lr, bset.scale, max_pixels=max_pixels)
        except ImageReadError as e:
            raise EvaluationError(str(e)) from None
        sr = sr_fn(lr)
        if sr.shape != hr.shape:
            raise EvaluationError(
                f"{pair.hr}: SR output {sr.shape} does not match HR {hr.shape} (wrong scale?)"
            )
        scores = evaluate_pair(sr, hr, bset.scale, div2k=bset.div2k)
        per_image.append({"name": pair.name, **scores, "generated_lr": pair.lr is None})
        if save_dir is not None:
            write_image(save_dir / bset.name / f"{pair.name}_x{bset.scale}.png", sr)
    psnrs = [r["psnr"] for r in per_image]
    return {
        "dataset": bset.name,
        "path": str(bset.root),
        "layout": bset.layout,
        "scale": bset.scale,
        "images": len(per_image),
        "generated_lr": sum(r["generated_lr"] for r in per_image),
        "protocol": "RGB, shave scale+6" if bset.div2k else "Y (BT.601), shave scale",
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "per_image": per_image,
    }


def markdown_table(results: Sequence[dict], method: str) -> str:
    """Paper-style table: one row per set, PSNR (dB) to 2 decimals, SSIM to 4."""
    lines = [
        f"| Dataset | Scale | Images | {method} PSNR (dB) | {method} SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | x{r['scale']} | {r['images']} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
        )
    return "\n".join(lines)


def _json_safe(x):
    # JSON has no Infinity: identical images (PSNR inf) are written as null.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m edsr_tf.evaluate``."""
    from edsr_tf.inference import DEFAULT_TILE
    from edsr_tf.upscale import tile_arg

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
        try:
            results.append(
                evaluate_set(bset, sr_fn, limit=args.limit, save_dir=args.save_dir,
                             progress=not args.quiet, max_pixels=args.max_pixels)
            )
        except (EvaluationError, ImageReadError, ValueError, OSError) as e:
            print_error(f"{bset.name}: {e}")
            return 1
        if results[-1]["generated_lr"]:
            print(f"note: {bset.name}: {results[-1]['generated_lr']} LR images made with imresize "
                  "(no official LR file found)", file=sys.stderr)
    seconds = time.perf_counter() - t0
    print(markdown_table(results, method))
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
            atomic_write_bytes(args.json, (json.dumps(_json_safe(doc), indent=2) + "\n").encode())
        except OSError as e:
            print_error(f"--json {args.json}: cannot write ({e.strerror or e})")
            return 1
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
