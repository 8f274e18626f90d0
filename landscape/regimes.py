"""Regimes of training on the sphere (paper Section 5, Figure 1).

Regime of a run, from the paper's signatures over the last ``tail`` fraction of its curve (at
least ``min_tail`` points; C classes, ln C = the loss of a uniform guess), with the evidence for
each label:
    trend       a Mann-Kendall test of log train loss against epoch, exact for short tails,
                its variance inflated by the residuals' lag-1 autocorrelation around the
                least-squares decreasing convex curve (a chaotic run's loss wanders:
                independent-sample tests see trends in it; a smooth fall's curvature is not
                noise); one-sided p-value for a fall, Theil-Sen slope
    ESS spread  std/mean over the SI groups (filters when logged, else layers) of their tail-mean
                effective step sizes: ~0 when they have equalised (Sec. 3.2, Fig. 4)
    level       the lower of the final loss (median of the last ``final_fraction``) and the
                tail's median: a spike in the last epochs does not move it
    wandering   the expected cosine to the tail's start of a random walk taking the run's own
                steps over the tail (``log_cos_step_sum``; Appendix M)
    1 convergence   the level is at most ``converged_loss_fraction`` ln C (whatever the step
                    sizes); or the loss falls significantly (p < ``trend_alpha``) with unequal
                    ESS and does not end at the uniform guess (loss ~ ln C with chance
                    accuracy); or it has reached a low level (<= ``low_loss_fraction`` ln C)
                    with unequal ESS; or the fall lasts: significant over the run's second half
                    and by at least ``sustained_fall_factor`` there (then near-equal ESS do not
                    veto it: runs just below the 1/2 boundary converge with their ESS close)
    2 equilibrium   no significant fall, a level away from zero and from random guessing, and
                    equalised ESS (spread <= ``ess_equal_filter`` / ``ess_equal_layer``)
    3 divergence    random-guess accuracy (<= 1/C + ``random_accuracy_margin``) and loss
                    (median >= ``random_loss_fraction`` ln C), with steps that wander (a
                    "fall" there is the walk's drift) or without a fall; unless the steps are
                    too small to wander (a random walk with them keeps more than
                    ``wander_cos`` to the tail's start): that run has barely moved, undetermined
    undetermined    too short (fewer than ``min_points`` points, or ``min_tail`` in the tail),
                    or the signals disagree (a fall only in the tail with equalised ESS, a flat
                    level with unequal ESS); the reason is given
    nonfinite       the run met NaN/inf (its status, or NaN in its curve); the regime of its
                    finite part is given beside it (``finite_regime``)
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .legacy import stored_model_spec
from .errors import ArgumentError, LandscapeError
from .trajectory import Trajectory
from .config import swept_rate

NAMES = {1: "convergence", 2: "equilibrium", 3: "divergence", None: "undetermined"}


@dataclass
class RegimeCriteria:
    tail: float = 0.2
    final_fraction: float = 0.05
    low_loss_fraction: float = 0.05
    random_loss_fraction: float = 0.9
    random_accuracy_margin: float = 0.05
    trend_alpha: float = 0.01
    ess_equal_filter: float = 0.2
    ess_equal_layer: float = 0.1
    # a fall that lasts: over the run's second half (at least ``sustained_min_points`` points)
    # the loss falls significantly and by at least this factor (Theil-Sen line); such a run
    # converges even where its groups' step sizes are already near-equal (at the 1/2 boundary)
    sustained_fall_factor: float = 2.0
    sustained_min_points: int = 20
    min_points: int = 10
    min_tail: int = 8
    # converged whatever the step sizes: the tail's median loss (or the final) at most this x ln C
    # a label is confident when it survives at least this share of block-bootstrap resamples of
    # the curve's own noise (``label_stability``); otherwise it is printed with a '?'
    min_stability: float = 0.8
    resamples: int = 50
    converged_loss_fraction: float = 0.005
    # regime 3 wanders: over the tail a random walk taking the run's own steps keeps at most this
    # cosine to where the tail began (a run that barely moves is not diverging, however bad)
    wander_cos: float = 0.5

    def tail_points(self, points: int) -> int:
        """The points of a curve of ``points`` its signatures are read from: the last ``tail``
        fraction, at least ``min_tail``."""
        return max(self.min_tail, int(round(self.tail * points)))


@lru_cache(maxsize=None)
def _kendall_null_cdf(n: int) -> np.ndarray:
    """P(S <= s) for s = -M, -M+2, ..., M (M = n(n-1)/2) of Kendall's S (concordant minus
    discordant pairs) under independence, exactly: S = M - 2 x (inversions of a uniform random
    permutation), whose counts are the Mahonian numbers."""
    counts = np.array([1.0])
    for k in range(2, n + 1):  # the k-th element adds 0..k-1 inversions
        counts = np.convolve(counts, np.ones(k))
    return np.cumsum(counts[::-1] / counts.sum())


@lru_cache(maxsize=None)
def _falling_basis(n: int) -> np.ndarray:
    """The decreasing convex curves' basis over n points (``curves.baseline_basis``, fine time
    scales and a falling line), made once per length."""
    from .curves import FINE_TIME_SCALES, baseline_basis
    basis = baseline_basis(np.arange(n, dtype=float), FINE_TIME_SCALES, linear=True)
    basis.flags.writeable = False
    return basis


@lru_cache(maxsize=None)
def _pairs(n: int) -> tuple:
    """Every pair i < j of n points: (i, j, j - i as floats)."""
    rows, cols = np.triu_indices(n, 1)
    return rows, cols, (cols - rows).astype(float)


def kendall_theil_sen(y) -> tuple[float, float, float]:
    """Kendall's tau-b of ``y`` against its index, and the Theil-Sen line through it (slope per
    point, intercept): the values ``scipy.stats.kendalltau(arange(n), y).statistic`` and
    ``scipy.stats.theilslopes(y)[:2]`` return, bit for bit, from one matrix of pairwise
    differences (scipy's calls also compute p-values and confidence bounds, which the trend
    test does not read, and cost 20x as much on a 25-point tail).

    >>> kendall_theil_sen([3.0, 2.0, 2.5, 1.0])
    (-0.6666666666666669, -0.5833333333333333, 3.125)
    """
    y = np.asarray(y, float)
    n = len(y)
    rows, cols, spans = _pairs(n)
    rises = y[cols] - y[rows]
    pairs = n * (n - 1) // 2
    ties = int(np.count_nonzero(rises == 0))
    s_stat = int(np.count_nonzero(rises > 0)) - int(np.count_nonzero(rises < 0))
    # scipy's expression and order of operations, so the float is the same
    tau = float(min(1.0, max(-1.0, s_stat / np.sqrt(pairs) / np.sqrt(pairs - ties))))
    slope = float(np.median(rises / spans))
    intercept = float(np.median(y) - slope * ((n - 1) / 2))  # (n - 1) / 2: the index's median
    return tau, slope, intercept


EXACT_MAX_POINTS = 60  # the exact null distribution of S up to here, the normal one above


def falling_trend(values) -> dict:
    """Mann-Kendall test for a downward trend of ``values`` (in order). Correlated noise is
    allowed for: the residuals' lag-1 autocorrelation r1 (clipped to [0, 0.95]) inflates the
    variance of S by f = (1 + r1) / (1 - r1). For a fall the residuals are taken around the
    least-squares decreasing convex curve (``curves.fit_baseline``), so the curvature of a
    smooth fall (exponential, power law) is not read as correlated noise; otherwise around the
    Theil-Sen line. The one-sided p-value of a fall is exact for up to ``EXACT_MAX_POINTS``
    points (S / sqrt(f) against the exact null distribution of S: a perfect 5-point fall has
    p = 1/120), normal with a continuity correction above. Returns tau, the Theil-Sen slope
    (per point), r1 and p_falling."""
    from .curves import fit_baseline
    y = np.asarray(values, float)
    n = len(y)
    x = np.arange(n, dtype=float)
    if n < 3 or np.ptp(y) == 0:
        return {"tau": 0.0, "slope": 0.0, "r1": 0.0, "p_falling": 1.0}
    if np.all(np.isfinite(y)):
        tau, slope, intercept = kendall_theil_sen(y)
    else:  # scipy's own handling of non-finite values
        from scipy import stats  # here: importing it costs every command line half a second
        tau = float(stats.kendalltau(x, y).statistic)
        slope, intercept = stats.theilslopes(y, x)[:2]
    line = y - (intercept + slope * x)
    resid = y - fit_baseline(y, _falling_basis(n)) if tau < 0 else line
    # residuals a thousandth of the range: a smooth fall that the basis follows, not noise
    if np.std(resid) <= 1e-3 * np.ptp(y) or np.std(resid[:-1]) == 0 or np.std(resid[1:]) == 0:
        r1 = 0.0
    else:
        r1 = float(np.corrcoef(resid[:-1], resid[1:])[0, 1])
    r1 = min(max(r1 if math.isfinite(r1) else 0.0, 0.0), 0.95)
    inflation = (1 + r1) / (1 - r1)
    pairs = n * (n - 1) / 2
    s_stat = tau * pairs
    if n <= EXACT_MAX_POINTS:
        k = math.floor((s_stat / math.sqrt(inflation) + pairs) / 2 + 1e-9)  # S = -M + 2k <= S/sqrt(f)
        p = float(_kendall_null_cdf(n)[min(max(k, 0), int(pairs))])
    else:
        var = n * (n - 1) * (2 * n + 5) / 18 * inflation
        z = (s_stat + 1) / math.sqrt(var) if s_stat < 0 else s_stat / math.sqrt(var)  # continuity
        from scipy.special import ndtr  # the standard normal's cdf (scipy.stats.norm.cdf's own)
        p = float(ndtr(z))
    return {"tau": tau, "slope": float(slope), "r1": r1, "p_falling": p}


def ess_spread(ess) -> float:
    """std / mean of the SI groups' effective step sizes (tail means): 0 when all are equal."""
    e = np.asarray(ess, float)
    e = e[np.isfinite(e)]
    return float(e.std() / e.mean()) if len(e) > 1 and e.mean() > 0 else float("nan")


