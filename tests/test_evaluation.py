"""Checkpoint metrics, the official protocol, against a hand-written loop."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape import Trajectory, load_dataset, train
from landscape.evaluation import evaluate_checkpoints, stored_checkpoint_metrics
from landscape.models import si_groups


def reference(model, data, batch_size):
    """get_info.py's loop, written out: the training set in stored order, train-mode BN on a
    throw-away copy, per batch the loss sum, hits and the SI gradient; then the test set in eval
    mode."""
    net = copy.deepcopy(model).train()
    params = [p for _, p in si_groups(net)]
    rho = float(torch.sqrt(sum(p.detach().double().square().sum() for p in params)))
    loss_sum = hits = 0.0
    egn, layer_egn, filter_egn = [], [], []
    n = len(data.y_train)
    for i in range(0, n, batch_size):
        x, y = data.x_train[i:i + batch_size], data.y_train[i:i + batch_size]
        out = net(x)
        loss = F.cross_entropy(out, y)
        g = torch.autograd.grad(loss, params)
        loss_sum += float(loss.detach()) * len(y)
        hits += float((out.argmax(1) == y).sum())
        egn.append(rho * float(torch.sqrt(sum(t.double().square().sum() for t in g))))
        layer_egn.append([float(p.detach().double().norm() * t.double().norm()) for p, t in zip(params, g)])
        filter_egn.append(np.concatenate([(p.detach().double().flatten(1).norm(dim=1) *
                                           t.double().flatten(1).norm(dim=1)).numpy() for p, t in zip(params, g)]))
    model.eval()
    with torch.no_grad():
        out = model(data.x_test)
        test_loss = float(F.cross_entropy(out, data.y_test))
        test_acc = float((out.argmax(1) == data.y_test).float().mean())
    return {"train_loss": loss_sum / n, "train_accuracy": hits / n, "effective_grad_norm": np.mean(egn),
            "groups/effective_grad_norm": np.mean(layer_egn, 0),
            "filters/effective_grad_norm": np.mean(filter_egn, 0),
            "test_loss": test_loss, "test_accuracy": test_acc}


@pytest.fixture
def run(tmp_path, tiny):
    # 250 examples in batches of 64: the last batch (58) is smaller, so size weighting matters
    cfg = dict(tiny, train_subset=250, epochs=4, save_every=2, checkpoint_metrics=True, dtype="float64")
    return train(out=str(tmp_path / "t.h5"), progress=False, **cfg), cfg


def test_checkpoint_metrics_equal_a_hand_written_loop(run, tiny):
    traj, cfg = run
    before = {e: traj.state_dict(e) for e in traj.checkpoint_epochs}
    res = evaluate_checkpoints(traj.path, "all")
    assert list(res["epoch"]) == [0, 2, 4]
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=250)
    data.x_train, data.x_test = data.x_train.double(), data.x_test.double()
    for i, e in enumerate(res["epoch"]):
        ref = reference(traj.load_model(int(e)), data, cfg["batch_size"])
        for key, value in ref.items():
            np.testing.assert_allclose(res[key][i], value, rtol=1e-6, err_msg=f"{key} @ {e}")
    # nothing of the stored checkpoints moved (train-mode BN ran on a copy)
    after = Trajectory(traj.path)
    for e, state in before.items():
        for k, v in state.items():
            assert torch.equal(v, after.state_dict(e)[k]), (e, k)
    # and the results are stored beside the trajectory
    stored = stored_checkpoint_metrics(after)
    assert stored is not None


def test_training_logs_the_same_at_every_epoch_end(run):
    traj, cfg = run
    res = evaluate_checkpoints(traj.path, "all", write=False)
    cm = traj.checkpoint_metrics
    assert cm["train_loss"].shape == (4,) and traj.checkpoint_filter_metrics["effective_grad_norm"].shape[0] == 4
    for i, e in enumerate(res["epoch"][1:], 1):
        for key in ("train_loss", "train_accuracy", "effective_grad_norm", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(cm[key][e - 1], res[key][i], rtol=1e-9, err_msg=key)
        np.testing.assert_allclose(traj.checkpoint_filter_metrics["effective_grad_norm"][e - 1],
                                   res["filters/effective_grad_norm"][i], rtol=1e-9)
    # a different quantity from the epoch means training logs
    assert not np.allclose(cm["train_loss"], traj.metrics["train_loss"], rtol=1e-3)
    np.testing.assert_allclose((1 / traj.checkpoint_filter_metrics["elr"]).sum(1), 1 / cfg["elr"], rtol=1e-9)


def test_cli(run, cli, tmp_path):
    traj, _ = run
    code, out, err = cli(["evaluate", traj.path + "@2", "--json", str(tmp_path / "e.json"),
                          "--plot", str(tmp_path / "e.png")])
    assert code == 0, err
    assert "epoch-mean loss" in out and (tmp_path / "e.png").exists()
    assert json.load(open(tmp_path / "e.json"))["epoch"] == [2]
    code, _, err = cli(["evaluate", traj.path, "--checkpoints", "7"])
    assert code == 2 and "no checkpoint at epoch 7" in err


def test_regimes_and_double_descent_say_which_metrics_they_use(tmp_path, tiny, cli):
    sw = tmp_path / "sw"
    cfg = dict(tiny, epochs=4, label_noise=0.2)
    for elr in (1e-3, 2e-3):
        train(out=str(sw / f"elr{elr:g}.h5"), progress=False, **dict(cfg, elr=elr, checkpoint_metrics=True))
    code, out, err = cli(["regimes", str(sw), "--json", str(tmp_path / "r.json")])
    assert code == 0, err
    assert "metrics: checkpoint metrics" in out  # auto: every run has them
    result = json.load(open(tmp_path / "r.json"))
    assert result["metrics"] == "checkpoint"
    t = Trajectory(str(sw / "elr0.001.h5"))
    row = result["rows"][0]
    assert row["final_train_loss"] == pytest.approx(float(np.median(t.checkpoint_metrics["train_loss"][-1:])))
    code, out, err = cli(["regimes", str(sw), "--metrics", "epoch"])
    assert code == 0 and "metrics: epoch means" in out
    # a run without checkpoint metrics: auto falls back to epoch means for all; 'checkpoint' skips it
    train(out=str(sw / "elr0.005.h5"), progress=False, **dict(cfg, elr=5e-3, checkpoint_metrics=False))
    code, out, err = cli(["regimes", str(sw)])
    assert code == 0 and "metrics: epoch means" in out and "skipped" not in out
    code, out, err = cli(["regimes", str(sw), "--metrics", "checkpoint"])
    assert code == 0 and f"skipped {sw / 'elr0.005.h5'}: no checkpoint metrics" in out
    # 'landscape evaluate' supplies them (at the checkpoints) for a run trained without
    evaluate_checkpoints(str(sw / "elr0.005.h5"), "all")
    code, out, err = cli(["regimes", str(sw), "--metrics", "checkpoint"])
    assert code == 0 and "skipped" not in out
    cfg5 = dict(cfg, epochs=6)
    noisy = train(out=str(tmp_path / "noisy.h5"), progress=False, **dict(cfg5, checkpoint_metrics=True))
    code, out, err = cli(["double-descent", noisy.path, "--json", str(tmp_path / "d.json")])
    assert code == 0 and "metrics: checkpoint metrics" in out, err
    d = json.load(open(tmp_path / "d.json"))
    assert d["rows"][0]["metrics"] == "checkpoint"
    curves = stored_checkpoint_metrics(noisy)  # from the initial point on, as the paper's figures
    assert d["rows"][0]["test_error_epochs"][0] == 0
    np.testing.assert_allclose(d["rows"][0]["test_error"], 1 - curves["test_accuracy"])


def test_the_initial_point_is_measured_by_default(tmp_path, tiny):
    """Checkpoint metrics are on by default, epoch 0 included: its row equals a hand-written
    loop over the initial model, and stored_checkpoint_metrics gives curves from epoch 0."""
    cfg = {k: v for k, v in dict(tiny, train_subset=250, epochs=2, dtype="float64").items()
           if k != "checkpoint_metrics"}  # the default
    traj = train(out=str(tmp_path / "t.h5"), progress=False, **cfg)
    assert traj.config["checkpoint_metrics"] is True
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=250)
    data.x_train, data.x_test = data.x_train.double(), data.x_test.double()
    ref = reference(traj.load_model(0), data, cfg["batch_size"])
    for key, value in ref.items():
        np.testing.assert_allclose(traj.initial_rows[f"checkpoint/{key}"], value, rtol=1e-6, err_msg=key)
    curves = stored_checkpoint_metrics(traj)
    assert list(curves["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(curves["train_loss"][0], ref["train_loss"], rtol=1e-9)
    np.testing.assert_array_equal(curves["train_loss"][1:], traj.checkpoint_metrics["train_loss"])
    assert curves["filters/effective_grad_norm"].shape[0] == 3


def test_measuring_changes_nothing_of_the_training(tmp_path, tiny, cli):
    """The same run with and without checkpoint metrics: bit-identical weights at every epoch and
    the same epoch means (the measurement draws no random number and moves nothing)."""
    cfg = dict(tiny, epochs=3, save_every=1, augment=True, label_noise=0.1, checkpoint_metrics=True)
    on = train(out=str(tmp_path / "on.h5"), progress=False, **cfg)
    code, _, err = cli(["train", "--model", "convnet", "--width", "4", "--dataset", "mnist1d", "--data-root",
                        tiny["data_root"], "--train-subset", "256", "--batch-size", "64", "--epochs", "3",
                        "--elr", "0.01", "--device", "cpu", "--save-every", "1", "--augment",
                        "--label-noise", "0.1", "--no-checkpoint-metrics", "-q", "-o", str(tmp_path / "off.h5")])
    assert code == 0, err
    off = Trajectory(str(tmp_path / "off.h5"))
    assert off.config["checkpoint_metrics"] is False and not off.checkpoint_metrics and not off.initial_rows
    assert on.checkpoint_metrics and on.initial_rows
    for e in range(4):
        for k, v in on.state_dict(e).items():
            assert torch.equal(v, off.state_dict(e)[k]), (e, k)
    for k, v in on.metrics.items():
        np.testing.assert_array_equal(v, off.metrics[k], err_msg=k)


def test_resume_fine_tuning_and_sweeps_give_the_same_checkpoint_rows(tmp_path, tiny):
    from landscape.sweep import sweep
    # with label noise: the subsets' forward-only passes too (vectorised: one vmapped forward)
    cfg = dict(tiny, epochs=4, save_every=2, dtype="float64", checkpoint_metrics=True, label_noise=0.2)
    single = {e: train(out=str(tmp_path / f"single{e:g}.h5"), progress=False, **dict(cfg, elr=e))
              for e in (1e-3, 1e-2)}

    def same(a, b, rtol=0.0):
        ca, cb = stored_checkpoint_metrics(a), stored_checkpoint_metrics(b)
        assert set(ca) == set(cb) and list(ca["epoch"]) == [0, 1, 2, 3, 4]
        for k in ca:
            np.testing.assert_allclose(ca[k], cb[k], rtol=rtol, atol=0, err_msg=k)
    # vectorised sums in another order, and a worker runs one thread where this process may run
    # several (a threaded BatchNorm sums its rows in another order): float64 rounding apart
    for strategy, rtol in (("streams", 0.0), ("processes", 1e-8), ("vectorised", 1e-8)):
        sweep([1e-3, 1e-2], str(tmp_path / strategy), strategy=strategy, progress=False, **cfg)
        for e, t in single.items():
            same(Trajectory(str(tmp_path / strategy / f"elr{e:g}.h5")), t, rtol)
    cut = train(out=str(tmp_path / "cut.h5"), progress=False, **dict(cfg, elr=1e-2, epochs=2))
    same(train(out=cut.path, resume=True, epochs=4, progress=False), single[1e-2])
    # fine-tuning: the start point is the source checkpoint, measured on this run's data
    ft = train(out=str(tmp_path / "ft.h5"), progress=False, **dict(cfg, elr=1e-3, epochs=1,
                                                                  init=f"{single[1e-2].path}@4"))
    np.testing.assert_allclose(ft.initial_rows["checkpoint/train_loss"],
                               single[1e-2].checkpoint_metrics["train_loss"][-1], rtol=1e-7)


def test_distance_to_the_start_equals_a_hand_computation(run):
    """cos_to_init and distance_to_init of every checkpoint row (and of evaluate) against the
    stored epoch-0 and epoch-e SI tensors; on the sphere |theta - theta0| = rho sqrt(2 - 2 cos)."""
    traj, cfg = run
    start = traj.state_dict(0)
    res = evaluate_checkpoints(traj.path, "all", write=False)
    cm, groups = traj.checkpoint_metrics, traj.checkpoint_group_metrics
    for i, e in enumerate(res["epoch"]):
        now = traj.state_dict(int(e))
        a = torch.cat([now[n].double().reshape(-1) for n in traj.group_names])
        b = torch.cat([start[n].double().reshape(-1) for n in traj.group_names])
        cos, dist = float(a @ b / (a.norm() * b.norm())), float((a - b).norm())
        layer_dist = [float((now[n].double() - start[n].double()).norm()) for n in traj.group_names]
        np.testing.assert_allclose([res["cos_to_init"][i], res["distance_to_init"][i]], [cos, dist], rtol=1e-12)
        np.testing.assert_allclose(res["groups/distance_to_init"][i], layer_dist, rtol=1e-12)
        rho = float(b.norm())
        assert dist == pytest.approx(rho * np.sqrt(max(0.0, 2 - 2 * cos)), rel=1e-6, abs=1e-6 * rho)
        if e > 0:  # the training rows: the same numbers at each epoch's end
            np.testing.assert_allclose([cm["cos_to_init"][e - 1], cm["distance_to_init"][e - 1]], [cos, dist], rtol=1e-12)
            np.testing.assert_allclose(groups["distance_to_init"][e - 1], layer_dist, rtol=1e-12)
    assert traj.initial_rows["checkpoint/cos_to_init"] == 1.0 and traj.initial_rows["checkpoint/distance_to_init"] == 0.0
    assert res["distance_to_init"][-1] > 0


def test_label_noise_subsets_equal_a_hand_loop(tmp_path, tiny):
    """With label noise the checkpoint rows hold the official per-subset metrics: each subset in
    its own batches in stored order; the total loss and accuracy their size-weighted means."""
    cfg = dict(tiny, train_subset=250, epochs=1, dtype="float64", label_noise=0.3, checkpoint_metrics=True)
    traj = train(out=str(tmp_path / "n.h5"), progress=False, **cfg)
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=250, label_noise=0.3)
    data.x_train, data.x_test = data.x_train.double(), data.x_test.double()
    noisy = np.sort(traj.data["noisy_indices"])
    clean = np.setdiff1d(np.arange(250), noisy)
    assert len(noisy) + len(clean) == 250 and 0 < len(noisy) < 250
    for epoch, row in ((0, {k[len("checkpoint/"):]: v for k, v in traj.initial_rows.items()}),
                       (1, {k: v[0] for k, v in traj.checkpoint_metrics.items()})):
        model = traj.load_model(epoch)
        parts = {}
        for name, idx in (("noisy", noisy), ("clean", clean)):
            sub = load_dataset("mnist1d", tiny["data_root"], train_subset=250, label_noise=0.3)
            sub.x_train, sub.y_train, sub.x_test = data.x_train[idx], data.y_train[idx], data.x_test
            parts[name] = reference(model, sub, cfg["batch_size"])
            for key in ("train_loss", "train_accuracy"):  # forward only, as the official code
                np.testing.assert_allclose(row[f"{key}_{name}"], parts[name][key], rtol=1e-6, err_msg=(epoch, key, name))
            assert f"effective_grad_norm_{name}" not in row
        for key in ("train_loss", "train_accuracy"):
            total = (parts["noisy"][key] * len(noisy) + parts["clean"][key] * len(clean)) / 250
            np.testing.assert_allclose(row[key], total, rtol=1e-6, err_msg=(epoch, key))
        np.testing.assert_allclose(row["effective_grad_norm"], reference(model, data, cfg["batch_size"])["effective_grad_norm"],
                                   rtol=1e-6)
    res = evaluate_checkpoints(traj.path, "all", write=False)
    np.testing.assert_allclose(res["train_loss_noisy"][-1], traj.checkpoint_metrics["train_loss_noisy"][-1], rtol=1e-9)


def test_a_file_from_before_a_new_row_resumes_with_its_own_layout(tmp_path, tiny):
    """Resuming a trajectory written before a checkpoint row existed keeps one value per epoch
    in every row it has (and writes none of the rows it lacks)."""
    import h5py
    path = str(tmp_path / "old.h5")
    train(out=path, progress=False, **dict(tiny, epochs=2, checkpoint_metrics=True))
    with h5py.File(path, "a") as f:  # as written before the distance rows existed
        for name in ("cos_to_init", "distance_to_init", "groups/cos_to_init", "groups/distance_to_init"):
            del f[f"metrics/checkpoint/{name}"]
    t = train(out=path, resume=True, epochs=4, progress=False)
    assert t.epochs_complete == 4 and len(t.checkpoint_metrics["train_loss"]) == 4
    assert "cos_to_init" not in t.checkpoint_metrics


def test_a_row_the_run_no_longer_measures_is_nan_from_then_on(tmp_path, tiny):
    """A file that holds a row the run does not measure (written when it was measured) keeps
    one value per epoch in it: NaN for the epochs trained since."""
    import h5py
    path = str(tmp_path / "old.h5")
    train(out=path, progress=False, **dict(tiny, epochs=2, checkpoint_metrics=True, label_noise=0.2))
    with h5py.File(path, "a") as f:  # a subset's gradient norm, measured before (made up values)
        for name in ("effective_grad_norm_noisy", "groups/old_rows"):
            shape = (3,) if name.startswith("groups") else ()
            f.create_dataset(f"metrics/checkpoint/{name}", data=np.ones((2,) + shape), maxshape=(None,) + shape)
    t = train(out=path, resume=True, epochs=4, progress=False)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["metrics/checkpoint/effective_grad_norm_noisy"][:], [1, 1, np.nan, np.nan])
        assert f["metrics/checkpoint/groups/old_rows"].shape == (4, 3)
        assert np.isnan(f["metrics/checkpoint/groups/old_rows"][2:]).all()
    assert len(t.checkpoint_metrics["train_loss_noisy"]) == 4 and np.isfinite(t.checkpoint_metrics["train_loss_noisy"]).all()


@pytest.mark.parametrize("filters", [True, False])
@pytest.mark.parametrize("stacked", [False, True])
def test_a_checkpoint_pass_means_every_statistic_of_its_batches(filters, stacked):
    """The checkpoint pass sums each batch's gradient norms only and makes the means at the
    end; they equal the means of the whole statistics (``si_statistics``) summed batch by batch,
    for one model and for a stacked pair with a learning rate each."""
    from landscape.measure import EpochAccumulator, PointAccumulator
    from landscape.sphere import si_statistics
    torch.manual_seed(0)
    shapes = [(4, 1, 3), (6, 4, 3), (5, 6)]
    lead = (2,) if stacked else ()
    params = [torch.randn(lead + s, dtype=torch.float64) for s in shapes]
    lr = torch.tensor([0.1, 0.03], dtype=torch.float64) if stacked else 0.1
    dims = int(stacked)
    full, point = EpochAccumulator(), PointAccumulator(params, lr, filters, dims)
    for i in range(5):
        grads = [torch.randn_like(p) * (i + 1) for p in params]
        loss, correct = torch.full(lead, 1.0 + i), torch.full(lead, i)
        full.add(si_statistics(params, grads, lr, dims, filters=filters), loss, correct, 10 + i)
        point.add_gradients(grads, loss, correct, 10 + i)
    full.rho_end_sq, full.filter_rho_end_sq = point.rho_end_sq, point.filter_rho_end_sq
    for index in ([0, 1] if stacked else [None]):
        rate = float(lr[index]) if stacked else lr
        expected, got = full.metrics(rate, index), point.metrics(rate, index)
        assert expected[0].pop("log_cos_step_sum") < 0 and "log_cos_step_sum" not in got[0]
        assert bool(expected[2]) == filters  # the per-filter rows
        for want, have in zip(expected, got):
            assert want.keys() == have.keys()
            for key in want:
                np.testing.assert_allclose(have[key], want[key], rtol=1e-12, err_msg=key)
