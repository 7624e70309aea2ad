"""Training/eval pipelines: aligned crops, identical augmentation, shapes, seeds, MDSR batches."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edsr_tf.data import DataSource, build_eval_dataset, build_train_dataset
from edsr_tf.dihedral import N_DIHEDRAL, dihedral
from edsr_tf.imresize import imresize


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def coded_lr(h: int, w: int, ident: int) -> np.ndarray:
    """LR whose pixels reveal their position and image: (row, column, ident)."""
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([rows, cols, np.full((h, w), ident)], -1).astype(np.uint8)


def write_div2k(root: Path, hr_images: dict[int, np.ndarray], lr_images: dict[int, np.ndarray],
                scale: int, split: str = "train", track: str = "bicubic") -> Path:
    for num, img in hr_images.items():
        write_png(root / f"DIV2K_{split}_HR" / f"{num:04d}.png", img)
        write_png(root / f"DIV2K_{split}_LR_{track}" / f"X{scale}" / f"{num:04d}x{scale}.png", lr_images[num])
    return root


def batches(ds, n: int):
    return [(lr.numpy(), hr.numpy()) for lr, hr in ds.take(n)]


def which_transform(patch: np.ndarray, source: np.ndarray, size: int) -> tuple[int, int, int]:
    """(k, y, x) such that patch == dihedral(source[y:y+size, x:x+size], k); the row/col
    codes of ``coded_lr`` give y, x as the smallest codes in the patch."""
    y, x = int(patch[..., 0].min()), int(patch[..., 1].min())
    crop = source[y:y + size, x:x + size]
    for k in range(N_DIHEDRAL):
        if crop.shape == patch.shape and np.array_equal(dihedral(crop, k), patch):
            return k, y, x
    raise AssertionError(f"patch is no dihedral transform of the crop at ({y}, {x})")


@pytest.mark.parametrize("scale", [2, 3])
def test_div2k_layout_patches_aligned_and_identically_augmented(tmp_path, scale):
    """LR pixel (i, j) ↔ HR block (i, j); every patch pair must be the same crop + transform."""
    lr = {n: coded_lr(20 + n, 26, n) for n in (1, 2)}
    hr = {n: np.repeat(np.repeat(img, scale, 0), scale, 1) for n, img in lr.items()}
    root = write_div2k(tmp_path / "DIV2K", hr, lr, scale)
    p = 6
    ds = build_train_dataset(DataSource.div2k(root), (scale,), patch_size=p, batch_size=8, seed=3,
                             crops_per_image=4, shuffle_buffer=16)
    seen = set()
    for lr_b, hr_b in batches(ds, 12):
        assert lr_b.shape == (8, p, p, 3) and hr_b.shape == (8, p * scale, p * scale, 3)
        assert lr_b.dtype == np.float32 and hr_b.dtype == np.float32
        for lp, hp in zip(lr_b.astype(np.uint8), hr_b.astype(np.uint8)):
            num = int(lp[0, 0, 2])
            k, y, x = which_transform(lp, lr[num], p)
            expected_hr = dihedral(hr[num][y * scale:(y + p) * scale, x * scale:(x + p) * scale], k)
            np.testing.assert_array_equal(hp, expected_hr)
            seen.add(k)
    assert seen == set(range(8)), f"augmentations seen: {sorted(seen)}"


def test_generated_lr_equals_imresize_of_hr_patch(tmp_path, photo):
    write_png(tmp_path / "hr" / "a.png", photo[:90, :120])
    write_png(tmp_path / "hr" / "b.png", photo[100:200, 200:330])
    p, s = 10, 3
    ds = build_train_dataset(DataSource.folder(tmp_path / "hr"), 3, patch_size=p, batch_size=6, seed=0,
                             crops_per_image=3, shuffle_buffer=8)
    n_equal = n_total = 0
    for lr_b, hr_b in batches(ds, 4):
        assert lr_b.shape == (6, p, p, 3) and hr_b.shape == (6, p * s, p * s, 3)
        assert np.array_equal(lr_b, np.round(lr_b)) and lr_b.min() >= 0 and lr_b.max() <= 255
        for lp, hp in zip(lr_b, hr_b):
            ref = imresize(hp.astype(np.uint8), output_shape=(p, p)).astype(np.float32)
            assert np.abs(lp - ref).max() <= 1
            n_equal += int((lp == ref).sum())
            n_total += lp.size
    assert n_equal / n_total > 0.99


def test_real_lr_file_patch_matches_imresize_of_hr_patch(tmp_path, photo):
    """LR files made by imresize of whole images: patches agree away from the patch border."""
    s, p = 2, 12
    hr = {1: photo[:96, :128], 2: photo[150:250, 200:320]}
    lr = {n: imresize(img, scale=1 / s) for n, img in hr.items()}
    root = write_div2k(tmp_path / "DIV2K", hr, lr, s)
    ds = build_train_dataset(DataSource.div2k(root, data_range="1-2"), [s], patch_size=p, batch_size=8,
                             seed=5, crops_per_image=4, shuffle_buffer=8)
    m = 3  # the kernel reaches 2 LR pixels beyond a patch: compare the interior
    for lr_b, hr_b in batches(ds, 3):
        for lp, hp in zip(lr_b, hr_b):
            ref = imresize(hp.astype(np.uint8), scale=1 / s).astype(np.float32)
            assert np.abs(lp[m:-m, m:-m] - ref[m:-m, m:-m]).max() <= 1


def test_seed_determinism(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    src = DataSource.folder(tmp_path)

    def first(seed):
        ds = build_train_dataset(src, 2, patch_size=8, batch_size=4, seed=seed, deterministic=True,
                                 crops_per_image=4, shuffle_buffer=32)
        return batches(ds, 4)

    a, b, c = first(11), first(11), first(12)
    for (la, ha), (lb, hb) in zip(a, b):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ha, hb)
    assert not all(np.array_equal(ha, hc) for (_, ha), (_, hc) in zip(a, c))
    assert not np.array_equal(a[0][1], a[1][1])


def test_mdsr_batches_have_one_scale_each_and_all_scales_occur(tmp_path, photo):
    write_png(tmp_path / "a.png", photo[:100, :100])
    ds = build_train_dataset(DataSource.folder(tmp_path), (2, 3, 4), patch_size=6, batch_size=3, seed=2,
                             crops_per_image=3, shuffle_buffer=8)
    seen = []
    for lr_b, hr_b in batches(ds, 30):
        assert lr_b.shape == (3, 6, 6, 3)
        s = hr_b.shape[1] // lr_b.shape[1]
        assert hr_b.shape == (3, 6 * s, 6 * s, 3)
        seen.append(s)
    assert set(seen) == {2, 3, 4}


def test_eval_dataset_whole_images(tmp_path, photo):
    s = 3
    hr = {801: photo[:61, :80], 802: photo[100:190, 50:149]}
    lr = {n: imresize(img, scale=1 / s) for n, img in hr.items()}  # ceil sizes: HR < LR*s
    root = write_div2k(tmp_path / "DIV2K", hr, lr, s, split="valid")
    pairs = batches(build_eval_dataset(DataSource.div2k(root), s), 5)
    assert len(pairs) == 2
    for (lr_img, hr_img), num in zip(pairs, (801, 802)):
        h, w = hr[num].shape[0] // s, hr[num].shape[1] // s
        assert lr_img.shape == (1, h, w, 3) and hr_img.shape == (1, h * s, w * s, 3)
        np.testing.assert_array_equal(hr_img[0], hr[num][:h * s, :w * s])
        np.testing.assert_array_equal(lr_img[0], lr[num][:h, :w])
    assert len(batches(build_eval_dataset(DataSource.div2k(root), s, limit=1), 5)) == 1


def test_eval_dataset_generated_lr_is_matlab_imresize(tmp_path, photo):
    write_png(tmp_path / "x.png", photo[:50, :71])
    ((lr_img, hr_img),) = batches(build_eval_dataset(DataSource.folder(tmp_path), 2), 5)
    crop = photo[:50, :70]
    np.testing.assert_array_equal(hr_img[0], crop)
    np.testing.assert_array_equal(lr_img[0], imresize(crop, scale=0.5))


@pytest.mark.parametrize("scales", [(2,), (2, 3)])
def test_iterator_checkpoint_resumes_exactly(tmp_path, scales):
    """A trainer checkpoints the iterator; restoring it continues with the same batches.

    Restored into a freshly built dataset (a new process resuming) and into a new iterator
    of the same dataset after the saved one went on (state shared between iterators of one
    dataset, such as shuffle's reshuffle seed generator, would break this), over several
    epochs of the image table and for several global seeds (the bug this guards against
    showed for some seeds only).
    """
    rng = np.random.default_rng(4)
    for i in range(3):
        write_png(tmp_path / "hr" / f"{i}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))

    def build():
        return build_train_dataset(DataSource.folder(tmp_path / "hr"), scales, patch_size=6, batch_size=4, seed=3,
                                   deterministic=True, crops_per_image=4, shuffle_buffer=16, cache_dir=tmp_path / "c")

    for global_seed, skip in ((0, 0), (1, 0), (0, 3), (1, 2)):
        keras.utils.set_random_seed(global_seed)
        reference = iter(build())
        reference = [next(reference) for _ in range(skip + 8)][skip:]  # 32 patches: ~3 epochs of 12
        ds = build()
        it = iter(ds)
        for _ in range(skip):
            next(it)
        path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / f"ckpt{global_seed}{skip}" / "it"))
        went_on = [next(it) for _ in range(8)]
        for dataset in (build(), ds):
            resumed = iter(dataset)
            tf.train.Checkpoint(iterator=resumed).restore(path)
            for (la, ha), (lb, hb), (lc, hc) in zip(reference, went_on, [next(resumed) for _ in range(8)]):
                for want, got in ((la, lb), (ha, hb), (la, lc), (ha, hc)):
                    np.testing.assert_array_equal(want.numpy(), got.numpy())
