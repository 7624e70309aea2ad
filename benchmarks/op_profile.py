"""Per-op latency profile of EDSR exports: LiteRT (.tflite fp32 and int8) and onnxruntime (.onnx fp32).

Where the time of an exported model goes, per op type and per op (top N), at LR 128² and 256²
(batch 1), to see what keeps TFLite int8 below 3.5× of TFLite fp32 at ×4 and onnxruntime fp32
below the fp32 matmul peak that ``benchmarks/inference_latency.py`` measures.

**LiteRT** (``ai-edge-litert``): its Python package exposes no per-op profiler (the
``Interpreter`` has no profiler hook; ``CompiledModel`` has none either; the only C++ profiler it
reaches, ``_pywrap_tfl_calibration.InvokeWithCalibration``, returns tensor min/max, not times),
so each op is **cut out of the graph into a single-op model** (the same op, weights,
quantization and options, the tensor shapes the full model has at that LR size, read from a
builtin-kernel interpreter after ``allocate_tensors``) and timed in the LiteRT interpreter with
the same thread count and the default XNNPACK delegate. The fp32 and int8 models of a row are
timed alternately (round-robin), so their ratio sees the same machine load. The full models are
timed the same way at the start and end; "sum of ops / full" shows what the cut loses or adds
(XNNPACK runs the full graph as one delegate partition; a single op sees warm caches and no
neighbours). "XNNPACK" says whether the delegate took the op (a single-op model whose execution
plan is not one delegate node runs on LiteRT's builtin kernels).

**onnxruntime**: ``SessionOptions.enable_profiling`` (the session options of
``edsr_tf.export.onnx.OnnxRunner``, plus ``--ort_options``); the JSON trace's
``<node>_kernel_time`` events, the first (warm-up) run dropped, median over the others.
GFLOP of a conv is counted from the kernel's own shapes (``2·|W|·H·W``), i.e. including the
channel padding of onnxruntime's NCHWc kernels (the 3-channel tail runs as 16 channels).

``--ort_sweep`` instead times the onnxruntime session options of issue 10 (optimization level,
execution mode, spinning, memory pattern / arena) against the runner's defaults, interleaved.
``--scaling`` also profiles TFLite on one thread and prints each layer group's speed-up on
``--threads`` (ops on builtin kernels run single-threaded; memory-bound ops scale less).

    python benchmarks/op_profile.py [--weights edsr_baseline_x4 | --export_dir exports/x4]
        [--sizes 128,256] [--runs 5] [--top 12] [--threads N] [--no_peak] [--json out.json]
    python benchmarks/op_profile.py --export_dir exports/x4 --ort_sweep [--sizes 128,256]
    python benchmarks/op_profile.py --export_dir exports/x4 --runtimes tflite --threads 2 --scaling

``--export_dir`` is a folder written by ``python -m export --formats tflite,onnx --quantize
none,int8``; without it the model (a shipped name or a weights file) is exported here first.

Findings (shipped edsr_baseline ×2/×4, 1 thread, 2-core AVX-512 machine shared with a training
job, so one core; the cut models add up to the full model within 2 %):

- TFLite int8 ×4 is 3.7-3.9× fp32 on one core (×2: 3.7-3.8×): its convs run 3.8-4.2× (tail
  5.3-5.7×); what holds it back is int8-only: MINIMUM, RELU and the two QUANTIZEs, which XNNPACK
  does not take, run single-threaded on builtin kernels at HR size (3.5 % of int8 time at ×4,
  1.3 % at ×2; MINIMUM and RELU are exact no-ops after the [0, 255] tail), and the residual ADDs
  (only 1.3-2.8× faster than fp32). Both runtimes spend 10-11 % of fp32 ×4 time on the
  3-channel tail conv at 4× resolution (1.4 % of the FLOPs, 0.12 of peak);
- onnxruntime fp32 ×4 spends 12-13 % of its kernel time on layout: DepthToSpace in NCHW (7-9×
  TFLite's NHWC shuffle) and NCHWc reorders around it; its convs run at 0.93-1.0 of peak.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

#: Wrapper components of tensor names that are not layers (the inference wrapper, the model).
_WRAPPER = re.compile(r"^(edsr_inference|edsr_x\d+|mdsr\w*|StatefulPartitionedCall)(_\d+)?$")


# ----------------------------------------------------------------------------- exports


def find_exports(export_dir: Path) -> dict[str, Path]:
    """``{"tflite_fp32", "tflite_int8", "onnx_fp32"}`` → files of a ``python -m export`` folder."""
    found = {}
    for key, pattern in (("tflite_fp32", "tflite/*_fp32.tflite"), ("tflite_int8", "tflite/*_int8.tflite"),
                         ("onnx_fp32", "onnx/*_fp32.onnx")):
        files = sorted(p for p in export_dir.glob(pattern) if "_tile" not in p.name)
        if files:
            found[key] = files[0]
    return found


def build_exports(weights: str, out: Path, *, onnx: bool = True) -> dict[str, Path]:
    """Exports ``weights`` (shipped name or file) to TFLite fp32/int8 and ONNX fp32 under ``out``.

    The same library calls as ``benchmarks/inference_latency.py`` (and ``python -m export``):
    int8 calibrated on 32 patches of 64² of the embedded photographs with the refined ranges.
    """
    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.export import tflite
    from edsr_tf.export.calibration import calibration_patches
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model
    from edsr_tf.models import load_model, model_for_scale

    model, config = load_model(weights)
    scale = config.scales[0]
    conv = export_conversion_savedmodel(inference_model(model_for_scale(model, config, scale)), out / "conv")
    calib = calibration_patches(num_patches=32, patch_size=64)
    files = {
        "tflite_fp32": tflite.write(tflite.convert(conv, "none"), out / "fp32.tflite"),
        "tflite_int8": tflite.write(tflite.convert(conv, "int8", calib), out / "int8.tflite"),
    }
    if onnx:
        files["onnx_fp32"] = onnx_export.convert(conv, out / "fp32.onnx")
    return files


# ----------------------------------------------------------------------------- TFLite


@dataclass
class TFLiteOp:
    """One op of a TFLite graph, with what is needed to time it alone."""

    index: int
    op_type: str
    label: str
    region: str
    out_shape: tuple[int, ...]
    dtype: str
    gflop: float
    model: bytes = field(repr=False)


def _op_types(model) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [by_code.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]


def layer_label(tensor_name: str, op_type: str) -> str | None:
    """The Keras layer an op's output tensor comes from (``body_3_conv1``, ``tail``, ``clip``), or None."""
    labels = []
    for part in tensor_name.split(";"):
        comps = [c for c in part.split("/") if c and not _WRAPPER.match(c)]
        if len(comps) >= 2:  # layer/op: the layer
            labels.append(re.sub(r"_\d+$", "", comps[0]))
    if not labels:
        return None
    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # the conv's own layer, not its fused ReLU / mean add
        convs = [lab for lab in labels if re.search(r"conv|head|tail", lab)]
        if convs:
            return convs[0]
    return "clip" if labels[0] == "clip_by_value" else labels[0]


