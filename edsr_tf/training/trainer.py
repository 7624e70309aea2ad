"""``SRTrainer``: a ``keras.Model`` wrapping EDSR/MDSR with the paper's training step.

The step is Keras' own machinery (``compile`` + custom ``train_step``, run by
``model.fit`` or by :mod:`edsr_tf.training.loop`, which drives the same compiled
``train_function`` from a checkpointable iterator). L1 loss in float32; for MDSR
the batch's scale is read from its shapes (``hr_height // lr_height``) and only
that scale's sub-network produces the output.
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


class SRTrainer(keras.Model):
    """Trains ``model`` (built from ``config``) on ``(lr, hr)`` batches with L1.

    ``trainer.sr_model`` is the plain EDSR/MDSR model (save it with
    :func:`edsr_tf.models.save_model`). Works with ``trainer.fit(dataset, ...)``.
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
        self.loss_tracker = keras.metrics.Mean(name="loss")

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

    def compute_sr_loss(self, lr: tf.Tensor, hr: tf.Tensor, training: bool = True) -> tf.Tensor:
        """L1 between ``hr`` and the output of the sub-network for the batch's scale."""
        views = self._views()
        if len(views) == 1:
            return l1_loss(hr, views[0](lr, training=training))
        scale = self.batch_scale(lr, hr)
        if isinstance(scale, int):
            if scale not in self.scales:
                raise ValueError(
                    f"batch has scale x{scale} (HR {hr.shape} / LR {lr.shape}) but the model "
                    f"has scales {list(self.scales)}"
                )
            return l1_loss(hr, views[self.scales.index(scale)](lr, training=training))
        known = tf.constant(self.scales, dtype=scale.dtype)
        match = tf.equal(known, scale)
        check = tf.debugging.Assert(
            tf.reduce_any(match), ["batch scale not among the model's scales:", scale, known]
        )
        with tf.control_dependencies([check]):
            index = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32)
        branches = [
            (lambda v=v: l1_loss(hr, v(lr, training=training))) for v in views
        ]
        return tf.switch_case(index, branches)

    def train_step(self, data):
        lr, hr = data[0], data[1]
        variables = self.sr_model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.compute_sr_loss(lr, hr, training=True)
            # Gradients are summed over replicas: scale so the sum is the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        # MDSR: the other scales' layers get zero gradients, whether the scale was picked in
        # Python (static shapes) or by tf.switch_case (dynamic shapes), as in the reference.
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(loss)
        return self._logs({"loss": self.loss_tracker.result(), "batch_loss": loss})

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
