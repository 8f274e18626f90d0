"""Section 6: training outside the sphere on the same path, against hand-written
torch.optim loops; the norm's dynamics, schedules, the non-finite path, resumption, sweeps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape import train
from landscape.data import load_dataset, train_batches
from landscape.models import build_model, si_groups
from landscape.sphere import group_sq_norms
from landscape.trajectory import Trajectory
from landscape.config import TrainConfig, epoch_lr


def reference(t: Trajectory, data_root, scheduler: bool = False) -> dict:
    """The same run by torch.optim.SGD (and CosineAnnealingLR) on the same batches, float64."""
    cfg = t.config
    data = load_dataset(cfg["dataset"], data_root, train_subset=cfg["train_subset"],
                        label_noise=cfg["label_noise"], data_seed=cfg["data_seed"])
    data.x_train = data.x_train.double()
    model = build_model(t.model_spec, cfg["init_seed"]).double()
    params = [p for _, p in si_groups(model)]
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"]) if scheduler else None
    lrs = []
    for epoch in range(1, cfg["epochs"] + 1):
        lrs.append(opt.param_groups[0]["lr"])
        model.train()
        for x, y in train_batches(data, cfg["batch_size"], epoch, cfg["data_seed"]):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        if sched is not None:
            sched.step()
    return {"state": model.state_dict(), "lrs": lrs}


@pytest.fixture
def small(data_root):
    return dict(model="mlp", width=16, depth=2, dataset="mnist1d", data_root=data_root, train_subset=192,
                batch_size=64, epochs=3, device="cpu", save_every=1, dtype="float64", groups="layer")


@pytest.mark.parametrize("conventional", [False, True], ids=["si-whole-space", "conventional"])
def test_whole_space_sgd_equals_torch_optim_sgd(tmp_path, small, conventional):
    t = train(out=str(tmp_path / "w.h5"), progress=False, space="whole", lr=0.3, momentum=0.9,
              weight_decay=5e-4, conventional=conventional, **small)
    ref = reference(t, small["data_root"])
    ours = t.state_dict()
    assert set(ours) == set(ref["state"])
    for k, v in ref["state"].items():
        np.testing.assert_allclose(ours[k].numpy(), v.numpy(), rtol=1e-6, atol=1e-9, err_msg=k)
    if conventional:  # every weight trained: BN scale and shift, the last layer
        names = t.group_names
        assert any(n.startswith("head") for n in names) and any(n.endswith("bias") for n in names)
        assert not np.allclose(ours["head.weight"].numpy(), t.state_dict(0)["head.weight"].numpy())


def test_cosine_schedule_matches_torch(tmp_path, small):
    t = train(out=str(tmp_path / "c.h5"), progress=False, space="whole", lr=0.2, momentum=0.5,
              schedule="cosine", **dict(small, epochs=4))
    ref = reference(t, small["data_root"], scheduler=True)
    cfg = TrainConfig.from_dict(t.config)
    np.testing.assert_allclose([epoch_lr(cfg, 0.2, e) for e in range(1, 5)], ref["lrs"], rtol=1e-12)
    for k, v in ref["state"].items():
        np.testing.assert_allclose(t.state_dict()[k].numpy(), v.numpy(), rtol=1e-6, atol=1e-9, err_msg=k)


def test_without_weight_decay_the_logged_elr_follows_the_measured_norms(tmp_path, small):
    """In the whole space the norm moves; the logged ELR is lr / rho_t^2 averaged as on the
    sphere: lr / mean over the epoch's steps of the squared norm at which each gradient was taken."""
    norms = []

    def record(epoch, step, model):
        norms.append((epoch, group_sq_norms([p for _, p in si_groups(model)]).double().detach().clone()))
    start = build_model(train(out=str(tmp_path / "s.h5"), progress=False, space="whole", lr=0.5,
                              **dict(small, epochs=1)).model_spec, 0).double()
    before = [group_sq_norms([p for _, p in si_groups(start)]).double().detach()]
    t = train(out=str(tmp_path / "w.h5"), progress=False, space="whole", lr=0.5, on_step=record, **small,
              overwrite=True)
    m, g = t.metrics, t.group_metrics
    rho_sq = before + [n for _, n in norms]  # the norms before each step: initial, then after each
    epochs = [e for e, _ in norms]
    for epoch in (1, 2, 3):
        at = [rho_sq[i] for i, e in enumerate(epochs) if e == epoch]  # before each step of the epoch
        mean = torch.stack(at).mean(0)
        np.testing.assert_allclose(m["elr"][epoch - 1], 0.5 / float(mean.sum()), rtol=1e-10)
        np.testing.assert_allclose(g["elr"][epoch - 1], (0.5 / mean).numpy(), rtol=1e-10)
        np.testing.assert_allclose(g["rho_end"][epoch - 1], np.sqrt(rho_sq[len(at) * epoch].numpy()), rtol=1e-10)
    assert np.ptp(m["rho"]) > 1e-3  # the norm moves without the projection


def test_momentum_runs_resume_to_the_same_trajectory(tmp_path, small, interrupted_and_resumed):
    kw = dict(space="whole", lr=0.3, momentum=0.9, weight_decay=1e-3, **dict(small, epochs=4))
    straight = train(out=str(tmp_path / "a.h5"), progress=False, **kw)
    resumed = interrupted_and_resumed(str(tmp_path / "b.h5"), kw, 3, 1)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k  # bit-identical: the buffers were kept
    assert not any(k.startswith("optimizer.") for k in straight.state_dict())  # checkpoints: model only


