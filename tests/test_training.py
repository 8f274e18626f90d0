"""landscape train against independent truth."""
import json
import math
import os

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import landscape.steppers as steppers
from landscape import Trajectory, load_dataset, train
from landscape.models import si_groups


def _si_norm(model):
    return math.sqrt(sum(float(p.detach().double().square().sum()) for _, p in si_groups(model)))


def test_sphere_norm_and_elr_hold_at_every_step(tmp_path, tiny):
    norms = []
    traj = train(out=str(tmp_path / "t.h5"), on_step=lambda e, s, m: norms.append(_si_norm(m)), **tiny)
    rho = traj.attrs["rho"]
    assert len(norms) == 3 * 4
    assert max(abs(n - rho) / rho for n in norms) < 1e-6
    np.testing.assert_allclose(traj.metrics["elr"], tiny["elr"], rtol=1e-6)
    np.testing.assert_allclose(traj.metrics["rho"], rho, rtol=1e-6)
    # eq. (3) at every logged epoch: sum_i 1/ELR_i = 1/ELR
    np.testing.assert_allclose((1 / traj.group_metrics["elr"]).sum(1), 1 / tiny["elr"], rtol=1e-6)
    np.testing.assert_allclose((traj.group_metrics["rho_end"] ** 2).sum(1), rho ** 2, rtol=1e-6)
    for epoch in traj.checkpoint_epochs:
        assert abs(_si_norm(traj.load_model(epoch)) - rho) / rho < 1e-6
    # the frozen last layer never changes
    torch.testing.assert_close(traj.state_dict(0)["head.weight"], traj.state_dict(3)["head.weight"], rtol=0, atol=0)
    assert abs(traj.state_dict(3)["head.weight"].norm().item() - 10) < 1e-4


def test_logged_effective_grad_norm_equals_autograd(tmp_path, tiny):
    cfg = dict(tiny, train_subset=64, batch_size=64, epochs=1)  # one step: the whole subset
    traj = train(out=str(tmp_path / "t.h5"), **cfg)
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=64)
    model = traj.load_model(0)
    model.train()
    params = [p for _, p in si_groups(model)]
    loss = F.cross_entropy(model(data.x_train), data.y_train)
    grads = torch.autograd.grad(loss, params)
    rho = math.sqrt(sum(float(p.detach().double().square().sum()) for p in params))
    g = math.sqrt(sum(float(q.double().square().sum()) for q in grads))
    assert math.isclose(traj.metrics["effective_grad_norm"][0], rho * g, rel_tol=1e-5)
    assert math.isclose(traj.metrics["train_loss"][0], loss.item(), rel_tol=1e-5)
    per_group = [p.detach().double().norm().item() * q.double().norm().item() for p, q in zip(params, grads)]
    np.testing.assert_allclose(traj.group_metrics["effective_grad_norm"][0], per_group, rtol=1e-5)


def test_different_elrs_share_initialisation_and_batches(tmp_path, tiny, monkeypatch):
    seen = {}
    original = steppers.train_batches

    def recording(data, *a, **k):
        for x, y in original(data, *a, **k):
            seen.setdefault(key, []).append((x.clone(), y.clone()))
            yield x, y

    monkeypatch.setattr(steppers, "train_batches", recording)
    trajs = {}
    for key, elr in (("a", 1e-3), ("b", 0.5)):
        trajs[key] = train(out=str(tmp_path / f"{key}.h5"), **dict(tiny, elr=elr))
    for name, tensor in trajs["a"].state_dict(0).items():
        assert torch.equal(tensor, trajs["b"].state_dict(0)[name]), name
    assert len(seen["a"]) == len(seen["b"]) == 12
    for (xa, ya), (xb, yb) in zip(seen["a"], seen["b"]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(trajs["a"].state_dict(3)["features.0.weight"], trajs["b"].state_dict(3)["features.0.weight"])
    # epochs see different orders
    assert not torch.equal(seen["a"][0][1], seen["a"][4][1])


def _same_trajectory(a, b):
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    for k in a.group_metrics:
        np.testing.assert_array_equal(a.group_metrics[k], b.group_metrics[k], err_msg=k)
    assert a.filter_metrics.keys() == b.filter_metrics.keys()
    for k in a.filter_metrics:
        np.testing.assert_array_equal(a.filter_metrics[k], b.filter_metrics[k], err_msg=k)
    assert a.checkpoint_epochs == b.checkpoint_epochs
    for e in a.checkpoint_epochs:
        for name, t in a.state_dict(e).items():
            assert torch.equal(t, b.state_dict(e)[name]), (e, name)


def test_same_seed_same_trajectory(tmp_path, tiny):
    cfg = dict(tiny, augment=True, label_noise=0.1)
    _same_trajectory(train(out=str(tmp_path / "a.h5"), **cfg), train(out=str(tmp_path / "b.h5"), **cfg))


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny):
    cfg = dict(tiny, epochs=4, save_every=2, eval_every=2)
    full = train(out=str(tmp_path / "full.h5"), **cfg)

    def interrupt(epoch, step, model):
        if epoch == 3 and step == 2:
            raise KeyboardInterrupt

    path = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        train(out=path, on_step=interrupt, **cfg)
    cut = Trajectory(path)
    assert cut.epochs_complete == 2 and list(cut.epochs) == [1, 2]
    resumed = train(out=path, resume=True)
    _same_trajectory(full, resumed)


