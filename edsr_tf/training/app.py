"""``train.py``: flags → data, model, strategy → training loop → weights + evaluation table.

:func:`train` runs one job from a :class:`TrainOptions` in named steps (job folder, data,
model + optimizer, loop, final evaluation). This module is also the ``train.py`` front end's
translator: library errors become :class:`TrainError` in flag wording here, and run-time
defaults that depend on where the program runs (the benchmark folder) are resolved in
:meth:`TrainOptions.from_flags`, never at import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edsr_tf.errors import first_line
from edsr_tf.fileio import atomic_write_text

DIV2K_TRAIN_RANGE = "1-800/801-810"  # EDSR-PyTorch's default: validate on 10 images
DEFAULT_EDSR_SCALE = 2


class TrainError(ValueError):
    """A problem reported to the user as one line: a configuration to change (``train.py`` exits
    2), or, with ``failed_work``, work that failed, such as no checkpoint restoring (exits 1)."""

    def __init__(self, message: str, *, failed_work: bool = False):
        super().__init__(message)
        self.failed_work = failed_work


@dataclasses.dataclass
class TrainOptions:
    """All knobs of a training run (``train.py`` fills it from its flags)."""

    out_dir: str
    data_source: str = "samples"
    data_dir: str | None = None
    data_range: str | None = None
    track: str = "bicubic"
    val_dir: str | None = None
    tfds_manual_dir: str | None = None
    cache_dir: str | None = None
    val_limit: int = 10
    eval_sets: Sequence[str] = ()
    dataset_dir: str | None = None
    #: Tried in order when ``dataset_dir`` is None (the front end fills it, see
    #: :func:`default_dataset_dirs`); sets missing there are skipped with a note.
    dataset_dir_defaults: Sequence[str] = ()
    model: str = "edsr_baseline"
    scales: Sequence[int] | None = None
    n_resblocks: int | None = None
    n_feats: int | None = None
    res_scale: float | None = None
    init_from: str | None = None
    patch_size: int = 48
    batch_size: int = 16
    steps: int = 300_000
    lr: float = 1e-4
    lr_decay_steps: int = 200_000
    lr_decay_factor: float = 0.5
    lr_schedule: str = "step"
    warmup_steps: int = 0
    lr_final_ratio: float = 0.01
    resume: bool = False
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 1000
    log_every: int = 100
    eval_tile: int = 0
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    mixed_precision: str = "none"
    jit_compile: bool = False
    qat: bool = False
    qat_calibration_batches: int = 16
    progress: bool = True
    #: :class:`edsr_tf.data.degrade.Degradation` of the training LR as a dict (JPEG, noise,
    #: blur; empty: clean bicubic LR). Recorded in run.json and the model card.
    degradation: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_flags(cls, flags_values) -> "TrainOptions":
        """The options of ``train.py``'s parsed flags (run-time defaults resolved now)."""
        from edsr_tf.models.config import ScaleError, parse_scales

        names = {f.name for f in dataclasses.fields(cls)} - {"scales", "dataset_dir_defaults", "degradation"}
        kwargs = {n: getattr(flags_values, n) for n in names}
        kwargs["eval_sets"] = tuple(s.strip() for s in (kwargs["eval_sets"] or ()) if s.strip())
        try:
            kwargs["scales"] = parse_scales(flags_values.scale)
        except ScaleError as e:
            raise TrainError(f"--scale: {e}") from None
        if flags_values.dataset_dir is None:
            kwargs["dataset_dir_defaults"] = tuple(str(d) for d in default_dataset_dirs())
        kwargs["degradation"] = _degradation_from_flags(flags_values)
        return cls(**kwargs)


def _degradation_from_flags(flags_values) -> dict:
    """The ``--degrade_*`` flags as a checked :class:`~edsr_tf.data.degrade.Degradation` dict."""
    from edsr_tf.data.degrade import Degradation, DegradationError

    values = {}
    for name in ("jpeg_prob", "jpeg_quality", "noise_prob", "noise_sigma", "poisson_prob", "poisson_scale",
                 "blur_prob", "blur_sigma"):
        v = getattr(flags_values, f"degrade_{name}")
        values[name] = tuple(v) if isinstance(v, (list, tuple)) else v
    try:
        d = Degradation(**values)
    except DegradationError as e:
        raise TrainError(f"--degrade_{e}") from None
    return d.to_dict() if d.active else {}


