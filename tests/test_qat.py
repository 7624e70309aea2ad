"""Quantization-aware training: the Keras simulation quantizes where and as TFLite int8 does."""

from __future__ import annotations

import numpy as np
import pytest

from edsr_tf.models import edsr


def _model(scale: int = 2, res_scale: float = 1.0, blocks: int = 3, feats: int = 16):
    """A small EDSR with random weights and biases (a trained model's biases are not zero)."""
    import keras

    model = edsr(scale, n_resblocks=blocks, n_feats=feats, res_scale=res_scale)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0.0, 2.0, layer.bias.shape).astype(np.float32))
    return model


def test_quantized_tensors_follow_tflite_fusions():
    from edsr_tf.models.qat import quantized_tensors

    points = quantized_tensors(_model(scale=4, blocks=1))
    # conv1 is fused with its ReLU, the tail with the output mean shift; shuffles keep their input's scale.
    assert list(points) == ["lr", "sub_mean", "head", "body_0_relu", "body_0_conv2", "body_0_add",
                            "body_conv", "global_skip", "upsample_0_conv", "upsample_1_conv", "add_mean"]
    assert points["lr"] == points["add_mean"] == (0.0, 255.0)
    lo, hi = points["sub_mean"]
    assert lo == pytest.approx(-0.4488 * 255) and hi == pytest.approx(255 - 0.4040 * 255)
    # res_scale != 1: the constant multiply folds into conv2, its output is the int8 tensor.
    scaled = quantized_tensors(_model(res_scale=0.1, blocks=1))
    assert "body_0_scale" in scaled and "body_0_conv2" not in scaled


def test_mdsr_is_refused_with_a_clear_error():
    from edsr_tf.models import ModelConfig, build_model
    from edsr_tf.models.qat import QATError, quantize_model

    model = build_model(ModelConfig.from_preset("mdsr_baseline", (2, 3), n_resblocks=1, n_feats=8))
    with pytest.raises(QATError, match="MDSR"):
        quantize_model(model)


