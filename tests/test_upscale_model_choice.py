"""upscale without --weights: JPEG inputs get the JPEG-robust shipped model, lossless ones the
bicubic-trained model; --input_type overrides; the line naming the model says why."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from edsr_tf import cli_args, pretrained
from edsr_tf import upscale as upscale_mod
from edsr_tf.upscale import choose_shipped_model


@pytest.fixture
def shipped_with_jpeg(tmp_path, monkeypatch):
    """A copy of the shipped folder whose manifest also lists edsr_baseline_x2_jpeg (the x2
    file under another name: which model ran is read from the loads, not the pixels)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    doc = json.loads((pretrained.PACKAGE_DIR / pretrained.MANIFEST).read_text())
    for name, entry in doc["models"].items():
        shutil.copyfile(pretrained.PACKAGE_DIR / entry["file"], pkg / entry["file"])
    jpeg = dict(doc["models"]["edsr_baseline_x2"], file="edsr_baseline_x2_jpeg.weights.h5")
    jpeg.pop("int8_tflite", None)
    doc["models"]["edsr_baseline_x2_jpeg"] = jpeg
    doc["models"].pop("edsr_baseline_x4_jpeg", None)  # the scale without one, whatever ships later
    shutil.copyfile(pkg / "edsr_baseline_x2.weights.h5", pkg / jpeg["file"])
    (pkg / pretrained.MANIFEST).write_text(json.dumps(doc))
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", pkg)
    return pkg


def _photo(path, quality=None):
    rng = np.random.default_rng(0)
    img = np.clip(np.cumsum(rng.normal(size=(24, 28, 3)) * 9, 1) + 128, 0, 255).astype(np.uint8)
    if quality is None:
        Image.fromarray(img).save(path)
    else:
        Image.fromarray(img).save(path, quality=quality)
    return path


def test_choice_by_input_kind(tmp_path, shipped_with_jpeg):
    q75, q95, png = (_photo(tmp_path / "a.jpg", 75), _photo(tmp_path / "b.jpg", 95), _photo(tmp_path / "c.png"))
    name, why = choose_shipped_model(q75, 2)
    assert name == "edsr_baseline_x2_jpeg" and "quality 75" in why
    name, why = choose_shipped_model(q95, 2)
    assert name == "edsr_baseline_x2" and "quality 95" in why
    assert choose_shipped_model(png, 2) == ("edsr_baseline_x2", "not a JPEG")
    assert choose_shipped_model(q75, 2, "clean")[0] == "edsr_baseline_x2"
    assert choose_shipped_model(png, 2, "jpeg")[0] == "edsr_baseline_x2_jpeg"
    # no JPEG-robust x4 in this manifest: the bicubic-trained x4, and the reason says so
    name, why = choose_shipped_model(q75, 4)
    assert name == "edsr_baseline_x4" and "no JPEG-robust x4" in why


def _run(argv, monkeypatch):
    loaded = []
    real = cli_args.CommandLine.load_runner

    def spy(self, weights, scale):
        loaded.append(weights)
        return real(self, weights, scale)

    monkeypatch.setattr(cli_args.CommandLine, "load_runner", spy)
    return upscale_mod.main(argv), loaded


def test_cli_jpeg_gets_the_robust_model_and_says_so(tmp_path, shipped_with_jpeg, monkeypatch, capsys):
    src = _photo(tmp_path / "photo.jpg", 75)
    rc, loaded = _run([str(src), "--out_dir", str(tmp_path / "out")], monkeypatch)
    err = capsys.readouterr().err
    assert rc == 0 and loaded == ["edsr_baseline_x2_jpeg"]
    assert "using the shipped model edsr_baseline_x2_jpeg" in err and "estimated quality 75" in err
    assert (tmp_path / "out" / "photo_x2.png").is_file()


def test_cli_png_gets_the_bicubic_model(tmp_path, shipped_with_jpeg, monkeypatch, capsys):
    src = _photo(tmp_path / "photo.png")
    rc, loaded = _run([str(src), "--out_dir", str(tmp_path / "out")], monkeypatch)
    err = capsys.readouterr().err
    assert rc == 0 and loaded == ["edsr_baseline_x2"]
    assert "using the shipped model edsr_baseline_x2 " in err and "not a JPEG" in err


def test_cli_override_and_mixed_inputs(tmp_path, shipped_with_jpeg, monkeypatch, capsys):
    jpg, png = _photo(tmp_path / "a.jpg", 60), _photo(tmp_path / "b.png")
    rc, loaded = _run([str(jpg), str(png), "--out_dir", str(tmp_path / "o1"), "--input_type", "clean"],
                      monkeypatch)
    assert rc == 0 and loaded == ["edsr_baseline_x2"]
    rc, loaded = _run([str(jpg), str(png), "--out_dir", str(tmp_path / "o2")], monkeypatch)
    assert rc == 0 and sorted(loaded) == ["edsr_baseline_x2", "edsr_baseline_x2_jpeg"]
    capsys.readouterr()


def test_input_type_with_weights_is_a_usage_error(tmp_path, capsys):
    src = _photo(tmp_path / "photo.png")
    rc = upscale_mod.main([str(src), "--weights", "edsr_baseline_x2", "--input_type", "jpeg",
                           "--out_dir", str(tmp_path)])
    assert rc == 2 and "--input_type" in capsys.readouterr().err
