"""The training degradation stage (edsr_tf/data/degrade.py) and the JPEG leaf (edsr_tf/jpeg.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edsr_tf.data import DataError, DataSource, build_train_dataset, downscale_patches
from edsr_tf.data import degrade as degrade_mod
from edsr_tf.data.degrade import Degradation, DegradationError, gaussian_blur, jpeg_batch
from edsr_tf.jpeg import estimate_quality, file_quality, ijg_table, jpeg_roundtrip


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random texture with edges: JPEG artifacts show on it, as on a photo."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(size=(h, w, 3)), 0), 1)
    base = (base - base.min()) / np.ptp(base) * 200 + 20
    base[h // 3: h // 2, :, :] += 30  # a hard edge
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("hr")
    for i in range(3):
        Image.fromarray(_photo(160, 176, i)).save(d / f"img{i}.png")
    return d


def _first(folder, degradation, seed=3, batch=8):
    ds = build_train_dataset(DataSource.folder(folder), 2, patch_size=24, batch_size=batch, seed=seed,
                             deterministic=True, degradation=degradation)
    lr, hr = next(iter(ds))
    return lr.numpy(), hr.numpy()


def test_settings_are_checked():
    for bad in (dict(jpeg_prob=1.5), dict(jpeg_quality=(0, 90)), dict(jpeg_quality=(90, 30)),
                dict(jpeg_quality=(30.5, 90)), dict(noise_sigma=(-1, 2)), dict(margin=-1)):
        with pytest.raises(DegradationError):
            Degradation(**bad)
    assert not Degradation().active and Degradation().crop_margin == 0
    d = Degradation(jpeg_prob=0.5, jpeg_quality=[40, 90])
    assert d.jpeg_quality == (40, 90) and Degradation.from_dict(d.to_dict()) == d
    assert "JPEG at quality 40-90" in d.describe()


def test_deterministic_under_a_seed(hr_folder):
    d = Degradation(jpeg_prob=0.7, noise_prob=0.5, poisson_prob=0.5, blur_prob=0.5)
    a, b = _first(hr_folder, d), _first(hr_folder, d)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = _first(hr_folder, d, seed=4)
    assert not np.array_equal(a[0], c[0])


def test_shapes_and_values(hr_folder):
    lr, hr = _first(hr_folder, Degradation(jpeg_prob=1.0))
    assert lr.shape == (8, 24, 24, 3) and hr.shape == (8, 48, 48, 3)
    assert lr.dtype == np.float32 and lr.min() >= 0 and lr.max() <= 255
    np.testing.assert_array_equal(lr, np.round(lr))  # uint8 values, as a decoded JPEG


def test_lr_stays_aligned_with_hr(hr_folder):
    """Active but harmless (noise of sigma 0): the LR is the bicubic LR of its HR crop, so the
    random offset cut LR and HR at the same place (borders aside, where bicubic of the larger
    crop sees more context)."""
    lr, hr = _first(hr_folder, Degradation(noise_prob=1.0, noise_sigma=(0, 0)))
    ref = downscale_patches(tf.constant(hr), 2).numpy()
    inner = np.s_[:, 3:-3, 3:-3, :]
    assert np.abs(lr[inner] - ref[inner]).max() <= 1.0


def test_jpeg_quality_range_respected(monkeypatch, hr_folder):
    seen = []
    real = jpeg_batch

    def spy(lr_uint8, quality, on):
        return real(lr_uint8, tf.numpy_function(lambda q: seen.append(q.copy()) or q, [quality], tf.int32), on)

    monkeypatch.setattr(degrade_mod, "jpeg_batch", spy)
    ds = build_train_dataset(DataSource.folder(hr_folder), 2, patch_size=24, batch_size=16, seed=1,
                             deterministic=True, degradation=Degradation(jpeg_prob=1.0, jpeg_quality=(40, 45)))
    it = iter(ds)
    for _ in range(4):
        next(it)
    q = np.concatenate(seen)
    assert q.min() >= 40 and q.max() <= 45 and len(set(q.tolist())) > 3


def test_jpeg_share_left_clean(hr_folder):
    """jpeg_prob 0.5: about half the patches are JPEG, the rest the clean bicubic LR."""
    clean_ref = Degradation(noise_prob=1.0, noise_sigma=(0, 0))
    lr_c, _ = _first(hr_folder, clean_ref, batch=32)
    lr_j, _ = _first(hr_folder, Degradation(jpeg_prob=0.5), batch=32)
    same = [np.array_equal(a, b) for a, b in zip(lr_c, lr_j)]
    assert 6 <= sum(same) <= 26


def _blockiness(img: np.ndarray) -> tuple[float, float]:
    """Mean |jump| across 8x8 block boundaries vs. inside blocks (columns, Y-ish mean)."""
    y = img.astype(np.float64).mean(axis=-1)
    d = np.abs(np.diff(y, axis=1))
    at = d[:, 7::8].mean()
    inside = np.delete(d, np.s_[7::8], axis=1).mean()
    return at, inside


def _poisson_lr(levels, prob: float, scale: tuple[float, float], seed=(7, 8)) -> np.ndarray:
    """Flat LR patches (one grey level each, 40x40, no margin) through the Poisson stage only."""
    lr = np.stack([np.full((40, 40, 3), v, np.uint8) for v in levels])
    hr = np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2)
    d = Degradation(poisson_prob=prob, poisson_scale=scale, margin=0)
    out, _ = degrade_mod.degrade(tf.constant(lr), tf.constant(hr), scale=2, patch_size=40, degradation=d,
                                 seed=tf.constant(seed, tf.int64))
    return out.numpy()


def test_poisson_noise_grows_as_the_square_root_of_the_level():
    """Shot noise: standard deviation scale*sqrt(v) at grey level v, none in black, seeded."""
    levels = [0, 25, 100, 225]
    out = _poisson_lr(levels, 1.0, (0.5, 0.5))
    for v, img in zip(levels, out):
        want = 0.5 * np.sqrt(v)
        assert abs(img.mean() - v) < 0.5, (v, img.mean())
        assert abs(img.std() - want) < 0.1 * want + 0.3, (v, img.std(), want)  # rounding adds ~0.29
    assert np.all(out[0] == 0)
    np.testing.assert_array_equal(out, _poisson_lr(levels, 1.0, (0.5, 0.5)))
    assert not np.array_equal(out, _poisson_lr(levels, 1.0, (0.5, 0.5), seed=(7, 9)))
    assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))


def test_poisson_noise_share_and_settings():
    out = _poisson_lr([128] * 64, 0.25, (1.0, 1.0))
    noisy = np.array([img.std() > 0 for img in out])
    assert 6 <= noisy.sum() <= 26  # 25 % of 64 patches, binomial spread
    for bad in (dict(poisson_prob=-0.1), dict(poisson_scale=(0.5, 0.1)), dict(poisson_scale=(0, 4))):
        with pytest.raises(DegradationError):
            Degradation(**bad)
    d = Degradation(poisson_prob=0.3, poisson_scale=[0.1, 0.4])
    assert d.active and Degradation.from_dict(d.to_dict()) == d
    assert "30% Poisson noise scale 0.1-0.4" in d.describe()
    # a run config written before Poisson noise existed still loads, without it
    assert Degradation.from_dict({"jpeg_prob": 0.5}).poisson_prob == 0.0


def test_decoded_jpeg_differs_from_its_source_the_8x8_way():
    img = _photo(64, 64, 7)
    out = jpeg_batch(tf.constant(img[None]), tf.constant([20]), tf.constant([True])).numpy()[0]
    assert np.abs(out.astype(int) - img).mean() > 1.0
    err = out.astype(np.float64) - img
    at, inside = _blockiness(err)
    assert at > 1.3 * inside  # the error jumps at block edges: real JPEG, not noise or blur
    same = jpeg_batch(tf.constant(img[None]), tf.constant([20]), tf.constant([False])).numpy()[0]
    np.testing.assert_array_equal(same, img)


def test_blur_is_a_normalised_gaussian():
    x = np.zeros((2, 21, 21, 3), np.float32)
    x[:, 10, 10, :] = 100.0
    y = gaussian_blur(tf.constant(x), tf.constant([0.0, 1.0]), 1.5).numpy()
    np.testing.assert_allclose(y[0], x[0], atol=1e-3)  # sigma 0: unchanged
    assert abs(y[1].sum() - x[1].sum()) < 1e-2 and y[1, 10, 10, 0] < 30
    np.testing.assert_allclose(y[1, 10, 9, 0], y[1, 9, 10, 0], rtol=1e-5)


def test_blur_needs_generated_lr(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir(), lr.mkdir()
    img = _photo(128, 128, 1)
    Image.fromarray(img).save(hr / "a.png")
    Image.fromarray(img[::2, ::2]).save(lr / "a.png")
    with pytest.raises(DataError, match="blur"):
        build_train_dataset(DataSource.folder(hr, lr_root=lr), 2, patch_size=24, batch_size=4, seed=0,
                            degradation=Degradation(blur_prob=0.5))


# ------------------------------------------------------------------ edsr_tf.jpeg

@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 95])
def test_quality_estimated_from_the_file(tmp_path, quality):
    p = tmp_path / "a.jpg"
    Image.fromarray(_photo(32, 32, 0)).save(p, quality=quality)
    assert file_quality(p) == quality
    png = tmp_path / "a.png"
    Image.fromarray(_photo(32, 32, 0)).save(png)
    assert file_quality(png) is None


def test_quality_from_a_nonstandard_table_is_the_nearest():
    t = ijg_table(70).astype(float) * 1.03
    assert abs(estimate_quality(np.round(t)) - 70) <= 2


def test_roundtrip_is_pillow_jpeg():
    img = _photo(40, 48, 2)
    out = jpeg_roundtrip(img, 60)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=60)
    np.testing.assert_array_equal(out, np.asarray(Image.open(buf).convert("RGB")))
    gray = jpeg_roundtrip(img[..., 0], 60)
    assert gray.shape == (40, 48) and gray.dtype == np.uint8


def _cpu_ms_per_patch(folder, degradation, batches: int = 12, batch: int = 16) -> float:
    import resource

    ds = build_train_dataset(DataSource.folder(folder), 2, patch_size=48, batch_size=batch, seed=0,
                             degradation=degradation)
    it = iter(ds)
    for _ in range(3):
        next(it)
    usage = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731 (user + system)
    t0 = usage()
    for _ in range(batches):
        next(it)
    return (usage() - t0) * 1000 / (batches * batch)


def test_degradation_costs_little_next_to_a_training_step(hr_folder):
    """The JPEG models' stage adds under 1 CPU ms per patch (measured: ~0.1), under 1 % of a
    training step of the shipped models (~125 CPU ms per patch on 2 cores: 16 patches/s,
    benchmarks/train_throughput.py), so it cannot slow training
    (benchmarks/input_pipeline.py --only generated_lr generated_lr_jpeg measures both at 2K).
    Checked to fail when each JPEG is done 21 times (+1.6 ms)."""
    clean = _cpu_ms_per_patch(hr_folder, None)
    jpeg = _cpu_ms_per_patch(hr_folder, Degradation(jpeg_prob=0.5, jpeg_quality=(30, 95)))
    assert jpeg - clean < 1.0, (clean, jpeg)
