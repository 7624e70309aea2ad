"""Export stack: SavedModel (TF Serving), TFLite (LiteRT), ONNX; each run in its runtime.

One tiny EDSR x2 is exported once (all formats, all quantizations, a tile) by a
module fixture; the tests then load every artifact in its own runtime.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from ci_guard import skip_or_fail
from PIL import Image

from edsr_tf.export import ExportError, ExportOptions, ExportUsageError, VerificationError, export, export_model
from edsr_tf.export import onnx as onnx_export
from edsr_tf.export import pipeline
from edsr_tf.export.common import DEFAULT_MAX_PIXELS
from edsr_tf.export.report import table
from edsr_tf.export.savedmodel import SIGNATURES, SavedModelRunner, save_serving_model
from edsr_tf.export.tflite import TFLiteRunner
from edsr_tf.models import ModelConfig, build_model, save_model
from edsr_tf.models.io import ModelFileError

REPO = Path(__file__).resolve().parents[1]
TILE = (16, 20)


def tiny_model(arch: str = "edsr", scales=(2,), seed: int = 0):
    """A 2-block, 8-feature model with random (non-zero) biases, so every add is exercised."""
    config = ModelConfig(arch, tuple(scales), n_resblocks=2, n_feats=8)
    model = build_model(config)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.5, b.shape).astype(np.float32)])
    return model, config


def keras_out(model, x: np.ndarray) -> np.ndarray:
    return np.clip(model(np.asarray(x, np.float32), training=False).numpy(), 0, 255)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, photo):
    """Weights file + one full export (all formats and quantizations, a TFLite tile)."""
    root = tmp_path_factory.mktemp("export")
    model, config = tiny_model()
    weights = save_model(model, root / "tiny_x2.weights.h5", config)
    out = root / "out"
    options = ExportOptions(
        formats=("savedmodel", "tflite", "onnx"),
        quantize=("none", "fp16", "dynamic", "int8"),
        tile=TILE,
        verify_images=[("photo", photo[:48, :62])],
        latency_runs=1,
        num_calibration=8,
        calibration_size=24,
    )
    report = export(weights, out, options, progress=None)
    return {"model": model, "config": config, "weights": weights, "out": out, "report": report,
            "name": "edsr_b2_f8_x2"}


def test_layout_report_and_parity(exported):
    out, name = exported["out"], exported["name"]
    assert (out / "savedmodel" / name / "1" / "saved_model.pb").is_file()
    for v in ("fp32", "fp16", "dynamic", "int8"):
        assert (out / "tflite" / f"{name}_{v}.tflite").is_file()
        assert (out / "tflite" / f"{name}_{v}_tile{TILE[0]}x{TILE[1]}.tflite").is_file()
    assert (out / "onnx" / f"{name}_fp32.onnx").is_file()
    assert (out / "onnx" / f"{name}_int8.onnx").is_file()
    assert not list(out.parent.glob(".out.partial-*")), "staging folder left behind"
    assert not (out / ".work").exists()

    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "| model |" in md and "## Keras reference" in md and "| keras |" not in md
    # the Keras model is the reference section, not an artifact verified against itself
    assert list(report["reference"]) == [name] and {a["format"] for a in report["artifacts"]} == {
        "savedmodel", "tflite", "onnx"}
    ref = report["reference"][name]
    assert np.isfinite(ref["psnr_db"]) and ref["latency_ms"] > 0 and ref["verified_on"] == ["photo 31x24"]
    rows = report["artifacts"]
    assert len(rows) == 1 + 8 + 2
    for a in rows:
        assert (out / a["path"]).exists()
        assert a["size_bytes"] > 0 and a["latency_ms"] > 0
        assert np.isfinite(a["psnr_db"]) and np.isfinite(a["psnr_drop_db"])
        if a["variant"] == "fp32":
            assert a["max_abs_diff"] <= 1e-2, a
        if not a.get("tile"):  # the drop is against the reference section's PSNR (same images)
            assert a["psnr_drop_db"] == pytest.approx(ref["psnr_db"] - a["psnr_db"]), a


@pytest.mark.parametrize("shape", [(1, 9, 13, 3), (2, 16, 11, 3)])
def test_savedmodel_signatures_any_size(exported, shape):
    import tensorflow as tf

    model, name = exported["model"], exported["name"]
    loaded = tf.saved_model.load(str(exported["out"] / "savedmodel" / name / "1"))
    assert set(SIGNATURES) <= set(loaded.signatures)
    x = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
    expected = np.floor(keras_out(model, x) + 0.5)
    sr = loaded.signatures["serving_default"](images=tf.constant(x))["sr"].numpy()
    assert sr.dtype == np.uint8 and sr.shape == (shape[0], 2 * shape[1], 2 * shape[2], 3)
    assert np.abs(sr.astype(float) - expected).max() <= 1  # rounding of values within 1e-2 of .5
    x8 = x.astype(np.uint8)
    sr8 = loaded.signatures["serving_uint8"](images=tf.constant(x8))["sr"].numpy()
    f = loaded.signatures["predict_float"](images=tf.constant(x8.astype(np.float32)))["sr"].numpy()
    assert sr8.dtype == np.uint8 and np.array_equal(sr8, np.floor(f + 0.5).astype(np.uint8))


def test_bytes_signature_roundtrips_png(exported):
    runner = SavedModelRunner(exported["out"] / "savedmodel" / exported["name"] / "1")
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (11, 7, 3), dtype=np.uint8), rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)]
    encoded = []
    for img in imgs:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    pngs = runner.run_bytes(encoded)
    assert len(pngs) == 2
    for img, png in zip(imgs, pngs):
        assert png.startswith(b"\x89PNG")
        got = np.asarray(Image.open(io.BytesIO(png)))
        want = runner.run_uint8(img[None], "serving_uint8")[0]
        assert got.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
        assert np.array_equal(got, want)


def test_saved_model_cli_show_and_run(exported, tmp_path):
    cli = Path(sys.executable).with_name("saved_model_cli")
    if not cli.exists():
        skip_or_fail("saved_model_cli is not installed next to this python")
    d = str(exported["out"] / "savedmodel" / exported["name"] / "1")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    show = subprocess.run([str(cli), "show", "--dir", d, "--all"], capture_output=True, text=True, env=env)
    assert show.returncode == 0, show.stderr[-2000:]
    for sig in SIGNATURES:
        assert f"signature_def['{sig}']" in show.stdout
    assert "inputs['image_bytes']" in show.stdout and "DT_UINT8" in show.stdout
    x = np.random.default_rng(9).uniform(0, 255, (1, 5, 7, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run(
        [str(cli), "run", "--dir", d, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "res"), "--overwrite"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    sr = np.load(tmp_path / "res" / "sr.npy")
    expected = np.floor(keras_out(exported["model"], x) + 0.5)
    assert sr.dtype == np.uint8 and sr.shape == (1, 10, 14, 3)
    assert np.abs(sr.astype(float) - expected).max() <= 1


def test_tflite_dynamic_shapes_match_keras(exported):
    model, out, name = exported["model"], exported["out"], exported["name"]
    runner = TFLiteRunner(out / "tflite" / f"{name}_fp32.tflite")
    assert runner.fixed_shape is None
    rng = np.random.default_rng(3)
    for shape in [(1, 12, 12, 3), (1, 17, 9, 3), (2, 8, 21, 3)]:  # two sizes, odd sizes, batch
        x = rng.uniform(0, 255, shape).astype(np.float32)
        y = runner.run(x)
        assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], 3)
        assert np.abs(y - keras_out(model, x)).max() <= 1e-2
    for v in ("fp16", "dynamic"):
        y = TFLiteRunner(out / "tflite" / f"{name}_{v}.tflite").run(x)
        assert y.shape == (2, 16, 42, 3) and np.abs(y - keras_out(model, x)).mean() < 2.0


def psnr_vs(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((y.astype(np.float64) - ref) ** 2)))


def test_tflite_int8_is_fully_integer_and_runs(exported, photo):
    model, out, name = exported["model"], exported["out"], exported["name"]
    runner = TFLiteRunner(out / "tflite" / f"{name}_int8.tflite")
    assert runner.input_dtype == np.uint8
    assert runner.input["quantization"] == (1.0, 0)  # raw pixels in
    assert np.dtype(runner.interpreter.get_output_details()[0]["dtype"]) == np.uint8
    dtypes = runner.tensor_dtypes()
    assert dtypes.get("int8", 0) >= 8 and "float32" not in dtypes, dtypes  # weights+activations
    x = photo[None, 100:113, 200:215].astype(np.float32)  # real pixels, as calibrated
    y = runner.run(x)
    assert y.shape == (1, 26, 30, 3)
    assert psnr_vs(y, keras_out(model, x)) > 35.0  # quantized, yet close to the float model


def test_mse_range_ignores_outliers_keeps_dense_ranges():
    from edsr_tf.export.tflite import mse_range

    rng = np.random.default_rng(0)
    # a subsample whose calibrated min/max (±100) came from rare outliers not in it
    x = rng.normal(0, 5, 50_000)
    lo, hi = mse_range(x, -100.0, 100.0)
    assert -40 < lo < -10 and 10 < hi < 40, (lo, hi)
    # ...but an outlier that is in the subsample and far out is worth its range
    lo2, hi2 = mse_range(np.concatenate([x, [100.0] * 50]), -100.0, 100.0)
    assert hi2 > hi + 20, (hi, hi2)
    u = rng.uniform(0, 50, 50_000)  # ReLU-like, no outliers: keeps 0 and (almost) the full range
    lo, hi = mse_range(u, 0.0, 50.0)
    assert lo == 0.0 and hi > 45, (lo, hi)


def test_tflite_int8_refined_ranges_beat_minmax(tmp_path, photo):
    """Refined int8 ranges: one-grey-level output step and less error than min/max ranges."""
    from edsr_tf.export import tflite
    from edsr_tf.export.calibration import calibration_patches
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model

    model, _ = tiny_model(seed=3)
    conv = export_conversion_savedmodel(inference_model(model), tmp_path / "conv")
    calib = calibration_patches(num_patches=8, patch_size=24)
    x = photo[None, 40:104, 60:124].astype(np.float32)
    ref = keras_out(model, x)
    err = {}
    for ranges in ("mse", "minmax"):
        path = tflite.write(tflite.convert(conv, "int8", calib, int8_ranges=ranges), tmp_path / f"{ranges}.tflite")
        runner = TFLiteRunner(path)
        assert "float32" not in runner.tensor_dtypes()
        if ranges == "mse":
            assert runner.interpreter.get_output_details()[0]["quantization"] == (1.0, 0)
        err[ranges] = float(np.mean((runner.run(x) - ref) ** 2))
    assert err["mse"] < err["minmax"], err
    with pytest.raises(ExportError, match="range policy"):
        tflite.convert(conv, "int8", calib, int8_ranges="percentile")


def test_onnx_unknown_calibration_method(tmp_path):
    with pytest.raises(ExportError, match="calibration method"):
        onnx_export.quantize_int8(tmp_path / "missing.onnx", tmp_path / "q.onnx", [], calibrate_method="Bogus")


def test_tflite_tile_is_fixed_shape(exported):
    model, out, name = exported["model"], exported["out"], exported["name"]
    runner = TFLiteRunner(out / "tflite" / f"{name}_fp32_tile{TILE[0]}x{TILE[1]}.tflite")
    assert runner.fixed_shape == (1, TILE[0], TILE[1], 3)
    x = np.random.default_rng(5).uniform(0, 255, (1, *TILE, 3)).astype(np.float32)
    assert np.abs(runner.run(x) - keras_out(model, x)).max() <= 1e-2
    with pytest.raises(ValueError, match="fixed input shape"):
        runner.run(np.zeros((1, 9, 9, 3), np.float32))


def test_onnx_dynamic_axes_depth_to_space_and_int8(exported, photo):
    import onnx

    model, out, name = exported["model"], exported["out"], exported["name"]
    proto = onnx.load(str(out / "onnx" / f"{name}_fp32.onnx"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:3]] == ["batch", "height", "width"] and dims[3].dim_value == 3
    # The sub-pixel shuffle is an NHWC reshape/transpose (onnx.nhwc_depth_to_space), not an NCHW DepthToSpace.
    assert not [n for n in proto.graph.node if n.op_type == "DepthToSpace"]
    six_d = [n for n in proto.graph.node if n.op_type == "Transpose" and list(n.attribute[0].ints) == [0, 1, 3, 2, 4, 5]]
    assert len(six_d) == 1  # x2: one shuffle stage
    assert all(len(n.input) <= 3 for n in proto.graph.node if n.op_type == "Conv")
    runner = onnx_export.OnnxRunner(out / "onnx" / f"{name}_fp32.onnx")
    rng = np.random.default_rng(6)
    for shape in [(1, 10, 14, 3), (1, 7, 19, 3)]:
        x = rng.uniform(0, 255, shape).astype(np.float32)
        assert np.abs(runner.run(x) - keras_out(model, x)).max() <= 1e-2
    q = onnx_export.OnnxRunner(out / "onnx" / f"{name}_int8.onnx")
    ops = q.op_types()
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    x = photo[None, 100:113, 200:215].astype(np.float32)
    y = q.run(x)
    assert y.shape == (1, 26, 30, 3) and psnr_vs(y, keras_out(model, x)) > 35.0


def test_fix_conv_bias_inputs_repairs_four_input_conv(tmp_path):
    """tf2onnx can fold an add after a conv bias into a 4th Conv input; onnxruntime refuses it."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    b1, b2 = rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32)

    def conv_model(inputs):
        graph = helper.make_graph(
            [helper.make_node("Conv", inputs, ["y"], pads=[1, 1, 1, 1], name="tail")],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 4])],
            [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b1, "b1"), (b2, "b2"))],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def run(model, x):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    bad = conv_model(["x", "w", "b1", "b2"])
    with pytest.raises(Exception):
        run(bad, np.zeros((1, 2, 5, 4), np.float32))
    assert onnx_export.fix_conv_bias_inputs(bad) == 1
    assert len(bad.graph.node[0].input) == 3
    onnx.checker.check_model(bad)
    x = rng.normal(size=(1, 2, 5, 4)).astype(np.float32)
    ref = run(conv_model(["x", "w"]), x) + (b1 + b2)[None, :, None, None]
    assert np.allclose(run(bad, x), ref, atol=1e-5)


