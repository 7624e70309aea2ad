"""Prepares training data: LR images by MATLAB bicubic for a folder of HR images, and the cache.

Make LR files once (as MATLAB's imresize does it, on the whole image) for any HR folder::

    python datasets/prepare.py lr --hr_dir photos/HR --lr_dir photos/LR_bicubic --scales 2 3 4

writes ``photos/LR_bicubic/X2/<stem>x2.png`` (HR cropped to a multiple of the scale first, as the
DIV2K/benchmark LR were made); train on it with ``DataSource.folder("photos/HR",
lr_root="photos/LR_bicubic")``. Existing LR files newer than their HR are kept.

Build (or check and repair) the decoded-image cache before training, so the first epoch does
not pay for PNG decoding::

    python datasets/prepare.py cache --div2k data/DIV2K --scales 2 3 4 --cache_dir data/cache
    python datasets/prepare.py cache --hr_dir photos/HR [--lr_dir photos/LR_bicubic] --scales 2 --cache_dir data/cache
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_lr(hr_dir: Path, lr_dir: Path, scales: list[int], *, overwrite: bool = False,
            workers: int | None = None) -> int:
    """Writes ``lr_dir/X{s}/{stem}x{s}.png`` = imresize(modcrop(HR, s), 1/s); returns files written."""
    from edsr_tf.data import DataError, DataSource, image_pairs
    from edsr_tf.images import read_image, write_image
    from edsr_tf.imresize import imresize

    pairs = image_pairs(DataSource.folder(hr_dir), scales[0], train=True)

    def one(hr_path: Path) -> int:
        written = 0
        img = None
        for s in scales:
            out = lr_dir / f"X{s}" / f"{hr_path.stem}x{s}.png"
            if not overwrite and out.is_file() and out.stat().st_mtime >= hr_path.stat().st_mtime:
                continue
            if img is None:
                loaded = read_image(hr_path)
                if loaded.bit_depth != 8:
                    raise DataError(f"{hr_path}: {loaded.bit_depth}-bit image; expected 8-bit RGB")
                img = loaded.rgb
            h, w = img.shape[0] // s, img.shape[1] // s
            if h < 1 or w < 1:
                raise DataError(f"{hr_path}: {img.shape[1]}x{img.shape[0]} is too small for x{s}")
            out.parent.mkdir(parents=True, exist_ok=True)
            write_image(out, imresize(img[: h * s, : w * s], output_shape=(h, w)))
            written += 1
        return written

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return sum(pool.map(one, [p.hr_path for p in pairs]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    lr = sub.add_parser("lr", help="make LR images with MATLAB bicubic imresize")
    lr.add_argument("--hr_dir", type=Path, required=True)
    lr.add_argument("--lr_dir", type=Path, required=True, help="gets X<s>/<stem>x<s>.png")
    lr.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    lr.add_argument("--overwrite", action="store_true")
    lr.add_argument("--workers", type=int)
    cache = sub.add_parser("cache", help="build/check the decoded-image cache")
    src = cache.add_mutually_exclusive_group(required=True)
    src.add_argument("--div2k", type=Path, help="DIV2K root (DIV2K_train_HR/...)")
    src.add_argument("--hr_dir", type=Path, help="folder of HR images")
    cache.add_argument("--lr_dir", type=Path, help="with --hr_dir: LR root with X<s>/ folders")
    cache.add_argument("--track", choices=["bicubic", "unknown"], default="bicubic")
    cache.add_argument("--data_range", help="e.g. 1-800/801-900 (DIV2K default)")
    cache.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    cache.add_argument("--cache_dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from edsr_tf.data import DataSource, prepare_cache

    try:
        if args.command == "lr":
            n = make_lr(args.hr_dir, args.lr_dir, args.scales, overwrite=args.overwrite, workers=args.workers)
            print(f"wrote {n} LR images under {args.lr_dir}")
        else:
            source = (DataSource.div2k(args.div2k, track=args.track, data_range=args.data_range)
                      if args.div2k else DataSource.folder(args.hr_dir, lr_root=args.lr_dir,
                                                           data_range=args.data_range))
            c = prepare_cache(source, args.scales, args.cache_dir)
            print(f"cache {args.cache_dir}: {c.decoded} decoded, {c.reused} reused, {c.rebuilt} rebuilt")
    except (ValueError, OSError) as e:  # DataError, ImageReadError: one line naming the file
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
