"""The double-descent test: the bound its calibration rests on (checked on random no-peak curves),
false peaks at most alpha on noise alone and on every no-peak shape, power on planted peaks,
windows in epochs, qualification by regime and peak alignment, end to end on trajectories
written by the package's own writer."""
import json
import math

import numpy as np
import pytest

from landscape import train
from landscape.double_descent import (alignment, ar1_noise, detect_peak, estimate_noise,
                                      moving_average_matrix, peak_statistic, peak_widths,
                                      qualification, turning_point_bound)
from landscape.trajectory import Trajectory, TrajectoryWriter

EPOCHS = np.arange(1, 151)
BASE = 0.25 + 0.35 * np.exp(-EPOCHS / 12)  # a test-error curve: 0.6 -> 0.25
SD = 0.02


def noise_curve(family: str, rng) -> np.ndarray:
    n = len(EPOCHS)
    if family == "white":
        return SD * rng.standard_normal(n)
    if family.startswith("ar"):
        phi = float(family[2:])
        return ar1_noise(rng, phi, SD * math.sqrt(1 - phi ** 2), (1, n))[0]
    if family == "spikes":  # single-epoch jumps of 5 sd
        x = SD * rng.standard_normal(n)
        x[rng.choice(n, 3, replace=False)] += 0.1
        return x
    if family == "excursions":  # a 2-4-epoch excursion on correlated noise
        x = ar1_noise(rng, 0.4, SD * math.sqrt(1 - 0.16), (1, n))[0]
        start, length = rng.integers(20, 130), rng.integers(2, 5)
        x[start:start + length] += 0.08
        return x
    raise ValueError(family)


def bump(centre, height=0.05, fwhm=24.0):
    return height * np.exp(-0.5 * ((EPOCHS - centre) / (fwhm / 2.355)) ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["white", "ar0.4", "ar0.9", "spikes", "excursions"])
def test_false_positive_rate_on_noise_alone_is_at_most_5_percent(family):
    rng = np.random.default_rng({"white": 1, "ar0.4": 2, "ar0.9": 3, "spikes": 4, "excursions": 5}[family])
    found = [detect_peak(EPOCHS, BASE + noise_curve(family, rng))["double_descent"] for _ in range(200)]
    assert None not in found
    assert np.mean(found) <= 0.05, f"{family}: {np.mean(found):.1%} of pure-noise curves called a double descent"


def random_valley(rng, n):
    """A random curve without a peak: non-increasing up to a random turning point m, then
    non-decreasing, with random plateaus, steps and smooth stretches."""
    m = int(rng.integers(0, n))
    steps = rng.exponential(1.0, n) * (rng.random(n) < rng.uniform(0.05, 1.0))
    f = np.concatenate([-np.cumsum(steps[:m]), -steps[:m].sum() + np.cumsum(steps[m:])])
    return f * rng.uniform(0.0, 0.2) / max(np.ptp(f), 1e-12), m


