"""Browser latency of the web export: one 256x256 LR image upscaled x2 and x4 in headless Chromium
(ONNX Runtime Web, WASM SIMD, 1 thread and all threads), next to onnxruntime and TFLite fp32 in
Python on the same machine in the same run.

For each scale, the model is exported to ONNX and a web bundle (edsr_tf.export.web), served on
127.0.0.1, and the same PNG goes through the page's file input (untiled, ``?tile=0``, so every
runtime does the same work; and once with the page's default tile). ``model`` is the time inside
``session.run``; ``page`` is the page end to end (decode, bicubic preview, model, PNG encoding).
Without --weights the model is EDSR-baseline with random weights: latency does not depend on the
weight values. Median (best) of --runs runs after one warm-up.

    python benchmarks/web_latency.py [--weights W.weights.h5] [--scale=2,4] [--size 256] [--runs 3]
        [--json out.json]

Needs what tests/test_web.py needs: Playwright, Chromium and ``npm ci --prefix edsr_tf/export/web_page``.
"""

from __future__ import annotations

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


def _stats(times_ms: list[float]) -> dict:
    return {"median_ms": statistics.median(times_ms), "best_ms": min(times_ms), "runs": len(times_ms)}


def _time(fn, runs: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return _stats(times)


def _fmt(rec: dict | None) -> str:
    if not rec:
        return "-"
    return f"{rec['median_ms']:,.0f} ({rec['best_ms']:,.0f})"


def bench_scale(scale: int, weights: str | None, size: int, runs: int, browser, work: Path) -> dict:
    import keras
    from PIL import Image

    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.export import tflite, web
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model
    from edsr_tf.metrics import quantize
    from edsr_tf.models import ModelConfig, build_model, load_model, model_for_scale
    from edsr_tf.sample_data import sample_image

    if weights:
        model, config = load_model(weights)
        net = model_for_scale(model, config, scale)
    else:
        keras.utils.set_random_seed(scale)
        config = ModelConfig.from_preset("edsr_baseline", scale)
        net = build_model(config)
    name = f"{config.preset or config.arch}_x{scale}"
    conv = export_conversion_savedmodel(inference_model(net), work / f"{name}_sm")
    onnx_path = onnx_export.convert(conv, work / f"{name}.onnx")
    tfl_path = tflite.write(tflite.convert(conv, "none", None), work / f"{name}_fp32.tflite")
    folder = work / f"web_x{scale}"
    web.add_model(folder, net, scale, name, onnx_path, weights=weights)
    tile_default = json.loads((folder / "config.json").read_text())["models"][0]["tile"]

    photo = sample_image("chelsea")
    y0, x0 = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    lr = np.ascontiguousarray(photo[y0:y0 + size, x0:x0 + size, :3])
    if lr.shape[:2] != (size, size):  # the photo is 300x451: pad for larger sizes
        lr = np.pad(lr, ((0, size - lr.shape[0]), (0, size - lr.shape[1]), (0, 0)), mode="reflect")
    image = work / f"lr_{size}.png"
    Image.fromarray(lr).save(image)
    x = lr[None].astype(np.float32)
    threads = os.cpu_count() or 1

    rec: dict = {"scale": scale, "model": name, "weights": weights or "random", "size": size,
                 "onnx_bytes": onnx_path.stat().st_size, "tile_default": tile_default}
    ort = onnx_export.OnnxRunner(onnx_path, num_threads=threads)
    rec["onnxruntime"] = _time(lambda: ort.run(x), runs)
    tfl = tflite.TFLiteRunner(tfl_path, num_threads=threads)
    rec["tflite_fp32"] = _time(lambda: tfl.run(x), runs)
    reference = quantize(np.asarray(net(x, training=False))[0])
    del ort, tfl

    with web.serve(folder) as url:
        context = browser.new_context(accept_downloads=True)
        try:
            for label, query in (("web_1_thread", "?tile=0&threads=1"),
                                 ("web_all_threads", f"?tile=0&threads={threads}"),
                                 ("web_default_tile", f"?threads={threads}")):
                page = web.open_page(context, f"{url}index.html{query}")
                model_ms, page_ms, out = [], [], None
                for i in range(runs + 1):
                    result = web.upscale_file(page, image, timeout_s=600)
                    if "error" in result:
                        raise RuntimeError(f"{label}: {result['error']}")
                    if i:  # the first run is the warm-up
                        model_ms.append(result["stats"]["modelMs"])
                        page_ms.append(result["stats"]["totalMs"])
                    out = result
                got = web.decode_png(out["png"])
                rec[label] = {
                    "model": _stats(model_ms), "page": _stats(page_ms),
                    "threads": out["stats"]["threads"], "tiles": out["stats"]["tiles"],
                    "isolated": page.evaluate("() => window.edsr.isolated"),
                    "max_diff_levels_vs_keras": int(np.abs(got.astype(int) - reference.astype(int)).max()),
                }
                page.close()
                print(f"  x{scale} {label}: model {_fmt(rec[label]['model'])} ms, page "
                      f"{_fmt(rec[label]['page'])} ms, {rec[label]['tiles']} tile(s)", file=sys.stderr)
        finally:
            context.close()
    return rec


def table(results: list[dict], threads: int) -> str:
    head = ["scale, LR", f"onnxruntime ({threads} thr)", f"TFLite fp32 ({threads} thr)",
            "Chromium WASM 1 thr: model / page", f"Chromium WASM {threads} thr: model / page",
            "Chromium default tile: page (tiles)", "browser vs Keras (levels)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        w1, wn, wd = r["web_1_thread"], r["web_all_threads"], r["web_default_tile"]
        lines.append("| " + " | ".join([
            f"×{r['scale']} {r['size']}²", _fmt(r["onnxruntime"]), _fmt(r["tflite_fp32"]),
            f"{_fmt(w1['model'])} / {_fmt(w1['page'])}", f"{_fmt(wn['model'])} / {_fmt(wn['page'])}",
            f"{_fmt(wd['page'])} ({wd['tiles']})",
            str(max(w1["max_diff_levels_vs_keras"], wn["max_diff_levels_vs_keras"])),
        ]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from edsr_tf.cli_args import ArgumentParser, add_scale_flag

    p = ArgumentParser(prog="benchmarks/web_latency.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="model file (default: random EDSR-baseline per scale)")
    add_scale_flag(p, "--scales", default=(2, 4), help="comma list of scales (default 2,4)")
    p.add_argument("--size", type=int, default=256, help="LR side")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from edsr_tf.export import web

    reason = web.browser_unavailable()
    if reason:
        print(f"web_latency: {reason}", file=sys.stderr)
        return 2
    web.runtime_dist()
    scales = list(args.scale)
    results = []
    with tempfile.TemporaryDirectory(prefix="edsr-web-bench-") as tmp, web.chromium() as browser:
        version = browser.version
        for s in scales:
            results.append(bench_scale(s, args.weights, args.size, args.runs, browser, Path(tmp)))
    threads = os.cpu_count() or 1
    import onnxruntime

    meta = {
        "machine": f"{platform.system()} {platform.machine()}, {threads} CPUs",
        "chromium": version, "onnxruntime_web": web.pinned_version(),
        "onnxruntime": onnxruntime.__version__, "load_average": os.getloadavg(),
    }
    print(f"\nms, median (best) of {args.runs} after a warm-up; {meta['machine']}; Chromium {version}; "
          f"onnxruntime-web {meta['onnxruntime_web']}; onnxruntime {meta['onnxruntime']}; "
          f"load average {meta['load_average'][0]:.1f}; weights: {args.weights or 'random EDSR-baseline'}\n")
    print(table(results, threads))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
