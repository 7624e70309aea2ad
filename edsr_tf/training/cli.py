"""The ``edsr-train`` console script: the same absl front end as ``python train.py``."""

from __future__ import annotations


def run() -> None:
    """Defines the training flags and runs :func:`edsr_tf.training.app.main` under absl."""
    from absl import app, flags

    from edsr_tf.training import flags as training_flags
    from edsr_tf.training.app import main

    training_flags.define_flags()
    flags.adopt_module_key_flags(training_flags)
    app.run(main)