def default_dataset_dirs() -> tuple[Path, ...]:
    """Where ``train.py`` looks for benchmark sets without ``--dataset_dir`` (read when called).

    In a checkout, the project's shared data folder next to it (``<repo>/../shared/data``);
    then the one next to the working directory (``../shared/data``, as the configs' paths read),
    the only one for an installed package, whose folder says nothing about the user's data.
    """
    repo_root = Path(__file__).resolve().parents[2]
    checkout = (repo_root / "train.py").is_file()
    dirs = ((repo_root.parent / "shared" / "data",) if checkout else ()) + (Path.cwd().parent / "shared" / "data",)
    return tuple(dict.fromkeys(dirs))


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ model

def model_config(opts: TrainOptions):
    """The :class:`ModelConfig` of the run (preset + scale(s) + overrides).

    EDSR presets take one scale (default ×2), MDSR presets one or more (default 2, 3, 4);
    the library's errors are reported against ``--model``/``--scale``.
    """
    from edsr_tf.models import PRESETS, ModelConfig

    if opts.model not in PRESETS:
        raise TrainError(f"--model: unknown preset {opts.model!r}: expected one of {sorted(PRESETS)}")
    scales = opts.scales
    if not scales and PRESETS[opts.model][0] == "edsr":
        scales = (DEFAULT_EDSR_SCALE,)
    try:
        return ModelConfig.from_preset(
            opts.model, scales, n_resblocks=opts.n_resblocks, n_feats=opts.n_feats,
            res_scale=opts.res_scale,
        )
    except ValueError as e:
        raise TrainError(f"--model/--scale: {e}") from None


def init_from_weights(model, config, path: str | os.PathLike) -> list[str]:
    """Copies weights of ``path`` into ``model`` by layer name; returns skipped layers.

    Layers whose shapes differ are skipped only where that is expected between
    scales (upsampler, MDSR per-scale pre-processing), as EDSR-PyTorch's loader
    skips the mismatching ``tail``; any other mismatch is an error.
    """
    from edsr_tf.models import load_model

    src, src_cfg = load_model(path)
    if (src_cfg.arch, src_cfg.n_resblocks, src_cfg.n_feats) != (
        config.arch, config.n_resblocks, config.n_feats
    ):
        raise TrainError(
            f"--init_from {path}: {src_cfg.arch} with {src_cfg.n_resblocks} blocks/{src_cfg.n_feats} "
            f"feats does not fit this {config.arch} with {config.n_resblocks}/{config.n_feats} "
            "(only the scale may differ)"
        )
    src_layers = {layer.name: layer for layer in src.layers}
    skipped, copied = [], 0
    for layer in model.layers:
        if not layer.weights:
            continue
        other = src_layers.get(layer.name)
        scale_specific = layer.name.startswith("upsample") or layer.name.startswith("pre_x")
        if other is None or [tuple(w.shape) for w in other.weights] != [tuple(w.shape) for w in layer.weights]:
            if scale_specific:
                skipped.append(layer.name)
                continue
            raise TrainError(
                f"--init_from {path}: layer {layer.name!r} is missing or has other shapes "
                f"in that file (model x{list(src_cfg.scales)} vs x{list(config.scales)})"
            )
        layer.set_weights(other.get_weights())
        copied += 1
    if not copied:
        raise TrainError(f"--init_from {path}: no layer of this model found in that file")
    return skipped


# ------------------------------------------------------------------ data

