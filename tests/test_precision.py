"""``--precision fp32|bf16|int8`` of upscale/evaluate, and the compiled Keras inference path.

Tiny models (2 blocks, 8 features) on crops of a real photograph; the int8 cache lives in a
temporary ``EDSR_TF_CACHE``. The CPU flags are faked where the bf16 note is checked.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edsr_tf import inference_precision as ip
from edsr_tf import precision as machine
from edsr_tf.images import read_image, write_image
from edsr_tf.inference import Runner, _predict_fn, keras_runner, receptive_field_radius, upscale_array
from edsr_tf.models import ModelConfig, build_model, save_model
from edsr_tf.pretrained import sha256_of


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny EDSR x2 (random weights), its config and its weights file."""
    config = ModelConfig(arch="edsr", scales=(2,), n_resblocks=2, n_feats=8, res_scale=0.5)
    model = build_model(config)
    path = save_model(model, tmp_path_factory.mktemp("w") / "tiny_x2.weights.h5", config)
    return model, config, path


@pytest.fixture(scope="module")
def crop():
    """A 40x52 crop of a real photograph (float32 in [0, 255])."""
    from edsr_tf.sample_data import sample_image

    return sample_image("chelsea")[100:140, 200:252].astype(np.float32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(ip.CACHE_ENV, str(folder))
    return folder


def counting_conversions(monkeypatch) -> list:
    """Records every int8 conversion (and still runs it)."""
    calls = []
    real = ip.convert_int8

    def convert(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ip, "convert_int8", convert)
    return calls


# ----------------------------------------------------------------------------- compiled Keras path


def test_compiled_path_equals_eager(tiny, crop):
    model, _, _ = tiny
    fn = _predict_fn(model, 2)
    # A tf.function with one fixed, fully dynamic signature: no eager call, no retrace per shape.
    assert [tuple(s.shape) for s in fn.input_signature] == [(None, None, None, 3)]
    eager = np.asarray(model(crop[None], training=False))[0]
    np.testing.assert_allclose(upscale_array(model, 2, crop), eager, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(upscale_array(keras_runner(model, 2), 2, crop, tile=16), eager,
                               rtol=1e-5, atol=1e-3)
    assert fn.experimental_get_tracing_count() == 1


def test_a_runner_is_tiled_like_the_keras_model(tiny, crop):
    model, _, _ = tiny
    calls = []

    def predict(batch):
        calls.append(batch.shape)
        return np.asarray(model(batch, training=False))

    radius = receptive_field_radius(model)
    runner = Runner(predict, radius, 1)
    out = upscale_array(runner, 2, crop, tile=12, self_ensemble=True)
    np.testing.assert_allclose(out, upscale_array(model, 2, crop, tile=12, self_ensemble=True), atol=2e-3)
    # Windows of tile + 2 x the runner's radius, 8 transforms each.
    assert len(calls) == 8 * 4 * 5 and {s[1:] for s in calls} == {(12 + 2 * radius,) * 2 + (3,)}


# ----------------------------------------------------------------------------- bf16


def test_bf16_is_bfloat16_and_close_to_fp32(tiny, crop):
    model, config, _ = tiny
    net = ip.bf16_model(model, config, 2)
    assert net.get_layer("head").compute_dtype == "bfloat16"
    assert net.get_layer("tail").compute_dtype == "float32"
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    fp32 = upscale_array(model, 2, crop)
    bf16 = upscale_array(net, 2, crop)
    assert bf16.dtype == np.float32
    assert 40 < psnr(bf16, fp32) < float("inf")  # close, but really computed in bfloat16
    plus = upscale_array(net, 2, crop, self_ensemble=True, tile=16)
    assert psnr(plus, upscale_array(model, 2, crop, self_ensemble=True)) > 40


def test_bf16_mdsr_scale_view(crop):
    config = ModelConfig(arch="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8)
    mdsr = build_model(config)
    net = ip.bf16_model(mdsr, config, 3)
    # Close to fp32 but not equal to it: the float model run instead would score infinity.
    assert 40 < psnr(upscale_array(net, 3, crop[:20, :24]), upscale_array(mdsr, 3, crop[:20, :24])) < float("inf")


def test_bf16_note_only_without_native_bfloat16(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # no GPU either
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: "model name\t: Old CPU\nflags\t\t: sse2 avx2\n")
    reason = ip.bf16_slow_reason()
    assert reason is not None and "Old CPU" in reason and "slower than fp32" in reason
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: "flags\t\t: avx2 avx512f avx512_bf16\n")
    assert ip.bf16_slow_reason() is None


# ----------------------------------------------------------------------------- int8


def test_int8_converts_once_then_reuses_the_cache(tiny, crop, cache, monkeypatch):
    model, _, path = tiny
    calls = counting_conversions(monkeypatch)
    said = []
    first = ip.int8_tflite(path, 2, say=said.append)
    assert len(calls) == 1 and len(said) == 1 and "converting" in said[0]
    assert first == ip.int8_cache_path(sha256_of(path), 2) and first.parent == cache / "tflite"
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left over
    stamp = first.stat().st_mtime_ns
    again = ip.int8_tflite(path, 2, say=said.append)
    assert again == first and len(calls) == 1 and len(said) == 1 and first.stat().st_mtime_ns == stamp

    runner = ip.tflite_runner(first, model, 2)
    whole = upscale_array(runner, 2, crop)
    assert whole.shape == (80, 104, 3) and psnr(whole, upscale_array(model, 2, crop)) > 25
    # Same tiling as Keras: integer arithmetic makes the tiled result exactly the untiled one.
    np.testing.assert_array_equal(upscale_array(runner, 2, crop, tile=9, batch_size=3), whole)
    plus = upscale_array(runner, 2, crop, tile=16, self_ensemble=True)
    assert psnr(plus, upscale_array(model, 2, crop, self_ensemble=True)) > 25


def test_int8_prefers_a_shipped_tflite(cache, monkeypatch, tmp_path):
    from edsr_tf import pretrained

    real = pretrained.shipped_tflite("edsr_baseline_x2")  # the QAT model shipped beside the weights
    assert real == pretrained.PACKAGE_DIR / "edsr_baseline_x2.int8.tflite"
    assert pretrained.shipped_tflite("no_such_model") is None
    shipped = tmp_path / "edsr_baseline_x2.int8.tflite"
    shipped.write_bytes(b"stand-in")
    monkeypatch.setattr(pretrained, "shipped_tflite", lambda name, directory=None: shipped)
    calls = counting_conversions(monkeypatch)
    assert ip.int8_tflite("edsr_baseline_x2", 2) == shipped
    # The shipped file found by content too: the weights given as a path.
    assert ip.int8_tflite(pretrained.resolve("edsr_baseline_x2"), 2) == shipped
    assert calls == [] and not cache.exists()


# ----------------------------------------------------------------------------- the command lines


def test_upscale_cli_int8_converts_once(tiny, crop, cache, monkeypatch, tmp_path, capsys):
    from edsr_tf.upscale import main

    model, _, path = tiny
    calls = counting_conversions(monkeypatch)
    write_image(tmp_path / "a.png", crop.astype(np.uint8))
    argv = [str(tmp_path / "a.png"), "--weights", str(path), "--out_dir", str(tmp_path / "o"),
            "--precision", "int8", "--quiet", "--overwrite", "--tile", "12"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert len(calls) == 1 and err.count("note: --precision int8: converting") == 1, err
    first = read_image(tmp_path / "o" / "a_x2_int8.png").rgb  # named apart from the float output
    # The pixels are the int8 model's (integer arithmetic: the tiled result is the untiled one
    # exactly), not the float model's: a conversion cached but not run would still count once.
    runner = ip.tflite_runner(ip.int8_cache_path(sha256_of(path), 2), model, 2)
    np.testing.assert_array_equal(first, upscale_array(runner, 2, crop).astype(np.uint8))
    assert np.abs(first.astype(float) - np.clip(np.round(upscale_array(model, 2, crop)), 0, 255)).max() >= 2
    assert main(argv + ["--self_ensemble"]) == 0
    assert len(calls) == 1 and "converting" not in capsys.readouterr().err
    plus = read_image(tmp_path / "o" / "a_x2_int8.png").rgb
    assert plus.shape == first.shape == (80, 104, 3)
    np.testing.assert_allclose(plus, np.round(upscale_array(runner, 2, crop, self_ensemble=True)), atol=1)


def test_upscale_cli_bf16(tiny, crop, monkeypatch, tmp_path, capsys):
    from edsr_tf.upscale import main

    model, config, path = tiny
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: "model name\t: Old CPU\nflags\t\t: sse2\n")
    write_image(tmp_path / "a.png", crop.astype(np.uint8))
    base = [str(tmp_path / "a.png"), "--weights", str(path), "--quiet", "--tile", "16"]
    assert main(base + ["--out_dir", str(tmp_path / "b"), "--precision", "bf16"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "bf16" in ln]
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert len(notes) == 1 and notes[0].startswith("note: --precision bf16: ") and "slower" in notes[0]
    assert main(base + ["--out_dir", str(tmp_path / "f")]) == 0
    bf16 = read_image(tmp_path / "b" / "a_x2.png").rgb
    fp32 = read_image(tmp_path / "f" / "a_x2.png").rgb
    assert 40 < psnr(bf16, fp32) < float("inf")  # fp32 run instead: identical files, infinite PSNR
    # And it is the bfloat16 network's output (to a rounding step: tiles may sum in another order).
    lib = np.clip(np.round(upscale_array(ip.bf16_model(model, config, 2), 2, crop, tile=16)), 0, 255)
    assert np.abs(bf16 - lib).max() <= 1 and psnr(bf16, lib) > psnr(bf16, fp32)


@pytest.mark.parametrize("tool", ["upscale", "evaluate"])
@pytest.mark.parametrize("flags, named", [
    (["--precision", "fp64"], "--precision"),
    (["--precision", "int8", "--bicubic", "--scale=2"], "--precision int8 needs a model"),
    (["--precision", "bf16", "--bicubic", "--scale=2"], "--precision bf16 needs a model"),
])
def test_bad_precision_flags_exit_2_with_one_line(tool, flags, named, tmp_path, monkeypatch, capsys):
    from edsr_tf.evaluate import main as evaluate
    from edsr_tf.upscale import main as upscale

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    if tool == "upscale":
        run, argv = upscale, ["a.png", "--out_dir", "o", *flags]
    else:
        run, argv = evaluate, ["--dataset_dir", str(tmp_path), *flags]
    try:
        code = run(argv)
    except SystemExit as e:
        code = e.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing done


def test_evaluate_cli_precision_in_table_and_json(tiny, cache, tmp_path, capsys):
    from edsr_tf.evaluate import main
    from edsr_tf.evaluation import eval_set_from_hr, evaluate_set, model_sr

    from edsr_tf.sample_data import sample_image

    model, _, path = tiny
    hr = sample_image("chelsea")[90:150, 190:250]
    write_image(tmp_path / "bench" / "Set5" / "HR" / "c.png", hr)
    out = tmp_path / "e.json"
    assert main(["--weights", str(path), "--dataset_dir", str(tmp_path / "bench"), "--eval_sets", "Set5",
                 "--precision", "int8", "--json", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "edsr int8 PSNR" in table
    doc = json.loads(out.read_text())
    assert doc["precision"] == "int8"
    # The score is the int8 model's, not the float model's under an int8 label.
    images = eval_set_from_hr("Set5", {"c": hr}, 2)
    runner = ip.tflite_runner(ip.int8_cache_path(sha256_of(path), 2), model, 2)
    int8 = evaluate_set(model_sr(runner, 2), images)["psnr"]
    fp32 = evaluate_set(model_sr(model, 2), images)["psnr"]
    # (The random model scores ~17 dB either way: int8 moves it by ~1e-3 dB, 1000x the match tolerance.)
    assert doc["results"][0]["psnr"] == pytest.approx(int8, abs=1e-6) and abs(int8 - fp32) > 1e-4, (int8, fp32)
    assert f"{int8:.2f}" in table
