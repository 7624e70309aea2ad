"""The shipped training configs: absl flagfiles (``*.cfg``) of the paper's runs and the quick start.

They ship inside the package, so an installed ``edsr-train`` finds them by name
(``edsr-train --config quickstart``); in a checkout, ``configs/`` is a link to this folder,
so ``python train.py --flagfile=configs/quickstart.cfg`` reads the same files. Paths inside
them (``--out_dir=runs/...``, ``--dataset_dir=../shared/data``) are relative to the working
folder, as every flag's path is, wherever the file itself lives.
"""

from __future__ import annotations

import os
from pathlib import Path

#: This folder: the ``*.cfg`` files beside this module.
CONFIG_DIR = Path(__file__).resolve().parent
SUFFIX = ".cfg"
#: Folders a ``--flagfile`` value may name a shipped config through when no such file exists
#: (the checkout's spellings: ``configs/quickstart.cfg``, ``edsr_tf/configs/quickstart.cfg``).
_SHIPPED_PARENTS = ("", ".", "configs", "edsr_tf/configs")


def names() -> list[str]:
    """The shipped configs' names (``quickstart``, ``edsr_baseline_x2``, ...), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob(f"*{SUFFIX}"))


def config_path(name: str) -> Path | None:
    """The file of the shipped config ``name`` (``quickstart`` or ``quickstart.cfg``), or None."""
    stem = name.removesuffix(SUFFIX)
    if not stem or "/" in stem or os.sep in stem or stem.startswith("."):
        return None
    path = CONFIG_DIR / f"{stem}{SUFFIX}"
    return path if path.is_file() else None


def shipped_flagfile(value: str) -> Path | None:
    """The shipped config a ``--flagfile`` value names when no file of that name exists, else None.

    ``configs/quickstart.cfg`` (a checkout's path, used from anywhere else), ``quickstart.cfg``
    and ``quickstart`` all name the shipped quick start; a path into any other folder never
    does (a user's own file that is missing stays an error).
    """
    if not value or os.path.exists(value):
        return None
    path = Path(value)
    if path.parent.as_posix() not in _SHIPPED_PARENTS:
        return None
    return config_path(path.name)
