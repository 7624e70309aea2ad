"""MDSR training: a batch of scale s updates only s's sub-network, with Adam as PyTorch's.

The PyTorch reference leaves the other scales' parameters without gradients, so Adam
skips them (no moment decay, no parameter change) and counts steps per parameter. These
tests check the same on dynamic shapes (tf.switch_case dispatch, as the real MDSR
pipeline yields) and static ones, in float32, fp16 (LossScaleOptimizer) and bf16.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from ci_guard import require_module
import tensorflow as tf

from edsr_tf.models import ModelConfig, build_model, model_for_scale
from edsr_tf.training import SRTrainer, TrainLoop, lr_schedule, make_optimizer
from edsr_tf.training.trainer import l1_loss
from test_training import photo_patches, weights

SCALES = (2, 3)
CONFIG = ModelConfig("mdsr", SCALES, n_resblocks=1, n_feats=8)
LR = 1e-3


def scripted_scales(photo, order: list[int], patch: int = 6, batch: int = 2) -> tf.data.Dataset:
    """Batches of the scales in ``order`` (indices into SCALES), with unknown static shapes."""
    per_scale = [photo_patches(photo, s, patch, batch, seed=20 + s) for s in SCALES]
    choice = tf.data.Dataset.from_tensor_slices(tf.constant(order, tf.int64))
    return tf.data.Dataset.choose_from_datasets(per_scale, choice)


def make(policy: str | None = None, optimizer=None) -> SRTrainer:
    keras.utils.set_random_seed(5)
    trainer = SRTrainer(build_model(CONFIG), CONFIG)
    if optimizer is None:
        optimizer = make_optimizer(lr_schedule(LR, 0))
        if policy == "mixed_float16":
            # A small initial scale: no overflow-skipped steps in these few steps.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=16.0)
    trainer.compile(optimizer=optimizer)
    return trainer


def adam_state(trainer: SRTrainer) -> dict[str, np.ndarray]:
    """Every model weight and its Adam momentum/velocity, by variable path."""
    opt = trainer.optimizer
    adam = getattr(opt, "inner_optimizer", opt)
    out = weights(trainer.sr_model)
    for v in trainer.sr_model.trainable_variables:
        i = adam._get_variable_index(v)
        out[v.path + ":m"] = adam._momentums[i].numpy().copy()
        out[v.path + ":v"] = adam._velocities[i].numpy().copy()
    return out


def owned_by(key: str, scale: int) -> bool:
    return key.startswith((f"pre_x{scale}_", f"upsample_x{scale}_"))


def static_steps(trainer: SRTrainer, batches) -> None:
    """Trains on each batch with a graph traced for its static shapes.

    The optimizer is left unbuilt (as fit() without a strategy does): the first step,
    a single scale's, must still build it on every variable.
    """
    step = tf.function(trainer.train_step)
    for lr, hr in batches:
        assert isinstance(trainer.batch_scale(lr, hr), int)
        step((lr, hr))


@pytest.mark.parametrize("shapes,policy", [
    ("dynamic", None), ("static", None), ("dynamic", "mixed_bfloat16"),
])
def test_a_batch_leaves_the_other_scales_weights_and_moments_untouched(photo, shapes, policy):
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        trainer = make(policy)
        if shapes == "dynamic":
            ds = scripted_scales(photo, [0, 0, 1])
            assert ds.element_spec[1].shape[1] is None  # dispatch by tf.switch_case
            loop = TrainLoop(trainer, ds)
            loop.run(2)
            before = adam_state(trainer)
            loop.run(3)
        else:
            batches = list(scripted_scales(photo, [0, 0, 1]))
            static_steps(trainer, batches[:2])
            before = adam_state(trainer)
            static_steps(trainer, batches[2:])
        after = adam_state(trainer)
    finally:
        keras.config.set_dtype_policy(previous)

    x2 = [k for k in before if owned_by(k, 2)]
    x3 = [k for k in before if owned_by(k, 3)]
    shared = [k for k in before if k.startswith(("head", "body_", "tail"))]
    assert x2 and x3 and shared
    # x2 had two updates: its moments are non-zero, so a zero-gradient Adam step would move it.
    assert all(np.abs(before[k]).max() > 0 for k in x2 if k.endswith(":m"))
    changed = {k: bool(np.any(after[k] != before[k])) for k in before}
    assert all(changed[k] for k in shared), [k for k in shared if not changed[k]]
    assert all(changed[k] for k in x3), [k for k in x3 if not changed[k]]
    assert not any(changed[k] for k in x2), [k for k in x2 if changed[k]]
    assert trainer.scale_steps.tolist() == [2, 1]
    assert int(trainer.optimizer.iterations.numpy()) == 3


def test_updates_match_torch_adam_with_per_parameter_steps(photo):
    """Each step's gradients also go to torch.optim.Adam, where the other scale's
    parameters have no gradient (grad None: skipped, their step count not advanced).

    The gradients are taken at the trainer's weights before each of its steps, so the two
    differ only by the optimizer (L1's sign flips would otherwise amplify rounding). Keras
    adds epsilon to sqrt(v) before bias correction (PyTorch after): the same as PyTorch
    with eps / sqrt(1 - beta2**step), which torch gets here per group of parameters.
    """
    torch = require_module("torch", "requirements-dev.txt")

    order = [0, 0, 1, 0, 1, 1]
    trainer = make()
    init = weights(trainer.sr_model)
    loop = TrainLoop(trainer, scripted_scales(photo, order))
    views = [model_for_scale(trainer.sr_model, CONFIG, s) for s in SCALES]
    params = {v.path: torch.tensor(init[v.path], requires_grad=True)
              for v in trainer.sr_model.trainable_variables}
    # Parameter groups: shared (step = global step), then one per scale (its own steps).
    own = [[k for k in params if owned_by(k, s)] for s in SCALES]
    shared = [k for k in params if not any(k in o for o in own)]
    groups = [shared] + own
    adam = torch.optim.Adam([{"params": [params[k] for k in g]} for g in groups],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    counts = [0] * len(groups)
    worst = 0.0
    for step, (index, (lr, hr)) in enumerate(zip(order, scripted_scales(photo, order))):
        used = views[index].trainable_variables
        with tf.GradientTape() as tape:
            loss = l1_loss(hr, views[index](lr, training=True))
        grads = tape.gradient(loss, used)
        for g in (0, index + 1):
            counts[g] += 1
            adam.param_groups[g]["eps"] = 1e-8 / np.sqrt(1 - 0.999 ** counts[g])
        adam.zero_grad(set_to_none=True)
        for v, g in zip(used, grads):
            params[v.path].grad = torch.from_numpy(g.numpy())
        adam.step()
        loop.run(step + 1)
        got = weights(trainer.sr_model)
        diff = max(float(np.abs(got[k] - params[k].detach().numpy()).max()) for k in params)
        worst = max(worst, diff)
    moved = max(float(np.abs(got[k] - init[k]).max()) for k in params)
    print(f"vs torch.optim.Adam: max |dw| {worst:.3g} (training moved weights by {moved:.3g})")
    assert moved > 2 * LR
    # Float32 rounding of weights ~0.2 is ~1e-8 a step. Zero-gradient steps of the other
    # scale, or a global step count in the bias correction (x3's first step here would be
    # 0.64 * LR instead of LR), are off by ~1e-4; PyTorch's own epsilon by ~1e-5.
    assert worst < 5e-7
    assert trainer.scale_steps.tolist() == [3, 3]


def test_fp16_loss_scaling_applied_and_skipped_steps(photo):
    """mixed_float16 with a LossScaleOptimizer: an overflowing step (skipped by Keras)
    changes no weight, moment or step count; applied steps update only their scale."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        trainer = make("mixed_float16")
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        loop = TrainLoop(trainer, scripted_scales(photo, [0, 1, 1]))
        loop.run(1)
        before = adam_state(trainer)
        trainer.optimizer.dynamic_scale.assign(3e38)  # the scaled loss overflows: step skipped
        loop.run(2)
        skipped = adam_state(trainer)
        trainer.optimizer.dynamic_scale.assign(16.0)
        loop.run(3)
        after = adam_state(trainer)
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(np.array_equal(skipped[k], before[k]) for k in before)
    assert int(trainer.optimizer.iterations.numpy()) == 2
    assert trainer.scale_steps.tolist() == [1, 1]
    assert all(np.any(after[k] != before[k]) for k in after if owned_by(k, 3))
    assert not any(np.any(after[k] != before[k]) for k in after if owned_by(k, 2))


def test_resume_restores_the_per_scale_step_counts(photo, tmp_path):
    order = [0, 1, 1, 0, 1, 0]
    data = lambda: scripted_scales(photo, order)  # noqa: E731
    straight = make()
    TrainLoop(straight, data(), checkpoint_dir=tmp_path, checkpoint_every=3).run(len(order))

    resumed = make()
    loop = TrainLoop(resumed, data(), checkpoint_dir=tmp_path)
    assert loop.state.restore(str(tmp_path / "ckpt-3")) == 3
    assert resumed.scale_steps.tolist() == [1, 2]
    loop.run(len(order))
    a, b = weights(straight.sr_model), weights(resumed.sr_model)
    assert max(np.abs(a[k] - b[k]).max() for k in a) == 0
    assert resumed.scale_steps.tolist() == straight.scale_steps.tolist() == [3, 3]


def test_mdsr_refuses_an_optimizer_it_cannot_update_per_scale():
    with pytest.raises(ValueError, match="needs keras.optimizers.Adam.*got SGD"):
        make(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="weight_decay"):
        make(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01))
    edsr = ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8)
    SRTrainer(build_model(edsr), edsr).compile(optimizer=keras.optimizers.SGD(0.1))  # EDSR: any


