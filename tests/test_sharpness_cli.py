"""`landscape sharpness` end to end: appended results, untouched trajectory, errors."""
import hashlib

import h5py
import numpy as np
import pytest

import landscape.sharpness as sharpness_mod
from landscape import Trajectory, train
from landscape.trajectory import read_analysis


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def traj(tmp_path, tiny):
    return train(out=str(tmp_path / "t.h5"), **dict(tiny, epochs=2, save_every=1)).path


def test_appends_and_replaces_only_its_group(traj, cli, tmp_path):
    before = Trajectory(traj)
    code, out, err = cli(["sharpness", traj, "--checkpoints", "all", "--probes", "4", "--eigs", "2",
                          "--batches", "1", "--plot", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json")])
    assert code == 0, err
    assert "trace_eff" in out and (tmp_path / "s.png").exists() and (tmp_path / "s.json").exists()
    res, attrs = read_analysis(traj, "sharpness")
    assert list(res["epoch"]) == [0, 1, 2]
    assert res["eigenvalues_effective"].shape == (3, 2)
    np.testing.assert_allclose(res["trace_effective"], res["trace"] * res["rho"] ** 2)
    after = Trajectory(traj)
    for k in before.metrics:
        np.testing.assert_array_equal(before.metrics[k], after.metrics[k])
    assert after.checkpoint_epochs == before.checkpoint_epochs
    # re-running replaces the group (only the last epoch now)
    assert cli(["sharpness", traj + "@2", "--probes", "3", "--eigs", "0", "--batches", "1"])[0] == 0
    res2, _ = read_analysis(traj, "sharpness")
    assert list(res2["epoch"]) == [2] and "eigenvalues" not in res2
    with h5py.File(traj) as f:
        assert list(f["analyses"].keys()) == ["sharpness"]


def test_interrupted_run_leaves_the_file_as_it_was(traj, monkeypatch):
    sharpness_mod.sharpness(traj, "last", probes=2, eigs=0, batches=1)
    before = digest(traj)
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    real = sharpness_mod.checkpoint_sharpness
    monkeypatch.setattr(sharpness_mod, "checkpoint_sharpness", failing)
    with pytest.raises(KeyboardInterrupt):
        sharpness_mod.sharpness(traj, "all", probes=2, eigs=0, batches=1)
    assert digest(traj) == before


@pytest.mark.parametrize("extra,words", [
    (["--checkpoints", "7"], ["no checkpoint at epoch 7"]),
    (["--probes", "0"], ["--probes", "positive"]),
    (["--probes", "-3"], ["--probes", "positive"]),
    (["--batches", "x"], ["--batches"]),
    (["--checkpoints", "every:0"], ["every:K"]),
])
def test_bad_input(traj, cli, extra, words):
    before = digest(traj)
    code, _, err = cli(["sharpness", traj] + extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err
    assert digest(traj) == before


def test_not_a_trajectory(tmp_path, cli):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["a"] = 1
    code, _, err = cli(["sharpness", str(path)])
    assert code == 2 and "not a landscape trajectory" in err
    code, _, err = cli(["sharpness", str(tmp_path / "missing.h5")])
    assert code == 2 and "no such file" in err


def test_ggn_hutchpp_and_per_group_columns(traj, cli, tmp_path):
    import json
    code, out, err = cli(["sharpness", traj, "--matrix", "ggn", "--estimator", "hutchpp", "--probes", "12",
                          "--eigs", "1", "--batches", "1", "--per-group", "--json", str(tmp_path / "s.json")])
    assert code == 0, err
    assert "matrix: ggn, estimator: hutchpp" in out and "per-layer trace" in out
    res, attrs = read_analysis(traj, "sharpness")
    settings = json.loads(attrs["settings"])
    assert settings["matrix"] == "ggn" and settings["per_group"] is True
    assert "trace_riemannian" not in res  # a statement about the Hessian only
    t = Trajectory(traj)
    assert res["group_trace"].shape == (1, len(t.group_names))
    assert res["filter_trace"].shape == (1, len(t.filter_layer))
    np.testing.assert_allclose(res["group_trace"].sum(1), res["trace"], rtol=1e-9)
    np.testing.assert_allclose(res["filter_trace"].sum(1), res["trace"], rtol=1e-9)
    rho_i = t.filter_metrics["rho_end"][-1]  # the filters' norms at the last epoch's end
    np.testing.assert_allclose(res["filter_trace_effective"][0], res["filter_trace"][0] * rho_i ** 2, rtol=1e-5)
    assert np.all(res["eigenvalues"] > 0)  # the GGN is positive semi-definite


def test_the_noisy_and_clean_subsets(tmp_path, data_root):
    """sharpness --subset takes the curvature on exactly the relabelled (or the other) examples."""
    from landscape.data import load_dataset, train_batches
    from landscape.sharpness import checkpoint_sharpness, fixed_batches
    cfg = dict(model="convnet", width=4, dataset="mnist1d", data_root=data_root, train_subset=256,
               batch_size=64, epochs=1, elr=1e-2, device="cpu", label_noise=0.3, checkpoint_metrics=False)
    t = train(out=str(tmp_path / "n.h5"), progress=False, **cfg)
    res = sharpness_mod.sharpness(t.path, "last", probes=3, eigs=0, batches="all", subset="noisy", write=False)
    data = load_dataset("mnist1d", data_root, train_subset=256, label_noise=0.3)
    noisy = np.sort(t.data["noisy_indices"])
    data.x_train, data.y_train = data.x_train[noisy], data.y_train[noisy]
    ref = checkpoint_sharpness(t.load_model(1), fixed_batches(data, 64, "all", 0),
                               list(train_batches(data, 64, epoch=0, data_seed=1)), probes=3, eigs=0)
    assert res["loss"][0] == pytest.approx(ref["loss"], rel=1e-6)
    assert res["trace"][0] == pytest.approx(ref["trace"], rel=1e-6) and res["settings"]["subset"] == "noisy"
    clean = sharpness_mod.sharpness(t.path, "last", probes=3, eigs=0, batches="all", subset="clean", write=False)
    assert clean["loss"][0] < res["loss"][0]  # the relabelled examples are the harder ones
    clean_run = train(out=str(tmp_path / "c.h5"), progress=False, **dict(cfg, label_noise=0.0))
    with pytest.raises(ValueError, match="no label noise"):
        sharpness_mod.sharpness(clean_run.path, "last", probes=2, eigs=0, subset="noisy", write=False)


def test_curvature_of_a_squared_loss_run_is_taken_on_its_loss(tmp_path, data_root):
    import torch
    import torch.nn.functional as F
    from landscape.data import load_dataset
    from landscape.models import with_batch_statistics
    from landscape.sharpness import fixed_batches
    t = train(out=str(tmp_path / "m.h5"), progress=False, model="convnet", width=4, dataset="mnist1d",
              data_root=data_root, train_subset=256, batch_size=64, epochs=1, elr=1e-2, device="cpu",
              loss="mse", checkpoint_metrics=False)
    res = sharpness_mod.sharpness(t.path, "last", probes=2, eigs=0, batches=2, write=False)
    data = load_dataset("mnist1d", data_root, train_subset=256)
    net = with_batch_statistics(t.load_model(1))
    with torch.no_grad():
        losses = [float(((net(x) - F.one_hot(y, 10).float()) ** 2).sum(1).mean() / 10)
                  for x, y in fixed_batches(data, 64, 2, 0)]
    assert res["loss"][0] == pytest.approx(sum(losses) / 2, rel=1e-5)


def test_the_default_data_is_the_whole_set_in_stored_order(tmp_path, data_root):
    """By default the curvature is taken on the official data: the whole training set in stored
    order with train-mode BN, so its loss and mean effective gradient norm are the checkpoint
    metrics of the same epoch (two code paths: torch.func here, autograd there)."""
    t = train(out=str(tmp_path / "t.h5"), progress=False, model="convnet", width=4, dataset="mnist1d",
              data_root=data_root, train_subset=250, batch_size=64, epochs=2, elr=1e-2, device="cpu",
              dtype="float64")
    res = sharpness_mod.sharpness(t.path, "last", probes=2, eigs=0, write=False)
    assert res["settings"]["batches"] == "all" and "stored order" in res["settings"]["data"]
    assert res["loss"][0] == pytest.approx(t.checkpoint_metrics["train_loss"][-1], rel=1e-9)
    assert res["mean_effective_grad_norm"][0] == pytest.approx(t.checkpoint_metrics["effective_grad_norm"][-1], rel=1e-9)
