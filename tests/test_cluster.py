"""Sweeps through Ray and submitit: the same trajectories as the local strategy, a
killed worker retried and resumed, shards sharing one folder. Real engines: a local Ray
instance and submitit's local executor (subprocesses)."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.executors import FAULT_ENV, parse_shard
from landscape.sweep import sweep
from landscape.trajectory import Trajectory

ELRS = [1e-3, 3e-2]


@pytest.fixture
def cfg(data_root):
    # float64: chaos at the higher ELR would amplify float32 rounding differences
    return dict(model="mlp", width=16, depth=2, dataset="mnist1d", data_root=data_root, train_subset=256,
                batch_size=64, epochs=4, device="cpu", save_every=2, dtype="float64")


def assert_same_runs(a_dir, b_dir):
    for e in ELRS:
        a, b = Trajectory(os.path.join(a_dir, f"elr{e:g}.h5")), Trajectory(os.path.join(b_dir, f"elr{e:g}.h5"))
        assert a.epochs_complete == b.epochs_complete == 4 and a.status == b.status == "done"
        for k in a.metrics:
            np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
        for k, v in a.state_dict().items():
            np.testing.assert_array_equal(b.state_dict()[k].numpy(), v.numpy(), err_msg=k)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, data_root):
    out = str(tmp_path_factory.mktemp("local") / "sw")
    sweep(ELRS, out, strategy="processes", workers=2, progress=False,
          **dict(model="mlp", width=16, depth=2, dataset="mnist1d", data_root=data_root, train_subset=256,
                 batch_size=64, epochs=4, device="cpu", save_every=2, dtype="float64"))
    return out


@pytest.mark.slow
def test_ray_equals_local_and_a_killed_worker_resumes(tmp_path, cfg, local_reference, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")  # the first worker to commit epoch 2 dies
    index = sweep(ELRS, str(tmp_path / "ray"), executor="ray", progress=False,
                  executor_options={"num_cpus": 2, "retries": 2}, **cfg)
    assert marker.exists()  # a worker was killed, and its task retried
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    assert all("host" in r["ran_on"] and "pid" in r["ran_on"] for r in index["runs"])
    assert_same_runs(local_reference, str(tmp_path / "ray"))


@pytest.mark.slow
def test_submitit_equals_local_and_a_killed_task_is_resubmitted(tmp_path, cfg, local_reference, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, f"3:{marker}")
    index = sweep(ELRS, str(tmp_path / "slurm"), executor="slurm", progress=False,
                  executor_options={"cluster": "local", "retries": 2}, **cfg)
    assert marker.exists()
    assert [r["status"] for r in index["runs"]] == ["done", "done"] and all("job" in r["ran_on"] for r in index["runs"])
    assert_same_runs(local_reference, str(tmp_path / "slurm"))
    on_disk = json.load(open(tmp_path / "slurm" / "sweep.json"))
    assert on_disk["executor"] == "slurm"


@pytest.mark.slow
def test_shards_share_one_folder(tmp_path, cfg, local_reference):
    out = str(tmp_path / "sharded")
    args = [sys.executable, "-m", "landscape", "sweep", "--elrs", ",".join(map(str, ELRS)), "-o", out, "-q",
            "--model", "mlp", "--width", "16", "--depth", "2", "--dataset", "mnist1d", "--data-root", cfg["data_root"],
            "--train-subset", "256", "--batch-size", "64", "--epochs", "4", "--device", "cpu",
            "--save-every", "2", "--dtype", "float64", "--strategy", "processes", "--workers", "1"]
    procs = [subprocess.Popen(args + ["--shard", f"{i}/2"], stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    index = json.load(open(os.path.join(out, "sweep.json")))
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    assert_same_runs(local_reference, out)


def test_bad_cluster_options(tmp_path, cfg):
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(LandscapeError, match="^shard "):
            parse_shard(bad)
    with pytest.raises(LandscapeError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("slurm")
    with pytest.raises(LandscapeError, match="^executor must be one of"):
        sweep(ELRS, str(tmp_path / "x"), executor="kubernetes", progress=False, **cfg)


@pytest.mark.slow
def test_sweeps_started_together_share_the_run_slots(tmp_path, cfg, local_reference, monkeypatch):
    """LANDSCAPE_SLOTS=1: two sweeps of two workers each, started at once, train one run at a time
    (each run's interval, from its file's creation to its last commit, overlaps no other), and
    give the same trajectories as a sweep on its own."""
    import datetime
    import h5py
    env = dict(os.environ, LANDSCAPE_SLOTS=f"1:{tmp_path / 'slots'}")
    args = ["--elrs", ",".join(map(str, ELRS)), "-q", "--model", "mlp", "--width", "16", "--depth", "2",
            "--dataset", "mnist1d", "--data-root", cfg["data_root"], "--train-subset", "256", "--batch-size", "64",
            "--epochs", "4", "--device", "cpu", "--save-every", "2", "--dtype", "float64",
            "--strategy", "processes", "--workers", "2"]
    procs = [subprocess.Popen([sys.executable, "-m", "landscape", "sweep", "-o", str(tmp_path / name), *args],
                              stderr=subprocess.PIPE, text=True, env=env) for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    spans = []
    for name in ("a", "b"):
        assert_same_runs(local_reference, str(tmp_path / name))
        for e in ELRS:
            path = tmp_path / name / f"elr{e:g}.h5"
            with h5py.File(path, "r") as h:
                spans.append((datetime.datetime.fromisoformat(h.attrs["created"]).timestamp(), path.stat().st_mtime))
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    monkeypatch.setenv("LANDSCAPE_SLOTS", "two")
    with pytest.raises(LandscapeError, match="^LANDSCAPE_SLOTS=two: expected a positive number"):
        sweep(ELRS, str(tmp_path / "x"), strategy="processes", progress=False, **cfg)


# a process that takes the run slot ``runs`` times in a row (a worker's loop), after ``after``
# appears in the log, writing when each of its runs starts and ends
SLOT_USER = """
import os, sys, time
from landscape.executors import run_slot
name, runs, after, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def write(text):
    with open(log, "a") as f:
        f.write(text + "\\n")
