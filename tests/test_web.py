"""The web bundle (``python -m export --formats web``) in a real headless Chromium.

The page is served by ``python -m http.server``, an image goes through its file input and the
downloaded PNG is compared with the Keras model and onnxruntime (within one grey level). A tiny
random EDSR keeps it quick: exactness does not need a trained model. A second one, seeded
differently, is the bundle's JPEG-robust model (``--web_jpeg_model``), which the page must pick for
compressed JPEGs only, as ``edsr-upscale`` does. Needs Playwright (pip),
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


def _tiny(path: Path, scale: int = 2, seed: int = 0):
    """A tiny random EDSR saved to ``path``; returns the Keras model."""
    import keras

    from edsr_tf.models import ModelConfig, build_model, save_model

    keras.utils.set_random_seed(seed)
    config = ModelConfig.from_preset("edsr_baseline", scale, **TINY)
    model = build_model(config)
    save_model(model, path, config)
    return model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict:
    """Two tiny random EDSR x2 files: ``clean`` (seed 0) and ``jpeg`` (seed 1, the page's JPEG model)."""
    root = tmp_path_factory.mktemp("web_weights")
    models = {}
    for key, seed in (("clean", 0), ("jpeg", 1)):
        path = root / f"tiny_x2_{key}.weights.h5"
        models[key] = (path, _tiny(path, 2, seed))
    return models


@pytest.fixture(scope="module")
def bundle(web_ready, tiny_models, tmp_path_factory):
    """The tiny clean x2 exported with the CLI, the tiny "JPEG" x2 as ``--web_jpeg_model``:
    ``(web folder, keras model, report)``; the JPEG model's Keras model is ``tiny_models["jpeg"]``."""
    from edsr_tf.export.cli import main

    (weights, model), (jpeg_weights, _) = tiny_models["clean"], tiny_models["jpeg"]
    out = tmp_path_factory.mktemp("web_export") / "export"
    rc = main(["--weights", str(weights), "--web_jpeg_model", str(jpeg_weights), "--formats", "web",
               "--out_dir", str(out), "--latency_runs", "0", "--quiet"])
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
    entry, jpeg_entry = cfg["models"]  # the clean model first, then its JPEG-robust one
    assert entry["scale"] == 2 and (folder / entry["file"]).is_file() and entry["overlap"] > 0
    assert (folder / jpeg_entry["file"]).is_file()
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


# ----------------------------------------------------------------------------- the JPEG-robust model


def _jpeg_file(path: Path, rgb: np.ndarray, quality: int, **kwargs) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path, format="JPEG", quality=quality, **kwargs)
    return path


