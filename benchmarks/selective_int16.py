"""Selective higher precision with ai-edge-quantizer: do int16 / float islands pay for themselves?

Starting from the float ``.tflite`` of the shipped EDSR-baseline ×2 and ×4 models, builds with
`ai-edge-quantizer <https://pypi.org/project/ai-edge-quantizer/>`_ (AEQ, tested with 0.10.0):

- **AEQ int8**: static int8 (``static_wi8_ai8``: per-channel int8 weights, asymmetric int8
  activations, min/max calibration on the same calibration patches as ``python -m export``,
  ``edsr_tf.export.calibration.calibration_patches``);
- **AEQ int8 + islands**: the same, with the *islands* (by default: the head conv, the
  upsampler convs and shuffles, and the tail conv with the output clip) at int16 activations
  with int8 weights (``a16w8``) or left in float (``no_quantize``);

and compares them with the float TFLite export and the project's own int8 export (TFLite
converter, refined ranges): Set5 PSNR (Y channel, ``scale`` px shaved, through
``edsr_tf.evaluation.evaluate_set``) and latency at one LR size (LiteRT, XNNPACK, all CPUs,
round-robin over the variants; a variant more than 5× slower than AEQ int8 is timed once).

AEQ 0.10.0 has no quantized DEPTH_TO_SPACE (nor MINIMUM): it leaves the pixel shuffles in
float between a DEQUANTIZE and a QUANTIZE. As a shuffle only moves values, running it on the
int8 tensor is exact; :func:`int8_shuffles` rewrites those chains (the QUANTIZE stays as an
int8→int8 requantize where its scale differs), so "AEQ int8" is compared as a full-int8 model;
``--keep_float_shuffles`` measures AEQ's own output instead. LiteRT's DEPTH_TO_SPACE has no
int16 kernel, so in int16 islands the shuffles stay float.

    python benchmarks/selective_int16.py [--scale=2,4] [--size 256] [--runs 3]
        [--islands head+upsampler+tail,tail] [--export_dir DIR] [--dataset_dir ../shared/data]
        [--out_dir DIR] [--json out.json]

``--export_dir DIR``: ``DIR/x<scale>`` folders written by ``python -m export --formats tflite
--quantize none,int8`` (else the shipped models are exported here first).

Findings (shipped edsr_baseline ×2/×4, AEQ 0.10.0, 1 LiteRT thread at LR 256² on a 2-core
machine shared with a training job; full table in the issue 10 report):

- the islands do not pay: head + upsampler + tail in float recover 0.063 dB at ×2 (drop
  0.311 → 0.248 dB) for 1.42× the time of int8, and 0.018 dB at ×4 (0.063 → 0.045) for 2.29×;
  the tail alone 0.034 / 0.013 dB for 1.13× / 1.38×. At int16 (a16w8) they gain no more than
  float and are 18-58× slower: LiteRT runs 16×8 convolutions on reference kernels, not XNNPACK;
- most of AEQ's int8 loss is in the LR body, not in the islands; the project's converter int8
  with refined ranges (``tflite.convert(..., "int8")``) is as fast and loses less (×2 0.154 dB);
- AEQ's default calibration (a moving average of the per-batch min/max) clips the input to
  [0, 223] and costs 3.2 dB at ×2 and 1.4 dB at ×4: global min/max (``ranges="minmax"``) is
  required for pixel inputs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

#: Island name → regex on the op's output tensor name (AEQ matches layers by it, ``re.search``).
ISLANDS: dict[str, str] = {
    "head": r"/head_1/",
    "upsampler": r"/upsample_\d+_(conv|shuffle)_1/",
    "tail": r"/tail_1/|clip_by_value|^StatefulPartitionedCall",
}
#: Island precisions: int16 activations with int8 weights, or float (not quantized).
PRECISIONS = ("a16w8", "float")


def island_regex(spec: str) -> str:
    """``"head+upsampler+tail"`` → one regex matching the ops of those islands."""
    parts = [p for p in spec.split("+") if p]
    unknown = [p for p in parts if p not in ISLANDS]
    if unknown or not parts:
        raise ValueError(f"unknown island(s) {unknown or spec!r}; expected a '+' list of {sorted(ISLANDS)}")
    return "|".join(f"(?:{ISLANDS[p]})" for p in parts)


#: Activation range updates across calibration patches: global min/max, or AEQ's default.
RANGE_UPDATES = ("minmax", "moving_average")


def aeq_quantize(float_path: Path, calibration: list[np.ndarray], islands: str | None = None,
                 precision: str = "a16w8", ranges: str = "minmax") -> bytes:
    """AEQ static int8 of ``float_path``; the ops matching ``islands`` at ``precision``.

    ``ranges``: "minmax" takes each activation's min/max over all calibration patches (as
    TFLite's converter does); "moving_average" is what ``Quantizer.calibrate`` does by
    default (a running average of the per-patch min/max), which shrinks the input range
    below [0, 255] and clips bright pixels (input scale 0.87: pixels above 223 are lost; the
    findings in the module docstring).
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    q = quantizer.Quantizer(str(float_path), recipe.static_wi8_ai8())
    if islands:
        regex = island_regex(islands)
        if precision == "a16w8":
            q.add_static_config(regex, qtyping.TFLOperationName.ALL_SUPPORTED,
                                activation_num_bits=16, weight_num_bits=8)
        elif precision == "float":
            q.update_quantization_recipe(regex, qtyping.TFLOperationName.ALL_SUPPORTED,
                                         algorithm_key="no_quantize")
        else:
            raise ValueError(f"unknown island precision {precision!r} (expected one of {PRECISIONS})")
    if ranges not in RANGE_UPDATES:
        raise ValueError(f"unknown range update {ranges!r} (expected one of {RANGE_UPDATES})")
    signatures = Interpreter(model_path=str(float_path)).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    data = {key: [{name: np.asarray(p, np.float32)} for p in calibration]}
    # AEQ warns that its calibration interpreter preserves all tensors (it must) and draws
    # progress bars on stderr that cannot be turned off: keep this tool's output readable.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        if ranges == "moving_average":
            qsv = q.calibrate(data)
        else:  # Quantizer.calibrate with the update function of our choice
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(q.get_quantization_recipe())
            calib = calibrator.Calibrator(str(float_path), num_threads=os.cpu_count() or 1,
                                          qsv_update_func=qsv_utils.min_max_update)
            calib.calibrate(data, manager)
            qsv = calib.get_model_qsvs()
        return bytes(q.quantize(qsv, enable_progress_report=False).quantized_model)


