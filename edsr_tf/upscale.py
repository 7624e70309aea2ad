"""Upscale image files: ``edsr-upscale INPUT... --weights W --out_dir DIR`` (or ``python -m edsr_tf.upscale``).

Each input (a file, or every image in a folder) is written to
``DIR/<stem>_x<s>.png`` (``<stem>_x<s>_bicubic.png`` with ``--bicubic``, ``<stem>_x<s>_int8.png``
with ``--precision int8``, beside the float result;
``--format keep`` keeps the input's format where it can hold the result).
Grayscale stays grayscale, 16-bit PNGs stay 16-bit, an alpha channel is
upscaled with MATLAB bicubic (float, rounded once). Large images are processed in exact tiles, so
memory stays bounded. ``--precision bf16|int8`` runs the model in bfloat16 or as a full-integer
TFLite model (:mod:`edsr_tf.inference_precision`), tiled and self-ensembled the same way.

The whole plan (input → output) is made first, from the file headers and before any
model work: an output that would be one of the inputs, or that two inputs would both
write, is refused (those inputs fail, the others go on); an output left by an earlier run
is skipped with a notice unless ``--overwrite``. A file that cannot be read or processed
is reported on one line naming it; the others are still processed and the exit code is 1.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edsr_tf.cli_args import (
    EXIT_FAILED,
    EXIT_OK,
    WEIGHTS_HELP,
    ArgumentParser,
    CommandLine,
    UsageError,
    TileOptions,
    add_flag,
    add_max_pixels,
    format_bytes,
    memory_arg,
    add_sr_flags,
    add_verbose_flag,
    output_path_error,
    printable,
    program_name,
    resolve_weights,
    run_command,
    sr_args_error,
)
from edsr_tf.errors import first_line
from edsr_tf.images import (
    IMAGE_SUFFIXES,
    OTHER_IMAGE_SUFFIXES,
    ImageInfo,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    probe_image,
    quantize_to,
    read_image,
    write_image,
)
from edsr_tf.inference import DEFAULT_TILE, ProgressFn, upscale_tiles, working_memory
from edsr_tf.inference_precision import UPSCALE_DEFAULT_PRECISION
from edsr_tf.jpeg import COMPRESSED_QUALITY


def bicubic_channels(a: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic x``scale`` of uint8/uint16 ``[H,W]`` or ``[H,W,C]``, rounded once at the end.

    The papers' Bicubic (:func:`edsr_tf.imresize.bicubic_upscale`: float64, rounded once),
    computed per channel and per band of output rows straight into the output
    (:func:`edsr_tf.imresize.bicubic_upscale_banded`): the output plus a few MB, where
    whole-image float64 passes cost about 39 bytes per output pixel.
    """
    from edsr_tf.imresize import bicubic_upscale_banded

    return bicubic_upscale_banded(a, scale)


#: ``--max_memory`` default: what one input may need (:func:`memory_needed`), the runtime
#: itself (Python, TensorFlow: about 0.2-0.8 GB) not counted.
DEFAULT_MAX_MEMORY = 4 << 30  # 4 GiB


def memory_needed(info: ImageInfo, scale: int, model=None, tiling: TileOptions | None = None) -> int:
    """Estimated peak bytes of upscaling the image of ``info`` (a model or ``None``: bicubic).

    Counted from the header, worst case over what it does not say (alpha, grayscale): per
    output pixel 8 bytes for 8-bit (RGB + alpha planes, and the encoder's copy; the encoded
    file is streamed to disk) and 40 for 16-bit (also TensorFlow's PNG encoder's input copy
    and its whole encoded bytes); the decoded input twice; then bicubic's bands of float64
    rows, or the model's float32 input copy and :func:`edsr_tf.inference.working_memory`.
    """
    h, w, s = info.height, info.width, int(scale)
    depth = info.bit_depth // 8
    need = h * w * s * s * (8 if depth == 1 else 40) + 2 * h * w * 4 * depth
    if model is None:
        need += h * w * depth + 6 * 64 * w * s * 8  # one input channel; float64 bands of 64 rows
    else:
        tiling = tiling or TileOptions()
        need += h * w * 12 + working_memory(
            model, s, h, w, tile=tiling.tile, tile_overlap=tiling.overlap,
            batch_size=tiling.batch_size, self_ensemble=tiling.self_ensemble)
    return need