def test_mdsr_one_artifact_per_scale_x3(tmp_path, photo):
    model, config = tiny_model("mdsr", (2, 3), seed=1)
    out = tmp_path / "mdsr"
    options = ExportOptions(formats=("savedmodel", "tflite", "onnx"), verify_images=[("photo", photo[:48, :60])],
                            latency_runs=0)
    report = export_model(model, config, out, options, progress=None)
    assert report["models"] == ["mdsr_b2_f8_x2", "mdsr_b2_f8_x3"]
    x = np.random.default_rng(8).uniform(0, 255, (1, 7, 11, 3)).astype(np.float32)
    ref3 = np.clip(model(x)["x3"].numpy(), 0, 255)
    y = TFLiteRunner(out / "tflite" / "mdsr_b2_f8_x3_fp32.tflite").run(x)
    assert y.shape == (1, 21, 33, 3) and np.abs(y - ref3).max() <= 1e-2
    y = onnx_export.OnnxRunner(out / "onnx" / "mdsr_b2_f8_x3_fp32.onnx").run(x)
    assert np.abs(y - ref3).max() <= 1e-2
    runner = SavedModelRunner(out / "savedmodel" / "mdsr_b2_f8_x3" / "1")
    assert np.abs(runner.run(x) - ref3).max() <= 1e-2
    assert runner.metadata == {"scale": 3, "max_pixels": DEFAULT_MAX_PIXELS}
    assert SavedModelRunner(out / "savedmodel" / "mdsr_b2_f8_x2" / "1").metadata["scale"] == 2


