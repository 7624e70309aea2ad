"""The shipped training configs by name (``--config NAME``, a ``--flagfile`` naming one), one copy of
them (``configs/`` is the package's folder), and what the quick start's comments say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edsr_tf import configs
from edsr_tf.training.cli import ConfigError, expand_configs

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def test_one_copy_of_the_configs():
    """configs/ in a checkout is the package's folder itself, not a copy that could drift."""
    assert (REPO / "configs").resolve() == configs.CONFIG_DIR
    assert "quickstart" in configs.names() and "edsr_baseline_x2" in configs.names()
    assert sorted(p.name for p in (REPO / "configs").glob("*.cfg")) == [f"{n}.cfg" for n in configs.names()]


def test_config_names_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as for an installed package
    quick = configs.CONFIG_DIR / "quickstart.cfg"
    assert configs.config_path("quickstart") == configs.config_path("quickstart.cfg") == quick
    for bad in ("nope", "../quickstart", "", ".cfg"):
        assert configs.config_path(bad) is None, bad
    for value in ("configs/quickstart.cfg", "quickstart.cfg", "quickstart", "edsr_tf/configs/quickstart.cfg"):
        assert configs.shipped_flagfile(value) == quick, value
    # A path into another folder is the user's own file, missing: never replaced by a shipped one.
    assert configs.shipped_flagfile("/elsewhere/quickstart.cfg") is None
    assert configs.shipped_flagfile("mine/quickstart.cfg") is None
    (tmp_path / "quickstart.cfg").write_text("--steps=1\n")  # a user's own file of that name wins
    assert configs.shipped_flagfile("quickstart.cfg") is None


def test_expand_configs_keeps_order_and_user_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.cfg"
    mine.write_text("--steps=3\n")
    notes = []
    argv = ["edsr-train", "--config", "quickstart", "--steps=5", f"--flagfile={mine}", "-config=mdsr.cfg",
            "--flagfile", "configs/quickstart.cfg", "--", "--config", "x"]
    quick, mdsr = configs.config_path("quickstart"), configs.config_path("mdsr")
    assert expand_configs(argv, note=notes.append) == [
        "edsr-train", f"--flagfile={quick}", "--steps=5", f"--flagfile={mine}", f"--flagfile={mdsr}",
        f"--flagfile={quick}", "--", "--config", "x"]
    assert notes == [f"--flagfile=configs/quickstart.cfg: no such file here; reading the shipped config "
                     f"quickstart ({quick})"]
    with pytest.raises(ConfigError, match=r"--config nope: no shipped config of that name \(shipped: .*quickstart"):
        expand_configs(["p", "--config=nope"])
    with pytest.raises(ConfigError, match=r"--flagfile=/no/such\.cfg: no such file, nor a shipped config"):
        expand_configs(["p", "--flagfile=/no/such.cfg"])


def test_train_help_names_the_command_and_the_configs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edsr_tf.training.cli", "--helpshort"], capture_output=True,
                       text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "  python -m edsr_tf.training.cli --config quickstart " in r.stdout
    assert "edsr-train" not in r.stdout.split("flags:")[0]
    assert "--config: A shipped config by name" in r.stdout and "quickstart" in r.stdout


@pytest.mark.parametrize("argv, named", [
    (["--config=nope"], "--config nope: no shipped config"),
    (["--flagfile=missing.cfg"], "--flagfile=missing.cfg: no such file, nor a shipped config"),
])
def test_train_bad_config_exits_2_with_one_line(argv, named, tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "train.py"), *argv, "--out_dir=o"], capture_output=True,
                       text=True, cwd=tmp_path, env=_env(), timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {named}"), r.stderr
    assert "(see python " in lines[0] and "train.py --helpshort)" in lines[0]
    assert os.listdir(tmp_path) == []


def test_config_inside_a_flagfile_is_refused(tmp_path):
    (tmp_path / "my.cfg").write_text("--config=quickstart\n")
    r = subprocess.run([sys.executable, str(REPO / "train.py"), "--flagfile=my.cfg", "--out_dir=o"],
                       capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert r.returncode == 2 and "--config=quickstart inside a flagfile is not read" in r.stderr, r.stderr


def test_quickstart_comment_on_mixed_precision_matches_the_code():
    """The config says which --mixed_precision is the CLI's default: it must be the flag's default."""
    from absl import flags as absl_flags

    from edsr_tf.training.flags import define_flags

    define_flags()
    text = (configs.CONFIG_DIR / "quickstart.cfg").read_text()
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    stated = re.search(r"--mixed_precision=(\w+) is also the default", comment)
    assert stated, comment
    assert stated.group(1) == absl_flags.FLAGS["mixed_precision"].default
    assert f"--mixed_precision={stated.group(1)}" in text.splitlines()  # and the config sets it