def test_no_peak_curve_exceeds_the_turning_point_bound():
    """The calibration's lemma: for f falling then rising around m, the statistic of f + noise is
    at most V(m) computed from the noise alone, whatever f's shape (steps, plateaus, m at the
    ends); a peak breaks it."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(12, 90))
        widths = peak_widths(n, 1.0, float(rng.choice([6.0, 10.0])))
        if not widths:
            continue
        scales = rng.uniform(0.5, 2.0, len(widths))
        f, m = random_valley(rng, n)
        eps = 0.02 * rng.standard_normal(n)
        t = peak_statistic(f + eps, widths, scales)[0]
        assert t <= turning_point_bound(eps[None], widths, [[s] for s in scales])[0, m] + 1e-12
    n, widths = 60, peak_widths(60, 1.0, 10.0)
    eps = 0.02 * rng.standard_normal(n)
    bump = 0.2 * np.exp(-0.5 * ((np.arange(n) - 30) / 5) ** 2)
    bound = turning_point_bound(eps[None], widths, [[1.0]] * len(widths))[0]
    assert peak_statistic(bump + eps, widths, [1.0] * len(widths))[0] > bound.max()


NO_PEAK_SHAPES = {  # over the run's progress s in (0, 1]
    "flat": lambda s: 0.3 + 0 * s,
    "plateau, then a drop": lambda s: 0.3 + 0.25 / (1 + np.exp((s - 0.5) / 0.04)),
    "two-stage fall with a shelf": lambda s: 0.2 + 0.2 * np.exp(-s / 0.08) + 0.15 / (1 + np.exp((s - 0.6) / 0.03)),
    "rises and stays up": lambda s: 0.3 + 0.1 / (1 + np.exp(-(s - 0.4) / 0.05)),
    "step up": lambda s: 0.3 + 0.1 * (s > 0.5),
    "U-shape": lambda s: 0.3 + 0.6 * (s - 0.5) ** 2,
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(NO_PEAK_SHAPES))
def test_false_peaks_on_curves_without_a_peak_stay_within_alpha(shape):
    """200 draws of each no-peak shape (100 epochs) under AR(1) 0.5 noise, sd 0.02: at alpha
    0.01 at most 2 % false peaks (the nominal 1 % plus sampling: P(> 4 of 200 | 1 %) = 5 %)."""
    e = np.arange(1, 101)
    mean = NO_PEAK_SHAPES[shape](e / 100)
    rng = np.random.default_rng(sorted(NO_PEAK_SHAPES).index(shape))
    found = [detect_peak(e, mean + ar1_noise(rng, 0.5, SD * math.sqrt(0.75), (1, 100))[0])["double_descent"]
             for _ in range(200)]
    assert np.mean(found) <= 0.02, f"{shape}: {np.mean(found):.1%} false peaks"


@pytest.mark.slow
def test_power_on_a_planted_double_descent_is_at_least_90_percent():
    """A bump of 0.05 (FWHM 36 epochs) after the fall of a 200-epoch curve, white noise sd 0.02:
    found in at least 90 % of 200 draws, its peak within 15 epochs of the bump's centre."""
    e = np.arange(1, 201)
    rng = np.random.default_rng(6)
    hits, close = 0, 0
    for _ in range(200):
        centre = rng.uniform(80, 140)
        curve = 0.25 + 0.35 * np.exp(-e / 12) + 0.05 * np.exp(-0.5 * ((e - centre) / (36 / 2.355)) ** 2)
        peak = detect_peak(e, curve + SD * rng.standard_normal(len(e)))
        hits += bool(peak["double_descent"])
        close += bool(peak["double_descent"]) and abs(peak["peak_epoch"] - centre) <= 15
    assert hits / 200 >= 0.90 and close / 200 >= 0.85, (hits, close)


def test_a_one_epoch_spike_and_monotone_curves_are_not_double_descent():
    rng = np.random.default_rng(7)
    spiky = BASE + 0.005 * rng.standard_normal(150)
    spiky[70] += 0.3
    assert detect_peak(EPOCHS, spiky)["double_descent"] is False
    rising = 0.2 + 0.2 * (1 - np.exp(-EPOCHS / 40))  # overfitting without a second descent
    for curve in (BASE, rising, np.linspace(0.5, 0.2, 150)):
        assert detect_peak(EPOCHS, curve + 0.005 * rng.standard_normal(150))["double_descent"] is False


def test_short_curves_are_undetermined_with_the_reason():
    out = detect_peak(EPOCHS[:8], BASE[:8])
    assert out["double_descent"] is None and "test evaluations" in out["reason"]


def test_noise_estimate_recovers_the_autocorrelation():
    for phi in (0.0, 0.4, 0.9):
        est = [estimate_noise(EPOCHS, BASE + ar1_noise(np.random.default_rng(s), phi, SD * math.sqrt(1 - phi ** 2),
                                                       (1, 150))[0]) for s in range(30)]
        assert abs(np.mean([e["phi"] for e in est]) - phi) < 0.06
        assert np.mean([e["phi_upper"] >= phi - 0.02 for e in est]) >= 0.85  # the bound covers phi
        assert 0.7 * SD < np.median([e["marginal_sd"] for e in est]) < 1.6 * SD


def test_moving_average_windows_are_in_epochs():
    m = moving_average_matrix(np.arange(1, 21), 4)  # even window: exactly 4 epochs wide
    np.testing.assert_allclose(m[10, 8:13], [0.125, 0.25, 0.25, 0.25, 0.125])
    spaced = moving_average_matrix(np.arange(10, 201, 10), 30)  # --eval-every 10: 3 points
    np.testing.assert_allclose(spaced[5, 4:7], [1 / 3] * 3)
    assert np.count_nonzero(moving_average_matrix(np.arange(10, 201, 10), 5)[5]) == 1