def test_resume_discards_uncommitted_rows_and_can_extend(tmp_path, tiny):
    path = str(tmp_path / "t.h5")
    train(out=path, **dict(tiny, epochs=2))
    with h5py.File(path, "a") as f:  # what a kill between writes and commit leaves behind
        ds = f["metrics/train_loss"]
        ds.resize(3, axis=0)
        ds[2] = 123.0
    assert Trajectory(path).metrics["train_loss"].shape == (2,)
    ext = train(out=path, resume=True, epochs=3)
    assert list(ext.epochs) == [1, 2, 3] and ext.metrics["train_loss"][2] != 123.0
    assert ext.config["epochs"] == 3
    _same_trajectory(ext, train(out=str(tmp_path / "u.h5"), **dict(tiny, epochs=3, eval_every=1)))


def test_label_noise_paper_mode_replaces_labels_by_uniform_classes(data_root, tmp_path, tiny):
    """The official protocol: each label with probability p becomes a uniform class (possibly
    its own), so a fraction p (1 - 1/C) of the labels is wrong, within 3 standard errors."""
    p, C = 0.2, 10
    clean = load_dataset("mnist1d", data_root, data_seed=7)
    noisy = load_dataset("mnist1d", data_root, label_noise=p, data_seed=7)  # paper: the default
    n = len(clean.y_train)
    wrong = (clean.y_train != noisy.y_train).numpy()
    q = p * (1 - 1 / C)
    assert abs(wrong.mean() - q) < 3 * math.sqrt(q * (1 - q) / n), wrong.mean()
    replaced = noisy.noisy_indices
    assert abs(len(replaced) / n - p) < 3 * math.sqrt(p * (1 - p) / n)
    assert set(np.flatnonzero(wrong)) <= set(replaced)  # every wrong label was replaced
    kept = (noisy.y_train.numpy()[replaced] == noisy.original_labels).mean()
    assert abs(kept - 1 / C) < 3 * math.sqrt((1 / C) * (1 - 1 / C) / len(replaced))
    np.testing.assert_array_equal(clean.y_train.numpy()[replaced], noisy.original_labels)
    again = load_dataset("mnist1d", data_root, label_noise=p, data_seed=7)
    assert torch.equal(again.y_train, noisy.y_train)  # seeded
    # stored in the trajectory, and rebuilt from it by the analyses
    t = train(out=str(tmp_path / "t.h5"), progress=False, **dict(tiny, label_noise=p, epochs=1))
    assert t.config["label_noise_mode"] == "paper"
    from landscape.data import dataset_of
    data = dataset_of(t.config)
    np.testing.assert_array_equal(t.data["noisy_indices"], data.noisy_indices)
    np.testing.assert_array_equal(t.data["original_labels"], data.original_labels)


