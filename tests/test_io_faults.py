"""Faults at the edges of the CLIs: overwriting inputs, decompression bombs, LR files of the
wrong size, hostile model configs, unwritable outputs, noisy loads, slow tiles, GIFs."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from edsr_tf.images import ImageReadError, read_image, write_image
from edsr_tf.models import ModelConfig, build_model, save_model

REPO = Path(__file__).resolve().parents[1]
TINY = dict(arch="edsr", scales=(2,), n_resblocks=1, n_feats=8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    config = ModelConfig(**TINY)
    return save_model(build_model(config), tmp_path_factory.mktemp("w") / "tiny.weights.h5", config)


def noise(h, w, c=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 65536
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, hi, shape, dtype=dtype)


def bomb_png(path: Path, width: int, height: int, bits: int = 8) -> Path:
    """A tiny PNG whose header claims width x height (what a decompression bomb looks like
    before decoding; its data would not even fill the image)."""
    small = io.BytesIO()
    data = noise(4, 4, dtype=np.uint16 if bits == 16 else np.uint8)
    if bits == 16:
        import tensorflow as tf

        small.write(tf.io.encode_png(data).numpy())
    else:
        Image.fromarray(data).save(small, "PNG")
    raw = bytearray(small.getvalue())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    return path


def upscale(*args):
    from edsr_tf.upscale import main

    return main([str(a) for a in args])


def evaluate(*args):
    from edsr_tf.evaluate import main

    return main([str(a) for a in args])


# ----------------------------------------------------------------------------- 2: never over an input

def test_upscale_into_its_own_folder_never_overwrites_an_input(tmp_path, weights, capsys):
    write_image(tmp_path / "photo.png", noise(10, 12, seed=1))
    write_image(tmp_path / "photo_x2.png", noise(7, 9, seed=2))
    before = (tmp_path / "photo_x2.png").read_bytes()
    rc = upscale(tmp_path, "--weights", weights, "--out_dir", tmp_path, "--quiet")
    err = capsys.readouterr().err
    assert rc == 1
    assert "photo.png: output" in err and "would overwrite the input" in err
    assert (tmp_path / "photo_x2.png").read_bytes() == before  # the input is untouched
    # photo_x2.png itself is a legitimate input: upscaled from the original, not from an output.
    assert read_image(tmp_path / "photo_x2_x2.png").rgb.shape == (14, 18, 3)


def test_clashes_are_refused_before_any_model_work(tmp_path, weights, capsys, monkeypatch):
    import edsr_tf.models

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded although nothing can be written")

    monkeypatch.setattr(edsr_tf.models, "load_model", no_model)
    write_image(tmp_path / "a.png", noise(6, 6))
    write_image(tmp_path / "a.bmp", noise(6, 6))
    rc = upscale(tmp_path / "a.png", tmp_path / "a.bmp", "--weights", weights, "--out_dir", tmp_path / "o")
    err = capsys.readouterr().err
    assert rc == 1 and err.count("already taken") == 2  # both refused: none wins by order
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_output_that_is_an_input_through_a_hard_link(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", noise(5, 5))
    write_image(src / "b.png", noise(5, 5, seed=3))
    out.mkdir()
    os.link(src / "b.png", out / "a_x2_bicubic.png")
    before = (src / "b.png").read_bytes()
    rc = upscale(src, "--bicubic", "--scale", "2", "--out_dir", out, "--overwrite", "--quiet")
    assert rc == 1 and "would overwrite the input" in capsys.readouterr().err
    assert (src / "b.png").read_bytes() == before
    assert read_image(out / "b_x2_bicubic.png").rgb.shape == (10, 10, 3)


def test_existing_output_is_skipped_unless_overwrite(tmp_path, capsys):
    write_image(tmp_path / "a.png", noise(5, 6))
    out = tmp_path / "o"
    old = write_image(out / "a_x2_bicubic.png", noise(3, 3, seed=9)).read_bytes()
    assert upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--out_dir", out, "--quiet") == 0
    assert "exists, skipped (--overwrite replaces it)" in capsys.readouterr().err
    assert (out / "a_x2_bicubic.png").read_bytes() == old
    assert upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--out_dir", out, "--overwrite",
                   "--quiet") == 0
    assert read_image(out / "a_x2_bicubic.png").rgb.shape == (10, 12, 3)


# ----------------------------------------------------------------------------- 5: decompression bombs

@pytest.mark.parametrize("bits", [8, 16])
def test_bomb_header_refused_before_decoding(tmp_path, bits):
    from edsr_tf.images import ImageTooLargeError, probe_image

    bomb = bomb_png(tmp_path / f"bomb{bits}.png", 12000, 12000, bits)
    message = rf"bomb{bits}\.png: 12000x12000 = 144 Mpx is over the 100 Mpx limit"
    with pytest.raises(ImageTooLargeError, match=message):
        read_image(bomb)
    with pytest.raises(ImageTooLargeError):
        probe_image(bomb)
    # Limit lifted (0): the header is accepted and decoding fails on the missing data instead
    # (a smaller fake, so that the attempt allocates little).
    small = bomb_png(tmp_path / f"fake{bits}.png", 300, 300, bits)
    with pytest.raises(ImageTooLargeError):
        read_image(small, max_pixels=300 * 300 - 1)
    with pytest.raises(ImageReadError) as e:
        read_image(small, max_pixels=0)
    assert not isinstance(e.value, ImageTooLargeError)


@pytest.mark.parametrize("fmt, kwargs", [("PNG", {}), ("JPEG", {}), ("BMP", {}),
                                         ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80})])
def test_one_limit_for_every_format(tmp_path, fmt, kwargs):
    from edsr_tf.images import ImageTooLargeError

    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(noise(30, 41)).save(path, fmt, **kwargs)
    assert read_image(path, max_pixels=30 * 41).rgb.shape == (30, 41, 3)
    with pytest.raises(ImageTooLargeError, match=r"41x30 = 0\.0012 Mpx"):
        read_image(path, max_pixels=30 * 41 - 1)


def test_our_limit_replaces_pillows(tmp_path, monkeypatch):
    """Pillow's global limit neither warns nor refuses under ours, and is left as it was."""
    from PIL import Image as PILImage

    path = write_image(tmp_path / "a.png", noise(40, 40))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).rgb.shape == (40, 40, 3)
    assert PILImage.MAX_IMAGE_PIXELS == 500


