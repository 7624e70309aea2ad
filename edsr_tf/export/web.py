"""Web export: a static folder that upscales images in the browser, verified in Chromium.

``edsr-export --formats web`` (``python -m export`` in a checkout) writes ``DIR/web/``::

    index.html app.js worker.js lib.js style.css   the page (sources: edsr_tf/export/web_page/)
    sw.js                                         service worker: offline copy + COOP/COEP headers
    config.json                                   models, tile, overlap, pixel limit, runtime version
    models/<name>.onnx                            the fp32 ONNX export (edsr_tf.export.onnx)
    models/<name>_jpeg.onnx                       the JPEG-robust model, where the bundle has one
                                                  (--web_jpeg_model): the page picks it for JPEGs
                                                  of estimated quality <= 90, as edsr-upscale does
    ort/ort.wasm.min.js, ort/ort-wasm-simd-threaded.{js,wasm}, ort/LICENSE.txt
                                                  ONNX Runtime Web, copied from npm (version pinned
                                                  in edsr_tf/export/web_page/package.json; found or
                                                  installed by edsr_tf.export.web_runtime)
    README.txt

Serve it with ``python -m http.server -d DIR/web`` or any static host; nothing is loaded
from elsewhere. The page tiles exactly as :mod:`edsr_tf.inference` (tile + receptive-field
overlap, core kept), so the tiled output equals the untiled one.

Runtime choice (measured, see README "Upscale in the browser"): ONNX Runtime Web over TF.js.
Both ran in headless Chromium on the same EDSR-baseline (random weights), 256x256 input,
interleaved in one session: both match Keras within 0.003 on [0, 255]; ORT-web was as fast or
faster in every run (1.0-2.5x; x4 with 2 threads 9.9 s against 24.1 s) and honours the thread
count it is given, while TF.js' WASM backend caps its pool at half the cores. TF.js is lighter
(1.8 MB, 0.5 MB gzipped, against 14.3 MB, 3.7 MB gzipped; the model is 5.3 MB either way), but
its converter (pip ``tensorflowjs`` 4.22) would downgrade TensorFlow 2.21 to 2.19 and pull in
JAX/Flax, whereas ORT-web runs the ONNX export that this package already converts and verifies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from edsr_tf.export import web_runtime
from edsr_tf.export.common import ExportError, VerificationError
from edsr_tf.export.web_runtime import (  # noqa: F401 (this module's names before web_runtime existed)
    INSTALL_HINT,
    PAGE_DIR,
    RUNTIME_FILES,
    RUNTIME_PACKAGE,
    pinned_version,
)
from edsr_tf.jpeg import COMPRESSED_QUALITY

#: Page files copied as they are (sw.js is filled in by :func:`finalize`).
PAGE_FILES = ("index.html", "app.js", "worker.js", "lib.js", "style.css")
#: Activation budget of one tile in the browser (WASM32 heaps stop at 4 GiB; phones have less).
WEB_TILE_MEMORY = 512 << 20
#: Largest input the page accepts by default (LR pixels): 2048x2048; x4 gives a 64 MP PNG.
WEB_MAX_PIXELS = 1 << 22
#: ``input_type`` of a bundle's models: the scale's main model, and the JPEG-robust one the page
#: picks for compressed JPEGs (config.json ``compressed_quality``; lib.js ``chooseModel``).
INPUT_TYPES = ("clean", "jpeg")
#: Name of the JPEG-robust model in a bundle: the main model's name and this suffix.
JPEG_NAME = "{name}_jpeg"
#: Model outputs may differ from the Keras reference by this many grey levels after rounding.
BROWSER_TOLERANCE_LEVELS = 1
#: Chromium flags for headless runs on a machine without a display or outside network.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)

ORT_LICENSE = """ONNX Runtime Web {version} (npm package onnxruntime-web), MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

README_TXT = """EDSR super-resolution in the browser ({models}).

Serve this folder with any static web server and open it, e.g.
    python -m http.server 8000 -d {folder}
then http://localhost:8000/ (service workers, hence the offline copy and WASM threads,
need https or localhost). Nothing is loaded from anywhere else.

config.json: max_pixels (largest accepted input), and per model its tile, overlap and
input_type (clean, or jpeg: the JPEG-robust model).
{choice}Address options: ?tile=N (0 = whole image), ?maxPixels=N, ?threads=N, ?scale=S, ?sw=0,
?input=auto|clean|jpeg.
Runtime: ONNX Runtime Web {version} (ort/, MIT licence in ort/LICENSE.txt).
"""

