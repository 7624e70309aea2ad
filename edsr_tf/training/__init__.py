"""Training: SRTrainer (Keras custom train_step), step loop with exact resume, CLI app.

The names below are imported on first use, so the command-line front end
(``edsr_tf.training.flags``/``.cli``) can print ``--help`` without importing TensorFlow.
"""

from __future__ import annotations

from edsr_tf.lazy import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "train": "app",
    "TrainOptions": "app",
    "TrainError": "app",
    "SRTrainer": "trainer",
    "TrainLoop": "loop",
    "TrainState": "loop",
    "CheckpointError": "loop",
    "lr_schedule": "schedule",
    "make_optimizer": "schedule",
    "make_strategy": "strategy",
    "worker_info": "strategy",
    "STRATEGIES": "strategy",
    "distribute_batch": "trainer",
    "l1_loss": "trainer",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
