"""Peak memory (RSS) of ``python -m edsr_tf.upscale`` on a 2040x1356 input at x4 (8K output).

Runs the upscaler CLI in this process on one real-content image of DIV2K size
(the embedded 'astronaut' photograph resized with MATLAB bicubic to 2040x1356)
with an edsr_baseline x4 model (random weights unless --weights is given: memory
and time do not depend on the weight values), then prints the peak resident set
size of the process (``resource.getrusage``, which includes TensorFlow's own
allocations) and the wall time. The issue's bound is 3 GiB with the default tile.

    python benchmarks/upscale_memory.py [--tile N] [--weights W] [--keep DIR]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def main() -> int:
    from edsr_tf.inference import DEFAULT_TILE

    from edsr_tf.cli_args import ArgumentParser, add_flag

    p = ArgumentParser(prog="benchmarks/upscale_memory.py", description=__doc__.splitlines()[0])
    p.add_argument("--tile", default=str(DEFAULT_TILE), help="--tile passed to the upscaler (default auto)")
    add_flag(p, "--tile_overlap", "--tile-overlap", type=int, default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--weights", help="an edsr_baseline x4 weights file (default: random weights)")
    p.add_argument("--width", type=int, default=2040)
    p.add_argument("--height", type=int, default=1356)
    p.add_argument("--keep", type=Path, help="keep the input/output files in this folder")
    args = p.parse_args()

    import numpy as np

    from edsr_tf.images import write_image
    from edsr_tf.imresize import imresize
    from edsr_tf.models import ModelConfig, build_model, save_model
    from edsr_tf.sample_data import sample_image
    from edsr_tf.upscale import main as upscale_main

    work = args.keep or Path(tempfile.mkdtemp(prefix="edsr_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input_2040x1356.png"
    img = imresize(sample_image("astronaut"), output_shape=(args.height, args.width))
    write_image(src, np.asarray(img, np.uint8))
    del img
    weights = args.weights
    if weights is None:
        config = ModelConfig.from_preset("edsr_baseline", 4)
        weights = work / "edsr_baseline_x4_random.weights.h5"
        save_model(build_model(config), weights, config)

    from edsr_tf.inference import auto_tile, receptive_field_radius
    from edsr_tf.models import load_model

    net, _ = load_model(weights)
    overlap = receptive_field_radius(net) if args.tile_overlap is None else args.tile_overlap
    resolved_tile = auto_tile(net, overlap) if args.tile == "auto" else int(args.tile)
    del net
    import gc

    gc.collect()
    before = peak_rss_mib()
    argv = [str(src), "--weights", str(weights), "--out_dir", str(work / "out"), "--tile", str(args.tile),
            "--batch", str(args.batch), "--quiet", "--overwrite"]  # re-timed with --keep, never skipped
    if args.tile_overlap is not None:
        argv += ["--tile_overlap", str(args.tile_overlap)]
    t0 = time.perf_counter()
    rc = upscale_main(argv)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    result = {
        "input": f"{args.width}x{args.height}",
        "output": f"{args.width * 4}x{args.height * 4}",
        "tile": args.tile,
        "resolved_tile": resolved_tile,
        "tile_overlap": args.tile_overlap,
        "batch": args.batch,
        "exit_code": rc,
        "peak_rss_before_upscale_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "seconds": round(seconds, 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    print(f"peak RSS {peak / 1024:.2f} GiB ({'under' if peak < 3072 else 'OVER'} the 3 GiB bound), "
          f"{seconds:.0f} s", file=sys.stderr)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if rc == 0 and peak < 3072 else 1


if __name__ == "__main__":
    sys.exit(main())
