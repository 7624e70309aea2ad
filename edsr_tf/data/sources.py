"""Where training/evaluation images come from: DIV2K folders, tensorflow-datasets, any HR folder.

Three kinds of :class:`DataSource`:

``div2k``
    DIV2K's own layout under ``root`` (the folder holding ``DIV2K_train_HR``; the parent
    holding ``DIV2K/`` is accepted too, as EDSR-PyTorch's ``--dir_data``)::

        DIV2K_train_HR/0001.png
        DIV2K_train_LR_bicubic/X2/0001x2.png      (track="bicubic")
        DIV2K_train_LR_unknown/X2/0001x2.png      (track="unknown")
        DIV2K_valid_HR/0801.png, DIV2K_valid_LR_bicubic/X2/0801x2.png, ...

    ``data_range`` follows EDSR-PyTorch's ``--data_range``: ``"1-800/801-900"`` means
    training images 1..800 and evaluation images 801..900; a single range (``"1-800"``)
    serves both. Images are selected by their DIV2K number (the file stem), searched in
    both the ``train`` and ``valid`` folders, which equals the reference's slicing of the
    sorted file list when all 900 images sit in ``DIV2K_train_HR`` (its expectation) and
    also works with DIV2K's official split into ``train``/``valid`` folders or a partial copy.

``folder``
    Any folder of HR images (``edsr_tf.images.IMAGE_SUFFIXES``), subfolders included, or
    several such folders separated by commas (``"T91,BSD200"``), sorted by path. Without
    ``lr_root`` the LR images are made with our MATLAB-compatible ``imresize`` (see
    :mod:`edsr_tf.data.pipeline`); with ``lr_root`` LR files are read from
    ``lr_root/X{s}/{stem}x{s}.png`` (EDSR-PyTorch's benchmark layout, also what
    ``datasets/prepare.py`` writes). ``data_range`` (optional) slices the sorted list,
    1-based and inclusive, as the reference does.

``tfds``
    ``tensorflow-datasets`` ``div2k/{track}_x{s}`` (``train`` = 0001-0800,
    ``validation`` = 0801-0900), read from ``tfds_data_dir``. It is never downloaded unless
    ``tfds_download=True``; when the official zips are in ``tfds_manual_dir`` (default
    ``<data_dir>/downloads/manual``) the dataset is prepared from them without network.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from edsr_tf.images import IMAGE_SUFFIXES as HR_SUFFIXES

TRACKS: tuple[str, ...] = ("bicubic", "unknown")
KINDS: tuple[str, ...] = ("div2k", "tfds", "folder")
DIV2K_DEFAULT_RANGE = "1-800/801-900"
#: tfds ``div2k`` configs and the scale each one is made for.
TFDS_DIV2K_CONFIGS: dict[str, int] = {
    "bicubic_x2": 2, "bicubic_x3": 3, "bicubic_x4": 4, "bicubic_x8": 8,
    "unknown_x2": 2, "unknown_x3": 3, "unknown_x4": 4,
    "realistic_mild_x4": 4, "realistic_difficult_x4": 4, "realistic_wild_x4": 4,
}


class DataError(ValueError):
    """A data directory, file, range or dataset name is missing or wrong (message says which)."""


class DataWarning(UserWarning):
    """Data that is used only in part (e.g. training images smaller than a patch, skipped)."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Describes where (LR, HR) pairs come from; see the module docstring for the layouts."""

    kind: str = "div2k"
    root: str | None = None
    track: str = "bicubic"
    data_range: str | None = None
    tfds_name: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None
    #: folder sources only: read LR from ``lr_root/X{s}/{stem}x{s}.png`` instead of making it.
    lr_root: str | None = None
    #: tfds only: allow tensorflow-datasets to download the DIV2K zips (several GB).
    tfds_download: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown data source kind {self.kind!r}; expected one of {KINDS}")
        if self.track not in TRACKS:
            raise DataError(f"unknown DIV2K track {self.track!r}; expected one of {TRACKS}")
        if self.kind in ("div2k", "folder") and not self.root:
            raise DataError(f"a {self.kind!r} data source needs a root directory")
        if self.data_range is not None:
            parse_data_range(self.data_range)

    # Convenience constructors (the common cases read better at call sites).
    @classmethod
    def div2k(cls, root: str | os.PathLike, *, track: str = "bicubic",
              data_range: str | None = None) -> DataSource:
        """DIV2K folder layout under ``root``."""
        return cls(kind="div2k", root=os.fspath(root), track=track, data_range=data_range)

    @classmethod
    def folder(cls, root: str | os.PathLike, *, lr_root: str | os.PathLike | None = None,
               data_range: str | None = None) -> DataSource:
        """A folder of HR images (LR generated with imresize unless ``lr_root`` is given)."""
        return cls(kind="folder", root=os.fspath(root),
                   lr_root=None if lr_root is None else os.fspath(lr_root), data_range=data_range)

    @classmethod
    def tfds(cls, name: str | None = None, *, data_dir: str | os.PathLike | None = None,
             manual_dir: str | os.PathLike | None = None, track: str = "bicubic",
             data_range: str | None = None, download: bool = False) -> DataSource:
        """tensorflow-datasets DIV2K (``name`` e.g. ``"div2k/bicubic_x2"``; default from track)."""
        return cls(kind="tfds", tfds_name=name, track=track, data_range=data_range,
                   tfds_data_dir=None if data_dir is None else os.fspath(data_dir),
                   tfds_manual_dir=None if manual_dir is None else os.fspath(manual_dir),
                   tfds_download=download)


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """One HR image file and, where it exists as a file, its LR counterpart for one scale."""

    name: str
    hr_path: Path
    lr_path: Path | None