@pytest.mark.parametrize("fmt, mode, kwargs", [
    ("PNG", "RGB", {}), ("PNG", "LA", {}), ("JPEG", "L", {"progressive": True}), ("BMP", "RGB", {}),
    ("WEBP", "RGBA", {"quality": 70}), ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGB", {}),
    ("GIF", "RGB", {}),
])
def test_header_size_in_python_and_in_graph(fmt, mode, kwargs):
    import tensorflow as tf

    from edsr_tf.images import HEADER_FORMATS, header_size, header_size_tf

    buf = io.BytesIO()
    Image.fromarray(noise(21, 37)).convert(mode).save(buf, fmt, **kwargs)
    assert header_size(buf.getvalue()) == (fmt, 37, 21)
    code, w, h = (int(v) for v in header_size_tf(tf.constant(buf.getvalue())))
    assert (HEADER_FORMATS[code], w, h) == (fmt, 37, 21)


def test_header_size_in_graph_of_other_bytes():
    """Bytes of no known format: code 0 and no size, in-graph as :func:`header_size`'s None."""
    import tensorflow as tf

    from edsr_tf.images import header_size, header_size_tf

    for data in (b"", b"\x80", b"II*\0" + bytes(40), b"RIFF\0\0\0\0WAVE" + bytes(20)):
        assert header_size(data) is None
        assert tuple(int(v) for v in header_size_tf(tf.constant(data))) == (0, 0, 0)


