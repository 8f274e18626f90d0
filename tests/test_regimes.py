"""Regime classification and double-descent detection on curves of known shape (issue 7)."""
import math

import numpy as np
import pytest

from landscape import train
from landscape.regimes import RegimeCriteria, classify_curve, find_peak

C = 10
LN = math.log(C)
rng = np.random.default_rng(0)
t = np.arange(1, 201)


def label(loss, acc):
    return classify_curve(loss, acc, C)["regime"]


def test_clear_regimes():
    assert label(LN * np.exp(-t / 20), 1 - 0.9 * np.exp(-t / 20)) == 1           # converges
    assert label(0.8 + 0.05 * rng.standard_normal(200), 0.7 + 0.01 * rng.standard_normal(200)) == 2
    assert label(LN + 0.02 * rng.standard_normal(200), 0.1 + 0.01 * rng.standard_normal(200)) == 3


def test_still_falling_counts_as_convergence():
    # not yet low, but the tail keeps falling by more than 2x: regime 1 (slow convergence)
    loss = 1.5 * np.exp(-t / 15) + 0.0
    loss = np.maximum(loss, 1e-9)
    assert classify_curve(loss, np.full(200, 0.9), C)["final_train_loss"] < 0.05 * LN
    slow = 2.0 * np.exp(-t / 20) + 0.3 * np.exp(-t / 25)  # ends ~0.001 anyway
    assert label(slow, np.full(200, 0.9)) == 1


def test_rare_spikes_do_not_hide_convergence():
    loss = 1e-3 * np.ones(200)
    loss[[185, 192, 197]] = 2.0  # jumps out of the basin and straight back
    assert label(loss, np.full(200, 1.0)) == 1


def test_late_transition_from_equilibrium_to_convergence():
    loss = np.where(t < 150, 0.9, 0.9 * np.exp(-(t - 150) / 5))
    assert label(loss, np.full(200, 0.8)) == 1


def test_borderline_final_loss_around_the_threshold():
    threshold = RegimeCriteria().low_loss_fraction * LN
    for factor, expected in ((0.99, 1), (1.01, 2)):
        loss = np.full(200, threshold * factor)
        assert label(loss, np.full(200, 0.95)) == expected


def test_borderline_random_guessing():
    margin = RegimeCriteria().random_accuracy_margin
    loss = np.full(200, 0.95 * LN)
    assert label(loss, np.full(200, 0.1 + margin * 0.9)) == 3
    assert label(loss, np.full(200, 0.1 + margin * 1.1)) == 2       # above chance: a (high) equilibrium
    assert label(np.full(200, 0.85 * LN), np.full(200, 0.1)) == 2   # loss below random level


def test_criteria_are_configurable():
    loss = np.full(200, 0.3)
    assert label(loss, np.full(200, 0.9)) == 2
    assert classify_curve(loss, np.full(200, 0.9), C, RegimeCriteria(low_loss_fraction=0.2))["regime"] == 1


def test_planted_double_descent_peak_is_found():
    epochs = np.arange(1, 301)
    err = 0.4 * np.exp(-epochs / 15) + 0.2 + 0.12 * np.exp(-((epochs - 120) / 25) ** 2) - 0.05 * (epochs > 200) * (1 - np.exp(-(epochs - 200) / 30))
    err = err + 0.003 * rng.standard_normal(300)
    peak = find_peak(err, window=5, min_height=0.02)
    assert peak is not None and abs(epochs[peak["index"]] - 120) <= 6
    assert peak["height"] > 0.08 and peak["second_descent"] > 0.1


def test_chaos_is_not_a_peak():
    noisy = 0.4 + 0.15 * rng.standard_normal(150)  # a run whose test error jumps epoch to epoch
    assert find_peak(noisy, window=5, min_height=0.01) is None
    planted = noisy * 0 + 0.4 + 0.02 * rng.standard_normal(150)
    planted[60:80] += 0.2
    assert find_peak(planted, window=5, min_height=0.01) is not None


@pytest.mark.parametrize("curve", [np.linspace(0.5, 0.1, 100), np.linspace(0.1, 0.5, 100),
                                   0.1 + 0.4 * np.exp(-np.arange(100) / 10)])
def test_monotone_curves_have_no_peak(curve):
    assert find_peak(curve + 0.001 * rng.standard_normal(len(curve)), window=5, min_height=0.01) is None


def test_cli(tmp_path, tiny, cli):
    for elr in (1e-3, 0.05):
        train(out=str(tmp_path / "sw" / f"elr{elr:g}.h5"), progress=False, **dict(tiny, elr=elr, epochs=5))
    code, out, err = cli(["regimes", str(tmp_path / "sw"), "--json", str(tmp_path / "r.json"),
                           "--plot", str(tmp_path / "r.png")])
    assert code == 0, err
    import json
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert [r["elr"] for r in rows] == [1e-3, 0.05] and all(r["regime"] in (1, 2, 3) for r in rows)
    assert (tmp_path / "r.png").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = cli(["regimes", str(tmp_path / "empty")])
    assert code == 2 and "no trajectories" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["double-descent", str(tmp_path / "sw" / "elr0.001.h5")])
    assert code == 2 and "without label noise" in err
    noisy = train(out=str(tmp_path / "noisy.h5"), progress=False, **dict(tiny, label_noise=0.2, epochs=6))
    code, out, err = cli(["double-descent", noisy.path, "--plot", str(tmp_path / "d.png"),
                           "--json", str(tmp_path / "d.json")])
    assert code == 0, err
    assert (tmp_path / "d.png").exists()
