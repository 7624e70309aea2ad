"""tf.distribute: MirroredStrategy over 2 logical CPUs and a 2-process MultiWorkerMirroredStrategy
give the weights of single-device training with the same global batch.

Each run happens in a fresh Python process: logical devices and multi-worker
collectives must be configured before TensorFlow initialises its runtime.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    '''
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    from edsr_tf.models import ModelConfig, build_model
    from edsr_tf.training import SRTrainer, TrainLoop, lr_schedule, make_optimizer
    from edsr_tf.training.trainer import log_value, split_batch

    GLOBAL_BATCH, STEPS = 4, 3
    config = ModelConfig("edsr", (2,), n_resblocks=2, n_feats=8)

    def global_batches():
        def make(i):
            hr = tf.random.stateless_uniform([GLOBAL_BATCH, 20, 20, 3], seed=[11, i], maxval=255.0)
            hr = tf.nn.avg_pool2d(hr, 3, 1, "SAME")  # some spatial structure
            return tf.nn.avg_pool2d(hr, 2, 2, "VALID"), hr
        return tf.data.Dataset.range(1 << 40).map(make)

    def train(strategy, dataset):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = build_model(config)
            trainer = SRTrainer(model, config)
            trainer.compile(optimizer=make_optimizer(lr_schedule(1e-3, 0)))
        init = {v.path: v.numpy().copy() for v in model.weights}
        losses = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, step, logs=None):
                losses.append(log_value(logs, "batch_loss"))

        TrainLoop(trainer, dataset, strategy=strategy).run(STEPS, [Record()])
        final = {v.path: v.numpy() for v in model.weights}
        return init, final, losses

    if mode == "mirrored":
        results = {}
        for name, strategy in (("single", tf.distribute.get_strategy()),
                               ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
            init, final, losses = train(strategy, global_batches())
            results[name] = dict(replicas=strategy.num_replicas_in_sync, losses=losses)
            np.savez(os.path.join(out, name + "_final.npz"), **final)
            np.savez(os.path.join(out, name + "_init.npz"), **init)
        json.dump(results, open(os.path.join(out, "result.json"), "w"))
    else:  # multiworker: this worker feeds its half of every global batch
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        data = global_batches().map(lambda lr, hr: split_batch((lr, hr), 2, index))
        init, final, losses = train(strategy, data)
        np.savez(os.path.join(out, f"worker{index}_final.npz"), **final)
        json.dump({"losses": losses, "replicas": strategy.num_replicas_in_sync},
                  open(os.path.join(out, f"worker{index}.json"), "w"))
    '''
)


def _env(**extra) -> dict:
    env = dict(os.environ)  # edsr_tf is installed (pip install -e .): no PYTHONPATH needed
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "dist_run.py"
    path.write_text(SCRIPT)
    return path


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory) -> Path:
    """One process: the same training on one device, then mirrored over 2 logical CPUs."""
    tmp_path = tmp_path_factory.mktemp("mirrored")
    proc = subprocess.run([sys.executable, str(_script(tmp_path)), "mirrored", str(tmp_path)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    _check(proc)
    return tmp_path


def test_mirrored_over_two_cpus_matches_one_device(mirrored_run):
    tmp_path = mirrored_run
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["single"]["replicas"] == 1 and result["mirrored"]["replicas"] == 2
    np.testing.assert_allclose(result["mirrored"]["losses"], result["single"]["losses"], rtol=1e-5)
    assert _max_diff(_load(tmp_path / "single_init.npz"), _load(tmp_path / "mirrored_init.npz")) == 0
    single, mirrored = _load(tmp_path / "single_final.npz"), _load(tmp_path / "mirrored_final.npz")
    trained = _max_diff(single, _load(tmp_path / "single_init.npz"))
    diff = _max_diff(single, mirrored)
    print(f"mirrored vs single: max |dw| {diff:.3g} (training moved weights by {trained:.3g})")
    assert trained > 1e-3
    assert diff < 1e-5


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_two_local_workers_agree_and_match_one_device(tmp_path, mirrored_run):
    script = _script(tmp_path)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, str(script), "multiworker", str(tmp_path)],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            outputs.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, err in outputs:
        assert code == 0, err[-3000:]
    w0, w1 = _load(tmp_path / "worker0_final.npz"), _load(tmp_path / "worker1_final.npz")
    ref = _load(mirrored_run / "single_final.npz")
    info = json.loads((tmp_path / "worker0.json").read_text())
    assert info["replicas"] == 2
    agree, vs_single = _max_diff(w0, w1), _max_diff(w0, ref)
    print(f"multi-worker: workers differ by {agree:.3g}, vs one device {vs_single:.3g}")
    assert agree == 0
    assert vs_single < 1e-5
    single_losses = json.loads((mirrored_run / "result.json").read_text())["single"]["losses"]
    np.testing.assert_allclose(info["losses"], single_losses, rtol=1e-5)
