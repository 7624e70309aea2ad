"""absl flags of ``train.py`` (usable in flagfiles: ``--flagfile=configs/NAME.cfg``, ``--config NAME``).

Defining and parsing them imports no TensorFlow (``--help`` is instant).
"""

from __future__ import annotations

import math
import os

from absl import flags

from edsr_tf.models.config import EDSR_SCALES, PRESETS, ScaleError, parse_scales

FLAGS = flags.FLAGS

DATA_SOURCES = ("samples", "div2k", "folder", "tfds")
#: ``edsr_tf.precision.MODES`` (tests/test_precision_auto.py checks they agree).
MIXED_PRECISION = ("none", "bf16", "fp16", "auto")
#: ``edsr_tf.training.strategy.STRATEGIES``, spelled out here: that module imports TensorFlow
#: (tests/test_cli_conventions.py checks they agree).
STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def _finite(v) -> bool:
    """False for inf and NaN: absl's float flags take them (``--lr=inf`` trained to NaN)."""
    return not isinstance(v, float) or math.isfinite(v)


def _number(name: str) -> str:
    return "a finite number" if flags.FLAGS[name].flag_type() == "float" else "an integer"


def _positive(name: str) -> None:
    flags.register_validator(name, lambda v: v is None or (_finite(v) and v > 0),
                             message=f"--{name} must be {_number(name)} > 0")


def _non_negative(name: str) -> None:
    flags.register_validator(name, lambda v: v is None or (_finite(v) and v >= 0),
                             message=f"--{name} must be {_number(name)} >= 0")


def _scales_ok(values) -> bool:
    try:
        return all(s in EDSR_SCALES for s in parse_scales(values) or ())
    except ScaleError:
        return False


def _weights_exist(value: str | None) -> bool:
    from edsr_tf.pretrained import load_manifest

    return value is None or os.path.isfile(value) or value in load_manifest()


