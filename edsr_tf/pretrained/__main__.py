"""``python -m edsr_tf.pretrained [--markdown]``: the shipped models and their model cards.

Plain: one line per model. ``--markdown``: the README's results table (bicubic | shipped |
shipped + self-ensemble | the paper's DIV2K EDSR-baseline) and one card per model, all read
from ``manifest.json`` (written by ``benchmarks/ship_pretrained.py``, which measured them).
"""

from __future__ import annotations

import sys
from typing import Sequence

from edsr_tf.pretrained import JPEG_SUFFIX, PretrainedError, PretrainedModel, format_models, list_models
from edsr_tf.units import format_bytes


def _fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _psnr_ssim(r: dict | None, psnr: str = "psnr", ssim: str = "ssim") -> str:
    return "– / –" if r is None else f"{_fmt(r.get(psnr))} / {_fmt(r.get(ssim), '.4f')}"


def results_table(models: Sequence[PretrainedModel]) -> str:
    """Bicubic | shipped | shipped + self-ensemble | paper, per set and scale (Set5 first).

    The bicubic-trained models only: the JPEG-robust ones are scored on JPEG inputs
    (``benchmarks/jpeg_inputs.py``), their clean figures are in their cards.
    """
    entries = []
    for m in models:
        if m.name.endswith(JPEG_SUFFIX):
            continue
        results = m.card.get("results", [])
        plus = {r["set"]: r for r in results if r.get("self_ensemble")}
        entries += [(r, plus.get(r["set"])) for r in results if not r.get("self_ensemble")]
    entries.sort(key=lambda e: (e[0]["set"] != "Set5", e[0]["set"], e[0]["scale"]))
    rows = [[r["set"], f"×{r['scale']}", _psnr_ssim(r, "bicubic_psnr", "bicubic_ssim"),
             f"**{_fmt(r['psnr'])}** / {_fmt(r['ssim'], '.4f')}", _psnr_ssim(p),
             _fmt(r.get("paper_edsr_baseline_div2k"))] for r, p in entries]
    return _markdown(["set", "scale", "bicubic", "shipped model", "shipped + self-ensemble",
                      "paper EDSR-baseline (DIV2K)"], rows)


def _drops(card: dict, variant: str) -> str:
    d = card.get("tflite_psnr_drop_db", {}).get(variant, {})
    return f"{_fmt(d.get('Set5'), '.3f')}, {_fmt(d.get('Set14'), '.3f')}"


def _steps(card: dict) -> str:
    """Total steps of the model's whole lineage, and the last run's (cards before lineage
    was recorded give the last run only)."""
    last = card.get("steps")
    total = card.get("total_steps")
    if total is None or total == last:
        return f"{last:,}" if isinstance(last, int) else str(last)
    legs = " + ".join(f"{leg['steps']:,} {leg.get('precision') or ''}".strip() for leg in card.get("lineage", []))
    return f"{total:,} ({legs})"


def cards(models: Sequence[PretrainedModel]) -> str:
    """One row per model: how it was trained, stored, and what its TFLite exports lose."""
    rows = []
    for m in models:
        c = m.card
        rows.append([
            f"`{m.name}`", f"from {c['init_from']}" if c.get("init_from") else "from scratch",
            _steps(c), str(c.get("schedule")), str(c.get("precision")),
            f"{_fmt(c.get('wall_hours'))} h", str(c.get("hardware")),
            f"{c.get('stored_dtype')}, {format_bytes(m.size)} (Δ {_fmt(c.get('fp16_psnr_change_db'), '.4f')} dB)",
            f"{_drops(c, 'dynamic')} / {_drops(c, 'int8')} dB"])
    return _markdown(["model", "trained", "steps (all runs; last run)", "last run's schedule",
                      "last run's precision", "wall time", "hardware",
                      "stored", "TFLite dynamic / int8 drop (Set5, Set14)"], rows)


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
    from edsr_tf.cli_args import ArgumentParser, print_error

    p = ArgumentParser(prog="python -m edsr_tf.pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", action="store_true", help="the README's results table and model cards")
    args = p.parse_args(argv)
    try:
        models = list_models()
        if not args.markdown:
            print(format_models())
            return 0
    except PretrainedError as e:
        print_error(str(e))
        return 1
    if not models:
        print_error("no shipped models in this installation")
        return 1
    print(results_table(models) + "\n\n" + cards(models) + "\n\n" + curves(models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
