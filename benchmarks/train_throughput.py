"""Training throughput (LR patches/s) of our Keras train step vs a plain PyTorch step.

    python benchmarks/train_throughput.py [--presets edsr_baseline,edsr,mdsr_baseline]
        [--batch edsr_baseline=16,edsr=2,mdsr_baseline=16] [--precision fp32,bf16]
        [--patch_size 48] [--steps 4] [--rounds 3] [--jit_compile] [--json results.json]

For each preset, the same network (identical parameter count, checked) is trained on
random LR/HR patches with L1 + Adam: ours through ``SRTrainer`` and the checkpointable
``TrainLoop`` exactly as ``train.py`` runs it; the reference is a plain PyTorch
(CPU) ``zero_grad / forward / L1 / backward / Adam step`` of EDSR-PyTorch's module tree,
``tests/torch_reference.py`` (the one PyTorch EDSR/MDSR, also the weight-import tests').
Timed rounds alternate between the two frameworks (the machine may be shared) and the
median round is reported; each framework runs in its own process so that their thread
pools do not compete. MDSR cycles through its scales, one per batch, as in training.
Ours uses all cores; PyTorch gets the faster of all cores and one thread (its OpenMP pool
can collapse on a busy machine).

Both sides run the same precision: ``fp32`` is ours under the float32 policy against
PyTorch in float32; ``bf16`` is ours under ``mixed_bfloat16`` (what
``--mixed_precision=bf16`` trains with) against PyTorch's standard CPU mixed precision,
``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward + loss. The default is both
where the CPU has native bfloat16 (``edsr_tf.precision.cpu_supports_bf16``), else fp32. A
last line compares what ``--mixed_precision=auto`` picks on this machine with PyTorch fp32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_BATCH = {"edsr_baseline": 16, "edsr": 2, "mdsr_baseline": 16, "mdsr": 16}
PRECISIONS = ("fp32", "bf16")
#: Our dtype policy per benchmark precision (``--mixed_precision`` none / bf16).
KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}


# ----------------------------------------------------------------------------- PyTorch reference

def torch_model(arch: str, scales, n_resblocks: int, n_feats: int, res_scale: float):
    """EDSR / MDSR as EDSR-PyTorch builds them (NCHW, PixelShuffle upsampler): tests/torch_reference.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch_reference  # imports torch: only in the PyTorch worker

    if arch == "edsr":
        return torch_reference.EDSR(scales[0], n_resblocks, n_feats, res_scale)
    return torch_reference.MDSR(scales, n_resblocks, n_feats)


class TorchBench:
    def __init__(self, config, batches, precision: str = "fp32"):
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(os.cpu_count() or 1)
        self.torch = torch
        self.model = torch_model(config.arch, config.scales, config.n_resblocks, config.n_feats,
                                 config.res_scale)
        self.scales = list(config.scales)
        # The mean shifts are frozen 1x1 convs (constants in ours): not counted, not trained.
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        # NHWC numpy → NCHW tensors, (scale, lr, hr)
        self.batches = [(s, torch.from_numpy(lr.transpose(0, 3, 1, 2).copy()),
                         torch.from_numpy(hr.transpose(0, 3, 1, 2).copy())) for s, lr, hr in batches]
        self.i = 0
        self.bf16 = precision == "bf16"

    def steps(self, n: int) -> float:
        for _ in range(n):
            scale, lr, hr = self.batches[self.i % len(self.batches)]
            self.i += 1
            self.opt.zero_grad()
            if hasattr(self.model, "set_scale"):  # MDSR: this batch's scale branch
                self.model.set_scale(self.scales.index(scale))
            # PyTorch's standard CPU mixed precision: autocast around forward + loss, backward outside.
            with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
                loss = self.torch.nn.functional.l1_loss(self.model(lr), hr)
            loss.backward()
            self.opt.step()
        return float(loss.detach())


# ----------------------------------------------------------------------------- ours

class KerasBench:
    def __init__(self, config, batches, jit_compile: bool, precision: str = "fp32"):
        import keras
        import tensorflow as tf

        from edsr_tf.models import build_model
        from edsr_tf.training import SRTrainer, TrainLoop, lr_schedule, make_optimizer

        keras.utils.set_random_seed(0)
        keras.config.set_dtype_policy(KERAS_POLICY[precision])  # as train.py's _setup_precision
        model = build_model(config)
        self.params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        trainer = SRTrainer(model, config)
        trainer.compile(optimizer=make_optimizer(lr_schedule(1e-4, 200_000)), jit_compile=jit_compile)
        per_scale = [tf.data.Dataset.from_tensors((lr, hr)).repeat() for _, lr, hr in batches]
        if len(per_scale) == 1:
            ds = per_scale[0]
        else:  # shapes differ per scale: the trainer dispatches from dynamic shapes, as in training
            order = tf.data.Dataset.range(len(per_scale)).repeat()
            ds = tf.data.Dataset.choose_from_datasets(per_scale, order)
        self.loop = TrainLoop(trainer, ds.prefetch(2))
        self.target = 0

    def steps(self, n: int) -> float:
        from edsr_tf.training.trainer import log_value

        self.target += n
        logs = self.loop.run(self.target)
        return log_value(logs, "batch_loss")  # reading it waits for the last step


