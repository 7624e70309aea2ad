"""What every edsr-tf command line shares: one flag dialect, one error style, one exit-code scheme.

* Flags are spelled with underscores, as absl spells ``train.py``'s (``--dataset_dir``,
  ``--out_dir``, ``--self_ensemble``). Older spellings stay accepted as deprecated aliases
  (:func:`add_flag`): using one prints ``note: --dataset-dir is deprecated; use --dataset_dir``
  on stderr. ``--help`` shows the current spelling and lists the old ones at the end.
* Scales are ``--scale=2`` or ``--scale=2,3,4`` (:func:`add_scale_flag`, parsed with
  :func:`edsr_tf.models.config.parse_scales`).
* Exit codes: 0 success, 1 the work failed, 2 bad arguments (argparse usage errors included).
* Errors are one line, ``error: <message>``, on stderr (:func:`print_error`; usage errors too,
  through :class:`ArgumentParser`).
* A front end's ``main`` is :func:`run_command`: it parses, then runs the command's body, which
  returns its exit code (None: 0) or raises :class:`UsageError` (exit 2) or
  :class:`CommandFailed` (exit 1) to stop with an error.

Importing this module, building a parser and printing ``--help`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edsr_tf.units import format_bytes  # noqa: F401 (the front ends' size wording)

EXIT_OK = 0
EXIT_FAILED = 1  # the work failed (a file, an export, a download...)
EXIT_USAGE = 2  # bad arguments: nothing was done


class UsageError(Exception):
    """A bad argument found after parsing: the front end prints ``error: <message>``, exits 2."""

    exit_code = EXIT_USAGE


class CommandFailed(Exception):
    """The work failed: the front end prints ``error: <message>``, exits 1."""

    exit_code = EXIT_FAILED


#: Control characters (a newline in a file name would split a one-line message).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str, stream: Any = None) -> str:
    """``text`` as one line that ``stream`` (default stdout) can print: control characters
    escaped (``\\n``), and what its encoding cannot hold (a non-UTF-8 file name's surrogate
    escapes, under a strict ASCII locale) as backslash escapes instead of an exception."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
    encoding = getattr(stream if stream is not None else sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def print_error(msg: str) -> None:
    """Prints ``error: msg`` on stderr (the one-line form every CLI error takes)."""
    print(f"error: {printable(msg, sys.stderr)}", file=sys.stderr, flush=True)


def print_note(msg: str) -> None:
    """Prints ``note: msg`` on stderr."""
    print(f"note: {printable(msg, sys.stderr)}", file=sys.stderr, flush=True)


def deprecation_note(old: str, new: str) -> None:
    """``note: OLD is deprecated; use NEW`` on stderr."""
    print_note(f"{old} is deprecated; use {new}")


def program_name(script: str, modules: Sequence[str] = (), files: Sequence[str] = ()) -> str:
    """The command as the user ran it, for usage lines and examples.

    ``python -m MODULE`` when the running ``__main__`` is one of ``modules`` (run with ``-m``),
    ``python FILE`` when it is one of the script ``files`` (``train.py``), else the console
    script ``script`` (``edsr-export``): an installed user has only that, and a front end
    called in-process (tests) answers as it would.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None and spec.name else None
    if module in modules:
        return f"python -m {module}"
    argv0 = sys.argv[0] if sys.argv else ""
    if spec is None and argv0 and Path(argv0).name in files:
        return f"python {argv0}"
    return script


# ----------------------------------------------------------------------------- the parser


class _HideDeprecatedFormatter:
    """Help formatter mixin: an argument's deprecated spellings (and forms) are left out of its help."""

    def _format_args(self, action, default_metavar):
        if getattr(action, "legacy_list", False):  # --scale S (the old "S S ..." form is not shown)
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)

    def _format_action_invocation(self, action):
        old = getattr(action, "deprecated", ())
        if not old:
            return super()._format_action_invocation(action)
        saved = action.option_strings
        action.option_strings = [s for s in saved if s not in old]
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = saved


_FORMATTERS: dict[type, type] = {}


