"""Train EDSR / MDSR (Lim et al., 2017): ``edsr-train`` / ``python train.py`` / ``python -m edsr_tf.training.cli``.

The usage text (:data:`USAGE`) names the command as it was run (:func:`edsr_tf.cli_args.program_name`).
``--config NAME`` and a ``--flagfile`` naming a shipped config where no such file exists are
turned into ``--flagfile=<the shipped file>`` (:func:`expand_configs`) before absl parses, so the
configs work from an installed package as from a checkout.

Exit status: 0 trained, 1 the training failed, 2 bad flags or configuration (errors are
one line, ``error: <message>``, on stderr; absl's own would be ``FATAL Flags parsing
error`` and 1). --help exits 0. Parsing the flags, and --help, import no TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Sequence

#: absl's help flags: parsing one prints help and exits (absl's status 1; ours 0).
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "h", "?")

USAGE = """Train EDSR / MDSR (Lim et al., 2017).

  {prog} --config quickstart                 # minutes on a CPU, no download
  {prog} --config edsr_baseline_x2           # the paper's schedule on DIV2K
  {prog} --config edsr_baseline_x2 --resume  # continue a stopped run
  {prog} --flagfile=my.cfg --steps=1000      # your own flagfile (one --flag=value a line)

--config NAME reads a shipped config (names under --config below); in a checkout,
--flagfile=configs/quickstart.cfg reads the same file as --config quickstart. Flags given
after --config/--flagfile override it; paths in them are relative to the working folder.
The job directory (--out_dir) gets checkpoints/, logs/ (TensorBoard), best.weights.h5,
final.weights.h5 and eval.json / eval.md.

Exit status: 0 trained, 1 the training failed, 2 bad flags or configuration (errors are
one line, error: <message>, on stderr). --help exits 0.
"""


def program() -> str:
    """This command as the user ran it (``edsr-train``, ``python train.py``, ``python -m ...``)."""
    from edsr_tf.cli_args import program_name

    return program_name("edsr-train", ("edsr_tf.training.cli",), ("train.py",))


def define_flags() -> None:
    """Defines the training flags once, as key flags of the running program (``--helpshort``)."""
    from absl import flags

    from edsr_tf.training import flags as training_flags

    training_flags.define_flags()
    main_module = sys.argv[0] if sys.argv and sys.argv[0] else "__main__"
    for flag in flags.FLAGS.get_flags_for_module(training_flags.__name__):
        flags.FLAGS.register_key_flag_for_module(main_module, flag)


class ConfigError(ValueError):
    """A ``--config``/``--flagfile`` that names no file and no shipped config."""


def _flag_value(argv: Sequence[str], i: int, name: str) -> tuple[str, int] | None:
    """``(value, args used)`` when ``argv[i]`` is ``--name=V``/``-name=V`` or ``--name V``, else None."""
    arg = argv[i]
    for dashes in ("--", "-"):
        if arg.startswith(f"{dashes}{name}="):
            return arg[len(dashes) + len(name) + 1:], 1
        if arg == f"{dashes}{name}" and i + 1 < len(argv):
            return argv[i + 1], 2
    return None


def expand_configs(argv: Sequence[str], note=None) -> list[str]:
    """``argv`` with ``--config NAME`` and a shipped name given to ``--flagfile`` as
    ``--flagfile=<the shipped file>``, in place (later flags still override them).

    A ``--flagfile`` file that exists is left as it is (a user's own file wins); one that does
    not and names no shipped config raises :class:`ConfigError`, as does an unknown
    ``--config``. ``note(msg)`` is told when a missing ``--flagfile`` path was read as a name.
    """
    from edsr_tf import configs

    shipped = ", ".join(configs.names())
    out, i = list(argv[:1]), 1
    while i < len(argv):
        if argv[i] == "--":  # absl: the rest are arguments
            out += argv[i:]
            break
        config = _flag_value(argv, i, "config")
        flagfile = None if config else _flag_value(argv, i, "flagfile")
        if config:
            path = configs.config_path(config[0])
            if path is None:
                raise ConfigError(f"--config {config[0]}: no shipped config of that name "
                                  f"(shipped: {shipped}; a file of your own goes to --flagfile)")
            out.append(f"--flagfile={path}")
            i += config[1]
        elif flagfile and not os.path.exists(flagfile[0]):
            path = configs.shipped_flagfile(flagfile[0])
            if path is None:
                raise ConfigError(f"--flagfile={flagfile[0]}: no such file, nor a shipped config "
                                  f"(--config NAME: {shipped})")
            if note is not None:
                note(f"--flagfile={flagfile[0]}: no such file here; reading the shipped config "
                     f"{path.stem} ({path})")
            out.append(f"--flagfile={path}")
            i += flagfile[1]
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl ``flags_parser``: parses ``argv`` into FLAGS; bad flags exit 2 with ``error: ...``.

    Shipped configs are expanded first (:func:`expand_configs`); once parsed, TensorFlow's
    start-up lines are quieted unless ``--verbose``.
    """
    from absl import flags

    from edsr_tf.cli_args import EXIT_OK, EXIT_USAGE, print_error, print_note, quiet_tensorflow

    prog = program()
    try:
        argv = expand_configs(argv, note=print_note)
        rest = flags.FLAGS(list(argv))
    except ConfigError as e:
        print_error(f"{e} (see {prog} --helpshort)")
        sys.exit(EXIT_USAGE)
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
    if flags.FLAGS.config is not None:  # only a flagfile can still hold one: nothing read it
        print_error(f"--config={flags.FLAGS.config} inside a flagfile is not read; use "
                    f"--flagfile=NAME there (see {prog} --helpshort)")
        sys.exit(EXIT_USAGE)
    quiet_tensorflow(flags.FLAGS.verbose)
    return rest


def run(argv: Sequence[str] | None = None) -> None:
    """Runs training under absl (``edsr-train``, ``python train.py``): flags, then :func:`~edsr_tf.training.app.main`."""
    from absl import app

    from edsr_tf.training.app import main

    main_module = sys.modules.get("__main__")
    if main_module is not None:  # absl's usage text is __main__'s docstring ('%' escaped for absl)
        main_module.__doc__ = USAGE.format(prog=program()).replace("%", "%%")
    define_flags()
    app.run(main, argv=None if argv is None else list(argv), flags_parser=parse_flags)


def main(argv: Sequence[str] | None = None) -> None:
    """``main(['--help'])`` / ``main(['--flagfile=...'])``: :func:`run` with ``argv`` (program name added)."""
    run(["edsr-train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run()
