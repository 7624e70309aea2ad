"""Data sources: DIV2K layout and data_range, folders, tfds plumbing, errors, the real DIV2K pair."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ci_guard import require_module
from PIL import Image

from edsr_tf.data import DataError, DataSource, build_eval_dataset, build_train_dataset, image_pairs
from edsr_tf.data.sources import parse_data_range, tfds_builder, tfds_name_for, tfds_split
from edsr_tf.imresize import imresize


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def tiny_div2k(root: Path, nums, split="train", track="bicubic", scales=(2,)) -> Path:
    for n in nums:
        write_png(root / f"DIV2K_{split}_HR" / f"{n:04d}.png", np.full((24, 24, 3), n % 256, np.uint8))
        for s in scales:
            write_png(root / f"DIV2K_{split}_LR_{track}" / f"X{s}" / f"{n:04d}x{s}.png",
                      np.full((24 // s, 24 // s, 3), n % 256, np.uint8))
    return root


@pytest.mark.parametrize("text,expected", [("1-800", [(1, 800)]), ("1-800/801-900", [(1, 800), (801, 900)]),
                                           (" 3 - 3 ", [(3, 3)])])
def test_parse_data_range(text, expected):
    assert parse_data_range(text) == expected


@pytest.mark.parametrize("text", ["", "800", "5-2", "0-3", "a-b", "1-2/3-4/5-6", "1-800/"])
def test_bad_data_range(text):
    with pytest.raises(DataError, match="data_range"):
        DataSource.div2k("/nowhere", data_range=text)


def test_div2k_data_range_selects_by_number_across_train_and_valid(tmp_path):
    root = tiny_div2k(tmp_path / "DIV2K", [1, 2, 3, 4])
    tiny_div2k(root, [801, 802], split="valid")
    src = DataSource.div2k(root, data_range="2-3/802-900")
    assert [p.name for p in image_pairs(src, 2, train=True)] == ["0002", "0003"]
    assert [p.name for p in image_pairs(src, 2, train=False)] == ["0802"]
    default = DataSource.div2k(tmp_path)  # the parent of DIV2K/ works as EDSR-PyTorch's --dir_data
    assert [p.name for p in image_pairs(default, 2, train=True)] == ["0001", "0002", "0003", "0004"]
    assert [p.name for p in image_pairs(default, 2, train=False)] == ["0801", "0802"]
    pair = image_pairs(default, 2, train=False)[0]
    assert pair.lr_path == root / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png"


def test_unknown_track(tmp_path):
    root = tiny_div2k(tmp_path, [1], track="unknown")
    (pair,) = image_pairs(DataSource.div2k(root, track="unknown"), 2, train=True)
    assert pair.lr_path == root / "DIV2K_train_LR_unknown" / "X2" / "0001x2.png"
    with pytest.raises(DataError, match=r"DIV2K_train_LR_bicubic/X2/0001x2\.png"):
        image_pairs(DataSource.div2k(root), 2, train=True)
    with pytest.raises(DataError, match="track"):
        DataSource.div2k(root, track="mild")


def test_missing_lr_file_named(tmp_path):
    root = tiny_div2k(tmp_path, [1, 2])
    (root / "DIV2K_train_LR_bicubic" / "X2" / "0002x2.png").unlink()
    with pytest.raises(DataError, match=r"missing LR image .*0002x2\.png"):
        build_train_dataset(DataSource.div2k(root), 2, patch_size=4)
    with pytest.raises(DataError, match=r"X3/0001x3\.png"):
        build_train_dataset(DataSource.div2k(root), (3,), patch_size=4)


def test_missing_and_empty_dirs_named(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope"))):
        build_train_dataset(DataSource.div2k(tmp_path / "nope"), 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="DIV2K_train_HR"):
        build_train_dataset(DataSource.div2k(tmp_path / "empty"), 2)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "empty")) + ".* no images"):
        build_eval_dataset(DataSource.folder(tmp_path / "empty"), 2)
    with pytest.raises(DataError, match="no DIV2K HR images numbered 801-900"):
        build_eval_dataset(DataSource.div2k(tiny_div2k(tmp_path / "d", [1])), 2)


def test_too_small_and_mismatched_images_named(tmp_path):
    root = tiny_div2k(tmp_path, [1])
    with pytest.raises(DataError, match=r"every training image is smaller than the HR patch 48x48.*"
                                         r"0001\.png \(24x24\)"):
        build_train_dataset(DataSource.div2k(root), 2, patch_size=24)
    write_png(root / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", np.zeros((6, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r"0001x2\.png is 6x6 .* not an x2 pair"):
        build_train_dataset(DataSource.div2k(root), 2, patch_size=4)


def test_folder_with_lr_root(tmp_path, photo):
    hr = photo[:40, :60]
    write_png(tmp_path / "HR" / "cat.png", hr)
    lr = imresize(hr, scale=0.5)
    write_png(tmp_path / "LR_bicubic" / "X2" / "catx2.png", lr)
    src = DataSource.folder(tmp_path / "HR", lr_root=tmp_path / "LR_bicubic")
    ((lr_img, hr_img),) = [(a.numpy(), b.numpy()) for a, b in build_eval_dataset(src, 2)]
    np.testing.assert_array_equal(lr_img[0], lr)
    np.testing.assert_array_equal(hr_img[0], hr)
    with pytest.raises(DataError, match="X3"):
        build_eval_dataset(src, 3)


def test_bad_arguments():
    with pytest.raises(DataError, match="kind"):
        DataSource(kind="zip", root="x")
    with pytest.raises(DataError, match="root"):
        DataSource(kind="folder")
    with pytest.raises(DataError, match="scales"):
        build_train_dataset(DataSource.folder("/x"), (2, 2))
    with pytest.raises(DataError, match="DataSource"):
        build_train_dataset("/some/dir", 2)


# ---------------------------------------------------------------- tfds (never downloads)

def test_tfds_names_and_splits():
    src = DataSource.tfds()
    assert tfds_name_for(src, 3) == "div2k/bicubic_x3"
    assert tfds_name_for(DataSource.tfds(track="unknown"), 4) == "div2k/unknown_x4"
    with pytest.raises(DataError, match="unknown tfds name 'mnist'"):
        tfds_name_for(DataSource.tfds("mnist"), 2)
    with pytest.raises(DataError, match="unknown tfds name 'div2k/bicubic_x5'"):
        tfds_name_for(DataSource.tfds("div2k/bicubic_x5"), 5)
    with pytest.raises(DataError, match="is for x2, not x4"):
        tfds_name_for(DataSource.tfds("div2k/bicubic_x2"), 4)
    assert tfds_split(src, train=True) == "train[0:800]"
    assert tfds_split(src, train=False) == "validation[0:100]"
    assert tfds_split(DataSource(kind="tfds", data_range="1-10/801-810"), train=False) == "validation[0:10]"
    with pytest.raises(DataError, match="within 1-800"):
        tfds_split(DataSource(kind="tfds", data_range="700-900"), train=True)


def test_tfds_unprepared_without_zips_asks_for_manual_dir(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_download(*args, **kwargs):
        raise AssertionError("must not download or prepare")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    data_dir = tmp_path / "tfds"
    with pytest.raises(DataError) as err:
        build_train_dataset(DataSource.tfds(data_dir=data_dir), 2)
    msg = str(err.value)
    assert str(data_dir / "downloads" / "manual") in msg
    assert "DIV2K_train_HR.zip" in msg and "DIV2K_train_LR_bicubic_X2.zip" in msg
    assert "DIV2K_valid_LR_bicubic_X2.zip" in msg
    manual = tmp_path / "zips"
    with pytest.raises(DataError, match=re.escape(str(manual))):
        tfds_builder(DataSource.tfds("div2k/unknown_x3", data_dir=data_dir, manual_dir=manual), 3)


def test_tfds_passes_manual_dir_when_zips_present(tmp_path, monkeypatch):
    """With all zips in the manual dir it prepares from them, passing manual_dir to tfds."""
    import tensorflow_datasets as tfds

    seen = {}

    def fake_prepare(self, download_config=None, **kwargs):
        seen["manual_dir"] = download_config.manual_dir
        seen["data_dir"] = self.data_dir
        raise RuntimeError("stop here")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fake_prepare)
    manual = tmp_path / "zips"
    manual.mkdir()
    for name in ("DIV2K_train_HR.zip", "DIV2K_valid_HR.zip", "DIV2K_train_LR_bicubic_X4.zip",
                 "DIV2K_valid_LR_bicubic_X4.zip"):
        (manual / name).write_bytes(b"")
    with pytest.raises(DataError, match="preparing tfds dataset 'div2k/bicubic_x4'.*stop here"):
        tfds_builder(DataSource.tfds(data_dir=tmp_path / "tfds", manual_dir=manual), 4)
    assert Path(seen["manual_dir"]) == manual
    assert str(seen["data_dir"]).startswith(str(tmp_path / "tfds"))


# ---------------------------------------------------------------- the real DIV2K pair

def test_real_div2k_pair_patches_aligned(shared_data):
    src = DataSource.div2k(shared_data / "DIV2K")
    ds = build_train_dataset(src, 2, patch_size=16, batch_size=8, seed=1, crops_per_image=8, shuffle_buffer=8)
    lr_b, hr_b = next(iter(ds))
    assert lr_b.shape == (8, 16, 16, 3) and hr_b.shape == (8, 32, 32, 3)
    m = 3  # away from the patch border, the official LR equals MATLAB bicubic of the HR patch
    for lp, hp in zip(lr_b.numpy(), hr_b.numpy()):
        ref = imresize(hp.astype(np.uint8), scale=0.5).astype(np.float32)
        assert np.abs(lp[m:-m, m:-m] - ref[m:-m, m:-m]).max() <= 1
    # shifting the LR by one pixel breaks the match: the check above can fail
    i = int(np.argmax(hr_b.numpy().std(axis=(1, 2, 3))))  # the most textured patch
    lp, hp = lr_b.numpy()[i], hr_b.numpy()[i]
    ref = imresize(hp.astype(np.uint8), scale=0.5).astype(np.float32)
    assert np.abs(lp[m:-m, m + 1:-m + 1 or None] - ref[m:-m, m:-m]).max() > 1


# ---------------------------------------------------------------- datasets/prepare.py

def _prepare_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "datasets" / "prepare.py"
    spec = importlib.util.spec_from_file_location("edsr_prepare_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_lr_and_cache(tmp_path, photo, capsys):
    prepare = _prepare_module()
    hr = photo[:45, :61]
    write_png(tmp_path / "HR" / "cat.png", hr)
    assert prepare.main(["lr", "--hr_dir", str(tmp_path / "HR"), "--out_dir", str(tmp_path / "LR"),
                         "--scale=2,3"]) == 0
    for s in (2, 3):
        h, w = 45 // s, 61 // s
        got = np.asarray(Image.open(tmp_path / "LR" / f"X{s}" / f"catx{s}.png"))
        np.testing.assert_array_equal(got, imresize(hr[: h * s, : w * s], output_shape=(h, w)))
    assert prepare.make_lr(tmp_path / "HR", tmp_path / "LR", [2, 3]) == 0  # up to date: kept
    args = ["cache", "--hr_dir", str(tmp_path / "HR"), "--lr_dir", str(tmp_path / "LR"), "--scale=2,3",
            "--cache_dir", str(tmp_path / "cache")]
    assert prepare.main(args) == 0
    assert "3 decoded" in capsys.readouterr().out  # HR once + LR x2 + LR x3
    assert prepare.main(args) == 0
    assert "0 decoded" in capsys.readouterr().out
    assert prepare.main(["cache", "--div2k", str(tmp_path / "none"), "--cache_dir", str(tmp_path / "c")]) == 1
    assert "DIV2K root directory not found" in capsys.readouterr().err


def test_tfds_end_to_end_from_manual_zips(tmp_path, monkeypatch):
    """Tiny fake DIV2K zips in <data_dir>/downloads/manual: prepared offline, read, cached."""
    require_module("importlib_resources", "tensorflow-datasets needs it to prepare a dataset")
    import io
    import zipfile

    import tensorflow_datasets as tfds

    # The fake zips cannot match the real zips' registered checksums.
    monkeypatch.setattr(tfds.core.download.download_manager.DownloadManager,
                        "_register_or_validate_checksums", lambda self, *a, **k: None)
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    for split, nums in (("train", [1, 2]), ("valid", [801])):
        with zipfile.ZipFile(manual / f"DIV2K_{split}_HR.zip", "w") as zh, \
                zipfile.ZipFile(manual / f"DIV2K_{split}_LR_bicubic_X2.zip", "w") as zl:
            for n in nums:
                lr = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
                images[n] = (lr, np.repeat(np.repeat(lr, 2, 0), 2, 1))
                zh.writestr(f"DIV2K_{split}_HR/{n:04d}.png", png(images[n][1]))
                zl.writestr(f"DIV2K_{split}_LR_bicubic/X2/{n:04d}x2.png", png(images[n][0]))
    src = DataSource(kind="tfds", tfds_data_dir=str(tmp_path / "tfds"), data_range="1-2/801-801")
    for cache_dir in (None, tmp_path / "cache"):
        ds = build_train_dataset(src, 2, patch_size=4, batch_size=4, seed=1, crops_per_image=2,
                                 shuffle_buffer=4, cache_dir=cache_dir)
        for lr_b, hr_b in [(a.numpy(), b.numpy()) for a, b in ds.take(2)]:
            assert lr_b.shape == (4, 4, 4, 3) and hr_b.shape == (4, 8, 8, 3)
            np.testing.assert_array_equal(hr_b[:, ::2, ::2], lr_b)  # HR = LR blocks: aligned
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
    ((lr_img, hr_img),) = [(a.numpy(), b.numpy()) for a, b in build_eval_dataset(src, 2)]
    np.testing.assert_array_equal(lr_img[0], images[801][0])
    np.testing.assert_array_equal(hr_img[0], images[801][1])


def test_folder_tree_and_several_roots_skip_small_images(tmp_path, photo):
    """A folder source reads subfolders and comma-separated roots; images smaller than the HR
    patch are skipped with one notice giving the count, the rest still train."""
    from edsr_tf.data import DataWarning, image_pairs

    write_png(tmp_path / "a" / "T91" / "big.png", photo[:40, :40])
    write_png(tmp_path / "a" / "T91" / "tiny.png", photo[:10, :10])
    write_png(tmp_path / "a" / "BSD" / "deep" / "big2.png", photo[40:80, :40])
    write_png(tmp_path / "a" / ".hidden" / "x.png", photo[:40, :40])
    write_png(tmp_path / "b" / "other.png", photo[:12, :12])
    src = DataSource.folder(f"{tmp_path / 'a'},{tmp_path / 'b'}")
    names = [p.name for p in image_pairs(src, 2, train=True)]
    assert names == ["BSD/deep/big2", "T91/big", "T91/tiny", "other"]
    with pytest.warns(DataWarning, match=r"skipping 2 of 4 training images smaller than the HR patch 16x16"):
        ds = build_train_dataset(src, 2, patch_size=8, batch_size=2, seed=0)
    lr, hr = next(iter(ds))
    assert lr.shape == (2, 8, 8, 3) and hr.shape == (2, 16, 16, 3)
    with pytest.raises(DataError, match="HR image directory not found: .*missing"):
        image_pairs(DataSource.folder(f"{tmp_path / 'a'},{tmp_path / 'missing'}"), 2, train=True)
