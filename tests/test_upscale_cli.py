"""``python -m edsr_tf.upscale``: formats, bad inputs, weights errors, bicubic, tiling."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edsr_tf.images import read_image, write_image
from edsr_tf.imresize import bicubic_upscale
from edsr_tf.inference import upscale_array
from edsr_tf.metrics import quantize
from edsr_tf.models import ModelConfig, build_model, save_model
from edsr_tf.upscale import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random EDSR x2 and MDSR (x2, x3) weights files, plus the EDSR model."""
    d = tmp_path_factory.mktemp("weights")
    edsr_cfg = ModelConfig(arch="edsr", scales=(2,), n_resblocks=2, n_feats=8, res_scale=0.5)
    edsr = build_model(edsr_cfg)
    mdsr_cfg = ModelConfig(arch="mdsr", scales=(2, 3), n_resblocks=2, n_feats=8)
    mdsr = build_model(mdsr_cfg)
    return {
        "edsr": save_model(edsr, d / "tiny_x2.weights.h5", edsr_cfg),
        "edsr_model": edsr,
        "mdsr": save_model(mdsr, d / "tiny_mdsr.weights.h5", mdsr_cfg),
        "mdsr_model": mdsr,
    }


@pytest.fixture(scope="module")
def rgb(photo):
    return np.ascontiguousarray(photo[150:173, 200:231])  # 23x31


def test_all_formats_and_a_truncated_file(tmp_path, weights, rgb, capsys):
    src = tmp_path / "in"
    alpha = np.ascontiguousarray(rgb[..., 1][::-1])
    write_image(src / "rgb.png", rgb)
    write_image(src / "gray.png", rgb[..., 0])
    write_image(src / "rgba.png", rgb, alpha=alpha)
    write_image(src / "deep.png", rgb.astype(np.uint16) * 257)
    write_image(src / "photo.jpg", rgb)
    write_image(src / "photo2.bmp", rgb)
    write_image(src / "photo3.webp", rgb)
    full = (src / "rgb.png").read_bytes()
    (src / "broken.png").write_bytes(full[: len(full) // 2])
    out = tmp_path / "out"
    rc = main([str(src), "--weights", str(weights["edsr"]), "--out_dir", str(out), "--tile", "8",
               "--precision", "fp32"])  # compared with the fp32 library output
    err = capsys.readouterr().err
    assert rc == 1
    assert "broken.png" in err and "1 of 8" in err and "Traceback" not in err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{n}_x2.png" for n in ("rgb", "gray", "rgba", "deep", "photo", "photo2", "photo3")
    )  # every readable file was processed; no temp files left behind

    expected = quantize(upscale_array(weights["edsr_model"], 2, rgb.astype(np.float32)))
    got = read_image(out / "rgb_x2.png")
    assert got.rgb.shape == (46, 62, 3) and not got.grayscale
    np.testing.assert_array_equal(got.rgb, expected)  # tiled CLI output == untiled library output

    gray = read_image(out / "gray_x2.png")
    assert gray.grayscale and Image.open(out / "gray_x2.png").mode == "L"
    # Gray: the model on the gray replicated to RGB, its three outputs averaged.
    three = np.repeat(rgb[..., :1], 3, axis=-1).astype(np.float32)
    gray_sr = quantize(upscale_array(weights["edsr_model"], 2, three).mean(axis=-1, dtype=np.float32))
    np.testing.assert_array_equal(gray.channels(), gray_sr)

    rgba = read_image(out / "rgba_x2.png")
    np.testing.assert_array_equal(rgba.rgb, expected)
    np.testing.assert_array_equal(rgba.alpha, bicubic_upscale(alpha, 2))  # alpha: MATLAB bicubic

    deep = read_image(out / "deep_x2.png")
    assert deep.bit_depth == 16 and deep.rgb.dtype == np.uint16
    # Same picture as the 8-bit run, with sub-8-bit precision kept.
    assert np.abs(deep.rgb / 257.0 - expected).max() <= 0.5 + 1e-6
    assert (deep.rgb % 257 != 0).any()

    for name, source in (("photo_x2.png", "photo.jpg"), ("photo2_x2.png", "photo2.bmp"),
                         ("photo3_x2.png", "photo3.webp")):
        # Each format's decoded pixels went through the model (JPEG and WebP: lossy, hence decoded).
        decoded = read_image(src / source).rgb.astype(np.float32)
        np.testing.assert_array_equal(read_image(out / name).rgb,
                                      quantize(upscale_array(weights["edsr_model"], 2, decoded)), name)


def test_bicubic_baseline_needs_no_weights(tmp_path, rgb):
    write_image(tmp_path / "a.png", rgb)
    write_image(tmp_path / "d.png", rgb.astype(np.uint16) * 257)
    assert main([str(tmp_path / "a.png"), str(tmp_path / "d.png"), "--bicubic", "--scale", "3",
                 "--out_dir", str(tmp_path / "o"), "--quiet"]) == 0
    expected = bicubic_upscale(rgb, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "a_x3_bicubic.png").rgb, expected)
    deep = read_image(tmp_path / "o" / "d_x3_bicubic.png")
    assert deep.bit_depth == 16 and np.abs(deep.rgb / 257.0 - expected).max() <= 0.5 + 1e-6