def tensor_shapes(content: bytes, input_shape: list[int]) -> dict[int, tuple[int, ...]]:
    """Tensor index → shape of every tensor once the model is resized to ``input_shape``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=content, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], input_shape, strict=False)
    interp.allocate_tensors()
    wrapper = interp._interpreter  # noqa: SLF001 - TensorSize of every tensor, named or not
    return {i: tuple(int(d) for d in wrapper.TensorSize(i, 0)) for i in range(wrapper.NumTensors(0))}


def single_op_model(model, op_index: int, shapes: dict[int, tuple[int, ...]]) -> bytes:
    """A flatbuffer holding only op ``op_index`` of ``model``: its constant inputs as buffers, its
    other inputs as graph inputs and its outputs as graph outputs, all at ``shapes``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    op = graph.operators[op_index]
    used = list(dict.fromkeys(int(i) for i in [*op.inputs, *op.outputs] if int(i) >= 0))
    remap = {old: new for new, old in enumerate(used)}
    buffers = [schema.BufferT()]
    tensors, inputs = [], []
    for old in used:
        t = copy.copy(graph.tensors[old])
        data = model.buffers[t.buffer].data if t.buffer else None
        if data is not None and len(data):
            buffers.append(model.buffers[t.buffer])
            t.buffer = len(buffers) - 1
        else:
            t.buffer = 0
            if old in (int(i) for i in op.inputs):
                inputs.append(remap[old])
        t.shape = list(shapes[old])
        t.shapeSignature = None
        tensors.append(t)
    new_op = copy.copy(op)
    new_op.inputs = [remap[int(i)] if int(i) >= 0 else -1 for i in op.inputs]
    new_op.outputs = [remap[int(i)] for i in op.outputs]
    new_op.intermediates = None
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, inputs, list(new_op.outputs), [new_op]
    sub.name = f"op{op_index}"
    out = schema.ModelT()
    out.version = model.version
    out.operatorCodes = model.operatorCodes
    out.subgraphs = [sub]
    out.buffers = buffers
    out.description = f"op {op_index} of an EDSR export (benchmarks/op_profile.py)"
    return bytes(flatbuffer_utils.convert_object_to_bytearray(out))


