"""Regime classification on curves of known shape (issues 7, 13)."""
import math

import numpy as np
import pytest

from landscape import train
from landscape.regimes import RegimeCriteria, classify_curve, falling_trend, kendall_theil_sen, sweep_checks

C = 10
LN = math.log(C)
rng = np.random.default_rng(0)
t = np.arange(1, 201)


def ess(kind, n=200, groups=40, seed=0):
    """Per-group effective step sizes: 'equal' (equilibrium: every group near one value),
    'unequal' (spread ~0.6, as in regime 1 and 3)."""
    g = np.random.default_rng(seed)
    base = np.ones(groups) if kind == "equal" else np.exp(0.6 * g.standard_normal(groups))
    return base * (1 + 0.05 * g.standard_normal((n, groups)))


def label(loss, acc, kind="unequal", classes=C, **criteria):
    out = classify_curve(loss, acc, classes, RegimeCriteria(**criteria), ess(kind, len(loss)))
    return out["regime"]


def ar1(n, phi, sd, seed):
    g = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + sd * math.sqrt(1 - phi ** 2) * g.standard_normal()
    return x


def test_clear_regimes():
    assert label(LN * np.exp(-t / 20), 1 - 0.9 * np.exp(-t / 20)) == 1                       # converges
    assert label(0.8 * np.exp(0.05 * rng.standard_normal(200)), np.full(200, 0.7), "equal") == 2
    assert label(LN * 1.5 + 0.02 * rng.standard_normal(200), 0.1 + 0.01 * rng.standard_normal(200)) == 3


def test_slow_regime_one_near_chance_is_not_divergence():
    """Loss 3.67 -> 3.53 over 60 epochs with accuracy just above chance: a slow, significant
    fall, so regime 1 (the old rules said divergence, below a regime-1 ELR of the same sweep)."""
    loss = np.linspace(3.67, 3.53, 60) * np.exp(0.002 * rng.standard_normal(60))
    out = classify_curve(loss, np.full(60, 0.12), C, None, ess("unequal", 60))
    assert out["regime"] == 1 and out["trend_p_falling"] < 0.01


def test_power_law_fall_that_never_halves_in_the_tail_is_convergence():
    loss = 2.0 * t ** -0.3 * np.exp(0.01 * rng.standard_normal(200))  # tail: 0.41 -> 0.41 * 0.93
    assert loss[-40] / loss[-1] < 1.1
    assert label(loss, np.full(200, 0.9)) == 1


@pytest.mark.parametrize("level,classes", [(0.09, 10), (0.2, 100)])
def test_chaotic_plateau_at_a_low_level_is_equilibrium(level, classes):
    loss = level * np.exp(0.1 * ar1(200, 0.5, 1.0, 3))
    assert level <= 0.05 * math.log(classes)  # the old 'final loss <= 0.05 ln C' rule said 1
    assert label(loss, np.full(200, 0.97), "equal", classes) == 2


def test_plateau_with_an_excursion_at_the_start_of_the_tail_is_equilibrium():
    loss = 0.8 * np.exp(0.05 * ar1(200, 0.3, 1.0, 4))
    loss[160:163] = 2.5  # one jump out of the level, right where the tail begins
    assert label(loss, np.full(200, 0.7), "equal") == 2


def test_a_fall_that_ends_at_random_guessing_is_not_convergence():
    """An exploded run (conventional training, cosine LR) whose loss falls from 1e16 back to
    the guessing level ln C: falling, yet not converging."""
    # as a real run (conventional ConvNet, LR 10, cosine): explosions, then a slow slide from
    # 2.32 down to ln 10 = 2.303 while the annealed LR reaches 0
    real_tail = [2.788e15, 2.688e15, 2.028e9, 1.320e10, 2.422, 2.320, 2.315, 2.319, 2.321, 2.316, 2.311,
                 2.310, 2.314, 2.310, 2.311, 2.307, 2.306, 2.306, 2.307, 2.304, 2.305, 2.303, 2.303, 2.303, 2.303]
    loss = np.r_[10 ** rng.uniform(9, 16, 75), real_tail]  # the tail: that run's last 25 epochs
    out = classify_curve(loss, np.full(100, 0.1), C, None, ess("unequal", 100))
    assert out["falling"] and out["regime"] is None and "random guessing" in out["reason"]


def test_short_runs_are_undetermined_with_the_reason():
    for n in (3, 5, 9):
        out = classify_curve(np.linspace(2, 1, n), np.full(n, 0.5), C, None, ess("unequal", n))
        assert out["regime"] is None and out["name"] == "undetermined" and "too short" in out["reason"]