while after != "-" and after not in open(log).read().split():
    time.sleep(0.02)
for i in range(runs):
    with run_slot():
        write(f"{name}{i}")
        time.sleep(1.0)
        write(f"{name}{i}-end")
"""


def test_a_worker_that_ends_a_run_queues_behind_the_waiting_ones(tmp_path):
    """LANDSCAPE_SLOTS=1, real processes: A takes the slot for three runs in a row; B asks for
    it during A's first run and gets it next, before A's second (it used to wait for all
    three: A took its slot straight back). A killed waiter leaves no ticket that blocks."""
    log = tmp_path / "log"
    log.write_text("")
    env = dict(os.environ, LANDSCAPE_SLOTS=f"1:{tmp_path / 'slots'}")

    def start(*argv):
        return subprocess.Popen([sys.executable, "-c", SLOT_USER, *argv, str(log)], env=env,
                                stderr=subprocess.PIPE, text=True)
    a = start("A", "3", "-")
    dead = start("D", "1", "A0")  # a waiter killed in the queue: its ticket stays, stale
    b = start("B", "1", "go")     # queues behind the stale ticket
    queue, deadline = tmp_path / "slots" / "queue", time.monotonic() + 120
    while not ("A0" in log.read_text().split() and len(os.listdir(queue)) == 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    dead.kill()
    dead.wait()
    with open(log, "a") as f:
        f.write("go\n")
    for p in (a, b):
        assert p.wait(timeout=120) == 0, p.stderr.read()
    starts = [line for line in log.read_text().split() if not line.endswith("-end") and line != "go"]
    assert starts == ["A0", "B0", "A1", "A2"], starts
    assert os.listdir(queue) == []  # the stale ticket was cleared on the way


@pytest.mark.slow
def test_workers_sharing_the_slots_make_their_first_compile_one_at_a_time(tmp_path, cfg, monkeypatch):
    """LANDSCAPE_SLOTS=2 and compile: the two workers' first runs would compile at once; the
    second starts its run (creates its file) only after the first's first training epoch, which
    compiled, has committed. Real worker processes; the aot_eager backend compiles in seconds."""
    import datetime
    import h5py
    monkeypatch.setenv("LANDSCAPE_SLOTS", f"2:{tmp_path / 'slots'}")
    monkeypatch.setenv("LANDSCAPE_COMPILE_BACKEND", "aot_eager")
    sweep(ELRS, str(tmp_path / "c"), strategy="processes", workers=2, progress=False, compile=True,
          **dict(cfg, dtype="float32", epochs=2))
    runs = []
    for e in ELRS:
        with h5py.File(tmp_path / "c" / f"elr{e:g}.h5", "r") as h:
            runs.append((datetime.datetime.fromisoformat(h.attrs["created"]).timestamp(),
                         float(h["timing/epoch_seconds"][0]), Trajectory(h.filename).status))
    (first, first_epoch, _), (second, _, _) = sorted(runs)
    assert [status for _, _, status in runs] == ["done", "done"]
    # the first training epoch compiled (seconds, against milliseconds eager), and the second
    # run began after it
    assert second - first >= first_epoch > 0.5, runs
