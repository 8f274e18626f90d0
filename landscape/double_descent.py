"""Epoch-wise double descent of the test error under label noise (paper Section 5.2, Appendix G),
with a significance test calibrated against each curve's own noise.

A curve y (test error at epochs e) has a double descent when a bump rises above a decreasing
baseline, significantly and wider than ``min_width`` epochs, and falls again:

    null model   y = b(e) + noise,  b = c + sum_k a_k exp(-(e - e_0) / tau_k), a_k >= 0
                 (decreasing and convex, fitted by non-negative least squares; taus span 1 % to
                 130 % of the run), noise AR(1) with lag-1 correlation phi and innovation sd s
    statistic    T = max over centres c and widths w >= min_width (full width at half maximum,
                 epochs) of z = <r, g_cw> / sd(<eps, g_cw>), r the residual of the baseline fit
                 (clipped at 3 robust sd so single-epoch spikes weigh little), g_cw a unit-norm
                 Gaussian bump; sd from the AR(1) covariance
    noise        phi and s from the residuals around a wide moving average (``noise_window``
                 epochs) of the detrended curve, matched to the lag-1 correlation that an AR(1)
                 process shows through the same filter; the surrogates use phi's one-sided 95 %
                 upper bound, because an underestimated phi makes wandering noise look like peaks
    p-value      (1 + #{T* >= T}) / (1 + B) over B AR(1) surrogates around the fitted baseline,
                 each analysed exactly like the data
    verdict      double descent when p < ``alpha``, and on the curve smoothed over ``window``
                 epochs the peak rises at least ``min_height`` above the minimum before it and
                 falls at least ``min_height`` after it; ``None`` (undetermined) when the curve has
                 fewer than ``min_points`` test evaluations

Defaults measured on 400 synthetic curves per family (150 epochs, error 0.6 -> 0.25, noise sd
0.02; seeds 21, 22): a double descent is reported in 0.5 % of white-noise curves, 1.2 % with
AR(1) 0.4, 3.8 % with AR(1) 0.9 (its wander is what a bump looks like; phi is estimated), 1.0 %
with single-epoch spikes, 1.5 % with 2-4-epoch excursions, and in 96 % of curves with a planted
bump of height 0.05 (FWHM 24 epochs). With few test evaluations per bump (--eval-every 10 over
300 epochs: 30 points) the noise is hard to tell from a bump and the power drops (about 60 %
for a bump of height 0.08 under noise 0.01). tests/test_double_descent.py re-measures the rates.

Example:
    >>> import numpy as np
    >>> e = np.arange(1, 151); rng = np.random.default_rng(0)
    >>> y = 0.25 + 0.35 * np.exp(-e / 12) + 0.05 * np.exp(-0.5 * ((e - 70) / 10) ** 2)
    >>> peak = detect_peak(e, y + 0.02 * rng.standard_normal(150))
    >>> peak["double_descent"], abs(peak["peak_epoch"] - 70) <= 8
    (True, True)
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .curves import baseline_basis, fit_baseline
from .errors import LandscapeError
from .measure import SUBSETS


@dataclass
class PeakCriteria:
    alpha: float = 0.01          # significance level of the bump test
    min_width: float = 10.0      # epochs, full width at half maximum of the bump
    min_height: float = 0.01     # test error, rise before and fall after the smoothed peak
    window: float = 5.0          # epochs, moving average for the descriptive peak
    noise_window: float = 21.0   # epochs, wide moving average for the noise estimate
    surrogates: int = 200
    seed: int = 0
    min_points: int = 12


# --- building blocks (cached per epoch grid: every run of a sweep shares it) ----------------

def moving_average_matrix(epochs, window: float) -> np.ndarray:
    """Centred moving average over ``window`` epochs whatever the spacing of ``epochs``: points
    less than window/2 epochs away weigh 1, points exactly window/2 away weigh 1/2 (so an even
    window is exactly that wide), rows normalised; a window shorter than the spacing keeps the
    point itself."""
    e = np.asarray(epochs, float)
    d = np.abs(e[:, None] - e[None, :])
    half = window / 2
    w = np.where(d < half - 1e-9, 1.0, np.where(np.abs(d - half) <= 1e-9, 0.5, 0.0))
    np.fill_diagonal(w, 1.0)
    return w / w.sum(1, keepdims=True)


def ar1_covariance(n: int, phi: float) -> np.ndarray:
    """Covariance of a stationary AR(1) process with unit innovations: phi^|i-j| / (1 - phi^2)."""
    i = np.arange(n)
    return phi ** np.abs(i[:, None] - i[None, :]) / (1 - phi ** 2)


def ar1_noise(rng, phi: float, innovation_sd: float, shape) -> np.ndarray:
    """Stationary AR(1) samples, rows independent."""
    rows, n = shape
    x = np.empty(shape)
    eps = rng.standard_normal(shape) * innovation_sd
    x[:, 0] = eps[:, 0] / math.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


def _robust_clip(r: np.ndarray) -> np.ndarray:
    med = np.median(r, axis=-1, keepdims=True)
    sd = 1.4826 * np.median(np.abs(r - med), axis=-1, keepdims=True)
    return np.clip(r, -3 * sd, 3 * sd)


@lru_cache(maxsize=16)
def _grid(epochs: tuple, noise_window: float, min_width: float):
    """Everything that depends only on the epoch grid: the moving-average filter, the expected
    lag-1 correlation of AR(1) residuals through it for phi on a grid, the bump templates."""
    e = np.asarray(epochs, float)
    n = len(e)
    basis = baseline_basis(e)
    spacing = float(np.median(np.diff(e)))
    # at least 7 points: through a shorter average, AR(1) residuals look alike whatever phi
    resid = np.eye(n) - moving_average_matrix(e, max(noise_window, 7 * spacing))
    phis = np.linspace(0.0, 0.98, 50)
    expected_r1, unit_var = [], []
    for phi in phis:
        c = resid @ ar1_covariance(n, phi) @ resid.T
        expected_r1.append(np.trace(c, 1) / np.trace(c))
        unit_var.append(np.trace(c))
    widths, w = [], max(min_width, 2 * spacing)
    while w <= (e[-1] - e[0]) / 2:
        widths.append(w)
        w *= math.sqrt(2)
    templates, meta = [], []
    for w in widths:
        sd = w / (2 * math.sqrt(2 * math.log(2)))
        for c in e:
            if c - e[0] >= w / 2 and e[-1] - c >= w / 2:  # the whole bump lies inside the run
                g = np.exp(-0.5 * ((e - c) / sd) ** 2)
                templates.append(g / np.linalg.norm(g))
                meta.append((c, w, np.linalg.norm(g)))
    templates = np.array(templates).T if templates else np.zeros((n, 0))
    return basis, resid, phis, np.array(expected_r1), np.array(unit_var), templates, np.array(meta)


def estimate_noise(epochs, values, noise_window: float = 21.0, upper_z: float = 1.645) -> dict:
    """AR(1) noise of a curve from its residuals around a ``noise_window``-epoch moving average
    of the baseline-detrended curve: phi matched to the lag-1 correlation AR(1) residuals show
    through that filter; ``phi_upper`` its one-sided 95 % bound (sampling sd of the correlation
    simulated at phi); ``marginal_sd`` the noise sd at phi; ``surrogate_innovation_sd`` the AR(1)
    innovation sd that matches the residual variance at ``phi_upper`` (what the surrogates use)."""
    e = tuple(float(x) for x in epochs)
    basis, resid, phis, expected_r1, unit_var, _, _ = _grid(e, float(noise_window), 1.0)
    y = np.asarray(values, float)
    r = _robust_clip(resid @ (y - fit_baseline(y, basis)))
    denom = float((r * r).sum())
    r1 = float((r[:-1] * r[1:]).sum() / denom) if denom > 0 else 0.0
    phi = float(np.interp(r1, expected_r1, phis))
    sims = _robust_clip(ar1_noise(np.random.default_rng(0), phi, 1.0, (200, len(y))) @ resid.T)
    sim_r1 = (sims[:, :-1] * sims[:, 1:]).sum(1) / (sims * sims).sum(1)
    upper = float(np.interp(r1 + upper_z * sim_r1.std(), expected_r1, phis))
    def innovation_sd(p):
        return math.sqrt(denom / float(np.interp(p, phis, unit_var)))
    return {"phi": phi, "phi_upper": upper, "marginal_sd": innovation_sd(phi) / math.sqrt(1 - phi ** 2),
            "surrogate_innovation_sd": innovation_sd(upper)}


def _scan(Y, basis, templates, template_sd):
    r = _robust_clip(np.array([y - fit_baseline(y, basis) for y in np.atleast_2d(Y)]))
    return (r @ templates) / template_sd


def rise_and_fall(smoothed, index: int) -> tuple[float, int, float, int]:
    """Rise of ``smoothed[index]`` above the minimum before it and fall to the minimum after
    it, with those minima's indices."""
    before = int(np.argmin(smoothed[:index + 1]))
    after = index + int(np.argmin(smoothed[index:]))
    return (float(smoothed[index] - smoothed[before]), before,
            float(smoothed[index] - smoothed[after]), after)


