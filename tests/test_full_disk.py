"""A real full disk: a size-limited tmpfs mounted for the test (root, as in CI), filled by the
run itself or by another file; every command is a separate process, so a crash of the HDF5
library (a segfault) would show as such."""
import glob
import os
import subprocess
import sys
import time

import pytest

from landscape import Trajectory
from test_training import _same_trajectory


def _mount(folder: str, size: str) -> None:
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], check=True,
                   capture_output=True)


@pytest.fixture
def small_fs(tmp_path):
    """small_fs(size) -> a folder on a fresh tmpfs of that size; small_fs.resize(size) grows it
    (its files stay)."""
    mounted = []

    def make(size: str) -> str:
        folder = str(tmp_path / f"fs{len(mounted)}")
        try:
            _mount(folder, size)
        except (OSError, subprocess.CalledProcessError) as e:
            pytest.skip(f"cannot mount a size-limited tmpfs here (needs root, as in CI): {e}")
        mounted.append(folder)
        return folder

    def resize(folder: str, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", folder], check=True)
    make.resize = resize
    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", folder], capture_output=True)


def _landscape(*argv, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "landscape", *argv], capture_output=True, text=True,
                          env=env, **kw)


def _train_argv(tiny: dict, out: str, **override) -> list:
    cfg = {**tiny, "epochs": 12, **override}
    argv = ["train", "-o", out, "-q"]
    for k, v in cfg.items():
        if isinstance(v, bool):
            argv.append(f"--{k.replace('_', '-')}" if v else f"--no-{k.replace('_', '-')}")
        else:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


@pytest.fixture
def reference(tmp_path, tiny):
    """The uninterrupted run the interrupted ones must end identical to."""
    def run(**override):
        out = str(tmp_path / f"ref-{len(os.listdir(tmp_path))}.h5")
        done = _landscape(*_train_argv(tiny, out, **override))
        assert done.returncode == 0, done.stderr
        return Trajectory(out)
    return run


def _fill(folder: str) -> str:
    """Write a file into ``folder`` until its file system is full; returns its path."""
    filler = os.path.join(folder, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def _one_line_full(done, safe_epochs=None):
    assert done.returncode == 4, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on" in lines[0], done.stderr[-2000:]
    if safe_epochs is not None:
        assert f"{safe_epochs} epoch" in lines[0]


@pytest.mark.parametrize("size,settings", [
    ("700k", {}),                                       # full at the first epoch's new chunks
    pytest.param("1200k", {}, marks=pytest.mark.slow),  # a checkpoint every epoch
    pytest.param("1200k", {"save_every": 7, "checkpoint_metrics": True},  # checkpoint metrics' rows
                 marks=pytest.mark.slow),
])
def test_a_run_that_fills_the_disk_stops_in_one_line_and_resumes_bit_identically(
        small_fs, reference, tiny, size, settings):
    ref = reference(epochs=20, **settings)
    folder = small_fs(size)
    path = os.path.join(folder, "run.h5")
    done = _landscape(*_train_argv(tiny, path, epochs=20, **settings))
    _one_line_full(done)
    cut = Trajectory(path)  # readable, with every committed epoch
    assert 0 <= cut.epochs_complete < 20
    assert list(cut.epochs) == list(range(1, cut.epochs_complete + 1))
    assert f"{cut.epochs_complete} epoch" in done.stderr
    show = _landscape("show", path)
    assert show.returncode == 0 and "damaged" not in show.stdout + show.stderr
    assert not glob.glob(os.path.join(folder, "*.lock")) and not glob.glob(os.path.join(folder, ".tmp-*"))
    small_fs.resize(folder, "64m")
    resumed = _landscape("train", "--resume", path, "-q")
    assert resumed.returncode == 0, resumed.stderr
    _same_trajectory(Trajectory(path), ref)


@pytest.mark.slow
def test_a_disk_filled_by_another_file_mid_run(small_fs, reference, tiny, tmp_path):
    ref = reference(epochs=40)
    folder = small_fs("8m")
    path = os.path.join(folder, "run.h5")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.Popen([sys.executable, "-m", "landscape", *_train_argv(tiny, path, epochs=40)],
                           stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        try:
            if Trajectory(path).epochs_complete >= 3:
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.05)
    filler = _fill(folder)  # another program takes every free block
    err = run.stderr.read()
    run.wait(timeout=120)
    _one_line_full(subprocess.CompletedProcess(run.args, run.returncode, "", err))
    cut = Trajectory(path)
    assert 3 <= cut.epochs_complete < 40
    os.remove(filler)
    resumed = _landscape("train", "--resume", path, "-q")
    assert resumed.returncode == 0, resumed.stderr
    _same_trajectory(Trajectory(path), ref)


def test_analyses_on_a_full_disk_fail_in_one_line_and_leave_no_lock(small_fs, tiny):
    folder = small_fs("16m")
    sweep = os.path.join(folder, "sweep")
    os.makedirs(sweep)
    path = os.path.join(sweep, "elr0.01.h5")
    assert _landscape(*_train_argv(tiny, path, epochs=3)).returncode == 0
    _fill(folder)
    before = os.path.getsize(path)
    for argv in (["sharpness", f"{path}@3", "--probes", "2", "--batches", "1"],
                 ["interpolate", f"{path}@0", f"{path}@3", "--points", "3"],
                 ["export", f"{path}@3", "-o", os.path.join(folder, "w.pt")],
                 ["regimes", sweep, "--min-points", "2", "--min-tail", "1", "--json", os.path.join(folder, "r.json")],
                 ["evaluate", path, "--json", os.path.join(folder, "e.json")]):
        done = _landscape(*argv, "-q") if argv[0] not in ("regimes", "export") else _landscape(*argv)
        _one_line_full(done)
        assert "Traceback" not in done.stderr
        assert not glob.glob(os.path.join(folder, "**", "*.lock"), recursive=True), argv
        assert not glob.glob(os.path.join(folder, "**", ".tmp-*"), recursive=True), argv
        assert Trajectory(path).epochs_complete == 3
    assert os.path.getsize(path) == before
