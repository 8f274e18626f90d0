"""The toy model against the paper's closed forms."""
import numpy as np
import pytest

import landscape
import landscape.sphere
import landscape.toy as toy
from landscape import Trajectory


def tail_mean(a, frac=0.5):
    return a[int(len(a) * (1 - frac)):].mean(0)


def test_uses_the_training_projected_sgd():
    assert toy.projected_sgd_step is landscape.sphere.projected_sgd_step


def test_closed_form_gradient_matches_autograd():
    import torch
    groups = [torch.randn(3, 2, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    f, grads = toy.loss_and_grads(groups, [1.5, 4.0])
    auto = torch.autograd.grad(f.sum(), groups)
    for g, a in zip(grads, auto):
        torch.testing.assert_close(g, a, rtol=1e-12, atol=1e-14)


def test_one_group_below_threshold_converges_linearly():
    alpha = 2.0
    r = toy.simulate([alpha], 0.3, 400, seed=1)  # ELR < 1/alpha = 0.5
    loss = r["loss"]
    alive = loss > 1e-250
    ratios = loss[1:][alive[1:]] / loss[:-1][alive[1:]]
    assert alive[:50].all() and r["final_loss"] < 1e-100
    late = ratios[len(ratios) // 2:]
    assert late.max() < 1 and late.max() - late.min() < 1e-6  # a constant contraction factor: linear


@pytest.mark.slow
@pytest.mark.parametrize("alpha,elr", [(1.0, 1.5), (3.0, 0.5), (3.0, 0.8), (3.0, 2.0)])
def test_one_group_above_threshold_stabilises_at_proposition_1_level(alpha, elr):
    r = toy.simulate([alpha], elr, 2000, seed=2)
    assert abs(tail_mean(r["loss"]) - (alpha - 1 / elr) / 2) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("alphas,elr", [([1, 2, 4], 0.2), ([1, 3], 0.3), ([1, 2, 4], 0.17)])
def test_several_groups_equilibrium(alphas, elr):
    r = toy.simulate(alphas, elr, 6000, seed=0)
    assert elr > toy.convergence_threshold(alphas)
    assert abs(tail_mean(r["loss"]) - (sum(alphas) - 1 / elr) / 2) < 1e-3
    np.testing.assert_allclose(tail_mean(r["group_elr"]), toy.equilibrium_elrs(alphas, elr), rtol=0.01)
    assert toy.classify(r)["regime"] == "equilibrium"


def test_several_groups_below_threshold_converge():
    r = toy.simulate([1, 2, 4], 0.1, 3000, seed=0)  # threshold 1/7
    assert r["final_loss"] < 1e-100
    assert toy.classify(r)["regime"] == "convergence"


@pytest.mark.slow
def test_eq3_and_eq5_at_every_step():
    for elr in (0.1, 0.2, 0.5):
        r = toy.simulate([1, 2, 4], elr, 1500, seed=3)
        e, ess = r["group_elr"], r["group_effective_step_size"]
        np.testing.assert_allclose((1 / e).sum(1), 1 / elr, rtol=1e-10)  # eq. (3)
        total_ess = elr * r["effective_grad_norm"]
        predicted = e[:-1] * (1 + total_ess[:-1, None] ** 2) / (1 + ess[:-1] ** 2)  # eq. (5)
        np.testing.assert_allclose(predicted, e[1:], rtol=1e-10)


@pytest.mark.slow
def test_figure_2_labels_and_files(tmp_path, cli):
    out = tmp_path / "toy.h5"
    code, text, _ = cli(["toy", "--alphas", "1,2,4", "--elrs", "0.1,0.2,0.5", "--steps", "3000",
                         "--out", str(out), "--plot", str(tmp_path / "f.png"), "--json", str(tmp_path / "t.json")])
    assert code == 0
    labels = [line.split()[1] for line in text.splitlines() if line.strip()[:3] in ("0.1", "0.2", "0.5")]
    assert labels == ["convergence", "equilibrium", "divergence"]
    assert (tmp_path / "f.png").stat().st_size > 10000
    t = Trajectory(str(tmp_path / "toy-elr0.2.h5"))
    assert t.kind == "toy" and t.epochs_complete == 3000
    assert t.group_metrics["elr"].shape == (3000, 3)
    np.testing.assert_allclose((1 / t.group_metrics["elr"]).sum(1), 5.0, rtol=1e-10)
    import json
    runs = json.load(open(tmp_path / "t.json"))["runs"]
    assert [r["regime"] for r in runs] == ["convergence", "equilibrium", "divergence"]


@pytest.mark.parametrize("argv,words", [
    (["--alphas"], ["--alphas"]),
    (["--alphas", "1,-2"], ["alphas", "positive"]),
    (["--alphas", "0"], ["alphas", "positive"]),
    (["--alphas", "1", "2"], ["unrecognized arguments: 2"]),  # one list syntax: commas
    (["--elrs", "0"], ["--elrs", "positive"]),
    (["--elrs=-0.1"], ["--elrs", "positive"]),
    (["--elrs", "0.1,0.1"], ["--elrs", "repeats"]),
    (["--steps", "0"], ["--steps", "positive"]),
    (["--steps", "x"], ["--steps", "integer"]),
])
def test_bad_input(argv, words, cli):
    code, _, err = cli(["toy"] + argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_python_api_errors():
    with pytest.raises(landscape.LandscapeError):
        toy.simulate([], 0.1, 10)
    with pytest.raises(landscape.LandscapeError):
        toy.simulate([1.0], 0.1, 0)
