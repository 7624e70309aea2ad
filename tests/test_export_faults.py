"""Export faults: re-exports into a used folder, input-size limits, disk full, killed runs,
benchmark-layout verification folders, atomic file writes and failed-verification reports.

Tiny models (1 block, 8 features), small images, no latency runs, few formats per test.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from edsr_tf import fileio
from edsr_tf.export import ExportError, ExportOptions, ExportUsageError, VerificationError, export_model
from edsr_tf.export import common, pipeline, savedmodel
from edsr_tf.export.cli import main
from edsr_tf.export.savedmodel import LIMIT_TEXT, SavedModelRunner
from edsr_tf.export.verify import png_header, verify_hr_files
from edsr_tf.models import ModelConfig, build_model, save_model


def tiny(n_feats: int = 8, seed: int = 0):
    config = ModelConfig.from_preset("edsr_baseline", 2, n_resblocks=1, n_feats=n_feats)
    model = build_model(config)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-zero biases: every add matters
        if isinstance(layer, keras.layers.Conv2D):
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.5, b.shape).astype(np.float32)])
    return model, config


def name_of(config) -> str:
    return common.artifact_name(config, 2)


def run(model, config, out, photo, **kw):
    kw.setdefault("formats", ("tflite",))
    kw.setdefault("verify_images", [("p", photo[:32, :40])])
    return export_model(model, config, out, ExportOptions(latency_runs=0, **kw), progress=None)


def encoded(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def umask() -> int:
    mask = os.umask(0o022)  # the test reads its own umask; the code under test never does
    os.umask(mask)
    return mask


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------- item 3


def test_reexport_writes_next_version_and_replaces_the_rest(tmp_path, photo):
    model, config = tiny()
    name = name_of(config)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("user file")
    run(model, config, out, photo, formats=("savedmodel", "tflite"), quantize=("none", "dynamic"))
    assert (out / "savedmodel" / name / "1" / "saved_model.pb").is_file()
    assert (out / "tflite" / f"{name}_dynamic.tflite").is_file()

    # same model (same config), retrained: a new SavedModel version, the stale dynamic file goes
    model2, _ = tiny(seed=1)
    report = run(model2, config, out, photo, formats=("savedmodel", "tflite"), quantize=("none",))
    assert sorted(os.listdir(out / "savedmodel" / name)) == ["1", "2"]
    assert (out / "savedmodel" / name / "1" / "saved_model.pb").is_file()
    x = np.random.default_rng(3).uniform(0, 255, (1, 6, 7, 3)).astype(np.float32)
    y1 = SavedModelRunner(out / "savedmodel" / name / "1").run(x)
    y2 = SavedModelRunner(out / "savedmodel" / name / "2").run(x)
    assert np.abs(y2 - np.clip(model2(x).numpy(), 0, 255)).max() <= 1e-2
    assert np.abs(y1 - np.clip(model(x).numpy(), 0, 255)).max() <= 1e-2
    assert not (out / "tflite" / f"{name}_dynamic.tflite").exists(), "stale file of the previous export"
    assert (out / "notes.txt").read_text() == "user file"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["savedmodel_versions"] == {name: [1, 2]} == report["savedmodel_versions"]
    assert sorted(a["path"] for a in on_disk["artifacts"]) == [f"savedmodel/{name}/2", f"tflite/{name}_fp32.tflite"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_out_with_another_models_export_needs_overwrite(tmp_path, photo, capsys):
    model, config = tiny()
    out = tmp_path / "out"
    run(model, config, out, photo)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))

    other, other_config = tiny(n_feats=4)
    with pytest.raises(ExportUsageError, match="another model.*--overwrite"):
        run(other, other_config, out, photo)
    weights = save_model(other, tmp_path / "other.weights.h5", other_config)
    code = main(["--weights", str(weights), "--out_dir", str(out), "--formats", "tflite", "--quiet",
                 "--latency_runs", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and str(out) in err and len(err.strip().splitlines()) == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before

    report = run(other, other_config, out, photo, overwrite=True)
    assert sorted(os.listdir(out / "tflite")) == [f"{name_of(other_config)}_fp32.tflite"]
    assert json.loads((out / "report.json").read_text())["config"] == other_config.to_dict()
    assert any("--overwrite" in n for n in report["notes"])


def test_failed_swap_leaves_out_as_it_was(tmp_path, photo, monkeypatch):
    model, config = tiny()
    out = tmp_path / "out"
    run(model, config, out, photo)
    before = {str(p.relative_to(out)): p.stat().st_ino for p in out.rglob("*")}

    def full(staging, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(common, "swap_in", full)
    with pytest.raises(ExportError, match="disk full") as e:
        run(model, config, out, photo)
    assert "\n" not in str(e.value)
    assert {str(p.relative_to(out)): p.stat().st_ino for p in out.rglob("*")} == before
    assert sorted(os.listdir(tmp_path)) == ["out"], "staging folder left behind"


def test_savedmodel_refuses_nan_and_inf_inputs(tmp_path):
    """A float request with NaN/Inf is an InvalidArgument naming the problem, not a black image."""
    import tensorflow as tf

    from edsr_tf.export.savedmodel import NONFINITE_TEXT, save_serving_model

    model, _config = tiny()
    loaded = tf.saved_model.load(str(save_serving_model(model, 2, tmp_path / "sm" / "1")))
    good = np.full((1, 6, 5, 3), 100.0, np.float32)
    for name in ("serving_default", "predict_float"):
        assert loaded.signatures[name](images=tf.constant(good))["sr"].shape == (1, 12, 10, 3)
        for bad in (np.nan, np.inf, -np.inf):
            images = good.copy()
            images[0, 3, 2, 1] = bad
            with pytest.raises(tf.errors.InvalidArgumentError, match=NONFINITE_TEXT[:30]):
                loaded.signatures[name](images=tf.constant(images))


# ---------------------------------------------------------------------------- item 6


def test_savedmodel_refuses_inputs_past_max_pixels(tmp_path, photo):
    import tensorflow as tf

    from edsr_tf.inference import activation_bytes_per_pixel

    model, config = tiny()
    name = name_of(config)
    out = tmp_path / "out"
    report = run(model, config, out, photo, formats=("savedmodel",), max_pixels=400)  # LR 16x20 = 320
    runner = SavedModelRunner(out / "savedmodel" / name / "1")
    rng = np.random.default_rng(4)

    def refused(call):
        with pytest.raises(tf.errors.InvalidArgumentError, match=LIMIT_TEXT + " 400"):
            call()

    ok = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert len(runner.run_bytes([encoded(ok, "PNG")])[0]) > 0
    big = np.zeros((1000, 1000, 3), np.uint8)  # a few KB of PNG, 3 MB decoded
    png = encoded(big, "PNG")
    assert len(png) < 20_000
    refused(lambda: runner.run_bytes([png]))
    refused(lambda: runner.run_bytes([png_header(100_000, 100_000)]))  # header only: never decoded
    refused(lambda: runner.run_bytes([encoded(rng.integers(0, 256, (21, 20, 3), dtype=np.uint8), "JPEG")]))
    refused(lambda: runner.run_bytes([encoded(rng.integers(0, 256, (20, 21, 3), dtype=np.uint8), "BMP")]))
    refused(lambda: runner.run_bytes([encoded(ok, "PNG"), png]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported image format"):
        runner.run_bytes([encoded(ok, "GIF")])

    assert runner.run_uint8(np.zeros((2, 10, 20, 3), np.uint8), "serving_uint8").shape == (2, 20, 40, 3)
    refused(lambda: runner.run_uint8(np.zeros((2, 11, 20, 3), np.uint8), "serving_uint8"))
    refused(lambda: runner.run_uint8(np.zeros((1, 21, 20, 3), np.float32), "serving_default"))
    refused(lambda: runner.run(np.zeros((1, 20, 21, 3), np.float32)))

    per_px = activation_bytes_per_pixel(model)
    assert report["serving"]["max_pixels"] == 400
    assert report["serving"]["models"][name] == {
        "max_pixels": 400, "activation_bytes_per_lr_pixel": per_px, "activation_bytes_at_max_pixels": 400 * per_px}
    (sm,) = [a for a in report["artifacts"] if a["format"] == "savedmodel"]
    assert sm["version"] == 1 and any("refused" in c for c in sm["checks"])
    assert "metadata: scale 2, max_pixels 400" in sm["checks"]
    assert runner.metadata == {"scale": 2, "max_pixels": 400}
    assert "SavedModel input limit" in (out / "report.md").read_text()


def test_max_pixels_bad_values(tmp_path, photo, capsys):
    model, config = tiny()
    with pytest.raises(ExportUsageError, match="--max-pixels"):
        run(model, config, tmp_path / "a", photo, formats=("savedmodel",), max_pixels=0)
    with pytest.raises(ExportUsageError, match="--max-pixels 100.*--verify-max-side"):
        run(model, config, tmp_path / "a", photo, formats=("savedmodel",), max_pixels=100)
    weights = save_model(model, tmp_path / "m.weights.h5", config)
    assert main(["--weights", str(weights), "--out_dir", str(tmp_path / "a"), "--max_pixels", "0"]) == 2
    assert "--max_pixels" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["m.weights.h5"]


# ---------------------------------------------------------------------------- item 8


@pytest.mark.parametrize("where", ["savedmodel", "tflite"])
def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, photo, monkeypatch, capsys, where):
    import tensorflow as tf

    model, config = tiny()
    weights = save_model(model, tmp_path / "m.weights.h5", config)
    if where == "savedmodel":
        def full(*a, **k):
            raise tf.errors.ResourceExhaustedError(
                None, None, "variables.data-00000-of-00001.tempstate; No space left on device\nmore lines")

        monkeypatch.setattr(savedmodel, "save_serving_model", full)
    else:
        def full(data, path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(pipeline.tflite, "write", full)
    out = tmp_path / "out"
    code = main(["--weights", str(weights), "--out_dir", str(out), "--formats", where, "--quiet",
                 "--latency_runs", "0", "--verify_max_side", "16"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "disk full" in err and str(out) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["m.weights.h5"]


def test_stale_staging_of_killed_runs_is_cleaned(tmp_path, photo):
    model, config = tiny()
    out = tmp_path / "out"
    host = common._host()
    dead = dead_pid()
    stale = tmp_path / f".out.partial-{host}-{dead}-0123abcd"
    alive = tmp_path / f".out.partial-{host}-{os.getppid()}-0123abcd"  # pytest's parent: running
    remote = tmp_path / f".out.partial-otherhost-{dead}-0123abcd"
    legacy = tmp_path / ".out.partial-k3j4h5"  # no owner recorded: not ours to judge
    for d in (stale, alive, remote, legacy):
        (d / "savedmodel").mkdir(parents=True)
        (d / "savedmodel" / "big.bin").write_bytes(b"x" * 100)
    run(model, config, out, photo)
    assert not stale.exists()
    assert alive.exists() and remote.exists() and legacy.exists()
    assert (out / "report.json").is_file()


def test_staging_name_records_the_owner_and_old_export_is_restored(tmp_path):
    out = tmp_path / "out"
    staging = common.staging_dir(out)
    assert staging.name.startswith(f".out.partial-{common._host()}-{os.getpid()}-")
    assert common.clean_stale(out) == [] and staging.exists()  # our own process: alive
    staging.rmdir()
    # a crash between the two renames of the fallback swap: out is missing, its old copy aside
    old = tmp_path / f".out.old-{common._host()}-{dead_pid()}-00ff00ff"
    old.mkdir()
    (old / "report.json").write_text("{}")
    common.clean_stale(out)
    assert (out / "report.json").read_text() == "{}" and not old.exists()


def test_swap_in_fallback_without_renameat2(tmp_path, monkeypatch):
    out, new = tmp_path / "out", tmp_path / "new"
    out.mkdir()
    (out / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    monkeypatch.setattr(common, "_renameat2_exchange", lambda a, b: False)
    common.swap_in(new, out)
    assert (out / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]


def test_verify_dir_benchmark_layouts(tmp_path, photo, shared_data):
    srf2 = shared_data / "benchmark" / "Set5" / "image_SRF_2"
    files = verify_hr_files(srf2, 2)
    assert len(files) == 5 and all(p.stem.endswith("_HR") for _, p in files)
    assert [n for n, _ in files][0] == "img_001_SRF_2"
    by_set = verify_hr_files(shared_data / "benchmark" / "Set5", 3)  # the set root: image_SRF_3
    assert len(by_set) == 5 and all(p.parent.name == "image_SRF_3" for _, p in by_set)

    # EDSR-PyTorch layout: HR/ + LR_bicubic/X2/ (given the set root or HR/)
    edsr = tmp_path / "Set1"
    (edsr / "HR").mkdir(parents=True)
    (edsr / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(photo[:40, :40]).save(edsr / "HR" / "cat.png")
    Image.fromarray(photo[:20, :20]).save(edsr / "LR_bicubic" / "X2" / "catx2.png")
    assert [p.name for _, p in verify_hr_files(edsr, 2)] == ["cat.png"]
    with pytest.raises(ExportUsageError, match="--verify-dir .*LR images.*HR"):
        verify_hr_files(edsr / "LR_bicubic" / "X2", 2)
    lr_only = tmp_path / "lr"
    lr_only.mkdir()
    Image.fromarray(photo[:20, :20]).save(lr_only / "img_001_SRF_2_LR.png")
    with pytest.raises(ExportUsageError, match="LR images"):
        verify_hr_files(lr_only, 2)
    with pytest.raises(ExportUsageError, match="--verify-dir"):
        verify_hr_files(tmp_path / "missing", 2)

    model, config = tiny()
    report = export_model(model, config, tmp_path / "out",
                          ExportOptions(formats=("tflite",), verify_dir=srf2, verify_max_side=24, latency_runs=0),
                          progress=None)
    images = report["verification"]["images"]
    assert len(images) == 5 and not any("_LR" in i for i in images), images


# ---------------------------------------------------------------------------- item 9


def test_atomic_writes_never_touch_the_umask(tmp_path, monkeypatch):
    mask = umask()

    def no_umask(*_a):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", no_umask)
    target = tmp_path / "f.bin"
    fileio.atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with fileio.atomic_path(tmp_path / "g.weights.h5", suffix=".tmp.weights.h5") as tmp:
        private = Path(tmp).parent
        # the temporary name sits in a private folder: nobody else can plant a symlink at it
        assert private.parent == tmp_path and stat.S_IMODE(private.stat().st_mode) == 0o700
        assert private.stat().st_uid == os.getuid() and not os.path.lexists(tmp)
        assert tmp.endswith(".weights.h5")
        Path(tmp).write_bytes(b"x")
    assert (tmp_path / "g.weights.h5").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "g.weights.h5").stat().st_mode) == 0o666 & ~mask
    with pytest.raises(RuntimeError), fileio.atomic_path(tmp_path / "h") as tmp:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "g.weights.h5"]
    d = fileio.make_dir(tmp_path / "d")
    assert stat.S_IMODE(d.stat().st_mode) == 0o755 & ~mask


def test_atomic_write_refuses_a_planted_symlink(tmp_path, monkeypatch):
    """Even if someone guessed the temporary name, the exclusive open would not follow a link."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    real_mkdtemp = fileio.tempfile.mkdtemp

    def mkdtemp_with_trap(*a, **k):
        d = real_mkdtemp(*a, **k)
        os.symlink(victim, os.path.join(d, "data.tmp"))
        return d

    monkeypatch.setattr(fileio.tempfile, "mkdtemp", mkdtemp_with_trap)
    with pytest.raises(FileExistsError):
        fileio.atomic_write_bytes(tmp_path / "out.bin", b"evil")
    assert victim.read_text() == "keep" and not (tmp_path / "out.bin").exists()


