"""report.json + report.md next to the artifacts, and the console summary table."""

from __future__ import annotations

import json
from pathlib import Path

from edsr_tf.units import format_bytes


def _fmt(x, spec: str, default: str = "-") -> str:
    return default if x is None else format(x, spec)


def _latency(rec: dict, unit: str = "", ms_key: str = "latency_ms", input_key: str = "latency_input") -> str:
    shape = rec.get(input_key)
    if rec.get(ms_key) is None:
        return "-"
    return _fmt(rec.get(ms_key), ".1f") + unit + (f" @{shape[2]}x{shape[1]}" if shape else "")


def _difference_and_latency(a: dict) -> tuple[str, str]:
    """The row's parity and latency cells. A web artifact's are the page's own in headless
    Chromium (the largest difference of its PNG from Keras in grey levels, its model time),
    not those of onnxruntime running the same ONNX file; ``-`` when no browser ran it."""
    if a.get("format") != "web":
        return _fmt(a.get("max_abs_diff"), ".2e"), _latency(a)
    levels = a.get("browser_max_diff_levels")
    diff = "-" if levels is None else f"{levels} level{'s' if levels != 1 else ''} (browser)"
    latency = _latency(a, ms_key="browser_ms", input_key="browser_input")
    return diff, latency + (" (browser)" if latency != "-" else "")


def summary_rows(report: dict) -> list[list[str]]:
    """One row per artifact: model, format, variant, size, parity, PSNR, drop, latency, status."""
    rows = []
    for a in report["artifacts"]:
        variant = a["variant"] + (f" tile{a['tile'][0]}x{a['tile'][1]}" if a.get("tile") else "")
        diff, latency = _difference_and_latency(a)
        unchecked = a.get("format") == "web" and a.get("passed") and "browser_max_diff_levels" not in a
        rows.append(
            [
                a["model"],
                a["format"],
                variant,
                format_bytes(a["size_bytes"]),
                diff,
                _fmt(a.get("psnr_db"), ".2f"),
                _fmt(a.get("psnr_drop_db"), "+.3f"),
                latency,
                ("ok (no browser)" if unchecked else "ok") if a.get("passed") else "FAIL",
            ]
        )
    return rows


def step_line(a: dict) -> str:
    """The console's line for a verified artifact: size, parity (fp32: max |Δ|; quantized: PSNR
    and drop) and latency; a web artifact's difference and latency are the browser's own."""
    if a.get("format") == "web":
        if "browser_max_diff_levels" not in a:
            return f"{format_bytes(a['size_bytes'])}, not run in a browser ({a.get('browser_check', '-')})"
        ms = f", {a['browser_ms']:.1f} ms" if a.get("browser_ms") is not None else ""
        return (f"{format_bytes(a['size_bytes'])}, in Chromium: max|Δ| {a['browser_max_diff_levels']} grey "
                f"level(s){ms}{_jpeg_suffix(a)}")
    parity = (f"max|Δ| {a['max_abs_diff']:.2e}" if a.get("variant") == "fp32"
              else f"PSNR {a['psnr_db']:.2f} dB (drop {a['psnr_drop_db']:+.3f} dB)")
    latency = f", {a['latency_ms']:.1f} ms" if a.get("latency_ms") is not None else ""  # --latency_runs 0
    return f"{format_bytes(a['size_bytes'])}, {parity}{latency}"


def _jpeg_suffix(a: dict) -> str:
    """``; JPEG model NAME: max|Δ| ...``: the step line's word on a web page's JPEG-robust model."""
    j = a.get("jpeg_model")
    if not j or j.get("max_abs_diff") is None:
        return ""
    levels = j.get("browser_max_diff_levels")
    return (f"; + JPEG model {j['name']}: max|Δ| {j['max_abs_diff']:.2e} (onnxruntime)"
            + (f", {levels} grey level(s) in Chromium" if levels is not None else ""))


def web_jpeg_lines(report: dict) -> list[str]:
    """One line per web page that carries a JPEG-robust model: which, from which file, for which
    inputs, and its verified difference from its own Keras model."""
    lines = []
    for a in report["artifacts"]:
        j = a.get("format") == "web" and a.get("jpeg_model")
        if not j:
            continue
        size = f", {format_bytes(j['size_bytes'])}" if j.get("size_bytes") else ""
        diff = "-" if j.get("max_abs_diff") is None else f"{j['max_abs_diff']:.2e}"
        levels = j.get("browser_max_diff_levels")
        browser = f"; in Chromium (?input=jpeg) {levels} grey level(s)" if levels is not None else ""
        verdict = "" if j.get("passed", True) else f"; FAILED: {j.get('failure')}"
        lines.append(f"- web page `{a['path']}` of {a['model']} also carries the JPEG-robust model {j['name']} "
                     f"(`{j['onnx']}` from `{j['weights']}`{size}), used for JPEGs of estimated quality <= "
                     f"{j.get('compressed_quality', 90)}: max |onnx - keras| {diff} on [0,255] against its own "
                     f"Keras model (onnxruntime){browser}{verdict}")
    return lines


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


def _web_line(report: dict) -> list[str]:
    """The header line saying what a web row measures, when there is one."""
    web = [a for a in report["artifacts"] if a.get("format") == "web"]
    if not web:
        return []
    threads = {a.get("browser_threads") for a in web} - {None}
    where = f"headless Chromium, {', '.join(map(str, sorted(threads)))} WASM thread(s)" if threads \
        else "headless Chromium (not run here)"
    return [f"- web rows: the page itself in {where}: the largest difference of its PNG from Keras in "
            "grey levels, and the model's time in the page (one run, the first verification image)"]


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
        *_web_line(report),
        *web_jpeg_lines(report),
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
                  "(set at export with `--max_pixels`). Estimated activation memory:", ""]
        for m, info in serving.get("models", {}).items():
            lines.append(f"- {m}: {info['activation_bytes_per_lr_pixel']:,} bytes per LR pixel, "
                         f"{format_bytes(info['activation_bytes_at_max_pixels'])} at the limit")
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
