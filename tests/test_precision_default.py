"""``--precision auto``, upscale's default: bf16 where the hardware computes it natively, else fp32.

The machine is faked (``edsr_tf.precision._read_cpuinfo`` / ``_gpu_capabilities``) for the
decision and the CLI lines; the quality check runs the shipped models on the real Set5.
"""

from __future__ import annotations

import numpy as np
import pytest

from edsr_tf import inference_precision as ip
from edsr_tf import precision as machine
from edsr_tf.pretrained import load_manifest

BF16_CPU = "fpu sse2 avx2 avx512f avx512_bf16"
PLAIN_CPU = "fpu sse2 avx2 avx512f"


@pytest.fixture
def fake_machine(monkeypatch):
    """``fake_machine(flags, gpus)``: the CPU flags and GPU compute capabilities the code sees."""

    def fake(flags: str, gpus=()):
        text = f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n"
        monkeypatch.setattr(machine, "_read_cpuinfo", lambda: text)
        monkeypatch.setattr(machine, "_gpu_capabilities", lambda query=True: list(gpus))

    return fake


@pytest.mark.parametrize("flags, gpus, expected, because", [
    (BF16_CPU, (), "bf16", "native bfloat16: avx512_bf16"),
    ("fpu avx512f amx_tile amx_bf16", (), "bf16", "amx_bf16"),
    (PLAIN_CPU, (), "fp32", "lacks"),  # e.g. AMD without AVX512-BF16: nothing changes
    (PLAIN_CPU, ((8, 0),), "bf16", "compute capability 8.0"),
    (BF16_CPU, ((7, 5),), "fp32", "no native bfloat16"),  # a T4: fp16 units only
])
def test_auto_is_bf16_only_where_it_is_native(fake_machine, flags, gpus, expected, because):
    fake_machine(flags, gpus)
    resolved, why = ip.resolve_precision("auto", gpus=len(gpus))
    assert resolved == expected and because in why, why


@pytest.mark.parametrize("precision", ip.PRECISIONS)
def test_explicit_precisions_are_kept(fake_machine, precision):
    fake_machine(BF16_CPU)
    assert ip.resolve_precision(precision) == (precision, "")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        ip.resolve_precision("fp8")


def test_defaults():
    """upscale runs auto; evaluate's figures stay fp32 whatever the machine."""
    assert ip.UPSCALE_DEFAULT_PRECISION == "auto" and ip.DEFAULT_PRECISION == "fp32"
    assert ip.CHOICES[0] == "auto" and set(ip.CHOICES[1:]) == set(ip.PRECISIONS)


@pytest.mark.parametrize("name", [n for n in load_manifest()])
def test_bf16_costs_under_a_hundredth_of_a_db_on_set5(name, shared_data):
    """Every shipped model: Set5 PSNR-Y in bf16 within 0.01 dB of fp32 (so auto never costs quality)."""
    from edsr_tf.evaluation import evaluate_set, load_benchmark_set, model_sr
    from edsr_tf.models import load_model

    model, config = load_model(name)
    scale = config.scales[0]
    images = load_benchmark_set(shared_data / "edsr_benchmark", "Set5", scale)
    fp32 = evaluate_set(model_sr(model, scale), images)["psnr"]
    bf16 = evaluate_set(model_sr(ip.bf16_model(model, config, scale), scale), images)["psnr"]
    assert np.isfinite(fp32) and abs(bf16 - fp32) <= 0.01, (name, fp32, bf16)


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def bf16_builds(monkeypatch) -> list:
    """Records every bf16 rebuild (and still makes it)."""
    calls = []
    real = ip.bf16_model
    monkeypatch.setattr(ip, "bf16_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


@pytest.mark.parametrize("flags, extra, expected, says", [
    (BF16_CPU, [], "bf16", "computing in bf16 (--precision auto: no GPU; the CPU (Test CPU 9000) has native "
                           "bfloat16: avx512_bf16; --precision fp32 to change)"),
    (PLAIN_CPU, [], "fp32", "computing in fp32 (--precision auto: no GPU; the CPU (Test CPU 9000) lacks"),
    (BF16_CPU, ["--precision", "fp32"], "fp32", "computing in fp32 (--precision)"),
])
def test_upscale_runs_auto_by_default_and_says_so(fake_machine, monkeypatch, image, tmp_path, capsys,
                                                  flags, extra, expected, says):
    from edsr_tf.upscale import main

    fake_machine(flags)
    builds = bf16_builds(monkeypatch)
    assert main([str(image), "--out_dir", str(tmp_path / "out"), *extra]) == 0
    err = capsys.readouterr().err
    model_line = next(line for line in err.splitlines() if line.startswith("using the shipped model"))
    assert says in model_line, err
    assert len(builds) == (1 if expected == "bf16" else 0)
    assert (tmp_path / "out" / "in_x2.png").exists()  # auto's bf16 keeps the float output's name


def test_evaluate_stays_fp32_by_default_and_bicubic_takes_the_auto_default():
    from edsr_tf import evaluate, upscale

    assert evaluate.build_parser().parse_args(["--bicubic", "--scale", "2", "--dataset_dir", "d"]).precision == "fp32"
    args = upscale.build_parser().parse_args(["x.png", "--bicubic", "--scale", "2"])
    assert args.precision == "auto"
    from edsr_tf.cli_args import sr_args_error

    assert sr_args_error(args, weights_required=False) is None
