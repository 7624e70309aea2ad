"""Validation during training and the final PSNR/SSIM table (model vs bicubic).

Protocol as the paper (via :func:`edsr_tf.metrics.evaluate_pair`): SR output
rounded to uint8, Y channel, ``scale`` pixels shaved (DIV2K validation: RGB,
``scale + 6``). The bicubic column is MATLAB-compatible bicubic upscaling of the
same LR image. Grayscale images are evaluated on their own intensity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edsr_tf.fileio import atomic_write_text


@dataclasses.dataclass
class EvalImage:
    """One LR/HR pair; uint8 ``[H, W, 3]`` (or ``[H, W]`` for grayscale)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray


@dataclasses.dataclass
class EvalSet:
    """Images of one evaluation set at one scale."""

    name: str
    scale: int
    images: list[EvalImage]
    div2k: bool = False


def _to_uint8(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.floor(x.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)


def eval_set_from_dataset(
    name: str, dataset, scale: int, *, div2k: bool = False, names: Sequence[str] | None = None
) -> EvalSet:
    """Materialises a ``build_eval_dataset`` dataset (``[1,h,w,3]`` float pairs)."""
    images = []
    for i, (lr, hr) in enumerate(dataset):
        lr_np, hr_np = _to_uint8(lr.numpy()[0]), _to_uint8(hr.numpy()[0])
        label = names[i] if names is not None and i < len(names) else f"{i:04d}"
        images.append(EvalImage(label, lr_np, hr_np))
    if not images:
        raise ValueError(f"evaluation set {name!r} is empty")
    return EvalSet(name, int(scale), images, div2k=div2k)


def eval_set_from_hr(name: str, hr_images: dict[str, np.ndarray], scale: int) -> EvalSet:
    """LR made from each HR image with MATLAB-compatible bicubic (HR cropped to a multiple)."""
    from edsr_tf.imresize import imresize

    images = []
    for key, hr in hr_images.items():
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        images.append(EvalImage(key, imresize(hr, scale=1.0 / scale), hr))
    return EvalSet(name, int(scale), images)


# ------------------------------------------------------------------ benchmark sets

def load_benchmark_set(dataset_dir: str | os.PathLike, name: str, scale: int) -> EvalSet:
    """Loads Set5/Set14/... found by :mod:`edsr_tf.benchmark_sets` (either common layout).

    HR is cropped to LR size × scale; a missing LR is made from the HR with imresize
    (the same loading as ``python -m edsr_tf.evaluate``). Raises
    ``DatasetNotFoundError`` naming the folder when the set is absent.
    """
    from edsr_tf.benchmark_sets import find_dataset
    from edsr_tf.evaluate import load_pair

    found = find_dataset(dataset_dir, name, scale)
    images = [EvalImage(pair.name, *load_pair(pair.hr, pair.lr, scale)) for pair in found.pairs]
    return EvalSet(found.name, int(scale), images, div2k=found.div2k)


# ------------------------------------------------------------------ evaluation

def super_resolve(model, eval_image: EvalImage, scale: int, *, tile: int | None = None) -> np.ndarray:
    """Model output for one LR image, uint8, same layout (gray/RGB) as the HR."""
    from edsr_tf.evaluate import model_sr

    return model_sr(model, scale, tile=tile or None)(eval_image.lr)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("inf")


def evaluate_set(
    model, eval_set: EvalSet, *, bicubic: bool = True, tile: int | None = None,
    return_images: bool = False,
) -> dict:
    """Mean PSNR/SSIM of ``model`` (and of bicubic) on ``eval_set``."""
    from edsr_tf.imresize import bicubic_upscale
    from edsr_tf.metrics import evaluate_pair

    s = eval_set.scale
    rows, first = [], None
    for img in eval_set.images:
        sr = super_resolve(model, img, s, tile=tile)
        m = evaluate_pair(sr, img.hr, s, div2k=eval_set.div2k)
        row = {"image": img.name, "psnr": m["psnr"], "ssim": m["ssim"]}
        if bicubic:
            bic = bicubic_upscale(img.lr, s)
            b = evaluate_pair(bic, img.hr, s, div2k=eval_set.div2k)
            row.update(bicubic_psnr=b["psnr"], bicubic_ssim=b["ssim"])
            if first is None and return_images:
                first = (bic, sr, img.hr)
        elif first is None and return_images:
            first = (None, sr, img.hr)
        rows.append(row)
    out = {
        "set": eval_set.name,
        "scale": s,
        "images": len(rows),
        "protocol": "RGB, shave scale+6" if eval_set.div2k else "Y, shave scale",
        "psnr": _mean(r["psnr"] for r in rows),
        "ssim": _mean(r["ssim"] for r in rows),
        "per_image": rows,
    }
    if bicubic:
        out["bicubic_psnr"] = _mean(r["bicubic_psnr"] for r in rows)
        out["bicubic_ssim"] = _mean(r["bicubic_ssim"] for r in rows)
    if return_images:
        out["_images"] = first
    return out


def results_table(results: Sequence[dict], *, title: str | None = None) -> str:
    """Markdown table: one row per set, model vs bicubic PSNR (dB) / SSIM and the gain."""
    lines = []
    if title:
        lines += [title, ""]
    lines += [
        "| set | scale | images | bicubic PSNR | model PSNR | gain (dB) | bicubic SSIM | model SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        bp, bs = r.get("bicubic_psnr"), r.get("bicubic_ssim")
        gain = r["psnr"] - bp if bp is not None else None
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        lines.append(
            f"| {r['set']} | x{r['scale']} | {r['images']} | {fmt(bp, '.2f')} | {r['psnr']:.2f} | "
            f"{fmt(gain, '+.2f')} | {fmt(bs, '.4f')} | {r['ssim']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | os.PathLike, results: Sequence[dict], *, title: str | None = None,
                  extra: dict | None = None) -> tuple[Path, Path]:
    """Writes ``eval.json`` and ``eval.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    payload = {"results": clean, **(extra or {})}
    jpath, mpath = out / "eval.json", out / "eval.md"
    atomic_write_text(jpath, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(mpath, results_table(results, title=title))
    return jpath, mpath
