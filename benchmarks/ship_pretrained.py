"""Ship a trained model as package data: float16 copy, manifest entry and model card.

    python benchmarks/ship_pretrained.py --name edsr_baseline_x2 \\
        --run_dir runs/pretrained_edsr_baseline_x2 --dataset_dir ../shared/data

Reads ``<run_dir>/final.weights.h5`` (the last step, not a "best" picked on a test set), and
``run_config.json`` and the TensorBoard logs of the run for its card (steps, schedule,
precision, wall time, the Set5 validation curve). Then, all measured in this run:

1. stores the weights as float16 in ``edsr_tf/pretrained/<name>.weights.h5`` when that changes
   Set5/Set14 PSNR by at most ``--fp16_tolerance`` dB (else float32), and reports the size;
2. evaluates the shipped file on Set5 and Set14 (paper protocol,
   ``edsr_tf.evaluation.evaluate_set``), with and without self-ensemble, next to bicubic;
3. exports it to TFLite dynamic-range and int8 (``python -m export``'s library, calibrated on the
   training images) and records the PSNR drop of each against the Keras model on whole Set5/Set14;
4. writes SHA-256, size and the card into ``edsr_tf/pretrained/manifest.json``.

    python benchmarks/ship_pretrained.py --refresh edsr_baseline_x3 --dataset_dir ../shared/data/edsr_benchmark

re-measures an already shipped model without its run folder: step 2 on the shipped file
(checked against its manifest SHA-256), the card's Set5/Set14 results (and LR-JPEG results,
if it has them) replaced by the new figures, the rest of the card kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETS = ("Set5", "Set14")
PAPER_EDSR_BASELINE = {  # EDSR paper, Table 3 (DIV2K-trained EDSR baseline; PSNR on Y)
    ("Set5", 2): 37.99, ("Set5", 3): 34.37, ("Set5", 4): 32.09,
    ("Set14", 2): 33.57, ("Set14", 3): 30.28, ("Set14", 4): 28.58,
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def run_history(run_dir: Path) -> dict:
    """Wall time and the validation curve from the run's TensorBoard event files."""
    import tensorflow as tf

    times, curve = [], {}
    for event_file in sorted((run_dir / "logs").rglob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(event_file)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            times.append(event.wall_time)
            for value in event.summary.value:
                if value.tag.startswith("val/") and value.tag.endswith("/psnr"):
                    psnr = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                    curve.setdefault(value.tag, []).append((int(event.step), event.wall_time, psnr))
    if not times:
        return {"wall_hours": None, "curve": {}}
    start = min(times)
    return {
        "wall_hours": round((max(times) - start) / 3600, 2),
        "curve": {tag.split("/")[1]: [{"step": s, "hours": round((t - start) / 3600, 3), "psnr": round(p, 3)}
                                      for s, t, p in sorted(points)]
                  for tag, points in curve.items()},
    }


def store_fp16(src: Path, dst: Path) -> None:
    """Copies a .weights.h5 with every float32 dataset cast to float16 (attributes kept)."""
    import h5py

    from edsr_tf.fileio import atomic_path

    with atomic_path(dst, suffix=".tmp.weights.h5") as tmp, h5py.File(src, "r") as fin, \
            h5py.File(tmp, "w") as fout:
        for key, value in fin.attrs.items():
            fout.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = fout.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
            else:
                data = obj[()]
                if data.dtype == np.float32:
                    data = data.astype(np.float16)
                ds = fout.create_dataset(name, data=data)
                for key, value in obj.attrs.items():
                    ds.attrs[key] = value

        fin.visititems(copy)


def evaluate(weights: Path | None, scale: int, dataset_dir: Path, *, self_ensemble: bool = False,
             lr_jpeg_quality: int | None = None) -> dict:
    from edsr_tf.benchmark_sets import find_datasets
    from edsr_tf.evaluation import bicubic_sr, eval_set_from_benchmark, evaluate_set, model_sr
    from edsr_tf.models import load_model, model_for_scale

    if weights is None:
        sr = bicubic_sr(scale)
    else:
        model, config = load_model(weights)
        sr = model_sr(model_for_scale(model, config, scale), scale, self_ensemble=self_ensemble)
    out = {}
    for bset in find_datasets(dataset_dir, list(SETS), scale):
        r = evaluate_set(sr, eval_set_from_benchmark(bset, lr_jpeg_quality=lr_jpeg_quality))
        # Six decimals: the README table rounds these to 2 (PSNR) and 4 (SSIM); a figure stored already
        # rounded to 3 would round twice (29.4652 → 29.465 → 29.46, where evaluate prints 29.47).
        out[r["set"]] = {"psnr": round(r["psnr"], 6), "ssim": round(r["ssim"], 6), "images": r["images"]}
    return out


def card_results(scale: int, plain: dict, plus: dict, bicubic: dict) -> list[dict]:
    """The card's ``results``: per set, the model next to bicubic and the paper, then with self-ensemble."""
    results = []
    for s in plain:
        results.append({"set": s, "scale": scale, "self_ensemble": False, **plain[s],
                        "bicubic_psnr": bicubic[s]["psnr"], "bicubic_ssim": bicubic[s]["ssim"],
                        "paper_edsr_baseline_div2k": PAPER_EDSR_BASELINE.get((s, scale))})
        results.append({"set": s, "scale": scale, "self_ensemble": True, **plus[s]})
    return results


def jpeg_card_results(weights: Path, scale: int, dataset_dir: Path, quality: int = 75) -> list[dict]:
    """The card's ``jpeg_results``: the model on LR saved as JPEG ``quality`` (evaluate
    --lr_jpeg_quality), next to bicubic on the same LR."""
    on_jpeg = evaluate(weights, scale, dataset_dir, lr_jpeg_quality=quality)
    bic_jpeg = evaluate(None, scale, dataset_dir, lr_jpeg_quality=quality)
    return [{"set": s, "scale": scale, "lr_jpeg_quality": quality, **on_jpeg[s],
             "bicubic_psnr": bic_jpeg[s]["psnr"], "bicubic_ssim": bic_jpeg[s]["ssim"]} for s in on_jpeg]


def refresh(name: str, dataset_dir: Path) -> dict:
    """Re-measures the shipped model ``name``'s Set5/Set14 figures (with and without
    self-ensemble, bicubic) on its shipped file and stores them in its card; returns the card.

    For a model whose run folder is gone: the rest of the card (training, fp32 and TFLite
    figures, curve) is kept as it was.
    """
    from edsr_tf.fileio import atomic_write_text
    from edsr_tf.pretrained import MANIFEST, PACKAGE_DIR, sha256_of

    manifest_path = PACKAGE_DIR / MANIFEST
    entry = json.loads(manifest_path.read_text())["models"].get(name)
    if entry is None:
        raise SystemExit(f"--refresh {name}: not in {manifest_path}")
    weights = PACKAGE_DIR / entry["file"]
    if sha256_of(weights) != entry["sha256"]:
        raise SystemExit(f"--refresh {name}: {weights} is not the file its manifest entry describes")
    if len(entry["scales"]) != 1:
        raise SystemExit("only single-scale models are shipped by this script")
    scale = entry["scales"][0]
    results = card_results(scale, evaluate(weights, scale, dataset_dir),
                           evaluate(weights, scale, dataset_dir, self_ensemble=True),
                           evaluate(None, scale, dataset_dir))
    jpeg = entry["card"].get("jpeg_results")
    if jpeg:
        jpeg = jpeg_card_results(weights, scale, dataset_dir, jpeg[0]["lr_jpeg_quality"])
    # Read again just before writing: other models' entries may have changed meanwhile.
    doc = json.loads(manifest_path.read_text())
    if doc["models"].get(name, {}).get("sha256") != entry["sha256"]:
        raise SystemExit(f"--refresh {name}: the model was replaced while it was measured; run again")
    card = doc["models"][name]["card"]
    card["results"] = results
    if jpeg:
        card["jpeg_results"] = jpeg
    card["results_measured_by"] = (f"python benchmarks/ship_pretrained.py --refresh {name} "
                                   f"--dataset_dir {dataset_dir}")
    atomic_write_text(manifest_path, json.dumps(doc, indent=2) + "\n")
    return card


def export_drops(weights: Path, scale: int, dataset_dir: Path, calibration_dir: Path) -> dict:
    """TFLite dynamic/int8 PSNR drop (dB) against the Keras model on whole Set5/Set14 images."""
    from edsr_tf.benchmark_sets import find_datasets
    from edsr_tf.export.common import ExportOptions
    from edsr_tf.export.pipeline import export
    from edsr_tf.export.calibration import read_rgb

    drops: dict[str, dict[str, float]] = {}
    for bset in find_datasets(dataset_dir, list(SETS), scale):
        hr = [(p.name, read_rgb(p.hr)) for p in bset.pairs]
        with tempfile.TemporaryDirectory() as tmp:
            options = ExportOptions(formats=("tflite",), quantize=("dynamic", "int8"),
                                    calibration_dir=calibration_dir, verify_images=hr,
                                    verify_max_side=None, latency_runs=0)
            report = export(weights, Path(tmp) / "export", options, progress=None)
        for art in report["artifacts"]:
            if art.get("variant") in ("dynamic", "int8"):
                drops.setdefault(art["variant"], {})[bset.name] = round(float(art["psnr_drop_db"]), 3)
    return drops


def degradation_text(run: dict) -> str:
    """The run's training-LR degradation in words (``clean bicubic LR`` when none)."""
    from edsr_tf.data.degrade import Degradation

    return Degradation.from_dict(run.get("degradation")).describe()


def run_leg(run: dict, command: str | None) -> dict:
    """One leg of a model's lineage: a training run's steps, precision, start, LR and command."""
    return {"steps": int(run["steps"]),
            "precision": "fp32 (QAT int8 simulation)" if run.get("qat") else run.get("mixed_precision", "none"),
            "init_from": run.get("init_from"), "training_lr": degradation_text(run), "command": command}


def prior_lineage(init_from: str | None, given: str | None) -> list[dict]:
    """The legs before this run, so a card counts every step its weights went through: ``given``
    (JSON); else, for a run's weights file (``<run>/run_config.json`` beside it), that run's own
    lineage and that run; else the lineage on the card of the shipped model the run started
    from (a card without one counts as one leg of its ``steps``)."""
    if given:
        return list(json.loads(given))
    if not init_from:
        return []
    run_config = Path(init_from).parent / "run_config.json"
    if Path(init_from).suffix == ".h5" and run_config.is_file():
        run = json.loads(run_config.read_text())["options"]
        return prior_lineage(run.get("init_from"), None) + [run_leg(run, f"the run in {run_config.parent}")]
    from edsr_tf.pretrained import load_manifest

    shipped = load_manifest().get(init_from)
    if shipped is None:
        return []
    card = shipped.card
    return list(card.get("lineage") or [{"steps": card.get("steps"), "precision": card.get("precision"),
                                          "init_from": card.get("init_from"), "command": card.get("command")}])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", help="shipped name, e.g. edsr_baseline_x2")
    p.add_argument("--run_dir", type=Path, help="train.py --out_dir of the run")
    p.add_argument("--refresh", metavar="NAME",
                   help="re-measure the Set5/Set14 figures of the shipped model NAME on its shipped "
                        "file (no run folder needed) and store them in its card; nothing else changes")
    p.add_argument("--weights", type=Path, help="default: <run_dir>/final.weights.h5")
    p.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "edsr_benchmark")
    p.add_argument("--calibration_dir", type=Path, default=REPO.parent / "shared" / "data" / "train" / "BSD200")
    p.add_argument("--fp16_tolerance", type=float, default=0.01, help="max PSNR change (dB) to store float16")
    p.add_argument("--skip_export", action="store_true", help="no TFLite drop figures (faster)")
    p.add_argument("--hardware", default=None, help="training hardware (default: this machine's CPU)")
    p.add_argument("--note", default=None, help="anything about the run the card should say")
    p.add_argument("--command", default=None,
                   help="the training command of this run (default: train.py --flagfile=configs/pretrained_<name>.cfg)")
    p.add_argument("--prior_lineage", default=None,
                   help="JSON list of the earlier legs ({steps, precision, command}) when --run_dir's "
                        "--init_from model's card does not record them")
    p.add_argument("--keep_int8", action="store_true",
                   help="keep the manifest's int8_tflite entry (only when the int8 file is re-derived next)")
    args = p.parse_args(argv)
    if args.refresh:
        if args.name or args.run_dir:
            p.error("--refresh NAME takes no --name or --run_dir")
        card = refresh(args.refresh, args.dataset_dir)
        print(json.dumps({k: card[k] for k in ("results", "jpeg_results") if k in card}, indent=2))
        return 0
    if not (args.name and args.run_dir):
        p.error("--name and --run_dir are required (or --refresh NAME)")

    from edsr_tf.models import read_config
    from edsr_tf.pretrained import MANIFEST, PACKAGE_DIR, sha256_of
    from edsr_tf.fileio import atomic_write_text

    weights = args.weights or args.run_dir / "final.weights.h5"
    config = read_config(weights)
    if len(config.scales) != 1:
        raise SystemExit("only single-scale models are shipped by this script")
    scale = config.scales[0]
    run = json.loads((args.run_dir / "run_config.json").read_text())["options"]
    t0 = time.time()

    fp32 = evaluate(weights, scale, args.dataset_dir)
    dst = PACKAGE_DIR / f"{args.name}.weights.h5"
    store_fp16(weights, dst)
    fp16 = evaluate(dst, scale, args.dataset_dir)
    fp16_delta = max(abs(fp16[s]["psnr"] - fp32[s]["psnr"]) for s in fp32)
    dtype = "float16"
    if fp16_delta > args.fp16_tolerance:
        import shutil

        shutil.copyfile(weights, dst)
        dtype = "float32"
        fp16 = fp32
    plus = evaluate(dst, scale, args.dataset_dir, self_ensemble=True)
    bicubic = evaluate(None, scale, args.dataset_dir)
    drops = {} if args.skip_export else export_drops(dst, scale, args.dataset_dir, args.calibration_dir)
    history = run_history(args.run_dir)
    # A run that started from another run's weights file (not a shipped name): that run's curve
    # belongs to this model's history too (e.g. a bf16 run, then a short QAT run from it).
    init = Path(run.get("init_from") or "")
    if init.suffix == ".h5" and init.is_file() and (init.parent / "logs").is_dir():
        prior = run_history(init.parent)
        history["curve"] = {f"{tag} ({init.parent.name})": pts for tag, pts in prior["curve"].items()} \
            | history["curve"]
        if prior["wall_hours"] is not None and history["wall_hours"] is not None:
            history["wall_hours"] = round(history["wall_hours"] + prior["wall_hours"], 2)
    # A JPEG-robust model is for compressed inputs: its card also scores them.
    jpeg_results = (jpeg_card_results(dst, scale, args.dataset_dir)
                    if (run.get("degradation") or {}).get("jpeg_prob") else [])
    results = card_results(scale, fp16, plus, bicubic)
    command = args.command or f"python train.py --flagfile=configs/pretrained_{args.name}.cfg"
    lineage = prior_lineage(run.get("init_from"), args.prior_lineage) + [run_leg(run, command)]
    card = {
        "data": "../shared/data/train: 490 HR images (T91 90, BSD200 200, BSDS500 test 200); "
                "images smaller than the HR patch skipped; LR by MATLAB-compatible bicubic"
                + (f", then {degradation_text(run)}" if run.get("degradation") else "") + ". No DIV2K.",
        "init_from": run.get("init_from"),
        "steps": run["steps"],
        "total_steps": sum(int(leg["steps"]) for leg in lineage),
        "lineage": lineage,
        "schedule": (f"Adam(0.9, 0.999, 1e-8), L1, batch {run['batch_size']}, LR patch {run['patch_size']}, "
                     + (f"lr {run['lr']:g} with {run['warmup_steps']} warm-up steps, cosine to "
                        f"{run['lr'] * run['lr_final_ratio']:g}" if run.get("lr_schedule") == "cosine"
                        else f"lr {run['lr']:g} x{run['lr_decay_factor']:g} every {run['lr_decay_steps']}")),
        "precision": run.get("mixed_precision", "none"),
        "wall_hours": history["wall_hours"],
        "hardware": args.hardware or f"{cpu_name()}, {os.cpu_count()} cores (no GPU)",
        "command": command,
        "stored_dtype": dtype,
        "fp16_psnr_change_db": round(fp16_delta, 4),
        "fp32_results": fp32,
        "results": results,
        "tflite_psnr_drop_db": drops,
        **({"jpeg_results": jpeg_results} if jpeg_results else {}),
        "validation_curve": history["curve"],
        "measured_by": f"python benchmarks/ship_pretrained.py --name {args.name} --run_dir {args.run_dir}",
    }
    if args.note:
        card["note"] = args.note
    manifest_path = PACKAGE_DIR / MANIFEST
    doc = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    old_int8 = doc["models"].get(args.name, {}).get("int8_tflite")
    doc["models"][args.name] = {
        "file": dst.name, "sha256": sha256_of(dst), "size": dst.stat().st_size,
        "arch": config.arch, "preset": config.preset or config.arch, "scales": list(config.scales),
        "card": card,
    }
    if old_int8 and args.keep_int8:
        doc["models"][args.name]["int8_tflite"] = old_int8
    elif old_int8:
        # The int8 file came from the weights just replaced: it is no longer this model's.
        stale = PACKAGE_DIR / old_int8["file"]
        stale.unlink(missing_ok=True)
        print(f"removed {stale}: re-derive it with benchmarks/qat_int8.py --ship", file=sys.stderr)
    doc["models"] = dict(sorted(doc["models"].items()))
    atomic_write_text(manifest_path, json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in card.items() if k != "validation_curve"}, indent=2))
    print(f"shipped {dst} ({dst.stat().st_size / 1e6:.2f} MB, {dtype}) in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
