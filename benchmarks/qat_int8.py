"""int8 after quantization-aware training vs post-training int8, per scale, on Set5/Set14.

    python benchmarks/qat_int8.py [--scales 2,3,4] [--sets Set5,Set14]
        [--qat_weights runs/qat_edsr_baseline_x{scale}/final.weights.h5]
        [--dataset_dir ../shared/data/edsr_benchmark] [--json out.json] [--ship]

``--ship`` copies each scale's QAT int8 TFLite model to ``edsr_tf/pretrained/<name>.int8.tflite``
(what ``upscale --precision int8`` runs for the shipped model) and records its SHA-256, size,
the QAT run and these figures in the manifest entry ``int8_tflite``.

For each scale, with the papers' protocol (:func:`edsr_tf.evaluation.evaluate_set`: official
LR, uint8 output, Y of BT.601, ``scale`` px shaved):

* ``fp32``: the shipped float model ``edsr_baseline_x{scale}`` in Keras;
* ``ptq int8``: the full-integer TFLite model the export makes from those float weights
  (calibrated, MSE-refined ranges: ``python -m export --quantize int8``);
* ``qat sim``: the QAT weights run through the Keras int8 simulation (:mod:`edsr_tf.models.qat`);
* ``qat int8``: the full-integer TFLite model of the QAT weights (their ranges, no calibration),
  converted by the export code (``--ship`` ships this file);
* the control: ``qat float``, the QAT run's weights in float (QAT also trains the float weights
  further), and ``ptq int8 of qat float``, post-training int8 of those weights: QAT helps by
  adapting to int8 only as far as ``qat int8`` beats that.

Drops are against ``fp32``. On the first set it also reports how closely the simulation
and LiteRT agree pixel by pixel (mean |difference| of the uint8 outputs, share within
2 grey levels), next to the same simulation XLA-compiled against itself: float sums in
another order flip values on a rounding boundary, and a flip spreads through the later
layers, so this is the floor any float simulation of an int8 network has.
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

import numpy as np  # noqa: E402


def _outputs(sr, eval_set) -> tuple[dict, list[np.ndarray]]:
    from edsr_tf.evaluation import evaluate_set

    outs: list[np.ndarray] = []
    row = evaluate_set(sr, eval_set, on_image=lambda s: outs.append(s.sr))
    return row, outs


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    d = np.concatenate([np.abs(x.astype(np.int32) - y.astype(np.int32)).ravel() for x, y in zip(a, b)])
    return {"mean_abs": float(d.mean()), "within_1": float((d <= 1).mean()),
            "within_2": float((d <= 2).mean()), "max": int(d.max())}


def run_scale(scale: int, sets: list[str], dataset_dir: Path, qat_weights: Path, work: Path) -> dict:
    import tensorflow as tf

    from edsr_tf.evaluation import load_benchmark_set, model_sr
    from edsr_tf.inference_precision import convert_int8, tflite_runner
    from edsr_tf.models import load_model, read_int8_ranges
    from edsr_tf.models.qat import quantize_model

    name = f"edsr_baseline_x{scale}"
    fp_model, _ = load_model(name)
    ptq_path = convert_int8(name, scale, work / f"{name}_ptq.tflite")
    control_path = _ptq_ignoring_ranges(qat_weights, scale, work / f"{name}_qatfloat_ptq")
    qat_float, _ = load_model(qat_weights)
    ranges = read_int8_ranges(qat_weights)
    if not ranges:
        raise SystemExit(f"error: --qat_weights {qat_weights}: no int8 ranges (not a train.py --qat result)")
    sim = quantize_model(qat_float, ranges)
    qat_path = convert_int8(qat_weights, scale, work / f"{name}_qat.tflite")
    xla = tf.function(lambda x: sim(x), jit_compile=True, reduce_retracing=True)

    class _Xla:  # the same simulation, XLA-compiled (another float summation order)
        def __call__(self, x, training=False):
            return xla(tf.constant(x))

    methods = {
        "fp32": model_sr(fp_model, scale),
        "ptq int8": model_sr(tflite_runner(ptq_path, fp_model, scale), scale),
        "qat sim": model_sr(sim, scale),
        "qat int8": model_sr(tflite_runner(qat_path, qat_float, scale), scale),
        "qat float": model_sr(qat_float, scale),
        "ptq int8 of qat float": model_sr(tflite_runner(control_path, qat_float, scale), scale),
    }
    out: dict = {"scale": scale, "qat_weights": str(qat_weights), "qat_tflite": str(qat_path), "sets": {}}
    for i, set_name in enumerate(sets):
        eval_set = load_benchmark_set(dataset_dir, set_name, scale)
        rows, images = {}, {}
        for label, sr in methods.items():
            rows[label], images[label] = _outputs(sr, eval_set)
        res = {label: {"psnr": r["psnr"], "ssim": r["ssim"], "drop": rows["fp32"]["psnr"] - r["psnr"]}
               for label, r in rows.items()}
        if i == 0:
            _, xla_images = _outputs(lambda lr: _sr_xla(xla, lr, scale), eval_set)
            res["agreement"] = {"qat sim vs qat int8 (LiteRT)": _agreement(images["qat sim"], images["qat int8"]),
                                "qat sim vs qat sim (XLA)": _agreement(images["qat sim"], xla_images)}
        out["sets"][set_name] = res
    return out


def _ptq_ignoring_ranges(weights: Path, scale: int, out: Path) -> Path:
    """Post-training int8 (the export's calibration) of a QAT weights file, its ranges unused."""
    from edsr_tf.export.common import ExportOptions
    from edsr_tf.export.pipeline import export_model
    from edsr_tf.models import load_model

    model, config = load_model(weights)
    report = export_model(model, config, out, ExportOptions(formats=("tflite",), quantize=("int8",), scale=scale,
                                                            latency_runs=0, verify_max_side=96),
                          int8_ranges={}, progress=None)
    return out / next(a["path"] for a in report["artifacts"] if a["variant"] == "int8")


def _sr_xla(fn, lr: np.ndarray, scale: int) -> np.ndarray:
    from edsr_tf.images import quantize_to

    rgb = np.repeat(lr[..., None], 3, axis=-1) if lr.ndim == 2 else lr
    sr = np.asarray(fn(rgb[None].astype(np.float32)))[0]
    if lr.ndim == 2:
        sr = sr.mean(axis=-1)
    return quantize_to(sr, 8)


def markdown(results: list[dict]) -> str:
    lines = ["| scale | set | fp32 PSNR | ptq int8 (drop) | qat sim (drop) | qat int8 (drop) | qat float | "
             "ptq int8 of qat float |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for set_name, res in r["sets"].items():
            cell = lambda k: f"{res[k]['psnr']:.3f} ({res[k]['drop']:+.3f})"  # noqa: E731
            lines.append(f"| x{r['scale']} | {set_name} | {res['fp32']['psnr']:.3f} | {cell('ptq int8')} | "
                         f"{cell('qat sim')} | {cell('qat int8')} | {res['qat float']['psnr']:.3f} | "
                         f"{cell('ptq int8 of qat float')} |")
    lines += ["", "| scale | comparison (first set, uint8 outputs) | mean abs | within 1 | within 2 | max |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for set_name, res in r["sets"].items():
            for label, a in res.get("agreement", {}).items():
                lines.append(f"| x{r['scale']} | {label} | {a['mean_abs']:.3f} | {a['within_1']:.2%} | "
                             f"{a['within_2']:.2%} | {a['max']} |")
    return "\n".join(lines)


def install_int8(name: str, src: str | os.PathLike, record: dict) -> Path:
    """Ships ``src`` as ``edsr_tf/pretrained/<name>.int8.tflite`` (what ``upscale --precision int8``
    runs for ``name``) and records it in the manifest entry ``int8_tflite``: ``record`` plus the
    file's name, SHA-256 and size and the SHA-256 of the float weights shipped beside it (its
    lineage; tests check they agree). File and manifest are each written atomically."""
    import shutil

    from edsr_tf.fileio import atomic_write_text
    from edsr_tf.pretrained import PACKAGE_DIR, sha256_of

    dest = PACKAGE_DIR / f"{name}.int8.tflite"
    if Path(src).resolve() != dest.resolve():
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    manifest_path = PACKAGE_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"][name]["int8_tflite"] = {
        "file": dest.name, "sha256": sha256_of(dest), "size": dest.stat().st_size, **record,
        "float_weights_sha256": manifest["models"][name]["sha256"],
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    print(f"shipped {dest} ({dest.stat().st_size:,} bytes)")
    return dest


def ship(result: dict, command: str | None = None) -> None:
    """Ships the scale's QAT int8 model (:func:`install_int8`) with its QAT run and drops."""
    name = f"edsr_baseline_x{result['scale']}"
    run_cfg = Path(result["qat_weights"]).parent / "run_config.json"
    options = json.loads(run_cfg.read_text())["options"] if run_cfg.is_file() else {}
    install_int8(name, result["qat_tflite"], {
        "quantization": "full integer (uint8 in/out, int8 activations, per-channel int8 weights), "
                        "activation ranges from quantization-aware training",
        "qat": {"init_from": options.get("init_from"), "steps": options.get("steps"), "lr": options.get("lr"),
                "command": command or f"python train.py --flagfile=configs/qat_{name}.cfg"},
        "psnr_drop_db": {set_name: {"ptq_int8": round(res["ptq int8"]["drop"], 3),
                                    "qat_int8": round(res["qat int8"]["drop"], 3),
                                    "qat_int8_vs_qat_float": round(res["qat float"]["psnr"] - res["qat int8"]["psnr"], 3)}
                         for set_name, res in result["sets"].items()},
        "measured_by": "python benchmarks/qat_int8.py --ship",
    })


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="2,3,4")
    p.add_argument("--sets", default="Set5,Set14")
    p.add_argument("--qat_weights", default="runs/qat_edsr_baseline_x{scale}/final.weights.h5")
    p.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "edsr_benchmark")
    p.add_argument("--json", type=Path)
    p.add_argument("--ship", action="store_true", help="ship the QAT int8 TFLite models (see above)")
    p.add_argument("--command", default=None, help="--ship: the QAT run's training command, for the manifest")
    a = p.parse_args(argv)
    from edsr_tf.precision import cpu_model_name

    sets = [s for s in a.sets.split(",") if s]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in (int(x) for x in a.scales.split(",")):
            results.append(run_scale(s, sets, a.dataset_dir, Path(a.qat_weights.format(scale=s)), Path(tmp)))
            if a.ship:
                ship(results[-1], a.command)
    print(f"CPU: {cpu_model_name()} ({platform.machine()})\n")
    print(markdown(results))
    if a.json:
        a.json.write_text(json.dumps({"cpu": cpu_model_name(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
