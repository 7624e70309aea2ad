"""Argument checks shared by the model-or-bicubic CLIs (``upscale``, ``evaluate``)."""

from __future__ import annotations

import argparse
import sys


def print_error(msg: str) -> None:
    """Prints ``error: msg`` on stderr (the one-line form every CLI error takes)."""
    print(f"error: {msg}", file=sys.stderr, flush=True)


WEIGHTS_HELP = ("a shipped model's name (see --list-models), or a .weights.h5/.keras file written "
                "by edsr_tf (config embedded)")


def add_list_models(parser: argparse.ArgumentParser) -> None:
    """``--list-models``: print the shipped models with their figures and exit."""
    parser.add_argument("--list-models", action=_ListModels, nargs=0,
                        help="list the shipped models (usable by name with --weights) and exit")


class _ListModels(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from edsr_tf.pretrained import PretrainedError, format_models

        try:
            print(format_models())
        except PretrainedError as e:
            parser.exit(1, f"error: {e}\n")
        parser.exit(0)


def sr_args_error(args: argparse.Namespace, *, weights_required: bool = True) -> str | None:
    """The first problem with ``--weights/--bicubic/--scale/--self-ensemble/--tile-overlap/--batch``.

    Returns a one-line message naming the flag, or None when the combination is valid.
    ``weights_required=False``: neither ``--weights`` nor ``--bicubic`` means the shipped model.
    """
    if args.bicubic and args.weights:
        return "give either --weights W or --bicubic, not both"
    if weights_required and not args.bicubic and not args.weights:
        return "give exactly one of --weights W and --bicubic"
    if args.bicubic and args.scale is None:
        return "--bicubic needs --scale"
    if args.bicubic and args.self_ensemble:
        return "--self-ensemble needs a model (--weights), not --bicubic"
    if args.scale is not None and args.scale < 2:
        return f"--scale must be an integer >= 2, got {args.scale}"
    if args.tile_overlap is not None and args.tile_overlap < 0:
        return f"--tile-overlap must be >= 0, got {args.tile_overlap}"
    if args.batch < 1:
        return f"--batch must be >= 1, got {args.batch}"
    return None