CHOICE_TXT = """Model choice, per image (as edsr-upscale does): a JPEG file (camera photos included) whose
estimated quality (from its luminance quantization table) is at most {quality} gets the
JPEG-robust model ({jpeg}); any other image gets {clean}. ?input=clean or
?input=jpeg (or the Input selector) overrides it; the result line names the model and why.
"""


# --------------------------------------------------------------------------------------
# The runtime from npm
# --------------------------------------------------------------------------------------


def runtime_dist(node_modules: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(dist folder, version)`` of the pinned onnxruntime-web in ``node_modules`` (None: found
    where :mod:`edsr_tf.export.web_runtime` looks); raises :class:`ExportError` naming the install
    command when it is missing, incomplete or of another version. Installs nothing."""
    return web_runtime.dist(node_modules)


# --------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------


def model_file(name: str) -> str:
    return f"models/{name}.onnx"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def auto_jpeg_weights(weights: str | os.PathLike, scale: int | None = None) -> str | None:
    """The JPEG-robust model a bundle of ``weights`` carries by default (``--web_jpeg_model auto``).

    The shipped ``edsr_baseline_x<s>_jpeg`` (:func:`edsr_tf.pretrained.jpeg_model`) when
    ``weights`` is the name of a shipped bicubic-trained model and one is shipped for the
    exported scale (``scale``, else the model's only one); None otherwise: a weights file, a
    JPEG-robust model itself, a scale without one, an unreadable manifest (the export then
    says what is wrong with the weights itself).
    """
    from edsr_tf import pretrained

    text = os.fspath(weights)
    if text.endswith(pretrained.JPEG_SUFFIX):
        return None
    try:
        model = pretrained.load_manifest().get(text)
        if model is None:
            return None
        if scale is None:
            if len(model.scales) != 1:
                return None
            scale = model.scales[0]
        robust = pretrained.jpeg_model(scale) if int(scale) in model.scales else None
    except pretrained.PretrainedError:
        return None
    return robust.name if robust is not None and robust.name != text else None


def write_page(folder: str | os.PathLike, node_modules: str | os.PathLike | None = None) -> str:
    """Copies the page and the pinned runtime into ``folder``; returns the runtime version."""
    folder = Path(folder)
    dist, version = runtime_dist(node_modules)
    (folder / "ort").mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, folder / name)
    for src, dst in RUNTIME_FILES.items():
        shutil.copyfile(dist / src, folder / "ort" / dst)
    (folder / "ort" / "LICENSE.txt").write_text(ORT_LICENSE.format(version=version))
    return version


def web_tile(net, overlap: int, memory_bytes: int = WEB_TILE_MEMORY) -> int:
    """Default LR tile core for the page: :func:`edsr_tf.inference.auto_tile` at the browser budget."""
    from edsr_tf.inference import auto_tile

    return int(auto_tile(net, overlap, memory_bytes))


def add_model(
    folder: str | os.PathLike,
    net,
    scale: int,
    name: str,
    onnx_path: str | os.PathLike,
    *,
    weights: str | None = None,
    max_pixels: int = WEB_MAX_PIXELS,
    tile: int | None = None,
    node_modules: str | os.PathLike | None = None,
    input_type: str = "clean",
    model_weights: str | None = None,
) -> Path:
    """Adds one single-scale model (its verified ONNX file) to the bundle in ``folder``.

    Writes the page and runtime on first use, copies ``onnx_path`` to ``models/<name>.onnx``,
    records the model in ``config.json`` (scale, receptive-field overlap, tile, ``input_type``)
    and rewrites ``sw.js``. ``net`` is the Keras single-scale model (for the overlap and default
    tile). ``input_type``: ``"clean"`` (the scale's main model) or ``"jpeg"`` (the JPEG-robust
    model the page picks for JPEGs of estimated quality <= ``compressed_quality``, see
    :data:`INPUT_TYPES`); ``model_weights``: the file this model came from (its name is recorded,
    for a model other than the bundle's ``weights``). Returns the path of the bundle's ONNX file.
    """
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
    from edsr_tf.inference import receptive_field_radius

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
    else:
        version = write_page(folder, node_modules)
        cfg = {
            "format": 1,
            "runtime": {"name": RUNTIME_PACKAGE, "version": version, "backend": "wasm"},
            "max_pixels": int(max_pixels),
            "weights": Path(weights).name if weights else None,  # no local paths in a public page
            "models": [],
        }
    overlap = int(receptive_field_radius(net))
    target = folder / model_file(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(onnx_path).resolve() != target.resolve():
        shutil.copyfile(onnx_path, target)
    entry = {
        "name": name,
        "file": model_file(name),
        "scale": int(scale),
        "overlap": overlap,
        "tile": int(tile if tile is not None else web_tile(net, overlap)),
        "input": "images",
        "output": "sr",
        "size_bytes": target.stat().st_size,
        "sha256": _sha256(target),
        "input_type": input_type,
    }
    if model_weights:
        entry["weights"] = Path(model_weights).name
    cfg["compressed_quality"] = COMPRESSED_QUALITY  # the page's rule: edsr_tf.jpeg, as edsr-upscale
    cfg["models"] = [m for m in cfg["models"] if m["name"] != name] + [entry]
    cfg["models"].sort(key=lambda m: (m["scale"], INPUT_TYPES.index(m.get("input_type", "clean"))))
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    finalize(folder)
    return target


def finalize(folder: str | os.PathLike) -> None:
    """Writes ``sw.js`` (precache list + content hash) and ``README.txt`` for ``folder``."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    jpeg = [m["name"] for m in cfg["models"] if m.get("input_type") == "jpeg"]
    clean = [m["name"] for m in cfg["models"] if m.get("input_type", "clean") == "clean"]
    choice = CHOICE_TXT.format(quality=cfg.get("compressed_quality", COMPRESSED_QUALITY),
                               jpeg=", ".join(jpeg), clean=", ".join(clean)) if jpeg else ""
    (folder / "README.txt").write_text(README_TXT.format(
        models=", ".join(m["name"] for m in cfg["models"]), folder=folder.name,
        version=cfg["runtime"]["version"], choice=choice))
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*")
        if p.is_file() and p.name not in ("sw.js", "README.txt") and not p.name.startswith(".")
    )
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update(_sha256(folder / rel).encode())
    source = (PAGE_DIR / "sw.js").read_text()
    source = source.replace("'__VERSION__'", json.dumps(h.hexdigest()[:16]))
    source = source.replace("__FILES__", json.dumps(["./"] + files))
    (folder / "sw.js").write_text(source)


# --------------------------------------------------------------------------------------
# Running the page in Chromium (export check, tests, benchmark)
# --------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """A Chromium/Chrome executable: ``$EDSR_TF_CHROMIUM``, else the first one on PATH."""
    env = os.environ.get("EDSR_TF_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_unavailable() -> str | None:
    """Why the page cannot be run in a browser here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if find_chromium() is None:
        return "no Chromium found (apt-get install chromium, or set EDSR_TF_CHROMIUM)"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serves ``folder`` over http://127.0.0.1:<free port>/ in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright ``Browser``) on the system's executable."""
    from playwright.sync_api import sync_playwright

    reason = browser_unavailable()
    if reason:
        raise ExportError(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def wait_state(page, states: tuple[str, ...], timeout_s: float = 120.0) -> str:
    """Waits until ``window.edsr.state`` is one of ``states`` (survives the page's one reload)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = page.evaluate("() => window.edsr ? window.edsr.state : null")
        except Exception:  # the page is reloading under its service worker
            last = None
        if last in states:
            return last
        time.sleep(0.05)
    error = None
    with contextlib.suppress(Exception):
        error = page.evaluate("() => window.edsr && window.edsr.error")
    raise TimeoutError(f"page state {last!r} after {timeout_s:.0f} s, expected {states}"
                       + (f"; page error: {error}" if error else ""))


def open_page(browser_or_context, url: str, timeout_s: float = 120.0):
    """A new tab on the page at ``url``, once it is ready to take an image."""
    page = browser_or_context.new_page()
    page.goto(url)
    state = wait_state(page, ("ready", "error"), timeout_s)
    if state == "error":
        raise ExportError(f"the web page failed to start: {page.evaluate('() => window.edsr.error')}")
    return page


def upscale_file(page, image: str | os.PathLike, timeout_s: float = 300.0) -> dict:
    """Feeds ``image`` to the page's file input and waits for the result.

    Returns ``{"png": bytes of the downloaded PNG, "stats": the page's timings}`` on success,
    ``{"error": message}`` when the page reports an error (bad file, too large, ...).
    """
    page.evaluate("() => { window.edsr.error = null; }")
    page.set_input_files("#file", str(image))
    deadline = time.monotonic() + timeout_s
    while True:
        status = page.evaluate("() => [window.edsr.state, window.edsr.error]")
        if status[0] == "done":
            break
        if status[1]:
            return {"error": status[1]}
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result after {timeout_s:.0f} s (page state {status[0]!r})")
        time.sleep(0.05)
    with page.expect_download() as download:
        page.click("#download")
    png = Path(download.value.path()).read_bytes()
    return {"png": png, "stats": page.evaluate("() => window.edsr.lastStats")}


def canvas_png(page, canvas_id: str) -> bytes:
    """The pixels of one of the page's canvases (``before``: bicubic, ``after``: model) as PNG."""
    import base64

    url = page.evaluate(f"() => document.getElementById({canvas_id!r}).toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def decode_png(data: bytes) -> np.ndarray:
    """uint8 RGB array of a PNG (alpha dropped)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def browser_check(folder: str | os.PathLike, scale: int, lr: np.ndarray, reference: np.ndarray,
                  tolerance: int = BROWSER_TOLERANCE_LEVELS, *, model: str | None = None,
                  jpeg_reference: np.ndarray | None = None, jpeg_model: str | None = None) -> dict:
    """Runs ``lr`` (uint8 RGB) through the bundle in headless Chromium; compares with ``reference``.

    ``reference`` is the Keras output rounded to uint8. Returns a record for the report;
    raises :class:`VerificationError` when the page's PNG differs by more than ``tolerance``
    grey levels, or when ``model`` is given and the page ran another model. With
    ``jpeg_reference`` (the bundle's JPEG-robust model ``jpeg_model`` in Keras, rounded), the
    page is also run with ``?input=jpeg`` on the same image and held to the same tolerance
    (``browser_jpeg_max_diff_levels``). When no browser is available the record says why and
    nothing is checked.
    """
    reason = browser_unavailable()
    if os.environ.get("EDSR_TF_WEB_BROWSER_CHECK", "1") == "0":
        reason = "EDSR_TF_WEB_BROWSER_CHECK=0"
    if reason:
        return {"browser_check": f"skipped: {reason}"}
    from PIL import Image

    runs = [("", reference, model, "browser_max_diff_levels")]
    if jpeg_reference is not None:
        runs.append(("&input=jpeg", jpeg_reference, jpeg_model, "browser_jpeg_max_diff_levels"))
    results = []
    with tempfile.TemporaryDirectory(prefix="edsr-web-check-") as tmp:
        image = Path(tmp) / "verify.png"
        Image.fromarray(np.ascontiguousarray(lr)).save(image)
        with serve(folder) as url, chromium() as browser:
            context = browser.new_context()
            for query, *_ in runs:
                page = open_page(context, f"{url}index.html?scale={int(scale)}{query}")
                results.append(upscale_file(page, image))
                page.close()
            context.close()
    record = {"browser_check": "passed"}
    for (query, ref, name, key), result in zip(runs, results):
        where = f"web page in Chromium{' (?' + query[1:] + ')' if query else ''}"
        if "error" in result:
            raise VerificationError(f"{where}: {result['error']}")
        got = decode_png(result["png"]).astype(np.int16)
        if got.shape != ref.shape:
            raise VerificationError(f"{where} returned {got.shape}, expected {ref.shape}")
        ran = (result["stats"] or {}).get("model")
        if name is not None and ran != name:
            raise VerificationError(f"{where} ran the model {ran!r}, expected {name!r}")
        diff = int(np.abs(got - ref.astype(np.int16)).max())
        if diff > tolerance:
            raise VerificationError(
                f"{where}{' ' + name if query and name else ''} differs from Keras by {diff} grey levels "
                f"(allowed {tolerance})")
        record[key] = diff
    stats = results[0]["stats"] or {}
    # browser_ms: the model's own time in the page (its session.run calls), as the other
    # artifacts' latency times their runtime; browser_total_ms adds decoding, tiling, bicubic, PNG.
    record.update({"browser_threads": stats.get("threads"), "browser_ms": stats.get("modelMs"),
                   "browser_total_ms": stats.get("totalMs"), "browser_input": [1, *map(int, lr.shape[:2]), 3]})
    return record


@dataclasses.dataclass
class JpegModel:
    """The JPEG-robust model a bundle carries beside a scale's main model (``--web_jpeg_model``).

    ``onnx``: its fp32 ONNX conversion; ``reference``: its Keras model (a
    :class:`~edsr_tf.export.verify.KerasRunner`); ``record``: the verification of ``onnx``
    against ``reference`` on the export's images (:func:`~edsr_tf.export.verify.verify_runner`).
    """

    name: str
    net: object
    onnx: Path
    reference: object
    weights: str
    record: dict


def export_web(staging: Path, net, scale: int, name: str, onnx_source: Path, reference, images,
               *, weights: str | None = None, say=lambda _m: None,
               node_modules: str | os.PathLike | None = None, jpeg: JpegModel | None = None):
    """The pipeline's ``web`` step for one scale of the model.

    Adds ``onnx_source`` (the fp32 ONNX export, already converted) to the bundle in
    ``staging/web`` (the runtime from ``node_modules``, None: found as
    :func:`edsr_tf.export.web_runtime.find` does) and returns ``(bundle folder, onnxruntime
    runner of the bundle's ONNX file, report extras, check)``: the runner is verified against
    Keras like every export; ``check()`` then runs the page itself in headless Chromium on the
    first verification image and raises :class:`VerificationError` when its PNG differs from
    Keras by more than one grey level. The report shows the page's own difference and model
    time (``browser_*``) for this artifact, not onnxruntime's.

    ``jpeg``: the JPEG-robust model to carry too (already converted and verified in
    onnxruntime): added as ``input_type: "jpeg"`` when its verification passed, and
    ``check()`` then runs it in the page too (``?input=jpeg``); when it failed, ``check()``
    raises :class:`VerificationError` naming it, so the bundle fails as a whole.
    """
    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.metrics import quantize

    folder = Path(staging) / "web"
    target = add_model(folder, net, scale, name, onnx_source, weights=weights, node_modules=node_modules)
    runner = onnx_export.OnnxRunner(target)
    extra = {"runtime": f"{RUNTIME_PACKAGE} {pinned_version()}", "onnx": target.relative_to(folder).as_posix()}
    jpeg_info = None
    if jpeg is not None:
        rec = jpeg.record
        jpeg_info = {"name": jpeg.name, "weights": Path(jpeg.weights).name, "onnx": model_file(jpeg.name),
                     "max_abs_diff": rec.get("max_abs_diff"), "psnr_db": rec.get("psnr_db"),
                     "tolerance": rec.get("tolerance"), "passed": bool(rec["passed"]),
                     "compressed_quality": COMPRESSED_QUALITY}
        if rec["passed"]:
            jpeg_target = add_model(folder, jpeg.net, scale, jpeg.name, jpeg.onnx, node_modules=node_modules,
                                    input_type="jpeg", model_weights=jpeg.weights)
            jpeg_info["size_bytes"] = jpeg_target.stat().st_size
        else:
            jpeg_info["failure"] = rec.get("failure")
        extra["jpeg_model"] = jpeg_info

    def check() -> dict:
        if jpeg is not None and not jpeg.record["passed"]:
            raise VerificationError(f"the page's JPEG model {jpeg.name} ({Path(jpeg.weights).name}): its ONNX "
                                    f"file does not match its Keras model: {jpeg.record.get('failure')}")
        lr = images[0].lr
        ref = quantize(reference.run(lr[None].astype(np.float32))[0])
        jpeg_ref = None if jpeg is None else quantize(jpeg.reference.run(lr[None].astype(np.float32))[0])
        rec = browser_check(folder, scale, lr, ref, model=name, jpeg_reference=jpeg_ref,
                            jpeg_model=None if jpeg is None else jpeg.name)
        detail = (f" (max {rec['browser_max_diff_levels']} grey level, {images[0].name})"
                  if "browser_max_diff_levels" in rec else "")
        say(f"{name}: web page in headless Chromium: {rec['browser_check']}{detail}")
        if jpeg_info is not None:
            levels = rec.pop("browser_jpeg_max_diff_levels", None)
            if levels is not None:
                say(f"{jpeg.name}: web page in headless Chromium with ?input=jpeg: max {levels} grey level")
            rec["jpeg_model"] = {**jpeg_info, "browser_max_diff_levels": levels}
        return rec

    return folder, runner, extra, check