def test_data_cache_decoder_has_the_same_limit(tmp_path):
    import tensorflow as tf

    from edsr_tf.data.cache import decode_image_file, decode_rgb
    from edsr_tf.data.sources import DataError

    bomb = bomb_png(tmp_path / "bomb.png", 12000, 12000)
    with pytest.raises(DataError, match=r"bomb\.png: 12000x12000 = 144 Mpx is over the 100 Mpx limit"):
        decode_image_file(bomb)
    ok = write_image(tmp_path / "ok.png", noise(20, 30))
    with pytest.raises(DataError, match="ok.png"):
        decode_image_file(ok, max_pixels=599)
    assert decode_image_file(ok, max_pixels=600).shape == (20, 30, 3)
    # In-graph (the uncached tf.data path): refused before decoding, too.
    ds = tf.data.Dataset.from_tensor_slices([str(bomb)]).map(lambda p: decode_rgb(tf.io.read_file(p)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
        next(iter(ds))


def test_max_pixels_flag(tmp_path, shared_data, capsys):
    write_image(tmp_path / "a.png", noise(40, 40))
    rc = upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--out_dir", tmp_path / "o",
                 "--max_pixels", "1000")
    err = capsys.readouterr().err
    assert rc == 1 and "a.png: 40x40" in err and "limit" in err
    assert upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--out_dir", tmp_path / "o",
                   "--max_pixels", "1600", "--quiet") == 0
    with pytest.raises(SystemExit) as e:
        upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--max_pixels", "-1")
    assert e.value.code == 2 and "--max_pixels" in capsys.readouterr().err
    from edsr_tf.images import DEFAULT_MAX_PIXELS
    from edsr_tf.upscale import build_parser

    assert build_parser().parse_args(["x"]).max_pixels == DEFAULT_MAX_PIXELS == 100_000_000
    assert build_parser().parse_args(["x", "--max_pixels", "2.5M"]).max_pixels == 2_500_000
    rc = evaluate("--bicubic", "--scale", "2", "--dataset_dir", shared_data / "edsr_benchmark",
                  "--eval_sets", "Set5", "--max_pixels", "50000", "--quiet")
    err = capsys.readouterr()
    assert rc == 1 and "over the 0.05 Mpx limit" in err.err and "|" not in err.out


# ----------------------------------------------------------------------------- 7: LR sizes

def _edsr_set(root: Path, hr_size=(25, 31), lr_size=(12, 15), lr_name="ax2.png"):
    write_image(root / "Set5/HR/a.png", noise(*hr_size))
    write_image(root / "Set5/LR_bicubic/X2" / lr_name, noise(*lr_size, seed=4))


@pytest.mark.parametrize("lr_size, why", [((8, 10), "x3 LR in X2"), ((6, 6), "a crop"),
                                          ((13, 15), "one row too many")])
def test_lr_of_the_wrong_size_is_an_error(tmp_path, capsys, lr_size, why):
    _edsr_set(tmp_path, lr_size=lr_size)
    rc = evaluate("--bicubic", "--scale", "2", "--dataset_dir", tmp_path, "--eval_sets", "Set5",
                  "--quiet")
    out, err = capsys.readouterr()
    assert rc == 1, why
    assert (f"ax2.png: LR is {lr_size[1]}x{lr_size[0]}, expected 15x12 = HR a.png 31x25 / 2" in err)
    assert "|" not in out  # nothing scored

    from edsr_tf.evaluation import EvaluationError, load_pair

    with pytest.raises(EvaluationError, match="expected 15x12"):
        load_pair(tmp_path / "Set5/HR/a.png", tmp_path / "Set5/LR_bicubic/X2/ax2.png", 2)


def test_misnamed_lr_files_are_reported(tmp_path, capsys):
    _edsr_set(tmp_path, lr_name="a_x2.png")
    rc = evaluate("--bicubic", "--scale", "2", "--dataset_dir", tmp_path, "--eval_sets", "Set5",
                  "--quiet")
    err = capsys.readouterr().err
    assert rc == 1 and "a_x2.png: LR file matches no HR image of Set5 (expected <name>x2.png" in err
    # The per-scale layout: an _LR without its _HR.
    srf = tmp_path / "b" / "Set14" / "image_SRF_2"
    write_image(srf / "img_001_SRF_2_HR.png", noise(20, 20))
    write_image(srf / "img_001_SRF_2_LR.png", noise(10, 10))
    write_image(srf / "img_002_SRF_2_LR.png", noise(10, 10))
    rc = evaluate("--bicubic", "--scale", "2", "--dataset_dir", tmp_path / "b", "--eval_sets", "Set14",
                  "--quiet")
    err = capsys.readouterr().err
    assert rc == 1 and "img_002_SRF_2_LR.png: LR file matches no HR image" in err