def test_save_serving_model_scale_selects_and_is_checked(tmp_path):
    """``scale`` picks the MDSR sub-network, must match a single-scale model, and is recorded."""
    mdsr, _ = tiny_model("mdsr", (2, 3), seed=2)
    x = np.random.default_rng(10).uniform(0, 255, (1, 5, 6, 3)).astype(np.float32)
    for s in (3, 2):
        runner = SavedModelRunner(save_serving_model(mdsr, s, tmp_path / f"mdsr_x{s}" / "1", max_pixels=500))
        assert runner.metadata == {"scale": s, "max_pixels": 500}
        want = np.clip(mdsr(x)[f"x{s}"].numpy(), 0, 255)
        assert np.abs(runner.run(x) - want).max() <= 1e-2
    with pytest.raises(ExportUsageError, match="--scale 4: MDSR model has no scale 4"):
        save_serving_model(mdsr, 4, tmp_path / "mdsr_x4" / "1")
    edsr, _ = tiny_model()
    with pytest.raises(ExportUsageError, match="--scale 3: the model upscales by 2"):
        save_serving_model(edsr, 3, tmp_path / "edsr_x3" / "1")
    assert sorted(os.listdir(tmp_path)) == ["mdsr_x2", "mdsr_x3"]


def test_divergent_export_fails_and_leaves_nothing(tmp_path, photo, monkeypatch):
    """An exporter that produces a wrong model must fail verification; no artifact is kept."""
    model, config = tiny_model()
    real = pipeline.export_conversion_savedmodel

    def wrong(m, path, input_shape=None):  # the converted model is off by 0.5 grey levels
        inp = keras.Input((None, None, 3))
        return real(keras.Model(inp, m(inp) + 0.5), path, input_shape)

    monkeypatch.setattr(pipeline, "export_conversion_savedmodel", wrong)
    out = tmp_path / "out"
    options = ExportOptions(formats=("tflite",), verify_images=[("p", photo[:32, :32])], latency_runs=0)
    with pytest.raises(VerificationError, match="exceeds the tolerance") as e:
        export_model(model, config, out, options, progress=None)
    assert not out.exists()
    assert os.listdir(tmp_path) == []
    # nothing written, yet the error carries the report: the forced failure shows passed false / FAIL
    report = e.value.report
    assert report["passed"] is False and [a["passed"] for a in report["artifacts"]] == [False]
    assert report["artifacts"][0]["max_abs_diff"] == pytest.approx(0.5, abs=0.02)
    assert report["failed"][0]["format"] == "tflite" and table(report).splitlines()[2].endswith("FAIL")
    # an existing export folder is left exactly as it was
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(VerificationError):
        export_model(model, config, out, options, progress=None)
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(out) == ["keep.txt"]


