"""ONNX export via tf2onnx (from the ``model.export`` SavedModel), int8 QDQ, onnxruntime runner."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from edsr_tf.export.common import ExportError

#: The opset we emit (tf2onnx ``--opset``). The sub-pixel shuffle is written as NHWC Reshape/Transpose
#: (:func:`nhwc_depth_to_space`), not DepthToSpace; the int8 export's per-channel QDQ needs 13 or later.
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "sr"


def convert(savedmodel_dir: str | os.PathLike, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Converts a ``model.export`` SavedModel to ONNX at ``path`` and repairs known tf2onnx faults.

    Runs tf2onnx's command line (:func:`run_tf2onnx`). Input ``images`` [N,H,W,3] float32 and
    output ``sr`` [N,sH,sW,3] with symbolic N/H/W. The model is then checked by onnx's checker.
    """
    path = Path(path)
    model = run_tf2onnx(savedmodel_dir, path.parent, opset)
    fix_conv_bias_inputs(model)
    nhwc_depth_to_space(model)
    name_dims(model)
    return save_checked(model, path)


def run_tf2onnx(savedmodel_dir: str | os.PathLike, scratch_dir: str | os.PathLike, opset: int = OPSET,
                extra_args: Sequence[str] = ()):
    """tf2onnx's ONNX model (``onnx.ModelProto``) of a ``model.export`` SavedModel, output named ``sr``.

    Runs tf2onnx's command line (``--saved-model``) in a subprocess: the documented route
    with Keras 3, and it keeps tf2onnx's graph rewrites out of this process. Its file is
    written in ``scratch_dir`` (the export's own folder: its disk, not /tmp's) and removed.
    ``extra_args`` go to tf2onnx as given (e.g. ``--inputs-as-nchw``).
    """
    import secrets

    import onnx

    scratch_dir = Path(scratch_dir)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir / f".tf2onnx-{secrets.token_hex(4)}.onnx.tmp"
    try:
        cmd = [
            sys.executable, "-m", "tf2onnx.convert",
            "--saved-model", str(savedmodel_dir),
            "--signature_def", "serving_default",
            "--tag", "serve",
            "--opset", str(int(opset)),
            "--rename-outputs", OUTPUT_NAME,
            *extra_args,
            "--output", str(tmp),
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not tmp.exists():
            tail = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()][-1:] or ["?"]
            raise ExportError(f"tf2onnx conversion failed (exit {proc.returncode}): {tail[0]}")
        return onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)


