"""Epoch-wise double descent of the test error under label noise (paper Section 5.2, Appendix G):
a rise and a fall, each significant, tested against every curve without a peak.

A curve y (test error at its test evaluations i = 1..n) has a double descent when, for some
peak window P of w consecutive evaluations, y rises into P from an earlier window and falls
from P to a later one, both more than noise allows:

    location     L_w(j) = 20 %-trimmed mean of y over the window starting at j (at least one
                 point trimmed each side, so a one-epoch spike barely moves it); widths w from
                 ``min_width`` / 2 epochs, growing by 1.4x, up to a third of the run
    rise, fall   R_w(p) = L_w(p) - min_{a <= p - w} L_w(a),  F_w(p) = L_w(p) - min_{c >= p + w} L_w(c)
    statistic    T = max over w, p of min(R_w(p), F_w(p)) / (sd * s_w(phi)), s_w the sd of the
                 difference of two distant window locations under unit AR(1) noise
    null         every curve without a peak: y = f + noise, f decreasing then increasing around
                 any turning point m (monotone decreasing, plateaus, shelves, rises that stay
                 up, U-shapes: m anywhere), noise AR(1)
    calibration  for such an f, at every window either the rise or the fall has a signal
                 <= 0 (a window straddling m lies below the earlier windows or below the later
                 ones), so min(R, F) <= V(m) := the larger of the noise-only rise contrasts of
                 windows starting at or before m and the noise-only fall contrasts of windows
                 ending at or after m. The p-value is the least favourable one,
                 p = max_m (1 + #{V*(m) >= T}) / (1 + B), over B AR(1) noise curves each
                 studentised by its own noise estimate, exactly as the data are: valid for
                 every null curve at once, conservative for most of them
    noise        phi and sd from the residuals (clipped at 3 robust sd) around a local-quadratic
                 smoother over ``noise_window`` epochs, phi matched to the lag-1 correlation AR(1)
                 residuals show through that filter; the null is simulated at phi rounded up
                 to a grid step of 0.05
    verdict      double descent when p < ``alpha``, the rise and the fall of the best window
                 are each at least ``min_height``, and the curve descended into the window
                 before the rise by at least the rise (a first descent: a run that wanders
                 near one level, as one guessing at random does, has none); ``None``
                 (undetermined) when the curve has fewer than ``min_points`` test evaluations

Measured (``benchmarks/double_descent_calibration.py``, README): false peaks at most alpha on
every no-peak family at 60-300 epochs under white and AR(1) noise; the power depends on how
many evaluations the bump spans and on the noise's autocorrelation (a bump of prominence 0.05
over 19 % of the run, white noise sd 0.02: about 40 % at 60 epochs, 65 % at 100, 90 % at 150,
100 % at 300). A peak that only interrupts a still-falling curve rises less than its height.

Example:
    >>> import numpy as np
    >>> e = np.arange(1, 201); rng = np.random.default_rng(0)
    >>> y = 0.25 + 0.35 * np.exp(-e / 12) + 0.05 * np.exp(-0.5 * ((e - 100) / 12) ** 2)
    >>> peak = detect_peak(e, y + 0.02 * rng.standard_normal(200))
    >>> peak["double_descent"], abs(peak["peak_epoch"] - 100) <= 10
    (True, True)
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import LandscapeError
from .measure import SUBSETS


@dataclass
class PeakCriteria:
    alpha: float = 0.01          # significance level of the rise-and-fall test
    min_width: float = 10.0      # epochs: the narrowest bump counted; peak windows span half of it
    min_height: float = 0.01     # test error, rise before and fall after the peak window
    window: float = 5.0          # epochs, moving average of the descriptive (plotted) curve
    noise_window: float = 31.0   # epochs, local-quadratic smoother the noise is measured around
    surrogates: int = 2000       # AR(1) noise curves of the null
    seed: int = 0
    min_points: int = 12


PHI_GRID = np.round(np.arange(0.0, 0.951, 0.05), 2)
TRIM = 0.2


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


def local_quadratic_matrix(epochs, window: float) -> np.ndarray:
    """Smoother whose row i fits a quadratic in epoch to the points within ``window``/2 epochs
    of epoch i (at least the 4 nearest) and evaluates it there: it follows trends, bumps and
    curvature wider than the window, so its residuals are mostly noise."""
    e = np.asarray(epochs, float)
    s = np.zeros((len(e), len(e)))
    for i in range(len(e)):
        d = e - e[i]
        near = np.flatnonzero(np.abs(d) <= window / 2 + 1e-9)
        if len(near) < 4:
            near = np.argsort(np.abs(d), kind="stable")[:4]
        x = np.column_stack([np.ones(len(near)), d[near], d[near] ** 2])
        s[i, near] = np.linalg.pinv(x)[0]
    return s


def ar1_noise(rng, phi: float, innovation_sd: float, shape) -> np.ndarray:
    """Stationary AR(1) samples, rows independent."""
    rows, n = shape
    x = np.empty(shape)
    eps = rng.standard_normal(shape) * innovation_sd
    x[:, 0] = eps[:, 0] / math.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


def _unit_ar1(rng, phi: float, shape) -> np.ndarray:
    return ar1_noise(rng, phi, math.sqrt(1 - phi ** 2), shape)  # marginal sd 1


def _robust_clip(r: np.ndarray) -> np.ndarray:
    med = np.median(r, axis=-1, keepdims=True)
    sd = 1.4826 * np.median(np.abs(r - med), axis=-1, keepdims=True)
    return np.clip(r, -3 * sd, 3 * sd)


@lru_cache(maxsize=16)
def _noise_grid(epochs: tuple, noise_window: float):
    """The residual filter of the noise estimate and, for phi on PHI_GRID, the lag-1
    correlation, its sampling sd and the residual variance that unit AR(1) noise shows
    through it (simulated, fixed seed)."""
    e = np.asarray(epochs, float)
    resid = np.eye(len(e)) - local_quadratic_matrix(e, max(noise_window, 7 * float(np.median(np.diff(e)))))
    r1, r1_sd, var = [], [], []
    rng = np.random.default_rng(0)
    for phi in PHI_GRID:
        r = _robust_clip(_unit_ar1(rng, phi, (400, len(e))) @ resid.T)
        c = (r[:, :-1] * r[:, 1:]).sum(1) / (r * r).sum(1)
        r1.append(c.mean())
        r1_sd.append(c.std())
        var.append((r * r).mean())
    return resid, np.array(r1), np.array(r1_sd), np.array(var)


def _noise_rows(epochs, rows: np.ndarray, noise_window: float):
    """(lag-1 correlation, phi, marginal sd) of each row of ``rows``."""
    resid, r1_grid, _, var = _noise_grid(tuple(float(x) for x in epochs), float(noise_window))
    r = _robust_clip(np.atleast_2d(rows) @ resid.T)
    denom = np.maximum((r * r).sum(1), 1e-300)
    r1 = (r[:, :-1] * r[:, 1:]).sum(1) / denom
    phi = np.interp(r1, r1_grid, PHI_GRID)
    return r1, phi, np.sqrt((r * r).mean(1) / np.interp(phi, PHI_GRID, var))


def estimate_noise(epochs, values, noise_window: float = 31.0, upper_z: float = 1.645) -> dict:
    """AR(1) noise of a curve from its residuals around a local-quadratic smoother over
    ``noise_window`` epochs: ``phi`` matched to the lag-1 correlation AR(1) residuals show
    through that filter, ``phi_upper`` its one-sided 95 % bound, ``marginal_sd`` the noise sd."""
    r1, phi, sd = (float(v[0]) for v in _noise_rows(epochs, np.asarray(values, float), noise_window))
    _, r1_grid, r1_sd, _ = _noise_grid(tuple(float(x) for x in epochs), float(noise_window))
    upper = float(np.interp(r1 + upper_z * np.interp(phi, PHI_GRID, r1_sd), r1_grid, PHI_GRID))
    return {"phi": phi, "phi_upper": upper, "marginal_sd": sd}


def peak_widths(points: int, spacing: float, min_width: float) -> tuple:
    """Peak-window widths in test evaluations: from half of ``min_width`` epochs (at least 3
    points, so one can be trimmed each side) growing by 1.4x while three windows fit the run."""
    widths, w = [], max(3, math.ceil(min_width / 2 / spacing - 1e-9))
    while 3 * w <= points:
        widths.append(w)
        w = max(w + 1, int(round(w * 1.4)))
    return tuple(widths)


def _trimmed_means(y: np.ndarray, w: int) -> np.ndarray:
    """Location of every window of w consecutive points (last axis): the mean after trimming
    20 % (at least one point) at each end."""
    k = max(1, int(TRIM * w))
    windows = np.sort(sliding_window_view(y, w, axis=-1), axis=-1)
    return windows[..., k:w - k].mean(-1)


def rise_and_fall_contrasts(y: np.ndarray, w: int):
    """(L, R, F): window locations, the rise into each window from the lowest window ending
    before it and the fall from it to the lowest window starting after it (-inf where there is
    none)."""
    loc = _trimmed_means(y, w)
    m = loc.shape[-1]
    lowest_before = np.minimum.accumulate(loc, axis=-1)
    lowest_after = np.minimum.accumulate(loc[..., ::-1], axis=-1)[..., ::-1]
    rise = np.full(loc.shape, -np.inf)
    fall = np.full(loc.shape, -np.inf)
    rise[..., w:] = loc[..., w:] - lowest_before[..., :m - w]
    fall[..., :m - w] = loc[..., :m - w] - lowest_after[..., w:]
    return loc, rise, fall


@lru_cache(maxsize=256)
def _contrast_sd(points: int, w: int) -> np.ndarray:
    """s_w(phi) on PHI_GRID: sd of the difference of the first and the last window location of
    unit-sd AR(1) noise (simulated, fixed seed)."""
    out = []
    for phi in PHI_GRID:
        x = _unit_ar1(np.random.default_rng(1), phi, (4000, points))
        out.append(np.std(_trimmed_means(x[:, :w], w)[:, 0] - _trimmed_means(x[:, -w:], w)[:, 0]))
    return np.array(out)


def turning_point_bound(noise: np.ndarray, widths: tuple, scales) -> np.ndarray:
    """V(m) of the module docstring for each row of ``noise`` (rows, n) and each turning point
    m: the largest rise contrast of a window starting at or before m and fall contrast of one
    ending at or after m, each divided by ``scales[k]`` (rows,) for ``widths[k]``. For every
    curve f that falls then rises around m, the statistic of f + noise (same scales) is at most
    V(m)."""
    rows_, n = noise.shape
    v = np.full((rows_, n), -np.inf)
    for w, scale in zip(widths, scales):
        scale = np.broadcast_to(np.asarray(scale, float), (rows_,))[:, None]
        for rows in np.array_split(np.arange(rows_), max(1, rows_ * n * w // 20_000_000)):
            _, rise, fall = rise_and_fall_contrasts(noise[rows], w)
            rise, fall = rise / scale[rows], fall / scale[rows]
            m = rise.shape[1]
            by_start = np.maximum.accumulate(rise, axis=1)          # windows starting <= m
            v[rows, :m] = np.maximum(v[rows, :m], by_start)
            v[rows, m:] = np.maximum(v[rows, m:], by_start[:, -1:])
            by_end = np.full((len(rows), n), -np.inf)
            by_end[:, w - 1:] = fall                                  # window j ends at j + w - 1
            v[rows] = np.maximum(v[rows], np.maximum.accumulate(by_end[:, ::-1], axis=1)[:, ::-1])
    return v


def peak_statistic(y: np.ndarray, widths: tuple, scales) -> tuple:
    """(T, w, j, L): the largest min(rise, fall) / scale over widths and peak windows (raw,
    before the noise sd), the width and start of the window that attains it, and the window
    locations L at that width."""
    best = (-np.inf, widths[0], 0, None)
    for w, scale in zip(widths, scales):
        loc, rise, fall = rise_and_fall_contrasts(y, w)
        z = np.minimum(rise, fall) / scale
        j = int(np.argmax(z))
        if z[j] > best[0] or best[3] is None:
            best = (float(z[j]), w, j, loc)
    return best


@lru_cache(maxsize=32)
def _least_favourable_null(epochs: tuple, widths: tuple, phi: float, noise_window: float,
                           surrogates: int, seed: int) -> np.ndarray:
    """V*(m), shape (surrogates, n): ``turning_point_bound`` of AR(1) noise curves, each
    studentised by its own noise estimate as the data are."""
    n = len(epochs)
    x = _unit_ar1(np.random.default_rng(seed), phi, (surrogates, n))
    _, phis, sds = _noise_rows(epochs, x, noise_window)
    return turning_point_bound(x, widths, [np.interp(phis, PHI_GRID, _contrast_sd(n, w)) * sds for w in widths])


def detect_peak(epochs, values, criteria: PeakCriteria | None = None) -> dict:
    """The rise-and-fall test of the module docstring on one curve. Returns the verdict
    (``double_descent``: True, False or None = undetermined, with ``reason``), the p-value and
    statistic ``z``, the peak window (``peak_epoch``: its highest smoothed point,
    ``bump_centre_epoch``, ``peak_width`` in epochs), the ``height`` it rises from the lowest
    window before it (``preceding_min_epoch``), the ``first_descent`` into that window from
    the highest before it, the ``second_descent`` to the lowest window after the peak
    (``following_min_epoch``), and the noise estimate."""
    c = criteria or PeakCriteria()
    e = np.asarray(epochs, float)
    y = np.asarray(values, float)
    ok = np.isfinite(y)
    e, y = e[ok], y[ok]
    out = {"double_descent": None, "p_value": None, "points": int(len(y))}
    if len(y) < c.min_points:
        return {**out, "reason": f"{len(y)} test evaluations, needs at least {c.min_points}"}
    n = len(y)
    spacing = float(np.median(np.diff(e)))
    widths = peak_widths(n, spacing, c.min_width)
    if not widths:
        return {**out, "reason": f"{n} test evaluations leave no room for three windows of "
                f"{c.min_width / 2:g} epochs (half of min_width)"}
    noise = estimate_noise(e, y, c.noise_window)
    phi, sd = noise["phi"], max(noise["marginal_sd"], 1e-12)
    t, w, j, loc = peak_statistic(y, widths, [float(np.interp(phi, PHI_GRID, _contrast_sd(n, w))) * sd for w in widths])
    null_phi = float(PHI_GRID[min(np.searchsorted(PHI_GRID, phi - 1e-9), len(PHI_GRID) - 1)])
    v = _least_favourable_null(tuple(e), widths, null_phi, float(c.noise_window), int(c.surrogates), int(c.seed))
    p = float((1 + (v >= t).sum(0).max()) / (1 + c.surrogates))
    before = int(np.argmin(loc[:j - w + 1])) if j >= w else j
    after = j + w + int(np.argmin(loc[j + w:])) if j + w < len(loc) else j
    height = float(loc[j] - loc[before])
    fall = float(loc[j] - loc[after])
    first = float(loc[:before + 1].max() - loc[before])  # the descent into the lowest window before
    smoothed = moving_average_matrix(e, c.window) @ y
    peak = j + int(np.argmax(smoothed[j:j + w]))
    centre = lambda i: float(e[i:i + w].mean())  # noqa: E731
    out.update({"p_value": p, "z": t, "peak_epoch": float(e[peak]), "bump_centre_epoch": centre(j),
                "peak_width": float(e[j + w - 1] - e[j] + spacing), "peak_test_error": float(loc[j]),
                "height": height, "first_descent": first, "preceding_min_epoch": centre(before), "preceding_min": float(loc[before]),
                "second_descent": fall, "following_min_epoch": centre(after), "following_min": float(loc[after]),
                "noise": {**noise, "null_phi": null_phi}, "_smoothed": smoothed})
    reasons = []
    if p >= c.alpha:
        reasons.append(f"no significant rise and fall (p = {p:.3g} >= alpha {c.alpha:g})")
    if height < c.min_height:
        reasons.append(f"rises {height:.4f} into its peak window (< min_height {c.min_height:g})")
    if fall < c.min_height:
        reasons.append(f"falls {fall:.4f} after it (< min_height {c.min_height:g})")
    if first < height:  # a wander near one level (a run guessing at random) is no double descent
        reasons.append(f"descends {first:.4f} before the rise of {height:.4f}: no first descent")
    out["double_descent"] = not reasons
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


def rise_and_fall(smoothed, index: int) -> tuple[float, int, float, int]:
    """Rise of ``smoothed[index]`` above the minimum before it and fall to the minimum after
    it, with those minima's indices."""
    before = int(np.argmin(smoothed[:index + 1]))
    after = index + int(np.argmin(smoothed[index:]))
    return (float(smoothed[index] - smoothed[before]), before,
            float(smoothed[index] - smoothed[after]), after)


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


