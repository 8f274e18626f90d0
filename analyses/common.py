"""Shared helpers of the analysis scripts: where runs and outputs live, matched-loss reading,
trends across ELRs judged over seeds."""
import glob
import os

import numpy as np
from scipy.stats import spearmanr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("ANALYSES_OUT", os.path.join(ROOT, "analyses", "out"))
RUNS = os.environ.get("RUNS", os.path.join(ROOT, "runs"))
# the recipe's runs (train/recipe.env): one main sweep per seed, RECIPE/sweep-seedS
RECIPE = os.environ.get("RECIPE", os.path.join(RUNS, "recipe"))
SWEEP = [os.path.join(RECIPE, "sweep-seed0")]
ALPHA = 0.01  # significance level of every trend claim across ELRs


def seed_sweeps(args=()) -> list:
    """The main sweep of every seed: the folders given, else RECIPE/sweep-seed*."""
    folders = list(args) or sorted(glob.glob(os.path.join(RECIPE, "sweep-seed*")))
    if not folders:
        raise SystemExit(f"no sweep found: run train/sweep_mnist1d.sh first (looked in {RECIPE})")
    return folders


def regimes_by_seed(sweeps, metrics="auto") -> dict:
    """{seed folder's name: `landscape regimes` of that folder alone} (the same ELR in two seeds
    is no duplicate)."""
    from landscape.regimes import regimes
    return {os.path.basename(s.rstrip("/")): regimes([s], metrics=metrics) for s in sweeps}


def seed_band(ax, points_by_seed: dict) -> None:
    """Mean over seeds and the min-max band against ELR, from {seed: [(elr, value), ...]}
    (None values skipped); nothing is drawn without a finite value (an all-NaN band would leave
    the axis without limits)."""
    elrs = sorted({e for pts in points_by_seed.values() for e, _ in pts})
    grid = np.full((len(points_by_seed), len(elrs)), np.nan)
    for i, pts in enumerate(points_by_seed.values()):
        for e, v in pts:
            if v is not None:
                grid[i, elrs.index(e)] = v
    if not np.isfinite(grid).any():
        return
    with np.errstate(all="ignore"):
        ax.fill_between(elrs, np.nanmin(grid, 0), np.nanmax(grid, 0), color="k", alpha=0.2, lw=0,
                        label=f"min-max over {len(points_by_seed)} seeds")
        ax.plot(elrs, np.nanmean(grid, 0), "k.-", label="mean over seeds")


def spearman_test(x, y) -> tuple[float, float]:
    """Spearman's rho and its two-sided permutation p-value: exact (every ordering) for up to 8
    points, else 20000 seeded random orderings. The asymptotic p of scipy's spearmanr is far too
    small for a handful of runs (rho = 1 over 5 runs gives 1e-24; the exact p is 2/120)."""
    import itertools
    from scipy.stats import rankdata
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(spearmanr(x, y).statistic)
    if not np.isfinite(rho):
        return rho, float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())
    if len(x) <= 8:
        orders = np.array(list(itertools.permutations(range(len(x)))))
    else:
        rng = np.random.default_rng(0)
        orders = np.array([rng.permutation(len(x)) for _ in range(20000)])
    null = ry[orders] @ rx  # Spearman's rho of every reordering of y against x
    hits = int(np.sum(np.abs(null) >= abs(rho) - 1e-12))
    # exact: the share of orderings; random: (hits + 1) / (draws + 1), never 0
    pvalue = hits / len(orders) if len(x) <= 8 else (hits + 1) / (len(orders) + 1)
    return rho, pvalue


def trend_over_seeds(points_by_seed: dict, sign: int, what: str) -> dict:
    """A claimed monotone trend across ELRs, judged over seeds: Spearman's rho in each seed, and
    the pooled test -- Spearman over all (ELR, value) points of every seed, its two-sided
    p-value. Confirmed when the pooled rho has the claimed ``sign`` with p < ALPHA and every seed
    with at least 3 points agrees in sign. ``points_by_seed``: {seed: [(elr, value), ...]}."""
    per_seed = {s: rank_correlation([p[0] for p in pts], [p[1] for p in pts])
                for s, pts in points_by_seed.items() if len(pts) >= 3}
    pooled = [p for pts in points_by_seed.values() for p in pts]
    if len(pooled) >= 4:
        rho, pvalue = spearman_test([p[0] for p in pooled], [p[1] for p in pooled])
    else:
        rho, pvalue = float("nan"), float("nan")
    agree = bool(per_seed) and all(np.sign(r) == sign for r in per_seed.values())
    # too few runs to test: neither yes nor no
    ok = None if len(pooled) < 5 or not per_seed else bool(np.sign(rho) == sign and pvalue < ALPHA and agree)
    text = (f"{what}: pooled Spearman {rho:.2f} (p = {pvalue:.2g}, {len(pooled)} runs over "
            f"{len(points_by_seed)} seeds); per seed " +
            ", ".join(f"{s}: {r:.2f}" for s, r in per_seed.items()))
    return {"confirmed": ok, "evidence": text, "pooled_rho": rho, "p_value": pvalue,
            "per_seed": per_seed, "points": len(pooled)}


def out_path(name: str) -> str:
    os.makedirs(OUT, exist_ok=True)
    return os.path.join(OUT, name)


def save(name: str, payload: dict, fig=None) -> None:
    """Write OUT/name.json (and OUT/name.png) and print the claims' verdicts."""
    from landscape.files import write_json
    from landscape.plots import save_figure
    write_json(out_path(name + ".json"), payload)
    if fig is not None:
        save_figure(fig, out_path(name + ".png"))
    if payload.get("metrics"):
        print(f"metrics: {payload['metrics']}")
    for s in payload.get("skipped", []):  # runs a folder held that the figure could not use
        print(f"skipped {s['path']}: {s['reason']}")
    for claim in payload.get("claims", []):
        verdict = {True: "confirmed", False: "NOT confirmed", None: "undetermined"}[claim["confirmed"]]
        print(f"[{verdict}] {claim['claim']}: {claim['evidence']}")
    print(f"wrote {out_path(name + '.json')}")


def script_args(argv) -> tuple[list, str]:
    """The positional arguments and ``--metrics epoch|checkpoint|auto`` (default auto: the
    checkpoint metrics, the paper's protocol, where every run has them; else epoch means)."""
    argv, metrics = list(argv), "auto"
    if "--metrics" in argv:
        i = argv.index("--metrics")
        if i + 1 >= len(argv):
            raise SystemExit("--metrics needs a value: epoch, checkpoint or auto")
        metrics = argv[i + 1]
        del argv[i:i + 2]
    return argv, metrics


def claim(text: str, confirmed, evidence: str, **statistic) -> dict:
    """A claim's verdict: True, False, or None when the runs are too few to test it."""
    return {"claim": text, "confirmed": None if confirmed is None else bool(confirmed),
            "evidence": evidence, **statistic}


def at_loss(train_loss, values, level):
    """The value at the first epoch whose train loss is <= level (None if never reached)."""
    hit = np.flatnonzero(np.asarray(train_loss) <= level)
    return None if len(hit) == 0 else float(np.asarray(values)[hit[0]])


def rank_correlation(x, y) -> float:
    if len(x) < 3:
        return float("nan")
    return float(spearmanr(x, y).statistic)