def test_disagreeing_signals_are_undetermined():
    # a plateau that starts to fall slowly within the tail (by 1.3x), its step sizes equalised:
    # a transition may be beginning, or a slow drift of the level; not yet a convergence
    plateau_then_fall = np.r_[np.full(160, 0.8), 0.8 * 1.3 ** (-np.arange(1, 41) / 40)]
    plateau_then_fall *= np.exp(0.01 * rng.standard_normal(200))
    falling_equal = classify_curve(plateau_then_fall, np.full(200, 0.8), C, None, ess("equal"))
    assert falling_equal["falling"] and falling_equal["half_fall_factor"] < 2
    assert falling_equal["regime"] is None and "equalised" in falling_equal["reason"]
    flat_unequal = classify_curve(np.full(200, 0.8) * np.exp(0.02 * rng.standard_normal(200)),
                                  np.full(200, 0.7), C, None, ess("unequal"))
    assert flat_unequal["regime"] is None and "unequal" in flat_unequal["reason"]
    no_groups = classify_curve(np.full(200, 0.8), np.full(200, 0.7), C, None, None)
    assert no_groups["regime"] is None


def test_a_fall_that_lasts_is_convergence_even_with_near_equal_step_sizes():
    """Runs just below the 1/2 boundary (a real MNIST-1D sweep at ELR 1e-3 and 2e-3: the loss
    falls 0.9 -> 0.14 over the second half while the filters' ESS spread is 0.05-0.16)."""
    falling = classify_curve(LN * np.exp(-t / 30) * np.exp(0.05 * rng.standard_normal(200)),
                             np.full(200, 0.8), C, None, ess("equal"))
    assert falling["half_fall_factor"] > 2 and falling["half_p_falling"] < 0.01
    assert falling["regime"] == 1
    # a fall too short to be called lasting (a second half of fewer than 20 points), still far
    # from zero loss
    short = classify_curve(LN * np.exp(-t[:30] / 30), np.full(30, 0.8), C, None, ess("equal", 30))
    assert short["falling"] and short["regime"] is None


def test_noise_alone_rarely_makes_a_stationary_run_regime_one():
    """Stationary regime-2 runs of 20-40 epochs with autocorrelated noise: the old rules said 1
    in 2-8% of them; with the autocorrelation-corrected trend test at alpha = 0.01 and the ESS
    evidence, none may be called converging; the few whose short tail (4-8 points) still
    looks like a fall are 'undetermined', not mislabelled (at most 5%)."""
    wrong = 0
    for seed in range(200):
        n = 20 + seed % 21
        loss = 0.9 * np.exp(0.15 * ar1(n, 0.6, 1.0, 100 + seed))
        out = classify_curve(loss, np.full(n, 0.6), C, None, ess("equal", n, seed=seed))
        assert out["regime"] in (2, None)
        wrong += out["regime"] is None
    assert wrong <= 10


def test_trend_test_false_positives_on_autocorrelated_noise_are_near_alpha():
    hits = sum(falling_trend(ar1(40, 0.8, 1.0, s))["p_falling"] < 0.05 for s in range(400))
    assert hits / 400 < 0.10  # uncorrected Mann-Kendall: ~0.3 at this autocorrelation


def test_borderline_random_guessing():
    margin = RegimeCriteria().random_accuracy_margin
    flat = 0.95 * LN * np.exp(0.01 * rng.standard_normal(200))
    assert label(flat, np.full(200, 0.1 + margin * 0.9)) == 3
    assert label(flat, np.full(200, 0.1 + margin * 1.1), "equal") == 2   # above chance: a high equilibrium


def test_criteria_are_configurable():
    loss = 0.8 * np.exp(0.05 * rng.standard_normal(200))
    assert label(loss, np.full(200, 0.7), "equal") == 2
    assert label(loss, np.full(200, 0.7), "equal", ess_equal_filter=0.001) is None


def test_sweep_checks_report_disorder_and_duplicates():
    rows = [{"rate": e, "regime": r, "path": p} for e, r, p in
            ((1e-3, 1, "a"), (2e-3, 2, "b"), (5e-3, 1, "c"), (5e-3, None, "d"), (1e-2, 3, "a"))]
    res = sweep_checks(rows)
    assert not res["ordered"]
    assert res["out_of_order"] == [{"rate": 2e-3, "regime": 2, "next_rate": 5e-3, "next_regime": 1}]
    assert res["duplicate_rates"] == [5e-3] and len(res["duplicate_files"]) == 1
    assert res["largest_regime1_rate"] == 5e-3 and res["smallest_regime3_rate"] == 1e-2


