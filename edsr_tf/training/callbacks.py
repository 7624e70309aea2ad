"""Keras callbacks for the step loop: progress/TensorBoard scalars, validation + best model.

Callbacks receive ``on_train_batch_end(step, logs)`` with ``step`` the number of
completed steps and tensor ``logs`` (see :class:`edsr_tf.training.loop.TrainLoop`);
they read tensors only every ``log_every`` steps so the device is not synced each step.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from edsr_tf.training.schedule import current_lr
from edsr_tf.training.trainer import log_value

#: The progress line: bar, steps, then the postfix (loss, lr, steps/s, patches/s) and the ETA.
BAR_FORMAT = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}, ETA {remaining}"


class _Discard(io.TextIOBase):
    """A text stream that drops what it is given (tqdm's own drawing, off a terminal)."""

    def write(self, text: str) -> int:
        return len(text)


class ProgressLogger(keras.callbacks.Callback):
    """Console progress bar (tqdm: steps/s, patches/s, ETA) and TensorBoard loss/lr scalars.

    On a terminal the bar is redrawn in place; otherwise (logs, CI) one line is
    printed every ``log_every`` steps. ``loss`` is the mean L1 over the interval;
    steps/s and patches/s are those of the interval, the ETA tqdm's (smoothed) estimate.
    """

    def __init__(
        self,
        total_steps: int,
        batch_size: int,
        *,
        log_every: int = 50,
        writer: tf.summary.SummaryWriter | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        super().__init__()
        self.total = int(total_steps)
        self.batch_size = int(batch_size)
        self.log_every = max(1, int(log_every))
        self.writer = writer
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.history: list[dict] = []
        self.bar: tqdm | None = None

    def on_train_begin(self, logs=None):
        self.start_step = self.last_step = int((logs or {}).get("initial_step", 0))
        self.last_time = time.perf_counter()
        if self.enabled:
            # Off a terminal tqdm's own drawing is discarded and each line printed below instead.
            self.bar = tqdm(total=self.total, initial=self.start_step, unit="step",
                            file=self.stream if self.tty else _Discard(),
                            dynamic_ncols=self.tty, ncols=None if self.tty else 110,
                            ascii=not self.tty, mininterval=0, miniters=1, bar_format=BAR_FORMAT)

    def on_train_batch_end(self, batch, logs=None):
        step = int(batch)
        if step % self.log_every and step != self.total:
            return
        now = time.perf_counter()
        loss = log_value(logs, "loss") if logs and "loss" in logs else float("nan")
        self.model.loss_tracker.reset_state()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        lr = current_lr(self.model.optimizer)
        entry = {"step": step, "loss": loss, "lr": lr, "steps_per_sec": rate,
                 "patches_per_sec": rate * self.batch_size}
        self.history.append(entry)
        self.last_step, self.last_time = step, now
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.scalar("loss/l1", loss, step=step)
                tf.summary.scalar("lr", lr, step=step)
                tf.summary.scalar("perf/steps_per_sec", rate, step=step)
                tf.summary.scalar("perf/patches_per_sec", rate * self.batch_size, step=step)
        if self.bar is None:
            return
        self.bar.set_postfix_str(
            f"loss {loss:.3f} lr {lr:.2e} {rate:.2f} steps/s ({rate * self.batch_size:.0f} patches/s)",
            refresh=False,
        )
        self.bar.update(step - self.bar.n)
        if not self.tty:
            self.stream.write(str(self.bar) + "\n")
            self.stream.flush()

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _image_strip(images: tuple, size: int = 96) -> np.ndarray | None:
    """``[1, size, 3*size, 3]`` uint8: bicubic | SR | HR centre crops side by side."""
    bic, sr, hr = images
    h, w = hr.shape[:2]
    c = min(size, h, w)
    y, x = (h - c) // 2, (w - c) // 2
    parts = []
    for im in (bic, sr, hr):
        if im is None:
            im = np.zeros_like(hr)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        parts.append(im[y:y + c, x:x + c])
    return np.concatenate(parts, axis=1)[None]


class Validation(keras.callbacks.Callback):
    """Every ``every`` steps: PSNR on the validation sets; saves the best model.

    The first set decides "best"; ``best.weights.h5`` (with config) is written when
    its PSNR beats the best seen so far (kept in the checkpoint, so a resumed run
    does not overwrite a better file). Logs PSNR scalars and a bicubic|SR|HR image.
    """

    def __init__(
        self,
        eval_sets: Sequence,
        every: int,
        *,
        best_path: str | os.PathLike | None,
        best_psnr: tf.Variable,
        save_fn: Callable[[Path], None] | None = None,
        writer: tf.summary.SummaryWriter | None = None,
        tile: int | None = None,
        stream: TextIO | None = None,
        is_chief: bool = True,
    ):
        super().__init__()
        self.eval_sets = list(eval_sets)
        self.every = int(every)
        self.best_path = Path(best_path) if best_path else None
        self.best_psnr = best_psnr
        self.save_fn = save_fn
        self.writer = writer
        self.tile = tile
        self.stream = stream or sys.stdout
        self.is_chief = is_chief
        self.history: list[dict] = []

    def _first_bicubic(self) -> np.ndarray:
        if getattr(self, "_bic", None) is None:
            from edsr_tf.imresize import bicubic_upscale

            es = self.eval_sets[0]
            self._bic = bicubic_upscale(es.images[0].lr, es.scale)
        return self._bic

    def run(self, step: int) -> list[dict]:
        """Evaluates now (also usable outside training); returns per-set results."""
        from edsr_tf.evaluation import evaluate_set

        model = self.model.sr_model
        results = []
        shown = []  # the first image of the first set, for the TensorBoard strip

        def keep_first(scored) -> None:
            if not shown:
                shown.append(scored)

        for i, es in enumerate(self.eval_sets):
            hook = keep_first if i == 0 and self.writer is not None else None
            results.append(evaluate_set(model, es, bicubic=False, tile=self.tile, on_image=hook))
        main = results[0]["psnr"]
        improved = main > float(self.best_psnr.numpy())
        if improved:
            self.best_psnr.assign(main)
            if self.is_chief and self.best_path is not None and self.save_fn is not None:
                self.save_fn(self.best_path)
        self.history.append({"step": step, **{r["set"]: r["psnr"] for r in results}})
        if self.writer is not None:
            with self.writer.as_default():
                for r in results:
                    tf.summary.scalar(f"val/{r['set']}_x{r['scale']}/psnr", r["psnr"], step=step)
                    tf.summary.scalar(f"val/{r['set']}_x{r['scale']}/ssim", r["ssim"], step=step)
                if shown:
                    strip = _image_strip((self._first_bicubic(), shown[0].sr, shown[0].image.hr))
                    tf.summary.image("val/bicubic_sr_hr", strip, step=step)
        if self.is_chief:
            text = ", ".join(f"{r['set']} x{r['scale']} {r['psnr']:.2f} dB" for r in results)
            mark = " (best, saved)" if improved and self.best_path is not None else ""
            # Above a progress bar drawn on the same stream, which tqdm redraws below.
            tqdm.write(f"validation @ step {step}: {text}{mark}", file=self.stream)
            self.stream.flush()
        return results

    def on_train_batch_end(self, batch, logs=None):
        step = int(batch)
        if self.every > 0 and step % self.every == 0:
            self.run(step)
