"""The models shipped in edsr_tf/pretrained: manifest, use by name, quality, tamper refusal."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from edsr_tf import pretrained
from edsr_tf.models import load_model, read_config
from edsr_tf.models.io import ModelFileError

SHIPPED = pretrained.list_models()
NAMES = [m.name for m in SHIPPED]
REQUIRED = ("edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4")


def test_the_three_edsr_baseline_scales_are_shipped():
    assert set(REQUIRED) <= set(NAMES), f"shipped: {NAMES}"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_file_matches_manifest_and_loads_by_name(name):
    entry = pretrained.load_manifest()[name]
    path = pretrained.verified_path(entry)  # size + SHA-256 against the manifest
    assert path.parent == pretrained.PACKAGE_DIR
    config = read_config(name)
    assert (config.arch, config.preset, list(config.scales)) == (entry.arch, entry.preset, list(entry.scales))
    with h5py.File(path, "r") as f:
        dtypes = set()
        f.visititems(lambda _n, o: dtypes.add(str(o.dtype)) if isinstance(o, h5py.Dataset) else None)
    assert dtypes == {entry.card["stored_dtype"]}
    model, _ = load_model(name)
    assert model.count_params() > 1_000_000
    assert all(w.dtype == "float32" for w in model.weights)
    card = entry.card
    for key in ("data", "steps", "schedule", "precision", "wall_hours", "hardware", "results",
                "tflite_psnr_drop_db"):
        assert key in card, f"{name}: model card lacks {key!r}"
    sets = {(r["set"], r["self_ensemble"]) for r in card["results"]}
    assert sets == {("Set5", False), ("Set5", True), ("Set14", False), ("Set14", True)}


def _tampered_copy(tmp_path, name: str, mutate) -> None:
    for m in SHIPPED:
        shutil.copyfile(m.path, tmp_path / m.file)
    shutil.copyfile(pretrained.PACKAGE_DIR / pretrained.MANIFEST, tmp_path / pretrained.MANIFEST)
    mutate(tmp_path / pretrained.load_manifest(tmp_path)[name].file)


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_or_missing_file_is_refused(tmp_path, monkeypatch, capsys):
    name = "edsr_baseline_x2"
    _tampered_copy(tmp_path, name, _flip_byte)
    with pytest.raises(pretrained.PretrainedError, match=r"SHA-256 of .*edsr_baseline_x2\.weights\.h5"):
        pretrained.resolve(name, tmp_path)
    # Through the CLI a user runs: a clear one-line error naming the file, exit 2, nothing written.
    from edsr_tf.upscale import main

    monkeypatch.setattr(pretrained, "PACKAGE_DIR", tmp_path)
    img = tmp_path / "in.png"
    from edsr_tf.images import write_image

    write_image(img, np.full((8, 8, 3), 128, np.uint8))
    rc = main([str(img), "--weights", name, "--out_dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "edsr_baseline_x2.weights.h5" in err and "damaged or was replaced" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / f"{name}.weights.h5").write_bytes(b"")
    with pytest.raises(ModelFileError, match="has 0 bytes"):
        load_model(name)
    (tmp_path / f"{name}.weights.h5").unlink()
    with pytest.raises(ModelFileError, match="is missing"):
        load_model(name)


def test_unknown_name_lists_the_shipped_ones(tmp_path, capsys):
    from edsr_tf.evaluate import main

    rc = main(["--weights", "edsr_baseline_x5", "--dataset_dir", str(tmp_path), "--eval_sets", "Set5"])
    err = capsys.readouterr().err
    assert rc == 2 and "neither a weights file nor a shipped model" in err and "edsr_baseline_x4" in err


def test_list_models(capsys):
    from edsr_tf.upscale import main

    with pytest.raises(SystemExit) as exc:
        main(["--list_models"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for name in REQUIRED:
        assert name in out and "Set5" in out


def test_upscale_without_weights_uses_the_shipped_model(tmp_path, shared_data, capsys):
    """`python -m edsr_tf.upscale photo.png --scale 4` on a fresh clone: the shipped x4, clearly better
    than bicubic on a real Set5 image."""
    from edsr_tf.images import read_image
    from edsr_tf.imresize import bicubic_upscale
    from edsr_tf.metrics import psnr
    from edsr_tf.upscale import main

    lr = shared_data / "benchmark" / "Set5" / "image_SRF_4" / "img_002_SRF_4_LR.png"
    hr = read_image(shared_data / "benchmark" / "Set5" / "image_SRF_4" / "img_002_SRF_4_HR.png").channels()
    rc = main([str(lr), "--scale", "4", "--out_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0 and "using the shipped model edsr_baseline_x4" in err
    sr = read_image(tmp_path / "img_002_SRF_4_LR_x4.png").channels()
    bicubic = bicubic_upscale(read_image(lr).channels(), 4)
    gain = psnr(sr, hr, shave=4) - psnr(bicubic, hr, shave=4)
    assert gain > 1.0, gain


@pytest.mark.parametrize("scale, min_gain", [(2, 2.5), (4, 1.5)])
def test_shipped_model_beats_bicubic_on_set5_through_the_cli(tmp_path, shared_data, scale, min_gain):
    """The paper protocol (python -m edsr_tf.evaluate) on Set5: a wide margin over bicubic that a broken
    or untrained model cannot reach, and the manifest's own figure reproduced."""
    from edsr_tf.evaluate import main

    figures = {}
    for method in (["--weights", f"edsr_baseline_x{scale}"], ["--bicubic", "--scale", str(scale)]):
        out = tmp_path / f"{method[0]}.json"
        rc = main([*method, "--dataset_dir", str(shared_data / "edsr_benchmark"), "--eval_sets", "Set5",
                   "--json", str(out), "--quiet"])
        assert rc == 0
        figures[method[0]] = json.loads(out.read_text())["results"][0]["psnr"]
    gain = figures["--weights"] - figures["--bicubic"]
    assert gain >= min_gain, figures
    card = pretrained.load_manifest()[f"edsr_baseline_x{scale}"].card
    recorded = next(r for r in card["results"] if r["set"] == "Set5" and not r["self_ensemble"])
    assert figures["--weights"] == pytest.approx(recorded["psnr"], abs=0.01)


