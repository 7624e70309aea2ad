"""Keras callbacks for the step loop: progress/TensorBoard scalars, validation + best model.

Callbacks receive ``on_train_batch_end(step, logs)`` with ``step`` the number of
completed steps and tensor ``logs`` (see :class:`edsr_tf.training.loop.TrainLoop`);
they read tensors only every ``log_every`` steps so the device is not synced each step.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO

import keras
import numpy as np
import tensorflow as tf

from edsr_tf.training.schedule import current_lr
from edsr_tf.training.trainer import log_value


def _metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = plugin
    return md


def summary_scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via the core ``tf.summary.write`` (no tensorboard package needed)."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars"))


def summary_image(tag: str, image: np.ndarray, step: int) -> None:
    """A TensorBoard image (uint8 ``[H, W, 3]``) in the images plugin's PNG format."""
    png = tf.io.encode_png(tf.constant(image, tf.uint8))
    h, w = image.shape[:2]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), png])
    tf.summary.write(tag, tensor, step=step, metadata=_metadata("images"))


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (or ``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLogger(keras.callbacks.Callback):
    """Console progress bar (steps/s, patches/s, ETA) and TensorBoard loss/lr scalars.

    On a terminal the bar is redrawn in place; otherwise (logs, CI) one line is
    printed every ``log_every`` steps. ``loss`` is the mean L1 over the interval.
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

    def on_train_begin(self, logs=None):
        self.start_step = self.last_step = int((logs or {}).get("initial_step", 0))
        self.start_time = self.last_time = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = int(batch)
        if step % self.log_every and step != self.total:
            return
        now = time.perf_counter()
        loss = log_value(logs, "loss") if logs and "loss" in logs else float("nan")
        self.model.loss_tracker.reset_state()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        overall = (step - self.start_step) / max(now - self.start_time, 1e-9)
        lr = current_lr(self.model.optimizer)
        eta = (self.total - step) / overall if overall > 0 else float("inf")
        entry = {"step": step, "loss": loss, "lr": lr, "steps_per_sec": rate,
                 "patches_per_sec": rate * self.batch_size}
        self.history.append(entry)
        self.last_step, self.last_time = step, now
        if self.writer is not None:
            with self.writer.as_default():
                summary_scalar("loss/l1", loss, step)
                summary_scalar("lr", lr, step)
                summary_scalar("perf/steps_per_sec", rate, step)
                summary_scalar("perf/patches_per_sec", rate * self.batch_size, step)
        if not self.enabled:
            return
        frac = step / max(self.total, 1)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = (
            f"[{bar}] {step}/{self.total} loss {loss:.3f} lr {lr:.2e} "
            f"{rate:.2f} steps/s ({rate * self.batch_size:.0f} patches/s) "
            f"ETA {format_duration(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + text + ("\n" if step == self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_train_end(self, logs=None):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


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
        from edsr_tf.training.evaluation import evaluate_set

        model = self.model.sr_model
        results = []
        for i, es in enumerate(self.eval_sets):
            r = evaluate_set(model, es, bicubic=False, tile=self.tile,
                             return_images=i == 0 and self.writer is not None)
            results.append(r)
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
                    summary_scalar(f"val/{r['set']}_x{r['scale']}/psnr", r["psnr"], step)
                    summary_scalar(f"val/{r['set']}_x{r['scale']}/ssim", r["ssim"], step)
                imgs = results[0].pop("_images", None)
                if imgs is not None:
                    strip = _image_strip((self._first_bicubic(), imgs[1], imgs[2]))
                    summary_image("val/bicubic_sr_hr", strip[0], step)
        if self.is_chief:
            text = ", ".join(f"{r['set']} x{r['scale']} {r['psnr']:.2f} dB" for r in results)
            mark = " (best, saved)" if improved and self.best_path is not None else ""
            self.stream.write(f"\nvalidation @ step {step}: {text}{mark}\n")
            self.stream.flush()
        return results

    def on_train_batch_end(self, batch, logs=None):
        step = int(batch)
        if self.every > 0 and step % self.every == 0:
            self.run(step)
