"""The 8 flips/rotations (edsr_tf.dihedral): one definition for augmentation and self-ensemble."""

import numpy as np
import pytest
import tensorflow as tf

from edsr_tf import dihedral as d4


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)  # non-square


def test_bits_are_edsr_pytorch_augment_order(image):
    # common.augment: hflip (W), then vflip (H), then transpose.
    ref = {0: image, 1: image[:, ::-1], 2: image[::-1], 3: image[::-1, ::-1],
           4: image.transpose(1, 0, 2), 5: image[:, ::-1].transpose(1, 0, 2),
           6: image[::-1].transpose(1, 0, 2), 7: image[::-1, ::-1].transpose(1, 0, 2)}
    for k in range(d4.N_DIHEDRAL):
        np.testing.assert_array_equal(d4.dihedral(image, k), ref[k])
        assert d4.transposes(k) == (k >= 4)


def test_eight_distinct_and_inverses(image):
    outs = [d4.dihedral(image, k) for k in range(d4.N_DIHEDRAL)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    for k, o in enumerate(outs):
        np.testing.assert_array_equal(d4.dihedral_inverse(o, k), image)
        np.testing.assert_array_equal(d4.dihedral(o, d4.inverse(k)), image)
    # A group: every composition is one of the 8.
    for a in range(8):
        for b in range(8):
            c = d4.dihedral(d4.dihedral(image, a), b)
            assert any(c.shape == o.shape and np.array_equal(c, o) for o in outs)
    with pytest.raises(ValueError, match="0..7"):
        d4.dihedral(image, 8)


def test_numpy_and_tensorflow_agree_on_images_and_batches(image):
    batch = np.stack([image, image[::-1]])
    for k in range(8):
        np.testing.assert_array_equal(d4.dihedral(tf.constant(image), k).numpy(), d4.dihedral(image, k))
        np.testing.assert_array_equal(d4.dihedral(tf.constant(batch), k).numpy(), d4.dihedral(batch, k))
        back = d4.dihedral_inverse(d4.dihedral(tf.constant(batch), k), k)
        np.testing.assert_array_equal(back.numpy(), batch)


def test_index_maps_are_the_same_transforms():
    patch = np.random.default_rng(1).integers(0, 256, (6, 6, 3))
    rows, cols = d4.index_maps(6)
    assert rows.shape == cols.shape == (8, 6, 6) and rows.dtype == np.int32
    for k in range(8):
        np.testing.assert_array_equal(patch[rows[k], cols[k]], d4.dihedral(patch, k))


def test_augmentation_and_self_ensemble_use_this_module():
    import edsr_tf.data.patches as patches
    import edsr_tf.inference as inference

    assert patches.index_maps is d4.index_maps and patches.N_DIHEDRAL == d4.N_DIHEDRAL
    assert inference.dihedral is d4.dihedral and inference.dihedral_inverse is d4.dihedral_inverse
    for mod in (patches, inference):
        assert not hasattr(mod, "dihedral_np") and not hasattr(mod, "ensemble_transforms")


def test_augmentation_draws_the_8_uniformly():
    from edsr_tf.data.patches import random_crops

    img = tf.constant(np.arange(4 * 4, dtype=np.float32).reshape(4, 4, 1))
    maps = d4.dihedral(img.numpy(), 0)
    counts = np.zeros(8, int)
    for seed in range(250):
        crops = random_crops(img, 4, 8, tf.constant([seed, 7], tf.int64)).numpy()
        for c in crops:  # whole-image crops: only the transform varies
            k = next(k for k in range(8) if np.array_equal(c, d4.dihedral(maps, k)))
            counts[k] += 1
    # 2000 draws, 250 expected per transform: a chi-square far below the 0.1 % critical value (24.3).
    chi2 = ((counts - 250) ** 2 / 250).sum()
    assert chi2 < 24.3, counts
