"""``python -m edsr_tf.evaluate`` and benchmark-set discovery."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from edsr_tf.benchmark_sets import DatasetNotFoundError, find_dataset
from edsr_tf.evaluate import main
from edsr_tf.evaluation import IMAGE_KEYS, RESULT_KEYS
from edsr_tf.images import write_image
from edsr_tf.metrics import evaluate_pair
from edsr_tf.models import ModelConfig, build_model, save_model


#: The documented schema (README, Evaluate): a change to it must change this test too.
DOCUMENTED_RESULT_KEYS = ("set", "scale", "images", "protocol", "psnr", "ssim", "bicubic_psnr",
                          "bicubic_ssim", "generated_lr", "path", "layout", "lr_jpeg_quality", "per_image")
DOCUMENTED_IMAGE_KEYS = ("image", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "generated_lr")
CLI_DOC_KEYS = {"method", "weights", "config", "scale", "self_ensemble", "precision", "tile",
                "tile_overlap", "lr_jpeg_quality", "seconds", "results"}


def _refuse_constant(name):
    raise AssertionError(f"not valid JSON: {name}")


def strict_json(path: Path) -> dict:
    """The file parsed as strict JSON: NaN/Infinity (which json.dumps writes by default) fail."""
    return json.loads(Path(path).read_text(), parse_constant=_refuse_constant)


def test_schema_constants_are_the_documented_ones():
    assert RESULT_KEYS == DOCUMENTED_RESULT_KEYS and IMAGE_KEYS == DOCUMENTED_IMAGE_KEYS


def readme_figures(shared_data):
    """{(set, layout folder): [x2, x3, x4]} from the reference table of ../shared/data/README.md."""
    figures = {}
    for line in (shared_data / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*(Set\d+)\s*\((.*?)\)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if m:
            name, where = m.group(1), m.group(2)
            layouts = ["benchmark", "edsr_benchmark"] if where == "either" else [where.strip("`/")]
            for layout in layouts:
                figures[(name, layout)] = [float(m.group(i)) for i in (3, 4, 5)]
    return figures


@pytest.mark.parametrize("layout", ["benchmark", "edsr_benchmark"])
def test_bicubic_reproduces_reference_figures(shared_data, layout, tmp_path, capsys):
    figures = readme_figures(shared_data)
    assert ("Set5", layout) in figures and ("Set14", layout) in figures
    for i, scale in enumerate((2, 3, 4)):
        out = tmp_path / f"x{scale}.json"
        rc = main(["--bicubic", "--scale", str(scale), "--dataset_dir", str(shared_data / layout),
                   "--eval_sets", "Set5,Set14", "--json", str(out), "--quiet"])
        table = capsys.readouterr().out
        assert rc == 0
        results = {r["set"]: r for r in strict_json(out)["results"]}
        for name in ("Set5", "Set14"):
            got, ref = results[name]["psnr"], figures[(name, layout)][i]
            print(f"{layout} {name} x{scale}: bicubic PSNR {got:.3f} dB (reference {ref})")
            assert abs(got - ref) <= 0.01
            assert results[name]["generated_lr"] == 0  # official LR files were used
            assert f"| {name} | x{scale} | {results[name]['images']} | {got:.2f} |" in table


def test_tiny_model_table_and_json(shared_data, tmp_path, capsys):
    config = ModelConfig(arch="edsr", scales=(2,), n_resblocks=2, n_feats=8, res_scale=0.5)
    weights = save_model(build_model(config), tmp_path / "tiny.weights.h5", config)
    out = tmp_path / "res" / "eval.json"
    rc = main(["--weights", str(weights), "--dataset_dir", str(shared_data / "edsr_benchmark"),
               "--eval_sets", "Set5,set14", "--limit", "3", "--tile", "64", "--json", str(out),
               "--save_dir", str(tmp_path / "sr"), "--quiet"])
    table = capsys.readouterr().out
    assert rc == 0
    doc = strict_json(out)
    assert set(doc) == CLI_DOC_KEYS
    assert doc["config"] == config.to_dict() and doc["scale"] == 2 and not doc["self_ensemble"]
    assert [r["set"] for r in doc["results"]] == ["Set5", "Set14"]  # named as the folders
    for r in doc["results"]:
        assert tuple(r) == DOCUMENTED_RESULT_KEYS
        assert r["images"] == 3 and r["layout"] == "edsr" and r["generated_lr"] == 0
        assert r["bicubic_psnr"] is None and r["bicubic_ssim"] is None  # not asked for
        assert [p["image"] for p in r["per_image"]] == sorted(p["image"] for p in r["per_image"])
        for p in r["per_image"]:
            assert tuple(p) == DOCUMENTED_IMAGE_KEYS
        assert r["psnr"] == pytest.approx(np.mean([p["psnr"] for p in r["per_image"]]))
        assert r["ssim"] == pytest.approx(np.mean([p["ssim"] for p in r["per_image"]]))
        assert f"| {r['set']} | x2 | 3 | {r['psnr']:.2f} | {r['ssim']:.4f} |" in table
    assert table.splitlines()[0] == "| set | scale | images | edsr PSNR | edsr SSIM |"
    # The saved SR image scores what the table says.
    from edsr_tf.evaluation import load_pair
    from edsr_tf.images import read_image

    first = doc["results"][0]["per_image"][0]
    sr = read_image(tmp_path / "sr" / "Set5" / f"{first['image']}_x2.png").rgb
    _, hr = load_pair(shared_data / "edsr_benchmark/Set5/HR" / f"{first['image']}.png",
                      shared_data / "edsr_benchmark/Set5/LR_bicubic/X2" / f"{first['image']}x2.png", 2)
    assert evaluate_pair(sr, hr, 2)["psnr"] == pytest.approx(first["psnr"])

    rc = main(["--weights", str(weights), "--dataset_dir", str(shared_data / "edsr_benchmark"),
               "--eval_sets", "Set5", "--limit", "1", "--self_ensemble", "--quiet"])
    table = capsys.readouterr().out
    assert rc == 0 and "edsr+ PSNR" in table and "| Set5 | x2 | 1 |" in table


def test_missing_dataset_is_named(shared_data, tmp_path, capsys):
    rc = main(["--bicubic", "--scale", "2", "--dataset_dir", str(shared_data / "benchmark"),
               "--eval_sets", "Set5,Urban100"])
    err = capsys.readouterr().err
    assert rc == 2 and "Urban100" in err and str(shared_data / "benchmark") in err
    rc = main(["--bicubic", "--scale", "2", "--dataset_dir", str(tmp_path / "nowhere")])
    assert rc == 2 and "nowhere: dataset directory does not exist" in capsys.readouterr().err


def _hr(rng, h, w, gray=False):
    img = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    return img


def test_layouts_aliases_and_generated_lr(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    # EDSR-PyTorch layout, folder BSD100, one LR file missing.
    write_image(root / "BSD100/HR/a.png", _hr(rng, 25, 31))
    write_image(root / "BSD100/HR/b.png", _hr(rng, 20, 22, gray=True))
    write_image(root / "BSD100/LR_bicubic/X2/ax2.png", _hr(rng, 12, 15))
    # Per-scale layout under benchmark/.
    write_image(root / "benchmark/Urban100/image_SRF_3/img_001_SRF_3_HR.png", _hr(rng, 30, 33))
    write_image(root / "benchmark/Urban100/image_SRF_3/img_001_SRF_3_LR.png", _hr(rng, 10, 11))
    # HR-only folder, and DIV2K with both splits.
    write_image(root / "Manga109/m.png", _hr(rng, 40, 26))
    write_image(root / "DIV2K/DIV2K_train_HR/0001.png", _hr(rng, 40, 40))
    write_image(root / "DIV2K/DIV2K_valid_HR/0801.png", _hr(rng, 36, 44))

    b100 = find_dataset(root, "B100", 2)  # alias, case-insensitive folder match
    assert (b100.name, b100.layout) == ("BSD100", "edsr")
    assert [(p.name, p.lr is not None) for p in b100.pairs] == [("a", True), ("b", False)]
    urban = find_dataset(root, "urban100", 3)
    assert (urban.name, urban.layout, urban.pairs[0].name) == ("Urban100", "srf", "img_001_SRF_3")
    with pytest.raises(DatasetNotFoundError, match=r"no image_SRF_2.*image_SRF_3"):
        find_dataset(root, "Urban100", 2)
    assert find_dataset(root, "Manga109", 4).layout == "hr_only"
    div2k = find_dataset(root, "DIV2K", 2)
    assert (div2k.name, div2k.div2k, div2k.pairs[0].name) == ("DIV2K", True, "0801")

    out = tmp_path / "r.json"
    rc = main(["--bicubic", "--scale", "2", "--dataset_dir", str(root), "--eval_sets",
               "B100,Manga109,DIV2K", "--json", str(out), "--quiet"])
    assert rc == 0
    res = {r["set"]: r for r in strict_json(out)["results"]}
    assert res["BSD100"]["generated_lr"] == 1 and res["Manga109"]["generated_lr"] == 1
    assert res["DIV2K"]["protocol"].startswith("RGB")
    assert "LR images made with imresize" in capsys.readouterr().err


def test_unreadable_image_in_a_set_fails_clearly(tmp_path, capsys):
    write_image(tmp_path / "Set5/HR/a.png", np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "Set5/HR/b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rc = main(["--bicubic", "--scale", "2", "--dataset_dir", str(tmp_path), "--eval_sets", "Set5",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "b.png" in err and "Traceback" not in err


def test_exactly_reproduced_images_are_null_not_infinity(tmp_path, capsys):
    """Bicubic reproduces a flat image exactly: PSNR is infinite, written as null (valid JSON)."""
    write_image(tmp_path / "Flat/HR/a.png", np.full((24, 30, 3), 77, np.uint8))
    write_image(tmp_path / "Flat/HR/b.png", np.full((20, 20), 200, np.uint8))
    out = tmp_path / "r.json"
    rc = main(["--bicubic", "--scale", "2", "--dataset_dir", str(tmp_path), "--eval_sets", "Flat",
               "--json", str(out), "--quiet"])
    table = capsys.readouterr().out
    assert rc == 0 and "| Flat | x2 | 2 | inf | 1.0000 |" in table
    r = strict_json(out)["results"][0]
    assert r["psnr"] is None and r["ssim"] == 1.0 and r["generated_lr"] == 2
    assert [p["psnr"] for p in r["per_image"]] == [None, None]


def _y_psnr(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """PSNR on MATLAB's rounded uint8 Y, ``shave`` border pixels off, written out here."""
    def y(img):
        return np.floor(16 + np.asarray(img, np.float64) @ [65.481, 128.553, 24.966] / 255 + 0.5)

    d = (y(sr) - y(hr))[shave:-shave, shave:-shave]
    return float(10 * np.log10(255.0**2 / np.mean(d**2)))


