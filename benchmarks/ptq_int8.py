"""Post-training int8 of a shipped model: its drop on Set5/Set14, and ``--ship`` to ship it.

    python benchmarks/ptq_int8.py --name edsr_baseline_x2_jpeg [--ship] [--max_drop 0.05]
        [--dataset_dir ../shared/data/edsr_benchmark] [--json out.json]

For shipped models without a quantization-aware training run (the JPEG-robust ones): the
full-integer TFLite model the export makes from the shipped float weights (calibrated on the
embedded photographs, MSE-refined ranges: ``python -m export --quantize int8``), scored
against those float weights with the papers' protocol (official LR, uint8 output, Y of
BT.601, ``scale`` px shaved) on clean LR and, for a model whose card has JPEG figures, on LR
saved as JPEG at that quality (what it is for).

``--ship`` copies the file to ``edsr_tf/pretrained/<name>.int8.tflite`` (what ``upscale
--precision int8`` runs for that model) and records its SHA-256, size, the float weights'
SHA-256 and these drops in the manifest entry ``int8_tflite``, only when every drop is at
most ``--max_drop`` dB (exit 1 otherwise, nothing shipped). Models with a QAT run ship their
int8 file with ``benchmarks/qat_int8.py --ship`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # qat_int8.install_int8

SETS = ("Set5", "Set14")


def measure(name: str, dataset_dir: Path, work: Path) -> dict:
    """Converts ``name`` to int8 and scores float and int8 on each set (clean, and JPEG where the card has it)."""
    from edsr_tf.benchmark_sets import find_datasets
    from edsr_tf.evaluation import eval_set_from_benchmark, evaluate_set, model_sr
    from edsr_tf.inference_precision import convert_int8, tflite_runner
    from edsr_tf.models import load_model
    from edsr_tf.pretrained import load_manifest

    model_info = load_manifest()[name]
    scale = int(model_info.scales[0])
    path = convert_int8(name, scale, work / f"{name}.int8.tflite")
    model, _ = load_model(name)
    methods = {"fp32": model_sr(model, scale), "int8": model_sr(tflite_runner(path, model, scale), scale)}
    jpeg = (model_info.card.get("jpeg_results") or [{}])[0].get("lr_jpeg_quality")
    conditions = {"clean": None} | ({f"jpeg_q{jpeg}": int(jpeg)} if jpeg else {})
    drops: dict = {}
    for bset in find_datasets(dataset_dir, list(SETS), scale):
        for label, quality in conditions.items():
            eval_set = eval_set_from_benchmark(bset, lr_jpeg_quality=quality)
            psnr = {m: evaluate_set(sr, eval_set)["psnr"] for m, sr in methods.items()}
            key = bset.name if quality is None else f"{bset.name} {label}"
            drops[key] = {"fp32_psnr": round(psnr["fp32"], 4), "int8_psnr": round(psnr["int8"], 4),
                          "ptq_int8": round(psnr["fp32"] - psnr["int8"], 4)}
    return {"name": name, "scale": scale, "tflite": str(path), "psnr_drop_db": drops}


def ship(result: dict) -> Path:
    """Ships the int8 model and records it in the manifest (:func:`qat_int8.install_int8`)."""
    from qat_int8 import install_int8

    name = result["name"]
    return install_int8(name, result["tflite"], {
        "quantization": "full integer (uint8 in/out, int8 activations, per-channel int8 weights), "
                        "post-training: ranges calibrated on the embedded photographs, MSE-refined",
        "psnr_drop_db": {k: {"ptq_int8": v["ptq_int8"]} for k, v in result["psnr_drop_db"].items()},
        "measured_by": f"python benchmarks/ptq_int8.py --name {name} --ship",
    })


def markdown(result: dict) -> str:
    lines = [f"{result['name']} (x{result['scale']}), post-training int8 against the float model:", "",
             "| set / LR | fp32 PSNR-Y | int8 PSNR-Y | drop (dB) |", "|---|---|---|---|"]
    for key, d in result["psnr_drop_db"].items():
        lines.append(f"| {key} | {d['fp32_psnr']:.2f} | {d['int8_psnr']:.2f} | {d['ptq_int8']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="a shipped model, e.g. edsr_baseline_x2_jpeg")
    p.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "edsr_benchmark")
    p.add_argument("--max_drop", type=float, default=0.05, help="--ship only when every drop is at most this (dB)")
    p.add_argument("--ship", action="store_true", help="ship the int8 file and record it in the manifest")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    from edsr_tf.pretrained import load_manifest
    from edsr_tf.precision import cpu_model_name

    if a.name not in load_manifest():
        print(f"error: --name {a.name}: not a shipped model ({', '.join(sorted(load_manifest()))})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(a.name, a.dataset_dir, Path(tmp))
        print(f"CPU: {cpu_model_name()} ({platform.machine()})\n")
        print(markdown(result))
        if a.json:
            a.json.write_text(json.dumps({"cpu": cpu_model_name(), **result}, indent=1))
        worst = max(d["ptq_int8"] for d in result["psnr_drop_db"].values())
        if a.ship:
            if worst > a.max_drop:
                print(f"\nnot shipped: the largest drop, {worst:.3f} dB, exceeds --max_drop {a.max_drop:g}",
                      file=sys.stderr)
                return 1
            ship(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
