"""``train.py`` end to end: the quickstart config, exact resume through the CLI code, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_guard import in_ci

from edsr_tf.models import load_model
from edsr_tf.training.app import TrainError, TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDSR_TF_SHARED_DATA", REPO.parent / "shared" / "data"))


def _run(args: list[str], cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")  # edsr_tf is installed: no PYTHONPATH
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_quickstart_config_trains_a_model_that_beats_bicubic(tmp_path):
    """The README's main command, with the shipped config unchanged (only --out_dir moved)."""
    out = tmp_path / "quickstart"
    proc = _run(["train.py", "--flagfile=configs/quickstart.cfg", f"--out_dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout[-1500:])
    assert "| set | scale |" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    rows = {r["set"]: r for r in report["results"]}
    photos = rows["photos"]
    assert photos["psnr"] - photos["bicubic_psnr"] > 0.3
    assert photos["ssim"] > photos["bicubic_ssim"]
    if not (SHARED / "benchmark" / "Set5").is_dir():
        # A user's clone without ../shared/data: the photo check above still ran.
        assert not in_ci(), f"CI=true but {SHARED}/benchmark/Set5 is missing: CI must check Set5"
    else:
        set5 = rows["Set5"]
        assert set5["images"] == 5
        assert abs(set5["bicubic_psnr"] - 33.65) < 0.02  # the paper-protocol bicubic figure
        assert set5["psnr"] - set5["bicubic_psnr"] > 0.3
    for name in ("best.weights.h5", "final.weights.h5", "eval.md"):
        assert (out / name).is_file(), name
    assert list((out / "checkpoints").glob("ckpt-*.index"))
    events = list((out / "logs" / "train").glob("events.out.tfevents.*"))
    assert events
    import tensorflow as tf

    tags = {(v.tag, v.metadata.plugin_data.plugin_name)
            for rec in tf.data.TFRecordDataset([str(e) for e in events]).as_numpy_iterator()
            for v in tf.compat.v1.Event.FromString(rec).summary.value}
    for tag in (("loss/l1", "scalars"), ("lr", "scalars"), ("val/photos_x2/psnr", "scalars"),
                ("val/bicubic_sr_hr", "images")):
        assert tag in tags, (tag, tags)
    model, config = load_model(out / "final.weights.h5")
    assert config.scales == (2,) and config.n_resblocks == 4

    # The weights are what the upscaler accepts, with no model flags.
    from PIL import Image

    from edsr_tf.sample_data import sample_image

    Image.fromarray(sample_image("chelsea")[:40, :50]).save(tmp_path / "small.png")
    up = _run(["-m", "edsr_tf.upscale", str(tmp_path / "small.png"), "--weights",
               str(out / "best.weights.h5"), "--out_dir", str(tmp_path / "up")])
    assert up.returncode == 0, up.stderr[-2000:]
    assert Image.open(tmp_path / "up" / "small_x2.png").size == (100, 80)


def _tiny(out: Path, **kw) -> TrainOptions:
    base = dict(out_dir=str(out), data_source="samples", model="edsr_baseline", scales=(2,),
                n_resblocks=2, n_feats=8, patch_size=16, batch_size=4, steps=6, lr=1e-3,
                ckpt_every=3, eval_every=3, log_every=3, val_limit=1, progress=False)
    base.update(kw)
    return TrainOptions(**base)


def test_train_resumed_after_a_stop_equals_an_uninterrupted_run(tmp_path, capsys):
    # No dataset_dir and no default folders (the library looks nowhere by itself): noted, skipped.
    straight = train(_tiny(tmp_path / "a", eval_sets=("Set5",)))
    assert straight["step"] == 6
    assert "note: Set5 not evaluated: no --dataset_dir\n" in capsys.readouterr().out
    from test_training_callbacks import event_tags

    tags = event_tags(tmp_path / "a" / "logs")
    for tag, plugin in (("loss/l1", "scalars"), ("lr", "scalars"), ("val/photos_x2/psnr", "scalars"),
                        ("val/photos_x2/ssim", "scalars"), ("val/bicubic_sr_hr", "images")):
        assert tags.get(tag) == plugin, (tag, tags)
    train(_tiny(tmp_path / "b", steps=3))  # the "killed" run: stopped after its checkpoint
    with pytest.raises(TrainError, match="--resume"):
        train(_tiny(tmp_path / "b"))  # refuses to mix runs silently
    resumed = train(_tiny(tmp_path / "b", resume=True))
    assert "resumed from" in capsys.readouterr().out
    assert resumed["step"] == 6
    a, _ = load_model(tmp_path / "a" / "final.weights.h5")
    b, _ = load_model(tmp_path / "b" / "final.weights.h5")
    diff = max(np.abs(x - y).max() for x, y in zip(a.get_weights(), b.get_weights()))
    assert diff <= 1e-6
    assert (tmp_path / "b" / "best.weights.h5").is_file()
    # The final table compares with bicubic on the held-out photo.
    assert straight["results"][0]["set"] == "photos"
    assert "bicubic_psnr" in straight["results"][0]


def test_resume_with_another_model_is_refused(tmp_path):
    train(_tiny(tmp_path, steps=3))
    with pytest.raises(TrainError, match="trained with model"):
        train(_tiny(tmp_path, steps=6, n_feats=16, resume=True))


def test_missing_benchmark_dir_is_an_error_when_given(tmp_path):
    with pytest.raises(TrainError, match="dataset_dir"):
        train(_tiny(tmp_path, eval_sets=("Set5",), dataset_dir=str(tmp_path / "nope")))


def _parse(args: list[str]):
    from edsr_tf.training.flags import FLAGS, define_flags

    define_flags()
    try:
        FLAGS(["train.py", "--out_dir=/tmp/x", *args])
        return TrainOptions.from_flags(FLAGS)
    finally:
        FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--scale=5"], "--scale"),
        (["--scale=two"], "--scale"),
        (["--batch_size=0"], "--batch_size"),
        (["--data_source=div2k"], "--data_dir"),
        (["--init_from=/no/such.weights.h5"], "--init_from"),
        (["--mixed_precision=fp8"], "mixed_precision"),
    ],
)
def test_flag_validators_name_the_flag(args, expected):
    from absl import flags

    with pytest.raises(flags.Error, match=expected):
        _parse(args)


