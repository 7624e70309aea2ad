"""``python -m export``: thin front end over :mod:`edsr_tf.export`."""

from edsr_tf.export.cli import main

__all__ = ["main"]