def test_train_init_from_a_shipped_name():
    """train.py --init_from=edsr_baseline_x2 for an x4 run: all but the upsampler copied."""
    from edsr_tf.models import ModelConfig, build_model
    from edsr_tf.training.app import init_from_weights

    config = ModelConfig.from_preset("edsr_baseline", 4)
    model = build_model(config)
    skipped = init_from_weights(model, config, "edsr_baseline_x2")
    assert skipped and all(s.startswith("upsample") for s in skipped), skipped
    src, _ = load_model("edsr_baseline_x2")
    for name in ("head", "body_0_conv1", "tail"):
        np.testing.assert_array_equal(np.asarray(model.get_layer(name).weights[0]),
                                      np.asarray(src.get_layer(name).weights[0]))


def test_markdown_cards_cover_every_shipped_model(capsys):
    """`python -m edsr_tf.pretrained --markdown` (the README's tables) lists each model's card and curve."""
    from edsr_tf.pretrained.__main__ import main

    assert main(["--markdown"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert f"`{name}`" in out and f"`{name}`, Set5" in out
    assert out.count("| Set5 | ×") == len({m.scales for m in SHIPPED if m.preset == "edsr_baseline"})


def test_export_by_shipped_name(tmp_path):
    """`python -m export --weights edsr_baseline_x2` (the default): the shipped file is exported and
    reported by its path."""
    from edsr_tf.export.common import ExportOptions
    from edsr_tf.export.pipeline import export

    image = np.full((24, 24, 3), 128, np.uint8)
    image[::3] = 40
    report = export("edsr_baseline_x2", tmp_path / "out",
                    ExportOptions(formats=("tflite",), verify_images=(("flat", image),), latency_runs=0),
                    progress=None)
    assert (tmp_path / "out" / "tflite" / "edsr_baseline_x2_fp32.tflite").is_file()
    assert str(pretrained.PACKAGE_DIR / "edsr_baseline_x2.weights.h5") in json.dumps(report)


def test_shipped_int8_tflite_is_checked_against_the_manifest(tmp_path):
    import shutil

    from edsr_tf.pretrained import PACKAGE_DIR, PretrainedError, load_manifest, shipped_tflite

    recorded = {n: m for n, m in load_manifest().items() if m.int8_tflite}
    assert recorded, "no shipped int8 TFLite model"
    name, model = sorted(recorded.items())[0]
    path = shipped_tflite(name)
    assert path is not None and path.stat().st_size == model.int8_tflite["size"]
    copy = tmp_path / "pretrained"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    data = bytearray((copy / path.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / path.name).write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="SHA-256"):
        shipped_tflite(name, copy)


def test_ship_pretrained_refresh_rewrites_only_the_figures_of_one_model(tmp_path, monkeypatch):
    """``benchmarks/ship_pretrained.py --refresh NAME``: the card's results re-measured on the
    shipped file (six decimals), the rest of the card and every other model left as they were."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "ship_pretrained", Path(__file__).resolve().parents[1] / "benchmarks" / "ship_pretrained.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    name = "edsr_baseline_x3"
    entry = pretrained.load_manifest()[name]
    shutil.copyfile(pretrained.PACKAGE_DIR / pretrained.MANIFEST, tmp_path / pretrained.MANIFEST)
    shutil.copyfile(pretrained.PACKAGE_DIR / entry.file, tmp_path / entry.file)
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", tmp_path)
    measured = []

    def evaluate(weights, scale, dataset_dir, *, self_ensemble=False, lr_jpeg_quality=None):
        measured.append((None if weights is None else weights.name, scale, self_ensemble))
        return {s: {"psnr": 20.123456 + self_ensemble + (weights is None), "ssim": 0.5, "images": 5}
                for s in ("Set5", "Set14")}

    monkeypatch.setattr(ship, "evaluate", evaluate)
    before = json.loads((tmp_path / pretrained.MANIFEST).read_text())["models"]
    assert ship.main(["--refresh", name, "--dataset_dir", str(tmp_path)]) == 0
    after = json.loads((tmp_path / pretrained.MANIFEST).read_text())["models"]
    assert sorted(measured, key=repr) == sorted(
        [(entry.file, 3, False), (entry.file, 3, True), (None, 3, False)], key=repr)
    assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in before.items() if k != name}
    card, old = after[name]["card"], before[name]["card"]
    assert [(r["set"], r["self_ensemble"], r["psnr"]) for r in card["results"]] == [
        ("Set5", False, 20.123456), ("Set5", True, 21.123456), ("Set14", False, 20.123456),
        ("Set14", True, 21.123456)]
    assert card["results"][0]["bicubic_psnr"] == 21.123456
    assert {k: v for k, v in card.items() if k not in ("results", "results_measured_by")} == \
        {k: v for k, v in old.items() if k not in ("results", "results_measured_by")}


def test_int8_tflite_is_of_the_shipped_float_weights():
    """An int8 file that records the float weights it was derived with (benchmarks/qat_int8.py
    --ship) must sit beside exactly those weights: re-shipping the float model without
    re-deriving the int8 file (ship_pretrained.py drops a stale entry) fails here."""
    from edsr_tf.pretrained import load_manifest

    checked = 0
    for name, model in load_manifest().items():
        recorded = (model.int8_tflite or {}).get("float_weights_sha256")
        if recorded is not None:
            assert recorded == model.sha256, f"{name}: its int8 file comes from other float weights"
            checked += 1
    assert checked >= 1
