"""Training callbacks: the tqdm progress line and the TensorBoard summaries (tf.summary)."""

from __future__ import annotations

import io

import keras
import pytest
import tensorflow as tf

from edsr_tf.training.callbacks import ProgressLogger


class _Model:
    """What ProgressLogger reads from the trainer: its loss tracker and optimizer."""

    def __init__(self):
        self.loss_tracker = keras.metrics.Mean()
        self.optimizer = keras.optimizers.Adam(2e-4)


def event_tags(logdir) -> dict[str, str]:
    """tag → TensorBoard plugin name of every summary under ``logdir``."""
    files = [str(p) for p in logdir.rglob("events.out.tfevents.*")]
    assert files, f"no event file under {logdir}"
    return {v.tag: v.metadata.plugin_data.plugin_name
            for rec in tf.data.TFRecordDataset(files).as_numpy_iterator()
            for v in tf.compat.v1.Event.FromString(rec).summary.value}


def _run(logger: ProgressLogger, start: int, end: int) -> None:
    logger.set_model(_Model())
    logger.on_train_begin({"initial_step": start})
    for step in range(start + 1, end + 1):
        logger.on_train_batch_end(step, {"loss": tf.constant(2.5)})
    logger.on_train_end()


def test_progress_lines_off_a_terminal_and_scalar_summaries(tmp_path):
    stream = io.StringIO()  # not a terminal: one line per log_every steps
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    logger = ProgressLogger(10, 16, log_every=4, writer=writer, stream=stream)
    _run(logger, 0, 10)
    writer.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines  # steps 4, 8 and the last one
    for line, step in zip(lines, (4, 8, 10)):
        assert f" {step}/10," in line and "loss 2.500" in line and "lr 2.00e-04" in line, line
        assert " steps/s (" in line and " patches/s)" in line and ", ETA " in line, line
        assert "\r" not in line
    assert lines[-1].startswith("100%")
    assert [h["step"] for h in logger.history] == [4, 8, 10]
    assert logger.history[0]["patches_per_sec"] == pytest.approx(16 * logger.history[0]["steps_per_sec"])
    tags = event_tags(tmp_path / "logs")
    for tag in ("loss/l1", "lr", "perf/steps_per_sec", "perf/patches_per_sec"):
        assert tags.get(tag) == "scalars", (tag, tags)


def test_progress_bar_redrawn_in_place_on_a_terminal_from_the_resumed_step():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _run(ProgressLogger(10, 4, log_every=5, stream=stream), 5, 10)
    text = stream.getvalue()
    assert "\r" in text and text.endswith("\n")
    assert " 5/10" in text and "10/10, loss 2.500" in text


def test_disabled_progress_prints_nothing_but_still_logs():
    stream = io.StringIO()
    logger = ProgressLogger(6, 2, log_every=3, stream=stream, enabled=False)
    _run(logger, 0, 6)
    assert stream.getvalue() == "" and [h["step"] for h in logger.history] == [3, 6]
