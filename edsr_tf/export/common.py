"""Shared pieces of the export stack: names, errors, the conversion-input model."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import functools
import json
import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from edsr_tf.fileio import make_dir, pid_alive

if TYPE_CHECKING:  # keras/TF load lazily so `python -m export --help` answers at once
    import keras
    import numpy as np

    from edsr_tf.models import ModelConfig

#: Export formats, in the order they are built ("opencv": an ONNX file for OpenCV's dnn_superres,
#: edsr_tf.export.opencv; "web": the browser bundle, edsr_tf.export.web).
FORMATS: tuple[str, ...] = ("savedmodel", "tflite", "onnx", "opencv", "web")
#: What ``--formats`` defaults to (opencv and web need OpenCV or the npm runtime installed, so they
#: are asked for by name).
DEFAULT_FORMATS: tuple[str, ...] = ("savedmodel", "tflite", "onnx")
#: Quantization variants; "none" is the float32 export.
QUANTIZATIONS: tuple[str, ...] = ("none", "fp16", "dynamic", "int8")
#: Which variants each format supports (SavedModel serves float32 only).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "savedmodel": ("none",),
    "tflite": ("none", "fp16", "dynamic", "int8"),
    "onnx": ("none", "int8"),
    "opencv": ("none",),
    "web": ("none",),
}
#: Default fp32 parity tolerance: max |export - keras| on the [0, 255] scale.
FP32_TOLERANCE = 1e-2
#: Default ``--max-pixels``: the most LR pixels (N x H x W) one SavedModel request may hold.
#: One megapixel, e.g. a 1024x1024 or 1280x800 input; see ``activation_bytes_per_pixel``
#: (report.json, ``serving``) for the memory a model needs per LR pixel.
DEFAULT_MAX_PIXELS = 1 << 20
#: Default largest LR side of a verification image (center crop): keeps verification quick.
MAX_LR_SIDE = 192

Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """An export could not be produced (conversion failed, bad option, ...)."""


class ExportUsageError(ExportError):
    """A bad option or input path (the CLI exits with 2)."""


class VerificationError(ExportError):
    """An exported artifact does not reproduce the Keras model within tolerance.

    ``report`` is the export report when one was written (the artifacts that passed
    were installed, the failing ones left out and listed), else None.
    """

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


def parse_list(value: str | Sequence[str], allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → validated tuple in ``allowed`` order (a front end's parser)."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise ExportUsageError(f"{flag}: empty; expected a comma-separated subset of {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ExportUsageError(f"{flag}: unknown value(s) {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return tuple(a for a in allowed if a in items)


def parse_tile(value: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"H,W"`` (or ``"N"`` for a square; ``""``/None: no tile) → ``(H, W)`` positive ints."""
    if value is None or value == "":
        return None
    try:
        parts = [int(v) for v in value.split(",")] if isinstance(value, str) else [int(v) for v in value]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ExportUsageError(f"--tile {value!r}: expected H,W with positive integers, e.g. 128,128")
    return parts[0], parts[1]