def test_export_folder_has_the_normal_mode(tmp_path, photo):
    model, config = tiny()
    out = tmp_path / "out"
    run(model, config, out, photo)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 & ~umask()
    # a re-export keeps the mode the user gave the folder
    os.chmod(out, 0o750)
    run(model, config, out, photo)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


# ---------------------------------------------------------------------------- passed / FAIL


def test_failing_artifact_left_out_and_reported(tmp_path, photo, monkeypatch, capsys):
    model, config = tiny()
    name = name_of(config)
    real = pipeline.export_conversion_savedmodel

    def wrong(m, path, input_shape=None):  # the TFLite/ONNX source is off by 0.5 grey levels
        inp = keras.Input((None, None, 3))
        return real(keras.Model(inp, m(inp) + 0.5), path, input_shape)

    monkeypatch.setattr(pipeline, "export_conversion_savedmodel", wrong)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="1 of 2 artifacts failed.*exceeds the tolerance") as e:
        run(model, config, out, photo, formats=("savedmodel", "tflite"))
    report = json.loads((out / "report.json").read_text())
    assert e.value.report is not None and report["passed"] is False
    (bad,) = [a for a in report["artifacts"] if not a["passed"]]
    assert bad["format"] == "tflite" and bad["written"] is False
    assert bad["max_abs_diff"] == pytest.approx(0.5, abs=0.02) and "exceeds the tolerance" in bad["failure"]
    assert report["failed"][0]["failure"] == bad["failure"]
    assert not (out / "tflite").exists() or not any((out / "tflite").iterdir())
    assert (out / "savedmodel" / name / "1" / "saved_model.pb").is_file()
    md = (out / "report.md").read_text()
    assert "FAIL" in md and "Failed verification" in md and "not written" in md

    weights = save_model(model, tmp_path / "m.weights.h5", config)
    code = main(["--weights", str(weights), "--out_dir", str(tmp_path / "cli"), "--formats", "savedmodel,tflite",
                 "--quiet", "--latency_runs", "0", "--verify_max_side", "16"])
    err = capsys.readouterr().err
    assert code == 1 and "exceeds the tolerance" in err and len(err.strip().splitlines()) == 1


def test_quantized_over_max_psnr_drop_left_out(tmp_path, photo):
    model, config = tiny()
    name = name_of(config)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="--max_psnr_drop"):  # report.md names the current flag
        run(model, config, out, photo, quantize=("none", "dynamic"), max_psnr_drop=-100.0)
    assert sorted(os.listdir(out / "tflite")) == [f"{name}_fp32.tflite"]
    rows = {a["variant"]: a for a in json.loads((out / "report.json").read_text())["artifacts"]
            if a["format"] == "tflite"}
    assert rows["fp32"]["passed"] and not rows["dynamic"]["passed"]
    assert "PSNR drop" in rows["dynamic"]["failure"] and rows["dynamic"]["psnr_drop_db"] is not None