def test_mismatched_weights_clear_error(tmp_path, capsys):
    from edsr_tf.export.cli import main

    model, config = tiny_model()
    weights = save_model(model, tmp_path / "m.weights.h5", config)
    with h5py.File(weights, "a") as f:  # config claims 16 features; the weights have 8
        f.attrs["edsr_tf_config"] = json.dumps({**config.to_dict(), "n_feats": 16})
    out = tmp_path / "out"
    assert main(["--weights", str(weights), "--out_dir", str(out), "--formats", "tflite", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "export failed:" in err and "m.weights.h5" in err and "Traceback" not in err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["m.weights.h5"]
    with pytest.raises(ModelFileError):
        export(weights, out)


def test_cli_corrupted_weights_exit_nonzero(tmp_path):
    weights = tmp_path / "broken.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(512))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "export", "--weights", str(weights), "--out_dir", str(out)],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 1
    assert "broken.weights.h5" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"formats": "savedmodel,pb"}, "--formats"),
        ({"quantize": "int4"}, "--quantize"),
        ({"formats": "savedmodel", "quantize": "int8"}, "no requested format supports"),
        ({"formats": "onnx", "tile": "16,16"}, "--tile applies to TFLite"),
        ({"formats": "tflite", "tile": "16x16"}, "--tile"),
        ({"scale": 3}, "--scale"),
        ({"formats": "tflite", "quantize": "int8", "calibration_dir": "/nonexistent/dir"}, "--calibration-dir"),
    ],
)
def test_bad_options_clear_errors(tmp_path, kwargs, match):
    model, config = tiny_model()
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=match):
        export_model(model, config, out, ExportOptions.parse(latency_runs=0, **kwargs), progress=None)
    assert os.listdir(tmp_path) == []


