"""Readers beside open handles and live writers; one writer per file."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from landscape import Trajectory, train
from landscape.errors import LandscapeError
from landscape.locks import WriterLock, lock_path, writer_of
from landscape.trajectory import TrajectoryWriter


def _train_args(cfg, out, as_flags):
    return [sys.executable, "-m", "landscape", "train", "-q", "-o", str(out)] + as_flags(cfg)


def _env():
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))


def _wait_for(pred, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs(path):
    try:
        return Trajectory(str(path)).epochs_complete
    except LandscapeError:
        return 0


def test_a_trajectory_open_in_a_notebook_can_be_read_and_written(tmp_path, tiny, cli):
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **dict(tiny, epochs=2))
    notebook = h5py.File(path, "r")  # h5py's defaults, left open as in a notebook
    try:
        t = Trajectory(path)
        assert t.epochs_complete == 2 and len(t.metrics["train_loss"]) == 2
        assert t.state_dict(2)
        code, out, err = cli(["show", path])
        assert code == 0 and "2 epochs complete" in out, err
        # a run in the same process continues the file beside the open handle
        ext = train(out=path, resume=True, progress=False, epochs=3)
        assert ext.epochs_complete == 3
        assert Trajectory(path).epochs_complete == 3  # a fresh view, not the handle's cache
    finally:
        notebook.close()
    with h5py.File(path, "r", locking=False):  # another handle with other locking settings
        assert Trajectory(path).epochs_complete == 3


@pytest.mark.slow
def test_reader_in_another_process_while_training_writes(tmp_path, tiny, as_flags):
    """`landscape train` in a subprocess, a notebook handle and a polling reader here: the
    writer is never blocked, the reader only ever sees committed epochs."""
    path = tmp_path / "live.h5"
    cfg = dict(tiny, epochs=40, save_every=7)
    proc = subprocess.Popen(_train_args(cfg, path, as_flags), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _epochs(path) >= 1, "the first epoch")
        notebook = h5py.File(path, "r")  # held for the whole run
        seen, live = [], []
        while proc.poll() is None:
            t = Trajectory(str(path))
            done = t.epochs_complete
            seen.append(done)
            assert list(t.epochs) == list(range(1, done + 1))
            for name, values in list(t.metrics.items()) + list(t.group_metrics.items()):
                assert len(values) == done, name
            assert np.all(np.isfinite(t.metrics["train_loss"]))
            assert t.checkpoint_epochs == sorted(t.checkpoint_epochs) and t.checkpoint_epochs[-1] <= done
            live.append(writer_of(str(path)) is not None)
            time.sleep(0.01)  # a polling reader, not a busy loop competing for the 2 cores
        notebook.close()
        assert proc.wait() == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == sorted(seen) and len(set(seen)) > 3  # saw the run progress
    assert any(live)  # ... while its writer held the lock
    final = Trajectory(str(path))
    assert final.epochs_complete == 40 and final.status == "done"
    assert writer_of(str(path)) is None and not os.path.exists(lock_path(str(path)))


def assert_refused(code, err, pid):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"pid {pid}" in err and socket.gethostname() in err and "since" in err, err


@pytest.mark.slow
def test_second_writers_are_refused_and_a_killed_writers_lock_is_taken_over(tmp_path, tiny, cli, as_flags):
    path = tmp_path / "live.h5"
    cfg = dict(tiny, epochs=100000, save_every=1000)
    proc = subprocess.Popen(_train_args(cfg, path, as_flags), env=_env())
    try:
        _wait_for(lambda: _epochs(path) >= 2, "two epochs")
        code, _, err = cli(["train", "--resume", str(path), "-q"])
        assert_refused(code, err, proc.pid)
        base = ["--data-root", tiny["data_root"], "--width", "4", "--train-subset", "256",
                "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]
        code, _, err = cli(["train", "-o", str(path), "--overwrite"] + base)
        assert_refused(code, err, proc.pid)
        # an analysis of a committed epoch runs; its results wait beside the file for the writer
        code, _, err = cli(["sharpness", str(path), "--probes", "2", "--batches", "1", "-q"])
        assert code == 0, err
        assert "sharpness" in Trajectory(str(path)).analyses
        _wait_for(lambda: not os.path.exists(f"{path}.pending"), "the writer to fold the results in", timeout=60)
        assert "sharpness" in Trajectory(str(path)).analyses
        code, _, err = cli(["repack", str(path)])
        assert_refused(code, err, proc.pid)
        with pytest.raises(LandscapeError, match=f"pid {proc.pid}"):
            TrajectoryWriter(str(path))
        code, out, _ = cli(["show", str(path)])
        assert code == 0 and f"being written by pid {proc.pid}" in out
        before = _epochs(path)
        _wait_for(lambda: _epochs(path) > before, "the first writer to go on, unharmed", timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the kill leaves the lock file behind; the kernel dropped the lock: it is taken over
    assert os.path.exists(lock_path(str(path))) and writer_of(str(path)) is None
    killed = Trajectory(str(path))
    done = killed.epochs_complete
    assert done >= 2 and killed.status == "partial"
    lock = WriterLock(str(path)).acquire()
    assert lock.taken_over["pid"] == proc.pid  # what the killed writer left, recognised as stale
    lock.release()
    resumed = train(out=str(path), resume=True, progress=False, epochs=done + 2)
    assert resumed.epochs_complete == done + 2
    np.testing.assert_array_equal(resumed.metrics["train_loss"][:done], killed.metrics["train_loss"])


def test_a_writer_in_this_process_is_exclusive(tmp_path, tiny):
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **dict(tiny, epochs=1))
    writer = TrajectoryWriter(path)
    try:
        with pytest.raises(LandscapeError, match="already being written by this process"):
            TrajectoryWriter(path)
        with pytest.raises(LandscapeError, match="already being written"):
            train(out=path, resume=True, progress=False, epochs=2)
    finally:
        writer.close()
    assert train(out=path, resume=True, progress=False, epochs=2).epochs_complete == 2


@pytest.mark.slow
def test_a_second_sweep_on_a_live_folder_is_refused(tmp_path, tiny, cli):
    out = tmp_path / "sw"
    args = [sys.executable, "-m", "landscape", "sweep", "--elrs", "1e-3,2e-3", "-o", str(out), "-q",
            "--strategy", "vectorised", "--data-root", tiny["data_root"], "--width", "4",
            "--train-subset", "256", "--batch-size", "64", "--epochs", "100000", "--device", "cpu",
            "--save-every", "1000"]
    proc = subprocess.Popen(args, env=_env())
    try:
        _wait_for(lambda: _epochs(out / "elr0.001.h5") >= 1, "the sweep's first epoch")
        code, _, err = cli(args[3:])
        assert_refused(code, err, proc.pid)
        code, _, err = cli(["train", "--resume", str(out / "elr0.002.h5"), "-q"])  # one of its runs
        assert_refused(code, err, proc.pid)
        index = json.load(open(out / "sweep.json"))
        assert [r["status"] for r in index["runs"]] == ["pending", "pending"]  # untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_processes_sweep_from_a_folder_holding_a_landscape_directory_and_a_killed_worker(tmp_path, tiny):
    """Workers are not shadowed by a `landscape/` folder in the current directory (a clone of
    the repository); a worker killed by SIGKILL is named with its runs and how to resume."""
    cwd = tmp_path / "clone"
    (cwd / "landscape").mkdir(parents=True)
    (cwd / "landscape" / "__init__.py").write_text("raise ImportError('the shadowing folder')\n")
    out = tmp_path / "sw"
    args = ["landscape", "sweep", "--elrs", "1e-3,2e-3", "-o", str(out), "-q", "--strategy", "processes",
            "--workers", "2", "--data-root", tiny["data_root"], "--width", "4", "--train-subset", "256",
            "--batch-size", "64", "--device", "cpu", "--save-every", "1000"]
    done = subprocess.run(args + ["--epochs", "2"], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _epochs(out / "elr0.001.h5") == 2 and _epochs(out / "elr0.002.h5") == 2
    out = tmp_path / "long"
    args[args.index("-o") + 1] = str(out)
    # the other worker finishes its run, then the sweep reports the dead one
    proc = subprocess.Popen(args + ["--epochs", "60"], cwd=cwd, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _epochs(out / "elr0.002.h5") >= 2, "the sweep's epochs")
        workers = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "worker_main"], capture_output=True,
                                 text=True).stdout.split()
        assert workers
        os.kill(int(workers[0]), signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, err
    assert "died (exit -9" in err[0] and "re-run the same command to resume" in err[0]
    assert "elr0.001.h5" in err[0] or "elr0.002.h5" in err[0]


@pytest.mark.slow
def test_a_live_trajectory_is_read_and_analysed_while_it_is_written(tmp_path, tiny, cli, as_flags):
    """A run writes as fast as it can while readers and analyses loop over it for half a
    minute: no failure, never 'damaged', and the run ends bit-identical to one nobody watched."""
    cfg = dict(tiny, epochs=300, save_every=5)
    quiet = tmp_path / "quiet.h5"
    subprocess.run(_train_args(cfg, quiet, as_flags), env=_env(), check=True)
    path = tmp_path / "sw" / "live.h5"
    path.parent.mkdir()
    proc = subprocess.Popen(_train_args(cfg, path, as_flags), env=_env())
    seen, rounds = [], 0
    try:
        _wait_for(lambda: _epochs(path) >= 5, "five epochs")
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            rounds += 1
            t = Trajectory(str(path))  # every read sees whole committed epochs
            assert len(t.metrics["train_loss"]) == t.epochs_complete == len(t.epochs)
            seen.append(t.epochs_complete)
            epoch = t.checkpoint_epochs[-1]
            for argv in (["show", str(path)], ["show", str(path.parent)],
                         ["evaluate", f"{path}", "--checkpoints", str(epoch), "-q"],
                         ["interpolate", f"{path}@0", f"{path}@{epoch}", "--points", "3", "-q"],
                         ["sharpness", f"{path}", "--checkpoints", str(epoch), "--probes", "1", "--batches", "1",
                          "--eigs", "0", "-q"]):
                code, out, err = cli(argv)
                assert code == 0, (argv, err)
                assert "damaged" not in out + err and "unreadable" not in out, (argv, out, err)
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rounds >= 3 and seen == sorted(seen)
    live, unwatched = Trajectory(str(path)), Trajectory(str(quiet))
    for k in unwatched.metrics:
        np.testing.assert_array_equal(live.metrics[k], unwatched.metrics[k], err_msg=k)
    for k, v in unwatched.state_dict().items():
        assert torch.equal(v, live.state_dict()[k]), k
    assert not os.path.exists(f"{path}.pending")  # every result folded in
    assert "sharpness" in live.analyses and any(a.startswith("interpolation/") for a in live.analyses)


def test_the_writer_is_named_while_it_rewrites_its_details(tmp_path):
    """A writer rewrites its lock file's details in place around every commit; a reader that
    asks who writes (``landscape show``) meanwhile still gets the writer, never nothing."""
    target = str(tmp_path / "t.h5")
    program = ("import sys, time\nfrom landscape.locks import WriterLock\n"
               "lock = WriterLock(sys.argv[1]).acquire()\nprint('held', flush=True)\n"
               "end = time.monotonic() + 60\n"
               "while time.monotonic() < end:\n    with lock.writing():\n        pass\n")
    proc = subprocess.Popen([sys.executable, "-c", program, target], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout.readline().strip() == "held"
        seen = [writer_of(target) for _ in range(3000)]
    finally:
        proc.kill()
        proc.wait()
    missed = [s for s in seen if not s or s.get("pid") != proc.pid]
    assert not missed, f"{len(missed)} of {len(seen)} reads missed the writer: {missed[:3]}"


@pytest.mark.slow
def test_a_file_is_read_while_analyses_come_and_go_as_its_writers(tmp_path, tiny):
    """With no run writing, each analysis that stores its results is the file's writer for a
    moment (it takes the lock, writes, releases it and removes the lock file): a read that
    overlapped one of those writes reads again instead of calling the file damaged."""
    from landscape import train
    path = str(tmp_path / "t.h5")
    train(dict(tiny, epochs=2), path, progress=False)
    program = ("import sys, time\nimport numpy as np\nfrom landscape.trajectory import append_analysis\n"
               "print('go', flush=True)\nend, i = time.monotonic() + 20, 0\n"
               "while time.monotonic() < end:\n"
               "    i += 1\n"
               "    append_analysis(sys.argv[1], 'probe', {'epoch': np.arange(i % 50 + 1), 'v': np.random.rand(i % 50 + 1, 64)}, {})\n"
               "    time.sleep(0.02)\n")  # an analysis computes between its stores
    proc = subprocess.Popen([sys.executable, "-c", program, path], stdout=subprocess.PIPE, text=True, env=_env())
    failures, reads = [], 0
    try:
        assert proc.stdout.readline().strip() == "go"
        while proc.poll() is None:
            reads += 1
            try:
                Trajectory(path)
            except LandscapeError as e:
                failures.append(str(e))
    finally:
        proc.kill()
        proc.wait()
    assert reads > 50 and not failures, f"{len(failures)} of {reads} reads failed: {failures[:2]}"