def _data_source(opts: TrainOptions, work: Path):
    """(training DataSource, validation sets factory)."""
    from edsr_tf.data import DataSource

    if opts.data_source == "samples":
        from edsr_tf.sample_data import TRAIN_IMAGES, write_sample_images

        folder = work / "samples" / "train"
        write_sample_images(folder, TRAIN_IMAGES)
        return DataSource.folder(folder, data_range=opts.data_range)
    if opts.data_source == "folder":
        return DataSource.folder(opts.data_dir, data_range=opts.data_range)
    if opts.data_source == "div2k":
        return DataSource.div2k(opts.data_dir, track=opts.track,
                                data_range=opts.data_range or DIV2K_TRAIN_RANGE)
    return DataSource(kind="tfds", track=opts.track, data_range=opts.data_range or DIV2K_TRAIN_RANGE,
                      tfds_data_dir=opts.data_dir, tfds_manual_dir=opts.tfds_manual_dir)


def validation_sets(opts: TrainOptions, source, scales: Sequence[int]) -> list:
    """Whole-image validation sets (one per scale) for the run's data source."""
    from edsr_tf.data import DataSource, build_eval_dataset
    from edsr_tf.evaluation import eval_set_from_dataset, eval_set_from_hr

    limit = opts.val_limit or None
    out = []
    for s in scales:
        if opts.data_source == "samples":
            from edsr_tf.sample_data import EVAL_IMAGES, sample_images

            imgs = dict(list(sample_images(EVAL_IMAGES).items())[:limit])
            out.append(eval_set_from_hr("photos", imgs, s))
        elif opts.data_source == "folder":
            if not opts.val_dir:
                continue
            ds = build_eval_dataset(DataSource.folder(opts.val_dir), s, limit=limit)
            val = Path(opts.val_dir)
            # A benchmark's "<Set>/HR" folder is named for its set.
            name = val.resolve().parent.name if val.name == "HR" else val.name
            out.append(eval_set_from_dataset(name, ds, s))
        else:
            ds = build_eval_dataset(source, s, limit=limit)
            out.append(eval_set_from_dataset("DIV2K-val", ds, s, div2k=True))
    return out


def benchmark_sets(opts: TrainOptions, scales: Sequence[int]) -> list:
    """The ``--eval_sets`` found under ``--dataset_dir`` (or the first of ``dataset_dir_defaults``)."""
    from edsr_tf.benchmark_sets import DatasetNotFoundError
    from edsr_tf.evaluation import load_benchmark_set

    if not opts.eval_sets:
        return []
    explicit = opts.dataset_dir is not None
    if explicit:
        dataset_dir = Path(opts.dataset_dir)
        if not dataset_dir.is_dir():
            raise TrainError(f"--dataset_dir {dataset_dir}: no such directory")
    else:
        defaults = [Path(d) for d in opts.dataset_dir_defaults]
        dataset_dir = next((d for d in defaults if d.is_dir()), None)
        if dataset_dir is None:
            where = f" and no {' nor '.join(map(str, defaults))}" if defaults else ""
            log(f"note: {', '.join(opts.eval_sets)} not evaluated: no --dataset_dir{where}")
            return []
    out = []
    for name in opts.eval_sets:
        for s in scales:
            try:
                out.append(load_benchmark_set(dataset_dir, name, s))
            except DatasetNotFoundError as e:
                if explicit:
                    raise TrainError(f"--eval_sets: {e}") from None
                log(f"note: {name} x{s} not evaluated ({e})")
    return out


# ------------------------------------------------------------------ run

def _setup_precision(mode: str):
    import keras

    from edsr_tf.precision import KERAS_POLICIES, explain_mixed_precision

    try:
        resolved, why = explain_mixed_precision(mode)
    except ValueError as e:
        raise TrainError(f"--mixed_precision: {e}") from None
    if why:
        # auto → fp16 is loss-scaled too: compile() wraps the optimizer under mixed_float16.
        log(f"--mixed_precision={mode} → {resolved} ({why})")
    policy = KERAS_POLICIES[resolved]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    return previous


def _atomic_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _lock_job_dir(out: Path, worker):
    """Takes the job folder's lock (:mod:`edsr_tf.training.joblock`); refuses a folder in use."""
    from edsr_tf.training.joblock import JobLock, describe_holder

    lock = JobLock(out, worker.index).acquire()
    if lock.stale:
        log(f"note: took over the stale lock {lock.path} of {describe_holder(lock.stale)} "
            "(that run is gone)")
    return lock