def test_mdsr_weights_need_a_scale(tmp_path, weights, rgb, capsys):
    write_image(tmp_path / "a.png", rgb)
    out = tmp_path / "o"
    assert main([str(tmp_path / "a.png"), "--weights", str(weights["mdsr"]), "--out_dir", str(out)]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main([str(tmp_path / "a.png"), "--weights", str(weights["mdsr"]), "--scale", "3",
                 "--out_dir", str(out), "--self_ensemble", "--batch", "4", "--quiet", "--precision", "fp32"]) == 0
    # The x3 output of the MDSR, self-ensembled: the x2 one, or a plain pass, would differ.
    expected = upscale_array(weights["mdsr_model"], 3, rgb.astype(np.float32), self_ensemble=True)
    got = read_image(out / "a_x3.png").rgb
    assert got.shape == (69, 93, 3)
    np.testing.assert_array_equal(got, quantize(expected))
    plain = quantize(upscale_array(weights["mdsr_model"], 3, rgb.astype(np.float32)))
    assert np.abs(got.astype(int) - plain).max() > 1


@pytest.mark.parametrize("case", ["missing", "not_h5", "no_config", "wrong_scale", "both", "no_shipped_scale"])
def test_bad_weights_give_one_line(tmp_path, weights, rgb, capsys, case):
    write_image(tmp_path / "a.png", rgb)
    args = [str(tmp_path / "a.png"), "--out_dir", str(tmp_path / "o")]
    if case == "missing":
        args += ["--weights", str(tmp_path / "nope.weights.h5")]
    elif case == "not_h5":
        (tmp_path / "junk.weights.h5").write_text("junk")
        args += ["--weights", str(tmp_path / "junk.weights.h5")]
    elif case == "no_config":
        import h5py

        with h5py.File(tmp_path / "bare.weights.h5", "w") as f:
            f.create_dataset("x", data=[1])
        args += ["--weights", str(tmp_path / "bare.weights.h5")]
    elif case == "wrong_scale":
        args += ["--weights", str(weights["edsr"]), "--scale", "4"]
    elif case == "both":
        args += ["--weights", str(weights["edsr"]), "--bicubic", "--scale", "2"]
    elif case == "no_shipped_scale":  # no --weights: the shipped model for --scale, and none is shipped for x8
        args += ["--scale", "8"]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err
    if case in ("missing", "not_h5", "no_config"):
        assert str(tmp_path) in err  # names the file
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_same_stem_collision_and_keep_format(tmp_path, weights, rgb, capsys):
    write_image(tmp_path / "a.png", rgb)
    write_image(tmp_path / "a.jpg", rgb)
    out = tmp_path / "o"
    rc = main([str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), "--weights", str(weights["edsr"]),
               "--out_dir", str(out), "--quiet"])
    assert rc == 1 and "already taken" in capsys.readouterr().err
    rc = main([str(tmp_path / "a.jpg"), "--weights", str(weights["edsr"]), "--out_dir", str(out),
               "--format", "keep", "--quiet"])
    assert rc == 0 and Image.open(out / "a_x2.jpg").format == "JPEG"


def test_missing_input_and_bad_flags(tmp_path, weights, capsys):
    rc = main([str(tmp_path / "ghost.png"), "--weights", str(weights["edsr"]), "--out_dir", str(tmp_path)])
    assert rc == 1 and "ghost.png: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--bicubic", "--scale", "2", "--out_dir", str(tmp_path), "--tile", "-3"])
    assert e.value.code == 2
    assert "--tile" in capsys.readouterr().err


def test_cli_subprocess_smoke(tmp_path, weights, rgb):
    write_image(tmp_path / "a.png", rgb)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, "-m", "edsr_tf.upscale", str(tmp_path / "a.png"), "--weights",
         str(weights["edsr"]), "--out_dir", str(tmp_path / "o"), "--self_ensemble"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "a_x2.png" in r.stdout and read_image(tmp_path / "o" / "a_x2.png").rgb.shape == (46, 62, 3)
