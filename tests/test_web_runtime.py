"""ONNX Runtime Web for ``--formats web``: found (a checkout's node_modules, offline), else installed
with npm where the user writes (``--web_runtime`` or the cache), never into the package; no npm is a
clear error and exit 2. npm itself is faked here: a script that lays out the pinned package."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edsr_tf.export import web_runtime
from edsr_tf.export.common import ExportError

PIN = web_runtime.pinned_version()

FAKE_NPM = """#!{python}
# A stand-in for `npm ci --prefix DIR ...`: the pinned package's files, and the call logged.
import json, os, sys
args = sys.argv[1:]
prefix = args[args.index("--prefix") + 1]
with open(os.environ["FAKE_NPM_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
assert args[0] == "ci" and os.path.isfile(os.path.join(prefix, "package-lock.json"))
version = {version!r} if os.environ.get("FAKE_NPM_VERSION") is None else os.environ["FAKE_NPM_VERSION"]
dist = os.path.join(prefix, "node_modules", "onnxruntime-web", "dist")
os.makedirs(dist)
with open(os.path.join(dist, "..", "package.json"), "w") as f:
    json.dump({{"name": "onnxruntime-web", "version": version}}, f)
for name in {files!r}:
    open(os.path.join(dist, name), "w").write("// fake")
"""


@pytest.fixture
def fake_npm(tmp_path, monkeypatch) -> Path:
    """PATH holds only a fake npm; the cache is empty; no checkout runtime is seen."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(python=sys.executable, version=PIN, files=list(web_runtime.RUNTIME_FILES)))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "npm.log"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    monkeypatch.setenv("EDSR_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(web_runtime.NODE_MODULES_ENV, raising=False)
    monkeypatch.setattr(web_runtime, "PAGE_DIR", _page_copy(tmp_path))
    return log


def _page_copy(tmp_path: Path) -> Path:
    """The page's npm files without a node_modules: a package as pip installs it."""
    page = tmp_path / "site-packages" / "web_page"
    page.mkdir(parents=True)
    for name in web_runtime.NPM_FILES:
        (page / name).write_bytes((web_runtime.PAGE_DIR / name).read_bytes())
    return page


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_installed_into_the_cache_once_never_into_the_package(fake_npm, tmp_path):
    said = []
    nm = web_runtime.ensure(say=said.append)
    cache = tmp_path / "cache" / "web_runtime" / f"onnxruntime-web-{PIN}"
    assert nm == cache / "node_modules" and web_runtime.problem(nm) is None
    assert (cache / "package-lock.json").read_bytes() == (web_runtime.PAGE_DIR / "package-lock.json").read_bytes()
    assert said == [f"web: installing ONNX Runtime Web {PIN} with npm into {cache} (the cache; once)"]
    assert not (web_runtime.PAGE_DIR / "node_modules").exists()
    assert [c[:1] for c in _calls(fake_npm)] == [["ci"]] and "--ignore-scripts" in _calls(fake_npm)[0]
    assert web_runtime.ensure() == nm and len(_calls(fake_npm)) == 1  # found: npm not run again
    assert not [p for p in cache.iterdir() if p.name.startswith(".npm-")]  # no staging left
    assert web_runtime.dist() == (nm / "onnxruntime-web" / "dist", PIN)


def test_installed_into_the_web_runtime_folder(fake_npm, tmp_path):
    folder = tmp_path / "my runtime"
    assert web_runtime.ensure(folder) == folder / "node_modules"
    assert not (tmp_path / "cache").exists()
    # a folder of another npm project is not written over
    other = tmp_path / "project"
    other.mkdir()
    (other / "package.json").write_text('{"name": "my-site"}')
    with pytest.raises(web_runtime.WebRuntimeMissing, match="holds another package.json"):
        web_runtime.ensure(other)


def test_wrong_version_is_reinstalled_and_npm_failures_are_errors(fake_npm, tmp_path, monkeypatch):
    folder = tmp_path / "rt"
    monkeypatch.setenv("FAKE_NPM_VERSION", "0.0.1")
    with pytest.raises(ExportError, match=f"did not install the runtime: .* is onnxruntime-web 0.0.1, but edsr_tf pins {PIN}"):
        web_runtime.ensure(folder)
    assert not (folder / "node_modules").exists()  # nothing half-installed left in place
    monkeypatch.delenv("FAKE_NPM_VERSION")
    assert web_runtime.ensure(folder) == folder / "node_modules"


def test_no_npm_is_a_usage_error_naming_what_to_do(fake_npm, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(web_runtime.WebRuntimeMissing) as e:
        web_runtime.ensure()
    msg = str(e.value)
    assert msg.startswith(f"--formats web needs ONNX Runtime Web {PIN}") and "npm is not found" in msg
    assert str(tmp_path / "cache") in msg and "--web_runtime" in msg


def test_export_cli_without_npm_exits_2_before_tensorflow(fake_npm, monkeypatch, tmp_path, capsys):
    import subprocess
    import sys

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    code = ("import sys\nfrom edsr_tf.export import web_runtime\n"
            f"web_runtime.PAGE_DIR = __import__('pathlib').Path({str(web_runtime.PAGE_DIR)!r})\n"
            "from edsr_tf.export.cli import main\nrc = main(['--formats', 'web', '--out_dir', 'o'])\n"
            "print('TF' if 'tensorflow' in sys.modules else 'no TF', rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env=dict(os.environ))
    assert r.stdout.split() == ["no", "TF", "2"], r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: --formats web needs ONNX Runtime Web") and not (tmp_path / "o").exists()


def test_a_checkout_runtime_is_used_offline(monkeypatch, tmp_path):
    """CI's `npm ci --prefix edsr_tf/export/web_page`: found there, npm never needed."""
    checkout = web_runtime.PAGE_DIR / "node_modules"
    if web_runtime.problem(checkout):
        pytest.skip(f"no checkout runtime: {web_runtime.problem(checkout)}")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("EDSR_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(web_runtime.NODE_MODULES_ENV, raising=False)
    assert web_runtime.ensure() == checkout
    assert not (tmp_path / "cache").exists()