# ----------------------------------------------------------------------------- driver

def _config(preset: str):
    from edsr_tf.models.config import ModelConfig

    return ModelConfig.from_preset(preset, 2 if preset.startswith("edsr") else None)


def _batches(config, batch: int, patch: int):
    rng = np.random.default_rng(0)
    return [(s, rng.uniform(0, 255, (batch, patch, patch, 3)).astype(np.float32),
             rng.uniform(0, 255, (batch, patch * s, patch * s, 3)).astype(np.float32))
            for s in config.scales]


def worker(framework: str, preset: str, batch: int, patch: int, warmup: int, jit_compile: bool,
           torch_threads: str, precision: str = "fp32") -> int:
    """Builds one framework's trainer, warms it up, then times ``N`` steps per stdin line."""
    config = _config(preset)
    batches = _batches(config, batch, patch)
    info = {}
    if framework == "keras":
        bench = KerasBench(config, batches, jit_compile, precision)
        bench.steps(warmup)
    else:
        import torch

        bench = TorchBench(config, batches, precision)
        choices = [os.cpu_count() or 1] if torch_threads == "all" else (
            [int(torch_threads)] if torch_threads.isdigit() else sorted({os.cpu_count() or 1, 1}))
        best = None
        for n in choices:  # OpenMP with all threads can collapse on a busy machine: keep the faster
            torch.set_num_threads(n)
            bench.steps(warmup)
            t0 = time.perf_counter()
            bench.steps(1)
            dt = time.perf_counter() - t0
            if best is None or dt < best[1]:
                best = (n, dt)
        torch.set_num_threads(best[0])
        info["threads"] = best[0]
    print("READY " + json.dumps({"params": bench.params, **info}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        n = int(line)
        t0 = time.perf_counter()
        loss = bench.steps(n)
        print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss}), flush=True)
    return 0


class _Worker:
    def __init__(self, framework: str, args, preset: str, batch: int, precision: str = "fp32"):
        import subprocess

        cmd = [sys.executable, __file__, "--worker", framework, "--presets", preset,
               "--batch", f"{preset}={batch}", "--patch_size", str(args.patch_size), "--warmup",
               str(args.warmup), "--torch_threads", args.torch_threads, "--precision", precision]
        if args.jit_compile:
            cmd.append("--jit_compile")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self._read("READY ")[len("READY "):])

    def _read(self, prefix: str = "") -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"benchmark worker exited (code {self.proc.wait()})")
            if line.startswith(prefix) and (prefix or line.startswith("{")):
                return line

    def time(self, steps: int) -> float:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        out = json.loads(self._read())
        if not math.isfinite(out["loss"]):
            raise SystemExit("non-finite loss")
        return out["seconds"]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def bench_preset(preset: str, batch: int, steps: int, args, precisions=("fp32",)) -> list[dict]:
    """Times both frameworks at each precision, one process each, alternating rounds over all of
    them (so that precisions are compared on the same machine load); median per process."""
    workers: dict[tuple[str, str], _Worker] = {}
    try:
        for prec in precisions:
            for name in ("keras", "torch"):  # one at a time: warm-up must not contend
                workers[name, prec] = _Worker(name, args, preset, batch, prec)
            ours, ref = workers["keras", prec].info, workers["torch", prec].info
            if ours["params"] != ref["params"]:
                raise SystemExit(f"{preset}: parameter counts differ: {ours} vs {ref}")
        times: dict[tuple[str, str], list[float]] = {key: [] for key in workers}
        for _ in range(args.rounds):
            for key, w in workers.items():
                times[key].append(w.time(steps))
    finally:
        for w in workers.values():
            w.close()
    rate = {key: steps * batch / statistics.median(v) for key, v in times.items()}
    return [{
        "preset": preset, "precision": prec, "scales": list(_config(preset).scales),
        "params": workers["keras", prec].info["params"], "batch": batch, "patch": args.patch_size,
        "steps_per_round": steps, "rounds": args.rounds,
        "torch_threads": workers["torch", prec].info["threads"],
        "keras_patches_per_s": rate["keras", prec], "torch_patches_per_s": rate["torch", prec],
        "ratio": rate["keras", prec] / rate["torch", prec],
        "keras_round_s": times["keras", prec], "torch_round_s": times["torch", prec],
    } for prec in precisions]


def parse_precisions(text: str | None) -> list[str]:
    """``--precision``: a comma list of :data:`PRECISIONS`; None: both where the CPU has bf16."""
    from edsr_tf.precision import cpu_supports_bf16

    if text is None:
        return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    out = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not out or any(t not in PRECISIONS for t in out):
        raise ValueError(f"expected a comma list of {list(PRECISIONS)}, got {text!r}")
    return out


