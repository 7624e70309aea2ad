"""``--mixed_precision=auto``: what edsr_tf.precision picks from the CPU flags and the GPU list.

The machine is faked (``_read_cpuinfo`` / ``_gpu_capabilities`` replaced): no GPU is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import pytest

from edsr_tf import precision
from edsr_tf.precision import (
    cpu_model_name,
    cpu_supports_bf16,
    describe_mixed_precision,
    explain_mixed_precision,
    resolve_mixed_precision,
)

REPO = Path(__file__).resolve().parents[1]


def cpuinfo(flags: str, name: str = "Test CPU 9000") -> str:
    core = f"processor\t: {{i}}\nvendor_id\t: TestVendor\nmodel name\t: {name}\nflags\t\t: {flags}\n"
    return "\n".join(core.format(i=i) for i in range(2))


@pytest.fixture
def machine(monkeypatch):
    """``machine(flags, gpus)`` fakes the CPU flags and the GPUs' compute capabilities."""

    def fake(flags: str | None = "fpu sse2 avx2", gpus=()):
        text = None if flags is None else cpuinfo(flags)
        monkeypatch.setattr(precision, "_read_cpuinfo", lambda: text)
        monkeypatch.setattr(precision, "_gpu_capabilities", lambda query=True: list(gpus))

    return fake


# ----------------------------------------------------------------------------- the CPU


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),  # Zen 4 / Cooper Lake
    ("fpu avx512f amx_tile amx_bf16 amx_int8", True),  # Sapphire Rapids
    ("fpu sse2 avx2 avx512f avx512_vnni", False),  # AVX-512 without bf16 (Skylake-SP)
    ("fpu avx512_bf16x", False),  # whole flags only
    ("", False),
    (None, False),  # unreadable or not Linux
])
def test_cpu_bf16_is_read_from_the_cpuinfo_flags(machine, flags, expected):
    machine(flags)
    assert cpu_supports_bf16() is expected


def test_cpu_bf16_is_false_off_linux_and_when_cpuinfo_is_unreadable(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert precision._read_cpuinfo() is None and not cpu_supports_bf16()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "missing"))
    assert precision._read_cpuinfo() is None and not cpu_supports_bf16()
    (tmp_path / "cpuinfo").write_text(cpuinfo("fpu avx512_bf16", name="Fake EPYC"))
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "cpuinfo"))
    assert cpu_supports_bf16() and cpu_model_name() == "Fake EPYC"


# ----------------------------------------------------------------------------- auto


@pytest.mark.parametrize("flags, expected", [("avx2 avx512_bf16", "bf16"), ("avx2 avx512f", "none"),
                                             (None, "none")])
def test_auto_on_a_cpu_only_machine_uses_bf16_only_where_the_cpu_has_it(machine, flags, expected):
    machine(flags)
    assert resolve_mixed_precision("auto") == expected
    assert resolve_mixed_precision("auto", gpus=0) == expected


@pytest.mark.parametrize("caps, expected", [
    ([(7, 0)], "fp16"),  # V100
    ([(7, 5), (7, 5)], "fp16"),  # T4s
    ([(8, 0)], "bf16"),  # A100
    ([(8, 6), (9, 0)], "bf16"),
    ([(9, 0), (7, 0)], "fp16"),  # a mixed machine: every GPU must have bf16
    ([None], "fp16"),  # capability not reported
])
def test_auto_on_gpus_uses_bf16_from_compute_capability_8(machine, caps, expected):
    machine("avx512_bf16", gpus=caps)  # a bf16 CPU does not matter once there are GPUs
    assert resolve_mixed_precision("auto") == expected


def test_auto_with_a_given_gpu_count_assumes_no_bf16_where_capabilities_are_unknown(machine):
    machine("avx512_bf16", gpus=())  # as when TensorFlow is not imported
    assert resolve_mixed_precision("auto", gpus=1) == "fp16"
    machine("avx512_bf16", gpus=[(8, 0)])  # only one of the two GPUs is known
    assert resolve_mixed_precision("auto", gpus=2) == "fp16"
    machine(None, gpus=[(8, 0), (8, 0)])
    assert resolve_mixed_precision("auto", gpus=2) == "bf16"


@pytest.mark.parametrize("mode", ["none", "bf16", "fp16"])
def test_explicit_modes_pass_through_without_looking_at_the_machine(monkeypatch, mode):
    def boom(*_a, **_k):
        raise AssertionError("looked at the machine")

    monkeypatch.setattr(precision, "_read_cpuinfo", boom)
    monkeypatch.setattr(precision, "_gpu_capabilities", boom)
    assert resolve_mixed_precision(mode) == mode
    assert explain_mixed_precision(mode) == (mode, "")
    assert describe_mixed_precision(mode) == mode


