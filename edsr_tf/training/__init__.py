"""Training: SRTrainer (Keras custom train_step), step loop with exact resume, CLI app.

The names below are imported on first use, so the command-line front end
(``edsr_tf.training.flags``/``.cli``) can print ``--help`` without importing TensorFlow.
"""

from __future__ import annotations

import importlib

#: Public name → the submodule that defines it.
_EXPORTS = {
    "train": "app",
    "TrainOptions": "app",
    "TrainError": "app",
    "SRTrainer": "trainer",
    "distribute_batch": "trainer",
    "l1_loss": "trainer",
    "TrainLoop": "loop",
    "TrainState": "loop",
    "CheckpointError": "loop",
    "lr_schedule": "schedule",
    "make_optimizer": "schedule",
    "make_strategy": "strategy",
    "worker_info": "strategy",
    "STRATEGIES": "strategy",
}

__all__ = [
    "train",
    "TrainOptions",
    "TrainError",
    "SRTrainer",
    "TrainLoop",
    "TrainState",
    "CheckpointError",
    "lr_schedule",
    "make_optimizer",
    "make_strategy",
    "worker_info",
    "STRATEGIES",
    "distribute_batch",
    "l1_loss",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
