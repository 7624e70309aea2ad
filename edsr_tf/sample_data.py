"""The embedded default data: real photographs shipped in the scikit-image wheel.

Read from the installed package, never downloaded, so the README's main command
and the tests that need natural images work offline on a fresh clone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Photographs used for quick training (natural RGB scenes).
TRAIN_IMAGES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "motorcycle_right",
)
#: Held-out photographs for evaluation.
EVAL_IMAGES: tuple[str, ...] = ("chelsea",)



def _load(name: str) -> np.ndarray:
    try:
        import skimage.data as data
    except ImportError as e:  # pragma: no cover - scikit-image is a runtime requirement
        raise RuntimeError(
            "the embedded sample images come from scikit-image: pip install scikit-image"
        ) from e
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    elif name == "chelsea":
        img = data.chelsea()
    else:
        fn = getattr(data, name, None)
        if fn is None:
            raise ValueError(f"unknown sample image {name!r}")
        img = fn()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def sample_image(name: str) -> np.ndarray:
    """One embedded photograph as uint8 RGB ``[H, W, 3]``."""
    return _load(name)


def sample_images(names: tuple[str, ...] = TRAIN_IMAGES) -> dict[str, np.ndarray]:
    """Several embedded photographs, name → uint8 RGB array."""
    return {n: _load(n) for n in names}


def write_sample_images(out_dir: str | os.PathLike, names: tuple[str, ...] = TRAIN_IMAGES) -> list[Path]:
    """Writes the named photographs as PNG files into ``out_dir`` (atomically); returns paths."""
    from PIL import Image

    from edsr_tf.fileio import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in sample_images(names).items():
        path = out / f"{name}.png"
        if not path.exists():
            # Unique temp names: several processes (multi-worker runs) may write at once.
            atomic_write(path, lambda f, img=img: Image.fromarray(img).save(f, format="PNG"))
        paths.append(path)
    return paths
