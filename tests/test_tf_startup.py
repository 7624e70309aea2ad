"""TensorFlow's start-up lines stay off the tools' stderr unless --verbose; real errors still show."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edsr_tf import tf_startup

REPO = Path(__file__).resolve().parents[1]

STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796678535.157484   17867 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796678535.157939   17867 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796679260.300176   23687 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
W0000 00:00:1796678535.157939   17867 some.cc:1] a warning
E0000 00:00:1796678538.660033   17867 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""
REAL = [
    "E0000 00:00:1796678538.700000   17867 cuda_dnn.cc:522] Loaded runtime CuDNN library: 9.1.0 but source was compiled with: 9.3.0",
    "F0000 00:00:1796678538.700000   17867 gpu_device.cc:1] Check failed: device ordinal",
    "/x/site-packages/keras/src/y.py:3: UserWarning: something a user should read",
    "a line printed by Python",
]


def test_startup_noise_goes_and_real_errors_stay():
    text = STARTUP + "\n".join(REAL) + "\n"
    assert tf_startup.kept_lines(text) == REAL  # the capture says "no cuda drivers": cuInit is expected
    with_driver = tf_startup.kept_lines(text.replace(tf_startup.NO_DRIVER, "Found drivers"), driver_present=True)
    assert [ln for ln in with_driver if "cuInit" in ln] and all(r in with_driver for r in REAL)
    assert not [ln for ln in with_driver if ln.startswith(("I0000", "W0000", "WARNING: All", "To enable"))]


_CHILD = textwrap.dedent("""
    import os, sys
    from edsr_tf import tf_startup

    def load():
        os.write(2, {startup!r}.encode())
        print("python warning line", file=sys.stderr)
        os.write(2, {real!r}.encode())
        if {fail!r}:
            raise RuntimeError("import failed")

    try:
        tf_startup.run_quietly(load)
    except RuntimeError:
        print("raised", file=sys.stderr)
    print("after", file=sys.stderr)
""")


@pytest.mark.parametrize("fail", [False, True])
def test_run_quietly_filters_file_descriptor_2(fail):
    """C++ writes (fd 2) and Python's are captured alike; a failed load shows everything."""
    real = REAL[0] + "\n"
    code = _CHILD.format(startup=STARTUP, real=real, fail=fail)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    if fail:
        assert r.stderr == STARTUP + "python warning line\n" + real + "raised\nafter\n"
    else:
        assert r.stderr == "python warning line\n" + real + "after\n"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


_FRONT_END = textwrap.dedent("""
    import sys
    from edsr_tf.cli_args import ArgumentParser, add_verbose_flag, run_command

    def body(cli):
        import tensorflow as tf
        tf.constant(1.0) + 1.0  # devices initialised: cuInit has run
        print("ran", file=sys.stderr)

    p = ArgumentParser(prog="tool")
    add_verbose_flag(p)
    sys.exit(run_command(p, sys.argv[1:], body))
""")


@pytest.mark.slow
def test_a_front_end_hides_tensorflow_startup_unless_verbose(tmp_path):
    runs = {}
    for flags in ([], ["--verbose"]):
        r = subprocess.run([sys.executable, "-c", _FRONT_END, *flags], capture_output=True, text=True,
                           cwd=tmp_path, env=_env(), timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[bool(flags)] = r.stderr
    assert runs[False] == "ran\n", runs[False]
    assert runs[True].endswith("ran\n") and len(runs[True].splitlines()) > 1  # TF's own lines, shown


def _record_quiet(monkeypatch) -> list[bool]:
    import edsr_tf.cli_args as cli_args

    seen: list[bool] = []
    monkeypatch.setattr(cli_args, "quiet_tensorflow", lambda verbose=False: seen.append(verbose))
    return seen


def _upscale(argv):
    from edsr_tf.upscale import main

    return main(argv)


def _evaluate(argv):
    from edsr_tf.evaluate import main

    return main(argv)


def _convert(argv):
    from edsr_tf.convert import main

    return main(argv)


def _export(argv):
    from edsr_tf.export.cli import main

    return main(argv)


#: Each argparse front end with arguments that fail right after parsing (nothing is done).
FRONT_ENDS = {
    "upscale": (_upscale, ["missing.png", "--bicubic", "--scale=2"]),
    "evaluate": (_evaluate, ["--bicubic", "--scale=2", "--dataset_dir", "missing"]),
    "convert": (_convert, ["--torch_checkpoint", "missing.pt", "--model", "edsr", "--out_dir", "o"]),
    "export": (_export, ["--out_dir", "o", "--formats", "onnx", "--quantize", "fp16"]),  # fp16: TFLite only
}


@pytest.mark.parametrize("tool", sorted(FRONT_ENDS))
def test_every_front_end_quiets_tensorflow_unless_verbose(tool, tmp_path, monkeypatch, capsys):
    main, argv = FRONT_ENDS[tool]
    monkeypatch.chdir(tmp_path)
    seen = _record_quiet(monkeypatch)
    for extra in ([], ["--verbose"]):
        try:
            main(argv + extra)
        except SystemExit:
            pass
    capsys.readouterr()
    assert seen == [False, True]


def test_train_quiets_tensorflow_unless_verbose(tmp_path, monkeypatch):
    from edsr_tf.training import flags as training_flags
    from edsr_tf.training.cli import define_flags, parse_flags

    define_flags()
    seen = _record_quiet(monkeypatch)
    for extra in ([], ["--verbose"]):
        try:
            parse_flags(["train.py", f"--out_dir={tmp_path / 'o'}", *extra])
        finally:
            training_flags.FLAGS.unparse_flags()
    assert seen == [False, True]
