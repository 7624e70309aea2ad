"""``SRTrainer``: a ``keras.Model`` wrapping EDSR/MDSR with the paper's training step.

The step is Keras' own machinery (``compile`` + custom ``train_step``, run by
``model.fit`` or by :mod:`edsr_tf.training.loop`, which drives the same compiled
``train_function`` from a checkpointable iterator). L1 loss in float32; for MDSR
the batch's scale is read from its shapes (``hr_height // lr_height``) and only
that scale's sub-network produces the output.

MDSR and Adam: as in the PyTorch reference (``zero_grad(set_to_none=True)``, the
default since PyTorch 2.0), a batch of scale s updates only the variables of s's
sub-network (shared head/body/tail + ``pre_x{s}_*`` + ``upsample_x{s}_*``); the
other scales' weights and Adam moments stay bit-identical, and each scale-specific
variable's bias correction uses its own step count (the number of updates its
scale received), as PyTorch's per-parameter ``state["step"]``. Those counts live
in the optimizer (``mdsr_scale_steps``) and are checkpointed with it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edsr_tf.models import ModelConfig, model_for_scale


def l1_loss(hr: tf.Tensor, sr: tf.Tensor) -> tf.Tensor:
    """Mean absolute error in float32 (fp16 outputs would lose the small residuals)."""
    return tf.reduce_mean(tf.abs(tf.cast(sr, tf.float32) - tf.cast(hr, tf.float32)))


#: Attribute of the (inner) Adam holding MDSR's per-scale update counts (int64 [n_scales]).
SCALE_STEPS_ATTR = "mdsr_scale_steps"


def _scale_owners(model: keras.Model, views) -> tuple[int, ...]:
    """For each of ``model.trainable_variables``: -1 if every scale's view uses it, else the
    index of the one scale whose view does."""
    users = [{id(v) for v in view.trainable_variables} for view in views]
    owners = []
    for v in model.trainable_variables:
        who = [i for i, u in enumerate(users) if id(v) in u]
        if len(who) == len(views):
            owners.append(-1)
        elif len(who) == 1:
            owners.append(who[0])
        else:
            raise RuntimeError(
                f"variable {v.path} is used by {len(who)} of {len(views)} scales: per-scale "
                "updates need every variable shared by all scales or owned by exactly one"
            )
    return tuple(owners)


def _adam_of(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer holding the Adam slots (inside a ``LossScaleOptimizer`` for fp16)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _adam_slots(adam: keras.optimizers.Adam, variable) -> list:
    """``variable``'s Adam slots: [momentum, velocity] (+ velocity_hat with amsgrad)."""
    i = adam._get_variable_index(variable)
    slots = [adam._momentums[i], adam._velocities[i]]
    if adam.amsgrad:
        slots.append(adam._velocity_hats[i])
    return slots


def _assign_all(targets: list, values: list) -> None:
    """``target.assign(value)`` for each pair, from a replica context under any strategy.

    Model and slot variables are mirrored with aggregation NONE, which cannot be assigned
    per replica: go through a merge call as Keras' optimizers do. Every replica computes
    the same values (same all-reduced gradients, same batch scale).
    """
    def assign(distribution, values):
        for target, value in zip(targets, values):
            var = target.value if isinstance(target, keras.Variable) else target
            distribution.extended.update(
                var, lambda v, x: v.assign(tf.cast(x, v.dtype)), args=(value,), group=False
            )

    tf.__internal__.distribute.interim.maybe_merge_call(
        assign, tf.distribute.get_strategy(), values
    )