def split_ops(path: Path, size: int) -> list[TFLiteOp]:
    """Every op of the ``.tflite`` at ``path`` as a single-op model at LR ``size``²."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = path.read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    names = _op_types(model)
    shapes = tensor_shapes(content, [1, size, size, 3])
    first_conv = next(i for i, op in enumerate(graph.operators) if names[op.opcodeIndex] == "CONV_2D")
    ops = []
    for k, op in enumerate(graph.operators):
        kind = names[op.opcodeIndex]
        out = graph.tensors[int(op.outputs[0])]
        label = layer_label(out.name.decode(), kind) or ("input" if k < first_conv else "output")
        oshape = shapes[int(op.outputs[0])]
        factor = oshape[1] / size if len(oshape) == 4 else 1.0
        gflop = 0.0
        if kind == "CONV_2D":
            w = shapes[int(op.inputs[1])]  # [Cout, kh, kw, Cin]
            gflop = 2.0 * float(np.prod(w)) * oshape[1] * oshape[2] / 1e9
        ops.append(TFLiteOp(k, kind, label, "LR" if factor == 1 else f"{factor:g}x", oshape,
                            np.dtype(_TFL_DTYPES.get(out.type, "float32")).name, gflop,
                            single_op_model(model, k, shapes)))
    return ops


#: TensorType enum → NumPy dtype name (the ones EDSR exports hold).
_TFL_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8", 7: "int16"}


class TFLiteTimer:
    """A LiteRT interpreter (XNNPACK, ``threads``) on a model with random inputs, ready to invoke."""

    def __init__(self, content: bytes, threads: int, input_shape: list[int] | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_content=content, num_threads=threads)
        if input_shape is not None:
            self.interp.resize_tensor_input(self.interp.get_input_details()[0]["index"], input_shape, strict=False)
        self.interp.allocate_tensors()
        rng = np.random.default_rng(0)
        for d in self.interp.get_input_details():
            dtype = np.dtype(d["dtype"])
            if dtype.kind == "f":
                x = rng.standard_normal(d["shape"]).astype(dtype) * 30
            else:
                info = np.iinfo(dtype)
                x = rng.integers(info.min, info.max + 1, d["shape"]).astype(dtype)
            self.interp.set_tensor(d["index"], x)
        # a delegated single op leaves one DELEGATE node after the original one
        nodes = self.interp._interpreter.NumNodes()  # noqa: SLF001
        self.delegated = nodes > 1 and self.interp._interpreter.NodeName(nodes - 1) == "DELEGATE"  # noqa: SLF001

    def __call__(self) -> None:
        self.interp.invoke()


def time_round_robin(fns: dict[str, Callable[[], None]], runs: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of ``runs`` calls of each function, round-robin, after ``warmup`` calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _stat(ts: list[float]) -> dict:
    return {"median_ms": statistics.median(ts) * 1e3, "min_ms": min(ts) * 1e3}


def _rows_key(ops: list[TFLiteOp]) -> list[tuple[str, str, int]]:
    """(op type, label, occurrence) per op, to pair the ops of two variants of one model."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for op in ops:
        k = (op.op_type, op.label)
        seen[k] = seen.get(k, 0) + 1
        keys.append((*k, seen[k]))
    return keys


