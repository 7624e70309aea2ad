"""ONNX Runtime Web for ``--formats web``: the version the package pins, found or installed with npm.

The page's runtime is the npm package ``onnxruntime-web`` at the version that
``web_page/package.json`` pins (``package-lock.json`` pins its files' hashes). :func:`ensure`
looks for it, in order, in

1. ``--web_runtime DIR`` (``DIR/node_modules``, or ``DIR`` itself if it is a ``node_modules``);
2. ``$EDSR_TF_WEB_NODE_MODULES`` (a ``node_modules`` folder);
3. a checkout's ``edsr_tf/export/web_page/node_modules`` (``npm ci --prefix edsr_tf/export/web_page``,
   as CI runs it: no network needed afterwards);
4. the user cache, ``$EDSR_TF_CACHE/web_runtime/onnxruntime-web-<version>`` (default
   ``~/.cache/edsr_tf``),

and when none holds it, installs it with ``npm ci`` (from the shipped lock file) into
``--web_runtime DIR`` or else that cache: always a folder the user writes, never the
installed package. Without npm that is a :class:`WebRuntimeMissing` (the CLI exits 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from edsr_tf.errors import first_line
from edsr_tf.export.common import ExportError, ExportUsageError

#: Source of the page, with the npm manifest and lock file that pin the runtime.
PAGE_DIR = Path(__file__).resolve().with_name("web_page")
RUNTIME_PACKAGE = "onnxruntime-web"
#: The runtime's files the page needs (source name in ``dist/`` → bundle name).
RUNTIME_FILES = {
    "ort.wasm.min.mjs": "ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.js",
    "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
}
#: A checkout's install command (CI runs it; its node_modules is found without network).
INSTALL_HINT = "npm ci --prefix edsr_tf/export/web_page"
#: Environment variable naming a ``node_modules`` folder to take the runtime from.
NODE_MODULES_ENV = "EDSR_TF_WEB_NODE_MODULES"
#: The files ``npm ci`` installs from (copied into the install folder).
NPM_FILES = ("package.json", "package-lock.json")
NPM_TIMEOUT_S = 600

Say = Callable[[str], None]


class WebRuntimeMissing(ExportUsageError):
    """The runtime is nowhere and cannot be installed (no npm): the CLI exits 2."""


def pinned_version(page_dir: Path = PAGE_DIR) -> str:
    """The exact onnxruntime-web version that ``package.json`` pins."""
    try:
        version = json.loads((page_dir / "package.json").read_text())["dependencies"][RUNTIME_PACKAGE]
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{page_dir / 'package.json'}: cannot read the pinned {RUNTIME_PACKAGE} ({e})") from None
    if not version[:1].isdigit():
        raise ExportError(f"{page_dir / 'package.json'}: {RUNTIME_PACKAGE} must be pinned exactly, got {version!r}")
    return version


def cache_folder() -> Path:
    """The default install folder: ``<cache>/web_runtime/onnxruntime-web-<pinned version>``."""
    from edsr_tf.inference_precision import cache_dir

    return cache_dir() / "web_runtime" / f"{RUNTIME_PACKAGE}-{pinned_version()}"


def node_modules_of(folder: str | os.PathLike) -> Path:
    """``folder`` itself if it is a ``node_modules`` (holds the package), else ``folder/node_modules``."""
    folder = Path(folder)
    return folder if (folder / RUNTIME_PACKAGE).is_dir() or folder.name == "node_modules" else folder / "node_modules"


def problem(node_modules: str | os.PathLike) -> str | None:
    """Why ``node_modules`` does not hold the pinned runtime (missing, another version, files
    missing), or None when it does."""
    pin = pinned_version()
    pkg = Path(node_modules) / RUNTIME_PACKAGE
    try:
        version = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return f"{RUNTIME_PACKAGE} {pin} is not installed in {pkg.parent}"
    if version != pin:
        return f"{pkg} is {RUNTIME_PACKAGE} {version}, but edsr_tf pins {pin}"
    missing = [f for f in RUNTIME_FILES if not (pkg / "dist" / f).is_file()]
    if missing:
        return f"{pkg / 'dist'} lacks {', '.join(missing)} (an interrupted install?)"
    return None


def candidates(folder: str | os.PathLike | None = None) -> list[Path]:
    """The ``node_modules`` folders looked in, in order (see the module's docstring)."""
    if folder is not None:
        return [node_modules_of(folder)]
    env = os.environ.get(NODE_MODULES_ENV, "").strip()
    if env:
        return [Path(env).expanduser()]
    return [PAGE_DIR / "node_modules", node_modules_of(cache_folder())]


def find(folder: str | os.PathLike | None = None) -> Path | None:
    """The first of :func:`candidates` holding the pinned runtime, or None."""
    return next((nm for nm in candidates(folder) if problem(nm) is None), None)


def dist(node_modules: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(dist folder, version)`` of the pinned runtime in ``node_modules`` (None: :func:`find`).

    Raises :class:`ExportError` saying what is wrong and how to install it; installs nothing.
    """
    if node_modules is None:
        node_modules = find()
        if node_modules is None:
            raise ExportError(f"{problem(candidates()[-1])}: an export with --formats web installs it "
                              f"with npm (--web_runtime), or run `{INSTALL_HINT}` in a checkout")
    why = problem(node_modules)
    if why:
        raise ExportError(f"{why}: install it with `{INSTALL_HINT}` (in a checkout) or let the export "
                          "install it (--web_runtime)")
    return Path(node_modules) / RUNTIME_PACKAGE / "dist", pinned_version()


def ensure(folder: str | os.PathLike | None = None, say: Say = lambda _m: None) -> Path:
    """The ``node_modules`` holding the pinned runtime, installed with npm first if none does.

    ``folder``: ``--web_runtime`` (looked in and installed into); None: the places of the
    module's docstring, installing into the user cache. ``$EDSR_TF_WEB_NODE_MODULES`` is
    only looked in. Raises :class:`WebRuntimeMissing` (exit 2) without npm or when the
    folder cannot take it, :class:`ExportError` when npm fails.
    """
    found = find(folder)
    if found is not None:
        return found
    env = os.environ.get(NODE_MODULES_ENV, "").strip()
    if folder is None and env:
        raise WebRuntimeMissing(f"{problem(Path(env).expanduser())} (${NODE_MODULES_ENV}); install it "
                                f"there, or unset {NODE_MODULES_ENV} to have the export install it")
    target = Path(folder) if folder is not None else cache_folder()
    flag = "--web_runtime" if folder is not None else "the cache"
    npm = shutil.which("npm")
    if npm is None:
        raise WebRuntimeMissing(
            f"--formats web needs ONNX Runtime Web {pinned_version()} (npm package {RUNTIME_PACKAGE}), "
            f"which is not installed in {target}, and npm is not found to install it: install "
            "Node.js (npm) and export again (it installs the runtime into --web_runtime DIR, default "
            f"{cache_folder()}), or leave web out of --formats")
    if node_modules_of(target) != target / "node_modules":
        raise WebRuntimeMissing(f"--web_runtime {target}: {problem(target)}; give a folder to install "
                                "it into (its node_modules/ is npm's)")
    say(f"web: installing ONNX Runtime Web {pinned_version()} with npm into {target} ({flag}; once)")
    install(npm, target)
    return target / "node_modules"


def _package_name(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def install(npm: str, target: Path) -> None:
    """``npm ci`` of the pinned runtime into ``target/node_modules``: in a staging folder inside
    ``target`` first, moved into place once complete (an interrupted install leaves no half
    ``node_modules``). Raises :class:`WebRuntimeMissing` for an unwritable ``target`` or one
    holding another project's ``package.json``, :class:`ExportError` when npm fails."""
    own = target / "package.json"
    if own.is_file() and _package_name(own) != _package_name(PAGE_DIR / "package.json"):
        raise WebRuntimeMissing(f"--web_runtime {target}: holds another package.json; give an empty "
                                "folder or one made by this export")
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=target))
    except OSError as e:
        raise WebRuntimeMissing(f"--web_runtime {target}: cannot write there ({e.strerror or e})") from None
    try:
        for name in NPM_FILES:
            shutil.copyfile(PAGE_DIR / name, staging / name)
        cmd = [npm, "ci", "--prefix", str(staging), "--ignore-scripts", "--no-audit", "--no-fund",
               "--loglevel=error"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ExportError(f"npm ci of {RUNTIME_PACKAGE} into {target} failed: {first_line(e)}") from None
        if proc.returncode != 0:
            last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no message")
            raise ExportError(f"npm ci of {RUNTIME_PACKAGE} into {target} failed (exit {proc.returncode}): "
                              f"{last.strip()}")
        why = problem(staging / "node_modules")
        if why:
            raise ExportError(f"npm ci into {target} did not install the runtime: {why}")
        old = target / "node_modules"
        if old.exists():  # an incomplete or other-version install: replaced whole
            shutil.rmtree(old)
        os.replace(staging / "node_modules", old)
        for name in NPM_FILES:  # what npm installed from, as npm itself leaves it
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
