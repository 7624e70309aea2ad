"""The web bundle (``python -m export --formats web``) in a real headless Chromium.

The page is served by ``python -m http.server``, an image goes through its file input and the
downloaded PNG is compared with the Keras model and onnxruntime (within one grey level). A tiny
random EDSR keeps it quick: exactness does not need a trained model. Needs Playwright (pip),
Chromium (apt) and the npm runtime (``npm ci --prefix edsr_tf/export/web_page``); where one is
missing the tests skip, and fail under CI=true (.ci/run installs all three).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_guard import skip_or_fail

from edsr_tf.export import ExportError
from edsr_tf.export import web

SET5_X2 = "Set5/image_SRF_2"
TINY = dict(n_resblocks=1, n_feats=8)


@pytest.fixture(scope="module")
def web_ready() -> None:
    reason = web.browser_unavailable()
    if reason:
        skip_or_fail(reason)
    try:
        web.runtime_dist()
    except ExportError as e:
        skip_or_fail(str(e))


@pytest.fixture(scope="module")
def bundle(web_ready, tmp_path_factory):
    """A tiny random EDSR x2 exported with the CLI: ``(web folder, keras model, report)``."""
    import keras

    from edsr_tf.export.cli import main
    from edsr_tf.models import ModelConfig, build_model, save_model

    keras.utils.set_random_seed(0)
    config = ModelConfig.from_preset("edsr_baseline", 2, **TINY)
    model = build_model(config)
    root = tmp_path_factory.mktemp("web_export")
    weights = root / "tiny_x2.weights.h5"
    save_model(model, weights, config)
    out = root / "export"
    rc = main(["--weights", str(weights), "--formats", "web", "--out_dir", str(out),
               "--latency_runs", "0", "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    return out / "web", model, report


def _start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """``python -m http.server`` on a free port of 127.0.0.1, exactly as a user serves the folder."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"port (\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"http.server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{m.group(1)}/"


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(bundle):
    proc, url = _start_server(bundle[0])
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def browser(web_ready):
    with web.chromium() as b:
        yield b


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = Path(os.environ.get("EDSR_TF_TEST_ARTIFACTS") or tmp_path_factory.mktemp("web_artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _keras_uint8(model, lr: np.ndarray) -> np.ndarray:
    from edsr_tf.metrics import quantize

    y = model(lr[None].astype(np.float32), training=False)
    return quantize(np.asarray(y)[0])


def _ort_uint8(folder: Path, lr: np.ndarray) -> np.ndarray:
    from edsr_tf.export.onnx import OnnxRunner
    from edsr_tf.metrics import quantize

    cfg = json.loads((folder / "config.json").read_text())
    runner = OnnxRunner(folder / cfg["models"][0]["file"])
    return quantize(runner.run(lr[None].astype(np.float32))[0])


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _set5_lr(shared_data: Path) -> Path:
    path = shared_data / "benchmark" / SET5_X2 / "img_005_SRF_2_LR.png"  # "woman", 114x172: not square
    if not path.is_file():
        skip_or_fail(f"{path} not found")
    return path


def test_bundle_is_self_contained(bundle):
    folder, _, report = bundle
    for name in ("index.html", "app.js", "worker.js", "lib.js", "style.css", "sw.js", "config.json",
                 "ort/ort.wasm.min.js", "ort/ort-wasm-simd-threaded.js", "ort/ort-wasm-simd-threaded.wasm"):
        assert (folder / name).is_file(), name
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["runtime"] == {"name": "onnxruntime-web", "version": web.pinned_version(), "backend": "wasm"}
    (entry,) = cfg["models"]
    assert entry["scale"] == 2 and (folder / entry["file"]).is_file() and entry["overlap"] > 0
    for name in web.PAGE_FILES + ("sw.js",):  # no CDN: nothing of the page's own points off-site
        assert not re.search(r"https?://", (folder / name).read_text()), name
    (art,) = [a for a in report["artifacts"] if a["format"] == "web"]
    assert art["passed"] and art["max_abs_diff"] < 1e-2
    assert art["browser_check"] == "passed" and art["browser_max_diff_levels"] <= 1


def test_set5_image_matches_keras_and_onnxruntime(bundle, server, context, shared_data, artifacts):
    folder, model, _ = bundle
    image = _set5_lr(shared_data)
    lr = _read_rgb(image)
    page = web.open_page(context, server)
    try:
        result = web.upscale_file(page, image)
        assert "error" not in result, result.get("error")
        got = web.decode_png(result["png"])
        assert got.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
        assert _max_diff(got, _keras_uint8(model, lr)) <= 1
        assert _max_diff(got, _ort_uint8(folder, lr)) <= 1
        from edsr_tf.imresize import imresize

        bicubic = web.decode_png(web.canvas_png(page, "before"))
        assert _max_diff(bicubic, imresize(lr, 2)) <= 1
        assert page.evaluate("() => window.edsr.isolated")  # service worker → threads possible
        page.fill("#slider", "35")
        page.dispatch_event("#slider", "input")
        shot = artifacts / "web_page_slider.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nweb page screenshot (before/after slider): {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        page.close()


def test_large_image_tiled_equals_untiled(bundle, server, context, photo, tmp_path):
    from PIL import Image

    from edsr_tf.imresize import imresize

    _, model, _ = bundle
    lr = imresize(photo, 2)  # 600x902
    image = tmp_path / "large.png"
    Image.fromarray(lr).save(image)
    outputs = {}
    for tile in (0, 128):
        page = web.open_page(context, f"{server}index.html?tile={tile}")
        try:
            result = web.upscale_file(page, image)
            assert "error" not in result, result.get("error")
            outputs[tile] = web.decode_png(result["png"])
            expected_tiles = 1 if tile == 0 else -(-600 // 128) * -(-902 // 128)
            assert result["stats"]["tiles"] == expected_tiles
            log = page.evaluate("() => window.edsr.progressLog")  # the progress bar, tile by tile
            assert log == [[i, expected_tiles] for i in range(expected_tiles + 1)]
        finally:
            page.close()
    assert _max_diff(outputs[128], outputs[0]) <= 1  # no seams
    assert _max_diff(outputs[0], _keras_uint8(model, lr)) <= 1


def test_non_image_shows_error(server, context, tmp_path):
    page = web.open_page(context, server)
    try:
        for name, data in (("notes.txt", b"not an image\n"), ("fake.png", b"\x89PNG but not really")):
            path = tmp_path / name
            path.write_bytes(data)
            result = web.upscale_file(page, path, timeout_s=30)
            assert "not an image" in result.get("error", ""), result
            assert page.is_visible("#error")
            assert name in page.inner_text("#error")
            assert page.evaluate("() => window.edsr.state") == "ready"  # usable again, not frozen
    finally:
        page.close()


def test_too_large_shows_error(server, context, shared_data):
    image = _set5_lr(shared_data)  # 114 wide, 172 high = 19,608 px
    page = web.open_page(context, f"{server}index.html?maxPixels=10000")
    try:
        result = web.upscale_file(page, image, timeout_s=30)
        assert "accepts at most" in result.get("error", ""), result
        assert "114×172" in page.inner_text("#error")
    finally:
        page.close()


def test_works_offline_once_loaded(bundle, browser, shared_data):
    folder, model, _ = bundle
    image = _set5_lr(shared_data)
    proc, url = _start_server(folder)  # its own origin: a fresh service-worker install
    ctx = browser.new_context(accept_downloads=True)
    try:
        page = web.open_page(ctx, url)
        _stop(proc)  # the host is gone
        page.reload()
        web.wait_state(page, ("ready", "error"))
        result = web.upscale_file(page, image)
        assert "error" not in result, result.get("error")
        assert _max_diff(web.decode_png(result["png"]), _keras_uint8(model, _read_rgb(image))) <= 1
    finally:
        ctx.close()
        if proc.poll() is None:
            _stop(proc)


def test_page_tiling_is_inference_tiling(server, context):
    from edsr_tf.inference import axis_tiles

    cases = [(n, t, o) for n in (1, 7, 64, 100, 257, 1000) for t in (0, 16, 50, 128) for o in (0, 6, 37)]
    page = web.open_page(context, server)
    try:
        got = page.evaluate(
            """async (cases) => { const m = await import('./lib.js');
                 return cases.map(([n, t, o]) => m.axisTiles(n, t, o).map(
                   (a) => [a.winStart, a.winLen, a.coreStart, a.coreLen])); }""", cases)
    finally:
        page.close()
    for (n, t, o), js in zip(cases, got):
        assert [list(a) for a in axis_tiles(n, t, o)] == js, (n, t, o)


def test_default_weights_is_the_shipped_model():
    from edsr_tf import pretrained
    from edsr_tf.export.cli import DEFAULT_WEIGHTS, default_weights
    from edsr_tf.models import read_config

    assert DEFAULT_WEIGHTS == "edsr_baseline_x2"
    assert DEFAULT_WEIGHTS in pretrained.load_manifest()  # this repository ships it
    assert default_weights() == DEFAULT_WEIGHTS
    assert read_config(DEFAULT_WEIGHTS).scales == (2,)


@pytest.mark.parametrize("manifest", ["lacks_it", "unreadable"])
def test_default_weights_not_shipped_is_one_error(tmp_path, monkeypatch, capsys, manifest):
    """An installation without the default model: export without --weights says so, writes nothing."""
    from edsr_tf import pretrained
    from edsr_tf.export.cli import DEFAULT_WEIGHTS, main

    doc = json.loads((pretrained.PACKAGE_DIR / pretrained.MANIFEST).read_text())
    del doc["models"][DEFAULT_WEIGHTS]
    text = json.dumps(doc) if manifest == "lacks_it" else "{not json"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / pretrained.MANIFEST).write_text(text)
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", tmp_path / "pkg")
    assert DEFAULT_WEIGHTS not in (pretrained.load_manifest() if manifest == "lacks_it" else {})
    rc = main(["--formats", "web", "--out_dir", str(tmp_path / "out"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), lines
    if manifest == "lacks_it":
        others = ", ".join(sorted(doc["models"]))
        assert f"{DEFAULT_WEIGHTS} is not shipped" in lines[0] and f"(shipped: {others})" in lines[0]
        assert "--weights" in lines[0]
    else:
        assert "shipped models cannot be read" in lines[0] and pretrained.MANIFEST in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_runtime_names_the_install_command(tmp_path):
    with pytest.raises(ExportError, match=re.escape(web.INSTALL_HINT)):
        web.runtime_dist(tmp_path)
