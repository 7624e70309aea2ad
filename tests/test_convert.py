"""EDSR-PyTorch weight import (edsr_tf.torch_import) and its CLI (edsr_tf.convert): parity, errors.

The PyTorch side is tests/torch_reference.py: tiny EDSR/MDSR modules with the reference
implementation's module tree, so their state_dict keys are exactly those of official
checkpoints. torch is a test dependency (requirements-dev.txt): these tests skip
without it on a user's machine but fail under CI=true, where the parity test must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_guard import require_module

from edsr_tf import convert, torch_import
from edsr_tf.torch_import import ConversionError, ConversionWarning, convert_state_dict

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-3  # max abs difference on [0, 255] outputs (the bar)
BLOCKS, FEATS = 2, 8


@pytest.fixture(scope="module")
def ref():
    """(torch, tests/torch_reference module); skip without torch, except under CI=true."""
    torch = require_module("torch", "requirements-dev.txt; the parity tests need it")
    import torch_reference

    return torch, torch_reference


def torch_forward(torch, module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = module(torch.from_numpy(x).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).numpy()


def lr_batch(h: int, w: int, seed: int = 0, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)


def assert_parity(got, want):
    got = np.asarray(got)
    assert got.shape == want.shape
    # Outputs must be far from trivial, or a small tolerance would prove nothing.
    assert want.std() > 20, want.std()
    err = float(np.abs(got - want).max())
    assert err <= TOL, f"max abs diff {err:.2e} > {TOL}"


def convert_tiny(sd, preset="edsr_baseline", scale=2, **kw):
    return convert_state_dict(sd, preset, scale, n_resblocks=BLOCKS, n_feats=FEATS, **kw)


def numpy_sd(module) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def edsr_x2(ref):
    torch, tr = ref
    return tr.randomize(tr.EDSR(2, BLOCKS, FEATS), seed=1)


@pytest.fixture(scope="module")
def mdsr_234(ref):
    torch, tr = ref
    return tr.randomize(tr.MDSR((2, 3, 4), BLOCKS, FEATS), seed=2)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize(
    "preset,scale,res_scale,size",
    [
        ("edsr_baseline", 2, None, (7, 9)),
        ("edsr", 3, None, (5, 11)),  # the preset's res_scale 0.1 must carry over
        ("edsr_baseline", 4, 0.5, (9, 6)),
        ("edsr", 8, 0.5, (3, 5)),
    ],
)
def test_edsr_matches_pytorch(ref, preset, scale, res_scale, size):
    torch, tr = ref
    preset_res = {"edsr_baseline": 1.0, "edsr": 0.1}[preset]
    expected_res = preset_res if res_scale is None else res_scale
    tm = tr.randomize(tr.EDSR(scale, BLOCKS, FEATS, expected_res), seed=scale)
    model, config = convert_state_dict(
        tm.state_dict(), preset, scale, n_resblocks=BLOCKS, n_feats=FEATS, res_scale=res_scale
    )
    assert (config.arch, config.scales, config.res_scale) == ("edsr", (scale,), expected_res)
    x = lr_batch(*size, seed=scale)
    assert_parity(model(x), torch_forward(torch, tm, x))


def test_mdsr_matches_pytorch_all_scales(ref, mdsr_234):
    torch, tr = ref
    model, config = convert_state_dict(
        mdsr_234.state_dict(), "mdsr_baseline", n_resblocks=BLOCKS, n_feats=FEATS
    )
    assert config.scales == (2, 3, 4)
    x = lr_batch(7, 5, seed=3)
    out = model(x)
    for i, s in enumerate((2, 3, 4)):
        mdsr_234.set_scale(i)
        assert_parity(out[f"x{s}"], torch_forward(torch, mdsr_234, x))


def test_mdsr_scale_subset_uses_the_right_branch(ref, mdsr_234):
    # x3 is branch 1 of the checkpoint: a subset must not renumber branches.
    torch, tr = ref
    from edsr_tf.models import model_for_scale

    model, config = convert_state_dict(
        mdsr_234.state_dict(), "mdsr", [3], n_resblocks=BLOCKS, n_feats=FEATS
    )
    assert config.scales == (3,)
    x = lr_batch(6, 7, seed=4)
    mdsr_234.set_scale(1)
    assert_parity(model_for_scale(model, config, 3)(x), torch_forward(torch, mdsr_234, x))


def test_mdsr_scales_are_read_from_the_upsamplers(ref):
    # A checkpoint trained on (2, 4) only: branch 1 is x4, not x3.
    torch, tr = ref
    tm = tr.randomize(tr.MDSR((2, 4), BLOCKS, FEATS), seed=5)
    model, config = convert_state_dict(tm.state_dict(), "mdsr", n_resblocks=BLOCKS, n_feats=FEATS)
    assert config.scales == (2, 4)
    x = lr_batch(5, 5, seed=5, n=1)
    tm.set_scale(1)
    assert_parity(model(x)["x4"], torch_forward(torch, tm, x))
    with pytest.raises(ConversionError, match=r"scale=3: .*x2, x4"):
        convert_state_dict(tm.state_dict(), "mdsr", 3, n_resblocks=BLOCKS, n_feats=FEATS)


@pytest.mark.parametrize("preset,scale", [("edsr_baseline", 4), ("mdsr_baseline", None)])
def test_real_preset_sizes_convert_without_overrides(ref, preset, scale):
    # Official checkpoints have the preset's 16 blocks x 64 features: no flags needed.
    torch, tr = ref
    tm = tr.EDSR(scale, 16, 64) if preset.startswith("edsr") else tr.MDSR((2, 3, 4), 16, 64)
    tr.randomize(tm, seed=9, res_gain=0.2)
    model, config = convert_state_dict(tm.state_dict(), preset, scale)
    assert config.preset == preset and (config.n_resblocks, config.n_feats) == (16, 64)
    assert model.count_params() == sum(
        p.numel() for n, p in tm.named_parameters() if "mean" not in n
    )
    x = lr_batch(6, 7, seed=9, n=1)
    if scale is not None:
        assert_parity(model(x), torch_forward(torch, tm, x))
        return
    out = model(x)
    for i, s in enumerate((2, 3, 4)):
        tm.set_scale(i)
        assert_parity(out[f"x{s}"], torch_forward(torch, tm, x))


def test_rgb_range_1_checkpoint_is_rescaled_exactly(ref):
    # Trained with --rgb_range 1: the converted model still takes and gives [0, 255].
    torch, tr = ref
    tm = tr.randomize(tr.EDSR(2, BLOCKS, FEATS, rgb_range=1.0), seed=6)
    with torch.no_grad():  # biases of an rgb_range-1 model live on the [0, 1] scale
        for name, p in tm.named_parameters():
            if name.endswith("bias") and "mean" not in name:
                p.mul_(1 / 255)
    model, _ = convert_tiny(tm.state_dict())
    x = lr_batch(6, 5, seed=6)
    assert_parity(model(x), torch_forward(torch, tm, x / 255) * 255)


def test_parity_needs_the_pixel_shuffle_permutation(ref, edsr_x2, monkeypatch):
    # Shows the parity bar is sharp enough to catch a wrong channel order.
    torch, _ = ref
    monkeypatch.setattr(torch_import, "pixel_shuffle_to_depth_to_space", lambda c, r: np.arange(c))
    model, _ = convert_tiny(edsr_x2.state_dict())
    x = lr_batch(5, 6, seed=7)
    assert np.abs(np.asarray(model(x)) - torch_forward(torch, edsr_x2, x)).max() > 1.0


def test_pixel_shuffle_permutation_matches_depth_to_space(ref):
    torch, _ = ref
    import tensorflow as tf

    r, c = 3, 2
    t = np.random.default_rng(0).normal(size=(1, c * r * r, 2, 3)).astype(np.float32)  # NCHW
    want = torch.nn.functional.pixel_shuffle(torch.from_numpy(t), r).permute(0, 2, 3, 1).numpy()
    perm = torch_import.pixel_shuffle_to_depth_to_space(c * r * r, r)
    got = tf.nn.depth_to_space(t.transpose(0, 2, 3, 1)[..., perm], r).numpy()
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- CLI


def test_cli_end_to_end(ref, tmp_path):
    torch, tr = ref
    from edsr_tf.models import load_model

    tm = tr.randomize(tr.EDSR(3, BLOCKS, FEATS, 0.1), seed=8)
    ckpt = tmp_path / "edsr_x3.pt"
    wrapped = {f"module.{k}": v for k, v in tm.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, ckpt)
    out = tmp_path / "out" / "edsr_x3.weights.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "edsr_tf.convert", "--torch_checkpoint", str(ckpt),
         "--model", "edsr", "--scale=3", "--n_resblocks", str(BLOCKS),
         "--n_feats", str(FEATS), "--out_file", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind
    model, config = load_model(out)
    assert (config.arch, config.scales, config.n_resblocks, config.n_feats, config.res_scale) == (
        "edsr", (3,), BLOCKS, FEATS, 0.1
    )
    x = lr_batch(5, 7, seed=8)
    assert_parity(model(x), torch_forward(torch, tm, x))


def run_main(capsys, *argv) -> tuple[int, str]:
    rc = convert.main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def test_cli_unreadable_checkpoint_names_the_file(ref, tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    out = tmp_path / "o.weights.h5"
    rc, err = run_main(capsys, "--torch_checkpoint", str(bad), "--model", "edsr_baseline",
                       "--scale=2", "--out_file", str(out))
    assert rc == 1 and str(bad) in err and len(err.splitlines()) == 1, err  # failed work
    assert err.startswith("error: ")
    assert not out.exists()
    rc, err = run_main(capsys, "--torch_checkpoint", str(tmp_path / "nope.pt"), "--model", "edsr",
                       "--out_file", str(out))
    assert rc == 2 and "nope.pt" in err and "no such" in err, err  # a bad argument


def test_pickled_module_checkpoint_is_refused_safely(ref, edsr_x2, tmp_path):
    torch, _ = ref
    ckpt = tmp_path / "whole_module.pt"
    torch.save(edsr_x2, ckpt)  # a whole nn.Module: weights_only loading must refuse it
    with pytest.raises(ConversionError, match=r"whole_module\.pt: pickles .*EDSR.*state_dict\(\)"):
        torch_import.load_torch_state_dict(ckpt)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ConversionError, match=r"empty\.pt: not a PyTorch checkpoint"):
        torch_import.load_torch_state_dict(tmp_path / "empty.pt")


def test_cli_wrong_preset_is_one_clear_line(ref, edsr_x2, tmp_path, capsys):
    torch, _ = ref
    ckpt = tmp_path / "tiny.pt"
    torch.save(edsr_x2.state_dict(), ckpt)
    out = tmp_path / "o.weights.h5"
    rc, err = run_main(capsys, "--torch_checkpoint", str(ckpt), "--model", "edsr_baseline",
                       "--scale=2", "--out_file", str(out))
    assert rc == 2 and len(err.splitlines()) == 1, err  # the options do not fit the checkpoint
    assert "2 residual blocks and 8 features" in err, err
    assert "but --model edsr_baseline has 16 and 64" in err, err
    assert "--n_resblocks 2 --n_feats 8 (and --res_scale if not 1)" in err, err
    assert str(ckpt) in err
    assert not out.exists()
    rc, err = run_main(capsys, "--torch_checkpoint", str(ckpt), "--model", "edsr_baseline",
                       "--out_file", str(tmp_path / "o.h5"))
    assert rc == 2 and "--out_file" in err and ".weights.h5" in err, err


def test_cli_out_dir_and_deprecated_spellings(ref, mdsr_234, tmp_path, capsys):
    torch, _ = ref
    ckpt = tmp_path / "mdsr.pt"
    torch.save(mdsr_234.state_dict(), ckpt)
    # The old spellings still work, each with one deprecation note.
    rc = convert.main(["--torch-checkpoint", str(ckpt), "--model", "mdsr_baseline", "--scale", "2", "4",
                       "--n-resblocks", str(BLOCKS), "--n-feats", str(FEATS),
                       "--out", str(tmp_path / "old.weights.h5")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for old, new in (("--torch-checkpoint", "--torch_checkpoint"), ("--scale 2 4", "--scale=2,4"),
                     ("--n-resblocks", "--n_resblocks"), ("--n-feats", "--n_feats"), ("--out", "--out_file")):
        assert f"note: {old} is deprecated; use {new}\n" in captured.err, captured.err
    # --out_dir names the file after the model.
    rc = convert.main(["--torch_checkpoint", str(ckpt), "--model", "mdsr_baseline", "--scale=2,4",
                       "--n_resblocks", str(BLOCKS), "--n_feats", str(FEATS), "--out_dir", str(tmp_path / "d")])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == "", captured.err
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["mdsr_b2_f8_x2_x4.weights.h5"]
    assert f"wrote {tmp_path / 'd' / 'mdsr_b2_f8_x2_x4.weights.h5'}" in captured.out


def test_mdsr_with_res_scale_is_refused(ref, mdsr_234, tmp_path, capsys):
    # EDSR-PyTorch's MDSR has no residual scaling; edsr-tf's MDSR applies res_scale.
    torch, _ = ref
    with pytest.raises(ConversionError, match=r"res_scale=0.5 would change the outputs") as e:
        convert_state_dict(mdsr_234.state_dict(), "mdsr_baseline", n_resblocks=BLOCKS, n_feats=FEATS,
                           res_scale=0.5)
    assert e.value.option == "res_scale"
    _, config = convert_state_dict(mdsr_234.state_dict(), "mdsr_baseline", n_resblocks=BLOCKS,
                                   n_feats=FEATS, res_scale=1.0)
    assert config.res_scale == 1.0
    ckpt = tmp_path / "mdsr.pt"
    torch.save(mdsr_234.state_dict(), ckpt)
    rc, err = run_main(capsys, "--torch_checkpoint", str(ckpt), "--model", "mdsr_baseline",
                       "--n_resblocks", str(BLOCKS), "--n_feats", str(FEATS), "--res_scale", "0.5",
                       "--out_dir", str(tmp_path / "o"))
    assert rc == 2 and err.startswith("error: ") and "--res_scale 0.5 would change" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--model", "edsr", "--out_dir", "o"], "the following arguments are required: --torch_checkpoint"),
    (["--torch_checkpoint", "x.pt", "--model", "edsr"], "one of the arguments --out_dir --out_file"),
    (["--torch_checkpoint", "x.pt", "--model", "edsr", "--out_dir", "o", "--scale=two"], "--scale"),
    (["--torch_checkpoint", "x.pt", "--model", "edsr", "--out_dir", "o", "--n_feats", "0"], "--n_feats"),
    (["--torch_checkpoint", "x.pt", "--model", "edsr", "--out_dir", "o", "--bogus"], "--bogus"),
])
def test_cli_bad_arguments_exit_2_with_one_error_line(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        convert.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert expected in err, err
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- errors


def test_missing_key_is_named(edsr_x2):
    sd = numpy_sd(edsr_x2)
    del sd["body.1.body.2.bias"]
    with pytest.raises(ConversionError, match=r"missing key 'body\.1\.body\.2\.bias'"):
        convert_tiny(sd)


def test_wrong_shape_names_key_and_both_shapes(edsr_x2):
    sd = numpy_sd(edsr_x2)
    sd["body.0.body.2.weight"] = np.zeros((FEATS, FEATS, 5, 5), np.float32)
    with pytest.raises(ConversionError) as e:
        convert_tiny(sd)
    msg = str(e.value)
    assert "'body.0.body.2.weight'" in msg and "(8, 8, 5, 5)" in msg and "(8, 8, 3, 3)" in msg, msg


def test_feature_override_mismatch_names_key_and_shapes(edsr_x2):
    pattern = r"'head\.0\.weight'.*\(8, 3, 3, 3\).*\(16, 3, 3, 3\)"
    with pytest.raises(ConversionError, match=pattern):
        convert_state_dict(edsr_x2.state_dict(), "edsr_baseline", 2, n_resblocks=BLOCKS, n_feats=16)


def test_unexpected_key_is_named(edsr_x2):
    sd = numpy_sd(edsr_x2)
    sd["body.1.body.1.weight"] = np.zeros((3,), np.float32)
    with pytest.raises(ConversionError, match=r"unexpected key 'body\.1\.body\.1\.weight'"):
        convert_tiny(sd)


def test_scale_and_architecture_mismatch(edsr_x2, mdsr_234):
    with pytest.raises(ConversionError, match=r"scale=4: .*x2"):
        convert_tiny(edsr_x2.state_dict(), scale=4)
    with pytest.raises(ConversionError, match=r"MDSR.*preset=edsr_baseline is an EDSR preset"):
        convert_tiny(mdsr_234.state_dict())
    with pytest.raises(ConversionError, match=r"EDSR state_dict.*preset=mdsr"):
        convert_tiny(edsr_x2.state_dict(), preset="mdsr", scale=None)


def test_non_div2k_mean_shift_is_refused_unless_ignored(edsr_x2):
    sd = numpy_sd(edsr_x2)
    sd["sub_mean.bias"] = np.array([-100.0, -110.0, -120.0], np.float32)
    pattern = r"sub_mean is not the DIV2K mean shift.*ignore_mean_shift=True converts it anyway"
    with pytest.raises(ConversionError, match=pattern):
        convert_tiny(sd)
    with pytest.warns(ConversionWarning, match="sub_mean"):
        model, _ = convert_tiny(sd, ignore_mean_shift=True)
    assert model.output_shape == (None, None, None, 3)


def test_state_dict_wrappers_and_prefixes(edsr_x2):
    sd = numpy_sd(edsr_x2)
    for wrapped in (
        {"model": {f"module.{k}": v for k, v in sd.items()}},
        {"state_dict": {f"model.module.{k}": v for k, v in sd.items()}, "optimizer": {}},
    ):
        got = torch_import.normalize_state_dict(wrapped)
        assert sorted(got) == sorted(sd)
    with pytest.raises(ConversionError, match="empty"):
        torch_import.normalize_state_dict({})
    with pytest.raises(ConversionError, match=r"'epoch' is not a tensor \(int\)"):
        torch_import.normalize_state_dict({**sd, "epoch": 3})


def test_import_needs_neither_torch_nor_tensorflow(tmp_path):
    # sys.modules['torch'] = None makes `import torch` fail, as on a machine without it.
    fake = tmp_path / "x.pt"
    fake.write_bytes(b"\x80")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import edsr_tf.convert, edsr_tf.torch_import as c\n"
        "assert 'tensorflow' not in sys.modules, 'convert imports TensorFlow eagerly'\n"
        "try:\n"
        f"    c.load_torch_state_dict({str(fake)!r})\n"
        "except c.ConversionError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "needs torch" in proc.stdout and "x.pt" in proc.stdout, proc.stdout


@pytest.mark.parametrize("kwargs, option, message", [
    ({"n_resblocks": 2000, "n_feats": 8}, "n_resblocks", r"n_resblocks must be in \[0, 1000\]"),
    ({"n_resblocks": 2, "n_feats": 5000}, "n_feats", r"n_feats must be in \[1, 1024\]"),
    ({"n_resblocks": 2.5, "n_feats": 8}, "n_resblocks", r"n_resblocks must be an integer, got 2\.5"),
    ({"n_resblocks": 2, "n_feats": 8, "res_scale": float("nan")}, "res_scale", "res_scale must be"),
    ({"n_resblocks": 900, "n_feats": 1024}, "n_resblocks", r"M parameters, over the 1,000 M limit"),
    ({"n_resblocks": 2, "n_feats": 8, "scale": "2.5"}, "scale", "scale must be an integer"),
    ({"n_resblocks": 2, "n_feats": 8, "scale": 5}, "scale", r"scale=5: the checkpoint's upsampler is for x2"),
])
def test_resolve_config_names_the_option_the_model_config_refuses(kwargs, option, message):
    """The option at fault comes from the model config's one check (its fields), not from
    the wording of its message."""
    from edsr_tf.torch_import import CheckpointLayout, resolve_config

    layout = CheckpointLayout("edsr", kwargs["n_resblocks"], kwargs["n_feats"], (2,))
    with pytest.raises(ConversionError, match=message) as e:
        resolve_config(layout, "edsr_baseline", **kwargs)
    assert e.value.option == option
