"""Input-pipeline throughput (patches/s) on 2K DIV2K PNGs, with and without the decoded cache.

Copies the real DIV2K pair of ``../shared/data/DIV2K`` (0004.png, 2040x1344, and its x2 LR)
``--copies`` times into a temporary DIV2K layout (copies, not links: the cache keys on the
resolved source path), then times ``edsr_tf.data.build_train_dataset`` after a warm-up:

- ``png``: decode PNGs in the pipeline (``crops_per_image`` patches per decode);
- ``png_1crop``: the same with one patch per decode (what peers do; for comparison);
- ``cache``: read decoded arrays from the cache (``cache_build_s``: first build, decoding);
- ``generated_lr``: HR-only folder, LR made in-graph by MATLAB bicubic imresize (cached HR);
- ``generated_lr_jpeg``: the same plus the JPEG-robust models' degradation stage
  (:mod:`edsr_tf.data.degrade`: half the LR crops real JPEG at quality 30-95, random grid offset).

Patches/s is LR/HR patch pairs delivered per second (CPU ms/patch: process CPU time, all
threads, per patch: steadier on a shared machine); compare with the training step's
consumption (batch x steps/s of ``benchmarks/train_throughput.py``) to see the headroom.

    python benchmarks/input_pipeline.py [--batches 60] [--copies 8] [--patch_size 48] [--batch_size 16]
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = Path(os.environ.get("EDSR_TF_SHARED_DATA", ROOT.parent / "shared" / "data")) / "DIV2K"


def make_copies(src: Path, dest: Path, copies: int) -> tuple[Path, Path]:
    """A DIV2K layout (``dest/DIV2K``) and an HR-only folder (``dest/hr``) with ``copies`` images."""
    hr = next((src / "DIV2K_train_HR").glob("*.png"))
    lr = src / "DIV2K_train_LR_bicubic" / "X2" / f"{hr.stem}x2.png"
    if not lr.is_file():
        raise SystemExit(f"error: {lr} not found (need the x2 LR of {hr})")
    div2k = dest / "DIV2K"
    (div2k / "DIV2K_train_HR").mkdir(parents=True)
    (div2k / "DIV2K_train_LR_bicubic" / "X2").mkdir(parents=True)
    (dest / "hr").mkdir()
    for i in range(1, copies + 1):
        shutil.copyfile(hr, div2k / "DIV2K_train_HR" / f"{i:04d}.png")
        shutil.copyfile(lr, div2k / "DIV2K_train_LR_bicubic" / "X2" / f"{i:04d}x2.png")
        shutil.copyfile(hr, dest / "hr" / f"{i:04d}.png")
    return div2k, dest / "hr"


def cpu_seconds() -> float:
    """CPU time of this process, all threads (tf.data's included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_pipeline(ds, batches: int, warmup: int, batch_size: int) -> tuple[float, float]:
    """(patches per second, CPU milliseconds per patch) over ``batches`` batches after warm-up.

    CPU time per patch is the steadier figure on a shared machine; wall-clock patches/s is
    what a trainer sees (prefetching keeps the pipeline busy while the last batches wait).
    """
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(it)
    n = batches * batch_size
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) * 1000 / n


def main() -> int:
    from edsr_tf.cli_args import ArgumentParser, add_flag

    p = ArgumentParser(prog="benchmarks/input_pipeline.py", description=__doc__.splitlines()[0])
    add_flag(p, "--data_dir", "--data", type=Path, default=DEFAULT_DATA, help="a DIV2K folder with one x2 pair")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--patch_size", type=int, default=48)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--crops_per_image", type=int, default=None, help="default: the pipeline's default")
    p.add_argument("--only", nargs="*", choices=["png", "png_1crop", "cache", "generated_lr", "generated_lr_jpeg"])
    args = p.parse_args()
    if not (args.data_dir / "DIV2K_train_HR").is_dir():
        print(f"error: {args.data_dir}/DIV2K_train_HR not found (--data_dir)", file=sys.stderr)
        return 2

    import tensorflow as tf

    from edsr_tf.data import DataSource, build_train_dataset
    from edsr_tf.data.pipeline import DEFAULT_CROPS_PER_IMAGE

    crops = args.crops_per_image or DEFAULT_CROPS_PER_IMAGE
    only = set(args.only or ["png", "png_1crop", "cache", "generated_lr", "generated_lr_jpeg"])
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edsr_input_bench_") as tmp:
        div2k, hr_dir = make_copies(args.data_dir, Path(tmp), args.copies)
        common = dict(patch_size=args.patch_size, batch_size=args.batch_size, seed=0)

        def run(name: str, source, warmup: int = args.warmup, **kw) -> None:
            ds = build_train_dataset(source, 2, **common, **kw)
            results[name], results[f"{name}_cpu_ms_per_patch"] = time_pipeline(
                ds, args.batches, warmup, args.batch_size)
            print(f"{name:>13}: {results[name]:9.1f} patches/s  "
                  f"{results[f'{name}_cpu_ms_per_patch']:7.3f} CPU ms/patch", flush=True)

        if "png" in only:
            run("png", DataSource.div2k(div2k), crops_per_image=crops)
        if "png_1crop" in only:
            run("png_1crop", DataSource.div2k(div2k), crops_per_image=1,
                warmup=2, shuffle_buffer=args.batch_size * 4)
        if only & {"cache", "generated_lr", "generated_lr_jpeg"}:
            cache_dir = Path(tmp) / "cache"
            start = time.perf_counter()
            build_train_dataset(DataSource.div2k(div2k), 2, **common, cache_dir=cache_dir)
            build_train_dataset(DataSource.folder(hr_dir), 2, **common, cache_dir=cache_dir)
            results["cache_build_s"] = time.perf_counter() - start
            print(f"  cache build: {results['cache_build_s']:9.1f} s ({2 * args.copies} HR + "
                  f"{args.copies} LR images decoded)", flush=True)
            if "cache" in only:
                run("cache", DataSource.div2k(div2k), cache_dir=cache_dir, crops_per_image=crops)
            if "generated_lr" in only:
                run("generated_lr", DataSource.folder(hr_dir), cache_dir=cache_dir, crops_per_image=crops)
            if "generated_lr_jpeg" in only:
                from edsr_tf.data.degrade import Degradation

                run("generated_lr_jpeg", DataSource.folder(hr_dir), cache_dir=cache_dir, crops_per_image=crops,
                    degradation=Degradation(jpeg_prob=0.5, jpeg_quality=(30, 95)))
    if "png" in results and "cache" in results:
        print(f"cache speed-up: x{results['cache'] / results['png']:.1f}")
    record = {
        "benchmark": "input_pipeline", "unit": "patches/s", "scale": 2,
        "patch_size": args.patch_size, "batch_size": args.batch_size, "crops_per_image": crops,
        "copies": args.copies, "batches": args.batches, "cpus": os.cpu_count(),
        "machine": platform.machine(), "tensorflow": tf.__version__,
        **{k: round(v, 3) for k, v in results.items()},
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
