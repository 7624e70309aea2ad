"""Model architecture: parameter counts equal the reference, shapes, save/load."""

import numpy as np
import pytest

from edsr_tf.models import (
    ModelConfig,
    build_model,
    load_model,
    model_for_scale,
    read_config,
    save_model,
)
from edsr_tf.models.config import ScaleError, parse_scales, resolve_scale
from edsr_tf.models.io import ModelFileError


def trainable_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize(
    "preset,scale,expected",
    [
        ("edsr_baseline", 2, 1_369_859),
        ("edsr_baseline", 3, 1_554_499),
        ("edsr_baseline", 4, 1_517_571),
        ("edsr", 2, 40_729_603),
        ("edsr", 3, 43_680_003),
        ("edsr", 4, 43_089_923),
        ("mdsr_baseline", None, 3_227_203),
        ("mdsr", None, 7_953_987),
    ],
)
def test_param_counts_match_reference(preset, scale, expected):
    model = build_model(ModelConfig.from_preset(preset, scale))
    assert trainable_params(model) == expected
    assert not model.non_trainable_weights  # mean shift is a constant, not a weight


def tiny(arch="edsr", scales=(2,)):
    return ModelConfig(arch=arch, scales=scales, n_resblocks=2, n_feats=8, res_scale=0.5)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_edsr_any_size_output_shape(scale):
    model = build_model(tiny(scales=(scale,)))
    for h, w in [(5, 7), (12, 9)]:
        y = model(np.random.uniform(0, 255, (2, h, w, 3)).astype("float32"))
        assert y.shape == (2, h * scale, w * scale, 3)


def test_zero_weights_give_bicubic_free_mean_image():
    # With every conv zeroed, the network outputs exactly the DIV2K mean: the
    # mean shift in and out is wired as the reference does.
    model = build_model(tiny())
    for w in model.weights:
        w.assign(np.zeros(w.shape, "float32"))
    y = np.asarray(model(np.full((1, 4, 4, 3), 17.0, "float32")))
    np.testing.assert_allclose(y[0, 0, 0], np.array([0.4488, 0.4371, 0.4040]) * 255, atol=1e-4)


def test_mdsr_scale_models_share_weights():
    config = tiny("mdsr", (2, 3, 4))
    model = build_model(config)
    x = np.random.uniform(0, 255, (1, 6, 5, 3)).astype("float32")
    full = model(x)
    for s in (2, 3, 4):
        sub = model_for_scale(model, config, s)
        y = sub(x)
        assert y.shape == (1, 6 * s, 5 * s, 3)
        np.testing.assert_allclose(np.asarray(y), np.asarray(full[f"x{s}"]), atol=1e-4)
        # Same variable objects, not copies.
        assert {id(v) for v in sub.weights} <= {id(v) for v in model.weights}
    with pytest.raises(ValueError, match="x8"):
        model_for_scale(model, config, 8)
    with pytest.raises(ScaleError, match=r"scales \[2, 3, 4\]: choose one"):
        model_for_scale(model, config, None)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
@pytest.mark.parametrize("arch,scales", [("edsr", (3,)), ("mdsr", (2, 4))])
def test_save_load_roundtrip_with_config(tmp_path, suffix, arch, scales):
    config = tiny(arch, scales)
    model = build_model(config)
    path = save_model(model, tmp_path / f"m{suffix}", config)
    assert read_config(path) == config
    loaded, loaded_config = load_model(path)
    assert loaded_config == config
    x = np.random.uniform(0, 255, (1, 5, 6, 3)).astype("float32")
    a, b = model(x), loaded(x)
    if arch == "mdsr":
        for k in a:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=1e-5)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temp files left


def test_bad_weights_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no such weights file"):
        load_model(tmp_path / "missing.weights.h5")
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ModelFileError, match="junk.weights.h5"):
        load_model(junk)
    with pytest.raises(ModelFileError, match="expected a file ending"):
        load_model(tmp_path / "model.pt")
    # Config says 16 feats but weights hold 8: mismatch named with the file.
    config = tiny()
    path = save_model(build_model(config), tmp_path / "m.weights.h5", config)
    import h5py

    with h5py.File(path, "a") as f:
        f.attrs["edsr_tf_config"] = ModelConfig(
            arch="edsr", scales=(2,), n_resblocks=2, n_feats=16
        ).to_json()
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)


def test_unknown_preset_and_scale():
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.from_preset("srcnn", 2)
    with pytest.raises(ValueError, match="unsupported edsr scale 5"):
        ModelConfig.from_preset("edsr_baseline", 5)


def test_overridden_preset_is_not_claimed():
    assert ModelConfig.from_preset("edsr", 2).preset == "edsr"
    same = ModelConfig.from_preset("edsr_baseline", 2, n_feats=64)  # same as the preset
    assert same.preset == "edsr_baseline"
    small = ModelConfig.from_preset("edsr_baseline", 2, n_resblocks=4, n_feats=32)
    assert small.preset is None and (small.n_resblocks, small.n_feats) == (4, 32)


