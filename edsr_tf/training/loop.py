"""Step-based training loop with exact resume.

Keras' ``fit`` owns its data iterator, and distributed iterators cannot be
checkpointed, so this loop keeps a plain ``tf.data`` iterator (checkpointed
together with the weights, the optimizer slots and the step), feeds batches to
the trainer's Keras-compiled ``train_function`` and calls ordinary Keras
callbacks. A run killed at step k and resumed therefore continues from exactly
the data and state it had at the last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable

import keras
import tensorflow as tf

from edsr_tf.errors import first_line
from edsr_tf.training.interrupt import deferred_interrupt
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


CHECKPOINT_NAME = "ckpt"
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's state file (text CheckpointState proto)
_CKPT_FILE = re.compile(rf"^{CHECKPOINT_NAME}-(\d+)\.(index|data-(\d+)-of-(\d+))$")


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the ``ckpt-N`` checkpoints whose files are in ``directory``, newest first.

    Found from the files themselves (``ckpt-N.index`` / ``ckpt-N.data-*``), not from
    the state file, which can be unreadable or name a checkpoint whose files are gone.
    """
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    steps = {int(m.group(1)) for m in map(_CKPT_FILE.match, names) if m}
    return sorted(steps, reverse=True)


def holds_checkpoints(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` has checkpoint files or a checkpoint state file (readable or not)."""
    return bool(checkpoint_steps(directory)) or os.path.lexists(os.path.join(directory, STATE_FILE))


def read_state_file(directory: str | os.PathLike) -> tuple[str | None, str | None]:
    """(the checkpoint the state file names as latest, a problem with the file or ``None``)."""
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None, None
    try:
        state = text_format.Parse(path.read_text(), CheckpointState())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        return None, f"is unreadable ({first_line(e, typed=True)})"
    if not state.model_checkpoint_path:
        return None, "is empty" if not path.stat().st_size else "names no checkpoint"
    latest = state.model_checkpoint_path
    return (latest if os.path.isabs(latest) else str(Path(directory) / latest)), None


def _incomplete(directory: Path, step: int) -> str | None:
    """Why checkpoint ``step`` cannot be complete from its files alone (``None``: looks whole)."""
    stem = f"{CHECKPOINT_NAME}-{step}"
    index = directory / f"{stem}.index"
    if not index.is_file():
        return "its .index file is missing"
    if index.stat().st_size == 0:
        return "its .index file is empty"
    shards = {}
    for name in os.listdir(directory):
        m = _CKPT_FILE.match(name)
        if m and int(m.group(1)) == step and m.group(3) is not None:
            shards.setdefault(int(m.group(4)), set()).add(int(m.group(3)))
    if not shards:
        return "its data file is missing"
    if not any(found >= set(range(total)) for total, found in shards.items()):
        return "some of its data files are missing"
    return None


def _remove_temp_dir(prefix: str | os.PathLike) -> None:
    """Removes ``<prefix>_temp/``, where TF writes the parts of a checkpoint before merging them."""
    shutil.rmtree(f"{prefix}_temp", ignore_errors=True)


class TrainState:
    """Everything a resume needs: weights, optimizer, data iterator, step, best PSNR.

    ``restore()`` without a path finds the checkpoints from the files in the
    directory and restores the newest one that restores cleanly; ``restored_from``
    and ``skipped`` (``[(prefix, reason)]``) say which it used and why it skipped
    the newer ones. ``save()`` leaves no partial checkpoint behind when it fails.
    """

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
        self.directory = Path(directory) if directory is not None else None
        self.max_to_keep = max_to_keep
        self.restored_from: str | None = None
        self.skipped: list[tuple[str, str]] = []
        self.removed: list[str] = []  # orphaned data files deleted at restore
        self.state_problem: str | None = None  # what was wrong with the state file at restore
        # Built on first use: tf.train.CheckpointManager reads the state file at
        # construction and raises on an empty one (see restore() for the repair).
        self._manager: tf.train.CheckpointManager | None = None

    @property
    def manager(self) -> tf.train.CheckpointManager | None:
        if self._manager is None and self.directory is not None:
            _, problem = read_state_file(self.directory)
            if problem:
                raise CheckpointError(
                    f"{self.directory / STATE_FILE} {problem}: resume to rebuild it from the "
                    "checkpoint files, or use another directory"
                )
            self._manager = self._new_manager()
        return self._manager

    def _new_manager(self) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint, str(self.directory), max_to_keep=self.max_to_keep,
            checkpoint_name=CHECKPOINT_NAME, step_counter=self.step,
        )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint if self.manager else None

    def _try_restore(self, path: str) -> str | None:
        """Restores ``path``; returns why it failed (``None`` on success)."""
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - any failure means "does not restore"
            mismatch = isinstance(e, AssertionError) or (
                isinstance(e, ValueError) and "shape" in str(e).lower())
            if mismatch:
                return ("it does not match this model/optimizer/data pipeline (was it written with "
                        f"other settings?): {first_line(e, typed=True)}")
            return f"it is unreadable ({first_line(e, typed=True)})"
        return None

    def restore(self, path: str | None = None) -> int:
        """Restores ``path`` or else the newest checkpoint that restores; returns the step.

        Without ``path`` the checkpoints are found from the files in the directory
        (newest step first, whatever the state file says): incomplete or unreadable
        ones are skipped (see ``skipped``), and the state file is rewritten to name
        the one restored. Raises :class:`CheckpointError`, changing no file, when
        none restores.
        """
        if path is not None:
            reason = self._try_restore(str(path))
            if reason:
                raise CheckpointError(f"checkpoint {path}: {reason}")
            self.restored_from = str(path)
            return int(self.step.numpy())
        if self.directory is None:
            raise CheckpointError("no checkpoint to resume from")
        named, self.state_problem = read_state_file(self.directory)
        steps = checkpoint_steps(self.directory)
        if named is not None and not any(str(self.directory / f"{CHECKPOINT_NAME}-{n}") == named
                                         for n in steps):
            self.state_problem = f"names {Path(named).name}, whose files are missing"
        self.skipped = []
        for n in steps:
            prefix = str(self.directory / f"{CHECKPOINT_NAME}-{n}")
            reason = _incomplete(self.directory, n) or self._try_restore(prefix)
            if reason is None:
                self.restored_from = prefix
                self._adopt(n, steps, named)
                return int(self.step.numpy())
            self.skipped.append((prefix, reason))
        state = f"; its state file {self.state_problem}" if self.state_problem else ""
        if not steps:
            raise CheckpointError(
                f"{self.directory} holds no checkpoint files{state}: nothing to resume "
                f"(remove {self.directory} to start over)"
            )
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped)
        raise CheckpointError(
            f"none of the {len(steps)} checkpoints in {self.directory} restores ({reasons}){state}; "
            "nothing was changed: restore a good copy, or remove them to start over"
        )

    def _adopt(self, step: int, steps: list[int], named: str | None) -> None:
        """Makes checkpoint ``step`` the manager's latest (rewriting a wrong state file).

        Lists the newest ``max_to_keep`` complete checkpoints up to ``step`` for the
        usual rotation. Newer broken ones stay on disk, unlisted: the resumed run
        overwrites them when it reaches their step.
        """
        from tensorflow.python.checkpoint import checkpoint_management

        prefix = str(self.directory / f"{CHECKPOINT_NAME}-{step}")
        if named != prefix or self.state_problem is not None or self.skipped:
            keep = [n for n in sorted(steps)
                    if n <= step and (n == step or not _incomplete(self.directory, n))]
            if self.max_to_keep:
                keep = keep[-self.max_to_keep:]
            now = time.time()
            stamps = [min(os.path.getmtime(self.directory / f"{CHECKPOINT_NAME}-{n}.index"), now)
                      for n in keep]
            stamps = _running_max(stamps)
            checkpoint_management.update_checkpoint_state_internal(
                str(self.directory), prefix,
                all_model_checkpoint_paths=[str(self.directory / f"{CHECKPOINT_NAME}-{n}") for n in keep],
                save_relative_paths=True, all_model_checkpoint_timestamps=stamps,
                last_preserved_timestamp=min(stamps) - 1.0,
            )
        for temp in self.directory.glob(f"{CHECKPOINT_NAME}-*_temp"):
            shutil.rmtree(temp, ignore_errors=True)  # left by a run killed while writing
        self._remove_orphans(steps)
        self._manager = self._new_manager()

    def _remove_orphans(self, steps: list[int]) -> None:
        """Deletes the data files of checkpoints that have no ``.index`` (records them in ``removed``).

        TensorFlow writes a checkpoint's ``.index`` last, so data without one is a write that was
        interrupted (Ctrl-C, kill, full disk): it can never be restored, and nothing else removes it.
        """
        for n in steps:
            if (self.directory / f"{CHECKPOINT_NAME}-{n}.index").exists():
                continue
            for f in sorted(self.directory.glob(f"{CHECKPOINT_NAME}-{n}.data-*")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    self.removed.append(str(f))

    def save(self) -> str | None:
        """Writes ``ckpt-<step>``; on failure removes what it wrote and raises :class:`CheckpointError`."""
        manager = self.manager
        if manager is None:
            return None
        step = int(self.step.numpy())
        prefix = self.directory / f"{CHECKPOINT_NAME}-{step}"
        started = time.time()
        try:
            return manager.save(checkpoint_number=step)
        except BaseException as e:
            _remove_temp_dir(prefix)
            if manager.latest_checkpoint != str(prefix):
                # The write itself failed: remove the part of ckpt-<step> it wrote, if any.
                for f in self.directory.glob(f"{CHECKPOINT_NAME}-{step}.*"):
                    with contextlib.suppress(OSError):
                        if f.stat().st_mtime >= started - 1.0:
                            f.unlink()
            if not isinstance(e, Exception):
                raise
            raise CheckpointError(
                f"could not write checkpoint {prefix} ({first_line(e, typed=True)}); "
                f"the older checkpoints in {self.directory} are kept"
            ) from e


def _running_max(values: list[float]) -> list[float]:
    """Running maximum (the manager expects non-decreasing timestamps)."""
    out, top = [], float("-inf")
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


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
        """Restores the newest checkpoint that restores cleanly; returns its step.

        See :meth:`TrainState.restore`: ``state.restored_from`` / ``state.skipped``
        say which checkpoint was used and why newer ones were not.
        """
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
        A checkpoint is written every ``checkpoint_every`` steps and at the end. A Ctrl-C
        stops the run before the next step (``KeyboardInterrupt``; never lost, never in the
        middle of a checkpoint write: :mod:`edsr_tf.training.interrupt`).
        """
        if isinstance(callbacks, keras.callbacks.CallbackList):
            cbs = callbacks
        else:
            cbs = keras.callbacks.CallbackList(list(callbacks), model=self.trainer)
        logs: dict = {}
        start = self.step
        cbs.on_train_begin({"initial_step": start, "steps": steps})
        step = start
        with deferred_interrupt() as stop:
            while step < steps:
                if stop.requested:
                    raise KeyboardInterrupt
                cbs.on_train_batch_begin(step)
                logs = self._one_step()
                step += 1
                self.state.step.assign(step)
                cbs.on_train_batch_end(step, logs)
                if step % self.checkpoint_every == 0 or step == steps:
                    self.state.save()
            if start == steps and self.state.latest is None:
                self.state.save()
            if stop.requested:  # during the last step: the run is saved, stop before what follows
                raise KeyboardInterrupt
        cbs.on_train_end(logs)
        return logs
