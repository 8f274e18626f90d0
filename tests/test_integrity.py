"""Real corrupt bytes: one bit flipped on disk in each kind of dataset is caught by its
checksum on every read that touches it, found by `show --verify`, and left out by `repair`."""
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from landscape import Trajectory, train
from landscape.integrity import repair, verify


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    path = str(tmp_path_factory.mktemp("run") / "t.h5")
    train(out=path, progress=False, model="convnet", width=4, dataset="mnist1d", data_root=data_root,
          train_subset=256, batch_size=64, epochs=6, save_every=2, device="cpu", elr=1e-2)
    return path


def flipped(src: str, dst: str, dataset: str, byte: int = 3) -> str:
    """A copy of ``src`` with one bit of ``dataset``'s stored bytes flipped (the first chunk)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r") as f:
        ds = f[dataset]
        offset = ds.id.get_chunk_info(0).byte_offset if ds.chunks else ds.id.get_offset()
    with open(dst, "r+b") as fh:
        fh.seek(offset + byte)
        value = fh.read(1)[0]
        fh.seek(offset + byte)
        fh.write(bytes([value ^ 0x10]))
    return dst


KINDS = {"metrics": "metrics/train_loss", "filters": "metrics/filters/effective_grad_norm",
         "checkpoint": "checkpoints/000004/features.3.weight", "slot": "state/slot0/features.3.weight"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_flipped_bit_is_a_one_line_error_found_by_verify_and_dropped_by_repair(run, tmp_path, cli, kind):
    dataset = KINDS[kind]
    bad = flipped(run, str(tmp_path / "bad.h5"), dataset)
    with h5py.File(run, "r") as f:  # the flip is real: the bytes differ from the original's
        assert f[dataset].fletcher32
    # every command that reads it fails in one line naming the dataset
    commands = {"metrics": [["show", bad], ["regimes", bad, "--min-points", "2", "--min-tail", "1"]],
                "filters": [["show", bad], ["export", f"{bad}@4", "-o", str(tmp_path / "x.pt")]],
                "checkpoint": [["export", f"{bad}@4", "-o", str(tmp_path / "x.pt")],
                               ["interpolate", f"{bad}@2", f"{bad}@4", "--points", "3", "-q"]],
                "slot": [["train", "--resume", bad, "--epochs", "8", "-q"]]}[kind]
    for argv in commands:
        code, out, err = cli(argv)
        assert code == 2, (argv, out, err)
        assert len(err.strip().splitlines()) == 1 and f"checksum mismatch in /{dataset}" in err, (argv, err)
    code, out, _ = cli(["show", bad, "--verify"])
    assert code == 1 and f"damaged: /{dataset}" in out
    assert cli(["show", run, "--verify"])[0] == 0
    assert verify(bad)["corrupt"] and not verify(run)["corrupt"]
    # repair keeps what is intact, never in place
    fixed = str(tmp_path / "fixed.h5")
    report = repair(bad, fixed)
    assert not verify(fixed)["corrupt"]
    t, original = Trajectory(fixed), Trajectory(run)
    if kind in ("metrics", "filters"):  # the damaged chunk holds epochs 1-6: nothing after epoch 0 is kept
        assert report["epochs_complete"] == 0 and t.epochs_complete == 0
    else:
        assert t.epochs_complete == 6
        np.testing.assert_array_equal(t.metrics["train_loss"], original.metrics["train_loss"])
    if kind == "checkpoint":
        assert 4 not in t.checkpoint_epochs and 2 in t.checkpoint_epochs
        assert any("checkpoint 4" in d for d in report["dropped"])
    if kind == "slot":  # slot 0 holds epoch 6's state: the file reads but cannot be resumed
        assert not report["resumable"] and any("resume state" in d for d in report["dropped"])
    else:
        assert report["resumable"]
        resumed = train(out=fixed, resume=True, progress=False, epochs=8)
        assert resumed.epochs_complete == 8
    for epoch in t.checkpoint_epochs:
        for k, v in t.state_dict(epoch).items():
            assert torch.equal(v, original.state_dict(epoch)[k])
    code, _, err = cli(["repair", bad, "-o", bad, "--overwrite"])
    assert code == 2 and "destroy the input" in err


def test_a_file_without_resume_state_or_with_non_finite_metrics_says_so(run, tmp_path, cli):
    bad = str(tmp_path / "holes.h5")
    shutil.copy(run, bad)
    with h5py.File(bad, "a") as f:
        f["metrics/train_loss"][2] = np.nan
        del f["state"]
    t = Trajectory(bad)
    assert t.problems() == ["no resume state for epoch 6: --resume cannot continue it",
                            "train_loss is not finite at epoch 3"]
    code, out, _ = cli(["show", bad])
    assert code == 0 and "warning: no resume state" in out and "warning: train_loss is not finite at epoch 3" in out
    code, out, _ = cli(["show", str(tmp_path)])
    assert "warning: train_loss is not finite" in out
    assert Trajectory(run).problems() == []
    code, _, err = cli(["train", "--resume", bad, "--epochs", "8", "-q"])
    assert code == 2 and "no model state for epoch 6" in err


def test_resume_checks_dataset_sizes_before_it_writes(run, tmp_path, cli):
    bad = str(tmp_path / "grown.h5")
    shutil.copy(run, bad)
    with h5py.File(bad, "a") as f:  # a size no kill leaves (a damaged dataspace reads the same)
        f["metrics/train_loss"].resize(10 ** 6, axis=0)
    size = os.path.getsize(bad)
    code, _, err = cli(["train", "--resume", bad, "--epochs", "8", "-q"])
    assert code == 2 and "/metrics/train_loss holds 1000000 rows for 6 committed epochs" in err
    assert os.path.getsize(bad) == size


def test_every_folder_command_skips_and_names_a_corrupt_file(run, tmp_path, cli):
    folder = tmp_path / "sweep"
    folder.mkdir()
    shutil.copy(run, folder / "elr0.01.h5")
    flipped(run, str(folder / "elr0.02.h5"), "metrics/train_loss")
    for argv in (["show", str(folder)], ["regimes", str(folder), "--min-points", "2", "--min-tail", "1"],
                 ["random-walk", str(folder)]):
        code, out, err = cli(argv)
        assert "elr0.02.h5" in out + err and "checksum mismatch" in out + err, (argv, out, err)
        assert "None" not in out, out
    code, _, err = cli(["show", str(folder / "elr0.02.h5")])
    assert code == 2 and "checksum mismatch" in err
