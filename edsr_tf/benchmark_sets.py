"""Finds the images of SR benchmark sets in the layouts people download them in.

Supported layouts, under ``DIR/<Set>`` or ``DIR/benchmark/<Set>`` (``<Set>``
matched case-insensitively, with aliases such as B100 = BSD100):

- ``edsr``: EDSR-PyTorch's ``<Set>/HR/<name>.png`` +
  ``<Set>/LR_bicubic/X<s>/<name>x<s>.png`` (HR not cropped);
- ``srf``: the per-scale release ``<Set>/image_SRF_<s>/<name>_HR.png`` + ``<name>_LR.png``;
- ``hr_only``: just HR images in ``<Set>/`` (LR made with MATLAB-bicubic ``imresize``);
- ``div2k``: ``DIR/DIV2K/DIV2K_valid_HR/*.png`` + ``DIV2K_valid_LR_bicubic/X<s>/<name>x<s>.png``,
  falling back to the ``train`` split when ``valid`` is absent (reported as ``DIV2K-train``).

An LR file that is missing is returned as ``None``: the evaluator makes it from
the HR with :func:`edsr_tf.imresize.imresize`, as the official LR sets were made.
An LR file that matches no HR image (misnamed) is listed in ``BenchmarkSet.unmatched_lr``,
and :func:`pair_problems` reports it, as it does an LR whose size is not
``floor(HR / scale)`` in both dimensions (the rule DIV2K and the benchmark sets follow).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple, Sequence

from edsr_tf.images import IMAGE_SUFFIXES, ImageReadError, probe_image

#: Lower-case dataset name → folder names to try, in order.
ALIASES: dict[str, tuple[str, ...]] = {
    "b100": ("B100", "BSD100", "BSDS100"),
    "bsd100": ("BSD100", "B100", "BSDS100"),
    "bsds100": ("BSDS100", "BSD100", "B100"),
    "urban100": ("Urban100",),
    "manga109": ("Manga109",),
    "set5": ("Set5",),
    "set14": ("Set14",),
}


class DatasetNotFoundError(ValueError):
    """A requested benchmark set (or the dataset directory) is missing or empty."""


class ImagePair(NamedTuple):
    """One test image: its name, HR file and LR file (``None`` = make it with imresize)."""

    name: str
    hr: Path
    lr: Path | None


@dataclasses.dataclass
class BenchmarkSet:
    """A located benchmark set for one scale."""

    name: str  # as its folder (e.g. "BSD100"), or "DIV2K" / "DIV2K-train"
    root: Path
    layout: str  # "edsr", "srf", "hr_only" or "div2k"
    scale: int
    pairs: list[ImagePair]
    #: LR image files that match no HR image (misnamed, or another scale's): an error to report.
    unmatched_lr: list[Path] = dataclasses.field(default_factory=list)
    #: How LR files must be named, for the message about ``unmatched_lr``.
    lr_naming: str = ""

    @property
    def div2k(self) -> bool:
        """DIV2K is scored on RGB with ``scale + 6`` shaved, benchmarks on Y with ``scale``."""
        return self.layout == "div2k"

    @property
    def missing_lr(self) -> int:
        """How many LR images must be generated."""
        return sum(p.lr is None for p in self.pairs)


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith(".")
    )


def _child(folder: Path, name: str) -> Path | None:
    """``folder/name`` matched case-insensitively (exact spelling first)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    if not folder.is_dir():
        return None
    for p in sorted(folder.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def _lr_file(lr_dir: Path | None, stem: str, scale: int) -> Path | None:
    if lr_dir is None:
        return None
    for base in (f"{stem}x{scale}", f"{stem}X{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            for s in (suffix, suffix.upper()):
                p = lr_dir / f"{base}{s}"
                if p.is_file():
                    return p
    return None


def _unmatched(lr_dir: Path | None, pairs: Sequence[ImagePair]) -> list[Path]:
    """Image files of ``lr_dir`` that no pair uses."""
    if lr_dir is None:
        return []
    used = {p.lr.resolve() for p in pairs if p.lr is not None}
    return [p for p in _images(lr_dir) if p.resolve() not in used]


def _scan_set(root: Path, name: str, scale: int) -> BenchmarkSet:
    hr_dir = _child(root, "HR")
    if hr_dir is not None:
        lr_parent = _child(root, "LR_bicubic")
        lr_dir = _child(lr_parent, f"X{scale}") if lr_parent is not None else None
        pairs = [ImagePair(p.stem, p, _lr_file(lr_dir, p.stem, scale)) for p in _images(hr_dir)]
        if not pairs:
            raise DatasetNotFoundError(f"{hr_dir}: no images (expected {', '.join(IMAGE_SUFFIXES)})")
        return BenchmarkSet(name, root, "edsr", scale, pairs, _unmatched(lr_dir, pairs),
                            f"<name>x{scale}.png for {hr_dir.name}/<name>.png")
    srf = _child(root, f"image_SRF_{scale}")
    if srf is not None:
        pairs = []
        for p in _images(srf):
            if not p.stem.endswith("_HR"):
                continue
            stem = p.stem[: -len("_HR")]
            lr = p.with_name(f"{stem}_LR{p.suffix}")
            pairs.append(ImagePair(stem, p, lr if lr.is_file() else None))
        if not pairs:
            raise DatasetNotFoundError(f"{srf}: no *_HR images")
        lone = [p for p in _unmatched(srf, pairs) if p.stem.endswith("_LR")]
        return BenchmarkSet(name, root, "srf", scale, pairs, lone,
                            "<name>_LR.png next to <name>_HR.png")
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("image_SRF_"))
    if others:
        raise DatasetNotFoundError(
            f"{root}: no image_SRF_{scale} folder for x{scale} (has {', '.join(others)})"
        )
    pairs = [ImagePair(p.stem, p, None) for p in _images(root)]
    if not pairs:
        raise DatasetNotFoundError(
            f"{root}: no images found (expected HR/ + LR_bicubic/X{scale}/, image_SRF_{scale}/, "
            "or HR image files)"
        )
    return BenchmarkSet(name, root, "hr_only", scale, pairs)


def _find_div2k(dataset_dir: Path, scale: int) -> BenchmarkSet:
    roots = [r for r in (_child(dataset_dir, "DIV2K"), dataset_dir) if r is not None]
    for root in roots:
        for split in ("valid", "train"):
            hr_dir = _child(root, f"DIV2K_{split}_HR")
            if hr_dir is None:
                continue
            lr_parent = _child(root, f"DIV2K_{split}_LR_bicubic")
            lr_dir = _child(lr_parent, f"X{scale}") if lr_parent is not None else None
            pairs = [ImagePair(p.stem, p, _lr_file(lr_dir, p.stem, scale)) for p in _images(hr_dir)]
            if not pairs:
                raise DatasetNotFoundError(f"{hr_dir}: no images")
            name = "DIV2K" if split == "valid" else "DIV2K-train"
            return BenchmarkSet(name, root, "div2k", scale, pairs, _unmatched(lr_dir, pairs),
                                f"<name>x{scale}.png for {hr_dir.name}/<name>.png")
    raise DatasetNotFoundError(
        f"DIV2K not found in {dataset_dir}: expected {dataset_dir}/DIV2K/DIV2K_valid_HR "
        "(or DIV2K_train_HR) with DIV2K_*_LR_bicubic/X<s>"
    )


def find_dataset(dataset_dir: str | os.PathLike, name: str, scale: int) -> BenchmarkSet:
    """Locates benchmark set ``name`` for ``scale`` under ``dataset_dir``.

    Raises :class:`DatasetNotFoundError` naming the directory and what was looked for, or
    the folder that cannot be listed (no permission: one line, never a traceback).
    """
    try:
        return _find_dataset(Path(dataset_dir), name, scale)
    except OSError as e:
        where = e.filename if e.filename is not None else dataset_dir
        raise DatasetNotFoundError(f"{where}: cannot list the folder ({e.strerror or e})") from None


def _find_dataset(dataset_dir: Path, name: str, scale: int) -> BenchmarkSet:
    if not dataset_dir.is_dir():
        raise DatasetNotFoundError(f"{dataset_dir}: dataset directory does not exist")
    scale = int(scale)
    if name.lower() == "div2k":
        return _find_div2k(dataset_dir, scale)
    candidates = ALIASES.get(name.lower(), (name,))
    if name not in candidates:
        candidates = (name,) + candidates
    bases = [dataset_dir] + [b for b in (_child(dataset_dir, "benchmark"),) if b is not None]
    for base in bases:
        for folder in candidates:
            root = _child(base, folder)
            if root is not None:
                return _scan_set(root, root.name, scale)
    looked = ", ".join(str(b / c) for b in bases for c in dict.fromkeys(candidates))
    raise DatasetNotFoundError(f"dataset {name!r} not found: looked for {looked}")


def find_datasets(dataset_dir: str | os.PathLike, names: Sequence[str], scale: int) -> list[BenchmarkSet]:
    """:func:`find_dataset` for each name (all are located before any is evaluated)."""
    return [find_dataset(dataset_dir, n, scale) for n in names]


def expected_lr_size(hr_width: int, hr_height: int, scale: int) -> tuple[int, int]:
    """The LR size of an HR image: ``floor(HR / scale)`` in each dimension (width, height).

    What MATLAB's ``imresize(hr, 1/s)`` gives after cropping HR to a multiple of ``s``, and
    what DIV2K and the benchmark sets (either layout) satisfy.
    """
    return hr_width // scale, hr_height // scale


def lr_size_problem(hr: Path, hr_size: tuple[int, int], lr: Path, lr_size: tuple[int, int],
                    scale: int) -> str | None:
    """A one-line error naming ``lr`` and the sizes when ``lr_size`` (w, h) is not floor(HR / scale)."""
    want = expected_lr_size(*hr_size, scale)
    if tuple(lr_size) == want:
        return None
    return (f"{lr}: LR is {lr_size[0]}x{lr_size[1]}, expected {want[0]}x{want[1]} = HR {hr.name} "
            f"{hr_size[0]}x{hr_size[1]} / {scale}: wrong scale, cropped or mismatched files")


def pair_problems(bset: BenchmarkSet, *, limit: int | None = None,
                  max_pixels: int | None = None) -> list[str]:
    """Every problem that would spoil ``bset``'s scores, from file headers only (fast).

    LR files that match no HR image, unreadable or oversized (``max_pixels``) images, LR
    sizes other than floor(HR / scale), and HR images too small to score (smaller than
    :func:`edsr_tf.metrics.smallest_scored_side`). ``limit``: check only the first ``limit``
    pairs (as evaluated). Empty list: the set is fine.
    """
    from edsr_tf.metrics import smallest_scored_side

    side = smallest_scored_side(bset.scale, div2k=bset.div2k)
    problems = [
        f"{p}: LR file matches no HR image of {bset.name} (expected {bset.lr_naming}); rename or "
        "remove it" for p in bset.unmatched_lr
    ]
    for pair in (bset.pairs[:limit] if limit else bset.pairs):
        try:
            hr = probe_image(pair.hr, max_pixels=max_pixels)
            lr = None if pair.lr is None else probe_image(pair.lr, max_pixels=max_pixels)
        except ImageReadError as e:
            problems.append(str(e))
            continue
        if hr.width < side or hr.height < side:
            problems.append(f"{pair.hr}: HR {hr.width}x{hr.height} is too small to score at x{bset.scale} "
                            f"(at least {side}x{side}: the scored area, shaved at the border, must hold "
                            "the SSIM window)")
            continue
        if lr is not None:
            problem = lr_size_problem(pair.hr, (hr.width, hr.height), pair.lr, (lr.width, lr.height),
                                      bset.scale)
            if problem:
                problems.append(problem)
    return problems
