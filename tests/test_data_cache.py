"""Decoded-image cache: reused without decoding, rebuilt when corrupt or stale, same pixels."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edsr_tf.data.cache as cache_mod
from edsr_tf.data import DataSource, DecodedImageCache, build_train_dataset


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def div2k(tmp_path):
    """Two tiny ×2 pairs in DIV2K's layout (noise, so any pixel error shows)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "DIV2K"
    for n in (1, 2):
        write_png(root / "DIV2K_train_HR" / f"{n:04d}.png", rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
        write_png(root / "DIV2K_train_LR_bicubic" / "X2" / f"{n:04d}x2.png",
                  rng.integers(0, 256, (16, 20, 3), dtype=np.uint8))
    return root


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = cache_mod.decode_image_file

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(cache_mod, "decode_image_file", counting)
    return calls


def first_batches(root: Path, cache_dir: Path | None, n: int = 3):
    ds = build_train_dataset(DataSource.div2k(root), 2, patch_size=6, batch_size=4, seed=9,
                             deterministic=True, cache_dir=cache_dir, crops_per_image=4, shuffle_buffer=8)
    return [(lr.numpy(), hr.numpy()) for lr, hr in ds.take(n)]


def assert_same(a, b):
    for (la, ha), (lb, hb) in zip(a, b):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ha, hb)


def test_cache_reused_without_decoding_and_same_batches(div2k, tmp_path, count_decodes):
    reference = first_batches(div2k, None)
    cache_dir = tmp_path / "cache"
    assert_same(first_batches(div2k, cache_dir), reference)
    assert sorted(count_decodes) == ["0001.png", "0001x2.png", "0002.png", "0002x2.png"]
    npys = sorted(cache_dir.glob("*.npy"))
    assert len(npys) == 4 and len(list(cache_dir.glob("*.json"))) == 4
    mtimes = [p.stat().st_mtime_ns for p in npys]
    count_decodes.clear()
    assert_same(first_batches(div2k, cache_dir), reference)
    assert count_decodes == []
    assert [p.stat().st_mtime_ns for p in npys] == mtimes
    arr = np.load(npys[0])  # entries are plain .npy files
    assert arr.dtype == np.uint8 and arr.ndim == 3


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "manifest"])
def test_corrupt_entry_rebuilt(div2k, tmp_path, count_decodes, caplog, damage):
    reference = first_batches(div2k, None)
    cache_dir = tmp_path / "cache"
    first_batches(div2k, cache_dir)
    meta_path = next(p for p in cache_dir.glob("*.json") if json.loads(p.read_text())["source"].endswith("0002.png"))
    npy = meta_path.with_suffix(".npy")
    if damage == "flip_byte":
        data = bytearray(npy.read_bytes())
        data[-7] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "truncate":
        with open(npy, "r+b") as f:
            f.truncate(npy.stat().st_size - 100)
    else:
        meta_path.write_text("{not json")
    count_decodes.clear()
    with caplog.at_level(logging.WARNING, logger="edsr_tf.data"):
        assert_same(first_batches(div2k, cache_dir), reference)
    assert count_decodes == ["0002.png"]
    assert any("rebuilding" in r.getMessage() and "0002.png" in r.getMessage() for r in caplog.records)
    count_decodes.clear()
    first_batches(div2k, cache_dir, n=1)
    assert count_decodes == []


def test_stale_entry_rebuilt_with_new_content(div2k, tmp_path, count_decodes, caplog):
    cache_dir = tmp_path / "cache"
    first_batches(div2k, cache_dir)
    hr = div2k / "DIV2K_train_HR" / "0001.png"
    new = np.random.default_rng(5).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    write_png(hr, new)
    st = hr.stat()
    os.utime(hr, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    count_decodes.clear()
    with caplog.at_level(logging.WARNING, logger="edsr_tf.data"):
        got = first_batches(div2k, cache_dir)
    assert count_decodes == ["0001.png"]
    assert any("stale" in r.getMessage() for r in caplog.records)
    assert_same(got, first_batches(div2k, None))
    np.testing.assert_array_equal(np.load(DecodedImageCache(cache_dir).file_entry(hr).path), new)


def test_cache_store_lookup_roundtrip(tmp_path):
    c = DecodedImageCache(tmp_path)
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    entry = c.store("k/img.png", {"source": "x", "size": 1}, arr)
    np.testing.assert_array_equal(np.load(entry.path), arr)  # a plain .npy file
    assert c.lookup("k/img.png", {"source": "x", "size": 1}) == entry
    assert c.lookup("k/img.png", {"source": "x", "size": 2}) is None  # stale fingerprint
    assert c.lookup("other", {"source": "x"}) is None


def test_sources_do_not_import_the_cache():
    """``data.cache`` imports ``data.sources``, never the reverse (no import cycle)."""
    import ast

    import edsr_tf.data.sources as sources_mod

    tree = ast.parse(Path(sources_mod.__file__).read_text())
    imported = {"." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith(("edsr_tf.data", "."))}, imported
