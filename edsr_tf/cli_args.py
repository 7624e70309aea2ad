"""Argument checks shared by the model-or-bicubic CLIs (``upscale``, ``evaluate``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ info/warning logs (unless the user set ``TF_CPP_MIN_LOG_LEVEL``).

    Called first thing in each CLI's ``main()``, before TensorFlow is imported; library
    modules never change ``os.environ`` when imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tile_arg(text: str) -> int | str:
    """``--tile`` value: 'auto' or a non-negative integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def max_pixels_arg(text: str) -> int:
    """``--max-pixels`` value: pixels as an integer, or megapixels with an ``M`` (``250M``); 0 = no limit."""
    t = text.strip().replace("_", "").replace(",", "")
    try:
        if t[-1:] in ("M", "m"):
            value = float(t[:-1]) * 1e6
            if value != int(value):
                raise ValueError
            value = int(value)
        else:
            value = int(t)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"expected a pixel count such as 250000000 or 250M (0 = no limit), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = no limit), got {text!r}")
    return value


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels N``: the decompression-bomb limit of every image read."""
    from edsr_tf.images import DEFAULT_MAX_PIXELS, format_megapixels

    parser.add_argument(
        "--max-pixels", type=max_pixels_arg, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse any image of more than N pixels (width x height, read from the file header "
             f"before decoding: decompression bombs); default {DEFAULT_MAX_PIXELS:_} "
             f"({format_megapixels(DEFAULT_MAX_PIXELS)}); '250M' = 250 Mpx; 0 = no limit",
    )


def output_path_error(path: Path, flag: str, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written (as a folder, or a file when ``folder`` is false), or None.

    Checked before any work starts, without creating anything: ``path`` itself must be a
    writable folder (or a file or nothing, for a file), and its nearest existing ancestor
    a writable folder (a file there, e.g. ``--json results.json/x.json``, is an error).
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            return f"{flag} {path}: exists and is not a folder"
        if not folder and path.is_dir():
            return f"{flag} {path}: is a folder, expected a file name"
        target = path if folder else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            return f"{flag} {path}: {target} is not writable"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{flag} {path}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{flag} {path}: cannot create it, {parent} is not writable"
    return None