def test_real_sets_satisfy_the_lr_size_rule(shared_data):
    from edsr_tf.benchmark_sets import find_dataset, pair_problems

    checked = 0
    for layout in ("benchmark", "edsr_benchmark"):
        for name in ("Set5", "Set14"):
            for scale in (2, 3, 4):
                bset = find_dataset(shared_data / layout, name, scale)
                assert pair_problems(bset) == [], (layout, name, scale)
                assert bset.missing_lr == 0
                checked += len(bset.pairs)
    div2k = find_dataset(shared_data, "DIV2K", 2)
    assert div2k.pairs[0].lr is not None and pair_problems(div2k) == []
    assert checked == 2 * 3 * (5 + 14)


# ----------------------------------------------------------------------------- 8: configs, outputs, loads

@pytest.mark.parametrize("field, value, message", [
    ("n_feats", 30000, r"n_feats must be in \[1, 1024\]"),
    ("n_resblocks", 10**6, r"n_resblocks must be in \[0, 1000\]"),
    ("n_feats", 8.5, "n_feats must be an integer"),
    ("res_scale", float("nan"), "res_scale must be a finite number"),
    ("scales", [], "scales is empty"),
])
def test_config_bounds(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**TINY, field: value})
    with pytest.raises(ValueError, match="would have about"):
        ModelConfig(arch="edsr", scales=(4,), n_resblocks=1000, n_feats=1024)
    for preset in ("edsr", "mdsr"):  # the paper's networks, exactly as counted by Keras (README)
        assert ModelConfig.from_preset(preset, 2 if preset == "edsr" else None).estimated_params() \
            == {"edsr": 40_729_603, "mdsr": 7_953_987}[preset]


def test_hostile_embedded_config_is_refused_before_building(tmp_path, weights, capsys, monkeypatch):
    import edsr_tf.models.io as io_mod
    from edsr_tf.models import load_model
    from edsr_tf.models.io import ModelFileError

    path = tmp_path / "huge.weights.h5"
    path.write_bytes(Path(weights).read_bytes())
    with h5py.File(path, "a") as f:
        f.attrs["edsr_tf_config"] = json.dumps({**TINY, "scales": [2], "n_feats": 30000,
                                                "res_scale": 1.0, "preset": None})

    def no_build(_config):
        raise AssertionError("built a model from a hostile config")

    monkeypatch.setattr(io_mod, "build_model", no_build)
    with pytest.raises(ModelFileError, match=r"huge.weights.h5: invalid embedded model config \(n_feats"):
        load_model(path)
    write_image(tmp_path / "a.png", noise(5, 5))
    rc = upscale(tmp_path / "a.png", "--weights", path, "--out_dir", tmp_path / "o")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "n_feats must be in [1, 1024]" in err


def test_weights_of_another_model_give_one_line_and_no_warnings(tmp_path, weights, capsys):
    from edsr_tf.models import load_model
    from edsr_tf.models.io import ModelFileError

    other = ModelConfig(arch="edsr", scales=(2,), n_resblocks=3, n_feats=16)
    path = tmp_path / "other.weights.h5"
    path.write_bytes(Path(weights).read_bytes())
    with h5py.File(path, "a") as f:
        f.attrs["edsr_tf_config"] = other.to_json()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelFileError) as e:
            load_model(path)
    assert [str(w.message) for w in caught] == []
    msg = str(e.value)
    assert "\n" not in msg and "do not fit the embedded config" in msg and len(msg) < 400
    write_image(tmp_path / "a.png", noise(5, 5))
    rc = upscale(tmp_path / "a.png", "--weights", path, "--out_dir", tmp_path / "o")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "other.weights.h5" in err