def test_a_double_descent_sampled_every_10_epochs_is_found():
    e = np.arange(10, 601, 10)  # 60 test evaluations, a bump of 0.08 over 9 of them after the fall
    base = 0.25 + 0.35 * np.exp(-e / 50)
    curve = base + 0.08 * np.exp(-0.5 * ((e - 350) / 40) ** 2)
    found = [detect_peak(e, curve + 0.01 * np.random.default_rng(s).standard_normal(len(e))) for s in range(20)]
    hits = [out for out in found if out["double_descent"]]
    assert len(hits) >= 16 and all(abs(out["peak_epoch"] - 350) <= 30 for out in hits), len(hits)
    assert all(out["peak_width"] % 10 == 0 for out in found)  # whole evaluations, in epochs


def test_alignment_permutation_p_value():
    rows = [{"double_descent": True, "peak_epoch": p, "egn_peak_epoch": q}
            for p, q in ((50, 52), (100, 97), (150, 151))]
    a = alignment(rows)
    assert a["runs"] == 3 and a["mean_epochs_apart"] == pytest.approx(2.0)
    assert a["permutation_p"] == pytest.approx(1 / 6)  # only the identity pairing is as close
    shuffled = alignment([{**r, "egn_peak_epoch": q} for r, q in zip(rows, (151, 52, 97))])
    assert shuffled["permutation_p"] == pytest.approx(1.0)
    assert alignment(rows[:2])["permutation_p"] is None and "needs 3" in alignment(rows[:2])["reason"]
    many = [{"double_descent": True, "peak_epoch": 10.0 * i, "egn_peak_epoch": 10.0 * i + 1} for i in range(9)]
    assert alignment(many)["permutation_p"] < 0.001  # sampled permutations beyond 7 runs


def test_qualification_by_regime():
    regime_rows = [{"path": p, "regime": r, "name": n} for p, r, n in
                   (("a", 1, "convergence"), ("b", 1, "convergence"), ("c", 2, "equilibrium"),
                    ("d", 2, "equilibrium"), ("f", 3, "divergence"), ("e", None, "undetermined"))]
    rows = [{"path": p} for p in "abcdfe"]
    qualification(rows, regime_rows)
    assert [r["qualifies"] for r in rows] == [True, True, True, False, False, None]
    assert "transition" in rows[1]["qualification"] and "transition" in rows[2]["qualification"]


def synthetic_run(path, template: Trajectory, *, elr, label_noise, test_error, epochs, egn):
    """A trajectory written by the package's writer with the given test-error and effective
    gradient-norm curves (train loss falling: a regime-1 run); the other rows are the template
    run's last row."""
    m = template.metrics
    config = {**template.config, "elr": elr, "label_noise": label_noise,
              "epochs": int(epochs[-1]), "eval_every": int(epochs[1] - epochs[0])}
    state = template.state_dict()
    writer = TrajectoryWriter.create(path, config=config, model_spec=template.model_spec,
                                     group_names=template.group_names, initial_state=state,
                                     data_arrays={}, filter_layout=None)
    rest = {"groups/" + k: v[-1] for k, v in template.group_metrics.items()}
    rest.update({"filters/" + k: v[-1] for k, v in template.filter_metrics.items()})
    err = dict(zip(epochs.tolist(), test_error))
    for e in range(1, int(epochs[-1]) + 1):
        rows = {k: m[k][-1] for k in m if k != "epoch" and "/" not in k}
        rows.update({"train_loss": 2.0 * math.exp(-e / 60), "train_accuracy": 1 - 0.8 * math.exp(-e / 60),
                     "test_accuracy": 1 - err[e] if e in err else float("nan"),
                     "effective_grad_norm": float(egn[e - 1]), **rest})
        writer.append_epoch(e, rows, state, checkpoint=False)
    writer.set_attrs({"status": "done"})
    writer.close()


