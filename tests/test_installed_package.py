"""The package as a ``pip install`` user has it: a wheel in a fresh virtualenv outside the repository,
every command run from an empty folder (issue 18).

The virtualenv has no pip and no dependencies of its own: a ``.pth`` file puts this test
environment's site-packages (TensorFlow, ...) on its path, after its own. Directories named in a
``.pth`` are not scanned for further ``.pth`` files, so the checkout's editable install (a
``.pth`` finder) does not come along, and the commands run from an empty folder with no
PYTHONPATH: they see only the installed wheel (checked, ``edsr_tf.__file__``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("edsr-train", "edsr-upscale", "edsr-evaluate", "edsr-export", "edsr-convert")
#: TensorFlow's start-up lines that the commands keep off stderr (edsr_tf.tf_startup).
TF_NOISE = ("absl::InitializeLog", "I0000 ", "cuInit", "cudart_stub", "oneDNN custom operations")

pytestmark = pytest.mark.slow


class Installed:
    """A virtualenv with the wheel installed, and an empty working folder to run its commands in."""

    def __init__(self, root: Path):
        self.root = root
        self.venv = root / "venv"
        self.bin = self.venv / ("Scripts" if os.name == "nt" else "bin")
        self.work = root / "work"
        self.cache = root / "cache"  # $EDSR_TF_CACHE: nothing from the user's cache

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "TF_CPP_MIN_LOG_LEVEL")
               and not k.startswith("EDSR_TF_")}
        env["PATH"] = os.pathsep.join([str(self.bin), *extra.pop("PATH", env.get("PATH", "")).split(os.pathsep)])
        env["EDSR_TF_CACHE"] = str(self.cache)
        return env | extra

    def run(self, *argv: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*argv], cwd=self.work, env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)


def _build_wheel(dist: Path) -> Path:
    """``pip wheel`` of the checkout (no build isolation when setuptools is here: offline, fast)."""
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist),
                        str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = dist.glob("edsr_tf-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    inst = Installed(tmp_path_factory.mktemp("installed"))
    had_build = (REPO / "build").exists()
    wheel = _build_wheel(inst.root / "dist")
    assert had_build or not (REPO / "build").exists(), "building the wheel left build/ in the checkout"

    venv.create(inst.venv, with_pip=False, symlinks=os.name != "nt")
    python = inst.bin / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "_edsr_tf_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip from the test environment, run by the new interpreter: it installs there. --ignore-installed:
    # the checkout's editable edsr-tf is visible through the .pth, and must be neither reused nor removed.
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    inst.work.mkdir()
    return inst


def _no_tf_noise(stderr: str) -> None:
    noisy = [ln for ln in stderr.splitlines() if any(n in ln for n in TF_NOISE)]
    assert not noisy, f"TensorFlow start-up lines on stderr: {noisy}"


def test_it_is_the_installed_package(installed):
    r = installed.run("python", "-c", "import edsr_tf, edsr_tf.configs as c; print(edsr_tf.__file__); "
                      "print(c.config_path('quickstart'))")
    assert r.returncode == 0, r.stderr
    module, config = r.stdout.split()
    assert Path(module).is_relative_to(installed.venv), module  # not the checkout
    assert Path(config).is_relative_to(installed.venv) and Path(config).is_file()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_prints_its_help_in_its_own_name(installed, script):
    r = installed.run(script, "--help", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "python -m" not in r.stdout.split("\n\n")[0]  # the usage line / examples name the script
    if script == "edsr-train":  # absl: the examples
        assert f"{script} --config quickstart" in r.stdout
    else:
        assert r.stdout.startswith(f"usage: {script} "), r.stdout[:200]
    if script == "edsr-export":
        assert f"  {script} --weights " in r.stdout and "python -m export" not in r.stdout


def test_upscale_an_image(installed):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(installed.work / "img.png")
    r = installed.run("edsr-upscale", "img.png", "--scale", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    with Image.open(installed.work / "img_x2.png") as im:
        assert im.size == (64, 48)
    _no_tf_noise(r.stderr)


def test_train_on_the_shipped_quickstart_config(installed):
    r = installed.run("edsr-train", "--config", "quickstart", "--steps=2", "--ckpt_every=2", "--eval_every=0",
                      "--log_every=1", "--out_dir=runs/quickstart")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = installed.work / "runs" / "quickstart"  # the config's relative paths: from the working folder
    assert (out / "final.weights.h5").is_file() and (out / "eval.json").is_file()
    assert "| photos | x2 |" in r.stdout
    _no_tf_noise(r.stderr)


def test_a_checkout_flagfile_path_reads_the_shipped_config(installed):
    """The README's ``--flagfile=configs/quickstart.cfg``, where no configs/ exists: the shipped file
    (a note says so), parsed before the bad --steps is refused: no training, no TensorFlow."""
    r = installed.run("edsr-train", "--flagfile=configs/quickstart.cfg", "--steps=0", timeout=60)
    assert r.returncode == 2, r.stderr
    note, error = r.stderr.strip().splitlines()
    assert note.startswith("note: --flagfile=configs/quickstart.cfg: no such file here; reading the shipped "
                           "config quickstart"), note
    assert error.startswith("error: flag --steps=0"), error


def test_export_tflite(installed):
    r = installed.run("edsr-export", "--formats", "tflite", "--out_dir", "exported", "--latency_runs", "0",
                      "--verify_max_side", "48")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (installed.work / "exported" / "tflite" / "edsr_baseline_x2_fp32.tflite").is_file()
    assert "edsr_baseline_x2  tflite  fp32" in r.stderr and " MiB " in r.stderr
    _no_tf_noise(r.stderr)


def test_export_web_without_npm_exits_2_before_any_work(installed, tmp_path):
    """No runtime in the cache, no npm on PATH: one clear error, exit 2, nothing written, and
    nothing ever installed into the package."""
    bare = tmp_path / "bin"  # PATH with python only: no npm
    bare.mkdir()
    r = installed.run("edsr-export", "--formats", "web", "--out_dir", "web_export", timeout=60, PATH=str(bare))
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: --formats web needs ONNX Runtime Web") and "npm is not found" in line, line
    assert str(installed.cache) in line  # where it would go: the user's cache, not site-packages
    assert not (installed.work / "web_export").exists()
    site_pages = list(installed.venv.rglob("web_page/node_modules"))
    assert not site_pages