class SRTrainer(keras.Model):
    """Trains ``model`` (built from ``config``) on ``(lr, hr)`` batches with L1.

    ``trainer.sr_model`` is the plain EDSR/MDSR model (save it with
    :func:`edsr_tf.models.save_model`). Works with ``trainer.fit(dataset, ...)``.
    MDSR with several scales needs ``keras.optimizers.Adam`` (see the module docstring:
    per-scale updates as in the PyTorch reference).
    """

    def __init__(self, model: keras.Model, config: ModelConfig, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "sr_trainer"), **kwargs)
        self.sr_model = model
        self.config = config
        self.scales = tuple(config.scales)
        # Per-scale views share the model's variables; kept in a plain tuple of
        # callables so Keras does not track them twice.
        views = tuple(model_for_scale(model, config, s) for s in self.scales)
        self._views = lambda: views
        # Per trainable variable (in sr_model order): -1 shared, else its scale's index.
        # None when one network sees every batch (EDSR, single-scale MDSR).
        self._owners = _scale_owners(model, views) if len(views) > 1 else None
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def compile(self, *args, **kwargs):  # noqa: D102 (keras.Model.compile)
        super().compile(*args, **kwargs)
        if self._owners is not None:
            self._check_mdsr_optimizer()

    def _check_mdsr_optimizer(self) -> None:
        """Checks MDSR's optimizer and creates its per-scale step counts."""
        adam = _adam_of(self.optimizer)
        unsupported = [
            name for name, on in (
                ("weight_decay", adam.weight_decay is not None),
                ("use_ema", bool(adam.use_ema)),
                ("gradient_accumulation_steps", bool(adam.gradient_accumulation_steps)),
            ) if on
        ]
        if not isinstance(adam, keras.optimizers.Adam) or unsupported:
            raise ValueError(
                "MDSR training with several scales needs keras.optimizers.Adam (optionally in a "
                "LossScaleOptimizer) without weight_decay, use_ema or gradient_accumulation_steps, "
                f"as edsr_tf.training.make_optimizer builds; got {type(adam).__name__}"
                + (f" with {', '.join(unsupported)}" if unsupported else "")
            )
        steps = getattr(adam, SCALE_STEPS_ATTR, None)
        if steps is not None:
            if tuple(steps.shape) != (len(self.scales),):
                raise ValueError(
                    f"optimizer already counts steps for {steps.shape[0]} scales, "
                    f"this MDSR has {len(self.scales)}: use a new optimizer"
                )
            return
        strategy = getattr(adam, "_distribution_strategy", None) or tf.distribute.get_strategy()
        with strategy.scope():
            # A plain tf.Variable, not keras.Variable: Keras would append it to the optimizer's
            # variable list and shift the slots' checkpoint keys. As a named attribute it is
            # checkpointed (tf.train.Checkpoint) under "mdsr_scale_steps".
            steps = tf.Variable(
                tf.zeros([len(self.scales)], tf.int64),
                trainable=False,
                name=SCALE_STEPS_ATTR,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        setattr(adam, SCALE_STEPS_ATTR, steps)

    @property
    def scale_steps(self) -> np.ndarray | None:
        """MDSR: how many updates each scale (in ``config.scales`` order) has had; else None."""
        if self._owners is None or self.optimizer is None:
            return None
        return getattr(_adam_of(self.optimizer), SCALE_STEPS_ATTR).numpy()

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training: bool = False):
        return self.sr_model(inputs, training=training)

    def batch_scale(self, lr: tf.Tensor, hr: tf.Tensor) -> int | tf.Tensor:
        """The batch's scale: a Python int when shapes are static, else a tensor."""
        lh, hh = lr.shape[1], hr.shape[1]
        if lh is not None and hh is not None:
            return int(hh) // int(lh)
        return tf.shape(hr)[1] // tf.shape(lr)[1]

    def scale_index(self, lr: tf.Tensor, hr: tf.Tensor) -> int | tf.Tensor:
        """Index into ``self.scales`` of the batch's scale (int when shapes are static).

        Raises ValueError (static) or fails an in-graph assertion (dynamic shapes) when
        the batch's scale is not one of the model's.
        """
        scale = self.batch_scale(lr, hr)
        if isinstance(scale, int):
            if scale not in self.scales:
                raise ValueError(
                    f"batch has scale x{scale} (HR {hr.shape} / LR {lr.shape}) but the model "
                    f"has scales {list(self.scales)}"
                )
            return self.scales.index(scale)
        known = tf.constant(self.scales, dtype=scale.dtype)
        match = tf.equal(known, scale)
        check = tf.debugging.Assert(
            tf.reduce_any(match), ["batch scale not among the model's scales:", scale, known]
        )
        with tf.control_dependencies([check]):
            return tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32)

    def _loss_at(self, lr: tf.Tensor, hr: tf.Tensor, index: int | tf.Tensor, training: bool):
        views = self._views()
        if isinstance(index, int):
            return l1_loss(hr, views[index](lr, training=training))
        branches = [
            (lambda v=v: l1_loss(hr, v(lr, training=training))) for v in views
        ]
        return tf.switch_case(index, branches)

    def compute_sr_loss(self, lr: tf.Tensor, hr: tf.Tensor, training: bool = True) -> tf.Tensor:
        """L1 between ``hr`` and the output of the sub-network for the batch's scale."""
        views = self._views()
        if len(views) == 1:
            return l1_loss(hr, views[0](lr, training=training))
        return self._loss_at(lr, hr, self.scale_index(lr, hr), training)

    def train_step(self, data):
        lr, hr = data[0], data[1]
        variables = self.sr_model.trainable_variables
        index = None
        if self._owners is not None:
            index = self.scale_index(lr, hr)
            if isinstance(index, int):
                # Static shapes: the other scales' variables are simply left out.
                variables = [v for v, o in zip(variables, self._owners) if o in (-1, index)]
        with tf.GradientTape() as tape:
            if index is None:
                loss = self.compute_sr_loss(lr, hr, training=True)
            else:
                loss = self._loss_at(lr, hr, index, training=True)
            # Gradients are summed over replicas: scale so the sum is the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        grads = tape.gradient(scaled, variables)
        # Dynamic shapes (tf.switch_case): the other branches' variables get zeros; the
        # optimizer sees them, and _apply_per_scale undoes what Adam did to them.
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
        if index is None:
            self.optimizer.apply_gradients(zip(grads, variables))
        else:
            self._apply_per_scale(grads, variables, index)
        self.loss_tracker.update_state(loss)
        return self._logs({"loss": self.loss_tracker.result(), "batch_loss": loss})

    def _apply_per_scale(self, grads: list, variables: list, index: int | tf.Tensor) -> None:
        """MDSR's Adam update for a batch of scale ``self.scales[index]``, as PyTorch's.

        Adam (through Keras, so loss scaling, gradient all-reduce and clipping are Keras')
        updates ``variables``; then, for the scale-specific variables, from values read
        before the update: the batch's scale gets its parameter step recomputed with its
        own bias-correction count (Keras uses the global iteration), and with dynamic
        shapes the other scales get their weights and moments back. No control flow around
        the optimizer: merge calls inside tf.cond break MirroredStrategy.
        """
        all_vars = self.sr_model.trainable_variables
        if not self.optimizer.built:
            # fit() without a strategy builds in the first trace; build on every variable
            # (a first apply on one scale's subset would build on that subset only).
            self.optimizer.build(all_vars)
        adam = _adam_of(self.optimizer)
        static = isinstance(index, int)
        owned = [(v, o) for v, o in zip(all_vars, self._owners)
                 if o >= 0 and (not static or o == index)]
        slots = [_adam_slots(adam, v) for v, _ in owned]
        counts = getattr(adam, SCALE_STEPS_ATTR)

        # Snapshots (tf.function orders reads and writes of a variable as written).
        iteration = tf.convert_to_tensor(adam.iterations)
        learning_rate = tf.convert_to_tensor(adam.learning_rate)  # the rate this step uses
        old_vars = [tf.identity(tf.convert_to_tensor(v)) for v, _ in owned]
        old_slots = [] if static else [
            [tf.identity(tf.convert_to_tensor(s)) for s in ss] for ss in slots
        ]

        self.optimizer.apply_gradients(zip(grads, variables))

        # A LossScaleOptimizer skips the step (iterations unchanged) on non-finite gradients.
        applied = tf.greater(tf.convert_to_tensor(adam.iterations), iteration)
        hit = tf.logical_and(applied, tf.equal(tf.range(len(self.scales)), index))
        old_counts = tf.convert_to_tensor(counts)
        new_counts = old_counts + tf.cast(hit, old_counts.dtype)

        alphas: dict = {}

        def alpha(o: int, dtype):
            # Keras Adam's step size, with scale o's own step count in the bias correction.
            if (o, dtype) not in alphas:
                step = tf.cast(new_counts[o], dtype)
                alphas[o, dtype] = (
                    tf.cast(learning_rate, dtype)
                    * tf.sqrt(1 - tf.pow(tf.cast(adam.beta_2, dtype), step))
                    / (1 - tf.pow(tf.cast(adam.beta_1, dtype), step))
                )
            return alphas[o, dtype]

        targets, values = [counts], [new_counts]
        for j, ((var, o), var_slots) in enumerate(zip(owned, slots)):
            dtype = var.dtype
            m = tf.convert_to_tensor(var_slots[0])
            v = tf.convert_to_tensor(var_slots[-1])  # velocity_hat with amsgrad
            # As Keras' update_step (eps added to sqrt(v), not to the bias-corrected one).
            eps = tf.cast(adam.epsilon, dtype)
            stepped = old_vars[j] - (m * alpha(o, dtype)) / (tf.sqrt(v) + eps)
            targets.append(var)
            values.append(tf.where(hit[o], stepped, old_vars[j]))
            if not static:
                for slot, old in zip(var_slots, old_slots[j]):
                    targets.append(slot)
                    values.append(tf.where(hit[o], tf.convert_to_tensor(slot), old))
        _assign_all(targets, values)

    @staticmethod
    def _logs(logs: dict) -> dict:
        # Keras reduces multi-worker step outputs with strategy.reduce(MEAN, axis=0), which
        # fails on scalars: give them a length-1 axis there (read them with log_value()).
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def test_step(self, data):
        lr, hr = data[0], data[1]
        loss = self.compute_sr_loss(lr, hr, training=False)
        self.loss_tracker.update_state(loss)
        return self._logs({"loss": self.loss_tracker.result()})


def log_value(logs: dict, key: str) -> float:
    """A step output as a Python float (scalar, or length-1 under multi-worker)."""
    return float(np.reshape(np.asarray(logs[key]), -1)[0])


def split_batch(batch, n: int, i: int):
    """The ``i``-th of ``n`` equal slices of every tensor of ``batch`` along axis 0."""
    def take(t):
        per = tf.shape(t)[0] // n
        return t[i * per:(i + 1) * per]

    return tf.nest.map_structure(take, batch)


def distribute_batch(strategy: tf.distribute.Strategy, batch, n_local: int):
    """Splits this worker's batch evenly over its ``n_local`` replicas.

    Used instead of ``experimental_distribute_dataset`` because distributed
    iterators cannot be checkpointed, while the plain iterator feeding this can.
    """
    if strategy.num_replicas_in_sync == 1:
        return batch

    def value_fn(ctx):
        return split_batch(batch, n_local, ctx.replica_id_in_sync_group % n_local)

    return strategy.experimental_distribute_values_from_function(value_fn)