MIRRORED_SCRIPT = """
import json, os, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from edsr_tf.models import ModelConfig, build_model
from edsr_tf.training import SRTrainer, TrainLoop, lr_schedule, make_optimizer

ORDER = [0, 0, 1, 1]
config = ModelConfig("mdsr", (2, 3), n_resblocks=1, n_feats=8)

def data():
    def per_scale(s):
        def make(i):
            hr = tf.random.stateless_uniform([4, 6 * s, 6 * s, 3], seed=[s, i], maxval=255.0)
            return tf.nn.avg_pool2d(hr, s, s, "VALID"), hr
        return tf.data.Dataset.range(1 << 40).map(make)
    choice = tf.data.Dataset.from_tensor_slices(tf.constant(ORDER, tf.int64))
    return tf.data.Dataset.choose_from_datasets([per_scale(2), per_scale(3)], choice)

out = {}
for name, strategy in (("single", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    keras.utils.set_random_seed(3)
    with strategy.scope():
        trainer = SRTrainer(build_model(config), config)
        trainer.compile(optimizer=make_optimizer(lr_schedule(1e-3, 0)))
    loop = TrainLoop(trainer, data(), strategy=strategy)
    loop.run(2)
    x2 = {v.path: v.numpy().copy() for v in trainer.sr_model.weights if "_x2_" in v.path}
    loop.run(len(ORDER))
    out[name] = dict(
        replicas=strategy.num_replicas_in_sync,
        x2_untouched=all(np.array_equal(v.numpy(), x2[v.path])
                         for v in trainer.sr_model.weights if "_x2_" in v.path),
        steps=trainer.scale_steps.tolist(),
        weights={v.path: v.numpy().tolist() for v in trainer.sr_model.weights},
    )
json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_mirrored_strategy_updates_per_scale_like_one_device(tmp_path):
    """The restore after Adam goes through a merge call: check it under MirroredStrategy
    (2 logical CPUs, a fresh process) with dynamic shapes."""
    script, result = tmp_path / "mirrored_mdsr.py", tmp_path / "result.json"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ)  # edsr_tf is installed (pip install -e .): no PYTHONPATH needed
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, str(script), str(result)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(result.read_text())
    single, mirrored = out["single"], out["mirrored"]
    assert mirrored["replicas"] == 2
    assert single["x2_untouched"] and mirrored["x2_untouched"]
    assert single["steps"] == mirrored["steps"] == [2, 2]
    a, b = single["weights"], mirrored["weights"]
    diff = max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)
    assert diff < 1e-5