def test_training_results_share_the_schema_and_the_table(tmp_path):
    """eval.json/eval.md of training: the same evaluate_set, schema and table writer."""
    from edsr_tf.evaluation import (
        bicubic_sr,
        eval_set_from_hr,
        evaluate_set,
        markdown_table,
        write_results,
    )
    from edsr_tf.imresize import bicubic_upscale
    from edsr_tf.metrics import quantize

    rng = np.random.default_rng(3)
    photos = eval_set_from_hr("photos", {"flat": np.full((26, 22, 3), 9, np.uint8),
                                         "noise": rng.integers(0, 256, (33, 40, 3), dtype=np.uint8)}, 2)
    assert [(im.lr.shape, im.hr.shape) for im in photos.images] == [((13, 11, 3), (26, 22, 3)),
                                                                    ((16, 20, 3), (32, 40, 3))]
    seen = []
    r = evaluate_set(bicubic_sr(2), photos, bicubic=True, on_image=seen.append)
    assert tuple(r) == DOCUMENTED_RESULT_KEYS and r["set"] == "photos" and r["generated_lr"] == 2
    assert [s.image.name for s in seen] == ["flat", "noise"] and seen[1].sr.dtype == np.uint8
    assert seen[1].scores is r["per_image"][1]
    assert r["psnr"] == math.inf and r["bicubic_psnr"] == math.inf  # the flat image is exact
    # The score of the SR image handed to on_image, by hand (rounded Y, shave 2): not another run
    # of the same code path.
    noise = photos.images[1]
    np.testing.assert_array_equal(seen[1].sr, bicubic_upscale(noise.lr, 2))
    assert r["per_image"][1]["psnr"] == r["per_image"][1]["bicubic_psnr"] == pytest.approx(
        _y_psnr(seen[1].sr, noise.hr, 2), abs=1e-9)
    jpath, mpath = write_results(tmp_path, [r], title="T", extra={"step": 3})
    doc = strict_json(jpath)
    assert set(doc) == {"results", "step"} and doc["results"][0]["psnr"] is None
    assert mpath.read_text() == markdown_table([r], title="T") == (
        "T\n\n"
        "| set | scale | images | bicubic PSNR | model PSNR | gain (dB) | bicubic SSIM | model SSIM |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| photos | x2 | 2 | inf | inf | - | {r['bicubic_ssim']:.4f} | {r['ssim']:.4f} |\n"
    )
    # A Keras model is run through model_sr at the set's scale.
    config = ModelConfig(arch="edsr", scales=(2,), n_resblocks=1, n_feats=8, res_scale=0.5)
    model = build_model(config)
    direct = evaluate_set(model, photos, limit=1)
    flat = photos.images[0]
    by_hand = np.asarray(model(flat.lr[None].astype(np.float32)))[0]
    assert direct["images"] == 1
    assert direct["psnr"] == pytest.approx(_y_psnr(quantize(by_hand), flat.hr, 2), rel=1e-3)