def define_flags() -> None:
    """Defines the flags once (safe to call again, e.g. from tests)."""
    if "out_dir" in FLAGS:
        return
    # --- data
    flags.DEFINE_enum("data_source", "samples", list(DATA_SOURCES),
                      "samples: the photographs embedded in scikit-image (no download); div2k: DIV2K "
                      "folder layout under --data_dir; folder: any folder of HR images (LR made with "
                      "MATLAB-compatible bicubic); tfds: tensorflow-datasets div2k.")
    flags.DEFINE_string("data_dir", None,
                        "div2k: folder holding DIV2K_train_HR; folder: HR image folder; tfds: tfds data_dir.")
    flags.DEFINE_string("data_range", None,
                        "Train/validation image ranges 'BEGIN-END/BEGIN-END' as EDSR-PyTorch "
                        "(div2k/tfds default 1-800/801-810).")
    flags.DEFINE_enum("track", "bicubic", ["bicubic", "unknown"], "DIV2K degradation track.")
    flags.DEFINE_string("val_dir", None, "folder source: HR images for validation (LR made by bicubic).")
    flags.DEFINE_string("tfds_manual_dir", None,
                        "tfds: folder with the official DIV2K zips (default <data_dir>/downloads/manual).")
    flags.DEFINE_string("cache_dir", None, "Decoded-image cache folder (default: no cache).")
    flags.DEFINE_integer("val_limit", 10, "Validation images used during training (0 = all).")
    flags.DEFINE_list("eval_sets", [], "Benchmark sets for the final table, e.g. Set5,Set14.")
    flags.DEFINE_string("dataset_dir", None,
                        "Folder with the benchmark sets (<dir>/Set5 or <dir>/benchmark/Set5). Default: "
                        "../shared/data when it exists; sets missing there are skipped with a notice.")
    # --- degraded LR (edsr_tf/data/degrade.py): models for JPEG photos; all off by default
    flags.DEFINE_float("degrade_jpeg_prob", 0.0, "Share of training patches whose LR is JPEG-compressed "
                       "(real JPEG of a larger crop, then cut at a random offset).")
    flags.DEFINE_list("degrade_jpeg_quality", ["30", "95"], "JPEG quality range LOW,HIGH (1..100).")
    flags.DEFINE_float("degrade_noise_prob", 0.0, "Share of patches with Gaussian noise added to the LR.")
    flags.DEFINE_list("degrade_noise_sigma", ["1", "5"], "Noise standard deviation range LOW,HIGH (grey levels).")
    flags.DEFINE_float("degrade_poisson_prob", 0.0, "Share of patches with Poisson (shot) noise added to the "
                       "LR: grey level v gets standard deviation scale*sqrt(v).")
    flags.DEFINE_list("degrade_poisson_scale", ["0.05", "0.5"], "Poisson noise scale range LOW,HIGH (0..3).")
    flags.DEFINE_float("degrade_blur_prob", 0.0, "Share of patches whose HR crop is Gaussian-blurred before "
                       "downscaling (HR-only sources).")
    flags.DEFINE_list("degrade_blur_sigma", ["0.5", "1.5"], "Blur sigma range LOW,HIGH (HR pixels).")
    # --- model
    flags.DEFINE_enum("model", "edsr_baseline", sorted(PRESETS), "Model preset.")
    flags.DEFINE_list("scale", None, "Scale (EDSR: one of 2,3,4,8; default 2) or scales (MDSR: "
                      "default 2,3,4).")
    flags.DEFINE_integer("n_resblocks", None, "Override the preset's number of residual blocks.")
    flags.DEFINE_integer("n_feats", None, "Override the preset's number of feature maps.")
    flags.DEFINE_float("res_scale", None, "Override the preset's residual scaling.")
    flags.DEFINE_string("init_from", None,
                        "Initialise from a .weights.h5 (e.g. the x2 run's) or a shipped model's name "
                        "(edsr_baseline_x2) of the same architecture; "
                        "layers whose shapes differ (the upsampler of another scale) are skipped.")
    # --- optimisation (paper defaults)
    flags.DEFINE_integer("patch_size", 48, "LR patch size.")
    flags.DEFINE_integer("batch_size", 16, "Global batch size (split over all replicas/workers).")
    flags.DEFINE_integer("steps", 300_000, "Total training steps (updates).")
    flags.DEFINE_float("lr", 1e-4, "Initial learning rate (Adam 0.9/0.999/1e-8).")
    flags.DEFINE_integer("lr_decay_steps", 200_000, "Halve (x --lr_decay_factor) every N steps; 0 = constant.")
    flags.DEFINE_float("lr_decay_factor", 0.5, "Learning-rate decay factor.")
    flags.DEFINE_enum("lr_schedule", "step", ["step", "cosine"],
                      "step: the paper's (x --lr_decay_factor every --lr_decay_steps); cosine: "
                      "warm-up over --warmup_steps, then cosine decay to --lr x --lr_final_ratio at --steps.")
    flags.DEFINE_integer("warmup_steps", 0, "cosine: linear warm-up steps.")
    flags.DEFINE_float("lr_final_ratio", 0.01, "cosine: final lr as a fraction of --lr.")
    # --- run
    flags.DEFINE_string("out_dir", None, "Job directory: checkpoints/, logs/, best.weights.h5, "
                        "final.weights.h5, eval.json, eval.md.")
    flags.DEFINE_boolean("resume", False, "Continue from the latest checkpoint in --out_dir.")
    flags.DEFINE_integer("ckpt_every", 1000, "Checkpoint every N steps (and at the end).")
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
    flags.DEFINE_integer("eval_every", 1000, "Validate (and keep the best model) every N steps; 0 = never.")
    flags.DEFINE_integer("log_every", 100, "Progress/TensorBoard scalars every N steps.")
    flags.DEFINE_integer("eval_tile", 0, "Tile size (LR px) for validation/evaluation; 0 = whole image.")
    flags.DEFINE_integer("seed", 0, "Random seed (weights init and data).")
    flags.DEFINE_boolean("deterministic", False, "Deterministic ops and data order (slower).")
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                      "auto: MirroredStrategy when >1 GPU; mirrored: all local devices; multiworker: "
                      "MultiWorkerMirroredStrategy from TF_CONFIG.")
    flags.DEFINE_enum("mixed_precision", "none", list(MIXED_PRECISION),
                      "bf16 or fp16 (with dynamic loss scaling); the last layers and the loss stay float32. "
                      "auto: bf16 on a CPU with native bfloat16 or GPUs of compute capability 8.0+, "
                      "fp16 on older GPUs, else none (the log says which and why); none: float32.")
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the training step.")
    flags.DEFINE_boolean("qat", False, "Quantization-aware training: simulate TFLite int8 (float32; "
                         "start from a trained model with --init_from). The saved weights carry the "
                         "int8 ranges that int8 exports then use.")
    flags.DEFINE_integer("qat_calibration_batches", 16,
                         "--qat: training batches that set the initial int8 ranges.")
    flags.DEFINE_boolean("progress", True, "Print the progress bar.")
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up log lines (hidden by default; "
                         "errors, such as a GPU that fails, show either way).")
    # --- configs (read by training.cli before absl parses; defined here for --help)
    from edsr_tf.configs import names as config_names

    flags.DEFINE_string("config", None, "A shipped config by name, read like --flagfile=<its file> at "
                        "this place (flags after it override it): " + ", ".join(config_names()) + ". "
                        "--flagfile also takes these names when no file of that name exists.")

    flags.mark_flag_as_required("out_dir")
    for name in ("patch_size", "batch_size", "steps", "ckpt_every", "keep_checkpoints",
                 "log_every", "lr", "n_resblocks", "n_feats", "qat_calibration_batches"):
        _positive(name)
    for name in ("eval_every", "val_limit", "eval_tile", "lr_decay_steps", "seed", "res_scale",
                 "warmup_steps", "lr_final_ratio"):
        _non_negative(name)
    flags.register_validator("lr_decay_factor", lambda v: 0 < v <= 1,
                             message="--lr_decay_factor must be in (0, 1]")
    flags.register_validator("scale", _scales_ok,
                             message=f"--scale must be a comma list of {list(EDSR_SCALES)}")
    flags.register_validator("init_from", _weights_exist,
                             message="--init_from: no such file, nor a shipped model name")
    flags.register_validator("out_dir", lambda v: v is None or bool(v.strip()),
                             message="--out_dir must not be empty")
    flags.register_multi_flags_validator(
        ["data_source", "data_dir"],
        lambda d: d["data_source"] in ("samples", "tfds") or bool(d["data_dir"]),
        message="--data_source=div2k/folder needs --data_dir",
    )
