"""The random-walk comparison (Appendix M): the walk's closed form and simulation against real
walks on a sphere, the test's calibration on real walks, and its power on a converging run."""
import json
import math

import numpy as np
import pytest
import torch

from landscape.random_walk import expected_cosine, random_walk_test, simulate_cosines


def real_walk(rng, dimension, angles_per_epoch):
    """A random walk on S^(D-1) in D dimensions, turning by each angle in a uniformly random
    tangent direction: (cosine to the start per epoch from 0, sum of log cos per epoch)."""
    x0 = rng.standard_normal(dimension)
    x0 /= np.linalg.norm(x0)
    x, cos, logs = x0.copy(), [1.0], []
    for angles in angles_per_epoch:
        for d in angles:
            t = rng.standard_normal(dimension)
            t -= (t @ x) * x
            x = math.cos(d) * x + math.sin(d) * t / np.linalg.norm(t)
        cos.append(float(x @ x0))
        logs.append(float(np.log(np.cos(angles)).sum()))
    return np.array(cos), np.array(logs)


def test_expected_cosine_is_the_product_of_step_cosines_and_the_simulation_matches_real_walks():
    rng = np.random.default_rng(0)
    angles = [np.full(4, 0.15)] * 6
    real = np.array([real_walk(rng, 40, angles)[0] for _ in range(400)])   # n = 400 walks, D = 40
    logs = np.log(np.cos(np.concatenate(angles))).reshape(6, 4).sum(1)
    closed = expected_cosine(logs)
    se = real.std(0, ddof=1) / math.sqrt(len(real))
    assert closed[-1] == pytest.approx(math.cos(0.15) ** 24)
    assert np.all(np.abs(real.mean(0) - closed) <= 4 * se + 1e-12)       # every epoch, 4 standard errors
    sim = simulate_cosines(logs, 40, 4000, seed=1, substeps=4)
    assert np.all(np.abs(sim.mean(0) - closed) <= 4 * sim.std(0) / math.sqrt(4000) + 1e-12)
    # the spread: the real walks' sd at the end within 15 % of the simulated (sd of an sd ~ 3.5 % at n = 400)
    assert real[:, -1].std() == pytest.approx(sim[:, -1].std(), rel=0.15)


@pytest.mark.parametrize("step", ["small", "mixing"])
def test_real_random_walks_are_called_random_walks_at_the_nominal_rate(step):
    # n = 200 real walks on S^299, 30 epochs of 5 steps; at alpha = 0.05 the rejections are
    # Binomial(200, 0.05): mean 10, P(X >= 21) < 0.001
    rng = np.random.default_rng(7)
    rejected = 0
    for i in range(200):
        angles = [np.full(5, 0.7) if step == "mixing" else rng.uniform(0.01, 0.08, 5) for _ in range(30)]
        cos, logs = real_walk(rng, 300, angles)
        rejected += not random_walk_test(np.arange(31), cos, logs, 300, walks=199, seed=i, alpha=0.05,
                                         substeps=5)["random_walk"]
    assert rejected <= 20


def test_a_converging_run_is_not_a_random_walk():
    # the steps a random walk would take, but the run settles at 20 degrees from its start
    steps = np.full(40, np.log(np.cos(0.05)) * 8)
    epochs = np.arange(41)
    angle = np.radians(20) * (1 - np.exp(-epochs / 3))
    t = random_walk_test(epochs, np.cos(angle), steps, 5000, walks=199, seed=0)
    assert not t["random_walk"] and t["p_value"] == pytest.approx(1 / 200)
    assert t["direction"] == "nearer the start" and t["final_walk_angle_deg"] > 40


def test_arguments_are_checked():
    from landscape.errors import ArgumentError
    with pytest.raises(ArgumentError, match="log_cos_steps"):
        simulate_cosines([0.1], 10, 5)
    with pytest.raises(ArgumentError, match="epochs"):
        random_walk_test([0, 5], [1.0, 0.5], [-0.1, -0.1], 10)
    with pytest.raises(ArgumentError, match="walks must be at least 100"):  # p could never be below alpha
        random_walk_test([0, 1, 2], [1.0, 0.9, 0.8], [-0.1, -0.1], 10, walks=99, alpha=0.01)


def test_the_logged_step_angles_are_the_angles_the_parameters_turned(tiny, tmp_path):
    from landscape.models import si_groups
    from landscape.run import train
    vectors = {}

    def on_step(epoch, step, model):
        vectors[(epoch, step)] = torch.cat([p.detach().double().reshape(-1) for _, p in si_groups(model)])
    t = train({**tiny, "elr": 0.05}, out=str(tmp_path / "t.h5"), progress=False, on_step=on_step)
    keys = sorted(vectors)
    by_epoch = {}
    for a, b in zip(keys, keys[1:]):   # every step but the first, whose start the hook did not see
        cos = float(vectors[a] @ vectors[b] / (vectors[a].norm() * vectors[b].norm()))
        by_epoch[b[0]] = by_epoch.get(b[0], 0.0) + math.log(cos)
    # BatchNorm's eps makes the network scale-invariant only nearly: the gradient is orthogonal
    # to the weights up to a cosine of about 1e-5 here, which a step turning the weights by some
    # 85 degrees (ELR 0.05: tan ~ 15) makes a few 1e-4 of the logged angle, thread counts deciding
    for epoch in (2, 3):
        assert t.metrics["log_cos_step_sum"][epoch - 1] == pytest.approx(by_epoch[epoch], rel=1e-3)


@pytest.mark.slow
def test_cli_on_a_real_sweep(tiny, tmp_path, cli):
    from landscape.run import train
    runs = tmp_path / "sweep"
    for elr in (1e-3, 30.0):
        train({**tiny, "elr": elr, "epochs": 12, "checkpoint_metrics": True},
              out=str(runs / f"elr{elr:g}.h5"), progress=False)
    train({**tiny, "space": "whole", "lr": 0.1, "epochs": 3}, out=str(runs / "whole.h5"), progress=False)
    code, out, err = cli(["random-walk", str(runs), "--walks", "199", "--json", str(tmp_path / "r.json"),
                          "--plot", str(tmp_path / "r.png")])
    assert code == 0, err
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert [r["rate"] for r in rows] == [1e-3, 30.0]
    low = rows[0]
    assert not low["random_walk"] and low["p_value"] <= 0.01      # a small ELR drifts: not a walk
    assert rows[1]["final_walk_angle_deg"] > 80                  # the large ELR's walk forgets its start
    assert "whole.h5: not trained on a sphere" in out
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_cli_refuses_too_few_walks_for_alpha(cli, tmp_path):
    code, out, err = cli(["random-walk", str(tmp_path), "--walks", "50"])
    assert code == 2 and "--walks must be at least 100" in err and len(err.strip().splitlines()) == 1