def test_label_noise_changes_exactly_the_stored_labels(data_root):
    clean = load_dataset("mnist1d", data_root, train_subset=1000, data_seed=4)
    noisy = load_dataset("mnist1d", data_root, train_subset=1000, label_noise=0.15, data_seed=4,
                         label_noise_mode="exact")
    changed = np.flatnonzero((clean.y_train != noisy.y_train).numpy())
    assert len(changed) == 150
    np.testing.assert_array_equal(changed, noisy.noisy_indices)
    np.testing.assert_array_equal(clean.y_train.numpy()[changed], noisy.original_labels)
    again = load_dataset("mnist1d", data_root, train_subset=1000, label_noise=0.15, data_seed=4,
                         label_noise_mode="exact")
    assert torch.equal(again.y_train, noisy.y_train)
    other = load_dataset("mnist1d", data_root, train_subset=1000, label_noise=0.15, data_seed=5,
                         label_noise_mode="exact")
    assert not np.array_equal(other.noisy_indices, noisy.noisy_indices)
    assert round(0.333 * 1000) == len(load_dataset("mnist1d", data_root, train_subset=1000,
                                                    label_noise=0.333, label_noise_mode="exact").noisy_indices)


def test_runs_stored_before_the_noise_mode_keep_the_exact_protocol(tmp_path, tiny):
    """A configuration without label_noise_mode (written before it existed) means 'exact'."""
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **dict(tiny, label_noise=0.25, label_noise_mode="exact", epochs=1))
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["config"])
        del config["label_noise_mode"]
        f.attrs["config"] = json.dumps(config)
    resumed = train(out=path, resume=True, progress=False, epochs=2)
    assert len(resumed.data["noisy_indices"]) == 64
    exact = train(out=str(tmp_path / "u.h5"), progress=False,
                  **dict(tiny, label_noise=0.25, label_noise_mode="exact", epochs=2))
    np.testing.assert_array_equal(resumed.metrics["train_loss"], exact.metrics["train_loss"])
    from landscape.data import dataset_of
    assert len(dataset_of(resumed.config).noisy_indices) == 64


def test_label_noise_indices_are_stored(tmp_path, tiny):
    traj = train(out=str(tmp_path / "t.h5"), **dict(tiny, label_noise=0.25, epochs=1,
                                                    label_noise_mode="exact"))
    assert len(traj.data["noisy_indices"]) == 64
    assert len(traj.data["subset_indices"]) == 256


def test_fine_tuning_starts_from_the_stored_checkpoint(tmp_path, tiny):
    src = train(out=str(tmp_path / "src.h5"), **tiny)
    ft = train(out=str(tmp_path / "ft.h5"), **dict(tiny, init=f"{src.path}@2", elr=0.05, model="mlp"))
    for name, t in src.state_dict(2).items():
        assert torch.equal(t, ft.state_dict(0)[name])
    assert ft.model_spec == src.model_spec  # the model comes from the source
    assert ft.config["init_source"] == {"path": src.path, "epoch": 2, "elr": tiny["elr"]}
    assert math.isclose(ft.attrs["rho"], src.attrs["rho"], rel_tol=1e-6)
    np.testing.assert_allclose(ft.metrics["elr"], 0.05, rtol=1e-6)


def test_trajectory_file_layout(tmp_path, tiny):
    traj = train(out=str(tmp_path / "t.h5"), **dict(tiny, save_every=2, epochs=5, eval_every=2))
    assert traj.checkpoint_epochs == [0, 2, 4, 5]
    assert np.isnan(traj.metrics["test_loss"][0]) and not np.isnan(traj.metrics["test_loss"][1])
    assert not np.isnan(traj.metrics["test_loss"][4])  # the last epoch is always evaluated
    with h5py.File(traj.path) as f:
        assert f.attrs["format"] == "landscape-trajectory"
        assert json.loads(f.attrs["config"])["elr"] == tiny["elr"]
        assert f["metrics/groups/elr"].shape == (5, 4)
        assert json.loads(f["metrics/groups"].attrs["group_names"]) == traj.group_names
        ck = f["checkpoints/000002"]
        assert ck["features.0.weight"].compression is None  # gzip cost 13x the write for ~3-12%
        assert "features.1.running_mean" in ck  # BN buffers are stored
        # the resume state: two fixed slots in turn, the committed epoch's in slot 5 % 2
        assert list(f["state"].keys()) == ["slot0", "slot1"]
        assert f["state/slot1"].attrs["epoch"] == 5 and f["state/slot0"].attrs["epoch"] == 4
        assert f.attrs["format_version"] == 2


