"""Hostile input, each through the real command line in a separate process: one line on
stderr (status 2 for bad input, 4 for a write the file system refuses), never a traceback nor a
library warning before our line, and nothing written."""
import os
import subprocess
import sys

import pytest
import torch

from landscape import Trajectory, train
from landscape.points import export_checkpoint


class Foreign:
    """An object only a full unpickler could load (the weights-only loader refuses it)."""


def _run(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "landscape", *argv], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _one_line(done, status, words):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status and len(lines) == 1 and words in lines[0], (done.returncode, done.stderr)


@pytest.fixture(scope="module")
def point(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("points")
    path = str(folder / "t.h5")
    train(out=path, progress=False, model="convnet", width=4, dataset="mnist1d", data_root=data_root,
          train_subset=256, batch_size=64, epochs=1, device="cpu", save_every=1)
    export_checkpoint(path, None, str(folder / "good.pt"))
    payload = torch.load(str(folder / "good.pt"), weights_only=True)
    torch.save({k: v for k, v in payload.items() if k != "model_spec"}, str(folder / "nospec.pt"))
    torch.save({**payload, "state_dict": {k: v[:1] if v.ndim else v for k, v in payload["state_dict"].items()}},
               str(folder / "misfit.pt"))
    torch.save({"x": Foreign()}, str(folder / "pickled.pt"))
    import h5py
    import shutil
    shutil.copy(path, str(folder / "inf.h5"))
    with h5py.File(str(folder / "inf.h5"), "a") as f:
        f["checkpoints/000001/features.3.weight"][...] = float("inf")
    return folder


@pytest.mark.slow
def test_bad_training_input(tmp_path, tiny):
    base = ["train", "--dataset", "mnist1d", "--data-root", tiny["data_root"], "--train-subset", "256",
            "--batch-size", "64", "--width", "4", "--epochs", "1", "--device", "cpu", "-q"]
    (tmp_path / "afile").write_text("")
    for extra, status, words in ((["--rho", "1e300"], 2, "overflows float32"),
                                 (["--data-root", str(tmp_path / "afile")], 2, "is a file"),
                                 (["--elr", "-inf"], 2, "'-inf' is not a finite number"),
                                 (["--elr", "-1e-3"], 2, "must be positive")):
        _one_line(_run(*base, *extra, "-o", str(tmp_path / "t.h5")), status, words)
        assert not (tmp_path / "t.h5").exists()
    _one_line(_run(*base, "-o", "/proc/x.h5"), 4, "cannot write /proc/x.h5")
    # legal names: 255 bytes with its suffix, and an '@' in the name
    for name in ("a" * 252 + ".h5", "a@b.h5"):
        done = _run(*base, "-o", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert Trajectory(str(tmp_path / name)).epochs_complete == 1
        assert _run("show", str(tmp_path / name)).returncode == 0
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".lock")]


@pytest.mark.slow
def test_bad_checkpoints(point):
    good = str(point / "good.pt")
    for name, words in (("nospec.pt", "without its model_spec"), ("misfit.pt", "do not fit its model_spec"),
                        ("pickled.pt", "pickled objects are refused")):
        bad = str(point / name)
        _one_line(_run("interpolate", bad, good, "--points", "3", "-q"), 2, words)
        _one_line(_run("surface", bad, "--grid=-1:1:3", "-q"), 2, words)
    _one_line(_run("sharpness", f"{point / 'inf.h5'}@1", "--probes", "2", "--batches", "1", "-q"), 2,
              "non-finite weights (features.3.weight)")


@pytest.mark.slow
def test_a_read_only_folder(tmp_path, tiny, point):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root, as in CI): {mounted.stderr.strip()}")
    try:
        base = ["--dataset", "mnist1d", "--data-root", tiny["data_root"], "--train-subset", "256", "--batch-size",
                "64", "--width", "4", "--epochs", "1", "--device", "cpu", "-q"]
        path = str(point / "t.h5")
        for argv in (["train", *base, "-o", str(ro / "t.h5")],
                     ["sweep", "--elrs", "1e-3,1e-2", *base, "-o", str(ro / "sw")],
                     ["show", path, "--json", str(ro / "s.json")],
                     ["interpolate", f"{path}@0", f"{path}@1", "--points", "3", "-q", "--plot", str(ro / "i.png")],
                     ["interpolate", f"{path}@0", f"{path}@1", "--points", "3", "-q", "--json", str(ro / "i.json")],
                     ["export", path, "-o", str(ro / "x.pt")]):
            _one_line(_run(*argv), 4, "read-only file system")
        assert os.listdir(ro) == []
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
