"""Strategy name → ``tf.distribute.Strategy`` (auto = Mirrored when more than one GPU)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


@dataclass(frozen=True)
class WorkerInfo:
    """Where this process sits in a (possibly multi-worker) job."""

    index: int
    count: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Builds the distribution strategy named ``name`` (one of :data:`STRATEGIES`).

    ``auto``: MirroredStrategy over all GPUs when there is more than one, else the
    default (single-device) strategy. ``mirrored``: MirroredStrategy over all local
    GPUs (or the local logical CPUs when there is no GPU). ``multiworker``:
    MultiWorkerMirroredStrategy configured from ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: expected one of {list(STRATEGIES)}")
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "the multiworker strategy needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}})'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus)


def worker_info(strategy: tf.distribute.Strategy) -> WorkerInfo:
    """Index and number of workers (1 worker unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return WorkerInfo(0, 1)
    spec = resolver.cluster_spec().as_dict()
    n = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    index = int(resolver.task_id or 0)
    if resolver.task_type == "worker" and "chief" in spec:
        index += 1
    return WorkerInfo(index, max(n, 1))


def local_replicas(strategy: tf.distribute.Strategy) -> int:
    """Replicas on this worker (devices this process feeds)."""
    return max(1, strategy.num_replicas_in_sync // worker_info(strategy).count)
