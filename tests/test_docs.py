"""README.md and docs/*.md name only things that exist.

Every relative link (and its ``#anchor``) resolves; every ``python -m MODULE``, ``python path.py``,
``edsr-*`` console script and ``--flagfile=`` in them exists; and in the shell blocks, every ``--flag``
given to one of our tools is one that tool's ``--help`` lists, so a renamed flag cannot leave a stale
recipe behind.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
# Modules and programs that are not ours: they must exist, their flags are not checked.
FOREIGN_MODULES = {"pytest", "pip", "venv", "http.server"}
# Scripts whose flags belong to a subcommand (`prepare.py cache --div2k ...`).
SUBCOMMAND_TOOLS = {"datasets/prepare.py"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _scripts() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def _shell_commands(page: Path) -> list[list[str]]:
    """Each command of the page's bash blocks, as argv (continuations joined, comments dropped)."""
    commands = []
    for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang not in ("bash", "sh", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # quotes spanning a $(...) in a curl body: not one of our tools
                continue
            current: list[str] = []
            for word in words + ["&&"]:
                if word in ("&&", "||", "|", ";"):
                    if current:
                        commands.append(current)
                    current = []
                else:
                    current.append(word)
    return commands


def _tool(argv: list[str]) -> tuple[str, list[str]] | None:
    """(the tool our docs run, its arguments), or None for programs that are not ours."""
    if argv[0] in ("python", "python3") and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            return f"-m {argv[2]}", argv[3:]
        if argv[1].endswith(".py"):
            return argv[1], argv[2:]
        return None
    if argv[0].startswith("edsr-"):
        return argv[0], argv[1:]
    return None


def _named_things(page: Path) -> list[str]:
    """``python -m X`` / ``python X.py`` / ``edsr-x`` mentioned anywhere on the page (code or prose)."""
    text = page.read_text(encoding="utf-8")
    found = re.findall(r"python3? -m ([\w.]+)", text)
    found = [f"-m {m}" for m in found]
    found += re.findall(r"python3? ((?:[\w./-]+/)?[\w-]+\.py)\b", text)
    found += re.findall(r"(?<![\w/.-])(edsr-[a-z]+)\b", text)
    return found


@functools.cache
def _help(tool: str) -> str:
    if tool.startswith("-m "):
        cmd = [sys.executable, "-m", tool[3:], "--help"]
    elif tool.startswith("edsr-"):
        module, func = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"][tool].split(":")
        cmd = [sys.executable, "-c", f"import sys; sys.argv[0] = {tool!r}; from {module} import {func}; {func}()", "--help"]
    else:
        script, *sub = tool.split(" ")
        cmd = [sys.executable, script, *sub, "--helpfull" if script == "train.py" else "--help"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    return out.stdout + out.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_named_commands_exist(page: Path) -> None:
    scripts = _scripts()
    missing = []
    for thing in _named_things(page):
        if thing.startswith("-m "):
            module = thing[3:]
            if module in FOREIGN_MODULES:
                continue
            local = REPO / module.replace(".", "/")
            if not (local.with_suffix(".py").exists() or (local / "__main__.py").exists()):
                if importlib.util.find_spec(module.split(".")[0]) is None:
                    missing.append(f"python -m {module}")
        elif thing.startswith("edsr-"):
            if thing not in scripts and thing != "edsr-tf":
                missing.append(thing)
        elif not (REPO / thing).exists():
            missing.append(f"python {thing}")
    for flagfile in re.findall(r"--flagfile[= ](\S+\.cfg)", page.read_text(encoding="utf-8")):
        if "<" not in flagfile and "NAME" not in flagfile and not (REPO / flagfile).exists():
            missing.append(f"--flagfile={flagfile}")
    assert not missing, f"{page.name} names what does not exist: {sorted(set(missing))}"


def _flags_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for page in PAGES:
        for argv in _shell_commands(page):
            found = _tool(argv)
            if found is None or found[0][3:] in FOREIGN_MODULES:
                continue
            tool, args = found
            if tool in SUBCOMMAND_TOOLS and args and not args[0].startswith("-"):
                tool, args = f"{tool} {args[0]}", args[1:]
            flags = {a.split("=")[0] for a in args if a.startswith("--") and len(a) > 2}
            used.setdefault(tool, set()).update(flags)
    return used


FLAGS_USED = _flags_used()


@pytest.mark.parametrize("tool", sorted(FLAGS_USED))
def test_shell_blocks_use_existing_flags(tool: str) -> None:
    help_text = _help(tool)
    assert "usage" in help_text.lower() or "flags:" in help_text, f"{tool} --help failed:\n{help_text[-2000:]}"
    def listed(flag: str) -> bool:  # absl lists booleans as --[no]name
        names = (flag, "--[no]" + flag[2:], "--[no]" + flag[4:] if flag.startswith("--no") else flag)
        return any(re.search(re.escape(n) + r"(?![\w-])", help_text) for n in names)

    unknown = sorted(f for f in FLAGS_USED[tool] if not listed(f))
    assert not unknown, f"the docs give {tool} flags its --help does not list: {unknown}"


def test_the_checks_see_the_docs() -> None:
    """The parsers above find what the README does hold (so the tests cannot pass on nothing)."""
    assert "-m edsr_tf.upscale" in FLAGS_USED and "--out_dir" in FLAGS_USED["-m edsr_tf.upscale"]
    assert "train.py" in FLAGS_USED and "--flagfile" in FLAGS_USED["train.py"]
    assert len(LINK.findall((REPO / "README.md").read_text())) >= 8


def test_model_tables_match_the_manifest() -> None:
    """README's and docs/models.md's shipped-model tables are the manifest's (regenerated, not typed)."""
    out = subprocess.run([sys.executable, "benchmarks/update_model_tables.py", "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def _recipe(page: Path, name: str) -> str:
    text = page.read_text(encoding="utf-8")
    m = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```\w*\n(.*?)^```", text, re.M | re.S)
    assert m, f"no recipe {name!r} in {page.name}"
    return m.group(1)


@pytest.mark.parametrize("name", ["opencv-python", "rest-curl"])
def test_readme_recipes_are_the_tested_ones(name: str) -> None:
    """README's copies of the OpenCV and curl recipes are those docs/use_it_from.md runs in its tests."""
    assert _recipe(REPO / "README.md", name) == _recipe(REPO / "docs" / "use_it_from.md", name)
