"""Inference library: exact tiling, self-ensemble, batching, receptive field, auto tile."""

import numpy as np
import pytest

from edsr_tf.inference import (
    _predict_fn,
    activation_bytes_per_pixel,
    auto_tile,
    axis_tiles,
    receptive_field_radius,
    tile_grid,
    upscale_array,
)
from edsr_tf.dihedral import N_DIHEDRAL, dihedral, dihedral_inverse
from edsr_tf.models import ModelConfig, build_model, model_for_scale


def tiny_config(scale, arch="edsr"):
    scales = (scale,) if arch == "edsr" else scale
    return ModelConfig(arch=arch, scales=scales, n_resblocks=2, n_feats=8, res_scale=0.5)


@pytest.fixture(scope="module")
def tiny_models():
    return {s: build_model(tiny_config(s)) for s in (2, 3, 4)}


@pytest.fixture(scope="module")
def image():
    # Odd-sized, real-photo content scaled into [0, 255] floats.
    from edsr_tf.sample_data import sample_image

    return sample_image("chelsea")[101:138, 200:245].astype(np.float32)  # 37x45


def direct(model, x):
    return np.asarray(model(x[None].astype(np.float32), training=False))[0]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_untiled(tiny_models, image, scale):
    model = tiny_models[scale]
    radius = receptive_field_radius(model)
    assert len(tile_grid(*image.shape[:2], 7, radius)) > 4  # really tiled, both axes
    whole = upscale_array(model, scale, image)
    assert whole.shape == (37 * scale, 45 * scale, 3) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, direct(model, image), atol=1e-3)
    tiled = upscale_array(model, scale, image, tile=7)  # default overlap = receptive field
    assert np.abs(tiled - whole).max() <= 1e-3
    # The check is sensitive: without enough context the seams show.
    seams = upscale_array(model, scale, image, tile=7, tile_overlap=1)
    assert np.abs(seams - whole).max() > 0.05


def test_receptive_field_radius_is_conservative(tiny_models):
    # Empirical receptive field: perturb one LR pixel and see how far the output changes.
    for scale, model in tiny_models.items():
        radius = receptive_field_radius(model)
        assert radius == 1 + 2 * 2 + 1 + len({2: [2], 3: [3], 4: [2, 2]}[scale]) + 1
        x = np.full((41, 41, 3), 100.0, np.float32)
        base = direct(model, x)
        x[20, 20] += 80.0
        changed = np.argwhere(np.abs(direct(model, x) - base).max(axis=-1) > 1e-6)
        reach_lr = np.abs((changed + 0.5) / scale - 20.5).max()
        assert reach_lr <= radius + 0.5
        assert reach_lr > radius - 3  # and not grossly over-estimated


def test_receptive_field_of_presets():
    for preset, scale, expected in (("edsr_baseline", 2, 36), ("edsr_baseline", 4, 37),
                                    ("edsr", 2, 68)):
        assert receptive_field_radius(build_model(ModelConfig.from_preset(preset, scale))) == expected


def test_axis_tiles_cover_once_with_full_context():
    for n in (1, 7, 20, 37, 64, 101):
        for tile in (5, 8, 16):
            for overlap in (0, 3, 9):
                tiles = axis_tiles(n, tile, overlap)
                covered = np.zeros(n, int)
                for t in tiles:
                    covered[t.core_start : t.core_start + t.core_len] += 1
                    assert 0 <= t.win_start and t.win_start + t.win_len <= n
                    assert t.win_start <= max(t.core_start - overlap, 0)
                    assert t.win_start + t.win_len >= min(t.core_start + t.core_len + overlap, n)
                    assert t.win_len == tiles[0].win_len  # one shape: windows batch together
                assert (covered == 1).all()


def test_self_ensemble_is_mean_of_8_transforms(tiny_models, image):
    model = tiny_models[3]
    x = image[:11, :14]  # non-square: transposing transforms change its shape
    manual = np.mean([dihedral_inverse(direct(model, np.ascontiguousarray(dihedral(x, k))), k)
                      for k in range(N_DIHEDRAL)], axis=0)
    ens = upscale_array(model, 3, x, self_ensemble=True)
    np.testing.assert_allclose(ens, manual, atol=1e-3)
    assert np.abs(ens - direct(model, x)).max() > 0.01  # it is not the plain output
    # Tiled + batched ensemble equals the whole-image ensemble.
    big = upscale_array(model, 3, image, self_ensemble=True)
    tiled = upscale_array(model, 3, image, self_ensemble=True, tile=9, batch_size=5)
    assert np.abs(tiled - big).max() <= 1e-3


def test_batch_equals_single_and_progress(tiny_models, image):
    model = tiny_models[2]
    calls = []
    one = upscale_array(model, 2, image, tile=8, batch_size=1)
    many = upscale_array(model, 2, image, tile=8, batch_size=4,
                         progress=lambda done, total: calls.append((done, total)))
    assert np.abs(one - many).max() <= 1e-3
    total = len(tile_grid(37, 45, 8, receptive_field_radius(model)))
    assert calls[-1] == (total, total) and len(calls) == -(-total // 4)


def test_one_trace_for_all_window_shapes(tiny_models, image):
    model = build_model(tiny_config(2))
    for tile in (None, 6, 9, 13):
        upscale_array(model, 2, image, tile=tile, batch_size=2)
    upscale_array(model, 2, image[:10, :7])
    assert _predict_fn(model, 2).experimental_get_tracing_count() == 1


def test_mdsr_model_whole_or_scale_view():
    config = tiny_config((2, 3), arch="mdsr")
    mdsr = build_model(config)
    x = np.random.default_rng(1).uniform(0, 255, (13, 10, 3)).astype(np.float32)
    view = model_for_scale(mdsr, config, 3)
    np.testing.assert_allclose(upscale_array(mdsr, 3, x), direct(view, x), atol=1e-3)
    assert receptive_field_radius(view) == 1 + 2 * 4 + 2 * 2 + 1 + 1 + 1  # 5x5 pre-blocks count 2


def test_wrong_scale_and_bad_arguments(tiny_models, image):
    with pytest.raises(ValueError, match="x3"):
        upscale_array(tiny_models[2], 3, image)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        upscale_array(tiny_models[2], 2, image[..., 0])
    with pytest.raises(ValueError, match="batch_size"):
        upscale_array(tiny_models[2], 2, image, batch_size=0)
    with pytest.raises(ValueError, match="tile"):
        upscale_array(tiny_models[2], 2, image, tile="big")


def test_auto_tile_bounds_memory():
    baseline = build_model(ModelConfig.from_preset("edsr_baseline", 4))
    radius = receptive_field_radius(baseline)
    tile = auto_tile(baseline, radius, memory_bytes=1 << 30)
    window = tile + 2 * radius
    assert tile % 8 == 0 and tile >= 2 * radius
    assert window**2 * activation_bytes_per_pixel(baseline) <= 1 << 30
    assert (window + 16) ** 2 * activation_bytes_per_pixel(baseline) > 1 << 30  # largest that fits
    assert auto_tile(baseline, radius, memory_bytes=1 << 33) > tile
    # x4's widest layer is the second upsampler conv: 256 in + 1024 out floats per LR pixel.
    assert activation_bytes_per_pixel(baseline) == int((256 + 1024) * 4 * 2.5)
