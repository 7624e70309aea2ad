"""Does bf16 training cost PSNR? The same small run trained in float32 and in mixed bfloat16.

    python benchmarks/bf16_vs_fp32.py [--steps 600] [--seeds 0,1,2] [--eval_sets Set5]
        [--dataset_dir DIR] [--out_dir DIR] [--json results.json]

Each seed trains the same run twice through ``edsr_tf.training.app.train`` (same seed, same
data order), once with ``--mixed_precision=none`` and once with ``bf16``: by default the quick
start's run (configs/quickstart.cfg: edsr_baseline x2, 4 blocks, 32 features, the photographs
embedded in scikit-image). Each final model is scored on the held-out photo and on
``--eval_sets`` (Set5 when ``../shared/data`` or ``--dataset_dir`` has it) twice: as train.py's
final table scores it (in the run's own precision) and from its saved weights in float32 (as
``upscale``/``evaluate`` run it). With several seeds, the seed-to-seed spread of the fp32 runs
shows the noise the fp32/bf16 difference is to be read against.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Benchmark label → ``--mixed_precision``.
RUNS = {"fp32": "none", "bf16": "bf16"}


def run_options(args, out_dir: Path, seed: int, mode: str):
    """The ``TrainOptions`` of one run (the quick start's settings unless overridden)."""
    from edsr_tf.training.app import TrainOptions, default_dataset_dirs

    return TrainOptions(
        out_dir=str(out_dir), data_source="samples", model=args.model, scales=(args.scale,),
        n_resblocks=args.n_resblocks, n_feats=args.n_feats, patch_size=args.patch_size,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, lr_decay_steps=args.lr_decay_steps,
        # No checkpoints or validation mid-run: only the final model is compared.
        ckpt_every=args.steps, eval_every=0, log_every=max(1, args.steps // 4),
        eval_sets=tuple(args.eval_sets), dataset_dir=args.dataset_dir,
        dataset_dir_defaults=() if args.dataset_dir else tuple(str(d) for d in default_dataset_dirs()),
        seed=seed, deterministic=args.deterministic, mixed_precision=mode, progress=False,
    )


def float32_scores(weights: Path, eval_sets) -> dict[str, float]:
    """PSNR per set of the saved weights, run in float32 (the global policy is float32 here)."""
    from edsr_tf.evaluation import evaluate_set
    from edsr_tf.models import load_model

    model, _ = load_model(weights)
    return {es.name: evaluate_set(model, es)["psnr"] for es in eval_sets}


def one_seed(args, root: Path, seed: int) -> list[dict]:
    """Trains fp32 then bf16 with ``seed``; one row per (run, set)."""
    from edsr_tf.training.app import benchmark_sets, train, validation_sets

    rows = []
    eval_sets = None
    for label, mode in RUNS.items():
        out = root / f"seed{seed}_{label}"
        opts = run_options(args, out, seed, mode)
        print(f"\n=== seed {seed}, {label} (--mixed_precision={mode}) → {out}", flush=True)
        result = train(opts)
        if eval_sets is None:  # the sets train() scored (samples: no data source needed)
            eval_sets = validation_sets(opts, None, opts.scales) + benchmark_sets(opts, opts.scales)
        fp32 = float32_scores(out / "final.weights.h5", eval_sets)
        for r in result["results"]:
            rows.append({"seed": seed, "run": label, "set": r["set"], "scale": r["scale"],
                         "psnr_as_trained": r["psnr"], "psnr_float32": fp32.get(r["set"]),
                         "bicubic_psnr": r.get("bicubic_psnr"), "train_seconds": result["train_seconds"]})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per set: mean fp32/bf16 PSNR, the mean bf16 − fp32 difference, and the fp32 seed spread."""
    out = []
    for name in dict.fromkeys(r["set"] for r in rows):
        by = {(r["seed"], r["run"]): r for r in rows if r["set"] == name}
        seeds = sorted({s for s, _ in by if (s, "fp32") in by and (s, "bf16") in by})
        if not seeds:
            continue
        fp32 = [by[s, "fp32"]["psnr_float32"] for s in seeds]
        bf16 = [by[s, "bf16"]["psnr_float32"] for s in seeds]
        bf16_own = [by[s, "bf16"]["psnr_as_trained"] for s in seeds]
        out.append({
            "set": name, "seeds": seeds, "fp32_psnr": statistics.fmean(fp32),
            "bf16_psnr": statistics.fmean(bf16), "bf16_psnr_bf16_inference": statistics.fmean(bf16_own),
            "delta": statistics.fmean(b - a for a, b in zip(fp32, bf16)),
            "fp32_seed_std": statistics.stdev(fp32) if len(fp32) > 1 else None,
            "bicubic_psnr": by[seeds[0], "fp32"]["bicubic_psnr"],
        })
    return out


def main(argv=None) -> int:
    from edsr_tf.cli_args import ArgumentParser

    p = ArgumentParser(prog="benchmarks/bf16_vs_fp32.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="edsr_baseline")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--n_resblocks", type=int, default=4)
    p.add_argument("--n_feats", type=int, default=32)
    p.add_argument("--patch_size", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr_decay_steps", type=int, default=400)
    p.add_argument("--seeds", default="0", help="comma list; several show the seed-to-seed noise")
    p.add_argument("--eval_sets", default="Set5", help="comma list of benchmark sets (skipped if absent)")
    p.add_argument("--dataset_dir", default=None, help="default: ../shared/data when it exists")
    p.add_argument("--deterministic", action="store_true", help="deterministic TF ops (slower)")
    p.add_argument("--out_dir", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the rows and the summary here")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
    args.eval_sets = [s.strip() for s in args.eval_sets.split(",") if s.strip()]

    with tempfile.TemporaryDirectory(prefix="bf16_vs_fp32_") as tmp:
        root = Path(args.out_dir) if args.out_dir else Path(tmp)
        rows = [row for seed in seeds for row in one_seed(args, root, seed)]
    summary = summarize(rows)

    from edsr_tf.precision import cpu_model_name

    print(f"\nbf16 vs fp32 training, {args.model} x{args.scale} ({args.n_resblocks} blocks, "
          f"{args.n_feats} feats), {args.steps} steps, batch {args.batch_size}, patch {args.patch_size}, "
          f"seeds {','.join(map(str, seeds))}; {cpu_model_name()}, {os.cpu_count()} CPU threads\n")
    print("| seed | run | set | PSNR (float32 inference) | PSNR (train.py's table) | bicubic | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f32 = "-" if r["psnr_float32"] is None else f"{r['psnr_float32']:.3f}"
        print(f"| {r['seed']} | {r['run']} | {r['set']} x{r['scale']} | {f32} | {r['psnr_as_trained']:.3f} | "
              f"{r['bicubic_psnr']:.3f} | {r['train_seconds']:.0f} |")
    print("\n| set | fp32 | bf16 | bf16 − fp32 | fp32 seed-to-seed std |")
    print("|---|---|---|---|---|")
    for s in summary:
        std = "-" if s["fp32_seed_std"] is None else f"{s['fp32_seed_std']:.3f}"
        print(f"| {s['set']} | {s['fp32_psnr']:.3f} | {s['bf16_psnr']:.3f} | {s['delta']:+.3f} | {std} |")
    if args.json:
        path = Path(args.json)
        tmp_path = path.with_name(f".{path.name}.tmp")
        tmp_path.write_text(json.dumps({"args": vars(args), "cpu": cpu_model_name(), "rows": rows,
                                        "summary": summary}, indent=2) + "\n")
        os.replace(tmp_path, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
