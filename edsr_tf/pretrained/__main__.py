"""``python -m edsr_tf.pretrained [--markdown]``: the shipped models and their model cards.

Plain: one line per model. ``--markdown``: the README's results table (bicubic | shipped |
shipped + self-ensemble | the paper's DIV2K EDSR-baseline) and one card per model, all read
from ``manifest.json`` (written by ``benchmarks/ship_pretrained.py``, which measured them).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from edsr_tf.pretrained import PretrainedError, PretrainedModel, format_models, list_models


def _fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def results_table(models: Sequence[PretrainedModel]) -> str:
    rows = ["| set | scale | bicubic | shipped model | shipped + self-ensemble | paper EDSR-baseline (DIV2K) |",
            "|---|---|---|---|---|---|"]
    entries = []
    for m in models:
        results = m.card.get("results", [])
        plain = {r["set"]: r for r in results if not r.get("self_ensemble")}
        plus = {r["set"]: r for r in results if r.get("self_ensemble")}
        for name, r in plain.items():
            entries.append((name, r["scale"], r, plus.get(name)))
    for name, scale, r, p in sorted(entries, key=lambda e: (e[0] != "Set5", e[0], e[1])):
        rows.append(
            f"| {name} | ×{scale} | {_fmt(r.get('bicubic_psnr'))} / {_fmt(r.get('bicubic_ssim'), '.4f')} "
            f"| **{_fmt(r['psnr'])}** / {_fmt(r['ssim'], '.4f')} "
            f"| {_fmt(p and p['psnr'])} / {_fmt(p and p['ssim'], '.4f')} "
            f"| {_fmt(r.get('paper_edsr_baseline_div2k'))} |")
    return "\n".join(rows)


def cards(models: Sequence[PretrainedModel]) -> str:
    rows = ["| model | trained | steps | schedule | precision | wall time | hardware | stored | TFLite dynamic / int8 drop (Set5, Set14) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        c = m.card
        drops = c.get("tflite_psnr_drop_db", {})

        def pair(variant: str) -> str:
            d = drops.get(variant, {})
            return f"{_fmt(d.get('Set5'), '.3f')}, {_fmt(d.get('Set14'), '.3f')}"

        init = f"from {c['init_from']}" if c.get("init_from") else "from scratch"
        rows.append(
            f"| `{m.name}` | {init} | {c.get('steps')} | {c.get('schedule')} | {c.get('precision')} "
            f"| {_fmt(c.get('wall_hours'))} h | {c.get('hardware')} "
            f"| {c.get('stored_dtype')}, {m.size / 1e6:.1f} MB (Δ {_fmt(c.get('fp16_psnr_change_db'), '.4f')} dB) "
            f"| {pair('dynamic')} / {pair('int8')} dB |")
    return "\n".join(rows)


def curves(models: Sequence[PretrainedModel]) -> str:
    """The validation curve of each run (Set5 PSNR against steps and hours), from its card."""
    lines = []
    for m in models:
        for set_name, points in m.card.get("validation_curve", {}).items():
            text = ", ".join(f"{p['psnr']:.2f} @ {p['step']} ({p['hours']:.2f} h)" for p in points)
            lines.append(f"- `{m.name}`, {set_name} PSNR dB @ step (hours): {text}")
        if m.card.get("note"):
            lines.append(f"- `{m.name}`: {m.card['note']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edsr_tf.pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", action="store_true", help="the README's results table and model cards")
    args = p.parse_args(argv)
    try:
        models = list_models()
        if not args.markdown:
            print(format_models())
            return 0
    except PretrainedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not models:
        print("error: no shipped models in this installation", file=sys.stderr)
        return 1
    print(results_table(models) + "\n\n" + cards(models) + "\n\n" + curves(models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