@pytest.mark.slow
def test_sigkilled_process_resumes_to_the_same_result(tmp_path, tiny, as_flags):
    """A real kill (SIGKILL, no clean-up) of `landscape train`, then --resume."""
    import signal
    import subprocess
    import sys
    import time
    cfg = dict(tiny, epochs=40, save_every=5)
    args = [sys.executable, "-m", "landscape", "train", "-q", "-o", str(tmp_path / "killed.h5")] + as_flags(cfg)
    # the same number of threads as this process (conftest), so the same float32 kernels
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen(args, env=env)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 3:
        time.sleep(0.2)
        try:
            with h5py.File(tmp_path / "killed.h5", "r", locking=False) as f:
                done = int(f.attrs["epochs_complete"])
        except (OSError, KeyError):
            pass  # not created yet, or caught mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= Trajectory(str(tmp_path / "killed.h5")).epochs_complete < 40
    resumed = train(out=str(tmp_path / "killed.h5"), resume=True, progress=False)
    _same_trajectory(resumed, train(out=str(tmp_path / "full.h5"), progress=False, **cfg))


def test_augmentation_pads_with_black_pixels_as_the_official_code():
    """The official code crops the raw image padded with black (0) pixels, then normalises. On
    normalised CIFAR-like data every augmented example must be a window (possibly flipped) of
    the raw image padded with zeros and then normalised."""
    from landscape.data import CIFAR_MEAN, CIFAR_STD, Dataset, train_batches
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(1, 256, (12, 3, 8, 8), generator=g).float() / 255  # no pixel is black
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]
    labels = torch.arange(12)  # unique: a label names its source image
    data = Dataset("cifar10", (raw - mean) / std, labels, raw[:2], labels[:2], 12,
                   black=(-mean / std).flatten().numpy())
    black = (torch.nn.functional.pad(raw, (4, 4, 4, 4)) - mean) / std  # the official order
    for padding in ("black", "zero"):
        x, y = next(train_batches(data, 12, epoch=1, data_seed=0, augment=True, padding=padding))
        reached_border = 0
        for img, label in zip(x, y):
            if padding == "black":
                padded = black[label]
            else:  # zeros in normalised units: the data's mean colour
                padded = torch.nn.functional.pad(data.x_train[label], (4, 4, 4, 4))
            windows = [padded[:, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)]
            assert any(torch.allclose(img, w, atol=1e-6) or torch.allclose(img, w.flip(-1), atol=1e-6)
                       for w in windows), (padding, int(label))
            reached_border += not any(torch.allclose(img, w) or torch.allclose(img, w.flip(-1))
                                      for w in windows[40:41])  # not the centred window
        assert reached_border > 6  # most crops moved into the padding


