"""Layering: each module imports only from its layer or below (the README's order); one evaluate_set."""

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


#: The README's layers, bottom up (a module is in the layer of its longest matching prefix).
LAYERS = (
    ("leaves", ("edsr_tf.metrics", "edsr_tf.imresize", "edsr_tf.images", "edsr_tf.fileio", "edsr_tf.dihedral",
                "edsr_tf.pretrained", "edsr_tf.quant_ranges", "edsr_tf.precision", "edsr_tf.lazy",
                "edsr_tf.sample_data", "edsr_tf.benchmark_sets", "edsr_tf.jpeg", "edsr_tf.errors",
                "edsr_tf.configs", "edsr_tf.tf_startup", "edsr_tf.units")),
    ("models", ("edsr_tf.models",)),
    ("data/inference/evaluation/export", ("edsr_tf.data", "edsr_tf.inference", "edsr_tf.inference_precision",
                                          "edsr_tf.evaluation", "edsr_tf.torch_import", "edsr_tf.export")),
    ("training", ("edsr_tf.training",)),
    ("front ends", ("edsr_tf.cli_args", "edsr_tf.evaluate", "edsr_tf.upscale", "edsr_tf.convert",
                    "edsr_tf.export.cli", "edsr_tf.training.flags", "edsr_tf.training.cli",
                    "edsr_tf.pretrained.__main__")),
)
#: Known upward imports: training.app's ``main`` is train.py's front end (flags, exit codes) and
#: its job-folder check words errors as --out_dir; moving them out would empty this.
ALLOWED_UP = {("edsr_tf.training.app", "edsr_tf.cli_args"), ("edsr_tf.training.app", "edsr_tf.training.flags")}


def _layer(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (or of a name imported from it), None if not ours."""
    best, length = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = i, len(p)
    return best


def _owner(module: str) -> str:
    """The longest LAYERS prefix of ``module`` (``edsr_tf.cli_args.EXIT_USAGE`` → ``edsr_tf.cli_args``)."""
    return max((p for _, ps in LAYERS for p in ps if module == p or module.startswith(p + ".")), key=len)


def _upward_imports(files: list[Path], root: Path = REPO) -> tuple[list[str], list[str]]:
    """(imports from a higher layer not in :data:`ALLOWED_UP`, package modules in no layer)."""
    offenders, unplaced = [], []
    for path in files:
        name = _module_name(path, root)
        if path.relative_to(root).parts[0] != "edsr_tf" or name == "edsr_tf":
            continue
        own = _layer(name)
        if own is None:
            unplaced.append(name)
            continue
        for imported in sorted(_imports(path, root)):
            up = _layer(imported)
            if up is not None and up > own and (name, _owner(imported)) not in ALLOWED_UP:
                offenders.append(f"{name} ({LAYERS[own][0]}) imports {imported} ({LAYERS[up][0]})")
    return offenders, unplaced


def test_every_module_imports_only_from_its_layer_or_below():
    offenders, unplaced = _upward_imports(_source_files())
    assert not unplaced, f"modules in no layer (add them to LAYERS and the README): {unplaced}"
    assert not offenders, "imports from a higher layer:\n" + "\n".join(offenders)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """A model importing the evaluation (a layer up), even lazily, is reported; the allowed one is not."""
    (tmp_path / "edsr_tf" / "models").mkdir(parents=True)
    (tmp_path / "edsr_tf" / "training").mkdir(parents=True)
    bad = tmp_path / "edsr_tf" / "models" / "x.py"
    bad.write_text("def f():\n    from edsr_tf.evaluation import evaluate_set\n")
    app = tmp_path / "edsr_tf" / "training" / "app.py"
    app.write_text("from edsr_tf.cli_args import EXIT_USAGE\n")
    assert _upward_imports([bad, app], tmp_path) == (
        ["edsr_tf.models.x (models) imports edsr_tf.evaluation (data/inference/evaluation/export)",
         "edsr_tf.models.x (models) imports edsr_tf.evaluation.evaluate_set "
         "(data/inference/evaluation/export)"], [])


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