def test_flags_map_onto_train_options():
    opts = _parse(["--model=mdsr_baseline", "--scale=2,4", "--eval_sets=Set5,Set14", "--steps=10"])
    assert opts.scales == (2, 4) and opts.eval_sets == ("Set5", "Set14") and opts.steps == 10


def test_benchmark_folder_defaults_are_resolved_by_the_front_end_at_run_time(tmp_path, monkeypatch):
    import edsr_tf.training.app as app

    assert not hasattr(app, "DEFAULT_DATASET_DIRS") and not hasattr(app, "REPO_ROOT")
    monkeypatch.chdir(tmp_path)
    opts = _parse([])
    assert opts.dataset_dir is None
    assert str(REPO.parent / "shared" / "data") in opts.dataset_dir_defaults
    assert str(tmp_path.parent / "shared" / "data") in opts.dataset_dir_defaults  # the cwd now
    assert _parse([f"--dataset_dir={tmp_path}"]).dataset_dir_defaults == ()


def test_importing_the_library_changes_no_environment_variable(tmp_path):
    code = ("import os, tensorflow, keras\n"
            "before = dict(os.environ)\n"
            "import edsr_tf.models, edsr_tf.data, edsr_tf.data.cache, edsr_tf.training\n"
            "import edsr_tf.training.app, edsr_tf.training.callbacks, edsr_tf.training.flags\n"
            "changed = {k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k)}\n"
            "assert not changed, changed\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("kw, expected", [
    (dict(data_source="div2k", data_dir="{tmp}/missing"), "missing"),
    (dict(data_source="folder", data_dir="{tmp}"), "has no images"),
    (dict(scales=(2, 3)), "one scale"),
    (dict(batch_size=3, strategy="mirrored"), None),
])
def test_bad_configurations_raise_clear_errors(tmp_path, kw, expected):
    from edsr_tf.data import DataError

    kw = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in kw.items()}
    if expected is None:  # one CPU device: mirrored has 1 replica, any batch is fine
        kw["steps"] = 1
        assert train(_tiny(tmp_path / "ok", **kw))["step"] == 1
        return
    with pytest.raises((TrainError, DataError), match=expected):
        train(_tiny(tmp_path / "run", **kw))


@pytest.mark.parametrize(
    "flags, expected, code",
    [
        (["--model=edsr_huge"], "--model", 2),  # a bad flag
        (["--model=mdsr_baseline", "--scale=8"], "--model/--scale", 2),  # a bad configuration
        (["--data_source=div2k", "--data_dir={tmp}/missing"], "missing", 1),  # the work failed
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, flags, expected, code):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    proc = _run(["train.py", f"--out_dir={tmp_path / 'run'}", *flags], timeout=120)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1], proc.stderr[-2000:]


