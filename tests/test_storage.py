"""Trajectory files at the paper's scale: bounded size, old files, modes (a full disk:
tests/test_full_disk.py)."""
import os
import stat

import h5py
import numpy as np
import pytest

import landscape.trajectory as trajectory
from landscape import Trajectory, train
from landscape.sweep import sweep
from landscape.trajectory import append_analysis, storage

from test_training import _same_trajectory

MB = 1e6

@pytest.fixture
def small(tiny):
    """A model whose state (30 kB) makes a leak of one state per epoch visible: 200 epochs of
    it would leak 6 MB, far over the 1 MB allowance."""
    return dict(tiny, model="mlp", width=64, depth=2, batch_size=128, epochs=200, save_every=50,
                elr=1e-3)

def _state_bytes(path):
    with h5py.File(path, "r") as f:
        first = next(iter(f["state"].values()))  # a slot, or a version-1 epoch group
        return sum(ds.size * ds.dtype.itemsize for ds in first.values())

def assert_bounded(path, epochs):
    size = storage(path)
    assert Trajectory(path).epochs_complete == epochs
    # the allowance must be smaller than what the old layout leaked, or this could not fail
    assert (epochs - 1) * _state_bytes(path) > 0.1 * size["live_bytes"] + 1 * MB
    assert size["file_bytes"] <= 1.1 * size["live_bytes"] + 1 * MB, size
    # and storage() measures what a user measures: the stored size of every dataset
    with h5py.File(path, "r") as f:
        live = []
        f.visititems(lambda _, o: live.append(o.id.get_storage_size()) if isinstance(o, h5py.Dataset) else None)
    assert size["live_bytes"] == sum(live)

@pytest.mark.slow
def test_size_is_live_data_after_200_epochs(tmp_path, small):
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **small)
    assert_bounded(path, 200)

@pytest.mark.slow
def test_size_is_live_data_after_interruptions_and_resumes(tmp_path, small):
    path = str(tmp_path / "t.h5")

    def interrupt(epoch, step, model):
        if epoch in (60, 140) and step == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(out=path, progress=False, on_step=interrupt, **dict(small, epochs=100))
    with pytest.raises(KeyboardInterrupt):
        train(out=path, resume=True, progress=False, on_step=interrupt, epochs=180)
    train(out=path, resume=True, progress=False, epochs=200)
    assert_bounded(path, 200)

@pytest.mark.slow
def test_size_is_live_data_in_a_sweep(tmp_path, small):
    out = tmp_path / "sw"
    sweep([1e-3, 1e-2], str(out), strategy="vectorised", progress=False, **small)
    for elr in (1e-3, 1e-2):
        assert_bounded(str(out / f"elr{elr:g}.h5"), 200)

def test_rewriting_an_analysis_reuses_the_space(tmp_path, tiny):
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **dict(tiny, epochs=1))
    append_analysis(path, "x", {"values": np.random.rand(50_000)}, {})
    first = os.path.getsize(path)
    for _ in range(20):  # 400 kB each time: without persistent free space +8 MB
        append_analysis(path, "x", {"values": np.random.rand(50_000)}, {})
    assert os.path.getsize(path) <= first + 0.5 * MB

def _as_version_1(path):
    """Rewrite a trajectory as the previous release wrote it (format version 1): a file without
    persistent free-space tracking, a state group per epoch, each epoch's predecessor deleted
    (leaving its space dead)."""
    old = path + ".v1"
    with h5py.File(path, "r") as src, h5py.File(old, "w") as dst:
        done = int(src.attrs["epochs_complete"])
        state = {k: ds[()] for k, ds in src[trajectory.SLOTS[done % 2]].items()}
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            if name != "state":
                src.copy(src[name], dst, name=name)
        dst.attrs["format_version"] = 1
    os.replace(old, path)
    for e in range(done - 20, done + 1):  # 20 dead states, as 20 epochs of the old writer left
        with h5py.File(path, "a") as f:
            g = f.create_group(f"state/{e:06d}")
            for k, v in state.items():
                g.create_dataset(k, data=v)
            if f"state/{e - 1:06d}" in f:
                del f[f"state/{e - 1:06d}"]

@pytest.mark.slow
def test_version_1_files_open_repack_and_resume(tmp_path, small, cli):
    cfg = dict(small, epochs=40)
    ref = train(out=str(tmp_path / "ref.h5"), progress=False, **cfg)
    path = str(tmp_path / "old.h5")

    def stop_at_31(epoch, step, model):
        if epoch == 31:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(out=path, progress=False, on_step=stop_at_31, **cfg)
    _as_version_1(path)
    assert os.path.getsize(path) > storage(path)["live_bytes"] + 15 * _state_bytes(path)
    old = Trajectory(path)  # read as it is
    assert old.epochs_complete == 30 and old.attrs["format_version"] == 1
    code, out, err = cli(["show", path])
    assert code == 0 and "reclaimable" in out and "landscape repack" in out
    copy = str(tmp_path / "copy.h5")
    with open(path, "rb") as a, open(copy, "wb") as b:
        b.write(a.read())
    code, out, err = cli(["repack", copy])
    assert code == 0, err
    assert Trajectory(copy).attrs["format_version"] == 2
    assert os.path.getsize(copy) <= 1.1 * storage(copy)["live_bytes"] + 0.2 * MB
    _same_trajectory(Trajectory(copy), old)
    # resuming the version-1 file repacks it and continues to the uninterrupted result
    resumed = train(out=path, resume=True, progress=False)
    _same_trajectory(resumed, ref)
    assert resumed.attrs["format_version"] == 2
    assert_bounded(path, 40)

def test_new_files_follow_the_umask(tmp_path, tiny, cli):
    old = os.umask(0o022)
    try:
        path = str(tmp_path / "t.h5")
        train(out=path, progress=False, **dict(tiny, epochs=1))
        code, _, err = cli(["export", path, "-o", str(tmp_path / "a.pt")])
        assert code == 0, err
        code, _, err = cli(["show", path, "--json", str(tmp_path / "t.json")])
        assert code == 0, err
        for name in ("t.h5", "a.pt", "t.json"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
        from landscape.files import atomic_write, create_new
        assert stat.S_IMODE(os.stat(create_new(str(tmp_path / "tmp-"))).st_mode) == 0o644
        seen = []
        atomic_write(str(tmp_path / "x"), lambda tmp: seen.append(stat.S_IMODE(os.stat(tmp).st_mode)))
        assert seen == [0o644]  # the temporary file too
        os.umask(0o002)  # the umask decides, not a constant
        train(out=str(tmp_path / "g.h5"), progress=False, **dict(tiny, epochs=1))
        assert stat.S_IMODE(os.stat(tmp_path / "g.h5").st_mode) == 0o664
    finally:
        os.umask(old)

