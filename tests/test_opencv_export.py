"""``--formats opencv``: an ONNX file OpenCV 5's ``cv2.dnn_superres`` runs with ``setModel("edsr", S)``.

The exported files are loaded with ``cv2.dnn_superres`` directly, as users do, and
``upsample(BGR uint8)`` is checked against the Keras model on the same RGB image: within
0.5 + 1e-2 of its float output (OpenCV rounds; a mean off by 0.1 grey level fails this) and
so within 1 grey level of its rounded output. Tiny models cover ×2/×3/×4 and MDSR; the shipped
``edsr_baseline_x4`` goes through the command line and the snippet of docs/use_it_from.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from ci_guard import require_module
from PIL import Image
from test_export import keras_out, tiny_model

from edsr_tf.export import ExportError, ExportOptions, VerificationError, export_model
from edsr_tf.export import opencv
from edsr_tf.export.cli import main as export_main
from edsr_tf.metrics import quantize

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "use_it_from.md"
#: |opencv - keras float| allowed: OpenCV's rounding to uint8 plus the fp32 export tolerance.
PARITY = 0.5 + 1e-2


@pytest.fixture(scope="module")
def cv2():
    return require_module("cv2", "requirements-dev.txt: opencv-contrib-python-headless, for --formats opencv")


def upsample(cv2, path: Path, scale: int, rgb: np.ndarray) -> np.ndarray:
    """What a user does: readModel, setModel("edsr", scale), upsample on BGR uint8; RGB back."""
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(path))
    sr.setModel("edsr", scale)
    out = sr.upsample(np.ascontiguousarray(rgb[..., ::-1]))
    assert out.dtype == np.uint8 and out.shape == (rgb.shape[0] * scale, rgb.shape[1] * scale, 3)
    return out[..., ::-1]


def assert_matches_keras(net, got: np.ndarray, rgb: np.ndarray) -> None:
    ref = keras_out(net, rgb[None])[0]
    assert np.abs(got.astype(np.float64) - ref).max() <= PARITY
    assert np.abs(got.astype(int) - quantize(ref).astype(int)).max() <= 1


def images(photo: np.ndarray) -> list[np.ndarray]:
    """A photo crop and random noise (every channel value, so a swapped or shifted channel shows)."""
    noise = np.random.default_rng(3).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    return [np.ascontiguousarray(photo[100:140, 150:207]), noise]


@pytest.fixture(scope="module", params=[("edsr", (2,)), ("edsr", (4,)), ("mdsr", (2, 3))],
                ids=["edsr_x2", "edsr_x4", "mdsr_x2_x3"])
def exported(request, tmp_path_factory, photo, cv2):
    arch, scales = request.param
    model, config = tiny_model(arch, scales, seed=len(scales) * 10 + scales[0])
    out = tmp_path_factory.mktemp("opencv") / "out"
    options = ExportOptions(formats=("opencv",), verify_images=[("photo", photo[:60, :80])], latency_runs=1)
    report = export_model(model, config, out, options, progress=None)
    return model, config, out, report


def test_upsample_matches_keras_within_one_level(exported, photo, cv2):
    from edsr_tf.models import model_for_scale

    model, config, out, report = exported
    for s in config.scales:
        name = f"{config.arch}_b2_f8_x{s}"
        path = out / "opencv" / f"{name}.onnx"
        assert path.is_file()
        net = model_for_scale(model, config, s)
        for rgb in images(photo):
            assert_matches_keras(net, upsample(cv2, path, s, rgb), rgb)


def test_report_row(exported, cv2):
    model, config, out, report = exported
    rows = report["artifacts"]
    assert [a["format"] for a in rows] == ["opencv"] * len(config.scales)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["versions"]["opencv"] == cv2.__version__ and on_disk["passed"] is True
    for a, s in zip(rows, config.scales):
        assert a["passed"] and a["runtime"] == "opencv" and a["variant"] == "fp32"
        assert a["path"] == f"opencv/{config.arch}_b2_f8_x{s}.onnx" and a["size_bytes"] > 0
        assert 0 < a["max_abs_diff"] <= PARITY and a["tolerance"] == pytest.approx(PARITY)
        assert a["max_level_diff"] <= 1 and a["latency_ms"] > 0
        assert abs(a["psnr_drop_db"]) < 0.01 and np.isfinite(a["psnr_db"])
        assert a["usage"] == f'sr.readModel("{Path(a["path"]).name}"); sr.setModel("edsr", {s})'
    md = (out / "report.md").read_text()
    assert "| opencv | fp32 |" in md


def test_graph_is_nchw_and_has_no_depth_to_space(exported):
    import onnx

    model, config, out, _ = exported
    for p in (out / "opencv").iterdir():
        g = onnx.load(str(p)).graph
        ops = {n.op_type for n in g.node}
        # dnn_superres replaces DepthToSpace by its ESPCN layer (3 channels); the shuffle is Reshape/Transpose
        assert "DepthToSpace" not in ops and {"Reshape", "Transpose", "Conv"} <= ops
        assert "Clip" not in ops  # OpenCV saturates to uint8 itself
        dims = [d.dim_value or d.dim_param for d in g.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, "height", "width"]


def test_folding_is_what_makes_it_match(tmp_path, photo, cv2, monkeypatch):
    """Undo the BGR swap, or fold our mean for OpenCV's (0.1 grey level apart): verification fails."""
    model, config = tiny_model(scales=(2,), seed=5)
    real = opencv.opencv_network

    def no_swap(net):
        folded = real(net)
        for name in ("head", "tail"):
            layer = folded.get_layer(name)
            k, b = layer.get_weights()
            if name == "head":
                layer.set_weights([k[:, :, ::-1, :], b])
            else:
                layer.set_weights([k[..., ::-1], b])  # bias keeps the per-channel mean fold
        return folded

    options = ExportOptions(formats=("opencv",), verify_images=[("photo", photo[:60, :80])], latency_runs=0)
    for label, patch in (("swap", ("opencv_network", no_swap)),
                         ("mean", ("OPENCV_EDSR_MEAN_BGR", (103.02, 111.4605, 114.444)))):
        with monkeypatch.context() as m:
            m.setattr(opencv, *patch)
            out = tmp_path / label
            with pytest.raises(VerificationError, match="exceeds the tolerance") as e:
                export_model(model, config, out, options, progress=None)
        assert not out.exists(), label
        assert e.value.report["artifacts"][0]["max_abs_diff"] > PARITY, label