def profile_tflite(files: dict[str, Path], size: int, threads: int, runs: int) -> dict:
    """Per-op (single-op models) and full-model times of every TFLite variant at LR ``size``²."""
    variants = {k.split("_", 1)[1]: p for k, p in files.items() if k.startswith("tflite_")}
    full = {v: TFLiteTimer(p.read_bytes(), threads, [1, size, size, 3]) for v, p in variants.items()}
    full_before = time_round_robin(full, runs)
    del full
    ops = {v: split_ops(p, size) for v, p in variants.items()}
    keys = {v: _rows_key(o) for v, o in ops.items()}
    order: list[tuple[str, str, int]] = []
    for v in ops:  # fp32's order, then ops only another variant has (int8's QUANTIZE) in place
        for k in keys[v]:
            if k not in order:
                order.append(k)
    order.sort(key=lambda k: min(o.index for v in ops for o, kk in zip(ops[v], keys[v]) if kk == k))
    rows = []
    for key in order:
        members = {v: o for v in ops for o, kk in zip(ops[v], keys[v]) if kk == key}
        timers = {v: TFLiteTimer(o.model, threads) for v, o in members.items()}
        times = time_round_robin(timers, runs)
        first = next(iter(members.values()))
        row = {"op_type": key[0], "label": key[1], "region": first.region, "out_shape": list(first.out_shape),
               "gflop": first.gflop, "variants": {}}
        for v, o in members.items():
            row["variants"][v] = {**_stat(times[v]), "xnnpack": timers[v].delegated, "dtype": o.dtype}
        rows.append(row)
        del timers
    full = {v: TFLiteTimer(p.read_bytes(), threads, [1, size, size, 3]) for v, p in variants.items()}
    full_after = time_round_robin(full, runs)
    del full
    return {"size": size, "threads": threads, "runs": runs, "rows": rows,
            "full": {v: _stat(full_before[v] + full_after[v]) for v in variants}}


# ----------------------------------------------------------------------------- onnxruntime


