"""Step-based training loop with exact resume.

Keras' ``fit`` owns its data iterator, and distributed iterators cannot be
checkpointed, so this loop keeps a plain ``tf.data`` iterator (checkpointed
together with the weights, the optimizer slots and the step), feeds batches to
the trainer's Keras-compiled ``train_function`` and calls ordinary Keras
callbacks. A run killed at step k and resumed therefore continues from exactly
the data and state it had at the last checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import keras
import tensorflow as tf

from edsr_tf.training.strategy import WorkerInfo, local_replicas, worker_info
from edsr_tf.training.trainer import SRTrainer, distribute_batch


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be resumed (or would be overwritten)."""


def _weight_dict(model: keras.Model) -> dict[str, tf.Variable]:
    # Keras 3 models do not expose their variables to tf.train.Checkpoint as
    # children, so name them explicitly (stable across runs of the same config).
    out = {}
    for v in model.weights:
        key = v.path.replace("/", ".")
        if key in out:
            raise RuntimeError(f"duplicate variable path {v.path}")
        out[key] = v
    return out


class TrainState:
    """Everything a resume needs: weights, optimizer, data iterator, step, best PSNR."""

    def __init__(
        self,
        trainer: SRTrainer,
        iterator: tf.data.Iterator,
        directory: str | os.PathLike | None,
        *,
        max_to_keep: int = 3,
    ):
        self.trainer = trainer
        self.iterator = iterator
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        self.best_psnr = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_psnr")
        self.checkpoint = tf.train.Checkpoint(
            weights=_weight_dict(trainer.sr_model),
            optimizer=trainer.optimizer,
            iterator=iterator,
            step=self.step,
            best_psnr=self.best_psnr,
        )
        self.manager = None
        if directory is not None:
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, str(directory), max_to_keep=max_to_keep, step_counter=self.step
            )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint if self.manager else None

    def restore(self, path: str | None = None) -> int:
        """Restores ``path`` (default: the latest checkpoint); returns the step."""
        path = path or self.latest
        if path is None:
            raise CheckpointError("no checkpoint to resume from")
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"checkpoint {path} does not match this model/optimizer/data pipeline "
                f"(was it written with other flags?): {msg}"
            ) from None
        return int(self.step.numpy())

    def save(self) -> str | None:
        if self.manager is None:
            return None
        return self.manager.save(checkpoint_number=int(self.step.numpy()))


class TrainLoop:
    """Runs ``steps`` training steps of ``trainer`` on ``dataset`` with checkpoints.

    ``dataset`` yields this worker's ``(lr, hr)`` batches (the global batch on a
    single worker); each batch is split evenly over the local replicas.
    """

    def __init__(
        self,
        trainer: SRTrainer,
        dataset: tf.data.Dataset,
        *,
        strategy: tf.distribute.Strategy | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1000,
        max_to_keep: int = 3,
    ):
        if trainer.optimizer is None:
            raise ValueError("compile the trainer (optimizer) before building a TrainLoop")
        self.trainer = trainer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.worker: WorkerInfo = worker_info(self.strategy)
        self.n_local = local_replicas(self.strategy)
        self.checkpoint_every = int(checkpoint_every)
        with self.strategy.scope():
            # Slots must exist before a restore can fill them.
            trainer.optimizer.build(trainer.sr_model.trainable_variables)
        trainer.built = True
        trainer.make_train_function()
        self.iterator = iter(dataset)
        if checkpoint_dir is not None and self.worker.count > 1:
            # Each worker's iterator has its own position: one directory per worker.
            checkpoint_dir = Path(checkpoint_dir) / f"worker_{self.worker.index}"
        self.state = TrainState(trainer, self.iterator, checkpoint_dir, max_to_keep=max_to_keep)

    @property
    def step(self) -> int:
        return int(self.state.step.numpy())

    def resume(self) -> int:
        """Restores the latest checkpoint; returns the step it was written at."""
        return self.state.restore()

    def _one_step(self):
        if self.strategy.num_replicas_in_sync == 1:
            # The plain iterator goes straight into Keras' compiled step.
            return self.trainer.train_function(self.iterator)
        batch = next(self.iterator)
        return self.trainer.train_function([distribute_batch(self.strategy, batch, self.n_local)])

    def run(
        self,
        steps: int,
        callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList = (),
    ) -> dict:
        """Trains until the step counter reaches ``steps``; returns the last logs.

        Callbacks get ``on_train_batch_end(step, logs)`` with ``step`` the number of
        completed steps (1-based) and ``logs`` holding tensors (convert when needed).
        A checkpoint is written every ``checkpoint_every`` steps and at the end.
        """
        if isinstance(callbacks, keras.callbacks.CallbackList):
            cbs = callbacks
        else:
            cbs = keras.callbacks.CallbackList(list(callbacks), model=self.trainer)
        logs: dict = {}
        start = self.step
        cbs.on_train_begin({"initial_step": start, "steps": steps})
        step = start
        while step < steps:
            cbs.on_train_batch_begin(step)
            logs = self._one_step()
            step += 1
            self.state.step.assign(step)
            cbs.on_train_batch_end(step, logs)
            if step % self.checkpoint_every == 0 or step == steps:
                self.state.save()
        if start == steps and self.state.latest is None:
            self.state.save()
        cbs.on_train_end(logs)
        return logs