def upscale_image(
    img: LoadedImage,
    scale: int,
    model=None,
    *,
    tile: int | str | None = DEFAULT_TILE,
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    batch_size: int = 1,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Upscales a loaded image with a Keras model or an :class:`edsr_tf.inference.Runner`
    (``--precision int8``); ``model=None`` means MATLAB bicubic.

    Returns ``(image, alpha)`` in the input's layout and dtype: ``[sH,sW]`` for
    grayscale or ``[sH,sW,3]``, uint8 or uint16; alpha ``[sH,sW]`` or None.
    """
    if model is None:
        out = bicubic_channels(img.channels(), scale)
    else:
        h, w = img.rgb.shape[:2]
        shape = (h * scale, w * scale) if img.grayscale else (h * scale, w * scale, 3)
        # Quantize tile by tile into the final dtype: no full-size float image (8K: 531 MB).
        out = np.empty(shape, img.rgb.dtype)
        for rows, cols, block in upscale_tiles(
            model, scale, img.rgb_float255(), tile=tile, tile_overlap=tile_overlap,
            self_ensemble=self_ensemble, batch_size=batch_size, progress=progress,
        ):
            if img.grayscale:
                block = block.mean(axis=-1, dtype=np.float32)
            out[rows, cols] = quantize_to(block, img.bit_depth)
    alpha = None if img.alpha is None else bicubic_channels(img.alpha, scale)
    return out, alpha


def collect_inputs(inputs: Sequence[str], skipped: list[Path] | None = None,
                   errors: list[str] | None = None) -> list[Path]:
    """Expands folders into their image files (sorted, not recursive); files are kept as given.

    A folder contributes its PNG/JPEG/BMP/WebP files; files of other image formats there
    (GIF, TIFF, ...: :data:`edsr_tf.images.OTHER_IMAGE_SUFFIXES`) are appended to ``skipped``
    for a notice. A file named on the command line is always kept, and read_image refuses it
    with an error if it is not a supported still image (so a GIF is never half-read).
    A folder that cannot be listed (no permission) adds one line to ``errors`` (raised as
    ``OSError`` when ``errors`` is None), so the other inputs are still processed.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if _is_dir(p):
            try:
                entries = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
            except OSError as e:
                if errors is None:
                    raise
                errors.append(f"{p}: cannot list the folder ({e.strerror or e})")
                continue
            found = [q for q in entries if q.suffix.lower() in IMAGE_SUFFIXES]
            if skipped is not None:
                skipped.extend(q for q in entries if q.suffix.lower() in OTHER_IMAGE_SUFFIXES)
            files.extend(found)
            if not found:
                files.append(p)  # reported as an error: a folder with no images
        else:
            files.append(p)
    return files


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where it cannot be looked at (the reader then names why)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where it cannot be looked at (the reader then names why)."""
    try:
        return path.is_file()
    except OSError:
        return False


def webp_is_lossless(path: Path) -> bool:
    """Whether the WebP file ``path`` holds a lossless (VP8L) image, from its chunk headers.

    ``--format keep`` writes such an input losslessly (quality 95 would make it lossy).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            for _ in range(64):  # VP8X, ICCP, ANIM, ALPH, ... then the image chunk
                chunk = f.read(8)
                if len(chunk) < 8:
                    return False
                if chunk[:4] in (b"VP8L", b"VP8 ", b"ANMF"):
                    return chunk[:4] == b"VP8L"
                f.seek(int.from_bytes(chunk[4:], "little") + 1 & ~1, 1)  # chunks are padded to even
    except OSError:
        return False
    return False


def output_path(out_dir: Path, src: Path, scale: int, *, bicubic: bool = False,
                keep_format: bool = False, bit_depth: int = 8, precision: str = "fp32") -> Path:
    """``out_dir/<stem>_x<s>[_bicubic|_int8].<ext>``; ext ``.png`` unless keeping a format that
    fits. The int8 model's output is named apart so it never replaces the float one; bf16 (and
    ``auto``) compute the same image to 0.01 dB and keep the plain name."""
    ext = ".png"
    if keep_format and src.suffix.lower() in IMAGE_SUFFIXES and bit_depth == 8:
        ext = src.suffix.lower()
    tag = "_bicubic" if bicubic else ("_int8" if precision == "int8" else "")
    return out_dir / f"{src.stem}_x{scale}{tag}{ext}"


@dataclasses.dataclass
class Plan:
    """What a run will do, decided before any model work (:func:`make_plan`).

    ``jobs``: (input, its header info, output) to process; ``errors``: one message per input
    refused (unreadable, too large, output clash); ``existing``: (input, output) skipped
    because the output exists and ``overwrite`` is off.
    """

    jobs: list[tuple[Path, ImageInfo, Path]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    existing: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def make_plan(
    files: Sequence[Path], out_dir: Path, scale: int, *, bicubic: bool = False,
    keep_format: bool = False, overwrite: bool = False, max_pixels: int | None = None,
    precision: str = "fp32",
) -> Plan:
    """Maps every input to its output and refuses clashes, reading only file headers.

    An input is refused when its output path is any input file (same path or same file
    through a link) or is also the output of another input (all of those are refused: none
    wins by order). An output that already exists is kept (``existing``) unless ``overwrite``.
    """
    plan = Plan()
    inputs: dict[Path, Path] = {}
    input_ids: dict[tuple[int, int], Path] = {}
    for src in files:
        if _is_file(src):
            inputs.setdefault(src.resolve(), src)
            fid = _file_id(src)
            if fid is not None:
                input_ids.setdefault(fid, src)
    candidates: list[tuple[Path, ImageInfo, Path]] = []
    for src in files:
        if _is_dir(src):
            plan.errors.append(f"{src}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
            continue
        try:
            info = probe_image(src, max_pixels=max_pixels)
        except ImageReadError as e:
            plan.errors.append(str(e))
            continue
        dst = output_path(out_dir, src, scale, bicubic=bicubic, keep_format=keep_format,
                          bit_depth=info.bit_depth, precision=precision)
        candidates.append((src, info, dst))
    by_output: dict[Path, list[Path]] = {}
    for src, _, dst in candidates:
        by_output.setdefault(dst.resolve(), []).append(src)
    for src, info, dst in candidates:
        key = dst.resolve()
        hit = inputs.get(key) or (input_ids.get(_file_id(dst)) if dst.exists() else None)
        if hit is not None:
            which = "itself" if hit == src else f"the input {hit}"
            plan.errors.append(
                f"{src}: output {dst} would overwrite {which} (inputs are never overwritten); "
                "choose another --out_dir"
            )
            continue
        others = [o for o in by_output[key] if o != src]
        if others:
            plan.errors.append(
                f"{src}: output {dst} is already taken by {', '.join(map(str, others))} (same output "
                "name), so none of them is written; rename one or use separate --out_dir folders"
            )
            continue
        if dst.is_dir():
            plan.errors.append(f"{src}: output {dst} exists and is a folder")
            continue
        if dst.exists() and not overwrite:
            plan.existing.append((src, dst))
            continue
        plan.jobs.append((src, info, dst))
    return plan


def build_parser() -> ArgumentParser:
    """The command line of ``edsr-upscale`` / ``python -m edsr_tf.upscale``."""
    p = ArgumentParser(
        prog=program_name("edsr-upscale", ("edsr_tf.upscale",)),
        description="Super-resolve images with an EDSR/MDSR weights file (or MATLAB bicubic).",
        epilog="Outputs: OUT_DIR/<stem>_x<s>.png (<stem>_x<s>_bicubic.png with --bicubic, "
               "<stem>_x<s>_int8.png with --precision int8), written "
               "atomically; inputs are never overwritten, existing outputs only with --overwrite. "
               "Exit code 0: all written (or skipped as existing); 1: some inputs failed (each named "
               "on stderr, the others still processed); 2: bad arguments or weights.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (still PNG 8/16-bit, JPEG, BMP, WebP; gray, RGB, RGBA) or folders of "
                        "them (other formats, e.g. GIF/TIFF, are refused; skipped with a notice in a folder)")
    add_sr_flags(p, weights_help=WEIGHTS_HELP + "; default: the shipped edsr_baseline model for "
                 "--scale (default x2)", bicubic_help="MATLAB-bicubic upscaling instead of a model",
                 ensemble_help="average the 8 flips/rotations (EDSR+; 8x slower)",
                 precision_default=UPSCALE_DEFAULT_PRECISION)
    add_flag(p, "--input_type", "--input-type", choices=INPUT_TYPES, default="auto",
             help="which shipped model runs when --weights is not given: auto (default) gives JPEG "
                  f"files of estimated quality <= {COMPRESSED_QUALITY} (read from their quantization "
                  "tables) the JPEG-robust model where one is shipped, so their 8x8 blocks are not "
                  "sharpened, and every other input the bicubic-trained model; clean or jpeg forces one")
    add_flag(p, "--out_dir", "--out", type=Path, default=Path("."), metavar="DIR",
             help="output folder (created if needed; default: the current folder)")
    p.add_argument("--format", choices=("png", "keep"), default="png",
                   help="output format: png (default, lossless) or keep the input's (JPEG at quality 95)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs left by an earlier run (default: skip them with a notice); "
                        "an input is never overwritten")
    add_max_pixels(p)
    add_flag(p, "--max_memory", type=memory_arg, default=DEFAULT_MAX_MEMORY, metavar="BYTES",
             help="refuse (before decoding it) an input whose upscaling would need more than this "
                  "memory, estimated from its header, the output and the tiling flags: about 8 bytes "
                  "per output pixel (40 for 16-bit PNGs) plus the input and the model's tiles; "
                  f"default {format_bytes(DEFAULT_MAX_MEMORY)}; '8G', '512M'; 0 = no limit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines")
    add_verbose_flag(p)
    return p


def _skipped_notice(skipped: Sequence[Path]) -> list[str]:
    by_folder: dict[Path, list[str]] = {}
    for p in skipped:
        by_folder.setdefault(p.parent, []).append(p.name)
    lines = []
    for folder, names in by_folder.items():
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        lines.append(f"note: {folder}: skipped {len(names)} file(s) in formats edsr-tf does not read "
                     f"(only still PNG, JPEG, BMP, WebP): {shown}")
    return lines


INPUT_TYPES = ("auto", "clean", "jpeg")


def choose_shipped_model(src: Path, scale: int, input_type: str = "auto") -> tuple[str, str]:
    """``(name, why)``: the shipped model for the input ``src`` when no weights are given.

    JPEG-robust (``edsr_baseline_x<s>_jpeg``) for a JPEG whose estimated quality is at most
    :data:`edsr_tf.jpeg.COMPRESSED_QUALITY` (or ``input_type="jpeg"``), when shipped for
    ``scale``; else the bicubic-trained default. ``why`` says which rule chose it.
    Raises :class:`edsr_tf.pretrained.PretrainedError` when no model is shipped for ``scale``.
    """
    from edsr_tf.jpeg import file_quality
    from edsr_tf.pretrained import default_model, jpeg_model

    clean = default_model(scale).name
    if input_type == "clean":
        return clean, "--input_type clean"
    quality = None
    if input_type == "auto":
        try:
            quality = file_quality(src)
        except OSError:
            quality = None  # unreadable: read_image reports it
        if quality is None:
            return clean, "not a JPEG"
        if quality > COMPRESSED_QUALITY:
            return clean, f"JPEG of estimated quality {quality} > {COMPRESSED_QUALITY}, barely compressed"
    why = "--input_type jpeg" if quality is None else \
        f"JPEG of estimated quality {quality} <= {COMPRESSED_QUALITY}"
    robust = jpeg_model(scale)
    if robust is None:
        return clean, f"{why}, but no JPEG-robust x{scale} model is shipped"
    return robust.name, f"{why}: the JPEG-robust model"


def _model_and_scale(args) -> tuple[str | None, int]:
    """``(weights, scale)``: the model to run (None for --bicubic) and its resolved scale.

    The model's config gives the scale (and so the output names): read it, build nothing yet.
    Raises :class:`UsageError` in flag wording.
    """
    if args.bicubic:
        return None, args.scale
    from edsr_tf.pretrained import PretrainedError, default_model

    weights = args.weights
    if weights is None:
        try:
            shipped = default_model(args.scale or 2)
        except PretrainedError as e:
            raise UsageError(f"--weights not given and {e}; pass --weights W or --bicubic") from None
        weights = shipped.name  # the bicubic-trained model; per input see choose_shipped_model
    elif args.input_type != "auto":
        raise UsageError("--input_type chooses among the shipped models: drop it or --weights")
    _config, scale = resolve_weights(weights, args.scale)
    return weights, scale


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the upscaling CLI; returns 0, 1 (some inputs failed) or 2 (bad arguments/weights)."""
    return run_command(build_parser(), argv, _upscale)


def _upscale(cli: CommandLine) -> int:
    args = cli.args
    problem = sr_args_error(args, weights_required=False) or output_path_error(
        args.out_dir, "--out_dir", folder=True)
    if problem:
        raise UsageError(problem)
    tiling = cli.tiling
    weights, scale = _model_and_scale(args)
    if not args.bicubic:
        cli.resolve_precision()  # --precision auto -> bf16 or fp32 here, before outputs are named

    skipped: list[Path] = []
    unlisted: list[str] = []
    files = collect_inputs(args.inputs, skipped, unlisted)
    for line in _skipped_notice(skipped):
        print(line, file=sys.stderr)
    plan = make_plan(files, args.out_dir, scale, bicubic=args.bicubic, keep_format=args.format == "keep",
                     overwrite=args.overwrite, max_pixels=args.max_pixels, precision=args.precision)
    for msg in unlisted + plan.errors:
        cli.error(msg)
    for src, dst in plan.existing:
        print(f"note: {src}: {dst} exists, skipped (--overwrite replaces it)", file=sys.stderr)
    failures = len(unlisted) + len(plan.errors)

    # The model of each input: --weights, or the shipped model its kind calls for.
    chosen: dict[Path, str | None] = {}
    if not args.bicubic:
        reasons: dict[str, list[str]] = {}
        for src, _info, _dst in plan.jobs:
            name, why = (weights, "") if args.weights else choose_shipped_model(src, scale, args.input_type)
            chosen[src] = name
            reasons.setdefault(name, [])
            if why not in reasons[name]:
                reasons[name].append(why)
        if not args.weights and not args.quiet:
            from edsr_tf.pretrained import load_manifest

            shipped = load_manifest()
            for name, whys in reasons.items():
                print(printable(f"using the shipped model {name} ({shipped[name].figures()}) for "
                                f"{sum(1 for n in chosen.values() if n == name)} input(s): {'; '.join(whys)} "
                                f"(--input_type or --weights to choose another); {cli.precision_phrase()}",
                                sys.stderr), file=sys.stderr)
    runners: dict[str, object] = {}

    def runner_for(src: Path):
        name = chosen.get(src)
        if name is None:
            return None
        if name not in runners:
            runners[name], _config = cli.load_runner(name, scale)  # --precision: Keras, bf16 or TFLite int8
        return runners[name]

    for name in dict.fromkeys(chosen.values()):  # load (and check) every model before any work
        runner_for(next(src for src, n in chosen.items() if n == name))
    if args.weights and not args.quiet and chosen:
        print(printable(f"using {weights}: {cli.precision_phrase()}", sys.stderr), file=sys.stderr)
    if args.max_memory:  # memory follows the output, not the file: refuse before decoding
        fits = []
        for job in plan.jobs:
            src, info, _dst = job
            need = memory_needed(info, scale, runner_for(src), tiling)
            if need <= args.max_memory:
                fits.append(job)
                continue
            failures += 1
            cli.error(f"{src}: upscaling {info.width}x{info.height} x{scale} (output "
                      f"{info.width * scale}x{info.height * scale}) needs about {format_bytes(need)}, "
                      f"over --max_memory {format_bytes(args.max_memory)}; raise it (0 = no limit)"
                      + ("" if args.bicubic else " or lower --tile/--batch"))
        plan.jobs[:] = fits

    from tqdm import tqdm

    # Bars redraw one line with \r: only on a terminal. In a log or pipe (2>&1 | tee) they would
    # run into the per-file lines; there those lines alone say how it goes.
    bars = not args.quiet and _is_terminal(sys.stderr)
    bar = tqdm(plan.jobs, unit="img", disable=not bars or len(plan.jobs) < 2, file=sys.stderr)
    for src, _info, dst in bar:
        tile_bar = None

        def progress(done: int, total: int) -> None:
            nonlocal tile_bar
            if not bars or total < 2:
                return
            if tile_bar is None:
                tile_bar = tqdm(total=total, desc=src.name, unit="tile", leave=False, file=sys.stderr)
            tile_bar.update(done - tile_bar.n)

        try:
            t0 = time.perf_counter()
            img = read_image(src, max_pixels=args.max_pixels)
            out, alpha = upscale_image(img, scale, runner_for(src), **tiling.kwargs(), progress=progress)
            lossless = dst.suffix == ".webp" and webp_is_lossless(src)  # --format keep: keep lossless
            write_image(dst, out, alpha=alpha, quality=100 if lossless else 95)
            if not args.quiet:
                # printable: a non-UTF-8 name on a strict stdout must not fail a written file
                tqdm.write(printable(
                    f"{src} -> {dst} ({out.shape[1]}x{out.shape[0]}, "
                    f"{time.perf_counter() - t0:.1f}s)", sys.stdout), file=sys.stdout,
                )
        except (ImageReadError, ImageWriteError, OSError) as e:
            failures += 1
            cli.error(str(e) if str(src) in str(e) else f"{src}: {e}")
        except Exception as e:  # e.g. TF out-of-memory: report the file, go on with the others
            failures += 1
            cli.error(f"{src}: {first_line(e, typed=True)}")
        finally:
            if tile_bar is not None:
                tile_bar.close()
    bar.close()
    if failures:
        cli.error(f"{failures} of {len(files) + len(unlisted)} input(s) failed")
    return EXIT_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