@pytest.mark.slow
def test_end_to_end_on_a_sweep_written_by_the_package(tmp_path, tiny, cli):
    template = train(out=str(tmp_path / "template.h5"), progress=False, **dict(tiny, label_noise=0.2, epochs=2))
    rng = np.random.default_rng(9)
    every = np.arange(5, 301, 5)  # --eval-every 5
    days = np.arange(1, 301)
    (tmp_path / "sw").mkdir()
    for elr, centre in ((1e-3, 220), (2e-3, 180), (4e-3, 140)):  # bumps after the fall
        err = (0.25 + 0.35 * np.exp(-every / 25) + 0.08 * np.exp(-0.5 * ((every - centre) / 25) ** 2)
               + 0.01 * rng.standard_normal(len(every)))
        egn = 1 + np.exp(-0.5 * ((days - centre - 5) / 30) ** 2)
        synthetic_run(str(tmp_path / "sw" / f"elr{elr:g}.h5"), template, elr=elr, label_noise=0.2,
                      test_error=err, epochs=every, egn=egn)
    code, out, err = cli(["double-descent", str(tmp_path / "sw"), "--metrics", "epoch",
                          "--json", str(tmp_path / "d.json"), "--plot", str(tmp_path / "d.png")])
    assert code == 0, err
    result = json.load(open(tmp_path / "d.json"))  # valid JSON: null, never NaN
    rows = result["rows"]
    assert [r["elr"] for r in rows] == [1e-3, 2e-3, 4e-3]
    for r, centre in zip(rows, (220, 180, 140)):
        assert r["double_descent"] is True and r["p_value"] < 0.01, r
        assert abs(r["peak_epoch"] - centre) <= 20 and r["regime"] == 1 and r["qualifies"] is True
        assert abs(r["egn_peak_epoch"] - centre - 5) <= 10
    a = result["alignment"]
    assert a["runs"] == 3 and a["mean_epochs_apart"] < 20 and a["permutation_p"] == pytest.approx(1 / 6)
    assert "permutation p" in out and (tmp_path / "d.png").stat().st_size > 0


@pytest.mark.slow
def test_real_label_noise_runs_in_regimes_2_and_3_show_no_double_descent(tmp_path, tiny):
    """The earlier detector reported 'peaks' in a real regime-2 and regime-3 label-noise run;
    their test error wanders (chaos, random guessing) without a bump over a learning curve."""
    from landscape.double_descent import double_descent
    from landscape.sweep import sweep
    cfg = dict(tiny, model="mlp", width=256, depth=3, train_subset=1024, batch_size=128, epochs=120,
               save_every=1000, label_noise=0.2, checkpoint_metrics=False)  # judged on epoch means
    sweep([0.03, 1.0], str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    result = double_descent([str(tmp_path / "sw")], metrics="epoch")
    rows = result["rows"]
    assert [r["regime"] for r in rows] == [2, 3], [(r["elr"], r["regime_name"]) for r in rows]
    assert [r["double_descent"] for r in rows] == [False, False], [(r["elr"], r["p_value"]) for r in rows]
    assert [r["qualifies"] for r in rows] == [False, False]  # no regime-1 neighbour: not Appendix G's case


def test_the_noisy_and_clean_train_errors_come_from_the_checkpoint_subsets(tmp_path, tiny, cli):
    """Appendix G's picture: with label noise the figure draws the train error on the noisy and
    on the clean examples apart, the checkpoint metrics' subset columns, from epoch 0."""
    (tmp_path / "sw").mkdir()
    t = train(out=str(tmp_path / "sw" / "run.h5"), progress=False,
              **dict(tiny, label_noise=0.25, epochs=6, checkpoint_metrics=True))
    code, out, err = cli(["double-descent", str(tmp_path / "sw"), "--metrics", "checkpoint",
                          "--json", str(tmp_path / "d.json"), "--plot", str(tmp_path / "d.png")])
    assert code == 0, err
    row = json.load(open(tmp_path / "d.json"))["rows"][0]
    assert row["epochs"] == list(range(7))
    for subset in ("noisy", "clean"):
        measured = [t.initial_rows[f"checkpoint/train_accuracy_{subset}"],
                    *t.checkpoint_metrics[f"train_accuracy_{subset}"]]
        assert row[f"train_error_{subset}"] == pytest.approx([1 - a for a in measured])
    assert (tmp_path / "d.png").stat().st_size > 10_000


def test_a_bump_without_a_first_descent_is_no_double_descent():
    """The same significant bump on a curve that first fell (a learning curve) and on one that
    stays near chance (a run guessing at random): only the first is a double descent."""
    e = np.arange(1, 121)
    rng = np.random.default_rng(3)
    bump = 0.035 * np.exp(-0.5 * ((e - 60) / 8) ** 2)
    noise = 0.005 * rng.standard_normal(len(e))
    learned = detect_peak(e, 0.3 + 0.6 * np.exp(-e / 5) + bump + noise)
    guessing = detect_peak(e, 0.88 + bump + noise)
    assert learned["double_descent"] is True and abs(learned["peak_epoch"] - 60) <= 8
    assert learned["first_descent"] > learned["height"]
    assert guessing["p_value"] < 0.01 and guessing["height"] > 0.02  # the bump itself is significant
    assert guessing["double_descent"] is False and "no first descent" in guessing["reason"]
