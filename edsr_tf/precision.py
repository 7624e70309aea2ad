"""Which mixed precision ``--mixed_precision=auto`` picks on this machine, and why.

* CPU only: ``bf16`` when the CPU computes bfloat16 natively (x86 ``avx512_bf16`` or
  ``amx_bf16`` in ``/proc/cpuinfo``), else ``none``: without them oneDNN emulates bfloat16
  and the step gets slower, not faster.
* GPUs: ``bf16`` when every GPU has compute capability 8.0 or more (Ampere and later have
  bfloat16 tensor cores, and bf16 needs no loss scaling), else ``fp16`` (tensor cores since
  Volta; the trainer adds dynamic loss scaling).

Importing this module is cheap: TensorFlow is only imported (lazily) when the GPUs have to
be counted, so the ``--help`` of the command lines that use it stays TensorFlow-free.
"""

from __future__ import annotations

import platform
import sys
from typing import Sequence

#: The values of ``--mixed_precision`` (``auto`` resolves to one of the others).
MODES = ("auto", "none", "bf16", "fp16")
#: The Keras dtype policy of each resolved mode.
KERAS_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
#: CPU flags of native bfloat16 arithmetic (AVX512-BF16: Cooper Lake, Zen 4+; AMX: Sapphire Rapids+).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Ampere: the first compute capability with bfloat16 tensor cores.
GPU_BF16_CAPABILITY = (8, 0)

CPUINFO = "/proc/cpuinfo"


def _read_cpuinfo() -> str | None:
    """The text of ``/proc/cpuinfo``; None off Linux or when unreadable (tests replace this)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (every core repeats it), or None."""
    text = _read_cpuinfo()
    if not text:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where unknown)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def cpu_bf16_flags() -> list[str]:
    """Which of :data:`CPU_BF16_FLAGS` the CPU has."""
    flags = cpu_flags()
    return [f for f in CPU_BF16_FLAGS if f in flags]


def cpu_supports_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (Linux x86 only; False when unknown)."""
    return bool(cpu_bf16_flags())


def cpu_model_name() -> str:
    """The CPU's marketing name (``model name`` of /proc/cpuinfo), else what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def _gpu_capabilities(query: bool = True) -> list[tuple[int, int] | None] | None:
    """Compute capability of each GPU TensorFlow sees (None for one it does not report).

    Returns None without asking when ``query`` is false and TensorFlow is not imported yet
    (callers that already know the GPU count need not pay for the import).
    """
    if not query and "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    out: list[tuple[int, int] | None] = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            cc = tf.config.experimental.get_device_details(device).get("compute_capability")
        except (RuntimeError, ValueError):  # e.g. a pluggable device without details
            cc = None
        out.append((int(cc[0]), int(cc[1])) if cc else None)
    return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mixed precision {mode!r}: expected one of {list(MODES)}")


def _decide(gpus: int, capabilities: Sequence[tuple[int, int] | None], cpu_bf16: Sequence[str],
            cpu_name: str) -> tuple[str, str]:
    """(mode, reason) of ``auto`` from what the machine has (pure: the tests drive it)."""
    if gpus > 0:
        caps = list(capabilities)[:gpus]
        caps += [None] * (gpus - len(caps))  # capability unknown: not assumed to be >= 8.0
        shown = ", ".join("?" if c is None else f"{c[0]}.{c[1]}" for c in caps)
        what = f"{gpus} GPU{'s' if gpus > 1 else ''}, compute capability {shown}"
        if all(c is not None and c >= GPU_BF16_CAPABILITY for c in caps):
            return "bf16", f"{what}: bfloat16 tensor cores, no loss scaling needed"
        return "fp16", f"{what}: float16 tensor cores (bf16 needs 8.0+), with dynamic loss scaling"
    if cpu_bf16:
        return "bf16", f"no GPU; the CPU ({cpu_name}) has native bfloat16: {', '.join(cpu_bf16)}"
    return "none", (f"no GPU; the CPU ({cpu_name}) lacks {' and '.join(CPU_BF16_FLAGS)}: "
                    "emulated bf16 would be slower than float32")


def explain_mixed_precision(mode: str, gpus: int | None = None) -> tuple[str, str]:
    """``(resolved mode, why)``; ``why`` is empty unless ``mode`` is ``auto``.

    ``gpus``: the number of GPUs the run uses; None asks TensorFlow (importing it). Their
    compute capabilities are read from TensorFlow, and only when it is already imported if
    ``gpus`` is given (else they count as unknown, i.e. ``fp16``).
    """
    _check_mode(mode)
    if mode != "auto":
        return mode, ""
    caps = [] if gpus == 0 else _gpu_capabilities(query=gpus is None)
    if gpus is None:
        gpus = len(caps or ())
    return _decide(gpus, caps or (), cpu_bf16_flags(), cpu_model_name())


def resolve_mixed_precision(mode: str, gpus: int | None = None) -> str:
    """``none``/``bf16``/``fp16`` for ``mode`` (``auto`` decided as the module says).

    Raises ValueError for a mode not in :data:`MODES`.
    """
    return explain_mixed_precision(mode, gpus)[0]


def describe_mixed_precision(mode: str, gpus: int | None = None) -> str:
    """One line for the training log: ``auto → bf16 (why)``; just the mode when not ``auto``."""
    resolved, why = explain_mixed_precision(mode, gpus)
    return f"{mode} → {resolved} ({why})" if why else resolved