def test_help_exits_0_and_lists_the_flags():
    proc = _run(["train.py", "--helpshort"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--out_dir" in proc.stdout and "--flagfile=configs/quickstart.cfg" in proc.stdout


@pytest.mark.parametrize("cfg", sorted(p.name for p in (REPO / "configs").glob("*.cfg")))
def test_shipped_configs_parse_through_the_cli_parser(cfg, tmp_path):
    """Each flagfile parses with the same parser as `python train.py --flagfile=...` (no training)."""
    from edsr_tf.training import flags as training_flags
    from edsr_tf.training.cli import define_flags, parse_flags

    define_flags()
    init = tmp_path / "x2.weights.h5"
    init.touch()  # --init_from must name an existing file at parse time
    try:
        rest = parse_flags(["train.py", f"--flagfile={REPO / 'configs' / cfg}", f"--init_from={init}"])
        assert rest == ["train.py"]
        assert training_flags.FLAGS.out_dir
    finally:
        training_flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("cfg", sorted(p.name for p in (REPO / "configs").glob("*.cfg")))
def test_shipped_configs_parse_and_follow_the_paper_schedule(cfg, tmp_path):
    from edsr_tf.training.app import model_config

    init = tmp_path / "x2.weights.h5"
    init.touch()  # --init_from must name an existing file at parse time
    opts = _parse([f"--flagfile={REPO / 'configs' / cfg}", f"--init_from={init}"])
    config = model_config(opts)
    if cfg == "quickstart.cfg" or cfg.startswith("samples_"):
        # Demo configs on the embedded photographs, not the paper's schedule.
        assert opts.data_source == "samples" and config.scales == (2,)
        return
    if cfg.startswith("pretrained_"):
        # The shipped models' short-budget recipes (cosine schedule), not the paper's schedule.
        assert opts.lr_schedule == "cosine" and config.preset == "edsr_baseline"
        assert config.scales == (int(cfg[-5]),)
        return
    if cfg.startswith("jpeg_"):
        # A JPEG-robust fine-tune of a shipped model: degraded LR, short cosine schedule.
        assert opts.degradation["jpeg_prob"] > 0 and opts.init_from and opts.lr_schedule == "cosine"
        assert config.preset == "edsr_baseline" and config.scales == (int(cfg[-5]),)
        return
    if cfg.startswith("qat_"):
        # Quantization-aware fine-tuning of a shipped model (float32, small lr).
        assert opts.qat and opts.init_from and config.preset == "edsr_baseline"
        assert config.scales == (int(cfg[-5]),)
        return
    assert (opts.lr, opts.lr_decay_steps, opts.lr_decay_factor) == (1e-4, 200_000, 0.5)
    assert (opts.batch_size, opts.patch_size, opts.steps) == (16, 48, 300_000)
    assert config.preset == cfg.rsplit("_x", 1)[0].removesuffix(".cfg")
    if config.preset in ("edsr", "edsr_baseline"):
        assert (config.n_resblocks, config.n_feats, config.res_scale) == (
            (32, 256, 0.1) if config.preset == "edsr" else (16, 64, 1.0))
        scale = int(cfg[-5])
        assert config.scales == (scale,)
        # x3/x4 start from the x2 run, as in the paper.
        text = (REPO / "configs" / cfg).read_text()
        assert (f"--init_from=runs/{config.preset}_x2/" in text) == (scale != 2)
    else:
        assert config.scales == (2, 3, 4)


def test_corrupt_training_image_is_named(tmp_path):
    """TF's decode error names no file: train.py finds and names it, no traceback."""
    from PIL import Image

    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(hr / f"{i}.png")
    good = (hr / "0.png").read_bytes()
    (hr / "broken.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    proc = _run(["train.py", "--data_source=folder", f"--data_dir={hr}", "--n_resblocks=1",
                 "--n_feats=4", "--steps=20", "--patch_size=8", "--batch_size=2",
                 "--eval_every=0", "--progress=false", f"--out_dir={tmp_path / 'run'}"], timeout=180)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: unreadable training image") and "broken.png" in last, last


@pytest.mark.parametrize("error, code", [
    ("config", 2),       # a flag to change
    ("failed_work", 1),  # no checkpoint restored, an unreadable run_config.json
    ("io", 1),           # not a TrainError at all
])
def test_exit_code_is_the_errors_own(monkeypatch, capsys, error, code):
    """train.py's exit status comes from the error raised, not from what it happened to chain."""
    from edsr_tf.training import app

    def fail(_opts):
        if error == "io":
            raise PermissionError("denied")
        try:
            raise OSError("an unrelated failure being handled")  # the old rule read this context
        except OSError:
            raise app.TrainError("--resume: bad", failed_work=error == "failed_work")

    monkeypatch.setattr(app, "train", fail)
    monkeypatch.setattr(app.TrainOptions, "from_flags", classmethod(lambda cls, flags: None))
    monkeypatch.delenv("EDSR_TF_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        app.main(["train.py"])
    assert e.value.code == code
    assert capsys.readouterr().err.strip().startswith("error: ")