def _hiding(formatter_class: type) -> type:
    if issubclass(formatter_class, _HideDeprecatedFormatter):
        return formatter_class
    if formatter_class not in _FORMATTERS:
        _FORMATTERS[formatter_class] = type(
            formatter_class.__name__, (_HideDeprecatedFormatter, formatter_class), {})
    return _FORMATTERS[formatter_class]


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every edsr-tf front end.

    Usage errors print one line, ``error: <message> (see PROG --help)``, and exit 2; an
    argument's deprecated spellings (:func:`add_flag`) are hidden from its help line and
    listed once at the end of ``--help``. Prefixes of flags are not accepted (``--over`` for
    ``--overwrite``): with two spellings per flag they would be ambiguous.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs["formatter_class"] = _hiding(kwargs.get("formatter_class", argparse.HelpFormatter))
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        for action in self._actions:
            if getattr(action, "deprecated", ()):
                message = message.replace("/".join(action.option_strings), action.option_strings[0])
        print_error(f"{message} (see {self.prog} --help)")
        self.exit(EXIT_USAGE)

    def format_help(self) -> str:
        text = super().format_help()
        renames = flag_renames(self)
        if renames:
            pairs = ", ".join(f"{old} ({new})" for old, new in renames.items())
            text += "\n" + textwrap.fill(f"deprecated spellings, still accepted with a note: {pairs}",
                                         width=100, break_on_hyphens=False) + "\n"
        return text


def _deprecating(action_cls: type) -> type:
    """``action_cls`` that prints a deprecation note when called through an old spelling."""

    class Deprecating(action_cls):
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in getattr(self, "deprecated", ()):
                deprecation_note(option_string, self.option_strings[0])
            super().__call__(parser, namespace, values, option_string)

    Deprecating.__name__ = Deprecating.__qualname__ = f"Deprecating{action_cls.__name__}"
    return Deprecating


def add_flag(container, name: str, *old: str, **kwargs) -> argparse.Action:
    """Adds ``name`` (the underscore spelling) to a parser or group, with deprecated spellings ``old``.

    ``kwargs`` are :meth:`argparse.ArgumentParser.add_argument`'s; the destination comes
    from ``name``. Using an old spelling works as ``name`` does and prints
    ``note: OLD is deprecated; use NAME``.
    """
    action = kwargs.pop("action", "store")
    cls = container._registry_get("action", action, action) if isinstance(action, str) else action
    if old:
        cls = _deprecating(cls)
    act = container.add_argument(name, *old, action=cls, **kwargs)
    act.deprecated = tuple(old)
    return act


def flag_renames(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{deprecated spelling: current spelling}`` of a parser's flags (subcommands included)."""
    out: dict[str, str] = {}
    for action in parser._actions:
        for old in getattr(action, "deprecated", ()):
            out[old] = action.option_strings[0]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.update(flag_renames(sub))
    return out


def translate_flags(text: str, renames: Mapping[str, str]) -> str:
    """``text`` with every old flag spelling of ``renames`` replaced by the current one.

    For messages of library code that still names flags the old way (``--max-pixels``).
    """
    if not renames:
        return text
    pattern = "|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({pattern})(?![\w-])", lambda m: renames[m.group(1)], text)


# ----------------------------------------------------------------------------- typed values


