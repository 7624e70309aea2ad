"""Rewrites the shipped-model tables of README.md and docs/models.md from the manifest.

The tables are `python -m edsr_tf.pretrained --markdown`: the results table (README and
docs/models.md), the model cards and the curves (docs/models.md). Run it after
`benchmarks/ship_pretrained.py` has changed the manifest; `--check` exits 1 when a page is stale.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = "| set | scale | bicubic | shipped model"
CARDS = "| model | trained"
CURVES = "- `edsr_"
PAGES = {REPO / "README.md": (RESULTS,), REPO / "docs" / "models.md": (RESULTS, CARDS, CURVES)}


def generated_blocks() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "edsr_tf.pretrained", "--markdown"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    blocks = [b.strip("\n") for b in re.split(r"\n\s*\n", out.strip()) if b.strip()]
    return {start: next(b for b in blocks if b.startswith(start)) for start in (RESULTS, CARDS, CURVES)}


def replace_block(text: str, start: str, new_block: str) -> str:
    """``text`` with the run of lines beginning at the first line starting with ``start`` replaced."""
    lines = text.split("\n")
    try:
        i = next(k for k, line in enumerate(lines) if line.startswith(start))
    except StopIteration:
        raise SystemExit(f"error: no block starting with {start!r}") from None
    prefix = "|" if start.startswith("|") else "- `"
    j = i
    while j < len(lines) and lines[j].startswith(prefix):
        j += 1
    return "\n".join(lines[:i] + new_block.split("\n") + lines[j:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report stale pages (exit 1 if any)")
    args = p.parse_args()
    blocks = generated_blocks()
    stale = []
    for page, starts in PAGES.items():
        old = page.read_text(encoding="utf-8")
        new = old
        for start in starts:
            new = replace_block(new, start, blocks[start])
        if new != old:
            stale.append(page.relative_to(REPO).as_posix())
            if not args.check:
                page.write_text(new, encoding="utf-8")
    verb = "stale" if args.check else "updated"
    print(f"{verb}: {', '.join(stale) or 'none'}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