_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_data_range(text: str) -> list[tuple[int, int]]:
    """Parses ``"a-b"`` or ``"a-b/c-d"`` (1-based, inclusive) into ``[(a, b), ...]``."""
    parts = str(text).split("/")
    if len(parts) > 2:
        raise DataError(f"bad data_range {text!r}: expected 'BEGIN-END' or 'BEGIN-END/BEGIN-END'")
    ranges = []
    for part in parts:
        m = _RANGE_RE.match(part)
        if not m:
            raise DataError(f"bad data_range {text!r}: expected 'BEGIN-END' or 'BEGIN-END/BEGIN-END' "
                            "with integers, e.g. '1-800/801-900'")
        begin, end = int(m.group(1)), int(m.group(2))
        if begin < 1 or end < begin:
            raise DataError(f"bad data_range {text!r}: need 1 <= BEGIN <= END, got {begin}-{end}")
        ranges.append((begin, end))
    return ranges


def select_range(data_range: str, train: bool) -> tuple[int, int]:
    """The reference's choice: training uses the first range, evaluation the second if any."""
    ranges = parse_data_range(data_range)
    return ranges[0] if train or len(ranges) == 1 else ranges[1]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} directory not found: {path}")
    return path


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in HR_SUFFIXES and not p.name.startswith("."))


def div2k_root(root: str | os.PathLike) -> Path:
    """The folder that holds ``DIV2K_train_HR`` / ``DIV2K_valid_HR`` (``root`` or ``root/DIV2K``)."""
    base = Path(root).expanduser()
    _require_dir(base, "DIV2K root")
    for cand in (base, base / "DIV2K"):
        if (cand / "DIV2K_train_HR").is_dir() or (cand / "DIV2K_valid_HR").is_dir():
            return cand
    raise DataError(f"{base}: no DIV2K_train_HR or DIV2K_valid_HR folder in it (nor in {base / 'DIV2K'}); "
                    "expected DIV2K's layout, e.g. DIV2K_train_HR/0001.png and "
                    "DIV2K_train_LR_bicubic/X2/0001x2.png (datasets/download_div2k.py fetches it)")


def div2k_pairs(source: DataSource, scale: int, *, train: bool) -> list[ImagePair]:
    """HR/LR file pairs of a DIV2K-layout source for ``scale`` in its train or eval range."""
    base = div2k_root(source.root)
    begin, end = select_range(source.data_range or DIV2K_DEFAULT_RANGE, train)
    found: dict[int, ImagePair] = {}
    for split in ("train", "valid"):
        hr_dir = base / f"DIV2K_{split}_HR"
        if not hr_dir.is_dir():
            continue
        lr_dir = base / f"DIV2K_{split}_LR_{source.track}" / f"X{scale}"
        for hr in _list_images(hr_dir):
            if not hr.stem.isdigit() or not begin <= int(hr.stem) <= end or int(hr.stem) in found:
                continue
            lr = lr_dir / f"{hr.stem}x{scale}.png"
            if not lr.is_file():
                raise DataError(f"missing LR image {lr} for HR image {hr} "
                                f"(track {source.track!r}, scale x{scale})")
            found[int(hr.stem)] = ImagePair(hr.stem, hr, lr)
    if not found:
        raise DataError(f"{base}: no DIV2K HR images numbered {begin}-{end} in DIV2K_train_HR or "
                        f"DIV2K_valid_HR (data_range {source.data_range or DIV2K_DEFAULT_RANGE!r})")
    return [found[k] for k in sorted(found)]


def folder_roots(source: DataSource) -> list[Path]:
    """The folders of a folder source: ``root`` may list several, separated by commas."""
    roots = [Path(r.strip()).expanduser() for r in str(source.root).split(",") if r.strip()]
    if not roots:
        raise DataError(f"folder data source {source.root!r} names no directory")
    return [_require_dir(r, "HR image") for r in roots]


