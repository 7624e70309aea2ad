"""Prepares training data: LR images by MATLAB bicubic for a folder of HR images, and the cache.

Make LR files once (as MATLAB's imresize does it, on the whole image) for any HR folder::

    python datasets/prepare.py lr --hr_dir photos/HR --out_dir photos/LR_bicubic --scale=2,3,4

writes ``photos/LR_bicubic/X2/<stem>x2.png`` (HR cropped to a multiple of the scale first, as the
DIV2K/benchmark LR were made); train on it with ``DataSource.folder("photos/HR",
lr_root="photos/LR_bicubic")``. Existing LR files newer than their HR are kept.

Build (or check and repair) the decoded-image cache before training, so the first epoch does
not pay for PNG decoding::

    python datasets/prepare.py cache --div2k data/DIV2K --scale=2,3,4 --cache_dir data/cache
    python datasets/prepare.py cache --hr_dir photos/HR [--lr_dir photos/LR_bicubic] --scale=2 --cache_dir data/cache

(``--cache_dir`` is the cache's output folder, named as ``train.py --cache_dir`` that reads it.)
Exit status: 0 done, 1 a file could not be read or written (named on stderr), 2 bad arguments.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edsr_tf.cli_args import (  # noqa: E402
    EXIT_FAILED,
    EXIT_OK,
    ArgumentParser,
    add_flag,
    add_scale_flag,
    positive_int,
    print_error,
    quiet_tensorflow,
)


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


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="datasets/prepare.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    lr = sub.add_parser("lr", help="make LR images with MATLAB bicubic imresize",
                        description="Make LR images with MATLAB bicubic imresize.")
    lr.add_argument("--hr_dir", type=Path, required=True, metavar="DIR", help="folder of HR images")
    add_flag(lr, "--out_dir", "--lr_dir", type=Path, required=True, metavar="DIR",
             help="LR root: gets X<s>/<stem>x<s>.png")
    add_scale_flag(lr, "--scales", legacy_list=True, default=(2, 3, 4),
                   help="comma list of scales (default 2,3,4)")
    lr.add_argument("--overwrite", action="store_true", help="remake LR files newer than their HR")
    lr.add_argument("--workers", type=positive_int, metavar="N", help="threads (default: CPU count)")
    cache = sub.add_parser("cache", help="build/check the decoded-image cache",
                           description="Build (or check and repair) the decoded-image cache.")
    src = cache.add_mutually_exclusive_group(required=True)
    src.add_argument("--div2k", type=Path, metavar="DIR", help="DIV2K root (DIV2K_train_HR/...)")
    src.add_argument("--hr_dir", type=Path, metavar="DIR", help="folder of HR images")
    cache.add_argument("--lr_dir", type=Path, metavar="DIR",
                       help="with --hr_dir: LR root with X<s>/ folders (made by 'prepare.py lr')")
    cache.add_argument("--track", choices=["bicubic", "unknown"], default="bicubic")
    cache.add_argument("--data_range", help="e.g. 1-800/801-900 (DIV2K default)")
    add_scale_flag(cache, "--scales", legacy_list=True, default=(2, 3, 4),
                   help="comma list of scales (default 2,3,4)")
    cache.add_argument("--cache_dir", type=Path, required=True, metavar="DIR",
                       help="the cache folder (written; train.py --cache_dir reads it)")
    return p


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from edsr_tf.data import DataSource, prepare_cache

    try:
        if args.command == "lr":
            n = make_lr(args.hr_dir, args.out_dir, list(args.scale), overwrite=args.overwrite,
                        workers=args.workers)
            print(f"wrote {n} LR images under {args.out_dir}")
        else:
            source = (DataSource.div2k(args.div2k, track=args.track, data_range=args.data_range)
                      if args.div2k else DataSource.folder(args.hr_dir, lr_root=args.lr_dir,
                                                           data_range=args.data_range))
            c = prepare_cache(source, list(args.scale), args.cache_dir)
            print(f"cache {args.cache_dir}: {c.decoded} decoded, {c.reused} reused, {c.rebuilt} rebuilt")
    except (ValueError, OSError) as e:  # DataError, ImageReadError: one line naming the file
        print_error(str(e))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