def ort_session(path: Path, threads: int, options: dict | None = None, profile_prefix: str | None = None):
    """An onnxruntime CPU session as ``OnnxRunner`` makes it, with ``options`` applied on top.

    ``options``: SessionOptions attributes (``graph_optimization_level``: a
    ``GraphOptimizationLevel`` name; ``execution_mode``: an ``ExecutionMode`` name;
    ``enable_mem_pattern``, ``enable_cpu_mem_arena``, ``intra_op_num_threads``,
    ``inter_op_num_threads``) and session config entries (keys with a dot, e.g.
    ``session.intra_op.allow_spinning``).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # the one option OnnxRunner sets
    for k, v in (options or {}).items():
        if "." in k:
            so.add_session_config_entry(k, str(v))
        elif k == "graph_optimization_level":
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, v)
        elif k == "execution_mode":
            so.execution_mode = getattr(ort.ExecutionMode, v)
        else:
            setattr(so, k, v)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def _spatial(shape: list[int]) -> int | None:
    """The (square) spatial side of an NCHW or NHWC 4-D shape."""
    if len(shape) != 4:
        return None
    if shape[2] == shape[3]:
        return shape[2]
    if shape[1] == shape[2]:
        return shape[1]
    return None


def profile_ort(path: Path, size: int, threads: int, runs: int, options: dict | None = None) -> dict:
    """Per-node kernel times of onnxruntime (its own profiler) at LR ``size``²."""
    with tempfile.TemporaryDirectory(prefix="ort_profile_") as tmp:
        sess = ort_session(path, threads, options, profile_prefix=str(Path(tmp) / "ort"))
        x = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
        name = sess.get_inputs()[0].name
        for _ in range(runs + 1):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    nodes: dict[str, dict] = {}
    model_runs = []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            model_runs.append(e["dur"])
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        n = nodes.setdefault(e["name"][: -len("_kernel_time")], {"durs": [], "args": e["args"]})
        n["durs"].append(e["dur"])
    rows = []
    for node, n in nodes.items():
        durs = n["durs"][1:] or n["durs"]  # drop the warm-up run
        args = n["args"]
        shapes_in = [list(d.values())[0] for d in args.get("input_type_shape", [])]
        shapes_out = [list(d.values())[0] for d in args.get("output_type_shape", [])]
        gflop = 0.0
        if args.get("op_name") in ("Conv", "FusedConv") and len(shapes_in) > 1 and shapes_out:
            out = shapes_out[0]
            gflop = 2.0 * float(np.prod(shapes_in[1])) * out[0] * float(np.prod(out[2:])) / 1e9
        side = _spatial(shapes_out[0]) if shapes_out else None
        rows.append({"node": node, "op_type": args.get("op_name", "?"), "provider": args.get("provider"),
                     "median_ms": statistics.median(durs) / 1e3, "min_ms": min(durs) / 1e3,
                     "gflop": gflop, "out_shape": shapes_out[0] if shapes_out else None,
                     "region": "LR" if side == size else (f"{side / size:g}x" if side else "?")})
    runs_us = model_runs[1:] or model_runs
    return {"size": size, "threads": threads, "runs": runs, "options": options or {}, "rows": rows,
            "model_run_ms": {"median_ms": statistics.median(runs_us) / 1e3, "min_ms": min(runs_us) / 1e3}}


#: The session options of issue 10 item B, each against the runner's defaults.
ORT_SWEEP: dict[str, dict] = {
    "runner default": {},
    "ENABLE_EXTENDED (no NCHWc)": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "spinning off": {"session.intra_op.allow_spinning": "0"},
    "ORT_PARALLEL": {"execution_mode": "ORT_PARALLEL"},
    "mem pattern off": {"enable_mem_pattern": False},
    "cpu arena off": {"enable_cpu_mem_arena": False},
    "1 thread": {"intra_op_num_threads": 1},
}


def ort_sweep(path: Path, size: int, threads: int, runs: int, configs: dict[str, dict]) -> dict:
    """Latency of ``path`` under each session-option set in ``configs``, interleaved round-robin."""
    x = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    sessions = {k: ort_session(path, threads, opts) for k, opts in configs.items()}
    name = next(iter(sessions.values())).get_inputs()[0].name
    times = time_round_robin({k: (lambda s=s: s.run(None, {name: x})) for k, s in sessions.items()}, runs)
    return {"size": size, "threads": threads, "runs": runs, "configs": configs,
            "times": {k: _stat(t) for k, t in times.items()}}


def matmul_peak(threads: int) -> float:
    """``benchmarks/inference_latency.py``'s fp32 matmul peak (GFLOP/s) on ``threads`` threads.

    Run in a child process so that TensorFlow's and OpenBLAS's thread counts can be set
    before they start.
    """
    import subprocess

    code = ("import sys, tensorflow as tf; "
            f"tf.config.threading.set_intra_op_parallelism_threads({threads}); "
            f"tf.config.threading.set_inter_op_parallelism_threads(1); "
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            "from inference_latency import matmul_peak; print(matmul_peak()['peak_gflops'])")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def _pct(x: float, total: float) -> str:
    return f"{100 * x / total:.1f} %" if total else "-"


def tflite_markdown(prof: dict, top: int, peak: float | None) -> str:
    """Per-op-type, per-region and top-N per-op tables of :func:`profile_tflite`."""
    rows, size = prof["rows"], prof["size"]
    variants = list(prof["full"])
    ops_sum = {v: sum(r["variants"][v]["min_ms"] for r in rows if v in r["variants"]) for v in variants}
    lines = [f"#### TFLite (LiteRT, XNNPACK, {prof['threads']} threads), LR {size}², single-op models, "
             f"best of {prof['runs']} (ms)", ""]
    lines.append("| | " + " | ".join(variants) + (" | fp32 / int8 |" if {"fp32", "int8"} <= set(variants) else " |"))
    lines.append("|---" * (len(variants) + 1 + ({"fp32", "int8"} <= set(variants))) + "|")

    def ratio_cell(a: float, b: float) -> str:
        return f" {a / b:.2f}× |" if b else " - |"

    both = {"fp32", "int8"} <= set(variants)
    full = {v: prof["full"][v]["min_ms"] for v in variants}
    lines.append("| full model (best of start + end) | " + " | ".join(f"{full[v]:.1f}" for v in variants) + " |"
                 + (ratio_cell(full["fp32"], full["int8"]) if both else ""))
    lines.append("| sum of single ops | " + " | ".join(f"{ops_sum[v]:.1f}" for v in variants) + " |"
                 + (ratio_cell(ops_sum["fp32"], ops_sum["int8"]) if both else ""))
    lines.append("| sum of ops / full | " + " | ".join(f"{ops_sum[v] / full[v]:.2f}" for v in variants) + " |"
                 + (" |" if both else ""))
    lines.append("")

    def group(keyfn) -> list[str]:
        agg: dict[str, dict[str, float]] = {}
        gfl: dict[str, float] = {}
        for r in rows:
            k = keyfn(r)
            gfl[k] = gfl.get(k, 0.0) + r["gflop"]
            for v, t in r["variants"].items():
                agg.setdefault(k, {}).setdefault(v, 0.0)
                agg[k][v] += t["min_ms"]
        out = []
        for k, t in sorted(agg.items(), key=lambda kv: -max(kv[1].values())):
            cells = [f"{t[v]:.2f} ({_pct(t[v], ops_sum[v])})" if v in t else "-" for v in variants]
            extra = ""
            if both:
                extra = f" {t['fp32'] / t['int8']:.2f}× |" if "fp32" in t and "int8" in t and t["int8"] else " - |"
            gf = f"{gfl[k]:.2f}"
            rate = ""
            if peak and gfl[k] and "fp32" in t:
                rate = f" {gfl[k] / t['fp32'] * 1e3 / peak:.2f} |"
            elif peak:
                rate = " - |"
            out.append(f"| {k} | {gf} | " + " | ".join(cells) + " |" + extra + rate)
        return out

    head = "| {} | GFLOP | " + " | ".join(f"{v} ms (share)" for v in variants) + " |" \
        + (" fp32 / int8 |" if both else "") + (" fp32 of peak |" if peak else "")
    sep = "|---|---|" + "---|" * len(variants) + ("---|" if both else "") + ("---|" if peak else "")
    lines += [head.format("op type"), sep, *group(lambda r: r["op_type"]), ""]
    lines += [head.format("resolution (of LR)"), sep, *group(lambda r: r["region"]), ""]
    lines += [head.format("layer group"), sep, *group(_layer_group), ""]
    # top N single ops by the slowest variant's time
    ranked = sorted(rows, key=lambda r: -max(t["min_ms"] for t in r["variants"].values()))[:top]
    lines += [f"Top {len(ranked)} ops:", "",
              "| op | layer | out shape | GFLOP | " + " | ".join(f"{v} ms" for v in variants) + " |"
              + (" fp32 / int8 |" if both else "") + " XNNPACK |",
              "|---|---|---|---|" + "---|" * len(variants) + ("---|" if both else "") + "---|"]
    for r in ranked:
        cells = [f"{r['variants'][v]['min_ms']:.2f}" if v in r["variants"] else "-" for v in variants]
        extra = ""
        if both:
            a, b = r["variants"].get("fp32"), r["variants"].get("int8")
            extra = f" {a['min_ms'] / b['min_ms']:.2f}× |" if a and b else " - |"
        xnn = ", ".join(f"{v}: {'yes' if t['xnnpack'] else '**no**'}" for v, t in r["variants"].items())
        lines.append(f"| {r['op_type']} | {r['label']} | {'×'.join(map(str, r['out_shape']))} | {r['gflop']:.2f} | "
                     + " | ".join(cells) + " |" + extra + f" {xnn} |")
    not_delegated = sorted({f"{v} {r['op_type']} ({r['label']})" for r in rows for v, t in r["variants"].items()
                            if not t["xnnpack"]})
    lines += ["", "Ops XNNPACK did not take (run single-threaded on LiteRT's builtin kernels): "
              + (", ".join(not_delegated) if not_delegated else "none")]
    for v in variants:
        ms = sum(r["variants"][v]["min_ms"] for r in rows if v in r["variants"] and not r["variants"][v]["xnnpack"])
        if ms:
            lines.append(f"- {v}: {ms:.2f} ms, {_pct(ms, ops_sum[v])} of the sum of ops")
    return "\n".join(lines)


def _layer_group(r: dict) -> str:
    """The layer of a row, with the 16 resblocks' convs and adds each pooled into one group."""
    lab = r["label"]
    if lab.startswith("body_") and lab != "body_conv":
        return "body resblocks (conv)" if r["op_type"] == "CONV_2D" else "body resblocks (add)"
    return lab