def test_options_are_typed():
    """export_model takes typed options: text is the front end's to parse (ExportOptions.parse)."""
    with pytest.raises(TypeError, match="ExportOptions.parse"):
        ExportOptions(formats="tflite")
    with pytest.raises(TypeError, match="ExportOptions.parse"):
        ExportOptions(formats=("tflite",), tile="16,16")
    parsed = ExportOptions.parse(formats="tflite,savedmodel", quantize=["int8", "none"], tile="16",
                                 verify_max_side=0)
    assert parsed == ExportOptions(formats=("savedmodel", "tflite"), quantize=("none", "int8"), tile=(16, 16),
                                   verify_max_side=None)
    assert parsed.jobs == (("savedmodel", "none"), ("tflite", "none"), ("tflite", "int8"))
    assert parsed.skipped == {"savedmodel": ["int8"], "tflite": []}
    for bad, match in [({"latency_runs": -1}, "--latency-runs"), ({"num_calibration": 0}, "--calibration"),
                       ({"tolerance": 0}, "--tolerance"), ({"max_pixels": 0}, "--max-pixels")]:
        with pytest.raises(ExportUsageError, match=match):
            ExportOptions(**bad)
    with pytest.raises(TypeError, match="unknown option"):
        ExportOptions.parse(format="tflite")


