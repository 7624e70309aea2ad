"""A served SavedModel in fp32 against oneDNN's bf16 math mode: speed and Set5 PSNR.

TF Serving runs the exported float32 SavedModel as it is; oneDNN (TensorFlow's CPU kernels) can
be told to compute float32 convolutions in bfloat16 with an environment variable, with no new
export. This measures what that gives, the way TF Serving runs it: each mode in its own process
(the variables are read once, at start-up), the SavedModel loaded with ``tf.saved_model.load`` and
called through its ``serving_default`` signature (float32 in, uint8 out):

* ``fp32``: no variable;
* ``TF_SET_ONEDNN_FPMATH_MODE=BF16``: TensorFlow's switch for oneDNN's math mode;
* ``ONEDNN_DEFAULT_FPMATH_MODE=BF16``: oneDNN's own.

Per mode: the median time of one 256x256 LR image (batch 1, after a warm-up call), Set5 PSNR-Y
(papers' protocol, official LR), and whether the outputs differ from fp32 at all (identical
outputs mean the variable did nothing on this machine). Prints a markdown table and the CPU.

    python benchmarks/serving_fpmath.py [--models edsr_baseline_x2,edsr_baseline_x4] [--runs 5]
        [--dataset_dir ../shared/data/edsr_benchmark] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODES = {
    "fp32": {},
    "TF_SET_ONEDNN_FPMATH_MODE=BF16": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"},
    "ONEDNN_DEFAULT_FPMATH_MODE=BF16": {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"},
}


def worker(savedmodel: str, scale: int, dataset_dir: str, size: int, runs: int, outputs: str) -> dict:
    """Runs in the mode's own process: timing, Set5 PSNR, and the Set5 outputs saved for comparison."""
    import numpy as np
    import tensorflow as tf

    from edsr_tf.evaluation import evaluate_set, load_benchmark_set
    from edsr_tf.sample_data import sample_image

    serve = tf.saved_model.load(savedmodel).signatures["serving_default"]

    def sr(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[..., None], 3, axis=-1) if lr.ndim == 2 else lr
        out = serve(images=tf.constant(rgb[None].astype(np.float32)))["sr"].numpy()[0]
        return np.round(out.mean(axis=-1)).astype(np.uint8) if lr.ndim == 2 else out

    saved: list[np.ndarray] = []
    row = evaluate_set(sr, load_benchmark_set(dataset_dir, "Set5", scale), on_image=lambda s: saved.append(s.sr))
    np.savez(outputs, *saved)
    img = sample_image("astronaut")[:size, :size].astype(np.float32)[None]
    x = tf.constant(img)
    serve(images=x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        serve(images=x)
        times.append(time.perf_counter() - t0)
    return {"psnr": row["psnr"], "ms": 1000 * statistics.median(times), "best_ms": 1000 * min(times)}


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks/serving_fpmath.py", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="edsr_baseline_x2,edsr_baseline_x4", help="shipped model names")
    p.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "edsr_benchmark")
    p.add_argument("--size", type=int, default=256, help="LR side of the timed image (default 256)")
    p.add_argument("--runs", type=int, default=5, help="timed calls per mode (default 5)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        savedmodel, scale, outputs, size, runs = args.worker
        print(json.dumps(worker(savedmodel, int(scale), str(args.dataset_dir), int(size), int(runs), outputs)))
        return 0

    import numpy as np

    from edsr_tf.export.savedmodel import save_serving_model
    from edsr_tf.models import load_model
    from edsr_tf.precision import cpu_bf16_flags, cpu_model_name

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, config = load_model(name)
            scale = config.scales[0]
            sm = save_serving_model(model, scale, Path(tmp) / name / "1")
            ref = None
            for mode, env in MODES.items():
                outputs = str(Path(tmp) / f"{name}_{len(rows)}.npz")
                env = {k: v for k, v in os.environ.items() if k not in ("TF_SET_ONEDNN_FPMATH_MODE",
                                                                         "ONEDNN_DEFAULT_FPMATH_MODE")} | env
                proc = subprocess.run(
                    [sys.executable, __file__, "--dataset_dir", str(args.dataset_dir),
                     "--worker", str(sm), str(scale), outputs, str(args.size), str(args.runs)],
                    env=env, capture_output=True, text=True, check=True)
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                outs = np.load(outputs)
                outs = [outs[k] for k in outs.files]
                if ref is None:
                    ref, base = outs, got
                diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(outs, ref))
                rows.append({"model": name, "mode": mode, **got, "speedup": base["ms"] / got["ms"],
                             "psnr_change": got["psnr"] - base["psnr"], "max_level_diff_vs_fp32": diff})
    print(f"CPU: {cpu_model_name()} (native bf16: {', '.join(cpu_bf16_flags()) or 'none'}); "
          f"{os.cpu_count()} cores; LR {args.size}x{args.size}, median of {args.runs}\n")
    print("| model | mode | ms (best) | speed-up | Set5 PSNR | change | max level diff vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['ms']:.0f} ({r['best_ms']:.0f}) | {r['speedup']:.2f}x | "
              f"{r['psnr']:.3f} | {r['psnr_change']:+.3f} | {r['max_level_diff_vs_fp32']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