def scaling_markdown(one: dict, many: dict) -> str:
    """Thread scaling per layer group: best ms on 1 thread and on ``many['threads']``, per variant."""
    variants = list(one["full"])
    n = many["threads"]

    def groups(prof: dict) -> dict[str, dict[str, float]]:
        agg: dict[str, dict[str, float]] = {"full model": {v: prof["full"][v]["min_ms"] for v in variants}}
        for r in prof["rows"]:
            for v, t in r["variants"].items():
                agg.setdefault(_layer_group(r), {}).setdefault(v, 0.0)
                agg[_layer_group(r)][v] += t["min_ms"]
        return agg

    a, b = groups(one), groups(many)
    lines = [f"#### TFLite thread scaling, LR {one['size']}²: best ms on 1 and {n} threads (speed-up)", "",
             "| layer group | " + " | ".join(f"{v} 1 thr | {v} {n} thr" for v in variants) + " |",
             "|---|" + "---|---|" * len(variants)]
    for k in sorted(a, key=lambda k: (k != "full model", -max(a[k].values()))):
        cells = []
        for v in variants:
            if v in a[k] and v in b.get(k, {}):
                x, y = a[k][v], b[k][v]
                cells += [f"{x:.2f}", f"{y:.2f} ({x / y:.2f}×)" if y else "-"]
            else:
                cells += ["-", "-"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ort_markdown(prof: dict, top: int, peak: float | None) -> str:
    """Per-op-type, per-region and top-N per-node tables of :func:`profile_ort`."""
    rows = prof["rows"]
    total = sum(r["median_ms"] for r in rows)
    run = prof["model_run_ms"]
    opts = ", ".join(f"{k}={v}" for k, v in prof["options"].items()) or "OnnxRunner's"
    lines = [f"#### onnxruntime fp32 ({prof['threads']} threads, session options: {opts}), LR {prof['size']}², "
             f"profiler, median of {prof['runs']} runs (ms)", "",
             f"model_run {run['median_ms']:.1f} (best {run['min_ms']:.1f}); sum of node kernels {total:.1f} "
             f"({_pct(total, run['median_ms'])} of model_run)", ""]

    def group(keyfn) -> list[str]:
        agg: dict[str, list[float]] = {}
        for r in rows:
            a = agg.setdefault(keyfn(r), [0.0, 0.0, 0])
            a[0] += r["median_ms"]
            a[1] += r["gflop"]
            a[2] += 1
        out = []
        for k, (ms, gf, n) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
            rate = f"{gf / ms * 1e3:.0f}" if gf else "-"
            frac = f"{gf / ms * 1e3 / peak:.2f}" if gf and peak else "-"
            out.append(f"| {k} | {n} | {ms:.2f} | {_pct(ms, total)} | {gf:.2f} | {rate} | {frac} |")
        return out

    head = "| {} | nodes | ms | share | GFLOP (as run) | GFLOP/s | of fp32 peak |"
    sep = "|---|---|---|---|---|---|---|"
    lines += [head.format("op type"), sep, *group(lambda r: r["op_type"]), ""]
    lines += [head.format("resolution (of LR)"), sep, *group(lambda r: r["region"]), ""]
    layout = sum(r["median_ms"] for r in rows if r["op_type"] in ("DepthToSpace", "ReorderInput", "ReorderOutput",
                                                                  "Transpose"))
    lines += [f"Layout work (DepthToSpace in NCHW, NCHWc reorders, transposes): {layout:.1f} ms, "
              f"{_pct(layout, total)} of the kernels", ""]
    ranked = sorted(rows, key=lambda r: -r["median_ms"])[:top]
    lines += [f"Top {len(ranked)} nodes:", "", "| node | op | out shape | ms | share | GFLOP/s |",
              "|---|---|---|---|---|---|"]
    for r in ranked:
        name = r["node"].replace("StatefulPartitionedCall/edsr_inference_1/", "")
        rate = f"{r['gflop'] / r['median_ms'] * 1e3:.0f}" if r["gflop"] else "-"
        shape = "×".join(map(str, r["out_shape"])) if r["out_shape"] else "?"
        lines.append(f"| {name[:70]} | {r['op_type']} | {shape} | {r['median_ms']:.2f} | "
                     f"{_pct(r['median_ms'], total)} | {rate} |")
    return "\n".join(lines)


def sweep_markdown(res: dict) -> str:
    base = res["times"]["runner default"]
    lines = [f"#### onnxruntime fp32 session options, LR {res['size']}², {res['threads']} threads, "
             f"{res['runs']} runs interleaved (ms)", "",
             "| options | median | best | best / default best |", "|---|---|---|---|"]
    for k, t in res["times"].items():
        lines.append(f"| {k} | {t['median_ms']:.1f} | {t['min_ms']:.1f} | {t['min_ms'] / base['min_ms']:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    from edsr_tf.cli_args import ArgumentParser, add_flag

    p = ArgumentParser(prog="benchmarks/op_profile.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="edsr_baseline_x4",
                   help="shipped model name or weights file to export (ignored with --export_dir)")
    add_flag(p, "--export_dir", default=None, help="a `python -m export` folder with tflite/ and onnx/")
    p.add_argument("--sizes", default="128,256", help="LR sides (square inputs)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per op / model (after one warm-up)")
    p.add_argument("--top", type=int, default=12, help="ops listed one by one")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for LiteRT and onnxruntime (default: all CPUs, as the runners)")
    p.add_argument("--runtimes", default="tflite,onnx", help="tflite, onnx or both")
    add_flag(p, "--ort_options", default=None,
             help="JSON of onnxruntime session options for the profile, e.g. "
                  "'{\"graph_optimization_level\": \"ORT_ENABLE_EXTENDED\"}'")
    add_flag(p, "--ort_sweep", action="store_true",
             help="time the onnxruntime session options of issue 10 instead of profiling")
    add_flag(p, "--scaling", action="store_true",
             help="also profile TFLite on 1 thread and print the per-layer speed-up of --threads")
    add_flag(p, "--no_peak", action="store_true", help="skip the fp32 matmul peak")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: expected a comma list of integers")
    runtimes = {r for r in args.runtimes.split(",") if r}
    if not runtimes or runtimes - {"tflite", "onnx"}:
        p.error(f"--runtimes {args.runtimes!r}: expected tflite, onnx or both")
    try:
        ort_options = json.loads(args.ort_options) if args.ort_options else None
    except json.JSONDecodeError as e:
        p.error(f"--ort_options: not JSON ({e})")
    if args.export_dir and not Path(args.export_dir).is_dir():
        p.error(f"--export_dir {args.export_dir}: not a folder")
    out: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                             "load_avg_start": os.getloadavg()},
                 "command": " ".join(["op_profile.py", *(argv if argv is not None else sys.argv[1:])])}
    with tempfile.TemporaryDirectory(prefix="edsr_op_profile_") as tmp:
        if args.export_dir:
            files = find_exports(Path(args.export_dir))
        else:
            print(f"exporting {args.weights} ...", file=sys.stderr)
            files = build_exports(args.weights, Path(tmp))
        out["files"] = {k: str(v) for k, v in files.items()}
        peak = None
        if not args.no_peak and not args.ort_sweep:
            peak = matmul_peak(args.threads)
            out["peak_gflops"] = peak
            print(f"fp32 matmul peak: {peak:.1f} GFLOP/s", file=sys.stderr)
        results: list[tuple[str, dict]] = []
        for size in sizes:
            if args.ort_sweep:
                res = ort_sweep(files["onnx_fp32"], size, args.threads, args.runs, ORT_SWEEP)
                out.setdefault("ort_sweep", []).append(res)
                results.append(("sweep", res))
                print(sweep_markdown(res), file=sys.stderr)
                continue
            if "tflite" in runtimes and any(k.startswith("tflite_") for k in files):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    prof = profile_tflite(files, size, args.threads, args.runs)
                out.setdefault("tflite", []).append(prof)
                results.append(("tflite", prof))
                print(tflite_markdown(prof, args.top, peak), file=sys.stderr)
                if args.scaling and args.threads > 1:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        one = profile_tflite(files, size, 1, args.runs)
                    out.setdefault("tflite_1_thread", []).append(one)
                    results.append(("scaling", (one, prof)))
                    print(scaling_markdown(one, prof), file=sys.stderr)
            if "onnx" in runtimes and "onnx_fp32" in files:
                prof = profile_ort(files["onnx_fp32"], size, args.threads, args.runs, ort_options)
                out.setdefault("onnx", []).append(prof)
                results.append(("onnx", prof))
                print(ort_markdown(prof, args.top, peak), file=sys.stderr)
        if peak is not None:
            out["peak_gflops_end"] = matmul_peak(args.threads)
            peak = out["peak_gflops"] = max(peak, out["peak_gflops_end"])  # other load only slows it
    render = {"sweep": lambda r: sweep_markdown(r), "tflite": lambda r: tflite_markdown(r, args.top, peak),
              "onnx": lambda r: ort_markdown(r, args.top, peak), "scaling": lambda r: scaling_markdown(*r)}
    md = [render[kind](r) for kind, r in results]
    out["machine"]["load_avg_end"] = os.getloadavg()
    load = out["machine"]
    header = (f"Machine: {load['cpu']}, {args.threads} threads; load average {load['load_avg_start'][0]:.2f} at the "
              f"start, {load['load_avg_end'][0]:.2f} at the end (other work shares these cores: compare ratios "
              f"within a table, not absolute times across runs).")
    if peak is not None:
        header += (f" fp32 matmul peak {peak:.0f} GFLOP/s on {args.threads} threads (2048², best of TF/NumPy "
                   "at the start and end).")
    print("\n\n".join([header, *md]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