def detect_peak(epochs, values, criteria: PeakCriteria | None = None) -> dict:
    """The double-descent test of the module docstring on one curve. Returns the verdict
    (``double_descent``: True, False or None = undetermined, with ``reason``), the p-value, the
    bump (``peak_epoch``, ``peak_width`` FWHM in epochs, ``amplitude`` over the baseline), the
    descriptive ``height`` / ``second_descent`` on the smoothed curve, and the noise estimate."""
    c = criteria or PeakCriteria()
    e = np.asarray(epochs, float)
    y = np.asarray(values, float)
    ok = np.isfinite(y)
    e, y = e[ok], y[ok]
    out = {"double_descent": None, "p_value": None, "points": int(len(y))}
    if len(y) < c.min_points:
        return {**out, "reason": f"{len(y)} test evaluations, needs at least {c.min_points}"}
    basis, _, _, _, _, templates, meta = _grid(tuple(e), float(c.noise_window), float(c.min_width))
    if templates.shape[1] == 0:
        return {**out, "reason": f"the run spans {e[-1] - e[0]:g} epochs: no room for a bump "
                f"{c.min_width:g} epochs wide (min_width)"}
    # a bump as wide as the noise window would pass for correlated noise: measure the noise
    # with the most likely bump (white-noise scan, positive amplitude) taken out
    first = _scan(y, basis, templates, 1.0)[0]
    k = int(np.argmax(first))
    bump = max(first[k], 0.0) * templates[:, k]
    noise = estimate_noise(e, y - bump, c.noise_window)
    n = len(y)
    cov = ar1_covariance(n, noise["phi_upper"]) * noise["surrogate_innovation_sd"] ** 2
    template_sd = np.sqrt(np.maximum(((cov @ templates) * templates).sum(0), 1e-300))
    z = _scan(y, basis, templates, template_sd)[0]
    best = int(np.argmax(z))
    baseline = fit_baseline(y, basis)
    rng = np.random.default_rng(c.seed)
    surrogates = baseline + ar1_noise(rng, noise["phi_upper"], noise["surrogate_innovation_sd"], (c.surrogates, n))
    t_null = _scan(surrogates, basis, templates, template_sd).max(1)
    p = float((1 + np.sum(t_null >= z[best])) / (1 + c.surrogates))
    centre, width, norm = meta[best]
    smoothed = moving_average_matrix(e, c.window) @ y
    near = np.flatnonzero(np.abs(e - centre) <= width / 2)
    peak = int(near[np.argmax(smoothed[near])])
    height, before, fall, after = rise_and_fall(smoothed, peak)
    # evidence only (too noisy to decide on): epochs where the smoothed excess over the
    # baseline stays above half the fitted bump's amplitude
    excess = smoothed - baseline
    amplitude = float(z[best] * template_sd[best] / norm)
    half = amplitude / 2
    lo, hi = peak, peak
    while lo > 0 and excess[lo - 1] >= half:
        lo -= 1
    while hi < n - 1 and excess[hi + 1] >= half:
        hi += 1
    observed_width = float(e[hi] - e[lo] + np.median(np.diff(e)))
    out.update({"p_value": p, "z": float(z[best]), "peak_epoch": float(e[peak]),
                "bump_centre_epoch": float(centre), "peak_width": float(width),
                "amplitude": amplitude, "observed_width": observed_width,
                "peak_test_error": float(smoothed[peak]), "height": height,
                "preceding_min_epoch": float(e[before]), "preceding_min": float(smoothed[before]),
                "second_descent": fall, "following_min_epoch": float(e[after]),
                "noise": noise, "_smoothed": smoothed, "_baseline": baseline})
    reasons = []
    if p >= c.alpha:
        reasons.append(f"no significant bump (p = {p:.3g} >= alpha {c.alpha:g})")
    if height < c.min_height:
        reasons.append(f"rises {height:.4f} above the minimum before it (< min_height {c.min_height:g})")
    if fall < c.min_height:
        reasons.append(f"falls {fall:.4f} after it (< min_height {c.min_height:g})")
    out["double_descent"] = not reasons
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


