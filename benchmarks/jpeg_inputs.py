"""Models on compressed inputs: Set5/Set14 PSNR-Y with the LR JPEG-compressed, and a crop picture.

    python benchmarks/jpeg_inputs.py [--scales 2,3,4] [--qualities 50,75,90]
        [--dataset_dir ../shared/data/edsr_benchmark] [--markdown] [--json out.json]
        [--figure docs/images/jpeg_crop_x2.png --figure_image Set14/baboon]

For each scale and each JPEG quality (plus ``clean``: the LR as read), the paper protocol of
``python -m edsr_tf.evaluate --lr_jpeg_quality Q`` (LR saved as a JPEG at quality Q with
Pillow and read back, then upscaled; Y of BT.601, ``scale`` px shaved, uint8 output) for:
MATLAB bicubic, the shipped bicubic-trained ``edsr_baseline_x<s>`` and the shipped
JPEG-robust ``edsr_baseline_x<s>_jpeg`` (a scale without one is reported as missing).

``--figure`` writes a side-by-side crop (bicubic | bicubic-trained | JPEG-robust | HR) of one
image whose LR is JPEG at the first quality given (or ``--figure_quality``), nearest-neighbour
enlarged so the 8x8 blocks stay visible.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SETS = ("Set5", "Set14")


def _methods(scale: int) -> dict:
    from edsr_tf.evaluation import bicubic_sr, model_sr
    from edsr_tf.models import load_model
    from edsr_tf.pretrained import jpeg_model

    out = {"bicubic": bicubic_sr(scale)}
    model, _ = load_model(f"edsr_baseline_x{scale}")
    out["bicubic-trained"] = model_sr(model, scale)
    robust = jpeg_model(scale)
    if robust is not None:
        model, _ = load_model(robust.name)
        out["JPEG-robust"] = model_sr(model, scale)
    return out


def table(scales, qualities, dataset_dir: Path) -> list[dict]:
    from edsr_tf.benchmark_sets import find_datasets
    from edsr_tf.evaluation import eval_set_from_benchmark, evaluate_set

    rows = []
    for scale in scales:
        methods = _methods(scale)
        for bset in find_datasets(dataset_dir, list(SETS), scale):
            for q in [None, *qualities]:
                row = {"set": bset.name, "scale": scale, "lr_jpeg_quality": q}
                for name, sr in methods.items():
                    r = evaluate_set(sr, eval_set_from_benchmark(bset, lr_jpeg_quality=q))
                    row[name] = round(r["psnr"], 3)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| set | scale | LR | bicubic | bicubic-trained | JPEG-robust | JPEG-robust − bicubic | "
             "JPEG-robust − bicubic-trained |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        robust = r.get("JPEG-robust")
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        diff = lambda a, b: "-" if a is None or b is None else f"{a - b:+.2f}"  # noqa: E731
        lr = "clean" if r["lr_jpeg_quality"] is None else f"JPEG q{r['lr_jpeg_quality']}"
        lines.append(f"| {r['set']} | x{r['scale']} | {lr} | {fmt(r['bicubic'])} | {fmt(r['bicubic-trained'])} | "
                     f"{fmt(robust)} | {diff(robust, r['bicubic'])} | {diff(robust, r['bicubic-trained'])} |")
    return "\n".join(lines) + "\n"


def figure(path: Path, scale: int, quality: int, image: str, dataset_dir: Path, box: int = 48,
           zoom: int = 3) -> None:
    """Crops of bicubic | bicubic-trained | JPEG-robust | HR, nearest-neighbour enlarged."""
    from edsr_tf.benchmark_sets import find_datasets
    from edsr_tf.evaluation import eval_set_from_benchmark
    from edsr_tf.images import write_image

    set_name, name = image.split("/")
    (bset,) = find_datasets(dataset_dir, [set_name], scale)
    images = eval_set_from_benchmark(bset, lr_jpeg_quality=quality).images
    img = next(images[i] for i in range(len(images)) if images[i].name == name)
    methods = _methods(scale)
    outs = [methods[k](img.lr) for k in ("bicubic", "bicubic-trained", "JPEG-robust") if k in methods]
    outs.append(img.hr)
    h, w = img.hr.shape[:2]
    size = box * scale
    y, x = (h - size) // 2, (w - size) // 2  # the centre: no cherry-picking
    gap = np.full((size * zoom, 6, 3), 255, np.uint8)
    tiles = []
    for o in outs:
        c = o[y:y + size, x:x + size]
        c = np.repeat(c[..., None], 3, -1) if c.ndim == 2 else c
        tiles += [np.repeat(np.repeat(c, zoom, 0), zoom, 1), gap]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.concatenate(tiles[:-1], axis=1))
    print(f"wrote {path}: {image} x{scale}, LR JPEG q{quality}, centre {size}px crop; panels: "
          "bicubic | bicubic-trained | JPEG-robust | HR", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", default="2,3,4")
    p.add_argument("--qualities", default="50,75,90")
    p.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "edsr_benchmark")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", action="store_true", help="print the README table")
    p.add_argument("--figure", type=Path, help="write the crop picture here (first scale)")
    p.add_argument("--figure_image", default="Set14/baboon")
    p.add_argument("--figure_quality", type=int, default=None)
    p.add_argument("--no_table", action="store_true", help="only the figure")
    args = p.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    qualities = [int(q) for q in args.qualities.split(",")]
    if not args.no_table:
        rows = table(scales, qualities, args.dataset_dir)
        if args.json:
            args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
        if args.markdown:
            print(markdown(rows), end="")
    if args.figure:
        figure(args.figure, scales[0], args.figure_quality or qualities[0], args.figure_image, args.dataset_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