def _dqt(table_natural: np.ndarray, bits: int = 16) -> bytes:
    """A bare JPEG header: SOI, one DQT of 8- or 16-bit precision (table 0, zigzag order), EOI."""
    zigzag = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34,
              27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
              58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
    body = bytes([0x10 if bits == 16 else 0]) + b"".join(
        int(table_natural[z]).to_bytes(bits // 8, "big") for z in zigzag)
    return b"\xff\xd8" + b"\xff\xdb" + (len(body) + 2).to_bytes(2, "big") + body + b"\xff\xd9"


def _chromium_decode(page, path: Path) -> np.ndarray:
    """``path`` decoded by the page's browser as the worker does (createImageBitmap), RGB uint8."""
    import base64

    rgba = page.evaluate(
        """async (b64) => {
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
             const b = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
             const c = new OffscreenCanvas(b.width, b.height), x = c.getContext('2d');
             x.drawImage(b, 0, 0);
             return [b.width, b.height, Array.from(x.getImageData(0, 0, b.width, b.height).data)]; }""",
        base64.b64encode(path.read_bytes()).decode())
    w, h, data = rgba
    return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]


def test_page_jpeg_quality_is_estimate_quality(server, context, photo, tmp_path):
    """lib.js jpegQuality == edsr_tf.jpeg.estimate_quality of Pillow's table, byte for byte the same files."""
    import base64

    from PIL import Image

    from edsr_tf.jpeg import estimate_quality, ijg_table

    rgb = photo[:48, :64]
    files, expected = {}, {}
    for q in (10, 30, 50, 75, 90, 95, 100):
        files[f"q{q}"] = _jpeg_file(tmp_path / f"q{q}.jpg", rgb, q).read_bytes()
    rng = np.random.default_rng(0)
    custom = rng.integers(1, 120, 64).tolist()  # not an IJG table: any zigzag/natural mix-up shows
    files["custom"] = _jpeg_file(tmp_path / "custom.jpg", rgb, 0, qtables=[custom, custom]).read_bytes()
    for name, data in files.items():
        with Image.open(tmp_path / f"{name}.jpg") as im:
            expected[name] = estimate_quality(im.quantization[0])
    assert [expected[f"q{q}"] for q in (10, 75, 95)] == [10, 75, 95]
    wide = ijg_table(20) * 3  # 16-bit precision, values past 255
    files["16bit"], expected["16bit"] = _dqt(wide), estimate_quality(wide)
    files["16bit_q60"], expected["16bit_q60"] = _dqt(ijg_table(60)), 60
    a, b = ijg_table(20), ijg_table(21)  # a table as near to quality 20 as to 21: the lower wins
    tie, d, spare = a.copy(), np.abs(a - b), [0, int(np.abs(a - b).sum())]
    for i in np.argsort(-d):
        if spare[0] + d[i] <= spare[1] - d[i]:
            tie[i], spare = b[i], [spare[0] + d[i], spare[1] - d[i]]
    assert np.abs(tie - a).sum() == np.abs(tie - b).sum() and estimate_quality(tie) == 20
    files["tie"], expected["tie"] = _dqt(tie, 8), 20
    Image.fromarray(rgb).save(tmp_path / "p.png")
    files["png"], expected["png"] = (tmp_path / "p.png").read_bytes(), None
    files["no_table"], expected["no_table"] = b"\xff\xd8\xff\xd9", None
    page = web.open_page(context, server)
    try:
        got = page.evaluate(
            """async (files) => { const m = await import('./lib.js');
                 const out = {};
                 for (const [k, b64] of Object.entries(files)) {
                   out[k] = m.jpegQuality(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))); }
                 return out; }""", {k: base64.b64encode(v).decode() for k, v in files.items()})
    finally:
        page.close()
    assert got == expected


def test_page_picks_the_jpeg_model_for_compressed_jpegs(bundle, tiny_models, server, context, photo, tmp_path):
    """A PNG and a quality-95 JPEG get the clean model, a quality-75 JPEG the JPEG-robust one (as
    edsr-upscale), ``?input=clean`` overrides; each output is the chosen model's."""
    from PIL import Image

    folder, clean_model, _ = bundle
    jpeg_model = tiny_models["jpeg"][1]
    cfg = json.loads((folder / "config.json").read_text())
    clean_name, jpeg_name = (m["name"] for m in cfg["models"])
    rgb = photo[100:148, 150:214]
    png = tmp_path / "photo.png"
    Image.fromarray(rgb).save(png)
    q75, q95 = _jpeg_file(tmp_path / "q75.jpg", rgb, 75), _jpeg_file(tmp_path / "q95.jpg", rgb, 95)
    cases = [("", png, clean_name, "not a JPEG"),
             ("", q75, jpeg_name, "JPEG of estimated quality 75 <= 90: the JPEG-robust model"),
             ("", q95, clean_name, "JPEG of estimated quality 95 > 90, barely compressed"),
             ("?input=clean", q75, clean_name, "?input=clean"),
             ("?input=jpeg", png, jpeg_name, "?input=jpeg: the JPEG-robust model")]
    for query, image, name, why in cases:
        page = web.open_page(context, f"{server}index.html{query}")
        try:
            info = page.inner_text("#model-info")
            assert clean_name in info and jpeg_name in info, info
            result = web.upscale_file(page, image)
            assert "error" not in result, result.get("error")
            stats = result["stats"]
            assert (stats["model"], stats["why"]) == (name, why), (query, image.name, stats)
            assert name in page.inner_text("#stats") and why in page.inner_text("#stats")
            assert page.get_attribute("#download", "download") == f"{image.stem}_x2.png"
            # The reference runs on Pillow's decode. Chromium decodes these baseline 4:2:0 JPEGs to
            # the same pixels (measured: 0 levels apart, Chromium 156 against Pillow 13's
            # libjpeg-turbo; both use the integer IDCT and fancy upsampling), so the JPEG model's
            # output is held to the PNG's 1 grey level; a browser that decodes otherwise fails here first.
            lr = _read_rgb(image)
            assert _max_diff(_chromium_decode(page, image), lr) == 0
            want = _keras_uint8(jpeg_model if name == jpeg_name else clean_model, lr)
            other = _keras_uint8(clean_model if name == jpeg_name else jpeg_model, lr)
            got = web.decode_png(result["png"])
            assert _max_diff(got, want) <= 1
            assert _max_diff(got, other) > 1  # the two models differ: the check above tells them apart
        finally:
            page.close()


def test_bundle_carries_both_models(bundle, tiny_models):
    """config.json: both models with their input_type and the quality rule; sw.js precaches both;
    README.txt and the report say which JPEG model the page carries and how well it was verified."""
    folder, _, report = bundle
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["compressed_quality"] == 90
    clean, jpeg = cfg["models"]
    assert (clean["input_type"], jpeg["input_type"]) == ("clean", "jpeg")
    assert clean["scale"] == jpeg["scale"] == 2 and jpeg["name"] == clean["name"] + "_jpeg"
    assert jpeg["file"] == f"models/{jpeg['name']}.onnx" and jpeg["weights"] == tiny_models["jpeg"][0].name
    sw = (folder / "sw.js").read_text()
    assert f'"{clean["file"]}"' in sw and f'"{jpeg["file"]}"' in sw
    readme = (folder / "README.txt").read_text()
    assert "?input=auto|clean|jpeg" in readme and f"JPEG-robust model ({jpeg['name']})" in readme
    (art,) = [a for a in report["artifacts"] if a["format"] == "web"]
    j = art["jpeg_model"]
    assert j["name"] == jpeg["name"] and j["passed"] and j["max_abs_diff"] < 1e-2
    assert j["browser_max_diff_levels"] <= 1  # the page with ?input=jpeg, in the export's own check
    md = (folder.parent / "report.md").read_text()
    assert f"also carries the JPEG-robust model {jpeg['name']}" in md and f"{j['max_abs_diff']:.2e}" in md


def test_jpeg_model_onnx_is_verified(web_ready, tiny_models, tmp_path, monkeypatch, capsys):
    """The JPEG model's ONNX file is checked against its own Keras model: one that is the wrong
    model (here: the clean model's conversion under the JPEG model's name) fails the web page."""
    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.export.cli import main

    real = onnx_export.convert

    def wrong_model(src, dst, *args, **kwargs):
        if Path(dst).name.endswith("_jpeg_fp32.onnx"):
            src = Path(src).with_name(Path(src).name.replace("_jpeg_dynamic", "_dynamic"))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "convert", wrong_model)
    monkeypatch.setenv("EDSR_TF_WEB_BROWSER_CHECK", "0")
    out = tmp_path / "export"
    rc = main(["--weights", str(tiny_models["clean"][0]), "--web_jpeg_model", str(tiny_models["jpeg"][0]),
               "--formats", "web", "--out_dir", str(out), "--latency_runs", "0", "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, lines
    assert "the page's JPEG model" in lines[0] and "exceeds the tolerance" in lines[0], lines[0]
    assert not out.exists()


def test_web_jpeg_model_needs_web(tmp_path, capsys):
    from edsr_tf.export.cli import main

    for value in ("none", "edsr_baseline_x2_jpeg"):
        rc = main(["--formats", "onnx", "--web_jpeg_model", value, "--out_dir", str(tmp_path / "out"), "--quiet"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "--web_jpeg_model" in lines[0] and "--formats" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
    from edsr_tf.export import ExportOptions, ExportUsageError  # the library says the same

    with pytest.raises(ExportUsageError, match="--web_jpeg_model.*--formats"):
        ExportOptions(formats=("onnx",), web_jpeg_weights="edsr_baseline_x2_jpeg")
    with pytest.raises(TypeError, match="web_jpeg_weights"):
        ExportOptions(formats=("web",), web_jpeg_weights=2)
    assert ExportOptions(formats=("web",), web_jpeg_weights=Path("j.weights.h5")).web_jpeg_weights == "j.weights.h5"


def test_web_jpeg_model_of_another_scale_is_usage_error(web_ready, tiny_models, tmp_path, capsys):
    from edsr_tf.export.cli import main

    x3 = tmp_path / "tiny_x3.weights.h5"
    _tiny(x3, 3)
    out = tmp_path / "export"
    rc = main(["--weights", str(tiny_models["clean"][0]), "--web_jpeg_model", str(x3), "--formats", "web",
               "--out_dir", str(out), "--latency_runs", "0", "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --web_jpeg_model "), lines
    assert "x3 model" in lines[0] and "(x2)" in lines[0], lines[0]
    assert not out.exists()


def test_web_jpeg_model_auto_resolution(tiny_models):
    """``auto``: the shipped JPEG-robust model beside a shipped bicubic-trained one, else none."""
    from edsr_tf import pretrained
    from edsr_tf.export.cli import build_parser, web_jpeg_weights
    from edsr_tf.export.web import auto_jpeg_weights

    assert pretrained.jpeg_model(2) is not None  # this repository ships edsr_baseline_x2_jpeg
    assert auto_jpeg_weights("edsr_baseline_x2") == "edsr_baseline_x2_jpeg"
    assert auto_jpeg_weights("edsr_baseline_x2", 2) == "edsr_baseline_x2_jpeg"
    assert auto_jpeg_weights(str(tiny_models["clean"][0])) is None  # a user's weights file
    assert auto_jpeg_weights("edsr_baseline_x2_jpeg") is None  # already the JPEG-robust one
    for scale in (3, 4):  # no JPEG-robust x3/x4 ships (yet): nothing extra, no error
        assert auto_jpeg_weights(f"edsr_baseline_x{scale}") == (
            pretrained.jpeg_model(scale).name if pretrained.jpeg_model(scale) else None)

    def resolved(*argv):
        return web_jpeg_weights(build_parser().parse_args(["--out_dir", "x", *argv]))

    assert resolved("--formats", "web") == "edsr_baseline_x2_jpeg"  # the default --weights
    assert resolved("--formats", "web", "--weights", str(tiny_models["clean"][0])) is None
    assert resolved("--formats", "web", "--web_jpeg_model", "none") is None
    assert resolved("--formats", "web", "--web_jpeg_model", "my.weights.h5") == "my.weights.h5"
    assert resolved("--formats", "onnx") is None
