"""Layering: library modules never import a command-line front end; one evaluate_set."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edsr_tf"

#: The command-line front ends inside the package (``python -m ...``).
CLI_MODULES = {"edsr_tf.evaluate", "edsr_tf.upscale", "edsr_tf.convert", "edsr_tf.export.cli"}


def _module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = REPO) -> set[str]:
    """Every module ``path`` imports (anywhere in the file, lazy imports included), absolute."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # from pkg import module
    return found


def _package_modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "node_modules" not in p.parts)


def test_library_modules_never_import_a_cli():
    offenders = []
    for path in _package_modules():
        name = _module_name(path)
        if name in CLI_MODULES:
            continue
        bad = sorted(_imports(path) & CLI_MODULES)
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {', '.join(bad)}")
    assert not offenders, "library modules import command-line modules:\n" + "\n".join(offenders)


def test_evaluate_cli_does_not_import_the_upscale_cli():
    assert not _imports(PACKAGE / "evaluate.py") & (CLI_MODULES - {"edsr_tf.evaluate"})


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The check above would notice the forms an import can take."""
    pkg = tmp_path / "edsr_tf" / "training"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from ..evaluate import main\n    import edsr_tf.upscale\n"
                 "    from edsr_tf.export import cli\n    from edsr_tf import convert\n")
    assert _imports(f, tmp_path) >= CLI_MODULES


#: Folders of copies, environments and outputs, never the project's own source.
NOT_SOURCE = {".venv", "node_modules", "runs", ".git", "build", "dist"}


def _source_files(root: Path = REPO) -> list[Path]:
    """The repository's ``*.py`` files: git's tracked ones where it is a checkout (a
    ``pip install .`` leaves copies under ``build/``), else all outside :data:`NOT_SOURCE`."""
    import subprocess

    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", "*.py"],
                                capture_output=True, check=True, timeout=60).stdout.decode()
        files = [root / p for p in listed.split("\0") if p]
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an sdist)
        files = list(root.rglob("*.py"))
    return sorted(p for p in files if p.is_file() and not NOT_SOURCE & set(p.relative_to(root).parts))


def test_exactly_one_evaluate_set():
    defs = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "evaluate_set":
                defs.append(str(path.relative_to(REPO)))
    assert defs == ["edsr_tf/evaluation.py"]


def test_source_files_skip_build_copies(tmp_path):
    """A ``build/lib`` copy (untracked or not a checkout at all) is not the project's source."""
    import subprocess

    for repo in (tmp_path / "plain", tmp_path / "git"):
        (repo / "edsr_tf").mkdir(parents=True)
        (repo / "edsr_tf" / "m.py").write_text("")
        (repo / "build" / "lib" / "edsr_tf").mkdir(parents=True)
        (repo / "build" / "lib" / "edsr_tf" / "m.py").write_text("")
    git = tmp_path / "git"
    subprocess.run(["git", "-C", str(git), "init", "-q"], check=True)
    subprocess.run(["git", "-C", str(git), "add", "edsr_tf/m.py"], check=True)
    (git / "edsr_tf" / "untracked.py").write_text("")
    assert _source_files(git) == [git / "edsr_tf" / "m.py"]
    assert _source_files(tmp_path / "plain") == [tmp_path / "plain" / "edsr_tf" / "m.py"]