def save_checked(model, path: str | os.PathLike) -> Path:
    """Checks ``model`` with onnx's checker and writes it to ``path`` atomically (nothing if invalid)."""
    import onnx

    path = Path(path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"ONNX model from tf2onnx is invalid: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def fix_conv_bias_inputs(model) -> int:
    """Merges extra constant inputs of ``Conv`` nodes into one bias; returns how many were fixed.

    tf2onnx's constant folding can fuse a constant ``Add`` that follows a conv with
    bias (EDSR's MeanShift after the tail conv) into the Conv as a 4th input, which
    ONNX forbids and onnxruntime refuses to load. The sum of those constants is the
    correct single bias.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) <= 3:
            continue
        extra = list(node.input[2:])
        if not all(name in inits for name in extra):
            raise ExportError(
                f"ONNX Conv {node.name!r} has {len(node.input)} inputs and non-constant extras; "
                "cannot repair"
            )
        bias = sum(numpy_helper.to_array(inits[n]).astype(np.float64).reshape(-1) for n in extra)
        tensor = numpy_helper.from_array(
            np.asarray(bias, dtype=np.float32), name=f"{node.name or node.output[0]}_merged_bias"
        )
        model.graph.initializer.append(tensor)
        del node.input[2:]
        node.input.append(tensor.name)
        fixed += 1
    if fixed:  # drop initializers nobody uses any more
        used = {i for n in model.graph.node for i in n.input}
        keep = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return fixed


def nhwc_depth_to_space(model) -> int:
    """Rewrites each ``DepthToSpace`` (NCHW, DCR) as NHWC Transpose/Reshape; returns how many.

    tf2onnx keeps the graph NCHW, and onnxruntime's NCHW ``DepthToSpace`` plus the NCHWc
    reorders around it took 12.8 % of the ×4 fp32 time at 256² (the convs run at 0.93 of
    the matmul peak). In NHWC the shuffle is a reshape/transpose whose surrounding
    transposes onnxruntime folds away: identical output, 9–11 % less time at ×4 256²
    (``benchmarks/op_profile.py``).
    """
    from onnx import helper, numpy_helper

    def expand(graph, x: str, y: str, r: int, name: str) -> list:
        p = f"{name}_nhwc"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0, 0, 0, r, r, -1], np.int64), f"{p}_split"),
            numpy_helper.from_array(np.array([1, r, r, 1], np.int64), f"{p}_mul"),
            numpy_helper.from_array(np.array([1, 1, 1, r * r], np.int64), f"{p}_div"),
        ])
        return [
            helper.make_node("Transpose", [x], [f"{p}_in"], perm=[0, 2, 3, 1]),
            helper.make_node("Shape", [f"{p}_in"], [f"{p}_shape"]),
            helper.make_node("Mul", [f"{p}_shape", f"{p}_mul"], [f"{p}_shape_r"]),
            helper.make_node("Div", [f"{p}_shape_r", f"{p}_div"], [f"{p}_out_shape"]),
            # [N, H, W, (i, j, c)] → [N, H, W, i, j, c] → [N, H, i, W, j, c] → [N, H·r, W·r, c]
            helper.make_node("Reshape", [f"{p}_in", f"{p}_split"], [f"{p}_6d"]),
            helper.make_node("Transpose", [f"{p}_6d"], [f"{p}_6d_t"], perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Reshape", [f"{p}_6d_t", f"{p}_out_shape"], [f"{p}_out"]),
            helper.make_node("Transpose", [f"{p}_out"], [y], perm=[0, 3, 1, 2]),
        ]

    return rewrite_depth_to_space(model, expand)


def rewrite_depth_to_space(model, expand, *, strict: bool = False) -> int:
    """Replaces each ``DepthToSpace`` (DCR) of ``model`` with ``expand(graph, x, y, blocksize, name)``'s
    nodes (which may add initializers to ``graph``); returns how many were replaced.

    Other modes are left as they are, or with ``strict`` refused (:class:`ExportError`).
    """
    import onnx

    graph = model.graph
    nodes, count = [], 0
    for node in graph.node:
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "DCR")
        if node.op_type != "DepthToSpace" or (mode != "DCR" and not strict):
            nodes.append(node)
            continue
        if mode != "DCR":
            raise ExportError(f"ONNX DepthToSpace {node.name!r} in mode {mode}: only DCR is rewritten")
        r = next(a.i for a in node.attribute if a.name == "blocksize")
        nodes += expand(graph, node.input[0], node.output[0], r, node.name or node.output[0])
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return count


def name_dims(model) -> None:
    """Gives the symbolic dims readable names: batch, height, width (×scale on the output)."""
    for value, names in (
        (model.graph.input[0], ("batch", "height", "width")),
        (model.graph.output[0], ("batch", "out_height", "out_width")),
    ):
        dims = value.type.tensor_type.shape.dim
        for d, n in zip(dims[:3], names):
            if not d.HasField("dim_value"):
                d.dim_param = n


def _calibration_reader(patches: Sequence[np.ndarray]):
    """The patches as onnxruntime's ``CalibrationDataReader`` (one input dict per patch)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{INPUT_NAME: np.asarray(p, np.float32)} for p in patches])

        def get_next(self):
            return next(self._it, None)

    return _Reader()


def quantize_int8(
    fp32_path: str | os.PathLike,
    path: str | os.PathLike,
    calibration: Sequence[np.ndarray],
    *,
    calibrate_method: str = "Percentile",
    qat: tuple | None = None,
) -> Path:
    """Static int8 QDQ quantization with onnxruntime (per-channel weights, uint8 activations).

    ``calibrate_method``: an onnxruntime ``CalibrationMethod`` name (MinMax, Percentile,
    Entropy, Distribution). Percentile (99.999 %, onnxruntime's default percentile)
    ignores the rare outliers that set min/max ranges, which makes the steps of the
    residual activations finer: on a briefly trained EDSR-baseline x2 it cut the Set5 PSNR
    drop by 0.01-0.04 dB against MinMax (benchmarks/inference_latency.py
    --onnx-calibration compares them).

    ``qat``: ``(keras_model, ranges)`` of a quantization-aware trained model
    (:mod:`edsr_tf.models.qat`): every activation the Keras model simulates gets its range
    (located by value, as for TFLite), the others (the input, ``DepthToSpace``, the output
    clip) the ranges TFLite gives them; the patches then only locate the tensors.
    """
    if qat is not None:
        return _quantize_int8_qat(fp32_path, path, calibration, *qat)
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    try:
        method = CalibrationMethod[calibrate_method]
    except KeyError:
        names = ", ".join(m.name for m in CalibrationMethod)
        raise ExportError(f"unknown ONNX calibration method {calibrate_method!r} (expected one of {names})") from None
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = path.with_name(f".{path.name}.pre.onnx")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        # the histogram calibrators print progress on stdout: keep the CLI's output clean
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(pre),
                str(tmp),
                _calibration_reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
            )
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"ONNX int8 quantization failed: {e}") from e
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return path