def _check_job_dir(opts: TrainOptions, out: Path, config, worker) -> tuple[Path, Path, bool]:
    """Refuses to silently mix runs; returns (run_config.json, checkpoints/, resume?).

    Checkpoints are looked for as files (``ckpt-N.*``) and as the state file, so a
    folder whose state file is broken or stale is still seen as holding a run.
    """
    from edsr_tf.training.loop import holds_checkpoints

    run_file = out / "run_config.json"
    ckpt_dir = out / "checkpoints"
    has_ckpt = holds_checkpoints(ckpt_dir / f"worker_{worker.index}" if worker.count > 1 else ckpt_dir)
    if has_ckpt and not opts.resume:
        raise TrainError(
            f"{ckpt_dir} already holds a checkpoint: pass --resume to continue it, or use another --out_dir"
        )
    if has_ckpt and run_file.is_file():
        # Same job dir must mean same model.
        try:
            saved = json.loads(run_file.read_text()).get("model")
        except (OSError, ValueError, AttributeError) as e:
            raise TrainError(f"--resume: {run_file} is unreadable ({type(e).__name__}: {e})",
                             failed_work=isinstance(e, (OSError, json.JSONDecodeError))) from None
        if saved != config.to_dict():
            raise TrainError(
                f"--resume: {out} was trained with model {saved}, not {config.to_dict()}"
            )
    return run_file, ckpt_dir, has_ckpt


def _resume(loop) -> int:
    """Restores the newest checkpoint that restores cleanly, saying which and why; returns its step."""
    from edsr_tf.training.loop import STATE_FILE, CheckpointError

    state = loop.state
    try:
        step = loop.resume()
    except CheckpointError as e:
        raise TrainError(f"--resume: {e}", failed_work=True) from None
    if state.state_problem:
        log(f"--resume: {state.directory / STATE_FILE} {state.state_problem}; "
            "found the checkpoints from their files")
    for prefix, reason in state.skipped:
        log(f"--resume: skipped {prefix}: {reason}")
    for path in state.removed:
        log(f"--resume: removed {path}: checkpoint data without its .index (an interrupted write)")
    newest = ", the newest checkpoint that restores" if state.skipped else ""
    log(f"resumed from {state.restored_from} (step {step}{newest})")
    return step


@dataclasses.dataclass
class _Job:
    """What the set-up step decided: model config, distribution, job folder (locked)."""

    out: Path
    config: Any
    strategy: Any
    worker: Any
    local_batch: int
    lock: Any
    run_file: Path
    ckpt_dir: Path
    has_ckpt: bool

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


@dataclasses.dataclass
class _Data:
    source: Any
    dataset: Any
    val_sets: list
    bench_sets: list


#: Largest ``--seed``: numpy's seed range (< 2**32) with room for the per-worker offsets.
MAX_SEED = 2**31 - 1


def _set_up_job(opts: TrainOptions) -> _Job:
    """Model config, strategy and batch split; creates and locks the job folder, checks it.

    On success the caller owns ``job.lock`` (release it when the run ends).
    """
    from edsr_tf.cli_args import output_path_error
    from edsr_tf.training.strategy import make_strategy, worker_info

    if not 0 <= opts.seed <= MAX_SEED:  # numpy seeds are < 2**32; workers add offsets to it
        raise TrainError(f"--seed must be in [0, {MAX_SEED}], got {opts.seed}")
    if opts.data_range is not None:  # a usage error (exit 2), not a data failure
        from edsr_tf.data import DataError
        from edsr_tf.data.sources import parse_data_range

        try:
            parse_data_range(opts.data_range)
        except DataError as e:
            raise TrainError(f"--data_range: {e}") from None
    out = Path(opts.out_dir)
    problem = output_path_error(out, "--out_dir", folder=True)
    if problem:  # a file, a dangling symlink, an unwritable parent: before anything is made
        raise TrainError(problem)
    config = model_config(opts)
    try:
        strategy = make_strategy(opts.strategy)
    except ValueError as e:
        raise TrainError(f"--strategy={opts.strategy}: {e}") from None
    worker = worker_info(strategy)
    replicas = strategy.num_replicas_in_sync
    if opts.batch_size % replicas:
        raise TrainError(
            f"--batch_size {opts.batch_size} (global) is not divisible by the {replicas} replicas"
        )
    if worker.is_chief:
        out.mkdir(parents=True, exist_ok=True)
    # One training per job folder at a time.
    lock = _lock_job_dir(out, worker)
    try:
        run_file, ckpt_dir, has_ckpt = _check_job_dir(opts, out, config, worker)
    except BaseException:
        lock.release()
        raise
    return _Job(out, config, strategy, worker, opts.batch_size // worker.count, lock,
                run_file, ckpt_dir, has_ckpt)