def test_huge_lr_ends_in_nonfinite_and_regimes_say_so(tmp_path, small, cli):
    for lr in (0.1, 1e300):
        train(out=str(tmp_path / "sw" / f"lr{lr:g}.h5"), progress=False, conventional=True,
              space="whole", lr=lr, **small)
    t = Trajectory(str(tmp_path / "sw" / "lr1e+300.h5"))
    assert t.status == "nonfinite" and t.status_detail["lr"] == 1e300
    code, out, err = cli(["regimes", str(tmp_path / "sw"), "--min-points", "3", "--min-tail", "2",
                          "--json", str(tmp_path / "r.json")])
    assert code == 0, err
    import json
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert [r["rate_name"] for r in rows] == ["LR", "LR"] and rows[1]["name"] == "nonfinite"
    assert rows[1]["lr"] == 1e300 and "elr" not in rows[1]
    assert out.splitlines()[1].split()[0] == "LR"


@pytest.mark.parametrize("argv,words", [
    (["--space", "whole", "--lr", "0.1", "--weight-decay", "-1"], "--weight-decay"),
    (["--space", "whole", "--lr", "0.1", "--momentum", "1"], "--momentum"),
    (["--space", "whole", "--lr", "0.1", "--momentum", "-0.1"], "--momentum"),
    (["--space", "whole", "--elr", "0.1"], "--elr is the sphere's parameter"),
    (["--lr", "0.1"], "add --space whole"),
    (["--space", "whole"], "give --lr"),
    (["--space", "whole", "--lr", "0.1", "--schedule", "step"], "--schedule"),
    (["--weight-decay", "1e-4"], "needs --space whole"),
    (["--conventional", "--space", "sphere"], "--conventional"),
])
def test_bad_options_are_one_line_errors(argv, words, cli, tmp_path):
    code, _, err = cli(["train", "-o", str(tmp_path / "x.h5"), "--epochs", "1"] + argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "x.h5").exists()


def test_lr_sweep_vectorised_equals_single_runs(tmp_path, small, cli):
    from landscape.sweep import sweep
    kw = dict(space="whole", momentum=0.9, weight_decay=1e-3, schedule="cosine", **small)
    index = sweep("0.05,0.2", str(tmp_path / "sw"), strategy="vectorised", progress=False, **kw)
    assert [r["lr"] for r in index["runs"]] == [0.05, 0.2]
    for lr in (0.05, 0.2):
        alone = train(out=str(tmp_path / f"alone{lr}.h5"), progress=False, lr=lr, **kw)
        swept = Trajectory(str(tmp_path / "sw" / f"lr{lr:g}.h5"))
        for k, v in alone.state_dict().items():
            np.testing.assert_allclose(swept.state_dict()[k].numpy(), v.numpy(), rtol=1e-8, atol=1e-10, err_msg=k)
        np.testing.assert_allclose(swept.metrics["train_loss"], alone.metrics["train_loss"], rtol=1e-8)
    code, _, err = cli(["sweep", "--lrs", "0.05,0.2", "-o", str(tmp_path / "sw"), "--space", "whole",
                        "--elrs", "0.1"])
    assert code == 2 and "not allowed with" in err


def test_sharpness_of_a_conventional_model_says_its_units_are_raw(tmp_path, small, cli):
    t = train(out=str(tmp_path / "c.h5"), progress=False, conventional=True, space="whole", lr=0.1, **small)
    code, out, err = cli(["sharpness", t.path, "--probes", "4", "--eigs", "1", "--batches", "1", "-q"])
    assert code == 0, err
    assert "not scale-invariant" in out


def test_the_conventional_head_is_the_official_one(tmp_path):
    """ResNet18SIAf's last layer has no bias, convnet_si_af's has one; either can be asked for;
    a conventional model stored before the option was read with its bias."""
    from landscape.legacy import stored_model_spec
    from landscape.models import model_spec
    for name, bias in (("resnet18", False), ("resnet18-post", False), ("convnet", True)):
        spec = model_spec(name, (1, 40), 10, width=4, conventional=True)
        assert (build_model(spec).head.bias is not None) == bias, name
        flipped = model_spec(name, (1, 40), 10, width=4, conventional=True, conventional_head_bias=not bias)
        assert (build_model(flipped).head.bias is not None) == (not bias), name
    old = {k: v for k, v in model_spec("resnet18", (1, 40), 10, width=4, conventional=True).items()
           if k != "conventional_head_bias"}
    assert stored_model_spec(old)["conventional_head_bias"] is True and build_model(old).head.bias is not None
    with pytest.raises(ValueError, match="^conventional_head_bias is for the trainable last layer"):
        TrainConfig(conventional_head_bias=False).validate()


def test_conventional_runs_are_judged_on_the_regular_gradient_norm(tmp_path, small):
    """Section 6's axis: for a network without SI groups the evidence and the figure use the mean
    stochastic gradient norm of all trained parameters, not rho times it."""
    from landscape.regimes import regimes
    conv = train(out=str(tmp_path / "c" / "lr0.1.h5"), progress=False, conventional=True, space="whole",
                 lr=0.1, **dict(small, epochs=5))
    train(out=str(tmp_path / "s" / "lr0.1.h5"), progress=False, space="whole", lr=0.1, **dict(small, epochs=5))
    row_c = regimes(str(tmp_path / "c"), metrics="epoch")["rows"][0]
    row_s = regimes(str(tmp_path / "s"), metrics="epoch")["rows"][0]
    assert row_c["gradient_axis"] == "grad_norm" and row_s["gradient_axis"] == "effective_grad_norm"
    tail = conv.metrics["grad_norm"][-1:]  # the tail mean over the last 20 % of 5 epochs
    assert row_c["mean_grad_norm"] == pytest.approx(float(np.mean(tail)))
    assert row_c["mean_grad_norm"] != pytest.approx(row_c["mean_effective_grad_norm"])