def _node_values(model_path: Path, patch: np.ndarray) -> dict[str, np.ndarray]:
    """Every node output of an ONNX model on ``patch`` (name → value)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for o in node.output:
            if o and o not in known:
                model.graph.output.append(onnx.ValueInfoProto(name=o))
                known.add(o)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {sess.get_inputs()[0].name: np.asarray(patch, np.float32)})
    return dict(zip(names, values))


def qat_tensor_ranges(model_path: Path, patch: np.ndarray, keras_model,
                      ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """ONNX tensor name → (min, max) from the QAT ``ranges``, located by value on ``patch``."""
    import onnx

    from edsr_tf.models.qat import activation_probe, layer_of

    names = list(ranges)
    ref = activation_probe(keras_model, names)(np.asarray(patch, np.float32), training=False)
    ref = [np.asarray(a) for a in (ref if isinstance(ref, (list, tuple)) else [ref])]
    by_name = dict(zip(names, ref))
    values = _node_values(model_path, patch)
    graph = onnx.load(str(model_path)).graph
    out: dict[str, tuple[float, float]] = {graph.input[0].name: (0.0, 255.0)}
    for name, a in values.items():
        if a.ndim != 4:
            continue
        best = layer_of(a, by_name, nchw=True)
        if best is not None:
            out[name] = tuple(float(v) for v in ranges[best])
    for node in graph.node:  # in graph order: data movement keeps its input's range, the clip [0, 255]
        if node.op_type in ("DepthToSpace", "Transpose", "Reshape") and node.input[0] in out:
            out.setdefault(node.output[0], out[node.input[0]])
        elif node.op_type in ("Clip", "Min", "Max", "Relu") and node.input[0] in out and \
                out[node.input[0]] == (0.0, 255.0):
            out.setdefault(node.output[0], (0.0, 255.0))
        elif node.op_type == "Relu" and node.output[0] in out:
            # the conv before a ReLU gets the ReLU's range: clipping at 0 is the ReLU, as TFLite fuses it
            out.setdefault(node.input[0], out[node.output[0]])
    for o in graph.output:
        out.setdefault(o.name, (0.0, 255.0))
    return out


def _quantize_int8_qat(fp32_path, path, calibration: Sequence[np.ndarray], keras_model,
                       ranges: dict[str, tuple[float, float]]) -> Path:
    """QDQ int8 with the QAT activation ranges (see :func:`quantize_int8`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.calibrate import TensorData, create_calibrator
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = path.with_name(f".{path.name}.pre.onnx")
    aug = path.with_name(f".{path.name}.aug.onnx")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
        # A min/max pass names every tensor onnxruntime will quantize; the QAT ranges replace them.
        calibrator = create_calibrator(pre, op_types, augmented_model_path=str(aug),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(_calibration_reader(calibration[:1]))
        tensors = calibrator.compute_data()
        del calibrator
        qat = qat_tensor_ranges(pre, calibration[0], keras_model, ranges)
        missing = [n for n in tensors.data if n not in qat]
        if missing:
            raise ExportError(f"ONNX int8 (QAT ranges): tensor {missing[0]!r} matches no simulated layer "
                              f"({len(missing)} unmatched)")
        for name in tensors.data:
            lo, hi = qat[name]
            tensors.data[name] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
        quantizer = QDQQuantizer(onnx.load(str(pre)), True, False, QuantType.QInt8, QuantType.QUInt8,
                                 tensors, [], [], op_types, {})
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(tmp), False)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"ONNX int8 quantization (QAT ranges) failed: {e}") from e
    finally:
        for f in (pre, aug, tmp):
            f.unlink(missing_ok=True)
    return path


class OnnxRunner:
    """Runs an ONNX export with onnxruntime (CPU) on float ``[N,H,W,3]`` images."""

    runtime = "onnxruntime"

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        # all cores, as the LiteRT runner: onnxruntime's default counts physical cores only
        opts.intra_op_num_threads = int(num_threads or os.cpu_count() or 1)
        # No spin-waiting after a run: the spinning threads otherwise take the cores from whatever
        # runs next in the process (TF, LiteRT), and spinning did not make onnxruntime faster here.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise ExportError(f"{self.path.name}: onnxruntime cannot load it: {e}") from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 ``[N,H,W,3]`` in [0, 255] → float32 ``[N,sH,sW,3]``."""
        x = np.asarray(images, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]

    def op_types(self) -> dict[str, int]:
        """Op type → count in the graph (to confirm QDQ quantization)."""
        import onnx

        counts: dict[str, int] = {}
        for n in onnx.load(str(self.path)).graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts
