"""Set5 PSNR and upscaling time of the shipped models per precision (fp32, bf16, int8).

For each shipped model (by name; default edsr_baseline_x2/x3/x4) and each precision, as
``python -m edsr_tf.upscale/evaluate --precision P`` run it (:mod:`edsr_tf.inference_precision`,
tile "auto"):

* Set5 PSNR with the papers' protocol (:func:`edsr_tf.evaluation.evaluate_set`: official LR,
  uint8 output, Y of BT.601, ``scale`` px shaved) and its drop against fp32;
* the time to upscale one 256x256 LR image (a crop of the embedded 'astronaut' photograph;
  median of ``--runs`` runs after one warm-up run, so tracing and the first allocation are
  not counted), and the speed-up against fp32.

The int8 model is the one ``--precision int8`` uses: converted once by the export code and
cached (``$EDSR_TF_CACHE`` or ~/.cache/edsr_tf); a first run includes that conversion in its
``setup_s`` (JSON), never in the timings. Prints a markdown table and the CPU; ``--json``
also writes every figure. Timings are of this machine under its current load.

    python benchmarks/upscale_precision.py [--models edsr_baseline_x2,...] [--precisions fp32,bf16,int8]
        [--dataset_dir ../shared/data/edsr_benchmark] [--size 256] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edsr_tf.cli_args import (  # noqa: E402
    EXIT_OK,
    ArgumentParser,
    CommandLine,
    UsageError,
    add_flag,
    comma_list,
    output_path_error,
    positive_int,
    print_note,
    run_command,
)

DEFAULT_MODELS = "edsr_baseline_x2,edsr_baseline_x3,edsr_baseline_x4"
DEFAULT_DATASET_DIR = REPO.parent / "shared" / "data" / "edsr_benchmark"


def build_parser() -> ArgumentParser:
    """The command line of this benchmark."""
    from edsr_tf.inference_precision import PRECISIONS

    p = ArgumentParser(prog="benchmarks/upscale_precision.py", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=comma_list, default=comma_list(DEFAULT_MODELS), metavar="NAME[,NAME...]",
                   help=f"shipped model names (default {DEFAULT_MODELS})")
    p.add_argument("--precisions", type=comma_list, default=PRECISIONS, metavar="P[,P...]",
                   help=f"precisions to compare, fp32 first (default {','.join(PRECISIONS)})")
    add_flag(p, "--dataset_dir", type=Path, default=DEFAULT_DATASET_DIR, metavar="DIR",
             help="folder holding Set5/ (default ../shared/data/edsr_benchmark)")
    p.add_argument("--size", type=positive_int, default=256, help="LR side of the timed image (default 256)")
    p.add_argument("--runs", type=positive_int, default=5, help="timed runs per precision (default 5)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p


def timed_image(size: int):
    """A ``size`` x ``size`` float32 RGB crop of real content (the astronaut photograph, resized if small)."""
    import numpy as np

    from edsr_tf.imresize import imresize
    from edsr_tf.sample_data import sample_image

    img = sample_image("astronaut")
    if min(img.shape[:2]) < size:
        img = np.asarray(imresize(img, output_shape=(size, size)), np.uint8)
    y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[y : y + size, x : x + size].astype(np.float32)


def median_seconds(fn, runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, precisions, dataset_dir: Path, image, runs: int) -> list[dict]:
    """One row per precision for the shipped model ``name``."""
    from edsr_tf.evaluation import evaluate_set, load_benchmark_set, model_sr
    from edsr_tf.inference import upscale_array
    from edsr_tf.inference_precision import with_precision
    from edsr_tf.models import load_model

    model, config = load_model(name)
    scale = config.scale
    set5 = load_benchmark_set(dataset_dir, "Set5", scale)
    rows = []
    for precision in precisions:
        t0 = time.perf_counter()
        runner = with_precision(model, config, scale, precision, weights=name,
                                say=lambda m, p=precision: print_note(f"{name} {p}: {m}"))
        setup = time.perf_counter() - t0
        result = evaluate_set(model_sr(runner, scale, tile="auto"), set5)
        seconds = median_seconds(lambda: upscale_array(runner, scale, image, tile="auto"), runs)
        rows.append({"model": name, "scale": scale, "precision": precision, "set5_psnr": result["psnr"],
                     "set5_images": result["images"], "seconds_per_image": seconds, "setup_s": setup})
        print(f"{name} {precision}: Set5 {result['psnr']:.3f} dB, {seconds * 1e3:.0f} ms/image",
              file=sys.stderr, flush=True)
    fp32 = next((r for r in rows if r["precision"] == "fp32"), None)
    for r in rows:
        r["psnr_drop_db"] = None if fp32 is None else fp32["set5_psnr"] - r["set5_psnr"]
        r["speedup"] = None if fp32 is None else fp32["seconds_per_image"] / r["seconds_per_image"]
    return rows


def markdown(rows: list[dict], size: int) -> str:
    """The table: one row per (model, precision)."""
    lines = [f"| model | precision | Set5 PSNR (dB) | drop vs fp32 (dB) | ms / image (LR {size}x{size}) "
             "| speed-up vs fp32 |", "|---|---|---|---|---|---|"]
    for r in rows:
        reference = r["precision"] == "fp32" or r["psnr_drop_db"] is None
        drop = "-" if reference else f"{r['psnr_drop_db']:+.3f}"
        speed = "-" if reference else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['model']} | {r['precision']} | {r['set5_psnr']:.3f} | {drop} | "
                     f"{r['seconds_per_image'] * 1e3:.0f} | {speed} |")
    return "\n".join(lines) + "\n"


def _run(cli: CommandLine) -> int:
    args = cli.args
    from edsr_tf.inference_precision import PRECISIONS

    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad or not args.precisions:
        raise UsageError(f"--precisions: expected some of {','.join(PRECISIONS)}, got {','.join(args.precisions)}")
    from edsr_tf.pretrained import load_manifest

    shipped = load_manifest()
    unknown = [m for m in args.models if m not in shipped]
    if unknown or not args.models:
        raise UsageError(f"--models: not shipped: {','.join(unknown) or '(none given)'} "
                         f"(shipped: {','.join(sorted(shipped))})")
    if not (args.dataset_dir / "Set5").is_dir():
        raise UsageError(f"--dataset_dir {args.dataset_dir}: no Set5/ in it")
    if args.json is not None and output_path_error(args.json, "--json", folder=False):
        raise UsageError(output_path_error(args.json, "--json", folder=False))
    precisions = sorted(args.precisions, key=PRECISIONS.index)  # fp32 first: the reference

    import platform

    import tensorflow as tf

    from edsr_tf.evaluation import write_json
    from edsr_tf.inference_precision import bf16_slow_reason
    from edsr_tf.precision import cpu_bf16_flags, cpu_model_name

    image = timed_image(args.size)
    rows = []
    for name in args.models:
        rows.extend(measure(name, precisions, args.dataset_dir, image, args.runs))
    cpu = cpu_model_name()
    machine = (f"{cpu}, {os.cpu_count()} cores visible, {platform.machine()}; native bfloat16: "
               f"{', '.join(cpu_bf16_flags()) or 'no'}; TensorFlow {tf.__version__}")
    print(f"CPU: {machine}")
    print(f"Set5: {args.dataset_dir / 'Set5'} (Y of BT.601, scale px shaved, uint8 output); timing: "
          f"median of {args.runs} runs, LR {args.size}x{args.size}, tile auto; this machine under its "
          "current load\n")
    print(markdown(rows, args.size), end="")
    reason = bf16_slow_reason() if "bf16" in precisions else None
    if reason:
        print(f"\nnote: bf16: {reason}")
    if args.json is not None:
        write_json(args.json, {"machine": machine, "cpu": cpu, "cpu_count": os.cpu_count(),
                               "size": args.size, "runs": args.runs, "dataset": str(args.dataset_dir / "Set5"),
                               "rows": rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return EXIT_OK


def main(argv=None) -> int:
    """Runs the benchmark; 0 on success, 2 for bad arguments."""
    return run_command(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
