"""Downloads the SR benchmark sets (Set5, Set14, B100, Urban100) as EDSR-PyTorch distributes them.

    python datasets/download_benchmarks.py --out_dir data [--sha256 HEX]

Fetches https://cv.snu.ac.kr/research/EDSR/benchmark.tar (about 250 MB; resumable) and extracts
it into ``<out_dir>/benchmark/<Set>/HR/<name>.png`` + ``LR_bicubic/X<s>/<name>x<s>.png``, the layout
``--dataset_dir <out_dir>/benchmark`` and ``DataSource.folder(<Set>/HR, lr_root=<Set>/LR_bicubic)`` read.
No checksum is published for this archive: the script prints its SHA-256 so you can record it,
and checks it on later runs when you pass ``--sha256``. Exit status: 0 done, 1 the download
failed, 2 bad arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _download import extract, fetch, run_job  # noqa: E402

from edsr_tf.cli_args import ArgumentParser, add_flag  # noqa: E402

URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="datasets/download_benchmarks.py", description=__doc__.splitlines()[0])
    add_flag(p, "--out_dir", "--dest", type=Path, required=True, metavar="DIR",
             help="folder to extract into (gets benchmark/)")
    p.add_argument("--sha256", help="expected SHA-256 of benchmark.tar (verified when given)")
    p.add_argument("--keep_archive", action="store_true", help="keep benchmark.tar after extracting")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    archive = args.out_dir / "benchmark.tar"

    def job() -> None:
        print(f"benchmark sets: {URL} -> {args.out_dir}")
        fetch(URL, archive, sha256=args.sha256)
        extract(archive, args.out_dir)
        if not args.keep_archive:
            archive.unlink()
        sets = sorted(d.name for d in (args.out_dir / "benchmark").iterdir() if d.is_dir())
        print(f"done: {', '.join(sets)} in {args.out_dir / 'benchmark'}")

    return run_job(job)


if __name__ == "__main__":
    sys.exit(main())
