"""Faults around a training job: broken checkpoints under ``--resume``, a failed checkpoint
write, and two runs on one ``--out_dir`` (the job-folder lock)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edsr_tf.training.app import TrainError, TrainOptions, train
from edsr_tf.training.joblock import JobLock, JobLockError, lock_path
from edsr_tf.training.loop import CheckpointError

REPO = Path(__file__).resolve().parents[1]

TINY = dict(data_source="samples", model="edsr_baseline", scales=(2,), n_resblocks=1, n_feats=8,
            patch_size=8, batch_size=2, steps=6, lr=1e-3, ckpt_every=2, keep_checkpoints=3,
            eval_every=0, log_every=100, val_limit=1, progress=False)
# The same run as train.py flags.
TINY_FLAGS = ["--data_source=samples", "--model=edsr_baseline", "--scale=2", "--n_resblocks=1",
              "--n_feats=8", "--patch_size=8", "--batch_size=2", "--steps=6", "--lr=0.001",
              "--ckpt_every=2", "--keep_checkpoints=3", "--eval_every=0", "--log_every=100",
              "--val_limit=1", "--progress=false"]


def _tiny(out: Path, **kw) -> TrainOptions:
    return TrainOptions(out_dir=str(out), **(TINY | kw))


def _run_cli(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _last_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _final_diff(a: Path, b: Path) -> float:
    """Max |difference| of the weights and Adam slots in the two jobs' step-6 checkpoints."""
    import tensorflow as tf

    ra = tf.train.load_checkpoint(str(a / "checkpoints" / "ckpt-6"))
    rb = tf.train.load_checkpoint(str(b / "checkpoints" / "ckpt-6"))
    keys = [k for k in ra.get_variable_to_shape_map()
            if k.startswith(("weights/", "optimizer/")) and "OBJECT_GRAPH" not in k]
    assert any(k.startswith("weights/") for k in keys) and any(k.startswith("optimizer/") for k in keys)
    return max(float(np.abs(ra.get_tensor(k) - rb.get_tensor(k)).max()) for k in keys)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``straight``: 6 uninterrupted steps; ``stopped``: the same run killed after step 4 (ckpt-2, ckpt-4)."""
    base = tmp_path_factory.mktemp("runs")
    train(_tiny(base / "straight"))
    train(_tiny(base / "stopped", steps=4))
    ckpts = sorted(p.name for p in (base / "stopped" / "checkpoints").glob("ckpt-*.index"))
    assert ckpts == ["ckpt-2.index", "ckpt-4.index"]
    return base


def _stopped_copy(runs: Path, dest: Path) -> Path:
    shutil.copytree(runs / "stopped", dest, copy_function=shutil.copy2)
    return dest / "checkpoints"


# ------------------------------------------------------------------ --resume with broken checkpoints

@pytest.mark.parametrize("state, problem", [("garbage{{{", "is unreadable"), ("", "is empty")])
def test_unreadable_state_file_resumes_from_the_newest_checkpoint_file(runs, tmp_path, capsys, state,
                                                                       problem):
    ckpts = _stopped_copy(runs, tmp_path / "job")
    (ckpts / "checkpoint").write_text(state)
    kept = {n: (ckpts / n).stat().st_mtime_ns for n in ("ckpt-2.index", "ckpt-4.index")}

    assert train(_tiny(tmp_path / "job", resume=True))["step"] == 6  # was: raw ValueError / restart
    out = capsys.readouterr().out
    assert f"{ckpts / 'checkpoint'} {problem}" in out
    assert f"resumed from {ckpts / 'ckpt-4'} (step 4)" in out
    assert "starting from step 0" not in out
    # Nothing older was rewritten by a run that started over.
    assert {n: (ckpts / n).stat().st_mtime_ns for n in kept} == kept
    assert _final_diff(runs / "straight", tmp_path / "job") <= 1e-6
    import tensorflow as tf

    assert tf.train.latest_checkpoint(str(ckpts)) == str(ckpts / "ckpt-6")  # state file repaired


def test_resume_removes_orphaned_checkpoint_data(runs, tmp_path, capsys):
    """Data of a checkpoint whose write was interrupted (no .index: Ctrl-C mid-save) is deleted on resume."""
    ckpts = _stopped_copy(runs, tmp_path / "job")
    orphan = ckpts / "ckpt-5.data-00000-of-00001"  # a step the resumed run never writes (ckpt_every 2)
    shutil.copy2(ckpts / "ckpt-4.data-00000-of-00001", orphan)

    assert train(_tiny(tmp_path / "job", resume=True))["step"] == 6
    out = capsys.readouterr().out
    assert f"--resume: skipped {ckpts / 'ckpt-5'}: its .index file is missing" in out, out
    assert f"--resume: removed {orphan}: checkpoint data without its .index" in out, out
    assert not orphan.exists()
    assert (ckpts / "ckpt-4.index").exists() and (ckpts / "ckpt-6.index").exists()
    assert _final_diff(runs / "straight", tmp_path / "job") <= 1e-6


@pytest.mark.parametrize("damage, reason", [
    ("truncated data", "it is unreadable"),
    ("no index", "its .index file is missing"),
    ("no files", None),  # the state file still names ckpt-4
])
def test_broken_newest_checkpoint_falls_back_to_the_previous_one(runs, tmp_path, capsys, damage, reason):
    ckpts = _stopped_copy(runs, tmp_path / "job")
    if damage == "truncated data":
        _truncate(ckpts / "ckpt-4.data-00000-of-00001")
    elif damage == "no index":
        (ckpts / "ckpt-4.index").unlink()
    else:
        for p in ckpts.glob("ckpt-4.*"):
            p.unlink()
    ckpt2 = (ckpts / "ckpt-2.index").stat().st_mtime_ns

    assert train(_tiny(tmp_path / "job", resume=True))["step"] == 6
    out = capsys.readouterr().out
    if reason:
        assert f"--resume: skipped {ckpts / 'ckpt-4'}: {reason}" in out, out
        assert f"resumed from {ckpts / 'ckpt-2'} (step 2, the newest checkpoint that restores)" in out
    else:
        assert f"{ckpts / 'checkpoint'} names ckpt-4, whose files are missing" in out, out
        assert f"resumed from {ckpts / 'ckpt-2'} (step 2)" in out
    assert "starting from step 0" not in out
    assert (ckpts / "ckpt-2.index").stat().st_mtime_ns == ckpt2  # kept, not overwritten by a restart
    # The failed restore of ckpt-4 left nothing behind: exactly the uninterrupted run's weights.
    assert _final_diff(runs / "straight", tmp_path / "job") <= 1e-6


def test_resume_is_refused_and_nothing_touched_when_no_checkpoint_restores(runs, tmp_path):
    ckpts = _stopped_copy(runs, tmp_path / "job")
    for p in ckpts.glob("ckpt-*.data-*"):
        _truncate(p)
    before = _snapshot(ckpts)
    outputs = {n: (tmp_path / "job" / n).read_bytes() for n in ("run_config.json", "final.weights.h5")}

    proc = _run_cli([f"--out_dir={tmp_path / 'job'}", *TINY_FLAGS, "--resume"])
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = _last_error_line(proc)
    assert last.startswith(f"error: --resume: none of the 2 checkpoints in {ckpts} restores"), last
    assert "ckpt-4: it is unreadable" in last and "ckpt-2: it is unreadable" in last
    assert _snapshot(ckpts) == before
    assert {n: (tmp_path / "job" / n).read_bytes() for n in outputs} == outputs
    assert not lock_path(tmp_path / "job").exists()


@pytest.mark.parametrize("state", ["garbage{{{", "", None])
def test_checkpoint_files_without_resume_are_refused_whatever_the_state_file(runs, tmp_path, state):
    ckpts = _stopped_copy(runs, tmp_path / "job")
    if state is None:
        (ckpts / "checkpoint").unlink()
    else:
        (ckpts / "checkpoint").write_text(state)
    before = _snapshot(ckpts)
    with pytest.raises(TrainError, match="already holds a checkpoint: pass --resume"):
        train(_tiny(tmp_path / "job"))
    assert _snapshot(ckpts) == before
    assert not lock_path(tmp_path / "job").exists()  # released on the refusal


# ------------------------------------------------------------------ a checkpoint write that fails

def test_failed_checkpoint_write_leaves_no_temp_dir_and_keeps_the_older_ones(runs, tmp_path, monkeypatch):
    from tensorflow.python.checkpoint import functional_saver

    real_merge = functional_saver.gen_io_ops.merge_v2_checkpoints
    temp_dirs_seen = []

    def disk_full_at_step_4(prefixes, dest, *args, **kwargs):
        dest_path = dest.numpy().decode()
        if dest_path.endswith("ckpt-4"):
            temp_dirs_seen.extend(Path(dest_path).parent.glob("*_temp"))
            raise OSError(28, "No space left on device")
        return real_merge(prefixes, dest, *args, **kwargs)

    monkeypatch.setattr(functional_saver.gen_io_ops, "merge_v2_checkpoints", disk_full_at_step_4)
    job = tmp_path / "job"
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*ckpt-4 \(OSError"):
        train(_tiny(job))
    monkeypatch.undo()

    ckpts = job / "checkpoints"
    assert temp_dirs_seen  # the failure hit after TF had written its parts
    assert not list(ckpts.glob("*_temp")), sorted(p.name for p in ckpts.iterdir())
    assert not list(ckpts.glob("ckpt-4*"))
    assert sorted(p.name for p in ckpts.glob("ckpt-2.*")) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    import tensorflow as tf

    assert tf.train.latest_checkpoint(str(ckpts)) == str(ckpts / "ckpt-2")
    assert not lock_path(job).exists()  # released on the exception

    # Once there is room again, --resume continues exactly.
    assert train(_tiny(job, resume=True))["step"] == 6
    assert _final_diff(runs / "straight", job) <= 1e-6


# ------------------------------------------------------------------ one run per job folder

HOLDER = ("import sys, time\n"
          "from edsr_tf.training.joblock import JobLock\n"
          "lock = JobLock(sys.argv[1]).acquire()\n"
          "print('locked', flush=True)\n"
          "time.sleep(300)\n")


def test_second_run_on_the_same_folder_is_refused(tmp_path):
    job = tmp_path / "job"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(job)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobLockError) as err:
            train(_tiny(job, steps=2))
        msg = str(err.value)
        assert str(job) in msg and f"pid {holder.pid} on {socket.gethostname()}" in msg, msg
        assert not (job / "run_config.json").exists() and not (job / "checkpoints").exists()

        proc = _run_cli([f"--out_dir={job}", *TINY_FLAGS, "--steps=2"], timeout=120)
        assert proc.returncode == 1
        last = _last_error_line(proc)
        assert last.startswith(f"error: {job} is in use by another training run "
                               f"(pid {holder.pid}"), last
        assert json.loads(lock_path(job).read_text())["pid"] == holder.pid  # the holder's lock intact
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    job = tmp_path / "job"
    job.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(job).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                          "started": "2024-01-01 00:00:00"}))
    assert train(_tiny(job, steps=2))["step"] == 2
    out = capsys.readouterr().out
    assert f"took over the stale lock {lock_path(job)} of pid {dead.pid}" in out, out
    assert not lock_path(job).exists()  # released at the end


def test_job_lock_is_exclusive_and_released():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with JobLock(d) as first:
            assert json.loads(first.path.read_text())["pid"] == os.getpid()
            with pytest.raises(JobLockError, match=f"{d} is in use .*pid {os.getpid()}"):
                JobLock(d).acquire()
            # Workers of one multi-worker job lock their own files.
            with JobLock(d, worker_index=1) as other:
                assert other.path.name == "train.worker_1.lock"
        assert not first.path.exists()
        with JobLock(d) as again:
            assert again.held and again.stale is None


# ------------------------------------------------------------------ Ctrl-C

class _CtrlCInFinalizer:
    """Sends this process a SIGINT from inside ``__del__``: a KeyboardInterrupt raised there is
    printed as "Exception ignored" and dropped by Python (how a single Ctrl-C was lost, with
    TensorFlow's many finalizers running between steps)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs at one of these bytecodes, still in __del__
            pass


def test_a_single_ctrl_c_is_never_lost_and_stops_before_the_next_step(tmp_path, monkeypatch, capsys):
    from edsr_tf.training.interrupt import FIRST_TEXT
    from edsr_tf.training.loop import TrainLoop

    one_step = TrainLoop._one_step
    calls = []

    def step_then_ctrl_c(self):
        logs = one_step(self)
        calls.append(1)
        if len(calls) == 3:
            _CtrlCInFinalizer()  # created and collected at once
        return logs

    monkeypatch.setattr(TrainLoop, "_one_step", step_then_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_tiny(out))
    assert len(calls) == 3, "the run went on past the step in which Ctrl-C came"
    assert FIRST_TEXT in capsys.readouterr().err
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.index")) == ["ckpt-2.index"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_second_ctrl_c_interrupts_at_once():
    from edsr_tf.training.interrupt import deferred_interrupt

    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):
                pass
            assert stop.requested
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):
                pass
            pytest.fail("the second Ctrl-C did not interrupt")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