def test_resolve_scale_picks_or_checks_one_scale_without_flag_names():
    edsr, mdsr = tiny(scales=(3,)), tiny("mdsr", (2, 4))
    assert resolve_scale(edsr) == 3 and resolve_scale(edsr, "3") == 3 and resolve_scale(edsr, [3]) == 3
    assert resolve_scale(mdsr, 4) == 4 and resolve_scale(mdsr, np.int64(2)) == 2
    for config, requested, message in [
        (mdsr, None, r"model has scales \[2, 4\]: choose one of them"),
        (mdsr, 3, r"built for scale\(s\) \[2, 4\], not x3"),
        (mdsr, "2,4", r"expected one scale, got \[2, 4\]"),
        (edsr, "three", "scale must be an integer"),
        (edsr, 2.5, "scale must be an integer"),
        (edsr, True, "scale must be an integer"),
    ]:
        with pytest.raises(ScaleError, match=message) as err:
            resolve_scale(config, requested)
        assert isinstance(err.value, ValueError) and "--" not in str(err.value)
    with pytest.raises(ScaleError, match="choose one"):
        _ = mdsr.scale


def test_parse_scales_and_presets_take_ints_strings_and_lists():
    assert parse_scales(None) is None and parse_scales(()) is None and parse_scales("") is None
    assert parse_scales(2) == (2,) and parse_scales("2, 4") == (2, 4) and parse_scales(["2", 3]) == (2, 3)
    assert ModelConfig.from_preset("edsr_baseline", "3").scales == (3,)
    assert ModelConfig.from_preset("mdsr_baseline", ["2", "4"]).scales == (2, 4)
    assert ModelConfig.from_preset("mdsr_baseline").scales == (2, 3, 4)
    with pytest.raises(ScaleError, match="needs a scale"):
        ModelConfig.from_preset("edsr_baseline")
    with pytest.raises(ValueError, match="exactly one scale"):
        ModelConfig.from_preset("edsr_baseline", (2, 3))


def test_mdsr_applies_res_scale_like_edsr():
    """res_scale was recorded for MDSR but not applied: it now scales the body's residuals."""
    x = np.random.default_rng(0).uniform(0, 255, (1, 6, 5, 3)).astype("float32")
    outputs = {}
    for res_scale in (1.0, 0.1):
        config = ModelConfig("mdsr", (2, 3), n_resblocks=2, n_feats=8, res_scale=res_scale)
        model = build_model(config)
        if res_scale == 1.0:
            reference = [w.copy() for w in model.get_weights()]
        else:
            model.set_weights(reference)  # same weights: only res_scale differs
        assert trainable_params(model) == config.estimated_params()  # no weights added
        outputs[res_scale] = {k: np.asarray(v) for k, v in model(x).items()}
    for key in ("x2", "x3"):
        assert np.abs(outputs[1.0][key] - outputs[0.1][key]).max() > 1e-3, key
    # res_scale 0 makes each shared body block the identity: the same as zeroing its second conv
    # (a res_scale applied to the wrong tensor, the skip or the sum, would not be).
    from edsr_tf.models.mdsr import mdsr

    zero = mdsr((2, 3), n_resblocks=2, n_feats=8, res_scale=0.0)  # the builder: a config refuses 0
    zero.set_weights(reference)
    cut = build_model(ModelConfig("mdsr", (2, 3), n_resblocks=2, n_feats=8, res_scale=1.0))
    cut.set_weights(reference)
    rng = np.random.default_rng(1)
    for i in range(2):
        bias = rng.normal(0, 1, 8).astype("float32")  # nonzero, so that conv2's input is too
        for net in (zero, cut):
            net.get_layer(f"body_{i}_conv1").bias.assign(bias)
        conv2 = cut.get_layer(f"body_{i}_conv2")
        conv2.kernel.assign(np.zeros(conv2.kernel.shape, "float32"))  # the residual is 0 here
    for key in ("x2", "x3"):
        z, c = np.asarray(zero(x)[key]), np.asarray(cut(x)[key])
        np.testing.assert_allclose(z, c, rtol=1e-5, atol=1e-3, err_msg=key)
        assert np.abs(z - outputs[1.0][key]).max() > 1e-3, key
    # The default keeps the paper's MDSR (and every existing weights file) unchanged.
    assert ModelConfig.from_preset("mdsr_baseline").res_scale == 1.0


def test_a_load_failure_keeps_its_cause_and_is_not_called_another_model(tmp_path, monkeypatch):
    """An I/O error while Keras reads the weights is reported as such, with the cause chained."""
    import keras

    config = tiny()
    path = save_model(build_model(config), tmp_path / "m.weights.h5", config)

    def broken(self, *a, **k):
        raise OSError("Unable to synchronously read data (disk gone)")

    monkeypatch.setattr(keras.Model, "load_weights", broken)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    assert "cannot read the weights" in str(e.value) and "disk gone" in str(e.value)
    assert "another model" not in str(e.value) and isinstance(e.value.__cause__, OSError)
