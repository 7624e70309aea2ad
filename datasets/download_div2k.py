"""Downloads DIV2K (HR + LR zips) from its official site, verifies, resumes, and extracts.

    python datasets/download_div2k.py --out_dir data/DIV2K_zips --extract_to data/DIV2K [--scale=2,3,4]
        [--track bicubic|unknown] [--no_valid]

The zips (train HR 3.5 GB, valid HR 0.45 GB, LR x2 0.9 GB, ...) come from
https://data.vision.ee.ethz.ch/cvl/DIV2K/ with the sizes and SHA-256 that tensorflow-datasets
records. ``--extract_to`` gives DIV2K's own layout (``DIV2K_train_HR/0001.png``,
``DIV2K_train_LR_bicubic/X2/0001x2.png``, ``DIV2K_valid_*``), which
``DataSource.div2k(<extract_to>)`` reads. For the tfds source, download into
``<tfds data_dir>/downloads/manual`` instead and do not extract. Interrupted? Run the same
command again: it resumes the ``.part`` file. Exit status: 0 done, 1 a download failed,
2 bad arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _download import extract, fetch, run_job  # noqa: E402

from edsr_tf.cli_args import ArgumentParser, add_flag, add_scale_flag  # noqa: E402

URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
#: zip name -> (size in bytes, sha256), as recorded by tensorflow-datasets' div2k checksums.
FILES = {
    "DIV2K_train_HR.zip": (3530603713, "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
    "DIV2K_valid_HR.zip": (448993893, "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
    "DIV2K_train_LR_bicubic_X2.zip": (925390592, "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850"),
    "DIV2K_train_LR_bicubic_X3.zip": (427847282, "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a"),
    "DIV2K_train_LR_bicubic_X4.zip": (246914039, "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a"),
    "DIV2K_valid_LR_bicubic_X2.zip": (117763600, "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57"),
    "DIV2K_valid_LR_bicubic_X3.zip": (54513392, "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3"),
    "DIV2K_valid_LR_bicubic_X4.zip": (31505881, "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553"),
    "DIV2K_train_LR_unknown_X2.zip": (734182735, "f166eeba119fc55bfc9a99c05561980e7a965382f36640ce8ef626c9f61d122c"),
    "DIV2K_train_LR_unknown_X3.zip": (377245548, "b6455af3b2aa02d76ae3238c49d7aae3b48b0acdc44b5bdc0f4c02d40ebcb43b"),
    "DIV2K_train_LR_unknown_X4.zip": (208956781, "d131c7aad51e0abbdc4433362ce899e5e75f40b9847ead70ee995188e8fd0adb"),
    "DIV2K_valid_LR_unknown_X2.zip": (93433041, "ec50bb084c0011130874efd2ed7859b46e0aa7104c565818d5271ac315e04e0a"),
    "DIV2K_valid_LR_unknown_X3.zip": (48143315, "ebf23a3e1ef6800cae97285d3a50d022d89b62655e685884c0abcc89eec5b809"),
    "DIV2K_valid_LR_unknown_X4.zip": (26695095, "e3897555a98de1157c20974fb6093105fbc1ff5e9caf7bd348f58f6da140fbef"),
}


#: The scales DIV2K has LR images for.
SCALES = (2, 3, 4)


def wanted(scales: list[int], track: str, valid: bool, hr: bool) -> list[str]:
    splits = ["train", "valid"] if valid else ["train"]
    names = [f"DIV2K_{s}_HR.zip" for s in splits] if hr else []
    names += [f"DIV2K_{s}_LR_{track}_X{x}.zip" for s in splits for x in scales]
    return names


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="datasets/download_div2k.py", description=__doc__.splitlines()[0])
    add_flag(p, "--out_dir", "--dest", type=Path, required=True, metavar="DIR",
             help="folder for the zips (e.g. <tfds data_dir>/downloads/manual)")
    p.add_argument("--extract_to", type=Path, metavar="DIR",
                   help="also extract into this DIV2K root (DataSource.div2k)")
    add_scale_flag(p, "--scales", legacy_list=True, default=SCALES,
                   help="LR scales to fetch, a comma list of 2, 3, 4 (default 2,3,4)")
    p.add_argument("--track", choices=["bicubic", "unknown"], default="bicubic")
    p.add_argument("--no_valid", action="store_true", help="skip the validation images 0801-0900")
    p.add_argument("--no_hr", action="store_true", help="skip the HR zips (already have them)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    bad = [s for s in args.scale if s not in SCALES]
    if bad:
        parser.error(f"argument --scale: DIV2K has no x{bad[0]} LR images (scales: 2, 3, 4)")
    names = wanted(list(args.scale), args.track, not args.no_valid, not args.no_hr)
    total = sum(FILES[n][0] for n in names) / 2**30
    print(f"DIV2K: {len(names)} files, {total:.1f} GiB, into {args.out_dir}")

    def job() -> None:
        for name in names:
            size, sha = FILES[name]
            fetch(URL + name, args.out_dir / name, size=size, sha256=sha)
        if args.extract_to:
            for name in names:
                extract(args.out_dir / name, args.extract_to)
            print(f"done: DataSource.div2k({str(args.extract_to)!r}) / --data_dir {args.extract_to}")

    return run_job(job)


if __name__ == "__main__":
    sys.exit(main())