def test_weights_round_like_tflite_and_gradients_pass_through():
    import tensorflow as tf

    from edsr_tf.models.qat import fake_quant_kernel

    k = tf.Variable(np.random.default_rng(0).normal(0, 0.05, (3, 3, 4, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        q = fake_quant_kernel(k)
        loss = tf.reduce_sum(q * 2.0)
    step = np.abs(k.numpy()).reshape(-1, 5).max(0) / 127
    levels = q.numpy() / step
    assert np.allclose(levels, np.round(levels), atol=1e-3)  # on the per-channel int8 grid
    assert np.abs(levels).max() <= 127 + 1e-3
    assert np.abs(q.numpy() - k.numpy()).max() <= step.max() / 2 + 1e-7
    np.testing.assert_allclose(tape.gradient(loss, k).numpy(), 2.0)  # straight-through


def test_quantize_constant_matches_tflite_storage():
    from edsr_tf.models.qat import quantize_constant

    # What TF 2.21's converter stores for the mean shift (int8 [-128, -121, -103], step 0.4488).
    c = quantize_constant(np.array([-114.444, -111.4605, -103.02]))
    np.testing.assert_allclose(c, np.array([-255, -248, -230]) * 0.4488, atol=1e-3)


def _grid(lo: float, hi: float) -> tuple[float, int]:
    scale = (hi - lo) / 255.0
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


@pytest.mark.parametrize("scale,res_scale", [(2, 1.0), (3, 0.1), (4, 1.0)])
def test_int8_tflite_matches_the_qat_model(tmp_path, photo, scale, res_scale):
    """The QAT model's ranges land on TFLite's int8 tensors unchanged (same scale and zero
    point everywhere) and the uint8 output agrees with the simulation on a real photo."""
    from ai_edge_litert.interpreter import Interpreter

    from edsr_tf.export import tflite
    from edsr_tf.export.calibration import calibration_patches
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model
    from edsr_tf.models.qat import calibrate, int8_ranges, quantize_model

    model = _model(scale, res_scale)
    qat = quantize_model(model)
    patches = calibration_patches(num_patches=8, patch_size=48)
    calibrate(model, qat, patches)
    ranges = int8_ranges(qat)
    sm = export_conversion_savedmodel(inference_model(model), tmp_path / "sm")
    path = tflite.write(tflite.convert(sm, "int8", patches, qat=(model, ranges)), tmp_path / "m.tflite")

    grids = [_grid(lo, hi) for lo, hi in ranges.values()]
    interp = Interpreter(model_path=str(path))
    checked = 0
    for t in interp.get_tensor_details():
        q = t["quantization_parameters"]
        if t["dtype"] != np.int8 or len(t["shape"]) != 4 or len(q["scales"]) != 1:
            continue  # weights are per-channel; biases int32
        s, z = float(q["scales"][0]), int(q["zero_points"][0])
        assert any(abs(s - gs) <= 1e-6 * gs and z == gz for gs, gz in grids), t["name"]
        checked += 1
    assert checked >= len(ranges) - 1  # every simulated tensor (the uint8 input aside) is there
    interp.allocate_tensors()
    ops = [o["op_name"] for o in interp._get_ops_details()]
    assert "MINIMUM" not in ops and "RELU" not in ops  # the output clip is int8 saturation: dropped

    lr = photo[None, 40:104, 60:124].astype(np.float32)
    sim = np.asarray(qat(lr))
    out = tflite.TFLiteRunner(path).run(lr)
    diff = np.abs(sim - out)
    # Not bit-exact: float32 convolutions sum in another order than int32 ones, so a value on
    # a rounding boundary can flip by one step, and a flip spreads through the layers after it
    # (the same simulation XLA-compiled differs from itself that way: benchmarks/qat_int8.py).
    assert diff.mean() < 0.1, diff.mean()
    assert (diff <= 1).mean() >= 0.98 and (diff <= 2).mean() >= 0.995, np.bincount(diff.astype(int).ravel())
    # And the simulation is not trivially the float model: int8 moves it.
    assert np.abs(np.clip(np.round(np.asarray(model(lr))), 0, 255) - out).max() >= 1


def test_dropping_the_noop_output_clip_keeps_the_output_bit_identical(tmp_path, photo, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    from edsr_tf.export import tflite
    from edsr_tf.export.calibration import calibration_patches
    from edsr_tf.export.common import export_conversion_savedmodel, inference_model

    model = _model(2)
    patches = calibration_patches(num_patches=4, patch_size=32)
    sm = export_conversion_savedmodel(inference_model(model), tmp_path / "sm")
    drop = tflite.drop_noop_clip
    monkeypatch.setattr(tflite, "drop_noop_clip", lambda fb: fb)
    with_clip = tflite.convert(sm, "int8", patches)
    without = drop(with_clip)

    def ops(fb):
        interp = Interpreter(model_content=fb)
        interp.allocate_tensors()
        return [o["op_name"] for o in interp._get_ops_details()]

    assert {"MINIMUM", "RELU"} <= set(ops(with_clip))
    assert not {"MINIMUM", "RELU"} & set(ops(without))
    lr = photo[None, :40, :40].astype(np.float32)
    a = tflite.TFLiteRunner(tflite.write(with_clip, tmp_path / "a.tflite")).run(lr)
    b = tflite.TFLiteRunner(tflite.write(without, tmp_path / "b.tflite")).run(lr)
    np.testing.assert_array_equal(a, b)
    # Other output ranges (the converter's min/max): whatever is dropped changes nothing either.
    minmax = tflite.convert(sm, "int8", patches, int8_ranges="minmax")
    c = tflite.TFLiteRunner(tflite.write(minmax, tmp_path / "c.tflite")).run(lr)
    d = tflite.TFLiteRunner(tflite.write(drop(minmax), tmp_path / "d.tflite")).run(lr)
    np.testing.assert_array_equal(c, d)


def test_int8_ranges_round_trip_through_weights_files(tmp_path):
    from edsr_tf.models import ModelConfig, build_model, read_int8_ranges, save_model
    from edsr_tf.models.io import ModelFileError

    config = ModelConfig.from_preset("edsr_baseline", (2,), n_resblocks=1, n_feats=8)
    model = build_model(config)
    ranges = {"head": (-3.5, 4.25), "body_0_relu": (0.0, 2.0)}
    path = save_model(model, tmp_path / "q.weights.h5", config, int8_ranges=ranges)
    assert read_int8_ranges(path) == ranges
    assert read_int8_ranges(save_model(model, tmp_path / "f.weights.h5", config)) is None
    with pytest.raises(ModelFileError, match="weights.h5"):
        save_model(model, tmp_path / "q.keras", config, int8_ranges=ranges)


def test_train_qat_saves_ranges_that_the_int8_export_uses(tmp_path):
    from edsr_tf.export import ExportOptions, export
    from edsr_tf.models import read_int8_ranges
    from edsr_tf.training.app import TrainOptions, train

    common = dict(model="edsr_baseline", n_resblocks=1, n_feats=8, scales=(2,), patch_size=16,
                  batch_size=4, eval_every=0, progress=False, ckpt_every=10)
    train(TrainOptions(out_dir=str(tmp_path / "fp"), steps=4, **common))
    fp = tmp_path / "fp" / "final.weights.h5"
    assert read_int8_ranges(fp) is None
    result = train(TrainOptions(out_dir=str(tmp_path / "qat"), steps=4, init_from=str(fp), qat=True,
                                qat_calibration_batches=2, **common))
    assert result["step"] == 4
    ranges = read_int8_ranges(tmp_path / "qat" / "final.weights.h5")
    assert ranges and ranges["add_mean"] == (0.0, 255.0) and ranges["body_0_relu"][0] == 0.0
    assert ranges["head"][0] < 0 < ranges["head"][1]

    report = export(tmp_path / "qat" / "final.weights.h5", tmp_path / "exp",
                    ExportOptions(formats=("tflite", "onnx"), quantize=("int8",), latency_runs=0,
                                  verify_max_side=48), progress=None)
    assert any("quantization-aware" in n for n in report["notes"])
    assert {a["format"] for a in report["artifacts"] if a["passed"]} == {"tflite", "onnx"}
    # The ranges themselves reach the int8 tensors: a note and passing artifacts would survive an
    # export that silently calibrated (plain PTQ) instead.
    files = {a["format"]: tmp_path / "exp" / a["path"] for a in report["artifacts"]}
    tfl = _tflite_activation_grids(files["tflite"])
    assert tfl == _close_grids({_grid(lo, hi) for lo, hi in ranges.values()}), (tfl, ranges)
    onx = _onnx_activation_grids(files["onnx"])
    assert onx == _close_grids({_uint8_grid(lo, hi) for lo, hi in ranges.values()}), (onx, ranges)


def _close_grids(grids: set[tuple[float, int]]) -> set[tuple[float, int]]:
    """(scale, zero point) pairs with the scale rounded, to compare float32-stored with float64 grids."""
    return {(float(f"{s:.5g}"), z) for s, z in grids}


def _tflite_activation_grids(path) -> set[tuple[float, int]]:
    """(scale, zero point) of every per-tensor int8 activation of a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    grids = set()
    for t in Interpreter(model_path=str(path)).get_tensor_details():
        q = t["quantization_parameters"]
        if t["dtype"] == np.int8 and len(t["shape"]) == 4 and len(q["scales"]) == 1:
            grids.add((float(q["scales"][0]), int(q["zero_points"][0])))
    return _close_grids(grids)


def _uint8_grid(lo: float, hi: float) -> tuple[float, int]:
    """onnxruntime's uint8 (scale, zero point) of a range (QuantType.QUInt8, asymmetric)."""
    scale = (max(hi, 0.0) - min(lo, 0.0)) / 255.0
    return scale, int(np.round(-min(lo, 0.0) / scale))


def _onnx_activation_grids(path) -> set[tuple[float, int]]:
    """(scale, zero point) of every QuantizeLinear of activations (weights are stored quantized)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    grids = set()
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:
            grids.add((float(init[node.input[1]]), int(init[node.input[2]])))
    return _close_grids(grids)


def test_qat_refuses_explicit_mixed_precision(tmp_path):
    from edsr_tf.training.app import TrainError, TrainOptions, train

    with pytest.raises(TrainError, match="--qat"):
        train(TrainOptions(out_dir=str(tmp_path / "q"), model="edsr_baseline", n_resblocks=1,
                           n_feats=8, steps=1, qat=True, mixed_precision="bf16", progress=False))