@pytest.mark.parametrize("model", ["convnet", "mlp"])
def test_every_filter_is_an_si_group(model, tiny, tmp_path):
    """Scaling one filter (output channel) by c > 0 leaves the train-mode outputs unchanged;
    per-filter metrics obey eq. (3) and equal rho_i ||grad_i L_B|| from autograd."""
    from landscape.models import build_model, model_spec
    spec = model_spec(model, (1, 40), 10, width=4 if model == "convnet" else 16, depth=2)
    net = build_model(spec, 1).double()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-30
    x = torch.randn(16, 1, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net.train()
    with torch.no_grad():
        ref = net(x)
        for _, p in si_groups(net):
            for ch in (0, p.shape[0] - 1):
                p[ch].mul_(5.0)
                torch.testing.assert_close(net(x), ref, rtol=1e-9, atol=1e-9)
                p[ch].div_(5.0)
    # the logged per-filter metrics, one step (the whole subset) per epoch
    cfg = dict(tiny, model=model, width=spec["width"], depth=2, train_subset=64, batch_size=64, epochs=3)
    traj = train(out=str(tmp_path / "t.h5"), progress=False, **cfg)
    fm, gm = traj.filter_metrics, traj.group_metrics
    params0 = [p for _, p in si_groups(traj.load_model(0))]
    assert fm["rho"].shape == (3, sum(p.shape[0] for p in params0))
    np.testing.assert_array_equal(traj.filter_layer, np.repeat(np.arange(len(params0)), [p.shape[0] for p in params0]))
    np.testing.assert_array_equal(traj.filter_channel, np.concatenate([np.arange(p.shape[0]) for p in params0]))
    np.testing.assert_allclose((1 / fm["elr"]).sum(1), 1 / traj.config["elr"], rtol=1e-6)  # eq. (3)
    for k, name in enumerate(traj.group_names):  # each layer is the sum of its filters
        np.testing.assert_allclose((fm["rho"][:, traj.filter_layer == k] ** 2).sum(1), gm["rho"][:, k] ** 2, rtol=1e-9)
    np.testing.assert_allclose(fm["effective_step_size"], fm["elr"] * fm["effective_grad_norm"], rtol=1e-9)
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=64)
    net = traj.load_model(0)
    net.train()
    params = [p for _, p in si_groups(net)]
    grads = torch.autograd.grad(F.cross_entropy(net(data.x_train), data.y_train), params)
    expected = np.concatenate([(p.detach().double().flatten(1).norm(dim=1) * g.double().flatten(1).norm(dim=1)).numpy()
                               for p, g in zip(params, grads)])
    np.testing.assert_allclose(fm["effective_grad_norm"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(fm["rho"][0], np.concatenate([p.detach().double().flatten(1).norm(dim=1).numpy()
                                                             for p in params]), rtol=1e-6)
    # rho_end: the filter norms after the epoch's last step
    after = [p for _, p in si_groups(traj.load_model(3))]
    np.testing.assert_allclose(fm["rho_end"][2], np.concatenate([p.detach().double().flatten(1).norm(dim=1).numpy()
                                                                 for p in after]), rtol=1e-6)


def test_layer_groups_only_when_asked(tmp_path, tiny):
    traj = train(out=str(tmp_path / "t.h5"), progress=False, **dict(tiny, groups="layer", epochs=1))
    assert traj.filter_metrics == {} and traj.filter_layer is None
    assert traj.group_metrics["elr"].shape == (1, 4)


def test_squared_loss_training_equals_a_hand_written_loop(tmp_path, tiny):
    """--loss mse: the official squared loss ||logits - one_hot(y)||^2 / C, trained by projected
    SGD, equals a hand-written loop (float64), and the checkpoint rows report that loss."""
    import torch.nn.functional as F
    from landscape.measure import squared_loss
    from landscape.sphere import project_to_sphere
    out, y = torch.randn(5, 10, dtype=torch.float64), torch.randint(0, 10, (5,))
    want = ((out - F.one_hot(y, 10).double()) ** 2).sum(1).mean() / 10
    assert float(squared_loss(out, y)) == pytest.approx(float(want), rel=1e-12)
    cfg = dict(tiny, epochs=2, dtype="float64", loss="mse", checkpoint_metrics=True)
    t = train(out=str(tmp_path / "m.h5"), progress=False, **cfg)
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=tiny["train_subset"])
    data.x_train, data.x_test = data.x_train.double(), data.x_test.double()
    model = t.load_model(0)
    params = [p for _, p in si_groups(model)]
    rho = float(t.attrs["rho"])
    from landscape.data import train_batches
    for epoch in (1, 2):
        model.train()
        for x, yb in train_batches(data, tiny["batch_size"], epoch, 0):
            o = model(x)
            loss = ((o - F.one_hot(yb, o.shape[1]).to(o.dtype)) ** 2).sum(1).mean() / o.shape[1]
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(tiny["elr"] * rho ** 2 * g)
                project_to_sphere(params, rho)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, t.state_dict(2)[k], rtol=1e-9, atol=1e-12)
    model.eval()
    with torch.no_grad():
        o = model(data.x_test)
        test_loss = float(((o - F.one_hot(data.y_test, o.shape[1]).to(o.dtype)) ** 2).sum(1).mean() / o.shape[1])
    assert t.metrics["test_loss"][-1] == pytest.approx(test_loss, rel=1e-9)
    assert t.checkpoint_metrics["test_loss"][-1] == pytest.approx(test_loss, rel=1e-9)
