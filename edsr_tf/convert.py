"""Import official EDSR-PyTorch weights: ``edsr-convert`` / ``python -m edsr_tf.convert`` (the command line).

    edsr-convert --torch_checkpoint edsr_baseline_x2-1bc95232.pt \\
        --model edsr_baseline --scale=2 --out_dir models/
    edsr-convert --torch_checkpoint MDSR_baseline.pt --model mdsr_baseline \\
        --out_file mdsr_baseline.weights.h5

``--out_dir DIR`` writes ``DIR/<preset>_x<s>.weights.h5``; ``--out_file`` names the file
(``.weights.h5`` or ``.keras``). The written file carries its model config, so
``edsr_tf.models.load_model`` (and every ``--weights`` flag) rebuilds the model from it alone.

The conversion itself is :mod:`edsr_tf.torch_import` (the library half); this module parses
the flags into typed values, and words the library's errors with its flags. Exit status:
0 written, 1 the checkpoint cannot be read or converted, 2 bad arguments (including
options that do not fit the checkpoint, e.g. the wrong ``--model``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from edsr_tf.cli_args import (
    EXIT_FAILED,
    EXIT_USAGE,
    ArgumentParser,
    CommandLine,
    add_flag,
    add_scale_flag,
    add_verbose_flag,
    non_negative_int,
    output_path_error,
    positive_float,
    positive_int,
    program_name,
    run_command,
)
from edsr_tf.models.config import PRESETS

# The library's public API, importable from here as before the split.
from edsr_tf.torch_import import (  # noqa: F401
    ConversionError,
    ConversionWarning,
    convert_checkpoint,
    convert_state_dict,
    inspect_state_dict,
    load_torch_state_dict,
    normalize_state_dict,
    pixel_shuffle_to_depth_to_space,
)

#: The presets' names, for ``--model``.
PRESET_NAMES = tuple(PRESETS)

#: The flag of each :mod:`edsr_tf.torch_import` argument, for its error messages.
FLAGS = {
    "torch_checkpoint": "--torch_checkpoint",
    "preset": "--model",
    "scale": "--scale",
    "n_resblocks": "--n_resblocks",
    "n_feats": "--n_feats",
    "res_scale": "--res_scale",
    "ignore_mean_shift": "--ignore_mean_shift",
    "out": "--out_file",
}


def _spell_flag(name: str, value: Any) -> str:
    flag = FLAGS.get(name, f"--{name}")
    if value is None or value is True:
        return flag
    if name == "scale":
        return f"{flag}={value}"
    return f"{flag} {value}"


def error_message(e: ConversionError) -> str:
    """A library error in this command's flag wording."""
    return e.render(_spell_flag)


def exit_code(e: ConversionError) -> int:
    """2 when an option does not fit (a bad argument), 1 when the checkpoint is at fault."""
    return EXIT_USAGE if e.option else EXIT_FAILED


def build_parser() -> ArgumentParser:
    """The ``edsr-convert`` / ``python -m edsr_tf.convert`` argument parser (no TensorFlow imported)."""
    prog = program_name("edsr-convert", ("edsr_tf.convert",))
    p = ArgumentParser(
        prog=prog,
        description="Convert an EDSR-PyTorch checkpoint (EDSR or MDSR state_dict) into an "
        "edsr-tf weights file that carries its model config.",
        epilog="Exit status: 0 written; 1 the checkpoint cannot be read or converted; 2 bad\n"
               "arguments (including options that do not fit the checkpoint).\n\nexamples:\n"
               f"  {prog} --torch_checkpoint edsr_baseline_x2-1bc95232.pt \\\n"
               "      --model edsr_baseline --scale=2 --out_dir models/\n"
               f"  {prog} --torch_checkpoint MDSR_baseline.pt --model mdsr_baseline \\\n"
               "      --out_file mdsr_baseline.weights.h5\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flag(p, "--torch_checkpoint", "--torch-checkpoint", required=True, type=Path,
             metavar="PATH.pt",
             help="EDSR-PyTorch .pt file: a state_dict, {'state_dict': ...} or "
                  "{'model': ...}, 'module.' prefixes allowed")
    p.add_argument("--model", required=True, choices=PRESET_NAMES,
                   help="architecture preset the checkpoint was trained as")
    add_scale_flag(p, legacy_list=True,
                   help="EDSR: the checkpoint's scale (default: read from its upsampler). "
                        "MDSR: scales to keep, e.g. --scale=2,4 (default: all in the checkpoint)")
    out = p.add_mutually_exclusive_group(required=True)
    add_flag(out, "--out_dir", type=Path, metavar="DIR",
             help="output folder: writes DIR/<preset>_x<s>.weights.h5 (created if needed)")
    add_flag(out, "--out_file", "--out", type=Path, metavar="OUT.weights.h5",
             help="output file instead (.weights.h5 or .keras), written atomically")
    add_flag(p, "--n_resblocks", "--n-resblocks", type=non_negative_int, metavar="N",
             help="override the preset's residual blocks")
    add_flag(p, "--n_feats", "--n-feats", type=positive_int, metavar="N",
             help="override the preset's feature channels")
    add_flag(p, "--res_scale", "--res-scale", type=positive_float, metavar="R",
             help="override the preset's residual scaling (EDSR only: MDSR converts with 1)")
    add_flag(p, "--ignore_mean_shift", "--ignore-mean-shift", action="store_true",
             help="convert even if sub_mean/add_mean are not the DIV2K mean shift "
                  "(outputs will then differ from the PyTorch model)")
    add_verbose_flag(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 written, 1 conversion failed, 2 bad arguments)."""
    return run_command(build_parser(), argv, _convert)


def _convert(cli: CommandLine) -> int | None:
    args = cli.args
    from edsr_tf import torch_import

    try:
        if args.out_file is not None:
            torch_import.check_out_file(args.out_file)
        problem = (output_path_error(args.out_file, "--out_file", folder=False)
                   if args.out_file is not None else
                   output_path_error(args.out_dir, "--out_dir", folder=True))
        if problem is None and not args.torch_checkpoint.is_file():
            problem = f"--torch_checkpoint {args.torch_checkpoint}: no such checkpoint file"
        if problem:
            cli.error(problem)
            return EXIT_USAGE
        scale = args.scale[0] if args.scale is not None and len(args.scale) == 1 else args.scale
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConversionWarning)
            model, config = torch_import.convert_checkpoint_file(
                args.torch_checkpoint, args.model, scale,
                n_resblocks=args.n_resblocks, n_feats=args.n_feats, res_scale=args.res_scale,
                ignore_mean_shift=args.ignore_mean_shift,
            )
        for w in caught:
            if issubclass(w.category, ConversionWarning):
                cli.warning(str(w.message))
        from edsr_tf.models import save_model

        out = args.out_file or args.out_dir / torch_import.weights_file_name(config)
        save_model(model, out, config)
    except ConversionError as e:
        cli.error(error_message(e))
        return exit_code(e)
    except (ValueError, OSError) as e:  # ModelFileError (a ValueError) while saving, disk full
        cli.error(str(e))
        return EXIT_FAILED
    print(f"wrote {out}: {torch_import.describe_config(config)}")


if __name__ == "__main__":
    sys.exit(main())