def test_empty_calibration_dir(tmp_path):
    model, config = tiny_model()
    (tmp_path / "calib").mkdir()
    with pytest.raises(ExportError, match="no images"):
        export_model(model, config, tmp_path / "out",
                     ExportOptions(formats=("onnx",), quantize=("int8",), calibration_dir=tmp_path / "calib"),
                     progress=None)
    assert sorted(os.listdir(tmp_path)) == ["calib"]


def test_reexport_replaces_artifacts_in_existing_folder(tmp_path, photo):
    model, config = tiny_model()
    out = tmp_path / "out"
    stale_version = out / "savedmodel" / "edsr_b2_f8_x2" / "1"
    stale_version.mkdir(parents=True)
    (stale_version / "stale.txt").write_text("from an older export")
    (out / "notes.txt").write_text("user file")
    export_model(model, config, out, ExportOptions(formats=("savedmodel", "tflite"),
                                                   verify_images=[("p", photo[:32, :40])], latency_runs=0),
                 progress=None)
    assert (stale_version / "saved_model.pb").is_file() and not (stale_version / "stale.txt").exists()
    assert (out / "notes.txt").read_text() == "user file"
    assert (out / "tflite" / "edsr_b2_f8_x2_fp32.tflite").is_file() and (out / "report.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]
