"""Argument checks shared by the model-or-bicubic CLIs (``upscale``, ``evaluate``)."""

from __future__ import annotations

import argparse
import sys


def print_error(msg: str) -> None:
    """Prints ``error: msg`` on stderr (the one-line form every CLI error takes)."""
    print(f"error: {msg}", file=sys.stderr, flush=True)


def sr_args_error(args: argparse.Namespace) -> str | None:
    """The first problem with ``--weights/--bicubic/--scale/--self-ensemble/--tile-overlap/--batch``.

    Returns a one-line message naming the flag, or None when the combination is valid.
    """
    if args.bicubic == bool(args.weights):
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