def _op_types(model) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [by_code.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]


def _same_quantization(a, b) -> bool:
    return (a is not None and b is not None
            and np.allclose(np.asarray(a.scale), np.asarray(b.scale), rtol=1e-6, atol=0)
            and np.array_equal(np.asarray(a.zeroPoint), np.asarray(b.zeroPoint)))


def int8_shuffles(content: bytes) -> tuple[bytes, int]:
    """Runs DEQUANTIZE(int8) → DEPTH_TO_SPACE → QUANTIZE(int8) chains on the int8 tensor.

    The shuffle output takes the input's scale and zero point (a permutation changes no
    value); the QUANTIZE is dropped when the scales match, else kept as an int8→int8
    requantize. Returns the model and the number of shuffles rewritten.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    g = model.subgraphs[0]
    names = _op_types(model)
    producer = {int(o): k for k, op in enumerate(g.operators) for o in op.outputs}
    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for k, op in enumerate(g.operators):
        for i in op.inputs:
            consumers[int(i)].append(k)
    drop, done = set(), 0
    for k, op in enumerate(g.operators):
        if names[op.opcodeIndex] != "DEPTH_TO_SPACE":
            continue
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        p = producer.get(src)
        if p is None or names[g.operators[p].opcodeIndex] != "DEQUANTIZE" or len(consumers[src]) != 1:
            continue
        after = consumers[dst]
        if len(after) != 1 or names[g.operators[after[0]].opcodeIndex] != "QUANTIZE" or dst in g.outputs:
            continue
        qin = int(g.operators[p].inputs[0])
        if g.tensors[qin].type != 9:  # int8 only: LiteRT's DEPTH_TO_SPACE has no int16 kernel
            continue
        op.inputs = [qin, *list(op.inputs)[1:]]
        out = g.tensors[dst]
        out.type = g.tensors[qin].type
        out.quantization = copy.deepcopy(g.tensors[qin].quantization)
        drop.add(p)
        qop = g.operators[after[0]]
        qout = int(qop.outputs[0])
        if _same_quantization(out.quantization, g.tensors[qout].quantization):
            for c in consumers[qout]:
                g.operators[c].inputs = [dst if int(i) == qout else int(i) for i in g.operators[c].inputs]
            g.outputs = [dst if int(o) == qout else int(o) for o in g.outputs]
            drop.add(after[0])
        done += 1
    for code, name in zip(model.operatorCodes, names):  # int8 DEPTH_TO_SPACE is version 2
        if name == "DEPTH_TO_SPACE" and done:
            code.version = max(int(code.version or 1), 2)
    g.operators = [op for k, op in enumerate(g.operators) if k not in drop]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), done


def op_precisions(content: bytes) -> str:
    """Count of ops by the dtype of their first output, e.g. ``int8 58, float32 3``."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    g = model.subgraphs[0]
    dtypes = {0: "float32", 9: "int8", 7: "int16", 3: "uint8"}
    counts = collections.Counter(dtypes.get(g.tensors[int(op.outputs[0])].type, "?") for op in g.operators)
    return ", ".join(f"{k} {v}" for k, v in counts.most_common())


