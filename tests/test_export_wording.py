"""What the export says: the web row is the browser's own, one size unit (MiB), the current flag
names in report.md and in the SavedModel's over-limit error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edsr_tf.export import report as report_module
from edsr_tf.units import format_bytes

#: Flag spellings the export's messages must not use any more (the CLI's deprecated aliases).
OLD_SPELLING = re.compile(r"--(max-pixels|verify-max-side|max-psnr-drop|calibration-\w+|latency-runs)\b"
                          r"|python -m export")


def _report(*artifacts: dict) -> dict:
    return {
        "models": ["m_x2"], "weights": "m.weights.h5", "config": {}, "created": "now", "machine": "test",
        "machine_threads": 2,
        "verification": {"images": ["photo 48x40"], "shave": "scale px", "tolerance": 0.01, "latency_runs": 3},
        "reference": {"m_x2": {"psnr_db": 33.0, "latency_ms": 10.0, "latency_input": [1, 40, 48, 3]}},
        "artifacts": list(artifacts),
        "serving": {"max_pixels": 1 << 20, "models": {"m_x2": {"activation_bytes_per_lr_pixel": 1000,
                                                                "activation_bytes_at_max_pixels": 1000 << 20}}},
    }


ONNX = {"model": "m_x2", "format": "onnx", "variant": "fp32", "size_bytes": 5_560_000, "max_abs_diff": 3.1e-5,
        "psnr_db": 33.0, "psnr_drop_db": 0.0, "latency_ms": 12.3, "latency_input": [1, 40, 48, 3],
        "passed": True, "path": "onnx/m_x2_fp32.onnx"}
WEB = dict(ONNX, format="web", path="web", max_abs_diff=2.9e-5, latency_ms=11.1,
           browser_check="passed", browser_max_diff_levels=1, browser_ms=456.7, browser_total_ms=700.0,
           browser_threads=2, browser_input=[1, 40, 48, 3])
WEB_UNCHECKED = {k: v for k, v in WEB.items() if not k.startswith("browser_")} | {
    "browser_check": "skipped: no Chromium found"}


def test_the_web_row_is_the_browsers_own():
    onnx_row, web_row, unchecked = report_module.summary_rows(_report(ONNX, WEB, WEB_UNCHECKED))
    assert onnx_row[4:9] == ["3.10e-05", "33.00", "+0.000", "12.3 @48x40", "ok"]
    assert web_row[4] == "1 level (browser)" and web_row[7] == "456.7 @48x40 (browser)"
    assert "2.90e-05" not in web_row and "11.1" not in " ".join(web_row)  # onnxruntime's figures
    assert unchecked[4] == unchecked[7] == "-" and unchecked[8] == "ok (no browser)"
    assert report_module.step_line(WEB) == "5.3 MiB, in Chromium: max|Δ| 1 grey level(s), 456.7 ms"
    md = report_module.markdown(_report(ONNX, WEB))
    assert "- web rows: the page itself in headless Chromium, 2 WASM thread(s)" in md


def test_one_size_unit():
    assert [format_bytes(n) for n in (512, 2048, 2_924_480, 3 << 30)] == [
        "512 bytes", "2.0 KiB", "2.8 MiB", "3.0 GiB"]
    rep = _report(ONNX, WEB)
    text = report_module.markdown(rep) + report_module.table(rep) + report_module.step_line(ONNX)
    sizes = re.findall(r"\d (bytes|[KMGT]i?B)\b", text)
    assert sizes and set(sizes) <= {"MiB", "GiB", "KiB", "bytes"}, sizes


def test_report_md_names_the_current_flags():
    md = report_module.markdown(_report(ONNX))
    assert "`--max_pixels`" in md
    assert not OLD_SPELLING.search(md), OLD_SPELLING.search(md)


@pytest.mark.slow
def test_a_savedmodel_export_says_max_pixels(tmp_path, photo):
    """A real SavedModel export (tiny model): its over-limit error and its report.md name --max_pixels."""
    import keras
    import tensorflow as tf

    from edsr_tf.export import ExportOptions, export_model
    from edsr_tf.export.savedmodel import SavedModelRunner
    from edsr_tf.models import ModelConfig, build_model

    keras.utils.set_random_seed(0)
    config = ModelConfig.from_preset("edsr_baseline", 2, n_resblocks=1, n_feats=8)
    out = tmp_path / "out"
    export_model(build_model(config), config, out,
                 ExportOptions(formats=("savedmodel",), verify_images=[("p", photo[:16, :20])], latency_runs=0,
                               max_pixels=400),
                 progress=None)
    assert not OLD_SPELLING.search((out / "report.md").read_text())
    runner = SavedModelRunner(next((out / "savedmodel").glob("*/1")))
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        runner.run_uint8(np.zeros((1, 21, 20, 3), np.uint8), "serving_uint8")
    assert "(set at export with --max_pixels)" in str(e.value) and not OLD_SPELLING.search(str(e.value))