@pytest.mark.slow
def test_cli(tmp_path, tiny, cli):
    for elr in (1e-3, 0.05):
        train(out=str(tmp_path / "sw" / f"elr{elr:g}.h5"), progress=False, **dict(tiny, elr=elr, epochs=20))
    code, out, err = cli(["regimes", str(tmp_path / "sw"), "--tail", "0.5", "--json", str(tmp_path / "r.json"),
                           "--plot", str(tmp_path / "r.png")])
    assert code == 0, err
    import json
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert [r["elr"] for r in rows] == [1e-3, 0.05]
    for r in rows:  # every label carries its evidence (and a reason when undetermined)
        assert r["name"] in ("convergence", "equilibrium", "divergence", "undetermined")
        assert {"trend_p_falling", "trend_tau", "ess_spread", "ess_level", "metrics"} <= set(r)
        assert r["ess_level"] == "filter" and (r["regime"] is not None or r["reason"])
    assert rows[0]["regime"] == 1  # ELR 1e-3: still falling, unequal effective step sizes
    assert rows[1]["regime"] == 3  # ELR 0.05: random guessing
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


@pytest.mark.slow
def test_a_real_sweep_shows_the_three_regimes_in_order(tmp_path, tiny):
    """An MLP on 1024 MNIST-1D signals, 40 epochs, ELR 1e-6 ... 3 (seconds on a CPU), judged on
    the checkpoint metrics: the clearly falling low-ELR runs converge (even 1e-6, whose loss
    falls slowly from ln C), 1e-2 holds a chaotic equilibrium (per-filter ESS spread ~0.08),
    0.1 and above diverge."""
    from landscape.regimes import regimes
    from landscape.sweep import sweep
    cfg = dict(tiny, model="mlp", width=256, depth=3, train_subset=1024, batch_size=128, epochs=40,
               save_every=40, checkpoint_metrics=True)
    elrs = [1e-6, 1e-4, 1e-3, 1e-2, 0.1, 3.0]
    sweep(elrs, str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    res = regimes([str(tmp_path / "sw")])
    assert res["metrics"] == "checkpoint"
    assert [r["regime"] for r in res["rows"]] == [1, 1, 1, 2, 3, 3], [(r["elr"], r["name"], r["reason"]) for r in res["rows"]]
    assert res["ordered"] and res["largest_regime1_rate"] == 1e-3 and res["smallest_regime3_rate"] == 0.1
    rows = {r["elr"]: r for r in res["rows"]}
    two, three = rows[1e-2], rows[0.1]
    assert two["ess_spread"] < 0.2 < min(rows[1e-3]["ess_spread"], three["ess_spread"])
    assert two["trend_p_falling"] > 0.01 and three["random_guess"] and not two["random_guess"]
    assert rows[1e-6]["tail_walk_cos"] > 0.99 > 1e-6 > three["tail_walk_cos"]  # tiny steps vs wandering ones


def test_trend_p_values_are_exact_for_short_tails():
    assert falling_trend([5.0, 4.0, 3.0, 2.0, 1.0])["p_falling"] == pytest.approx(1 / 120)  # 5! orderings
    # a smooth fall's curvature is not read as correlated noise
    for n in (8, 20):
        assert falling_trend(np.exp(-np.arange(n) / 3))["p_falling"] < 1e-4
        assert falling_trend(np.log(2 * np.arange(1, n + 1) ** -0.3))["p_falling"] < 1e-4
    # white noise: n = 2000 tails of 8 points at alpha = 0.01 (measured 0.5 %); Binomial(2000,
    # 0.01) exceeds 40 with probability < 1e-4
    g = np.random.default_rng(5)
    assert sum(falling_trend(g.standard_normal(8))["p_falling"] < 0.01 for _ in range(2000)) <= 40


def test_the_trend_statistics_equal_scipys_bit_for_bit():
    # Kendall's tau-b against the index and the Theil-Sen line, against scipy's own functions on
    # 600 series of 3-80 points: noise, rounded noise (ties in y), falls, plateaus with one step
    from scipy import stats
    g = np.random.default_rng(11)
    for i in range(600):
        n = int(g.integers(3, 81))
        y = [g.standard_normal(n), np.round(g.standard_normal(n), 1),
             np.log(np.exp(-np.arange(n) / 5) + 0.01 * g.random(n)),
             np.where(np.arange(n) < n // 2, 1.0, 0.5)][i % 4]
        x = np.arange(n, dtype=float)
        slope, intercept = stats.theilslopes(y, x)[:2]
        assert kendall_theil_sen(y) == (float(stats.kendalltau(x, y).statistic), float(slope), float(intercept))


def test_a_short_run_that_clearly_falls_is_convergence():
    # a t^-0.3 power-law fall with 1 % noise, 200 draws: at 20 epochs (an 8-point tail) it is 1
    g = np.random.default_rng(1)
    labels = [classify_curve(2.0 * t[:20] ** -0.3 * np.exp(0.01 * g.standard_normal(20)), np.full(20, 0.9),
                             C, None, ess("unequal", 20, seed=s))["regime"] for s in range(200)]
    assert labels.count(1) >= 190


def test_a_converged_run_is_convergence_whatever_its_step_sizes():
    flat = 3e-4 * np.exp(0.05 * rng.standard_normal(200))
    assert label(flat, np.full(200, 1.0), "equal") == 1
    # an equilibrium that converged in its last part (Fig. 6's transition run)
    transition = np.r_[0.8 * np.exp(0.05 * rng.standard_normal(150)), 0.8 * np.exp(-np.arange(1, 51) / 6)]
    assert transition[-1] < 1e-3 and label(transition, np.full(200, 0.99), "equal") == 1
    # a catapult spike in the last epochs does not undo it
    spiked = LN * np.exp(-t / 15)
    spiked[-6:] = 2.0
    assert label(spiked, np.full(200, 0.99)) == 1


def test_random_guessing_with_steps_too_small_to_wander_is_not_divergence():
    """A tiny-ELR run that has barely moved sits at ln C with chance accuracy, as a diverging
    run does; only its steps tell them apart."""
    flat = LN * np.exp(0.001 * rng.standard_normal(60))
    chance = np.full(60, 0.1)
    barely = classify_curve(flat, chance, C, None, ess("unequal", 60), tail_walk_cos=0.999)
    assert barely["regime"] is None and "too small to wander" in barely["reason"]
    wandering = classify_curve(flat, chance, C, None, ess("unequal", 60), tail_walk_cos=1e-6)
    assert wandering["regime"] == 3
    # at random guessing with wandering steps a drift down is the walk's, not a convergence
    drifting = LN * 1.3 * np.linspace(1.0, 0.97, 60)
    out = classify_curve(drifting, chance, C, None, ess("unequal", 60), tail_walk_cos=1e-6)
    assert out["falling"] and out["regime"] == 3


def test_a_nonfinite_run_carries_the_label_of_its_finite_part():
    from types import SimpleNamespace
    from landscape.regimes import nonfinite_row
    curves_ = {"train_loss": LN * 1.5 + 0.02 * rng.standard_normal(40), "train_accuracy": np.full(40, 0.1)}
    run = SimpleNamespace(status_detail={"epoch": 41, "what": ["loss"]}, model_spec={"num_classes": C},
                          metrics={"log_cos_step_sum": np.full(40, -3.0)})
    row = nonfinite_row(run, curves_, RegimeCriteria(), ess("unequal", 40), "filter")
    assert row["name"] == "nonfinite" and row["finite_regime"] == 3
    assert "epoch 41" in row["reason"] and "3 (divergence)" in row["reason"]


def test_sweep_checks_per_seed_by_content_and_length():
    rows = [{"rate": 1e-3, "regime": 2, "path": "s0/a", "seed": (0, 0), "epochs": 40, "_digest": "x"},
            {"rate": 1e-3, "regime": 1, "path": "s1/a", "seed": (1, 0), "epochs": 40, "_digest": "y"},
            {"rate": 1e-2, "regime": 3, "path": "s0/b", "seed": (0, 0), "epochs": 40, "_digest": "z"},
            {"rate": 1e-2, "regime": 3, "path": "copy/b", "seed": (0, 0), "epochs": 60, "_digest": "z"}]
    res = sweep_checks(rows)
    assert res["ordered"]                        # 2 at seed 0 beside 1 at seed 1 is no disorder
    assert res["duplicate_rates"] == [1e-2]      # two runs at 1e-2 in seed 0 (the copy)
    assert res["duplicate_files"] == ["copy/b", "s0/b"]
    assert res["mixed_lengths"] == [40, 60]


def test_labels_carry_their_stability_under_the_curves_own_noise():
    from landscape.regimes import label_stability
    c = RegimeCriteria()
    clear = LN * np.exp(-t / 20) * np.exp(0.02 * rng.standard_normal(200))
    acc = 1 - 0.9 * np.exp(-t / 20)
    out = classify_curve(clear, acc, C, c, ess("unequal"))
    assert out["regime"] == 1 and label_stability(clear, acc, C, c, ess("unequal"), "filter", None, 1) >= 0.95
    # on the 2/3 border (tail loss around 0.9 ln C at chance accuracy) labels flip under resampling
    g = np.random.default_rng(3)
    shares = []
    for _ in range(10):
        border = 0.9 * LN * np.exp(0.03 * g.standard_normal(100))
        regime = classify_curve(border, np.full(100, 0.12), C, c, ess("equal", 100))["regime"]
        shares.append(label_stability(border, np.full(100, 0.12), C, c, ess("equal", 100), "filter", None, regime))
    assert np.mean(shares) < c.min_stability and sum(s < c.min_stability for s in shares) >= 5