def set5_psnr(path: Path, eval_set) -> float:
    """Set5 PSNR (Y, ``scale`` shaved; the repository's evaluation path) of a ``.tflite``."""
    from edsr_tf.evaluation import evaluate_set
    from edsr_tf.export.tflite import TFLiteRunner
    from edsr_tf.images import quantize_to

    runner = TFLiteRunner(path)

    def sr(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[..., None], 3, axis=-1) if lr.ndim == 2 else lr
        out = runner.run(rgb[None].astype(np.float32))[0]
        return quantize_to(out.mean(axis=-1) if lr.ndim == 2 else out, 8)

    return float(evaluate_set(sr, eval_set)["psnr"])


def latencies(models: dict[str, bytes], size: int, runs: int, threads: int, reference: str) -> dict[str, dict]:
    """Invoke time at LR ``size``² (random input) per model: round-robin, slow ones once."""
    from op_profile import TFLiteTimer, time_round_robin  # benchmarks/ is the script's folder

    timers, warm = {}, {}
    for name, content in models.items():
        timers[name] = TFLiteTimer(content, threads, [1, size, size, 3])
        t0 = time.perf_counter()
        timers[name]()
        warm[name] = time.perf_counter() - t0
    slow = {n for n in timers if warm[n] > 5 * warm[reference]}
    fast = {n: t for n, t in timers.items() if n not in slow}
    times = time_round_robin(fast, runs, warmup=0)
    for n in slow:
        t0 = time.perf_counter()
        timers[n]()
        times[n] = [time.perf_counter() - t0]
    return {n: {"median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3, "runs": len(t)}
            for n, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    from edsr_tf.cli_args import ArgumentParser, add_flag, add_scale_flag

    p = ArgumentParser(prog="benchmarks/selective_int16.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scale_flag(p, default=(2, 4), help="shipped edsr_baseline scales (default 2,4)")
    add_flag(p, "--export_dir", default=None, help="folder with x<scale>/tflite/*_{fp32,int8}.tflite")
    add_flag(p, "--dataset_dir", default=str(REPO.parent / "shared" / "data"), help="holds Set5")
    p.add_argument("--size", type=int, default=256, help="LR side for the latency")
    p.add_argument("--runs", type=int, default=3, help="timed runs per variant")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--islands", default="head+upsampler+tail,tail",
                   help=f"comma list of island sets, each a '+' list of {sorted(ISLANDS)}")
    add_flag(p, "--precisions", default=",".join(PRECISIONS), help="island precisions: a16w8, float")
    add_flag(p, "--keep_float_shuffles", action="store_true",
             help="measure AEQ's output as is (float DEPTH_TO_SPACE between DEQUANTIZE/QUANTIZE)")
    add_flag(p, "--moving_average", action="store_true",
             help="also AEQ int8 with AEQ's default moving-average calibration ranges")
    add_flag(p, "--out_dir", default=None, help="keep the quantized models here")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    try:
        import ai_edge_quantizer  # noqa: F401 - a benchmark-only dependency, not in requirements.txt
    except ImportError as e:
        from edsr_tf.cli_args import print_error

        print_error(f"ai-edge-quantizer is not installed ({e}): pip install ai-edge-quantizer==0.10.0")
        return 1

    from edsr_tf.evaluation import load_benchmark_set
    from edsr_tf.export.calibration import calibration_patches
    from op_profile import build_exports, find_exports

    island_sets = [s for s in args.islands.split(",") if s]
    precisions = [s for s in args.precisions.split(",") if s]
    try:
        for s in island_sets:
            island_regex(s)
    except ValueError as e:
        p.error(f"--islands: {e}")
    if not precisions or set(precisions) - set(PRECISIONS):
        p.error(f"--precisions {args.precisions!r}: expected a comma list of {', '.join(PRECISIONS)}")
    from edsr_tf.benchmark_sets import DatasetNotFoundError

    try:
        eval_sets = {s: load_benchmark_set(args.dataset_dir, "Set5", s) for s in args.scale}
    except DatasetNotFoundError as e:
        p.error(f"--dataset_dir: {e}")
    calib = calibration_patches(num_patches=32, patch_size=64)  # as python -m export's default
    version = _version("ai-edge-quantizer")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edsr_selective_") as tmp:
        out_dir = Path(args.out_dir) if args.out_dir else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for scale in args.scale:
            if args.export_dir:
                files = find_exports(Path(args.export_dir) / f"x{scale}")
            else:
                print(f"x{scale}: exporting edsr_baseline_x{scale} ...", file=sys.stderr)
                files = build_exports(f"edsr_baseline_x{scale}", Path(tmp) / f"x{scale}", onnx=False)
            eval_set = eval_sets[scale]
            models: dict[str, bytes] = {"fp32 TFLite": files["tflite_fp32"].read_bytes(),
                                        "converter int8 (export)": files["tflite_int8"].read_bytes()}
            notes: dict[str, str] = {}
            variants = [(None, "int8", "minmax")]
            if args.moving_average:
                variants.append((None, "int8", "moving_average"))
            variants += [(s, pr, "minmax") for s in island_sets for pr in precisions]
            for islands, precision, ranges in variants:
                t0 = time.perf_counter()
                content = aeq_quantize(files["tflite_fp32"], calib, islands, precision, ranges)
                fixed = 0
                if not args.keep_float_shuffles:
                    content, fixed = int8_shuffles(content)
                name = "AEQ int8" if islands is None else f"AEQ int8 + {islands} {precision}"
                if ranges != "minmax":
                    name += f" ({ranges} ranges, AEQ's default)"
                models[name] = content
                notes[name] = f"{fixed} shuffles int8" if fixed else ""
                print(f"x{scale}: {name} built in {time.perf_counter() - t0:.0f} s ({op_precisions(content)})",
                      file=sys.stderr)
            paths = {}
            for name, content in models.items():
                paths[name] = out_dir / f"x{scale}_{_slug(name)}.tflite"
                paths[name].write_bytes(content)
            psnr = {}
            for name, path in paths.items():
                t0 = time.perf_counter()
                psnr[name] = set5_psnr(path, eval_set)
                print(f"x{scale}: {name}: Set5 {psnr[name]:.3f} dB ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr)
            lat = latencies(models, args.size, args.runs, args.threads, reference="AEQ int8")
            for name in models:
                rows.append({"scale": scale, "variant": name, "psnr": psnr[name],
                             "drop_db": psnr["fp32 TFLite"] - psnr[name], "latency": lat[name],
                             "precisions": op_precisions(models[name]), "note": notes.get(name, "")})
                print(f"x{scale}: {name}: {lat[name]['median_ms']:.0f} ms", file=sys.stderr)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                       "load_avg_end": os.getloadavg()},
           "ai_edge_quantizer": version, "size": args.size, "runs": args.runs, "rows": rows,
           "calibration": "32 patches of 64² of the embedded photographs (python -m export's default)"}
    print(markdown(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def markdown(out: dict) -> str:
    """The comparison table: PSNR drop vs fp32 TFLite and latency vs AEQ int8, per scale."""
    lines = [f"ai-edge-quantizer {out['ai_edge_quantizer']}; calibration: {out['calibration']}; latency at LR "
             f"{out['size']}², LiteRT XNNPACK {out['machine']['threads']} threads, median (best) of "
             f"{out['runs']} round-robin runs (one run where marked ¹); busy shared machine.", "",
             "| scale | variant | Set5 PSNR dB | drop vs fp32 dB | latency ms | × AEQ int8 time "
             "| ops by output dtype |",
             "|---|---|---|---|---|---|---|"]
    for scale in sorted({r["scale"] for r in out["rows"]}):
        rows = [r for r in out["rows"] if r["scale"] == scale]
        ref = next(r for r in rows if r["variant"] == "AEQ int8")["latency"]["min_ms"]
        for r in rows:
            lat = r["latency"]
            mark = "¹" if lat["runs"] == 1 else ""
            note = f"; {r['note']}" if r["note"] else ""
            lines.append(f"| ×{scale} | {r['variant']} | {r['psnr']:.3f} | {r['drop_db']:+.3f} | "
                         f"{lat['median_ms']:.0f} ({lat['min_ms']:.0f}){mark} | {lat['min_ms'] / ref:.2f} | "
                         f"{r['precisions']}{note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