def _seed_and_precision(opts: TrainOptions):
    """Seeds Keras/TF, op determinism if asked, dtype policy; returns the previous policy."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(opts.seed)
    if opts.deterministic:
        tf.config.experimental.enable_op_determinism()
    mode = opts.mixed_precision
    if opts.qat and mode != "none":
        if mode != "auto":
            raise TrainError(f"--qat simulates int8 in float32: drop --mixed_precision={mode}")
        log("--qat: float32 (the int8 simulation), --mixed_precision=auto not applied")
        mode = "none"
    return _setup_precision(mode)


def _build_data(opts: TrainOptions, job: _Job) -> _Data:
    """Training batches of this worker; validation and benchmark sets (chief only)."""
    from edsr_tf.data import build_train_dataset
    from edsr_tf.data.degrade import Degradation

    worker, config = job.worker, job.config
    # Workers of one job may share out_dir: each writes its own copy of generated data.
    source = _data_source(opts, job.out / "data" / (f"worker_{worker.index}" if worker.count > 1 else ""))
    dataset = build_train_dataset(
        source, config.scales, patch_size=opts.patch_size, batch_size=job.local_batch,
        # Workers draw different patches; a single worker keeps the seed as given.
        # Data order is always deterministic: exact --resume depends on it.
        seed=opts.seed + 7919 * worker.index, deterministic=True,
        cache_dir=opts.cache_dir, degradation=Degradation.from_dict(opts.degradation),
    )
    if opts.degradation:
        log(f"training LR: {Degradation.from_dict(opts.degradation).describe()}")
    val_sets = validation_sets(opts, source, config.scales) if worker.is_chief else []
    bench_sets = benchmark_sets(opts, config.scales) if worker.is_chief else []
    return _Data(source, dataset, val_sets, bench_sets)


def _learning_rate(opts: TrainOptions):
    from edsr_tf.training.schedule import cosine_schedule, lr_schedule

    if opts.lr_schedule == "cosine":
        try:
            return cosine_schedule(opts.lr, opts.steps, final_ratio=opts.lr_final_ratio,
                                   warmup_steps=opts.warmup_steps)
        except ValueError as e:
            raise TrainError(f"--lr_schedule=cosine: {e}") from None
    return lr_schedule(opts.lr, opts.lr_decay_steps, opts.lr_decay_factor)


def _build_trainer(opts: TrainOptions, job: _Job, data: _Data):
    """The model (optionally initialised from ``--init_from``, optionally wrapped for
    quantization-aware training) in a compiled :class:`SRTrainer`, and the function that
    saves it (the float weights, plus the int8 ranges under ``--qat``)."""
    from edsr_tf.models import build_model, save_model
    from edsr_tf.training.schedule import make_optimizer
    from edsr_tf.training.trainer import SRTrainer

    with job.strategy.scope():
        model = build_model(job.config)
        if opts.init_from:
            skipped = init_from_weights(model, job.config, opts.init_from)
            log(f"initialised from {opts.init_from}" +
                (f" (skipped {', '.join(skipped)})" if skipped else ""))
        net, ranges_of = model, None
        if opts.qat:
            net, ranges_of = _qat_model(opts, job, model, data)
        trainer = SRTrainer(net, job.config)
        optimizer = make_optimizer(_learning_rate(opts), loss_scale=opts.mixed_precision == "fp16")
        trainer.compile(optimizer=optimizer, jit_compile=opts.jit_compile)

    def save(path):
        return save_model(model, path, job.config, int8_ranges=ranges_of() if ranges_of else None)

    return trainer, save


def _qat_model(opts: TrainOptions, job: _Job, model, data: _Data):
    """``--qat``: the int8-simulating model around ``model``; its ranges come from the
    ``--init_from`` file when it holds some (a QAT model), else from calibration on the
    first training batches. A resumed run restores them from the checkpoint."""
    from edsr_tf.models import read_int8_ranges
    from edsr_tf.models.qat import QATError, calibrate, int8_ranges, quantize_model

    try:
        stored = read_int8_ranges(opts.init_from) if opts.init_from else None
        qat = quantize_model(model, stored)
        if stored:
            log(f"--qat: int8 ranges from {opts.init_from}")
        else:
            batches = [lr.numpy() for lr, _ in data.dataset.take(opts.qat_calibration_batches)]
            calibrate(model, qat, batches, seed=opts.seed)
            log(f"--qat: int8 ranges calibrated on {len(batches)} training batches")
    except QATError as e:
        raise TrainError(f"--qat: {e}") from None
    return qat, lambda: int8_ranges(qat)


def _start_loop(opts: TrainOptions, job: _Job, trainer, dataset):
    """The step loop, resumed when the folder holds checkpoints; writes run_config.json."""
    from edsr_tf.training.loop import TrainLoop

    loop = TrainLoop(trainer, dataset, strategy=job.strategy, checkpoint_dir=job.ckpt_dir,
                     checkpoint_every=opts.ckpt_every, max_to_keep=opts.keep_checkpoints)
    if job.has_ckpt:
        _resume(loop)
    elif opts.resume:
        log(f"--resume: no checkpoint in {job.ckpt_dir} yet, starting from step 0")
    if job.worker.is_chief:
        _atomic_json(job.run_file, {"model": job.config.to_dict(),
                                    "options": dataclasses.asdict(opts) | {"eval_sets": list(opts.eval_sets)}})
        config, model = job.config, trainer.sr_model
        params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        log(f"{config.preset or config.arch} x{'/'.join(map(str, config.scales))}: "
            f"{config.n_resblocks} blocks, {config.n_feats} feats, {params:,} params | "
            f"{job.replicas} replica(s), {job.worker.count} worker(s), global batch {opts.batch_size}, "
            f"patch {opts.patch_size} | steps {loop.step}->{opts.steps} | {job.out}")
    return loop


def _run_loop(opts: TrainOptions, job: _Job, loop, data: _Data, save):
    """Trains to ``opts.steps`` with progress/TensorBoard and validation callbacks.

    Returns (seconds trained, the :class:`Validation` callback or None).
    """
    import tensorflow as tf

    from edsr_tf.training.callbacks import ProgressLogger, Validation

    chief = job.worker.is_chief
    config = job.config
    writer = tf.summary.create_file_writer(str(job.out / "logs" / "train")) if chief else None
    callbacks = [ProgressLogger(opts.steps, opts.batch_size, log_every=opts.log_every,
                                writer=writer, enabled=opts.progress and chief)]
    validation = None
    if data.val_sets and opts.eval_every > 0:
        validation = Validation(data.val_sets, opts.eval_every, best_path=job.out / "best.weights.h5",
                                best_psnr=loop.state.best_psnr,
                                save_fn=save, writer=writer,
                                tile=opts.eval_tile or None, is_chief=chief)
        callbacks.append(validation)
    t0 = time.perf_counter()
    try:
        loop.run(opts.steps, callbacks)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
        _raise_for_bad_files(e, data.source, config.scales)
    train_time = time.perf_counter() - t0
    if writer is not None:
        writer.flush()
    return train_time, validation


def _finish(opts: TrainOptions, job: _Job, loop, data: _Data, validation, save) -> tuple[list[dict], str]:
    """Chief only: best/final weights, then the final table against bicubic (eval.md/.json).

    Returns (the table's rows, the markdown table); ``([], "")`` without evaluation sets.
    """
    from edsr_tf.evaluation import evaluate_set, markdown_table, write_results

    model, config, out = loop.trainer.sr_model, job.config, job.out
    if validation is not None and not (out / "best.weights.h5").exists():
        validation.run(loop.step)  # no validation ran yet: make best.weights.h5 exist
    final = save(out / "final.weights.h5")
    log(f"wrote {final}")
    rows = [evaluate_set(model, es, bicubic=True, tile=opts.eval_tile or None)
            for es in data.val_sets + data.bench_sets]
    if not rows:
        return [], ""
    title = (f"Final model ({config.preset or config.arch}, step {loop.step}) vs bicubic: "
             "PSNR (dB) / SSIM")
    table = markdown_table(rows, title=title)
    write_results(out, rows, title=title, extra={"step": loop.step, "model": config.to_dict()})
    log("\n" + table)
    return rows, table


def train(opts: TrainOptions) -> dict:
    """Runs training as configured; returns ``{"step", "train_seconds", "results", "table"}``.

    Steps: set up and lock the job folder, seed and precision, data, model + optimizer,
    the loop (resumed if the folder holds checkpoints), final evaluation (chief only).
    The job lock and the global dtype policy are released/restored however it ends.
    """
    import keras

    job = _set_up_job(opts)
    previous_policy = None
    try:
        previous_policy = _seed_and_precision(opts)
        data = _build_data(opts, job)
        trainer, save = _build_trainer(opts, job, data)
        loop = _start_loop(opts, job, trainer, data.dataset)
        train_time, validation = _run_loop(opts, job, loop, data, save)
        result = {"step": loop.step, "train_seconds": train_time, "results": [], "table": ""}
        if job.worker.is_chief:
            rows, table = _finish(opts, job, loop, data, validation, save)
            result.update(results=rows, table=table)
        return result
    finally:
        if previous_policy is not None:
            keras.config.set_dtype_policy(previous_policy)
        job.lock.release()


def _raise_for_bad_files(error: Exception, source, scales: Sequence[int]) -> None:
    """Turns TF's anonymous decode failure into a :class:`DataError` naming the file(s)."""
    from edsr_tf.data import DataError
    from edsr_tf.data.cache import find_unreadable

    text = str(error)
    if "Decode" not in text and "PNG" not in text and "JPEG" not in text:
        raise error
    bad = find_unreadable(source, scales) if source.kind in ("div2k", "folder") else []
    if not bad:
        raise error
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise DataError(f"unreadable training image {bad[0]}{more}; fix or remove it") from None


def main(argv: Sequence[str]) -> None:
    """absl entry point: one-line ``error: ...`` messages; exit 2 for a bad configuration
    (:class:`TrainError`, stray arguments), 1 when the training fails, 130 on Ctrl-C."""
    from edsr_tf.cli_args import EXIT_FAILED, EXIT_USAGE, print_error
    from edsr_tf.training.flags import FLAGS

    if len(argv) > 1:
        print_error(f"unexpected arguments {list(argv[1:])} (flags start with --; "
                    f"see {argv[0]} --helpshort)")
        sys.exit(EXIT_USAGE)
    from absl import logging as absl_logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    absl_logging.set_verbosity(absl_logging.WARNING)  # TF's per-checkpoint INFO lines
    expected = _expected_errors()
    try:
        train(TrainOptions.from_flags(FLAGS))
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same flags plus --resume "
              f"(last checkpoint in {Path(FLAGS.out_dir) / 'checkpoints'})", file=sys.stderr)
        sys.exit(130)
    except expected as e:
        if os.environ.get("EDSR_TF_DEBUG"):
            raise
        print_error(first_line(e))
        sys.exit(EXIT_USAGE if isinstance(e, TrainError) and not e.failed_work else EXIT_FAILED)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from edsr_tf.benchmark_sets import DatasetNotFoundError
    from edsr_tf.data import DataError
    from edsr_tf.images import ImageReadError
    from edsr_tf.models.io import ModelFileError
    from edsr_tf.training.joblock import JobLockError
    from edsr_tf.training.loop import CheckpointError

    return (TrainError, DataError, DatasetNotFoundError, ModelFileError, CheckpointError,
            JobLockError, ImageReadError, FileNotFoundError, NotADirectoryError, PermissionError)