def _int_at_least(text: str, low: int, expected: str | None = None, high: int | None = None) -> int:
    """``text`` as an integer >= ``low`` (and <= ``high``); ``expected``: the accepted forms, as
    the error for a non-integer names them (default ``an integer >= low``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {expected or f'an integer >= {low}'}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be <= {high:,}, got {value:,}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """``a,b,c`` as ``("a", "b", "c")`` (blanks dropped)."""
    return tuple(t for t in (p.strip() for p in text.split(",")) if t)


def scales_arg(text: str) -> tuple[int, ...]:
    """``2`` or ``2,3,4`` as a tuple of scales (each >= 2), via :func:`~edsr_tf.models.config.parse_scales`."""
    from edsr_tf.models.config import ScaleError, parse_scales

    try:
        scales = parse_scales(text)
    except ScaleError as e:
        raise argparse.ArgumentTypeError(f"{e} (or a comma list such as 2,3,4)") from None
    if not scales:
        raise argparse.ArgumentTypeError(f"expected a scale such as 2 or 2,3,4, got {text!r}")
    low = [s for s in scales if s < 2]
    if low:
        raise argparse.ArgumentTypeError(f"a scale must be an integer >= 2, got {low[0]}")
    if len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"scale {text!r} repeats a scale")
    return scales


class _ScalesAction(argparse.Action):
    """Stores ``--scale=2,3,4`` as a tuple (``single``: one int).

    The deprecated forms ``--scales 2 3 4`` (another spelling; space-separated values
    need ``nargs='+'``) are accepted with a note naming the new form.
    """

    def __init__(self, option_strings, dest, single: bool = False, **kwargs):
        self.single = single
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(values) if isinstance(values, (list, tuple)) else [values]
        canonical = self.option_strings[0]
        try:
            scales = scales_arg(",".join(items))
        except argparse.ArgumentTypeError as e:
            parser.error(f"argument {canonical}: {e}")
        if self.single and len(scales) != 1:
            parser.error(f"argument {canonical}: expected one scale such as 2, got {','.join(items)}")
        if option_string != canonical or len(items) > 1:
            deprecation_note(f"{option_string} {' '.join(items)}",
                             f"{canonical}={','.join(map(str, scales))}")
        setattr(namespace, self.dest, scales[0] if self.single else scales)


def add_scale_flag(container, *old: str, single: bool = False, legacy_list: bool = False,
                   help: str, **kwargs) -> argparse.Action:
    """``--scale=2`` (``single``: an int) or ``--scale=2,3,4`` (a tuple), the one scale syntax.

    ``old``: deprecated spellings (``--scales``). ``legacy_list``: also accept the old
    space-separated form ``--scale 2 3 4`` (with a note); only for parsers without
    positional arguments, which the values would swallow.
    """
    metavar = "S" if single else "S[,S...]"
    act = container.add_argument("--scale", *old, action=_ScalesAction, single=single,
                                 nargs="+" if legacy_list else None, metavar=metavar,
                                 help=help, **kwargs)
    act.deprecated = tuple(old)
    act.legacy_list = legacy_list
    return act


#: Upper bounds of the tiling flags: past these a value is a typo or an attack, never a need
#: (a tile side of 16384 LR px is 64x an 8K output's worth of activations; the widest
#: model's receptive field is under 100 px).
MAX_TILE = 16384
MAX_TILE_OVERLAP = 512
MAX_BATCH = 64


def tile_arg(text: str) -> int | str:
    """``--tile`` value: 'auto' or an integer in [0, :data:`MAX_TILE`]."""
    return text if text == "auto" else _int_at_least(text, 0, "'auto' or an integer", MAX_TILE)


def tile_overlap_arg(text: str) -> int:
    """``--tile_overlap`` value: an integer in [0, :data:`MAX_TILE_OVERLAP`]."""
    return _int_at_least(text, 0, high=MAX_TILE_OVERLAP)


def batch_arg(text: str) -> int:
    """``--batch`` value: an integer in [1, :data:`MAX_BATCH`]."""
    return _int_at_least(text, 1, high=MAX_BATCH)


_MEMORY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_arg(text: str) -> int:
    """A byte count such as ``4G``, ``512M`` or ``1073741824`` (K/M/G/T: powers of 1024); 0 = no limit."""
    t = text.strip().upper().replace("_", "").removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _MEMORY_UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _MEMORY_UNITS[unit]
        if not (0 <= value < float("inf")):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4G, 512M or 0 (no limit), got {text!r}") from None
    return int(value)


def max_pixels_arg(text: str) -> int:
    """``--max_pixels`` value: pixels as an integer, or megapixels with an ``M`` (``250M``); 0 = no limit."""
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


# ----------------------------------------------------------------------------- shared flags


WEIGHTS_HELP = ("a shipped model's name (see --list_models), or a .weights.h5/.keras file written "
                "by edsr_tf (config embedded)")


def add_list_models(parser: argparse.ArgumentParser) -> None:
    """``--list_models``: print the shipped models with their figures and exit."""
    add_flag(parser, "--list_models", "--list-models", action=_ListModels, nargs=0,
             help="list the shipped models (usable by name with --weights) and exit")


class _ListModels(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from edsr_tf.pretrained import PretrainedError, format_models

        try:
            print(format_models())
        except PretrainedError as e:
            print_error(str(e))
            parser.exit(EXIT_FAILED)
        parser.exit(EXIT_OK)


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    """``--max_pixels N``: the decompression-bomb limit of every image read."""
    from edsr_tf.images import DEFAULT_MAX_PIXELS, format_megapixels

    add_flag(
        parser, "--max_pixels", "--max-pixels", type=max_pixels_arg, default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse any image of more than N pixels (width x height, read from the file header "
             f"before decoding: decompression bombs); default {DEFAULT_MAX_PIXELS:_} "
             f"({format_megapixels(DEFAULT_MAX_PIXELS)}); '250M' = 250 Mpx; 0 = no limit",
    )


@dataclasses.dataclass(frozen=True)
class TileOptions:
    """How a model runs over an image (``--tile/--tile_overlap/--batch/--self_ensemble``).

    ``tile``: LR tile side, ``"auto"`` (memory-bounded) or None (whole image); ``overlap``:
    LR context pixels per tile side (None: the model's receptive-field radius, exact).
    """

    tile: int | str | None = "auto"
    overlap: int | None = None
    batch_size: int = 1
    self_ensemble: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TileOptions":
        return cls(tile=args.tile or None, overlap=args.tile_overlap, batch_size=args.batch,
                   self_ensemble=args.self_ensemble)

    def kwargs(self) -> dict[str, Any]:
        """As keywords of :func:`edsr_tf.inference.upscale_tiles` / :func:`edsr_tf.evaluation.model_sr`."""
        return dict(tile=self.tile, tile_overlap=self.overlap, batch_size=self.batch_size,
                    self_ensemble=self.self_ensemble)


def add_tiling_flags(parser: argparse.ArgumentParser, *, ensemble_help: str) -> None:
    """``--tile``, ``--tile_overlap``, ``--batch``, ``--self_ensemble`` (read with :meth:`TileOptions.from_args`)."""
    from edsr_tf.inference import DEFAULT_TILE

    parser.add_argument("--tile", type=tile_arg, default=DEFAULT_TILE,
                        help="LR tile size in pixels (at most 16384), 0 = whole image in one pass, "
                             "'auto' (default) = largest tile whose activations fit about 1.5 GiB")
    add_flag(parser, "--tile_overlap", "--tile-overlap", type=tile_overlap_arg, default=None,
             metavar="N",
             help="LR context pixels on each tile side (default: the model's receptive-field "
                  f"radius, which makes tiling exact; smaller is faster but approximate; at most "
                  f"{MAX_TILE_OVERLAP})")
    parser.add_argument("--batch", type=batch_arg, default=1, metavar="N",
                        help=f"tiles per model call (default 1, at most {MAX_BATCH}); --tile auto "
                             "shares its memory among them")
    add_flag(parser, "--self_ensemble", "--self-ensemble", action="store_true", help=ensemble_help)


SCALE_HELP = "upscaling factor (default: the model's; required for --bicubic and multi-scale MDSR)"


def add_precision_flag(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--precision auto|fp32|bf16|int8``: how the model computes (:mod:`edsr_tf.inference_precision`).

    ``default``: the front end's (``upscale``: auto; ``evaluate``: fp32, so paper figures do not
    depend on the machine); read back resolved with :meth:`CommandLine.resolve_precision`.
    """
    from edsr_tf.inference_precision import AUTO, CHOICES, DEFAULT_PRECISION

    default = default or DEFAULT_PRECISION
    parser.add_argument(
        "--precision", choices=CHOICES, default=default,
        help=f"model arithmetic (default {default}): {AUTO} = bf16 where the hardware computes bfloat16 "
             "natively (a CPU with AVX512-BF16 or AMX-BF16 and no GPU, or GPUs of compute capability "
             "8.0+; within 0.01 dB of fp32 for the shipped models), else fp32, so on a machine without "
             "it (e.g. an AMD CPU without AVX512-BF16) nothing changes; fp32; bf16 (bfloat16 compute; "
             "slow where it is emulated); int8 (full-integer TFLite run with LiteRT: the shipped "
             "<name>.int8.tflite, or converted from the weights once and cached under $EDSR_TF_CACHE "
             "or ~/.cache/edsr_tf)")


def add_sr_flags(parser: argparse.ArgumentParser, *, weights_help: str = WEIGHTS_HELP,
                 bicubic_help: str, ensemble_help: str, precision_default: str | None = None) -> None:
    """What super-resolves and how: ``--weights`` (and ``--list_models``) or ``--bicubic``,
    ``--scale``, :func:`add_tiling_flags` and :func:`add_precision_flag`.

    Read back with :func:`sr_args_error`, :func:`resolve_weights`, :attr:`CommandLine.tiling`
    and :meth:`CommandLine.load_runner`.
    """
    parser.add_argument("--weights", help=weights_help)
    add_list_models(parser)
    parser.add_argument("--bicubic", action="store_true", help=bicubic_help)
    add_scale_flag(parser, single=True, help=SCALE_HELP)
    add_tiling_flags(parser, ensemble_help=ensemble_help)
    add_precision_flag(parser, precision_default)


def sr_args_error(args: argparse.Namespace, *, weights_required: bool = True) -> str | None:
    """The first problem with ``--weights/--bicubic/--scale/--self_ensemble``, or None.

    ``weights_required=False``: neither ``--weights`` nor ``--bicubic`` means the shipped model.
    """
    if args.bicubic and args.weights:
        return "give either --weights W or --bicubic, not both"
    if weights_required and not args.bicubic and not args.weights:
        return "give exactly one of --weights W and --bicubic"
    if args.bicubic and args.scale is None:
        return "--bicubic needs --scale"
    if args.bicubic and args.self_ensemble:
        return "--self_ensemble needs a model (--weights), not --bicubic"
    precision = getattr(args, "precision", "fp32")
    if args.bicubic and precision not in ("fp32", "auto"):
        return f"--precision {precision} needs a model (--weights), not --bicubic"
    return None


def resolve_weights(weights: str, requested_scale: int | None):
    """``(config, scale)`` of ``--weights`` (read from the file, nothing built) at ``--scale``.

    Raises :class:`UsageError` in flag wording: an unreadable file, or a scale the model
    lacks (or none given for a multi-scale model).
    """
    from edsr_tf.models.config import ScaleError, resolve_scale
    from edsr_tf.models.io import ModelFileError, read_config

    try:
        config = read_config(weights)
    except ModelFileError as e:
        raise UsageError(str(e)) from None
    try:
        return config, resolve_scale(config, requested_scale)
    except ScaleError as e:
        if requested_scale is None:
            raise UsageError(f"--weights {weights}: {e} with --scale") from None
        raise UsageError(f"--scale={requested_scale}: --weights {weights}: {e}") from None


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: TensorFlow's start-up and info logs shown (see :func:`quiet_tensorflow`)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and info log lines (hidden by default; "
                             "errors, such as a GPU that fails, show either way)")


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hides TensorFlow's start-up lines and C++ info/warning logs, unless ``verbose``.

    Called by each CLI after parsing its flags, before TensorFlow is imported: sets
    ``TF_CPP_MIN_LOG_LEVEL=2`` (unless the user set it) for the logs after start-up, and
    :func:`edsr_tf.tf_startup.install` for the lines TensorFlow prints before it reads that.
    Library modules never change ``os.environ`` or stderr when imported.
    """
    if verbose:
        return
    from edsr_tf import tf_startup

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_startup.install()


def output_path_error(path: Path, flag: str, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written (as a folder, or a file when ``folder`` is false), or None.

    Checked before any work starts, without creating anything: ``path`` itself must be a
    writable folder (or a file or nothing, for a file), and its nearest existing ancestor
    a writable folder (a file there, e.g. ``--json results.json/x.json``, is an error).
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"{flag} {path}: is a dangling symlink (to {os.readlink(path)})"
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


# ----------------------------------------------------------------------------- running a front end


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """A front end's parsed ``args``, and its messages in the current flag spelling.

    Library messages may still name a flag the old way (``--max-pixels``): :meth:`error` and
    :meth:`warning` print them with :func:`translate_flags` applied.
    """

    args: argparse.Namespace
    renames: Mapping[str, str]
    #: ``--precision auto``'s decision, once made: {"reason": why}
    _precision: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def error(self, msg: str) -> None:
        """``error: msg`` on stderr."""
        print_error(translate_flags(msg, self.renames))

    def warning(self, msg: str) -> None:
        """``warning: msg`` on stderr."""
        print(f"warning: {printable(translate_flags(msg, self.renames), sys.stderr)}", file=sys.stderr)

    @property
    def tiling(self) -> TileOptions:
        """The tiling flags (:func:`add_tiling_flags`) as :class:`TileOptions`."""
        return TileOptions.from_args(self.args)

    def load_model(self, weights: str, scale: int):
        """``(model, config)``: ``weights`` built and viewed at ``scale``, to run with the tiling flags.

        Warns when ``--tile`` is smaller than the overlap (slow, not wrong). Raises
        :class:`UsageError` in flag wording when the model cannot be loaded at ``scale``.
        """
        from edsr_tf.inference import small_tile_warning
        from edsr_tf.models import load_model, model_for_scale
        from edsr_tf.models.io import ModelFileError

        try:
            model, config = load_model(weights)
            model = model_for_scale(model, config, scale)
        except ModelFileError as e:
            raise UsageError(str(e)) from None
        except ValueError as e:
            raise UsageError(f"--weights {weights}: {e}") from None
        warning = small_tile_warning(model, scale, self.args.tile, self.args.tile_overlap)
        if warning:
            self.warning(warning)
        return model, config

    def resolve_precision(self) -> str:
        """``--precision`` with ``auto`` decided for this machine (the reason: :attr:`precision_reason`).

        Replaces ``args.precision`` by the decision, so everything after reads one value; the
        first call decides (TensorFlow is asked about GPUs), later ones return it.
        """
        from edsr_tf.inference_precision import resolve_precision

        if "reason" not in self._precision:
            self.args.precision, self._precision["reason"] = resolve_precision(getattr(self.args, "precision", "fp32"))
        return self.args.precision

    @property
    def precision_reason(self) -> str:
        """Why ``--precision auto`` decided as it did ("" when a precision was given)."""
        self.resolve_precision()
        return self._precision["reason"]

    def precision_phrase(self) -> str:
        """How the model computes and why, for the line that names the model."""
        precision = self.resolve_precision()
        if self.precision_reason:
            other = "fp32" if precision != "fp32" else "bf16"
            return f"computing in {precision} (--precision auto: {self.precision_reason}; --precision {other} to change)"
        return f"computing in {precision} (--precision)"

    def load_runner(self, weights: str, scale: int):
        """``(runner, config)``: :meth:`load_model`, then set up for ``--precision``.

        fp32 gives the Keras model; bf16 a bfloat16 rebuild (with a note when this machine
        computes bfloat16 slowly); int8 a TFLite runner (converted once and cached, with a
        note when converting). Raises :class:`UsageError` for unloadable weights and
        :class:`CommandFailed` naming ``--precision`` when that precision cannot be set up
        (the int8 conversion failed, an unwritable cache).
        """
        from edsr_tf.inference_precision import PrecisionError, with_precision
        from edsr_tf.models.io import ModelFileError

        model, config = self.load_model(weights, scale)
        precision = self.resolve_precision()
        try:
            runner = with_precision(model, config, scale, precision, weights=weights,
                                    say=lambda msg: print_note(f"--precision {precision}: {msg}"))
        except ModelFileError as e:
            raise UsageError(str(e)) from None
        except (PrecisionError, ValueError) as e:
            raise CommandFailed(f"--precision {precision}: {e}") from None
        return runner, config


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                body: Callable[[CommandLine], int | None]) -> int:
    """A front end's ``main``: parses ``argv`` (usage errors exit 2), runs ``body``, returns the exit code.

    TensorFlow's start-up lines are quieted once the flags are parsed, unless ``--verbose``
    (:func:`quiet_tensorflow`, :func:`add_verbose_flag`). ``body`` returns its exit code, None
    for 0 (as :func:`sys.exit` takes it). A :class:`UsageError` or :class:`CommandFailed` it
    raises is printed as ``error: <message>`` and gives its exit code (2 or 1).
    """
    cli = CommandLine(parser.parse_args(argv), flag_renames(parser))
    quiet_tensorflow(getattr(cli.args, "verbose", False))
    try:
        code = body(cli)
    except (UsageError, CommandFailed) as e:
        cli.error(str(e))
        return e.exit_code
    return EXIT_OK if code is None else code
