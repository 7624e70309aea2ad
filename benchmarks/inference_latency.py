"""Inference latency and GFLOP/s of EDSR exports per runtime, against a measured fp32 matmul peak.

For EDSR-baseline x2 and x4 on 128x128 and 256x256 LR inputs (batch 1), times the
Keras model, the TF Serving SavedModel, TFLite (LiteRT) fp32/fp16/dynamic/int8 and
onnxruntime fp32/int8, all on this machine in this run. FLOPs are counted
analytically from the config (2*k*k*Cin*Cout*H*W per conv; adds, ReLUs and the
shuffle are not counted), so every runtime is credited with the same work. The
peak is the best fp32 GFLOP/s of a 2048x2048 matmul in TensorFlow and in NumPy.

Quality of the quantized exports: PSNR (Y, scale px shaved) of each TFLite/ONNX
variant vs HR on real images (Set5 from ../shared/data when present, else the
embedded photograph), next to the Keras model's. Without --weights the model has
random weights: latency does not depend on the weight values, but then the dB
figures say nothing about a trained model (the report says which model was used).

    python benchmarks/inference_latency.py [--weights W.weights.h5] [--scale=2,4]
        [--sizes 128,256] [--runs 3] [--int8_ranges mse|minmax] [--onnx_calibration Percentile]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

RUNTIMES = (
    "keras", "savedmodel", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8",
    "onnx_fp32", "onnx_int8",
)


def conv_flops(config, scale: int, h: int, w: int) -> int:
    """Multiply-adds × 2 of every conv of the single-scale network on an h×w LR input."""
    from edsr_tf.models.blocks import upsampler_stages

    f = config.n_feats

    def conv(k, cin, cout, hh, ww):
        return 2 * k * k * cin * cout * hh * ww

    total = conv(3, 3, f, h, w)  # head
    if config.arch == "mdsr":
        total += 4 * conv(5, f, f, h, w)  # two 5x5 pre-processing resblocks
    total += 2 * config.n_resblocks * conv(3, f, f, h, w) + conv(3, f, f, h, w)  # body + body_conv
    hh, ww = h, w
    for r in upsampler_stages(scale):
        total += conv(3, f, r * r * f, hh, ww)
        hh, ww = hh * r, ww * r
    return total + conv(3, f, 3, hh, ww)  # tail


def matmul_peak(n: int = 2048, seconds: float = 3.0) -> dict:
    """Best fp32 GFLOP/s of an n×n matmul in TensorFlow and NumPy (all cores)."""
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    ta, tb = tf.constant(a), tf.constant(b)
    tf_mm = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))  # sum: forces the product

    def best(fn):
        fn()
        t_end, times = time.perf_counter() + seconds, []
        while time.perf_counter() < t_end or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    tf_g = best(lambda: tf_mm(ta, tb).numpy())
    np_g = best(lambda: a @ b)
    return {"n": n, "tf_gflops": tf_g, "numpy_gflops": np_g, "peak_gflops": max(tf_g, np_g)}


def timed_interleaved(runners: dict, x: np.ndarray, runs: int) -> dict[str, dict]:
    """Times every runner ``runs`` times, round-robin, after one warm-up each.

    Interleaving spreads each runtime's samples over the whole measurement window, so
    a burst of load from other processes hits all runtimes alike instead of one.
    """
    for runner in runners.values():
        runner.run(x)  # warm-up: tracing, allocation, weight packing
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, runner in runners.items():
            t0 = time.perf_counter()
            runner.run(x)
            times[name].append(time.perf_counter() - t0)
    return {n: {"median_s": statistics.median(t), "min_s": min(t), "runs": runs} for n, t in times.items()}


def real_images(scale: int, limit: int | None):
    """(name, lr uint8, hr uint8) pairs: Set5 when ../shared/data is present, else the photo."""
    shared = Path(os.environ.get("EDSR_TF_SHARED_DATA", REPO.parent / "shared" / "data"))
    try:
        from edsr_tf.benchmark_sets import find_dataset
        from edsr_tf.evaluation import eval_set_from_benchmark

        images = eval_set_from_benchmark(find_dataset(shared, "Set5", scale)).images
        pairs = []
        for im in images[:limit]:
            if im.lr.ndim == 3:  # RGB only: the model is RGB and gray sets are scored on intensity
                pairs.append((im.name, im.lr, im.hr))
        return f"Set5 ({shared})", pairs
    except Exception as e:  # absent data or other layout: fall back to the embedded photo
        from edsr_tf.export.verify import verification_images

        print(f"  (Set5 unavailable: {e}; using the embedded photograph)", file=sys.stderr)
        ims = verification_images(scale, max_lr_side=None)
        return "embedded photograph 'chelsea'", [(i.name, i.lr, i.hr) for i in ims]


def main(argv=None) -> int:
    from edsr_tf.cli_args import ArgumentParser, add_flag, add_scale_flag

    p = ArgumentParser(prog="benchmarks/inference_latency.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", action="append", default=[],
                   help="trained .weights.h5/.keras (repeat for several scales); scales without one "
                        "use a randomly initialised --preset model")
    p.add_argument("--preset", default="edsr_baseline")
    add_scale_flag(p, "--scales", default=(2, 4), help="comma list of scales (default 2,4)")
    p.add_argument("--sizes", default="128,256", help="LR sides (square inputs)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--runs", type=int, default=5, help="timed runs per point (after one warm-up)")
    add_flag(p, "--psnr_images", "--psnr-images", type=int, default=5,
             help="real images for the PSNR check (0: skip)")
    add_flag(p, "--int8_ranges", "--int8-ranges", default="mse", choices=("mse", "minmax"),
             help="TFLite int8 activation ranges: mse (refined, the export default) or the "
                  "converter's plain min/max")
    add_flag(p, "--onnx_calibration", "--onnx-calibration", default="Percentile",
             help="onnxruntime CalibrationMethod for ONNX int8 (MinMax, Percentile, Entropy, ...)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.export import savedmodel, tflite
    from edsr_tf.export.calibration import calibration_patches
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model
    from edsr_tf.export.verify import KerasRunner
    from edsr_tf.metrics import evaluate_pair
    from edsr_tf.models import ModelConfig, build_model, load_model, model_for_scale

    scales = list(args.scale)
    sizes = [int(s) for s in args.sizes.split(",")]
    runtimes = [r for r in args.runtimes.split(",") if r]
    threads = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {threads} CPUs; "
          f"tensorflow {tf.__version__}, keras {keras.__version__}", file=sys.stderr)
    peak = matmul_peak()
    print(f"fp32 matmul 2048^2: TF {peak['tf_gflops']:.1f} GFLOP/s, NumPy {peak['numpy_gflops']:.1f} "
          f"GFLOP/s", file=sys.stderr)
    calib = calibration_patches(num_patches=32, patch_size=64)
    trained = {}
    for w in args.weights:
        m, c = load_model(w)
        for s in c.scales:
            trained[s] = (w, m, c)
    results, quality = [], []
    with tempfile.TemporaryDirectory(prefix="edsr_latency_") as tmp:
        tmp = Path(tmp)
        for scale in scales:
            if scale in trained:
                w, model, config = trained[scale]
                model_name = f"{w} ({config.preset or config.arch} x{scale}, trained)"
            else:
                config = ModelConfig.from_preset(args.preset, scale)
                model = build_model(config)
                model_name = f"{args.preset} x{scale}, random weights (untrained)"
            sub = model_for_scale(model, config, scale)
            t0 = time.perf_counter()
            conv = export_conversion_savedmodel(inference_model(sub), tmp / f"conv_x{scale}")
            runners = {}
            if "keras" in runtimes:
                runners["keras"] = KerasRunner(sub)
            if "savedmodel" in runtimes:
                runners["savedmodel"] = savedmodel.SavedModelRunner(
                    savedmodel.save_serving_model(sub, scale, tmp / f"sm_x{scale}" / "1"))
            for q in ("fp32", "fp16", "dynamic", "int8"):
                if f"tflite_{q}" in runtimes:
                    path = tflite.write(tflite.convert(conv, "none" if q == "fp32" else q, calib,
                                                       int8_ranges=args.int8_ranges),
                                        tmp / f"x{scale}_{q}.tflite")
                    runners[f"tflite_{q}"] = tflite.TFLiteRunner(path, num_threads=threads)
            if "onnx_fp32" in runtimes or "onnx_int8" in runtimes:
                fp32 = onnx_export.convert(conv, tmp / f"x{scale}_fp32.onnx")
                if "onnx_fp32" in runtimes:
                    runners["onnx_fp32"] = onnx_export.OnnxRunner(fp32)
                if "onnx_int8" in runtimes:
                    runners["onnx_int8"] = onnx_export.OnnxRunner(
                        onnx_export.quantize_int8(fp32, tmp / f"x{scale}_int8.onnx", calib,
                                                  calibrate_method=args.onnx_calibration))
            print(f"x{scale}: exports built in {time.perf_counter() - t0:.0f} s ({model_name})", file=sys.stderr)
            for size in sizes:
                x = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
                gflop = conv_flops(config, scale, size, size) / 1e9
                timings = timed_interleaved(runners, x, args.runs)
                for name, t in timings.items():
                    # best-of-runs against the best-of matmul peak: both least disturbed by other load
                    g = gflop / t["min_s"]
                    row = {"scale": scale, "lr_size": size, "runtime": name, "model": model_name,
                           "gflop": gflop, "latency_ms": t["median_s"] * 1e3, "min_ms": t["min_s"] * 1e3,
                           "gflops": g, "fraction_of_peak": g / peak["peak_gflops"], "runs": t["runs"]}
                    results.append(row)
                    print(f"  x{scale} {size}x{size} {name:15s} {row['latency_ms']:9.1f} ms "
                          f"(best {row['min_ms']:.1f})  {g:7.1f} GFLOP/s", file=sys.stderr)
            if args.psnr_images > 0:
                source, pairs = real_images(scale, args.psnr_images)
                for name, runner in runners.items():
                    vals = [evaluate_pair(runner.run(lr[None].astype(np.float32))[0], hr, scale,
                                          with_ssim=False)["psnr"] for _, lr, hr in pairs]
                    quality.append({"scale": scale, "runtime": name, "psnr_db": float(np.mean(vals)),
                                    "images": source, "n": len(pairs), "model": model_name})
                ref = next((q["psnr_db"] for q in quality if q["scale"] == scale and q["runtime"] == "keras"), None)
                for q in quality:
                    if q["scale"] == scale and ref is not None:
                        q["drop_db"] = ref - q["psnr_db"]
    # Measured again at the end; the better of the two is the peak (other load only slows a
    # measurement down), and the spread shows how noisy the machine was.
    end = matmul_peak()
    peak["peak_gflops_start"] = peak["peak_gflops"]
    peak["peak_gflops_end"] = end["peak_gflops"]
    peak["peak_gflops"] = max(peak["peak_gflops"], end["peak_gflops"])
    for row in results:
        row["fraction_of_peak"] = row["gflops"] / peak["peak_gflops"]
    print(f"fp32 matmul peak at the end: {end['peak_gflops']:.1f} GFLOP/s", file=sys.stderr)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": threads},
           "peak": peak, "latency": results, "quality": quality, "runs": args.runs,
           "command": " ".join([Path(sys.argv[0]).name if sys.argv else "inference_latency.py", *(argv or sys.argv[1:])])}
    print(markdown(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def markdown(out: dict) -> str:
    peak = out["peak"]
    lines = [
        f"fp32 matmul peak (2048², best of TF and NumPy, at the start {peak['peak_gflops_start']:.1f} and "
        f"at the end {peak['peak_gflops_end']:.1f}): **{peak['peak_gflops']:.1f} GFLOP/s** on "
        f"{out['machine']['threads']} threads",
        "",
        f"Batch 1, {out['runs']} timed runs per runtime after one warm-up, runtimes interleaved "
        "round-robin; GFLOP/s and the fraction of peak use the best run (as the peak does).",
        "",
        "| scale | LR input | runtime | GFLOP | latency ms median (best) | GFLOP/s | of fp32 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out["latency"]:
        lines.append(f"| x{r['scale']} | {r['lr_size']}² | {r['runtime']} | {r['gflop']:.1f} | "
                     f"{r['latency_ms']:.0f} ({r['min_ms']:.0f}) | {r['gflops']:.1f} | {r['fraction_of_peak']:.2f} |")
    by = {(r["scale"], r["lr_size"], r["runtime"]): r for r in out["latency"]}
    speed = []
    for (s, n, rt), r in by.items():
        if rt == "tflite_int8" and (s, n, "tflite_fp32") in by:
            speed.append(f"x{s} {n}²: {by[(s, n, 'tflite_fp32')]['min_ms'] / r['min_ms']:.2f}×")
    if speed:
        lines += ["", "TFLite int8 speed-up over TFLite fp32 (best runs): " + ", ".join(speed)]
    if out["quality"]:
        lines += ["", "| scale | runtime | PSNR dB (Y) | drop vs Keras dB | images | model |", "|---|---|---|---|---|---|"]
        for q in out["quality"]:
            lines.append(f"| x{q['scale']} | {q['runtime']} | {q['psnr_db']:.3f} | {q.get('drop_db', 0):+.3f} | "
                         f"{q['images']} ({q['n']}) | {q['model']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