def _tree_images(root: Path) -> list[Path]:
    """Images in ``root`` and all its subfolders (hidden files and folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames
                     if Path(f).suffix.lower() in HR_SUFFIXES and not f.startswith("."))
    return sorted(found)


def folder_pairs(source: DataSource, scale: int, *, train: bool) -> list[ImagePair]:
    """HR files of a folder source (LR path only where ``lr_root`` is set).

    Each root is searched with its subfolders; images are ordered by root (as given) and
    then by path, and named by their path relative to their root (without suffix).
    """
    roots = folder_roots(source)
    named: list[tuple[str, Path]] = []
    for root in roots:
        for path in _tree_images(root):
            named.append((path.relative_to(root).with_suffix("").as_posix(), path))
    if not named:
        where = ", ".join(map(str, roots))
        raise DataError(f"HR image directory {where} has no images (expected {', '.join(HR_SUFFIXES)})")
    if source.data_range is not None:
        begin, end = select_range(source.data_range, train)
        total = len(named)
        named = named[begin - 1:end]
        if not named:
            raise DataError(f"HR image directory {source.root}: data_range {source.data_range!r} "
                            f"selects no image (it has {total})")
    pairs = []
    lr_dir = None
    if source.lr_root is not None:
        lr_dir = _require_dir(Path(source.lr_root).expanduser() / f"X{scale}", "LR image")
    for name, hr in named:
        lr = None
        if lr_dir is not None:
            lr = lr_dir / f"{hr.stem}x{scale}.png"
            if not lr.is_file():
                raise DataError(f"missing LR image {lr} for HR image {hr} (scale x{scale})")
        pairs.append(ImagePair(name, hr, lr))
    return pairs


def image_pairs(source: DataSource, scale: int, *, train: bool) -> list[ImagePair]:
    """File pairs of a ``div2k`` or ``folder`` source."""
    if source.kind == "div2k":
        return div2k_pairs(source, scale, train=train)
    if source.kind == "folder":
        return folder_pairs(source, scale, train=train)
    raise DataError(f"data source kind {source.kind!r} has no image files (use the tfds loader)")


# --------------------------------------------------------------------------- tfds

def tfds_name_for(source: DataSource, scale: int) -> str:
    """``div2k/<config>`` for ``scale``; checks that a given name fits the scale."""
    name = source.tfds_name or f"div2k/{source.track}_x{scale}"
    dataset, _, config = name.partition("/")
    if dataset != "div2k" or config not in TFDS_DIV2K_CONFIGS:
        raise DataError(f"unknown tfds name {name!r}; expected div2k/<config> with config in "
                        f"{sorted(TFDS_DIV2K_CONFIGS)}")
    if TFDS_DIV2K_CONFIGS[config] != scale:
        raise DataError(f"tfds dataset {name!r} is for x{TFDS_DIV2K_CONFIGS[config]}, not x{scale}; "
                        "leave tfds_name unset to pick div2k/<track>_x<scale> per scale")
    return name


def tfds_split(source: DataSource, *, train: bool) -> str:
    """tfds split for the source's data_range: 1-800 → train, 801-900 → validation (sliced)."""
    begin, end = select_range(source.data_range or DIV2K_DEFAULT_RANGE, train)
    if end <= 800:
        return f"train[{begin - 1}:{end}]"
    if begin > 800 and end <= 900:
        return f"validation[{begin - 801}:{end - 800}]"
    raise DataError(f"data_range {source.data_range!r}: with tfds each range must lie within 1-800 "
                    "(split train) or 801-900 (split validation)")


def tfds_builder(source: DataSource, scale: int) -> Any:
    """A prepared tfds DIV2K builder; prepares it from manual zips, downloads only if allowed."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a runtime requirement
        raise DataError("the tfds data source needs tensorflow-datasets: pip install tensorflow-datasets") from e
    name = tfds_name_for(source, scale)
    data_dir = Path(source.tfds_data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir))
    except Exception as e:  # tfds raises several types for a bad name/version
        raise DataError(f"tfds could not make a builder for {name!r}: {e}") from e
    if builder.is_prepared():
        return builder
    manual = Path(source.tfds_manual_dir).expanduser() if source.tfds_manual_dir else data_dir / "downloads" / "manual"
    urls = builder.builder_config.download_urls
    zips = [u.rsplit("/", 1)[-1] for u in urls.values()]
    missing = [z for z in zips if not (manual / z).is_file()]
    if missing and not source.tfds_download:
        raise DataError(
            f"tfds dataset {name!r} is not prepared in {data_dir} and the DIV2K zips are not in "
            f"{manual}: place {', '.join(missing)} in {manual} (datasets/download_div2k.py "
            f"fetches them), or allow the download with tfds_download=True")
    from tensorflow_datasets.core.download import DownloadConfig

    try:
        builder.download_and_prepare(download_config=DownloadConfig(manual_dir=os.fspath(manual)))
    except ModuleNotFoundError as e:  # tfds 4.9 prepares only with importlib-resources installed
        raise DataError(f"preparing tfds dataset {name!r} needs the Python module {e.name!r}: "
                        f"pip install {str(e.name).replace('_', '-')}") from e
    except Exception as e:
        raise DataError(f"preparing tfds dataset {name!r} in {data_dir} failed: {e}") from e
    return builder
