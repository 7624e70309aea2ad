"""Training stack: the Keras train_step, exact resume, MDSR dispatch, init_from, precision."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from edsr_tf.imresize import imresize
from edsr_tf.models import ModelConfig, build_model, save_model
from edsr_tf.training import SRTrainer, TrainLoop, lr_schedule, make_optimizer
from edsr_tf.training.app import TrainError, init_from_weights

TINY = dict(n_resblocks=2, n_feats=8)


def photo_patches(photo: np.ndarray, scale: int, patch: int, batch: int, seed: int) -> tf.data.Dataset:
    """Infinite, deterministic (lr, hr) batches of real-photo crops, LR by MATLAB bicubic.

    Stateless: batch i depends only on (seed, i), so a checkpointed iterator can resume it.
    """
    hp = patch * scale
    crops = []
    rng = np.random.default_rng(seed)
    for _ in range(64):
        y = rng.integers(0, photo.shape[0] - hp)
        x = rng.integers(0, photo.shape[1] - hp)
        hr = photo[y:y + hp, x:x + hp]
        crops.append((imresize(hr, scale=1.0 / scale).astype(np.float32), hr.astype(np.float32)))
    lr_all = tf.constant(np.stack([c[0] for c in crops]))
    hr_all = tf.constant(np.stack([c[1] for c in crops]))

    def pick(i):
        idx = tf.random.stateless_uniform([batch], seed=[seed, i], maxval=64, dtype=tf.int32)
        return tf.gather(lr_all, idx), tf.gather(hr_all, idx)

    return tf.data.Dataset.range(1 << 40).map(pick)


def make_trainer(config: ModelConfig, lr: float = 1e-3, seed: int = 3, **compile_kw) -> SRTrainer:
    keras.utils.set_random_seed(seed)
    trainer = SRTrainer(build_model(config), config)
    trainer.compile(optimizer=make_optimizer(lr_schedule(lr, 0)), **compile_kw)
    return trainer


def weights(model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy().copy() for v in model.weights}


def test_fit_lowers_the_l1_loss(photo):
    config = ModelConfig("edsr", (2,), **TINY)
    trainer = make_trainer(config)
    ds = photo_patches(photo, 2, 12, 8, seed=1)
    fixed = next(iter(photo_patches(photo, 2, 12, 32, seed=99)))
    before = float(trainer.compute_sr_loss(*fixed, training=False))
    history = trainer.fit(ds, steps_per_epoch=40, epochs=1, verbose=0)
    after = float(trainer.compute_sr_loss(*fixed, training=False))
    assert np.isfinite(history.history["loss"][-1])
    print(f"L1 on held-out patches: {before:.2f} -> {after:.2f}")
    assert after < 0.6 * before


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(photo, tmp_path):
    config = ModelConfig("edsr", (2,), **TINY)
    data = lambda: photo_patches(photo, 2, 10, 4, seed=5)  # noqa: E731

    straight = make_trainer(config)
    TrainLoop(straight, data(), checkpoint_dir=tmp_path / "a", checkpoint_every=4).run(8)

    first = make_trainer(config)
    TrainLoop(first, data(), checkpoint_dir=tmp_path / "b", checkpoint_every=4).run(4)
    # A new process would rebuild everything from scratch: so do we.
    second = make_trainer(config, seed=123)  # other init: the checkpoint must overwrite it
    loop = TrainLoop(second, data(), checkpoint_dir=tmp_path / "b", checkpoint_every=4)
    assert loop.resume() == 4
    loop.run(8)

    # Control: continuing without the iterator position (fresh data stream) differs.
    third = make_trainer(config)
    loop3 = TrainLoop(third, data(), checkpoint_dir=tmp_path / "b", checkpoint_every=100)
    loop3.state.checkpoint.restore(str(tmp_path / "b" / "ckpt-4")).expect_partial()
    loop3.iterator = iter(data())
    loop3.run(8)

    a, b, c = weights(straight.sr_model), weights(second.sr_model), weights(third.sr_model)
    diff = max(np.abs(a[k] - b[k]).max() for k in a)
    control = max(np.abs(a[k] - c[k]).max() for k in a)
    print(f"resume max |dw| = {diff:.3g}; without iterator state {control:.3g}")
    assert diff <= 1e-6
    assert control > 1e-4
    assert int(second.optimizer.iterations.numpy()) == 8


def test_resume_through_the_data_pipeline(photo, tmp_path):
    """The real tf.data pipeline's iterator (shuffle buffers included) resumes exactly."""
    from PIL import Image

    from edsr_tf.data import DataSource, build_train_dataset

    folder = tmp_path / "hr"
    folder.mkdir()
    for i, (y, x) in enumerate([(0, 0), (100, 150), (150, 300)]):
        Image.fromarray(photo[y:y + 120, x:x + 140]).save(folder / f"{i}.png")
    source = DataSource.folder(folder)
    data = lambda: build_train_dataset(source, (2,), patch_size=12, batch_size=4, seed=7,  # noqa: E731
                                       deterministic=True, crops_per_image=4, shuffle_buffer=16)
    config = ModelConfig("edsr", (2,), **TINY)
    straight = make_trainer(config)
    TrainLoop(straight, data(), checkpoint_dir=tmp_path / "a", checkpoint_every=3).run(6)
    first = make_trainer(config)
    TrainLoop(first, data(), checkpoint_dir=tmp_path / "b", checkpoint_every=3).run(3)
    second = make_trainer(config)
    loop = TrainLoop(second, data(), checkpoint_dir=tmp_path / "b", checkpoint_every=3)
    assert loop.resume() == 3
    loop.run(6)
    a, b = weights(straight.sr_model), weights(second.sr_model)
    assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-6