def default_path(results: list[dict], auto: str) -> dict:
    """Ours at what ``--mixed_precision=auto`` picks vs PyTorch fp32, per preset (None: not measured)."""
    prec = {"none": "fp32", "bf16": "bf16"}.get(auto)  # fp16 (a GPU) is not benchmarked here
    rows = {(r["preset"], r["precision"]): r for r in results}
    ratios = {}
    for preset in dict.fromkeys(r["preset"] for r in results):
        ours, ref = rows.get((preset, prec)), rows.get((preset, "fp32"))
        ratios[preset] = ours["keras_patches_per_s"] / ref["torch_patches_per_s"] if ours and ref else None
    return {"auto": auto, "precision": prec, "ratios": ratios}


def parse_batches(text: str) -> dict[str, int]:
    out = dict(DEFAULT_BATCH)
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        out[name] = int(value)
    return out


def main(argv=None) -> int:
    from edsr_tf.cli_args import ArgumentParser, add_flag

    p = ArgumentParser(prog="benchmarks/train_throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="edsr_baseline,edsr,mdsr_baseline")
    p.add_argument("--batch", default="", help="per-preset batch, e.g. edsr=2 (defaults: %s)" % DEFAULT_BATCH)
    p.add_argument("--precision", default=None,
                   help="comma list of fp32,bf16, the same on both sides (default: both where the CPU "
                        "has native bfloat16, else fp32)")
    add_flag(p, "--patch_size", "--patch", type=int, default=48, help="LR patch size (paper: 48)")
    p.add_argument("--steps", type=int, default=4, help="steps per timed round (edsr: half)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per framework (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--jit_compile", action="store_true", help="XLA-compile our step")
    p.add_argument("--torch_threads", default="best",
                   help="PyTorch threads: 'best' (faster of all cores and 1), 'all', or a number")
    add_flag(p, "--json", "--out", default=None, help="also write the results as JSON here")
    p.add_argument("--worker", choices=["keras", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    batches = parse_batches(args.batch)
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    try:
        precisions = parse_precisions(args.precision)
    except ValueError as e:
        p.error(f"--precision: {e}")
    if args.worker:
        return worker(args.worker, presets[0], batches[presets[0]], args.patch_size, args.warmup,
                      args.jit_compile, args.torch_threads, precisions[0])
    import tensorflow as tf
    import torch

    from edsr_tf.precision import cpu_model_name, cpu_supports_bf16, describe_mixed_precision, \
        resolve_mixed_precision

    cpu = cpu_model_name()
    print(f"CPU: {cpu}", flush=True)
    if "bf16" in precisions and not cpu_supports_bf16():
        print("note: this CPU has no native bfloat16: both sides emulate it", flush=True)
    results = []
    for preset in presets:
        steps = max(1, args.steps // 2) if preset == "edsr" else args.steps
        for r in bench_preset(preset, batches[preset], steps, args, precisions):
            results.append(r)
            print(f"{preset} {r['precision']}: keras {r['keras_patches_per_s']:.1f} patches/s, torch "
                  f"{r['torch_patches_per_s']:.1f} patches/s ({r['torch_threads']} threads), "
                  f"ratio {r['ratio']:.2f}", flush=True)
    auto = resolve_mixed_precision("auto")
    path = default_path(results, auto)
    env = (f"{cpu}, {os.cpu_count()} CPU threads, "
           f"TF {tf.__version__}, torch {torch.__version__}"
           + (", XLA" if args.jit_compile else ""))
    print(f"\nTraining throughput (LR {args.patch_size}x{args.patch_size} patches/s, median of {args.rounds} "
          f"alternating rounds; {env})\n")
    print("| preset | scales | params | batch | precision | keras (ours) | PyTorch | ours / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['preset']} | {'/'.join(f'x{s}' for s in r['scales'])} | {r['params']:,} | "
              f"{r['batch']} | {r['precision']} | {r['keras_patches_per_s']:.1f} | "
              f"{r['torch_patches_per_s']:.1f} ({r['torch_threads']} thr) | {r['ratio']:.2f}x |")
    ratios = ", ".join(f"{k} {v:.2f}x" if v is not None else f"{k} not measured"
                       for k, v in path["ratios"].items())
    if path["precision"] is None:
        ratios += " (fp16 is not benchmarked here)"
    elif None in path["ratios"].values():
        ratios += f" (needs --precision {','.join(dict.fromkeys(['fp32', path['precision']]))})"
    print(f"\ndefault path (ours, --mixed_precision=auto → {auto}) vs PyTorch fp32: {ratios}")
    print(f"  auto: {describe_mixed_precision('auto')}")
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps({"environment": env, "cpu": cpu, "precisions": precisions,
                                   "default_path": path, "results": results}, indent=2) + "\n")
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
