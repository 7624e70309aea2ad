"""docs/use_it_from.md: the TF Serving, LiteRT and onnxruntime recipes, run as written.

No model server runs here: the REST and gRPC snippets run with only the network call replaced
(``urllib.request.urlopen``, a ``curl`` on PATH, ``PredictionServiceStub``) by
tests/tf_serving_emulator.py, which decodes the request the way TF Serving does, runs the exported
SavedModel's own signature and answers the way TF Serving does. Every image must equal what
``python -m edsr_tf.upscale photo.png --weights edsr_baseline_x2 --precision fp32`` writes (TF Serving
runs the float32 SavedModel; upscale's default, auto, may compute in bf16).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_opencv_export import doc_block
from tf_serving_emulator import ServingError, grpc_predict, rest_predict

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "use_it_from.md"
EXPORT_X2 = "python -m export --weights edsr_baseline_x2 --formats savedmodel,onnx --out_dir exports/x2"
UPSCALE = "python -m edsr_tf.upscale photo.png --weights edsr_baseline_x2 --precision fp32"
URL = "http://localhost:8501/v1/models/edsr_baseline_x2:predict"


@pytest.fixture(scope="module")
def site(tmp_path_factory, photo):
    """A folder as the recipes expect it: photo.png, exports/x2 (the doc's export command), and the
    upscale command's output as the reference image."""
    from edsr_tf.export.cli import main as export_main

    root = tmp_path_factory.mktemp("site")
    Image.fromarray(np.ascontiguousarray(photo[110:150, 160:212])).save(root / "photo.png")
    assert EXPORT_X2 in DOC.read_text(encoding="utf-8")
    argv = shlex.split(EXPORT_X2)[3:]  # as written, plus quicker verification
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert export_main(argv + ["--latency_runs", "0", "--verify_max_side", "48", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    assert UPSCALE in DOC.read_text(encoding="utf-8")
    proc = subprocess.run([sys.executable, *shlex.split(UPSCALE)[1:], "--out_dir", "upscaled", "--quiet"],
                          cwd=root, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = np.asarray(Image.open(root / "upscaled" / "photo_x2.png").convert("RGB"))
    return root, reference


@pytest.fixture(scope="module")
def served(site):
    import tensorflow as tf

    root, _ = site
    return tf.saved_model.load(str(root / "exports" / "x2" / "savedmodel" / "edsr_baseline_x2" / "1"))


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def run_recipe(name: str, root: Path, monkeypatch) -> dict:
    """Executes the doc's block ``name`` in ``root``; returns its variables."""
    monkeypatch.chdir(root)
    namespace: dict = {"__name__": f"recipe_{name}"}
    exec(compile(doc_block(name), f"docs/use_it_from.md:{name}", "exec"), namespace)
    return namespace


def test_rest_recipe_each_signature(site, served, monkeypatch):
    import urllib.request

    root, reference = site
    seen = []

    def urlopen(request, *args, **kwargs):
        assert request.full_url == URL and request.get_method() == "POST"
        assert request.get_header("Content-type") == "application/json"
        body = json.loads(request.data)
        seen.append(body.get("signature_name", "serving_default"))
        return io.BytesIO(json.dumps(rest_predict(served, body)).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    ns = run_recipe("rest-python", root, monkeypatch)
    assert seen == ["serving_bytes", "serving_default", "serving_uint8", "predict_float"]
    np.testing.assert_array_equal(read_rgb(root / "photo_x2.png"), reference)
    for var in ("sr", "sr_uint8"):
        assert ns[var].dtype == np.uint8
        np.testing.assert_array_equal(ns[var], reference)
    assert ns["sr_float"].dtype == np.float32
    np.testing.assert_array_equal(np.floor(ns["sr_float"] + 0.5).astype(np.uint8), reference)


def test_rest_curl_recipe(site, served, tmp_path):
    """The three shell lines, with a ``curl`` that records its body and prints TF Serving's reply."""
    root, reference = site
    lines = doc_block("rest-curl").strip().splitlines()
    assert len(lines) == 3
    work = tmp_path / "curl"
    work.mkdir()
    (work / "photo.png").write_bytes((root / "photo.png").read_bytes())
    run = dict(cwd=work, capture_output=True, text=True)
    proc = subprocess.run(["bash", "-ec", lines[0]], **run)
    assert proc.returncode == 0, proc.stderr
    request = json.loads((work / "request.json").read_text())
    assert request["signature_name"] == "serving_bytes"
    (work / ".reply").write_text(json.dumps(rest_predict(served, request)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "curl"
    fake.write_text("#!/usr/bin/env bash\n"
                    f'[ "$*" = "-s -d @request.json {URL}" ] || {{ echo "unexpected curl $*" >&2; exit 9; }}\n'
                    "cat .reply\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for line in lines[1:]:
        proc = subprocess.run(["bash", "-ec", line], env=env, **run)
        assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_rgb(work / "photo_x2.png"), reference)


def test_grpc_recipe(site, served, monkeypatch):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    root, reference = site
    requests = []

    class Stub:
        def __init__(self, channel):
            assert channel == "channel to localhost:8500"

        def Predict(self, request, timeout=None):  # noqa: N802 (the gRPC method's name)
            requests.append(request)
            return grpc_predict(served, request)

    monkeypatch.setattr(grpc, "insecure_channel", lambda target: f"channel to {target}")
    monkeypatch.setattr(prediction_service_pb2_grpc, "PredictionServiceStub", Stub)
    ns = run_recipe("grpc-python", root, monkeypatch)
    (request,) = requests
    assert request.model_spec.name == "edsr_baseline_x2" and request.model_spec.signature_name == "serving_uint8"
    assert ns["sr_grpc"].dtype == np.uint8
    np.testing.assert_array_equal(ns["sr_grpc"], reference)
    np.testing.assert_array_equal(read_rgb(root / "photo_x2_grpc.png"), reference)


def test_emulator_refuses_what_tf_serving_refuses(site, served):
    """The emulator is not a rubber stamp: wrong dtypes and bodies are refused as TF Serving does."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    pixels = [[[0.5, 1, 2]]]
    with pytest.raises(ServingError, match="do not fit uint8"):
        rest_predict(served, {"signature_name": "serving_uint8", "instances": [pixels]})
    with pytest.raises(ServingError, match="not found"):
        rest_predict(served, {"signature_name": "serving_png", "instances": [pixels]})
    with pytest.raises(ServingError, match="b64"):
        rest_predict(served, {"signature_name": "serving_bytes", "instances": [{"base64": "AAAA"}]})
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 4, 4, 3), np.uint8)))
    with pytest.raises(ServingError, match="to be float32 but uint8"):
        grpc_predict(served, request)


def test_litert_int8_contract(site, monkeypatch, tmp_path, photo):
    """The int8 snippet on the shipped int8 file (what --quantize int8 writes for it), at two sizes."""
    from edsr_tf import pretrained
    from edsr_tf.export.tflite import TFLiteRunner

    shipped = pretrained.shipped_tflite("edsr_baseline_x2")
    code = doc_block("litert-int8")
    written = "exports/x2_int8/tflite/edsr_baseline_x2_int8.tflite"
    assert written in code and f"--out_dir {written.split('/tflite')[0]}" in DOC.read_text(encoding="utf-8")
    code = code.replace(written, str(shipped))
    runner = TFLiteRunner(shipped)
    for i, (h, w) in enumerate([(24, 40), (37, 29)]):
        folder = tmp_path / str(i)
        folder.mkdir()
        lr = np.ascontiguousarray(photo[60:60 + h, 100:100 + w])
        Image.fromarray(lr).save(folder / "photo.png")
        monkeypatch.chdir(folder)
        ns: dict = {}
        exec(compile(code, "docs/use_it_from.md:litert-int8", "exec"), ns)
        assert ns["sr_int8"].dtype == np.uint8 and ns["sr_int8"].shape == (2 * h, 2 * w, 3)
        np.testing.assert_array_equal(ns["sr_int8"], runner.run(lr[None].astype(np.float32))[0].astype(np.uint8))


def test_onnxruntime_recipe(site, monkeypatch):
    root, reference = site
    ns = run_recipe("onnxruntime", root, monkeypatch)
    assert ns["sr_ort"].dtype == np.float32
    got = read_rgb(root / "photo_x2_ort.png").astype(int)
    assert np.abs(got - reference).max() <= 1