def _names(value, allowed: Sequence[str], field: str, flag: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"ExportOptions.{field}: a tuple of names such as {tuple(allowed[:2])}, got the "
                        f"string {value!r}; a front end parses strings with ExportOptions.parse")
    return parse_list(value, allowed, flag)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What :func:`~edsr_tf.export.pipeline.export_model` exports and how it verifies it.

    Typed values only (a string where a tuple belongs is a ``TypeError``); front ends turn
    their text into these with :meth:`parse`. Values are checked on construction
    (:class:`ExportUsageError`, naming the command-line flag); ``formats`` and ``quantize``
    are put in canonical order.

    formats: subset of :data:`FORMATS`. quantize: subset of :data:`QUANTIZATIONS` ("none" =
    float32); each must be supported by one of ``formats`` (:data:`SUPPORTED`). scale: the
    one scale to export (None: every scale of the model). tile: ``(H, W)`` of extra
    fixed-shape TFLite models, or None. calibration_dir / num_calibration / calibration_size:
    int8 calibration patches (None: the embedded photographs). verify_dir: HR images to verify
    on; verify_images: ``(name, HR uint8 array)`` pairs instead (in memory; default: the
    embedded held-out photograph); verify_max_side: LR center-crop side (None: whole image).
    tolerance: fp32 max |export - keras| on [0, 255]. max_psnr_drop: quantized exports that
    lose more dB fail (None: report only). max_pixels: the SavedModel's request size limit
    (LR pixels). overwrite: replace another model's export in ``out``. latency_runs: timed
    runs per artifact (0: none). web_runtime: the folder ONNX Runtime Web is taken from or
    installed into for ``web`` (None: :mod:`edsr_tf.export.web_runtime`'s places, the user cache).
    web_jpeg_weights: a second, JPEG-robust model the ``web`` page carries and picks for
    compressed JPEGs (a shipped model's name or a ``.weights.h5``/``.keras`` file: a single-scale
    model of an exported scale); None: the page carries the exported model only. Front ends
    resolve their ``auto`` (:func:`edsr_tf.export.web.auto_jpeg_weights`) before this.
    """

    formats: tuple[str, ...] = DEFAULT_FORMATS
    quantize: tuple[str, ...] = ("none",)
    scale: int | None = None
    tile: tuple[int, int] | None = None
    calibration_dir: Path | None = None
    num_calibration: int = 32
    calibration_size: int = 64
    verify_dir: Path | None = None
    verify_images: tuple[tuple[str, "np.ndarray"], ...] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    verify_max_side: int | None = MAX_LR_SIDE
    tolerance: float = FP32_TOLERANCE
    max_psnr_drop: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    latency_runs: int = 5
    web_runtime: Path | None = None
    web_jpeg_weights: str | None = None

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("formats", _names(self.formats, FORMATS, "formats", "--formats"))
        put("quantize", _names(self.quantize, QUANTIZATIONS, "quantize", "--quantize"))
        if self.tile is not None:
            if isinstance(self.tile, str):
                raise TypeError(f"ExportOptions.tile: (H, W) or None, got the string {self.tile!r}; "
                                "a front end parses strings with ExportOptions.parse")
            put("tile", parse_tile(self.tile))
        if self.tile and "tflite" not in self.formats:
            raise ExportUsageError("--tile applies to TFLite exports only: add tflite to --formats")
        for q in self.quantize:
            if not any(q in SUPPORTED[f] for f in self.formats):
                supported = "; ".join(f + ": " + "/".join(SUPPORTED[f]) for f in self.formats)
                raise ExportUsageError(f"--quantize {q}: no requested format supports it ({supported})")
        for field in ("calibration_dir", "verify_dir"):
            if getattr(self, field) is not None:
                put(field, Path(getattr(self, field)))
        if self.web_jpeg_weights is not None:
            if not isinstance(self.web_jpeg_weights, (str, os.PathLike)) or not os.fspath(self.web_jpeg_weights):
                raise TypeError("ExportOptions.web_jpeg_weights: a shipped model's name or a weights file, "
                                f"or None; got {self.web_jpeg_weights!r}")
            put("web_jpeg_weights", os.fspath(self.web_jpeg_weights))
            if "web" not in self.formats:
                raise ExportUsageError("--web_jpeg_model applies to the web page only: add web to --formats")
        if self.verify_images is not None:
            put("verify_images", tuple((str(n), im) for n, im in self.verify_images))
        if self.scale is not None and int(self.scale) < 1:
            raise ExportUsageError(f"--scale must be >= 1, got {self.scale}")
        if not (self.tolerance > 0):
            raise ExportUsageError(f"--tolerance must be > 0, got {self.tolerance}")
        if int(self.max_pixels) < 1:
            raise ExportUsageError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.verify_max_side is not None and int(self.verify_max_side) < 1:
            raise ExportUsageError(f"--verify-max-side must be >= 1 (None: whole image), got {self.verify_max_side}")
        if int(self.num_calibration) < 1 or int(self.calibration_size) < 4:
            raise ExportUsageError("--calibration-samples must be >= 1 and --calibration-size >= 4")
        if int(self.latency_runs) < 0:
            raise ExportUsageError("--latency-runs must be >= 0")
        for field in ("scale", "max_pixels", "verify_max_side", "num_calibration", "calibration_size",
                      "latency_runs"):
            if getattr(self, field) is not None:
                put(field, int(getattr(self, field)))

    @property
    def jobs(self) -> tuple[tuple[str, str], ...]:
        """``(format, quantization)`` pairs to build, in build order."""
        return tuple((f, q) for f in self.formats for q in self.quantize if q in SUPPORTED[f])

    @property
    def skipped(self) -> dict[str, list[str]]:
        """Per format, the requested quantizations it does not support."""
        return {f: [q for q in self.quantize if q not in SUPPORTED[f]] for f in self.formats}

    @classmethod
    def parse(cls, **values) -> "ExportOptions":
        """Options from a front end's values: ``formats``/``quantize`` as ``"a,b"`` text or a
        sequence, ``tile`` as ``"H,W"``/``"N"``/``""``/None or a pair, ``verify_max_side`` 0 for
        None; the other fields as typed. Unknown names are a ``TypeError``."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"ExportOptions.parse: unknown option(s) {', '.join(sorted(unknown))}")
        if "formats" in values:
            values["formats"] = parse_list(values["formats"], FORMATS, "--formats")
        if "quantize" in values:
            values["quantize"] = parse_list(values["quantize"], QUANTIZATIONS, "--quantize")
        if "tile" in values:
            values["tile"] = parse_tile(values["tile"])
        if values.get("verify_max_side") == 0:
            values["verify_max_side"] = None
        return cls(**values)


def variant_label(quant: str) -> str:
    """File-name label of a quantization variant ("none" → "fp32")."""
    return "fp32" if quant == "none" else quant


def artifact_name(config: "ModelConfig", scale: int) -> str:
    """Base name of one exported model, e.g. ``edsr_baseline_x2``."""
    if config.preset:
        base = config.preset
    else:
        base = f"{config.arch}_b{config.n_resblocks}_f{config.n_feats}"
    return f"{base}_x{int(scale)}"


def inference_model(model: "keras.Model", name: str = "edsr_inference") -> "keras.Model":
    """``model`` followed by a clip to [0, 255]: the graph every export carries.

    Clipping inside the exported graph makes each runtime return valid pixel
    values, and gives int8 exports a known output range.
    """
    import keras

    inputs = keras.Input(shape=(None, None, 3), name="images", dtype="float32")
    outputs = keras.ops.clip(model(inputs), 0.0, 255.0)
    return keras.Model(inputs, outputs, name=name)


def export_conversion_savedmodel(
    model: "keras.Model", path: str | os.PathLike, input_shape: Sequence[int | None] | None = None
) -> Path:
    """Writes the SavedModel that TFLite and tf2onnx convert from (``model.export``).

    With Keras 3, ``TFLiteConverter.from_keras_model`` and ``tf2onnx.convert.from_keras``
    are broken; converting the SavedModel of ``model.export`` is the supported route.
    ``input_shape`` (e.g. ``(1, 64, 64, 3)``) fixes the input shape for tile exports.
    """
    import tensorflow as tf

    path = Path(path)
    shape = list(input_shape) if input_shape is not None else [None, None, None, 3]
    model.export(
        str(path),
        format="tf_saved_model",
        verbose=False,
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")],
    )
    return path


def dir_size(path: str | os.PathLike) -> int:
    """Total bytes of a file or of every file below a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def is_disk_full(e: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, as an ``OSError`` or a TensorFlow error message."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left on device" in text or "Disk quota exceeded" in text


# --------------------------------------------------------------------------------------
# The output folder: staging, stale-staging cleanup, ownership, atomic replacement
# --------------------------------------------------------------------------------------

#: Top-level entries of an export folder that belong to the export (everything else in
#: ``--out``, e.g. a user's notes, is carried over unchanged when an export is replaced).
REPORT_FILES = ("report.json", "report.md")


def export_entries() -> set[str]:
    """Names of the top-level entries an export owns (format folders and the reports)."""
    return set(FORMATS) | {"web"} | set(REPORT_FILES)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")[:40] or "host"


_STAGING_RE = re.compile(r"^(?P<host>.+)-(?P<pid>[0-9]+)-(?P<token>[0-9a-f]{8})$")


def staging_dir(out: Path, kind: str = "partial") -> Path:
    """A new empty folder ``.<out>.<kind>-<host>-<pid>-<random>`` next to ``out`` (0o755 & ~umask).

    The host and process id in the name let a later run remove it if this process
    is killed (:func:`clean_stale`). Where ``out`` is a mount point (a container volume:
    it cannot be renamed, EBUSY) or its parent is not writable, the folder is made inside
    an existing ``out`` instead, and :func:`install` swaps entries there (:func:`swap_entries`).
    """
    inside = out.is_dir() and not out.is_symlink() and (
        os.path.ismount(out) or not os.access(out.parent, os.W_OK | os.X_OK))
    for _ in range(100):
        path = (out if inside else out.parent) / \
            f".{out.name}.{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            return make_dir(path)
        except FileExistsError:
            continue
        except OSError as e:  # e.g. EACCES/EROFS on the parent, which os.access may not tell
            if inside or not out.is_dir() or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            inside = True
    raise ExportError(f"--out {out}: cannot create a staging folder next to it")


def stale_folders(out: Path) -> list[tuple[Path, str]]:
    """Staging (``partial``) and swapped-out (``old``) folders of ``out`` whose owner process,
    on this host, is dead: ``[(path, kind)]``. Folders of other hosts are never listed."""
    if not out.parent.is_dir():
        return []
    found = []
    places = [out.parent] + ([out] if out.is_dir() and not out.is_symlink() else [])
    for kind in ("partial", "old"):
        prefix = f".{out.name}.{kind}-"
        for p in (q for place in places for q in place.iterdir()):
            if not p.name.startswith(prefix) or p.is_symlink() or not p.is_dir():
                continue
            m = _STAGING_RE.match(p.name[len(prefix):])
            if m and m["host"] == _host() and not pid_alive(int(m["pid"])):
                found.append((p, kind))
    return sorted(found)


def clean_stale(out: Path, say: Progress | None = None) -> list[Path]:
    """Removes what killed exports to ``out`` left behind; returns the removed folders.

    A ``partial`` folder is a staging folder (or, after the final swap, the previous
    export on its way out): deleted. An ``old`` folder is a previous export moved
    aside by the fallback swap: put back if ``out`` is missing, else deleted.
    """
    removed = []
    for path, kind in stale_folders(out):
        if kind == "old" and not os.path.lexists(out):
            os.rename(path, out)
            if say:
                say(f"restored {out} from {path.name}, left by an interrupted export")
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
            if say:
                say(f"removed {path.name}, left by an interrupted export (process gone)")
    return removed


def savedmodel_versions(model_dir: Path) -> list[int]:
    """Numeric version folders of ``model_dir`` that hold a SavedModel, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in model_dir.iterdir()
        if p.name.isdigit() and p.is_dir()
        and ((p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file())
    )


def foreign_export(out: Path, config: "ModelConfig") -> str | None:
    """Describes the export of *another* model in ``out``, or None (empty, this model's, none).

    Another model: report.json's config differs from ``config`` (or report.json is
    unreadable); without a report.json, an artifact whose name is not one of
    ``config``'s (:func:`artifact_name` for each of its scales).
    """
    from edsr_tf.models import ModelConfig

    if not out.is_dir():
        return None
    report = out / "report.json"
    if report.exists():
        try:
            old = json.loads(report.read_text())
            other = ModelConfig.from_dict(old["config"])
        except Exception:
            return "its report.json is unreadable"
        if other != config:
            models = old.get("models") or []
            return f"{', '.join(map(str, models)) or 'a model'} with config {other.to_json()}"
        return None
    names = {artifact_name(config, s) for s in config.scales}
    sm = out / "savedmodel"
    if sm.is_dir():
        for p in sorted(sm.iterdir()):
            if p.name not in names and not p.name.startswith("."):
                return f"savedmodel/{p.name}"
    for fmt in ("tflite", "onnx", "opencv"):
        folder = out / fmt
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if not p.name.startswith(".") and not any(p.name.startswith((n + "_", n + ".")) for n in names):
                    return f"{fmt}/{p.name}"
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry(src: Path, dst: Path) -> None:
    """Puts ``src`` (file, folder or symlink) at ``dst`` as hard links (copies where linking fails)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(staging: Path, out: Path) -> None:
    """Makes ``staging`` become ``out`` in one step; the previous ``out`` is deleted.

    Uses an atomic exchange where the system has one; else renames ``out`` aside to
    ``.<out>.old-...`` first (put back if the second rename fails, or by
    :func:`clean_stale` after a crash in between). A ``staging`` inside ``out``
    (:func:`staging_dir`) is swapped in entry by entry (:func:`swap_entries`).
    """
    if staging.parent == out:
        swap_entries(staging, out)
        return
    if not os.path.lexists(out):
        os.rename(staging, out)
        return
    if _renameat2_exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # holds the previous export now
        return
    old = staging_dir(out, "old")
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def swap_entries(staging: Path, out: Path) -> None:
    """Moves the export in ``staging`` (a folder inside ``out``) into ``out`` entry by entry.

    For an ``out`` that cannot itself be renamed (a mount point) or whose parent is read-only:
    the export's previous entries (:func:`export_entries`) go into ``staging`` first, then
    each new entry is renamed into place (one rename each; the reports last, so a report
    never describes a half-installed export), and ``staging`` with the old entries is deleted.
    """
    owned = export_entries()
    trash = staging / f".old-{secrets.token_hex(4)}"
    make_dir(trash)
    for entry in sorted(out.iterdir()):
        if entry.name in owned:
            os.rename(entry, trash / entry.name)
    reports = set(REPORT_FILES)
    for entry in sorted(staging.iterdir(), key=lambda e: (e.name in reports, e.name)):
        if entry != trash:
            os.rename(entry, out / entry.name)
    shutil.rmtree(staging, ignore_errors=True)


def install(staging: Path, out: Path, *, keep_versions: bool = True) -> None:
    """Replaces ``out`` by the verified export in ``staging`` as one unit.

    What ``out`` holds besides an export (files a user put there) is carried over, and
    so are its earlier SavedModel versions (``savedmodel/<name>/<n>/``) unless
    ``keep_versions`` is False (``--overwrite`` of another model's export). Carried
    files are hard links, so this costs no copy. Then ``staging`` takes the place of
    ``out`` in one rename; the mode of an existing ``out`` is kept.
    """
    if out.is_dir():
        owned = export_entries()
        for entry in sorted(out.iterdir()):
            if entry == staging:
                continue
            if entry.name not in owned:
                if staging.parent == out:
                    continue  # swapped in place: the user's files stay where they are
                if not os.path.lexists(staging / entry.name):
                    _carry(entry, staging / entry.name)
                continue
            if entry.name == "savedmodel" and keep_versions and entry.is_dir() and not entry.is_symlink():
                for model_dir in sorted(entry.iterdir()):
                    for v in savedmodel_versions(model_dir):
                        dst = staging / "savedmodel" / model_dir.name / str(v)
                        if not os.path.lexists(dst):
                            _carry(model_dir / str(v), dst)
        if staging.parent != out:
            os.chmod(staging, stat.S_IMODE(out.stat().st_mode))
    swap_in(staging, out)