@pytest.mark.parametrize("mode", ["fp8", "float16", "AUTO", ""])
def test_unknown_modes_raise(mode):
    with pytest.raises(ValueError, match="unknown mixed precision"):
        resolve_mixed_precision(mode)


def test_the_description_says_why(machine):
    machine("avx512_bf16")
    line = describe_mixed_precision("auto")
    assert line.startswith("auto → bf16 (") and "Test CPU 9000" in line and "avx512_bf16" in line
    machine("avx2")
    assert describe_mixed_precision("auto").startswith("auto → none (") and "lacks" in \
        describe_mixed_precision("auto")
    machine(None, gpus=[(8, 0), (7, 5)])
    line = describe_mixed_precision("auto")
    assert line.startswith("auto → fp16 (2 GPUs, compute capability 8.0, 7.5") and "loss scaling" in line
    assert "\n" not in line


def test_gpu_capabilities_come_from_tensorflows_device_details(monkeypatch):
    import tensorflow as tf

    devices = ["GPU:0", "GPU:1", "GPU:2"]
    details = {"GPU:0": {"compute_capability": (8, 0)}, "GPU:1": {"device_name": "no cc"}}

    def get_details(device):
        if device not in details:
            raise RuntimeError("no details")
        return details[device]

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: devices)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", get_details)
    assert precision._gpu_capabilities() == [(8, 0), None, None]
    assert resolve_mixed_precision("auto") == "fp16"


def test_the_module_and_a_cpu_decision_import_no_tensorflow():
    code = ("import sys, edsr_tf.precision as p\n"
            "p.resolve_mixed_precision('auto', gpus=0); p.resolve_mixed_precision('bf16')\n"
            "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- train.py


def test_the_flag_accepts_auto_and_lists_the_same_modes():
    from edsr_tf.training.flags import FLAGS, MIXED_PRECISION, define_flags
    from edsr_tf.training.app import TrainOptions

    assert set(MIXED_PRECISION) == set(precision.MODES)
    define_flags()
    assert FLAGS["mixed_precision"].default == "none"  # the default is unchanged (for now)
    try:
        FLAGS(["train.py", "--out_dir=/tmp/x", "--mixed_precision=auto"])
        assert TrainOptions.from_flags(FLAGS).mixed_precision == "auto"
    finally:
        FLAGS.unparse_flags()


@pytest.mark.parametrize("flags, caps, policy", [("avx512_bf16", (), "mixed_bfloat16"),
                                                 ("avx2", (), "float32"),
                                                 (None, [(7, 0)], "mixed_float16")])
def test_training_resolves_auto_and_logs_the_choice_once(machine, capsys, flags, caps, policy):
    from edsr_tf.training.app import _setup_precision

    machine(flags, gpus=caps)
    previous = _setup_precision("auto")
    try:
        assert keras.config.dtype_policy().name == policy
    finally:
        keras.config.set_dtype_policy(previous)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("--mixed_precision=auto → "), lines
    _setup_precision("none")  # explicit modes log nothing
    keras.config.set_dtype_policy(previous)
    assert capsys.readouterr().out == ""


def test_a_bad_mode_is_a_train_error():
    from edsr_tf.training.app import TrainError, _setup_precision

    with pytest.raises(TrainError, match="--mixed_precision"):
        _setup_precision("fp8")


def test_auto_resolved_to_fp16_is_loss_scaled():
    """``train`` asks make_optimizer for loss scaling only for an explicit fp16; auto → fp16
    relies on Keras's compile() wrapping the optimizer under the mixed_float16 policy."""
    from edsr_tf.models import ModelConfig, build_model
    from edsr_tf.training import SRTrainer, lr_schedule, make_optimizer

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        config = ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8)
        trainer = SRTrainer(build_model(config), config)
        trainer.compile(optimizer=make_optimizer(lr_schedule(1e-3, 0), loss_scale=False))
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.config.set_dtype_policy(previous)


def test_train_runs_with_auto(tmp_path, capsys):
    from edsr_tf.training.app import TrainOptions, train

    opts = TrainOptions(out_dir=str(tmp_path), model="edsr_baseline", scales=(2,), n_resblocks=1,
                        n_feats=8, patch_size=16, batch_size=2, steps=2, ckpt_every=2, eval_every=0,
                        log_every=2, val_limit=1, progress=False, mixed_precision="auto")
    assert train(opts)["step"] == 2
    out = capsys.readouterr().out
    assert f"--mixed_precision=auto → {resolve_mixed_precision('auto')} (" in out
    assert keras.config.dtype_policy().name == "float32"  # restored
