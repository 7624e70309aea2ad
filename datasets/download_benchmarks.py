"""Downloads the SR benchmark sets (Set5, Set14, B100, Urban100) as EDSR-PyTorch distributes them.

    python datasets/download_benchmarks.py --dest data [--sha256 HEX]

Fetches https://cv.snu.ac.kr/research/EDSR/benchmark.tar (about 250 MB; resumable) and extracts
it into ``<dest>/benchmark/<Set>/HR/<name>.png`` + ``LR_bicubic/X<s>/<name>x<s>.png``, the layout
``--dataset_dir <dest>/benchmark`` and ``DataSource.folder(<Set>/HR, lr_root=<Set>/LR_bicubic)`` read.
No checksum is published for this archive: the script prints its SHA-256 so you can record it,
and checks it on later runs when you pass ``--sha256``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import extract, fetch, run_job  # noqa: E402

URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, required=True, help="folder to extract into (gets benchmark/)")
    p.add_argument("--sha256", help="expected SHA-256 of benchmark.tar (verified when given)")
    p.add_argument("--keep_archive", action="store_true", help="keep benchmark.tar after extracting")
    args = p.parse_args(argv)
    archive = args.dest / "benchmark.tar"

    def job() -> None:
        print(f"benchmark sets: {URL} -> {args.dest}")
        fetch(URL, archive, sha256=args.sha256)
        extract(archive, args.dest)
        if not args.keep_archive:
            archive.unlink()
        sets = sorted(d.name for d in (args.dest / "benchmark").iterdir() if d.is_dir())
        print(f"done: {', '.join(sets)} in {args.dest / 'benchmark'}")

    return run_job(job)


if __name__ == "__main__":
    sys.exit(main())