def test_shipped_x4_cli_and_doc_snippet(tmp_path, photo, cv2):
    """``python -m export --weights edsr_baseline_x4 --formats opencv --out_dir D``, then the doc's
    three lines run as written in a bare interpreter (-I: no project paths; nothing of ours imported)."""
    from edsr_tf.models import load_model
    from edsr_tf.models.io import resolve_weights

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "export", "--weights", "edsr_baseline_x4", "--formats", "opencv",
         "--out_dir", str(tmp_path / "exports" / "x4"), "--latency_runs", "1", "--verify_max_side", "64"],
        cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "exports" / "x4" / "opencv" / "edsr_baseline_x4.onnx").is_file()
    report = json.loads((tmp_path / "exports" / "x4" / "report.json").read_text())
    assert report["artifacts"][0]["passed"] and report["artifacts"][0]["max_level_diff"] <= 1

    snippet = doc_block("opencv-python")
    assert len(snippet.strip().splitlines()) == 3
    lr = np.ascontiguousarray(photo[120:168, 180:236])
    Image.fromarray(lr).save(tmp_path / "photo.png")
    check = ("import sys\nbad = [m for m in sys.modules if m.split('.')[0] in "
             "('edsr_tf', 'tensorflow', 'keras', 'onnxruntime')]\nassert not bad, bad\n")
    run = subprocess.run([sys.executable, "-I", "-c", snippet + check], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.asarray(Image.open(tmp_path / "photo_x4.png").convert("RGB"))
    model, _ = load_model(resolve_weights("edsr_baseline_x4"))
    assert_matches_keras(model, got, lr)


def doc_block(name: str) -> str:
    """The fenced block after ``<!-- recipe: name -->`` in docs/use_it_from.md."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- recipe: {re.escape(name)} -->\s*```\w*\n(.*?)^```", text, re.S | re.M)
    assert m, f"no recipe block {name!r} in {DOC}"
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the flag, exit 2, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fake,match", [
    (None, "OpenCV is not installed"),
    (types.SimpleNamespace(__version__="4.12.0", dnn_superres=object()), "reads only TensorFlow .pb"),
    (types.SimpleNamespace(__version__="5.1.0"), "no dnn_superres module"),
], ids=["missing", "opencv4", "no_contrib"])
def test_without_opencv5_exit_2_nothing_written(tmp_path, monkeypatch, capsys, fake, match):
    from edsr_tf.models import save_model

    model, config = tiny_model()
    weights = save_model(model, tmp_path / "m.weights.h5", config)
    monkeypatch.setitem(sys.modules, "cv2", fake)  # None: `import cv2` raises ImportError
    out = tmp_path / "out"
    assert export_main(["--weights", str(weights), "--formats", "opencv", "--out_dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --formats opencv:") and match in err and "Traceback" not in err
    assert "opencv-contrib-python-headless" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["m.weights.h5"]


def test_int8_is_not_an_opencv_variant(tmp_path, capsys):
    assert export_main(["--weights", "edsr_baseline_x2", "--formats", "opencv", "--quantize", "int8",
                        "--out_dir", str(tmp_path / "out"), "--quiet"]) == 2
    assert "--quantize int8: no requested format supports it" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_not_our_network_is_refused():
    inp = keras.Input((None, None, 3))
    net = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same", name="head")(inp))
    with pytest.raises(ExportError, match="not an EDSR/MDSR network of this project"):
        opencv.opencv_network(net)