def _falling_verdict(loss, acc, final: float, equal, num_classes: int, c: RegimeCriteria,
                     evidence: dict) -> tuple[int | None, str]:
    """(regime, reason) of a run whose tail loss falls significantly: convergence, unless the
    effective step sizes have equalised without a fall lasting over the second half, or the run
    ends at random guessing. Adds the second half's fall to ``evidence``."""
    random_loss = math.log(num_classes)
    # ending at the uniform guess itself (loss ~ ln C, chance accuracy), not above it: a run
    # still falling from a bad start sits above ln C
    final_random = (abs(final - random_loss) <= (1 - c.random_loss_fraction) * random_loss and
                    acc[-max(1, int(round(c.final_fraction * len(acc)))):].mean()
                    <= 1.0 / num_classes + c.random_accuracy_margin)
    half = np.log(np.maximum(loss[len(loss) // 2:], 1e-300))
    sustained = falling_trend(half) if len(half) >= c.sustained_min_points else None
    evidence["half_fall_factor"] = (float(np.exp(-sustained["slope"] * (len(half) - 1)))
                                    if sustained else float("nan"))
    evidence["half_p_falling"] = sustained["p_falling"] if sustained else float("nan")
    lasting = (sustained is not None and sustained["p_falling"] < c.trend_alpha and
               evidence["half_fall_factor"] >= c.sustained_fall_factor)
    if equal and not lasting:
        reason = "the loss still falls but the effective step sizes have equalised"
    elif final_random:  # e.g. an exploded run whose annealed LR brings it back to guessing
        reason = (f"the loss falls but ends at random guessing (final {final:.3g} ~ ln C = "
                  f"{random_loss:.3g}, accuracy at chance)")
    else:
        return 1, ""
    return None, reason


def classify_curve(train_loss, train_accuracy, num_classes: int,
                   criteria: RegimeCriteria | None = None, group_ess=None,
                   ess_level: str = "filter", tail_walk_cos: float | None = None) -> dict:
    """Regime of one run (1, 2, 3, or None: undetermined) from its train loss and accuracy
    curves and its SI groups' effective step sizes ``group_ess`` ([points, groups]; the tail
    mean is taken here), with the evidence and, when undetermined, the reason.
    ``tail_walk_cos``: the expected cosine to the tail's start of a random walk taking the run's
    own steps over the tail (``random_walk.expected_cosine``; None when not logged)."""
    c = criteria or RegimeCriteria()
    loss = np.asarray(train_loss, float)
    acc = np.asarray(train_accuracy, float)
    n_tail = c.tail_points(len(loss))
    out = {"points": len(loss), "reason": ""}
    if len(loss) < c.min_points or len(loss) < n_tail:
        return {**out, "regime": None, "name": NAMES[None],
                "reason": f"too short: {len(loss)} points, needs at least {max(c.min_points, c.min_tail)}",
                "final_train_loss": float(loss[-1]) if len(loss) else float("nan"),
                "tail_train_loss": float("nan"), "tail_train_accuracy": float("nan")}
    tail_loss, tail_acc = loss[-n_tail:], acc[-n_tail:]
    # medians: a converging run with rare spikes (the jumps out of the basin that the paper sees
    # at the highest regime-1 ELRs) must not read as a loss level
    final = float(np.median(loss[-max(1, int(round(c.final_fraction * len(loss)))):]))
    trend = falling_trend(np.log(np.maximum(tail_loss, 1e-300)))
    falling = trend["p_falling"] < c.trend_alpha and trend["slope"] < 0
    spread = float("nan")
    if group_ess is not None and len(group_ess):
        spread = ess_spread(np.asarray(group_ess, float)[-n_tail:].mean(0))
    threshold = c.ess_equal_filter if ess_level == "filter" else c.ess_equal_layer
    equal = spread <= threshold if math.isfinite(spread) else None
    random_loss = math.log(num_classes)
    random_guess = (tail_acc.mean() <= 1.0 / num_classes + c.random_accuracy_margin and
                    np.median(tail_loss) >= c.random_loss_fraction * random_loss)
    # levels from the final loss or the tail's median, whichever is lower: a jump or a
    # catapult spike in the last epochs does not undo a convergence
    level = min(final, float(np.median(tail_loss)))
    low = level <= c.low_loss_fraction * random_loss
    converged = level <= c.converged_loss_fraction * random_loss
    barely_moves = tail_walk_cos is not None and tail_walk_cos > c.wander_cos
    wanders = tail_walk_cos is not None and not barely_moves
    evidence = {"final_train_loss": final, "tail_train_loss": float(tail_loss.mean()),
                "tail_train_accuracy": float(tail_acc.mean()), "trend_tau": trend["tau"],
                "trend_slope_log_loss": trend["slope"], "trend_r1": trend["r1"],
                "trend_p_falling": trend["p_falling"], "falling": bool(falling),
                "ess_spread": spread, "ess_level": ess_level, "ess_threshold": threshold,
                "ess_equalised": equal, "random_guess": bool(random_guess), "low_level": bool(low),
                "converged_level": bool(converged), "tail_walk_cos": tail_walk_cos, "tail_points": n_tail}
    regime, reason = None, ""
    if random_guess and not falling and barely_moves:
        reason = (f"loss and accuracy at random guessing, but its steps are too small to wander: a "
                  f"random walk taking them keeps cosine {tail_walk_cos:.2f} to where the tail began "
                  f"(barely trained, not diverging)")
    elif random_guess and (not falling or wanders):  # at guessing with wandering steps, a "fall"
        regime = 3                                   # is the walk's own drift
    elif falling:
        regime, reason = _falling_verdict(loss, acc, final, equal, num_classes, c, evidence)
    elif equal is None:
        reason = "no per-group effective step sizes to tell a converged run from an equilibrium"
    elif low and not equal:
        regime = 1
    elif equal and not random_guess:
        regime = 2
    else:
        reason = (f"no significant fall over the {n_tail}-point tail (p = {trend['p_falling']:.2g}) "
                  f"yet unequal effective step sizes (spread {spread:.2g})")
    if converged:  # at (near) zero loss: converged, whatever the step sizes or the last epochs
        regime, reason = 1, ""
    return {**out, **evidence, "regime": regime, "name": NAMES[regime], "reason": reason}


def find_trajectories(inputs) -> list[str]:
    """The trajectory files of ``inputs``: a path or a list of paths, folders giving their *.h5."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.h5")))
            if not found:
                raise LandscapeError(f"{item}: no trajectories (*.h5) in this folder")
            paths += found
        else:
            paths.append(item)
    if not paths:
        raise LandscapeError("give a sweep folder or trajectory files")
    return paths


MIN_EPOCHS = 3  # fewer committed epochs than this say nothing about a regime


def usable_runs(inputs, *, min_epochs: int = MIN_EPOCHS, nonfinite_ok: bool = True,
                need=None) -> tuple[list[Trajectory], list[dict]]:
    """The network trajectories among ``inputs`` (files and folders) that an analysis can use,
    and the others as ``{"path", "reason"}`` (damaged, foreign, a toy run, too short, ended by
    non-finite values unless ``nonfinite_ok``, or ``need(t)`` returned a reason). One bad run does
    not stop the rest; nothing usable at all is an error that lists why."""
    usable, skipped = [], []
    for path in find_trajectories(inputs):
        try:
            t = Trajectory(path)
        except LandscapeError as e:
            skipped.append({"path": path, "reason": str(e).removeprefix(f"{path}: ")})
            continue
        nonfinite = t.status == "nonfinite"
        if t.kind != "train":
            reason = f"a {t.kind} trajectory, not a network run"
        elif nonfinite and not nonfinite_ok:
            reason = "ended by non-finite values"
        elif t.epochs_complete < min_epochs and not nonfinite:
            reason = f"too short: {t.epochs_complete} epochs, needs at least {min_epochs}"
        else:
            reason = need(t) if need is not None else None
        if reason:
            skipped.append({"path": path, "reason": reason})
        else:
            usable.append(t)
    if not usable:
        raise LandscapeError("no usable trajectory: " + "; ".join(f"{s['path']} ({s['reason']})"
                                                                  for s in skipped))
    return usable, skipped


METRIC_SOURCES = ("auto", "epoch", "checkpoint")
SOURCE_TEXT = {"epoch": "epoch means over the mini-batches of training (landscape train's log)",
               "checkpoint": "checkpoint metrics (the official protocol: whole training set in "
                             "fixed order, no update; landscape evaluate, or checkpoint_metrics in training)"}


def gradient_axis(t: Trajectory) -> str:
    """The sharpness proxy the paper draws for a run: the mean stochastic effective gradient
    norm rho * mean ||g_B|| of the SI parameters (Sections 4, 5), or, for a conventional network
    that has no SI groups, the mean norm of the regular stochastic gradients of all its trained
    parameters (Section 6, Fig. 7)."""
    return "grad_norm" if stored_model_spec(t.model_spec)["conventional"] else "effective_grad_norm"


def curves(t: Trajectory, source: str) -> dict | None:
    """A run's curves ('epoch', 'train_loss', 'train_accuracy', 'test_accuracy',
    'effective_grad_norm', ...) from ``source``: 'epoch' (training's epoch means) or
    'checkpoint' (None when the run has none)."""
    if source == "epoch":
        return t.metrics
    from .evaluation import stored_checkpoint_metrics
    return stored_checkpoint_metrics(t)


def pick_source(runs, source: str, min_points: int = MIN_EPOCHS) -> tuple[str, list, list]:
    """Resolve 'auto' (checkpoint metrics when every run has them, else epoch means) and split
    the runs into those that have the source's curves (at least ``min_points`` points) and the
    skipped others."""
    if source not in METRIC_SOURCES:
        raise ArgumentError(f"metrics must be one of {', '.join(METRIC_SOURCES)}, got {source!r}", "metrics")
    finite = [t for t in runs if t.status != "nonfinite"]
    # each run's checkpoint metrics read once (they may come from the file's /analyses)
    stored = {id(t): curves(t, "checkpoint") for t in finite} if source != "epoch" else {}
    if source == "auto":
        source = "checkpoint" if finite and all(c is not None and len(c["train_loss"]) >= min_points
                                                for c in stored.values()) else "epoch"
    kept, skipped = [], []
    for t in runs:
        if t.status == "nonfinite":
            c = t.metrics
        else:
            c = stored[id(t)] if source == "checkpoint" else t.metrics
        if c is None:
            skipped.append({"path": t.path, "reason": "no checkpoint metrics: run 'landscape "
                            f"evaluate {t.path}' or train with checkpoint_metrics"})
        elif len(c["train_loss"]) < min_points and t.status != "nonfinite":
            skipped.append({"path": t.path, "reason": f"{len(c['train_loss'])} points of {source} "
                            f"metrics, needs at least {min_points}"})
        else:
            kept.append((t, c))
    if not kept:
        raise LandscapeError("no usable trajectory: " + "; ".join(f"{s['path']} ({s['reason']})"
                                                                  for s in skipped))
    return source, kept, skipped


def _tail_mean(values, tail: float) -> float:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan")
    return float(v[-max(1, int(round(tail * len(v)))):].mean())


def group_ess_rows(t: Trajectory, curves_: dict) -> tuple[np.ndarray | None, str]:
    """The SI groups' effective step sizes [points, groups] matching the curves used: per
    filter when logged, else per layer; from the checkpoint metrics when those are the curves."""
    for level in ("filters", "groups"):
        key = f"{level}/effective_step_size"
        if key in curves_:  # checkpoint metrics carry their own group rows
            return np.asarray(curves_[key]), level.rstrip("s")
    if "train_loss" in curves_ and curves_ is t.metrics:
        if t.filter_metrics:
            return t.filter_metrics["effective_step_size"], "filter"
        if t.group_metrics:
            return t.group_metrics["effective_step_size"], "layer"
    return None, "filter"


def label_stability(train_loss, train_accuracy, num_classes: int, c: RegimeCriteria, group_ess,
                    ess_level: str, tail_walk_cos: float | None, regime, seed: int = 0) -> float:
    """The share of ``c.resamples`` resamples of the run's own noise that keep its label: the
    log loss is split into a smooth part (a centred moving average over about a tenth of the run)
    and residuals, the residuals are resampled in moving blocks (length ~ n^(1/3), which keeps
    their autocorrelation) and added back, and each curve is classified again."""
    loss = np.log(np.maximum(np.asarray(train_loss, float), 1e-300))
    n = len(loss)
    half = max(1, n // 20)
    padded = np.pad(loss, half, mode="edge")
    smooth = np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
    resid = loss - smooth
    block = max(2, int(round(n ** (1 / 3))))
    g = np.random.default_rng(seed)
    kept = 0
    for _ in range(c.resamples):
        starts = g.integers(0, n - block + 1, size=math.ceil(n / block))
        noise = np.concatenate([resid[s:s + block] for s in starts])[:n]
        again = classify_curve(np.exp(smooth + noise), train_accuracy, num_classes, c, group_ess,
                               ess_level, tail_walk_cos)
        kept += again["regime"] == regime
    return kept / c.resamples


def tail_walk_cos(t: Trajectory, points: int, c: RegimeCriteria, end: int | None = None) -> float | None:
    """The expected cosine to the tail's start of a random walk taking the run's own steps over
    its last ``c.tail_points(points)`` training epochs (up to epoch ``end``); None when the
    run did not log its step angles (``log_cos_step_sum``)."""
    steps = t.metrics.get("log_cos_step_sum")
    if steps is None:
        return None
    steps = np.asarray(steps, float)[:end]
    tail = steps[-c.tail_points(points):]
    return float(np.exp(tail.sum())) if len(tail) and np.all(np.isfinite(tail)) else None


def nonfinite_row(t: Trajectory, curves_: dict, c: RegimeCriteria, ess, level: str) -> dict:
    """A run that met non-finite values: 'nonfinite', and the regime of its finite part (the
    epochs before the first non-finite one) when that part is long enough to judge."""
    detail = t.status_detail
    loss, acc = np.asarray(curves_["train_loss"], float), np.asarray(curves_["train_accuracy"], float)
    bad = ~(np.isfinite(loss) & np.isfinite(acc))
    end = int(np.argmax(bad)) if bad.any() else len(loss)
    part = classify_curve(loss[:end], acc[:end], t.model_spec["num_classes"], c,
                          None if ess is None else np.asarray(ess)[:end], level,
                          tail_walk_cos(t, end, c, end=end)) if end else {"regime": None, "reason": "no finite epoch"}
    epoch = detail.get("epoch")
    before = (f"{part['regime']} ({NAMES[part['regime']]})" if part["regime"] is not None
              else f"undetermined ({part['reason']})")
    return {"regime": None, "name": "nonfinite", "finite_regime": part["regime"],
            "reason": f"non-finite values at epoch {epoch}; before them: {before}",
            "nonfinite_epoch": epoch, "nonfinite_what": detail.get("what"),
            "final_train_loss": float(loss[end - 1]) if end else float("nan"),
            "tail_train_loss": float("nan"), "tail_train_accuracy": float("nan")}


def sweep_checks(rows: list[dict]) -> dict:
    """Sweep-level consistency: determined labels must not decrease with the swept rate (ELR on
    the sphere, LR in the whole space; 1 -> 2 -> 3) among runs of one seed (rows' ``seed``);
    duplicate rates within a seed, duplicate runs (the same content under two paths, rows'
    ``_digest``, or the same file twice) and runs of different lengths are flagged; boundaries
    only between determined runs. Rows carry ``rate`` (and ``rate_name``)."""
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r.get("seed"), []).append(r)
    out_of_order, duplicate_rates = [], set()
    for group in by_seed.values():
        group = sorted(group, key=lambda r: r["rate"])
        determined = [r for r in group if r["regime"] in (1, 2, 3)]
        out_of_order += [{"rate": a["rate"], "regime": a["regime"], "next_rate": b["rate"],
                          "next_regime": b["regime"], **({"seed": a["seed"]} if a.get("seed") is not None else {})}
                         for a, b in zip(determined, determined[1:]) if b["regime"] < a["regime"]]
        rates = [r["rate"] for r in group]
        duplicate_rates |= {e for e in rates if rates.count(e) > 1}
    keys = [r.get("_digest") or os.path.realpath(r["path"]) for r in rows]
    duplicates = sorted({r["path"] for r, k in zip(rows, keys) if keys.count(k) > 1})
    determined = [r for r in rows if r["regime"] in (1, 2, 3)]
    ones = [r["rate"] for r in determined if r["regime"] == 1]
    threes = [r["rate"] for r in determined if r["regime"] == 3]
    names = sorted({r.get("rate_name", "ELR") for r in rows})
    lengths = sorted({r["epochs"] for r in rows if r.get("epochs") is not None})
    return {"ordered": not out_of_order, "out_of_order": out_of_order,
            "rate_name": "/".join(names) or "ELR",
            "mixed_spaces": len(names) > 1,
            "duplicate_rates": sorted(duplicate_rates),
            "duplicate_files": duplicates,
            "mixed_lengths": lengths if len(lengths) > 1 else [],
            "largest_regime1_rate": max(ones) if ones else None,
            "smallest_regime3_rate": min(threes) if threes else None}


def content_digest(t: Trajectory) -> str:
    """What identifies a run's content whatever its path: its settings and its train curve."""
    import hashlib
    import json
    h = hashlib.sha256(json.dumps(t.config, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(np.asarray(t.metrics.get("train_loss", []), float)).tobytes())
    return h.hexdigest()


def regimes(inputs, criteria: RegimeCriteria | None = None, metrics: str = "auto") -> dict:
    """Classify every usable trajectory (see the module docstring); rows sorted by ELR, each
    with its evidence, plus the sweep-level checks (order, duplicates, boundaries between
    determined runs), the curves used (``metrics``: 'epoch', 'checkpoint' or 'auto' =
    checkpoint metrics when every run has them) and the runs skipped (with why). A run that met
    non-finite values (its status, or NaN in its train curve) is 'nonfinite': that is what
    happened, not a guess."""
    c = criteria or RegimeCriteria()
    rows = []
    runs, skipped = usable_runs(inputs)
    source, kept, left = pick_source(runs, metrics)
    skipped += left
    for t, m in kept:
        values = np.concatenate([m["train_loss"], m["train_accuracy"]])
        ess, level = group_ess_rows(t, m)
        if t.status == "nonfinite" or not np.all(np.isfinite(values)):
            res = nonfinite_row(t, m, c, ess, level)
        else:
            walk = tail_walk_cos(t, len(m["train_loss"]), c)
            res = classify_curve(m["train_loss"], m["train_accuracy"], t.model_spec["num_classes"],
                                 c, ess, level, walk)
            if res["regime"] is not None and len(m["train_loss"]) >= c.min_points:
                res["stability"] = label_stability(m["train_loss"], m["train_accuracy"], t.model_spec["num_classes"],
                                                   c, ess, level, walk, res["regime"])
                res["confident"] = res["stability"] >= c.min_stability
        test_acc = m["test_accuracy"][~np.isnan(m["test_accuracy"])]
        rate_name, rate = swept_rate(t.config)
        rows.append({"path": t.path, "rate_name": rate_name, "rate": rate, rate_name.lower(): rate,
                     **res, "metrics": source, "gradient_axis": gradient_axis(t),
                     "mean_effective_grad_norm": _tail_mean(m["effective_grad_norm"], c.tail),
                     "mean_grad_norm": _tail_mean(m["grad_norm"], c.tail),
                     "test_accuracy": float(test_acc[-1]) if len(test_acc) else float("nan"),
                     "epochs": int(t.epochs_complete), "num_classes": t.model_spec["num_classes"],
                     "seed": (t.config.get("init_seed", 0), t.config.get("data_seed", 0)),
                     "_digest": content_digest(t), "_trajectory": t, "_curves": m})
    rows.sort(key=lambda r: r["rate"])
    return {"rows": rows, "criteria": asdict(c), "skipped": skipped, "metrics": source,
            **sweep_checks(rows)}




# --- CLI ----------------------------------------------------------------------------------


