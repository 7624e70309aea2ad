"""Training: SRTrainer (Keras custom train_step), step loop with exact resume, CLI app."""

from edsr_tf.training.app import TrainError, TrainOptions, train
from edsr_tf.training.loop import CheckpointError, TrainLoop, TrainState
from edsr_tf.training.schedule import lr_schedule, make_optimizer
from edsr_tf.training.strategy import STRATEGIES, make_strategy, worker_info
from edsr_tf.training.trainer import SRTrainer, distribute_batch, l1_loss

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
