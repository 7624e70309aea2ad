"""File size and OpenCV ``dnn_superres`` latency of the OpenCV exports, next to our other runtimes.

For each shipped model asked for (default edsr_baseline_x2 and edsr_baseline_x4), exports
``--formats onnx,opencv,tflite`` (fp32) into a temporary folder, verified as any export, and
times one square LR image (default 256x256, batch 1) in: OpenCV ``sr.upsample`` on the
OpenCV file (what a dnn_superres user runs, BGR uint8 in and out), onnxruntime on the ONNX
file, LiteRT fp32 and the shipped int8 ``.tflite`` (where there is one), and the Keras model
in TensorFlow. Every runtime gets ``--threads`` threads (cv2.setNumThreads, ORT
intra-op threads, LiteRT num_threads, TF intra-op threads). Median (best) of ``--runs``
interleaved runs after one warm-up each; prints a Markdown table, with the published size of
the ``EDSR_x4.pb`` most dnn_superres users run (38.5 MB; not measured: it is not downloaded).

    python benchmarks/opencv_latency.py [--models edsr_baseline_x2,edsr_baseline_x4] [--size 256]
        [--threads 2] [--runs 3] [--json out.json]

Needs OpenCV 5 with the contrib modules (requirements-dev.txt: opencv-contrib-python-headless).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402

#: The file dnn_superres users download today, as its publisher lists it (not measured here).
PUBLISHED_EDSR_X4_PB_MB = 38.5


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(name: str, size: int, threads: int, runs: int, work: Path) -> list[dict]:
    """Exports ``name`` and times each runtime on one ``size``² image; one row per runtime."""
    import cv2

    from edsr_tf import pretrained
    from edsr_tf.export import ExportOptions, export
    from edsr_tf.export.onnx import OnnxRunner
    from edsr_tf.export.opencv import OpenCVRunner
    from edsr_tf.export.tflite import TFLiteRunner
    from edsr_tf.export.verify import KerasRunner
    from edsr_tf.models import load_model
    from edsr_tf.models.io import resolve_weights
    from inference_latency import timed_interleaved

    cv2.setNumThreads(threads)
    out = work / name
    report = export(name, out, ExportOptions(formats=("onnx", "opencv", "tflite"), latency_runs=0,
                                             verify_max_side=96), progress=None)
    files = {a["format"]: out / a["path"] for a in report["artifacts"]}
    weights = resolve_weights(name)
    model, config = load_model(weights)
    scale = config.scale
    runners = {
        "opencv": (OpenCVRunner(files["opencv"], scale), files["opencv"]),
        "onnxruntime fp32": (OnnxRunner(files["onnx"], num_threads=threads), files["onnx"]),
        "litert fp32": (TFLiteRunner(files["tflite"], num_threads=threads), files["tflite"]),
    }
    int8_path = pretrained.shipped_tflite(name)
    if int8_path is not None:
        runners["litert int8 (shipped)"] = (TFLiteRunner(int8_path, num_threads=threads), int8_path)
    runners["keras (TensorFlow)"] = (KerasRunner(model), weights)
    x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.float32)
    times = timed_interleaved({k: r for k, (r, _) in runners.items()}, x, runs)
    return [{"model": name, "scale": scale, "runtime": k, "file": Path(path).name,
             "size_bytes": Path(path).stat().st_size,
             "median_ms": times[k]["median_s"] * 1e3, "best_ms": times[k]["min_s"] * 1e3, "runs": runs}
            for k, (_, path) in runners.items()]


def markdown(result: dict) -> str:
    """The rows as a Markdown table, the published EDSR_x4.pb size last."""
    size = result["size"]
    lines = [f"| model | runtime | file | size | latency @{size}x{size} ms, median (best) |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['runtime']} | `{r['file']}` | {r['size_bytes'] / 1e6:.1f} MB | "
                     f"{r['median_ms']:,.0f} ({r['best_ms']:,.0f}) |")
    lines.append(f"| OpenCV's EDSR x4 (published) | opencv 4.x | `EDSR_x4.pb` | {PUBLISHED_EDSR_X4_PB_MB} MB "
                 "| not measured |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/opencv_latency.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="edsr_baseline_x2,edsr_baseline_x4",
                   help="comma list of shipped model names")
    p.add_argument("--size", type=int, default=256, help="LR side of the square input")
    p.add_argument("--threads", type=int, default=2, help="threads every runtime may use")
    p.add_argument("--runs", type=int, default=3, help="timed runs per runtime (after one warm-up)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import tensorflow as tf

    # before TensorFlow runs anything: the Keras row gets the same thread count as the others
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import cv2

    rows = []
    with tempfile.TemporaryDirectory(prefix="opencv_latency-") as tmp:
        for name in (m.strip() for m in args.models.split(",") if m.strip()):
            print(f"{name}: exporting and timing ...", file=sys.stderr, flush=True)
            rows += measure(name, args.size, args.threads, args.runs, Path(tmp))
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "threads": args.threads, "size": args.size,
        "versions": {"opencv": cv2.__version__, "tensorflow": tf.__version__}, "rows": rows,
    }
    print(f"{result['machine']}; {args.threads} threads; OpenCV {cv2.__version__}, "
          f"TensorFlow {tf.__version__}\n")
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
