"""Train EDSR / MDSR (Lim et al., 2017): ``edsr-train`` / ``python train.py`` / ``python -m edsr_tf.training.cli``.

  edsr-train --flagfile=configs/quickstart.cfg                # minutes on a CPU, no download
  edsr-train --flagfile=configs/edsr_baseline_x2.cfg          # the paper's schedule on DIV2K
  edsr-train --flagfile=configs/edsr_baseline_x2.cfg --resume # continue a stopped run

Flags given after --flagfile override it. The job directory (--out_dir) gets checkpoints/,
logs/ (TensorBoard), best.weights.h5, final.weights.h5 and eval.json / eval.md.

Exit status: 0 trained, 1 the training failed, 2 bad flags or configuration (errors are
one line, ``error: <message>``, on stderr; absl's own would be ``FATAL Flags parsing
error`` and 1). --help exits 0. Parsing the flags, and --help, import no TensorFlow.
"""

from __future__ import annotations

import re
import sys
from typing import Sequence

#: absl's help flags: parsing one prints help and exits (absl's status 1; ours 0).
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "h", "?")


def define_flags() -> None:
    """Defines the training flags once, as key flags of the running program (``--helpshort``)."""
    from absl import flags

    from edsr_tf.training import flags as training_flags

    training_flags.define_flags()
    main_module = sys.argv[0] if sys.argv and sys.argv[0] else "__main__"
    for flag in flags.FLAGS.get_flags_for_module(training_flags.__name__):
        flags.FLAGS.register_key_flag_for_module(main_module, flag)


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl ``flags_parser``: parses ``argv`` into FLAGS; bad flags exit 2 with ``error: ...``."""
    from absl import flags

    from edsr_tf.cli_args import EXIT_OK, EXIT_USAGE, print_error

    prog = argv[0] if argv else "train.py"
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        message = re.sub(r"^(ERROR::\s*)+", "", message)  # absl's flagfile errors
        message = re.sub(r"Unknown command line flag '([^']+)'", r"unknown flag --\1", message)
        message = re.sub(r"Did you mean: ([^?]+?) ?\?", lambda m: "did you mean " + ", ".join(
            f"--{n.strip()}" for n in m.group(1).split(",")) + "?", message)
        print_error(f"{message} (see {prog} --helpshort)")
        sys.exit(EXIT_USAGE)
    except SystemExit as e:  # absl's help flags print the help, then exit 1
        if e.code == 1:
            sys.exit(EXIT_OK)
        raise


def run(argv: Sequence[str] | None = None) -> None:
    """Runs training under absl (``edsr-train``, ``python train.py``): flags, then :func:`~edsr_tf.training.app.main`."""
    from absl import app

    from edsr_tf.training.app import main

    main_module = sys.modules.get("__main__")
    if main_module is not None and not main_module.__doc__:  # the console script: absl's usage text
        main_module.__doc__ = __doc__
    define_flags()
    app.run(main, argv=None if argv is None else list(argv), flags_parser=parse_flags)


def main(argv: Sequence[str] | None = None) -> None:
    """``main(['--help'])`` / ``main(['--flagfile=...'])``: :func:`run` with ``argv`` (program name added)."""
    run(["edsr-train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run()
