"""Is a run's path on the sphere a random walk? (Appendix M: the third regime against a random walk)

A random walk on the unit sphere S^(D-1) that turns by an angle delta in a uniformly random
tangent direction moves its cosine to the start c = cos(theta) as

    c' = c cos(delta) + sin(theta) sin(delta) u,   u ~ first coordinate of a uniform point on S^(D-2),

so E[c'] = c cos(delta) and, after steps delta_1..delta_K, E[cos theta_K] = prod_k cos(delta_k):
the walk's expected cosine decays by the product of the cosines of its step angles, whatever D.
A projected SGD step of effective size s turns the SI vector by arctan(s) (the gradient is
orthogonal to it), so a run logs per epoch the sum over its steps of log cos(delta_k)
(``log_cos_step_sum``, exact for the run's own steps). The walk is simulated with the run's own
step sizes and its SI dimension D (each epoch in ``substeps`` equal steps of the same total
log cosine), and the run's measured angle to the start (``cos_to_init`` of the checkpoint
metrics) is compared with the simulated walks' at every measured epoch:

    T = max_t |theta_run(t) - mean_walk(t)| / sd_walk(t),   p = (1 + #{T_walk >= T}) / (walks + 1),

a Monte Carlo global envelope test, exact under the null "a random walk with these steps" (each
simulated walk's T is computed the same way). p < alpha: the run is distinguishable from a random
walk, and the sign of the largest deviation says how (it stays nearer its start: a converging
run; or moves away faster: a drift). The effect size (largest deviation in degrees) comes with
it: with D in the thousands or millions the walk's spread is tiny, so a run that is a random walk
in all but tiny correlations can still be distinguishable; read the degrees.

Example:
    >>> import numpy as np
    >>> steps = np.full(20, np.log(np.cos(0.05)))         # 20 epochs, each turning 0.05 rad
    >>> walk = expected_cosine(steps)                       # the walk's E[cos] from epoch 0
    >>> bool(np.isclose(walk[-1], np.cos(0.05) ** 20))
    True
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ArgumentError, LandscapeError


def expected_cosine(log_cos_steps) -> np.ndarray:
    """E[cos to the start] of a random walk after each epoch, from epoch 0 (1.0):
    exp(cumulative sum of the epochs' ``log_cos_steps``)."""
    steps = np.asarray(log_cos_steps, float)
    return np.exp(np.concatenate([[0.0], np.cumsum(steps)]))


def _tangent_coordinate(rng, dimension: int, size: int) -> np.ndarray:
    """u: the first coordinate of a uniform point on S^(D-2) (the share of a uniformly random
    tangent direction that points along the geodesic to the start)."""
    z = rng.standard_normal(size)
    rest = rng.chisquare(dimension - 2, size) if dimension > 2 else np.zeros(size)
    return z / np.sqrt(z * z + rest)


def simulate_cosines(log_cos_steps, dimension: int, walks: int, seed: int = 0,
                     substeps: int = 10) -> np.ndarray:
    """Cosines to the start of ``walks`` random walks on S^(dimension-1) with the epochs' step
    sizes, [walks, epochs + 1] from epoch 0. Each epoch is ``substeps`` equal steps whose log
    cosines sum to the epoch's (``log_cos_steps``, <= 0)."""
    if dimension < 2:
        raise ArgumentError(f"dimension must be at least 2, got {dimension}", "dimension")
    if walks < 1:
        raise ArgumentError(f"walks must be positive, got {walks}", "walks")
    steps = np.asarray(log_cos_steps, float)
    if np.any(~np.isfinite(steps)) or np.any(steps > 1e-12):
        raise ArgumentError("log_cos_steps must be finite and <= 0 (sums of log cos of step angles)",
                            "log_cos_steps")
    rng = np.random.default_rng(seed)
    c = np.ones(walks)
    out = np.empty((walks, len(steps) + 1))
    out[:, 0] = 1.0
    for e, total in enumerate(steps):
        cos_d = math.exp(min(total, 0.0) / substeps)
        sin_d = math.sqrt(max(0.0, 1.0 - cos_d * cos_d))
        for _ in range(substeps):
            u = _tangent_coordinate(rng, dimension, walks)
            c = np.clip(c * cos_d + np.sqrt(np.clip(1.0 - c * c, 0.0, None)) * sin_d * u, -1.0, 1.0)
        out[:, e + 1] = c
    return out


def check_test(walks: int, alpha: float) -> None:
    """``ArgumentError`` unless alpha is in (0, 1) and ``walks`` can give a p-value below it."""
    if not 0 < alpha < 1:
        raise ArgumentError(f"alpha must be in (0, 1), got {alpha}", "alpha")
    if 1 / (walks + 1) >= alpha:  # the test could never reject
        raise ArgumentError(f"walks must be at least {math.ceil(1 / alpha)} for alpha {alpha:g} (the smallest "
                            f"p-value is 1/(walks + 1)), got {walks}", "walks")


def random_walk_test(epochs, cos_to_init, log_cos_steps, dimension: int, *, walks: int = 999,
                     seed: int = 0, alpha: float = 0.01, substeps: int = 10) -> dict:
    """Compare a run's cosine to its start with random walks taking its own steps.

    ``epochs``/``cos_to_init``: the measured points (epoch 0 may be among them; it says
    nothing); ``log_cos_steps``: per training epoch 1..E, the sum of log cos of its steps' angles;
    ``dimension``: the number of SI parameters. Returns the global envelope test (module
    docstring): ``statistic``, ``p_value``, ``random_walk`` (True: indistinguishable at
    ``alpha``), ``direction`` ('nearer the start' / 'farther from the start': the sign of the
    mean deviation of the run's angle from the walk's), ``mean_deviation_deg``,
    ``max_deviation_deg`` (at ``max_deviation_epoch``), ``effective_dimension`` (1 / mean cos^2
    over the ``mixed_epochs``, where the walk has forgotten its start: a random walk on the full
    sphere gives about ``dimension``, one confined to k dimensions about k; None before the walk
    mixes), the final angles of the run and of the walk, and the
    curves (``angle_deg``, ``walk_mean_deg``, ``walk_low_deg``, ``walk_high_deg``: the walks'
    pointwise 2.5 and 97.5 percentiles)."""
    check_test(walks, alpha)
    epochs = np.asarray(epochs, int)
    observed = np.asarray(cos_to_init, float)
    steps = np.asarray(log_cos_steps, float)
    if len(epochs) != len(observed):
        raise ArgumentError("epochs and cos_to_init must have the same length", "cos_to_init")
    if len(epochs) == 0 or epochs.min() < 0 or epochs.max() > len(steps):
        raise ArgumentError(f"epochs must lie in 0..{len(steps)} (the epochs with step sizes)", "epochs")
    keep = (epochs > 0) & np.isfinite(observed)
    if keep.sum() < 2:
        raise LandscapeError("fewer than two measured epochs after the start: nothing to compare")
    epochs, observed = epochs[keep], observed[keep]
    sims = np.degrees(np.arccos(simulate_cosines(steps, dimension, walks, seed, substeps)[:, epochs]))
    angle = np.degrees(np.arccos(np.clip(observed, -1.0, 1.0)))
    mean, sd = sims.mean(0), sims.std(0, ddof=1) if walks > 1 else np.zeros(len(epochs))
    sd = np.maximum(sd, 1e-9 * np.maximum(1.0, np.abs(mean)))  # a walk that cannot move
    z = (angle - mean) / sd
    statistic = float(np.abs(z).max())
    null = np.abs((sims - mean) / sd).max(1)
    p = float((1 + np.sum(null >= statistic)) / (walks + 1))
    worst = int(np.abs(z).argmax())
    low, high = np.percentile(sims, [2.5, 97.5], axis=0)
    # where the walk has forgotten its start (E[cos] within 1/sqrt(D) of 0), a walk on a
    # k-dimensional sphere has E[cos^2] = 1/k: the run's spread there gives its dimension
    mixed = np.abs(expected_cosine(steps)[epochs]) < 1.0 / math.sqrt(dimension)
    spread = float(np.mean(observed[mixed] ** 2)) if mixed.sum() >= 2 else None
    # ... and forgets its start as a walk does when its mean cosine there is within three
    # standard errors of 0 (the epochs taken as independent: the walk has mixed between them)
    forgets = spread is not None and abs(float(observed[mixed].mean())) <= 3 * math.sqrt(spread / mixed.sum())
    deviation = angle - mean
    return {
        "epochs": epochs, "angle_deg": angle, "walk_mean_deg": mean, "walk_low_deg": low,
        "walk_high_deg": high, "statistic": statistic, "p_value": p, "alpha": alpha,
        "random_walk": bool(p >= alpha), "walks": walks, "dimension": int(dimension),
        "direction": "nearer the start" if deviation.mean() < 0 else "farther from the start",
        "mean_deviation_deg": float(deviation.mean()),
        "max_deviation_deg": float(deviation[worst]), "max_deviation_epoch": int(epochs[worst]),
        "mixed_epochs": int(mixed.sum()),
        "effective_dimension": None if not spread else 1.0 / spread, "forgets_start": bool(forgets),
        "final_angle_deg": float(angle[-1]), "final_walk_angle_deg": float(mean[-1]),
    }


def verdict(test: dict) -> str:
    """The test's answer in words: a random walk; one that forgets its start as a walk does
    but spreads as one on a sphere of ``effective_dimension`` dimensions; or not a walk, with
    the side it keeps to."""
    if test["random_walk"]:
        return "random walk"
    if test["forgets_start"] and test["mixed_epochs"] * 2 >= len(test["epochs"]):
        return f"random walk in ~{test['effective_dimension']:.3g} of {test['dimension']} dimensions"
    return f"not a random walk ({test['direction']} on average)"


def si_dimension(t) -> int:
    """The number of SI parameters of a trajectory's network (the walk's sphere is S^(D-1))."""
    from .models import si_groups
    return int(sum(p.numel() for _, p in si_groups(t.load_model(t.resolve_epoch(None)))))


def run_needs(t) -> str | None:
    """Why the random-walk comparison cannot use a run, or None."""
    from .legacy import stored_config, stored_model_spec
    if stored_model_spec(t.model_spec)["conventional"] or stored_config(t.config)["space"] == "whole":
        return "not trained on a sphere (its norm is free): no random walk on a sphere to compare with"
    if "log_cos_step_sum" not in t.metrics:
        return "no per-epoch step angles (log_cos_step_sum): trained by an older landscape; retrain it"
    return None


def random_walk(inputs, *, walks: int = 999, seed: int = 0, alpha: float = 0.01,
                substeps: int = 10) -> dict:
    """``random_walk_test`` for every usable run of ``inputs`` (a sweep folder and/or
    trajectories), on the checkpoint metrics' cosine to the start. Returns {'rows': [per run],
    'skipped': [...], 'alpha', 'walks'}, rows sorted by rate."""
    from .evaluation import stored_checkpoint_metrics
    from .config import swept_rate
    from .regimes import usable_runs
    check_test(walks, alpha)
    runs, skipped = usable_runs(inputs, need=run_needs)
    rows = []
    for t in runs:
        curves = stored_checkpoint_metrics(t)
        if curves is None or "cos_to_init" not in curves:
            skipped.append({"path": t.path, "reason": "no cosine to the start in its checkpoint metrics: "
                            f"run 'landscape evaluate {t.path}' or train with checkpoint_metrics"})
            continue
        steps = np.asarray(t.metrics["log_cos_step_sum"], float)
        finite = np.isfinite(steps)
        done = int(np.argmin(finite)) if not finite.all() else len(steps)  # up to the first non-finite epoch
        epochs = np.asarray(curves["epoch"], int)
        inside = epochs <= done
        try:
            test = random_walk_test(epochs[inside], np.asarray(curves["cos_to_init"])[inside], steps[:done],
                                    si_dimension(t), walks=walks, seed=seed, alpha=alpha, substeps=substeps)
        except LandscapeError as e:
            skipped.append({"path": t.path, "reason": str(e)})
            continue
        rate_name, rate = swept_rate(t.config)
        rows.append({"path": t.path, "rate_name": rate_name, "rate": rate, **test, "verdict": verdict(test)})
    rows.sort(key=lambda r: (r["rate"], r["path"]))
    return {"rows": rows, "skipped": skipped, "alpha": alpha, "walks": walks}