def _mixed_scales(photo, scales, patch, batch):
    # Alternating scales with unknown static shapes, as build_train_dataset yields for MDSR.
    per_scale = [photo_patches(photo, s, patch, batch, seed=10 + s) for s in scales]
    order = tf.data.Dataset.range(len(scales)).repeat()
    return tf.data.Dataset.choose_from_datasets(per_scale, order)


def test_mdsr_trains_each_scale_through_its_own_branch(photo):
    config = ModelConfig("mdsr", (2, 3, 4), n_resblocks=1, n_feats=8)
    trainer = make_trainer(config)
    ds = _mixed_scales(photo, (2, 3, 4), 8, 2)
    assert ds.element_spec[1].shape[1] is None  # dispatch must work from dynamic shapes
    loop = TrainLoop(trainer, ds)
    w0 = weights(trainer.sr_model)

    def moved(w, scale):
        return max(np.abs(w[k] - w0[k]).max() for k in w if k.startswith(f"upsample_x{scale}_"))

    loop.run(1)  # a x2 batch: only x2's own layers get a gradient (Adam's first step is 0 elsewhere)
    w1 = weights(trainer.sr_model)
    assert moved(w1, 2) > 0
    assert moved(w1, 3) == 0 and moved(w1, 4) == 0
    loop.run(3)
    w3 = weights(trainer.sr_model)
    for s in (2, 3, 4):
        assert moved(w3, s) > 0, f"x{s} upsampler never trained"
    shared = [k for k in w0 if k.startswith("body_0_conv1")]
    assert all(np.abs(w3[k] - w0[k]).max() > 0 for k in shared)


def test_mdsr_rejects_a_batch_of_an_unknown_scale(photo):
    config = ModelConfig("mdsr", (2, 3), n_resblocks=1, n_feats=8)
    trainer = make_trainer(config)
    lr, hr = next(iter(photo_patches(photo, 4, 8, 2, seed=0)))
    with pytest.raises(ValueError, match="scale x4"):
        trainer.compute_sr_loss(lr, hr)


def test_schedule_halves_the_rate_every_decay_steps():
    sched = lr_schedule(1e-4, 200_000)
    got = [float(sched(s)) for s in (0, 199_999, 200_000, 399_999, 400_000)]
    np.testing.assert_allclose(got, [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5], rtol=1e-6)
    opt = make_optimizer(sched)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)
    assert isinstance(make_optimizer(sched, loss_scale=True), keras.optimizers.LossScaleOptimizer)


def test_init_from_copies_the_body_and_skips_the_other_upsampler(tmp_path):
    src_cfg = ModelConfig("edsr", (2,), **TINY)
    keras.utils.set_random_seed(0)
    src = build_model(src_cfg)
    path = save_model(src, tmp_path / "x2.weights.h5", src_cfg)

    x3_cfg = ModelConfig("edsr", (3,), **TINY)
    x3 = build_model(x3_cfg)
    skipped = init_from_weights(x3, x3_cfg, path)
    assert skipped == ["upsample_0_conv"]
    for name in ("head", "body_1_conv2", "body_conv", "tail"):
        for a, b in zip(src.get_layer(name).get_weights(), x3.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)

    # x4's first x2 stage has the same shape as x2's: copied, as the reference's loader does.
    x4_cfg = ModelConfig("edsr", (4,), **TINY)
    x4 = build_model(x4_cfg)
    assert init_from_weights(x4, x4_cfg, path) == ["upsample_1_conv"]

    other = ModelConfig("edsr", (3,), n_resblocks=2, n_feats=16)
    with pytest.raises(TrainError, match="only the scale may differ"):
        init_from_weights(build_model(other), other, path)


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_step_keeps_float32_output_and_finite_loss(photo, mode):
    policy = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[mode]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        config = ModelConfig("edsr", (2,), **TINY)
        keras.utils.set_random_seed(0)
        model = build_model(config)
        trainer = SRTrainer(model, config)
        trainer.compile(optimizer=make_optimizer(lr_schedule(1e-3, 0), loss_scale=mode == "fp16"))
        assert model.get_layer("body_0_conv1").compute_dtype != "float32"
        loop = TrainLoop(trainer, photo_patches(photo, 2, 8, 4, seed=2))
        before = model.get_layer("head").get_weights()[0].copy()
        logs = loop.run(3)
        assert np.isfinite(float(logs["batch_loss"]))
        assert model.output.dtype == "float32"
        assert np.abs(model.get_layer("head").get_weights()[0] - before).max() > 0
    finally:
        keras.config.set_dtype_policy(previous)


def test_jit_compiled_step_matches_the_plain_step(photo):
    config = ModelConfig("edsr", (2,), **TINY)
    plain = make_trainer(config)
    xla = make_trainer(config, jit_compile=True)
    for t in (plain, xla):
        TrainLoop(t, photo_patches(photo, 2, 8, 4, seed=4)).run(3)
    a, b = weights(plain.sr_model), weights(xla.sr_model)
    diff = max(np.abs(a[k] - b[k]).max() for k in a)
    assert diff < 1e-4, diff