def highest_peak(epochs, values, window: float = 5.0) -> float | None:
    """Epoch of the highest point of the smoothed curve that rises above an earlier minimum and
    falls after it (the sharpness peak of Fig. 1 / Appendix G); None for a monotone curve."""
    e = np.asarray(epochs, float)
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    e, v = e[ok], v[ok]
    if len(v) < 3:
        return None
    s = moving_average_matrix(e, window) @ v
    best, best_epoch = 0.0, None
    for i in range(1, len(s) - 1):
        rise, _, fall, _ = rise_and_fall(s, i)
        if min(rise, fall) > 0 and s[i] > best:
            best, best_epoch = s[i], float(e[i])
    return best_epoch


def alignment(rows: list[dict], max_exact: int = 7, draws: int = 20000, seed: int = 0) -> dict:
    """How close the test-error peaks are to the sharpness peaks, across runs with both: the
    mean |epochs apart|, and a permutation p-value (the share of pairings of the runs' peaks,
    all of them for up to ``max_exact`` runs, else ``draws`` random ones, at least as close as
    the real one). Needs 3 runs with both peaks."""
    pairs = [(r["peak_epoch"], r["egn_peak_epoch"]) for r in rows
             if r.get("double_descent") and r.get("egn_peak_epoch") is not None]
    out = {"runs": len(pairs), "mean_epochs_apart": None, "permutation_p": None}
    if not pairs:
        return {**out, "reason": "no run has both a double descent and a sharpness peak"}
    a, b = np.array(pairs, float).T
    observed = float(np.mean(np.abs(a - b)))
    out["mean_epochs_apart"] = observed
    if len(pairs) < 3:
        return {**out, "reason": f"{len(pairs)} runs with both peaks: a permutation test needs 3"}
    if len(pairs) <= max_exact:
        perms = np.array(list(itertools.permutations(range(len(pairs)))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.array([rng.permutation(len(pairs)) for _ in range(draws)])
    stats_ = np.abs(a[None, :] - b[perms]).mean(1)
    out["permutation_p"] = float(np.mean(stats_ <= observed + 1e-9))
    return out


# --- runs -------------------------------------------------------------------------------------

def qualification(rows: list[dict], regime_rows: list[dict]) -> None:
    """Adds ``regime`` and ``qualifies`` to each row: Appendix G's double descent belongs to
    regime 1 and to the runs at the boundary of regimes 1 and 2 (a regime-2 run whose determined
    neighbour in ELR is regime 1); None when the run's regime is undetermined."""
    by_path = {r["path"]: r for r in regime_rows}
    determined = [r for r in regime_rows if r["regime"] in (1, 2, 3)]
    transition = set()
    for a, b in zip(determined, determined[1:]):
        if {a["regime"], b["regime"]} == {1, 2}:
            transition |= {a["path"], b["path"]}
    for row in rows:
        reg = by_path.get(row["path"])
        row["regime"] = reg["regime"] if reg else None
        row["regime_name"] = reg["name"] if reg else "undetermined"
        if row["regime"] is None:
            row["qualifies"], row["qualification"] = None, "regime undetermined"
        elif row["path"] in transition:
            row["qualifies"], row["qualification"] = True, "transition run (between regimes 1 and 2)"
        elif row["regime"] == 1:
            row["qualifies"], row["qualification"] = True, "regime 1"
        else:
            row["qualifies"], row["qualification"] = False, f"regime {row['regime']}, not at a transition"


def double_descent(paths, criteria: PeakCriteria | None = None, skipped: list | None = None,
                   metrics: str = "auto", progress: bool | None = None) -> dict:
    """The test on every usable label-noise run (curves of ``metrics``: 'epoch', 'checkpoint' or
    'auto'), each row with its regime, the train error on the noisy and on the clean examples
    (``train_error_noisy``/``_clean`` over ``epochs``, when the curves have them) and whether
    it qualifies, plus the alignment of the test-error and sharpness (effective gradient norm)
    peaks across runs. Runs it cannot use are appended to ``skipped`` (with why) when a list is
    given."""
    from .regimes import pick_source, regimes, usable_runs
    from .config import swept_rate
    c = criteria or PeakCriteria()

    def needs_noise(t):
        if float(t.config.get("label_noise", 0.0)) <= 0:
            return ("trained without label noise; epoch-wise double descent needs label_noise "
                    "P > 0 runs")
    runs, left = usable_runs(paths, min_epochs=5, nonfinite_ok=False, need=needs_noise)
    source, kept, more = pick_source(runs, metrics, min_points=5)
    if skipped is not None:
        skipped.extend(left + more)
    from .progress import Progress
    bar = Progress(len(kept), "double-descent", "run", progress)
    rows = []
    for t, m in kept:
        ok = ~np.isnan(m["test_accuracy"])
        epochs, err = m["epoch"][ok], 1 - m["test_accuracy"][ok]
        peak = detect_peak(epochs, err, c)
        rate_name, rate = swept_rate(t.config)
        rows.append({"path": t.path, "rate_name": rate_name, "rate": rate, rate_name.lower(): rate,
                     "label_noise": float(t.config["label_noise"]), "metrics": source, **peak,
                     "egn_peak_epoch": highest_peak(m["epoch"], m["effective_grad_norm"], c.window),
                     "test_error_epochs": epochs, "test_error": err, "epochs": m["epoch"],
                     "effective_grad_norm": m["effective_grad_norm"]})
        r = rows[-1]
        for subset in SUBSETS:  # the noisy and the clean examples apart (checkpoint metrics)
            if f"train_accuracy_{subset}" in m:
                r[f"train_error_{subset}"] = 1 - np.asarray(m[f"train_accuracy_{subset}"], float)
        r["epochs_between_peaks"] = (abs(r["peak_epoch"] - r["egn_peak_epoch"])
                                     if r["double_descent"] and r["egn_peak_epoch"] is not None else None)
        bar.update()
    bar.close()
    rows.sort(key=lambda r: r["rate"])
    try:
        regime_rows = regimes([r["path"] for r in rows], metrics=source)["rows"]
    except LandscapeError:
        regime_rows = []
    qualification(rows, regime_rows)
    return {"rows": rows, "criteria": asdict(c), "metrics": source, "alignment": alignment(rows)}


