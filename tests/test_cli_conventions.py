"""One dialect for every front end: underscore flags (old spellings aliased with a note), --out_dir,
--scale=2,3,4, exit 2 for bad arguments and 1 for failed work, ``error: ...`` lines, and --help
without TensorFlow."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edsr_tf.cli_args import ArgumentParser, add_flag, add_scale_flag, flag_renames, translate_flags
from edsr_tf.images import write_image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _script(name: str):
    """A script of datasets/ or benchmarks/ as a module."""
    path = REPO / name
    spec = importlib.util.spec_from_file_location(f"edsr_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


# ----------------------------------------------------------------------------- --help, no TensorFlow

MAIN_MODULES = ["edsr_tf.upscale", "edsr_tf.evaluate", "edsr_tf.convert", "edsr_tf.export.cli",
                "edsr_tf.training.cli"]


@pytest.mark.parametrize("module", MAIN_MODULES)
def test_main_help_imports_no_tensorflow(module):
    code = (
        "import sys\n"
        f"import {module} as m\n"
        "try:\n"
        "    m.main(['--help'])\n"
        "    code = 0\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('EXIT', code, 'TF' if {'tensorflow', 'keras'} & set(sys.modules) else 'no TF')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "EXIT 0 no TF", r.stdout[-2000:]
    assert "--" in r.stdout  # the help lists the flags


COMMANDS = [
    ["-m", "edsr_tf.upscale"], ["-m", "edsr_tf.evaluate"], ["-m", "edsr_tf.convert"], ["-m", "export"],
    ["-m", "edsr_tf.training.cli"], ["train.py"], ["datasets/download_div2k.py"],
    ["datasets/download_benchmarks.py"], ["datasets/prepare.py"],
    ["benchmarks/inference_latency.py"], ["benchmarks/train_throughput.py"],
]
CONSOLE_SCRIPTS = ["edsr-train", "edsr-upscale", "edsr-evaluate", "edsr-export", "edsr-convert"]


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS] + CONSOLE_SCRIPTS)
def test_every_command_prints_help_without_tensorflow(command):
    if command in CONSOLE_SCRIPTS:
        script = BIN / command
        if not script.is_file():
            pytest.skip(f"{script} not installed (pip install -e .)")
        argv = [str(script)]
    else:
        argv = command.split()
    r = subprocess.run([sys.executable, "-X", "importtime", *argv, "--help"], capture_output=True,
                       text=True, cwd=REPO, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = [ln for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert imported, "python -X importtime wrote nothing"
    assert not [ln for ln in imported if ln.rstrip().endswith(("tensorflow", "keras"))]
    assert "-" in r.stdout


# ----------------------------------------------------------------------------- bad arguments: 2


def _datasets_main(name):
    return lambda argv: _script(f"datasets/{name}.py").main(argv)


def _export_main(argv):
    from edsr_tf.export.cli import main

    return main(argv)


ARGPARSE_TOOLS = {
    "upscale": (lambda argv: __import__("edsr_tf.upscale", fromlist=["main"]).main(argv), ["x.png"]),
    "evaluate": (lambda argv: __import__("edsr_tf.evaluate", fromlist=["main"]).main(argv),
                 ["--bicubic", "--scale=2", "--dataset_dir", "d"]),
    "convert": (lambda argv: __import__("edsr_tf.convert", fromlist=["main"]).main(argv),
                ["--torch_checkpoint", "x.pt", "--model", "edsr", "--out_dir", "o"]),
    "export": (_export_main, ["--out_dir", "o"]),
    "download_div2k": (_datasets_main("download_div2k"), ["--out_dir", "o"]),
    "download_benchmarks": (_datasets_main("download_benchmarks"), ["--out_dir", "o"]),
    "prepare": (_datasets_main("prepare"), ["lr", "--hr_dir", "h", "--out_dir", "o"]),
}


@pytest.mark.parametrize("tool", sorted(ARGPARSE_TOOLS))
@pytest.mark.parametrize("bad, named", [(["--bogus"], "--bogus"), (["--scale=two"], "--scale")])
def test_bad_argument_exits_2_with_one_error_line(tool, bad, named, tmp_path, monkeypatch, capsys):
    main, good = ARGPARSE_TOOLS[tool]
    if tool == "download_benchmarks" and named == "--scale":
        bad, named = ["--sha256"], "--sha256"  # takes no scale: a flag without its value
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(good + bad)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert os.listdir(tmp_path) == []  # nothing done


@pytest.mark.parametrize("flags, named", [
    (["--bogus"], "--bogus"),
    (["--scale=two"], "--scale"),
    (["--batch_size=0"], "--batch_size"),
    (["--flagfile=/no/such.cfg"], "no/such.cfg"),
    (["--out_dir=x", "stray"], "stray"),
])
def test_train_bad_flags_exit_2_with_one_error_line(flags, named, tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "train.py"), *flags], capture_output=True, text=True,
                       cwd=tmp_path, env=_env(), timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], r.stderr
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- failed work: 1


def test_failed_work_exits_1(tmp_path, monkeypatch, capsys):
    from edsr_tf.upscale import main as upscale

    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert upscale([str(tmp_path / "bad.png"), "--bicubic", "--scale=2", "--out_dir", str(tmp_path / "o"),
                    "--quiet"]) == 1
    assert capsys.readouterr().err.startswith("error: ")

    bench = _script("datasets/download_benchmarks.py")
    monkeypatch.setattr(bench, "URL", "http://127.0.0.1:9/benchmark.tar")  # nothing listens there
    assert bench.main(["--out_dir", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "127.0.0.1:9" in err

    prepare = _script("datasets/prepare.py")
    (tmp_path / "hr").mkdir()
    write_image(tmp_path / "hr" / "a.png", np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "hr" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert prepare.main(["lr", "--hr_dir", str(tmp_path / "hr"), "--out_dir", str(tmp_path / "lr"),
                         "--scale=2"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


# ----------------------------------------------------------------------------- old spellings


def test_old_spellings_work_with_a_deprecation_note(tmp_path, capsys):
    from edsr_tf.evaluate import main as evaluate
    from edsr_tf.upscale import main as upscale

    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    rc = upscale([str(tmp_path / "a.png"), "--bicubic", "--scale", "2", "--out", str(tmp_path / "o"),
                  "--max-pixels=1M", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "o" / "a_x2_bicubic.png").is_file(), err
    assert err == ("note: --out is deprecated; use --out_dir\n"
                   "note: --max-pixels is deprecated; use --max_pixels\n"), err

    hr = tmp_path / "bench" / "Set5" / "HR"
    write_image(hr / "b.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    rc = evaluate(["--bicubic", "--scale=2", "--dataset-dir", str(tmp_path / "bench"), "--datasets", "Set5",
                   "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "note: --dataset-dir is deprecated; use --dataset_dir\n" in err
    assert "note: --datasets is deprecated; use --eval_sets\n" in err


def test_export_parses_typed_values_and_old_spellings(capsys):
    from edsr_tf.export.cli import build_parser, options_from_args

    args = build_parser().parse_args(["--out", "x", "--formats", "tflite,onnx", "--quantize", "int8",
                                      "--tile", "64,32", "--scale=3", "--calibration-dir", "c",
                                      "--max-pixels", "2M", "--verify-max-side=0"])
    err = capsys.readouterr().err
    for old in ("--out", "--calibration-dir", "--max-pixels", "--verify-max-side"):
        assert f"note: {old} is deprecated; use {old.replace('-', '_').replace('__', '--')}" in err
    assert str(args.out_dir) == "x" and args.formats == ("tflite", "onnx") and args.tile == (64, 32)
    assert args.scale == 3 and args.max_pixels == 2_000_000
    options = options_from_args(args)
    assert options.quantize == ("int8",) and options.verify_max_side is None
    assert str(options.calibration_dir) == "c"


def test_datasets_scale_syntax_and_old_forms(capsys):
    div2k = _script("datasets/download_div2k.py")
    assert div2k.build_parser().parse_args(["--out_dir", "z", "--scale=2,4"]).scale == (2, 4)
    assert capsys.readouterr().err == ""
    args = div2k.build_parser().parse_args(["--dest", "z", "--scales", "2", "3"])
    assert args.scale == (2, 3) and str(args.out_dir) == "z"
    assert capsys.readouterr().err == ("note: --dest is deprecated; use --out_dir\n"
                                       "note: --scales 2 3 is deprecated; use --scale=2,3\n")
    prepare = _script("datasets/prepare.py")
    args = prepare.build_parser().parse_args(["lr", "--hr_dir", "h", "--lr_dir", "l", "--scales", "3"])
    assert args.scale == (3,) and str(args.out_dir) == "l"
    assert "note: --lr_dir is deprecated; use --out_dir" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the machinery


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="tool")
    add_flag(p, "--out_dir", "--out", "--dest")
    add_flag(p, "--self_ensemble", "--self-ensemble", action="store_true")
    add_scale_flag(p, "--scales", legacy_list=True, help="scales")
    return p


def test_aliases_take_both_value_forms_and_hide_from_help(capsys):
    p = _parser()
    args = p.parse_args(["--out=a", "--self-ensemble", "--scales", "2", "4"])
    assert (args.out_dir, args.self_ensemble, args.scale) == ("a", True, (2, 4))
    assert p.parse_args(["--dest", "b"]).out_dir == "b"
    capsys.readouterr()
    text = p.format_help()
    assert "--out_dir OUT_DIR" in text and "--out OUT_DIR" not in text and "--scale S[,S...]" in text
    assert "deprecated spellings, still accepted with a note: --out (--out_dir), --dest (--out_dir)" in text
    assert flag_renames(p) == {"--out": "--out_dir", "--dest": "--out_dir",
                               "--self-ensemble": "--self_ensemble", "--scales": "--scale"}


def test_usage_errors_name_the_current_spelling_only(capsys):
    p = _parser()
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--out"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err == "error: argument --out_dir: expected one argument (see tool --help)\n", err
    with pytest.raises(SystemExit):
        p.parse_args(["--self"])  # no abbreviations: with aliases they would be ambiguous
    assert "unrecognized arguments: --self" in capsys.readouterr().err


def test_translate_flags_rewrites_old_spellings_only():
    renames = {"--out": "--out_dir", "--max-pixels": "--max_pixels"}
    text = "--out /x: too big for --max-pixels 5; --out_dir and --outer stay; (--out)"
    assert translate_flags(text, renames) == (
        "--out_dir /x: too big for --max_pixels 5; --out_dir and --outer stay; (--out_dir)")


def test_front_end_constants_match_the_library():
    from edsr_tf.convert import PRESET_NAMES
    from edsr_tf.models import PRESETS
    from edsr_tf.training import flags as training_flags
    from edsr_tf.training.strategy import STRATEGIES

    assert training_flags.STRATEGIES == STRATEGIES
    assert sorted(PRESET_NAMES) == sorted(PRESETS)