def test_float16_weights_still_load_silently(tmp_path):
    from edsr_tf.models import load_model

    config = ModelConfig(arch="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8)
    model = build_model(config)
    path = save_model(model, tmp_path / "m.weights.h5", config)

    with h5py.File(path, "a") as f:  # as benchmarks/ship_pretrained.py stores shipped models
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                     and o.dtype == np.float32 else None)
        for name in names:
            data = f[name][()].astype(np.float16)
            del f[name]
            f.create_dataset(name, data=data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, _ = load_model(path)
    assert [str(w.message) for w in caught] == []
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("flag", ["--json", "--save_dir"])
def test_unwritable_evaluate_outputs_fail_first(tmp_path, shared_data, capsys, flag):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = evaluate("--bicubic", "--scale", "2", "--dataset_dir", shared_data / "edsr_benchmark",
                  "--eval_sets", "Set5", flag, blocker / "sub" / "r.json", "--quiet")
    out, err = capsys.readouterr()
    assert rc == 2 and err.strip() == f"error: {flag} {blocker}/sub/r.json: {blocker} is a file, not a folder"
    assert out == ""  # checked before evaluating anything
    rc = upscale(tmp_path / "a.png", "--bicubic", "--scale", "2", "--out_dir", blocker / "o")
    assert rc == 2 and "is a file, not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- friction

@pytest.mark.parametrize("module", ["upscale", "evaluate", "convert"])
def test_help_and_import_leave_tensorflow_and_environ_alone(module):
    code = (
        "import os, runpy, sys\n"
        "os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)\n"
        f"import edsr_tf.{module}\n"
        "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ, 'set at import time'\n"
        f"sys.argv = ['{module}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('edsr_tf.{module}', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'no TF')\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    # --help stops while the flags are parsed: TensorFlow's logging is set up (--verbose or not)
    # only after that, before any TensorFlow import (tests/test_tf_startup.py)
    assert lines[-2:] == ["no TF", "None"]
    assert "usage:" in r.stdout


def test_convert_preset_names_match_the_presets():
    from edsr_tf.convert import PRESET_NAMES
    from edsr_tf.models import PRESETS

    assert sorted(PRESET_NAMES) == sorted(PRESETS)


def test_gif_is_refused_named_and_skipped_with_a_notice_in_a_folder(tmp_path, capsys):
    src = tmp_path / "in"
    write_image(src / "a.png", noise(5, 5))
    Image.fromarray(noise(5, 5)).save(src / "anim.gif")
    frames = [Image.fromarray(noise(5, 5, seed=s)) for s in range(2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    rc = upscale(src, "--bicubic", "--scale", "2", "--out_dir", tmp_path / "o", "--quiet")
    err = capsys.readouterr().err
    assert rc == 0 and "skipped 1 file(s)" in err and "anim.gif" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_x2_bicubic.png"]
    rc = upscale(src / "anim.gif", tmp_path / "anim.png", "--bicubic", "--scale", "2",
                 "--out_dir", tmp_path / "o2", "--quiet")
    err = capsys.readouterr().err
    assert rc == 1
    assert "anim.gif: GIF images are not supported (expected PNG, JPEG, BMP or WebP)" in err
    assert "anim.png: animated PNG (2 frames) is not supported" in err


def test_tile_smaller_than_the_overlap_warns(tmp_path, weights, capsys):
    write_image(tmp_path / "a.png", noise(6, 6))
    rc = upscale(tmp_path / "a.png", "--weights", weights, "--out_dir", tmp_path / "o", "--tile", "1",
                 "--quiet")
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: --tile 1 is smaller than the tile overlap (6 px per side)" in err
    assert "169x the pixels it keeps" in err
    rc = upscale(tmp_path / "a.png", "--weights", weights, "--out_dir", tmp_path / "o2", "--quiet")
    assert rc == 0 and "warning" not in capsys.readouterr().err


def test_pid_alive_of_this_a_dead_and_an_impossible_process():
    """The one owner check of job locks and export staging folders (edsr_tf.fileio.pid_alive)."""
    from edsr_tf.fileio import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its pid names no process (until reused, which a test cannot wait for)
    assert pid_alive(os.getpid()) and not pid_alive(proc.pid)
    assert not pid_alive(0) and not pid_alive(-1) and not pid_alive(2**80)


def test_first_line_of_an_error():
    """The one 'first line of an exception' of every one-line message (edsr_tf.errors.first_line)."""
    from edsr_tf.errors import first_line

    assert first_line(ValueError("\n  bad value  \nmore detail")) == "bad value"
    assert first_line(OSError("disk\nfull"), typed=True) == "OSError: disk"
    assert first_line(RuntimeError("")) == first_line(RuntimeError(""), typed=True) == "RuntimeError"
    graph = ("Graph execution error:\n\nDetected at node x defined at:\n<stack traces unavailable>\n"
             "{{function_node f}} Invalid PNG data\n")
    assert first_line(RuntimeError(graph)) == "{{function_node f}} Invalid PNG data"
    assert first_line(RuntimeError(graph + "assertion failed: [too large]")) == "assertion failed: [too large]"
