"""report.json + report.md next to the artifacts, and the console summary table."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _fmt(x, spec: str, default: str = "-") -> str:
    return default if x is None else format(x, spec)


def _latency(rec: dict, unit: str = "") -> str:
    shape = rec.get("latency_input")
    return _fmt(rec.get("latency_ms"), ".1f") + unit + (f" @{shape[2]}x{shape[1]}" if shape else "")


def summary_rows(report: dict) -> list[list[str]]:
    """One row per artifact: model, format, variant, size, parity, PSNR, drop, latency, status."""
    rows = []
    for a in report["artifacts"]:
        variant = a["variant"] + (f" tile{a['tile'][0]}x{a['tile'][1]}" if a.get("tile") else "")
        rows.append(
            [
                a["model"],
                a["format"],
                variant,
                _fmt_size(a["size_bytes"]),
                _fmt(a.get("max_abs_diff"), ".2e"),
                _fmt(a.get("psnr_db"), ".2f"),
                _fmt(a.get("psnr_drop_db"), "+.3f"),
                _latency(a),
                "ok" if a.get("passed") else "FAIL",
            ]
        )
    return rows


HEADER = ["model", "format", "variant", "size", "max abs diff", "PSNR dB", "drop dB", "latency ms", "check"]


def reference_lines(report: dict) -> list[str]:
    """One line per model: the Keras model's own PSNR and latency, which the artifacts are measured against."""
    return [f"{m}: PSNR {_fmt(r.get('psnr_db'), '.2f')} dB, latency {_latency(r, ' ms')}"
            for m, r in (report.get("reference") or {}).items()]


def table(report: dict) -> str:
    """The summary as a plain-text table (console), then the Keras reference per model."""
    rows = [HEADER] + summary_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"keras reference, {ln}" for ln in reference_lines(report)])


def markdown(report: dict) -> str:
    """The report as Markdown."""
    lines = [
        f"# Export report: {', '.join(report['models'])}",
        "",
        f"- weights: `{report['weights']}`",
        f"- config: `{json.dumps(report['config'], sort_keys=True)}`",
        f"- created: {report['created']} on {report['machine']}",
        f"- verification images: {', '.join(report['verification']['images'])} "
        f"(LR = MATLAB-bicubic downscale of HR; PSNR on Y, {report['verification']['shave']} shaved)",
        f"- fp32 tolerance: max |export - keras| <= {report['verification']['tolerance']:g} on [0, 255]",
        f"- latency: median of {report['verification']['latency_runs']} runs, batch 1, "
        f"at the LR size shown (WxH), {report['machine_threads']} CPU threads",
        "",
        "| " + " | ".join(HEADER) + " | file |",
        "|" + "---|" * (len(HEADER) + 1),
    ]
    for row, a in zip(summary_rows(report), report["artifacts"]):
        where = f"`{a['path']}`" if a.get("passed") else f"not written (`{a['path']}`)"
        lines.append("| " + " | ".join(row) + f" | {where} |")
    failed = [a for a in report["artifacts"] if not a.get("passed")]
    if failed:
        lines += ["", f"## Failed verification: {len(failed)} artifact(s), left out of this folder", ""]
        for a in failed:
            tile = f" tile{a['tile'][0]}x{a['tile'][1]}" if a.get("tile") else ""
            lines.append(f"- {a['model']} {a['format']} {a['variant']}{tile}: {a.get('failure', 'failed')}")
    serving = report.get("serving")
    if serving:
        lines += ["", "## SavedModel input limit", "",
                  f"Every signature refuses a request of more than {serving['max_pixels']:,} LR pixels "
                  "(N x H x W; serving_bytes: W x H per image, read from the header) with InvalidArgument "
                  "(`python -m export --max-pixels`). Estimated activation memory:", ""]
        for m, info in serving.get("models", {}).items():
            lines.append(f"- {m}: {info['activation_bytes_per_lr_pixel']:,} bytes per LR pixel, "
                         f"{_fmt_size(info['activation_bytes_at_max_pixels'])} at the limit")
        versions = report.get("savedmodel_versions") or {}
        if versions:
            lines += ["", "SavedModel versions in this folder: "
                      + "; ".join(f"{m}: {', '.join(map(str, v)) or '-'}" for m, v in versions.items())]
    lines += ["", "## Keras reference", "",
              "The Keras model in TensorFlow on the same images: what every artifact above is compared "
              f"with (`{report['weights']}`).", ""]
    lines += [f"- {ln}" for ln in reference_lines(report)] + [""]
    notes = report.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_report(report: dict, directory: str | Path) -> tuple[Path, Path]:
    """Writes ``report.json`` and ``report.md`` into ``directory`` (atomically)."""
    from edsr_tf.images import atomic_write_bytes

    directory = Path(directory)
    j = atomic_write_bytes(directory / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    m = atomic_write_bytes(directory / "report.md", markdown(report).encode())
    return j, m
