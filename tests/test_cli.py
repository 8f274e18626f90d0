"""The CLI: one-line errors, no tracebacks, no destroyed files."""
import os
import subprocess
import sys

import pytest



def assert_one_line_error(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), (w, err)


@pytest.fixture
def base(tiny):
    return ["train", "--data-root", tiny["data_root"], "--width", "4", "--train-subset", "128",
            "--epochs", "1", "--device", "cpu", "-q"]


@pytest.mark.parametrize("extra,words", [
    (["--model", "vgg"], ["unknown model", "convnet"]),
    (["--dataset", "imagenet"], ["unknown dataset", "cifar10"]),
    (["--elr", "0"], ["--elr", "positive"]),
    (["--elr=-1e-3"], ["--elr", "positive"]),
    (["--elr", "abc"], ["--elr", "not a number"]),
    (["--epochs", "2.5"], ["--epochs", "integer"]),
    (["--label-noise", "1.5"], ["--label-noise"]),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], ["CIFAR-10 not found", "cifar-10-batches-py", "--download"]),
    (["--init", "missing.h5@3"], ["missing.h5", "no such file"]),
])
@pytest.mark.slow
def test_bad_train_input(tmp_path, base, cli, extra, words):
    out = str(tmp_path / "t.h5")
    code, _, err = cli(base + ["-o", out] + extra)
    assert_one_line_error(code, err, *words)
    assert not os.path.exists(out)


def test_existing_output_is_refused_and_kept(tmp_path, base, cli):
    out = tmp_path / "t.h5"
    out.write_bytes(b"precious")
    code, _, err = cli(base + ["-o", str(out)])
    assert_one_line_error(code, err, "already exists", "--resume", "--overwrite")
    assert out.read_bytes() == b"precious"


def test_overwrite_replaces(tmp_path, base, cli):
    out = tmp_path / "t.h5"
    out.write_bytes(b"old")
    code, stdout, err = cli(base + ["-o", str(out), "--overwrite"])
    assert code == 0, err
    from landscape import Trajectory
    assert Trajectory(str(out)).epochs_complete == 1


def test_foreign_truncated_and_missing_epoch(tmp_path, base, cli):
    good = str(tmp_path / "good.h5")
    assert cli(base + ["-o", good, "--epochs", "2", "--save-every", "5"])[0] == 0
    import h5py
    foreign = str(tmp_path / "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(open(good, "rb").read()[:3000])
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    for path, words in ((foreign, ["not a landscape trajectory"]), (str(truncated), ["truncated"]),
                        (str(text), ["not a readable HDF5"])):
        before = open(path, "rb").read()
        for argv in (["show", path], ["export", path, "-o", str(tmp_path / "a.pt")],
                     base + ["--resume", path], base + ["-o", str(tmp_path / "n.h5"), "--init", path + "@0"]):
            code, _, err = cli(argv)
            assert_one_line_error(code, err, *words)
        assert open(path, "rb").read() == before
    code, _, err = cli(base + ["-o", str(tmp_path / "ft.h5"), "--init", good + "@1"])
    assert_one_line_error(code, err, "no checkpoint at epoch 1", "0, 2")
    code, _, err = cli(["export", good + "@7", "-o", str(tmp_path / "a.pt")])
    assert_one_line_error(code, err, "no checkpoint at epoch 7")


def test_show_export_and_load(tmp_path, base, cli):
    traj = str(tmp_path / "t.h5")
    assert cli(base + ["-o", traj, "--epochs", "2"])[0] == 0
    code, out, err = cli(["show", traj, "--json", str(tmp_path / "t.json")])
    assert code == 0 and "train_loss" in out and '"elr": 0.001' in out
    assert (tmp_path / "t.json").exists()
    code, out, err = cli(["export", traj, "--epoch", "2", "-o", str(tmp_path / "a.pt")])
    assert code == 0, err
    from landscape import Trajectory, load_point
    import torch
    model, meta = load_point(str(tmp_path / "a.pt"))
    ref = Trajectory(traj).load_model(2)
    for (n, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), n
    assert meta["si_group_names"] == Trajectory(traj).group_names and meta["epoch"] == 2
    code, _, err = cli(["export", traj, "-o", str(tmp_path / "a.pt")])
    assert_one_line_error(code, err, "already exists")


@pytest.mark.slow
def test_console_script_prints_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "landscape", "train", "--elr", "-1", "-o", str(tmp_path / "x.h5")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
