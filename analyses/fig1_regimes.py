"""Figure 1 (and Appendix E): the three regimes over an ELR sweep, in every seed; the trends of
the final loss and sharpness with ELR inside regimes 1 and 2; where the final sharpness peaks.

    python analyses/fig1_regimes.py [SWEEP_DIR ...]    (default: RECIPE/sweep-seed*, one per seed)

Writes fig1_regimes.png (the evidence plot of `landscape regimes` for the first seed) and
fig1_seeds.png (final train loss, sharpness and test error against ELR: mean and min-max band
over seeds, the regimes as bands).
"""
import sys

import numpy as np

from common import (ALPHA, claim, out_path, regimes_by_seed, save, script_args, seed_band, seed_sweeps,
                    trend_over_seeds)
from landscape.plots import REGIME_COLORS, new_figure, regime_legend, save_figure
from landscape.plots.regimes import plot_regimes


def regime2_run(rows) -> int:
    """The longest run of consecutive regime-2 grid points."""
    longest = current = 0
    for r in rows:
        current = current + 1 if r["regime"] == 2 else 0
        longest = max(longest, current)
    return longest


def sharpness_peak_at_boundary(rows_by_seed: dict):
    """Claim 7: over each seed's regime-1 and -2 runs, is the final sharpness (tail eff. grad
    norm) largest at the boundary (the last regime-1 or the first regime-2 ELR)? Null: the argmax
    falls on any of the n runs alike, 2/n per seed; the p-value of k seeds out of S is a binomial
    tail. (confirmed, evidence, statistic=...): confirmed when every seed peaks there and
    p < 5 ALPHA; undetermined (None) when no seed has both regimes."""
    from scipy.stats import binom
    hits, chance, detail = 0, [], []
    for seed, all_rows in rows_by_seed.items():
        rows = [r for r in all_rows if r["regime"] in (1, 2)]
        ones = [r for r in rows if r["regime"] == 1]
        twos = [r for r in rows if r["regime"] == 2]
        if not ones or not twos:
            detail.append(f"{seed}: no regime 1/2 boundary")
            continue
        peak = max(rows, key=lambda r: r["mean_effective_grad_norm"])
        boundary = {ones[-1]["elr"], twos[0]["elr"]}
        hits += peak["elr"] in boundary
        chance.append(2 / len(rows))
        detail.append(f"{seed}: peak at ELR {peak['elr']:g} ({peak['mean_effective_grad_norm']:.3g}); boundary "
                      f"{ones[-1]['elr']:g}|{twos[0]['elr']:g}")
    p_peak = float(binom.sf(hits - 1, len(chance), float(np.mean(chance)))) if chance else float("nan")
    confirmed = None if not chance else hits == len(chance) and p_peak < ALPHA * 5
    return (confirmed,
            f"{hits} of {len(chance)} seeds peak at the boundary (chance {np.mean(chance) if chance else float('nan'):.2f} "
            f"per seed, binomial p = {p_peak:.2g}); " + "; ".join(detail),
            {"statistic": {"seeds_at_boundary": hits, "seeds": len(chance), "p_value": p_peak}})


def seed_plot(results: dict, path: str) -> None:
    """Mean and min-max band over seeds against ELR; background bands: each ELR's regime where
    every seed agrees (grey where they differ or any is undetermined)."""
    fig, axes = new_figure(3, width=4.4, height=3.6)
    elrs = sorted({r["elr"] for res in results.values() for r in res["rows"]})
    agreed = {}  # each ELR's regime where every seed agrees, else None (grey)
    for e in elrs:
        labels = {r["regime"] for res in results.values() for r in res["rows"] if r["elr"] == e}
        agreed[e] = labels.pop() if len(labels) == 1 else None
    keys = (("tail_train_loss", "final train loss (tail mean)"),
            ("mean_effective_grad_norm", "sharpness: eff. grad norm (tail mean)"),
            ("test_error", "final test error"))
    for ax, (key, label) in zip(axes, keys):
        seed_band(ax, {seed: [(r["elr"], 1 - r["test_accuracy"] if key == "test_error" else r[key])
                              for r in res["rows"]] for seed, res in results.items()})
        for e in elrs:
            ax.axvspan(e / 1.25, e * 1.25, color=REGIME_COLORS[agreed[e]], alpha=0.18, lw=0)
        ax.set(xscale="log", xlabel="ELR (effective learning rate)", ylabel=label)
        if key != "test_error":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7, loc="upper left")
    regime_legend(axes[2], loc="upper left")
    fig.suptitle("Figure 1 over seeds (bands: regime where every seed agrees; grey: seeds differ)")
    save_figure(fig, path)


def main(sweeps, metrics="auto"):
    results = regimes_by_seed(sweeps, metrics)
    claims = []
    # claim 2: the three regimes, in order, in every seed; regime 2 spanning grid points
    maps = {seed: ", ".join(f"{r['elr']:g}:{r['regime'] or '?'}" for r in res["rows"])
            for seed, res in results.items()}
    widths = {seed: regime2_run(res["rows"]) for seed, res in results.items()}
    in_order = {seed: res["ordered"] and {1, 2, 3} <= {r["regime"] for r in res["rows"]}
                for seed, res in results.items()}
    claims.append(claim("three regimes appear in order of ELR (1 convergence, 2 chaotic equilibrium, 3 divergence), "
                        "in every seed",
                        all(in_order.values()),
                        "; ".join(f"{seed}: {maps[seed]} ({'in order' if in_order[seed] else 'NOT in order'}; "
                                  f"regime 2 over {widths[seed]} consecutive grid points)" for seed in results),
                        statistic={"seeds_in_order": sum(in_order.values()), "seeds": len(results),
                                   "regime2_consecutive_points": widths}))

    def points(regime, key):
        return {seed: [(r["elr"], r[key]) for r in res["rows"] if r["regime"] == regime]
                for seed, res in results.items()}

    # claim 3: regime 1, higher ELR -> flatter final solution
    t = trend_over_seeds(points(1, "mean_effective_grad_norm"), -1, "ELR vs tail eff. grad norm, regime-1 runs")
    claims.append(claim("in regime 1 a higher ELR converges to a flatter solution (lower final eff. grad norm)",
                        t["confirmed"], t["evidence"], statistic=t))
    # claim 6: regime 2, higher ELR -> higher loss level, lower sharpness
    t_loss = trend_over_seeds(points(2, "tail_train_loss"), +1, "ELR vs tail train loss, regime-2 runs")
    t_egn = trend_over_seeds(points(2, "mean_effective_grad_norm"), -1, "ELR vs tail eff. grad norm, regime-2 runs")
    claims.append(claim("in regime 2 a higher ELR holds a higher loss level (Sec. 5.2)", t_loss["confirmed"],
                        t_loss["evidence"], statistic=t_loss))
    claims.append(claim("in regime 2 a higher ELR has a lower sharpness (Sec. 5.2)", t_egn["confirmed"],
                        t_egn["evidence"], statistic=t_egn))
    at_boundary, evidence, statistic = sharpness_peak_at_boundary({seed: res["rows"] for seed, res in results.items()})
    claims.append(claim("the final sharpness peaks at the regime 1/2 transition (Fig. 1 right)", at_boundary,
                        evidence, **statistic))
    first = next(iter(results.values()))
    plot_regimes(first, out_path("fig1_regimes.png"))
    seed_plot(results, out_path("fig1_seeds.png"))
    save("fig1_regimes", {"sweeps": sweeps, "criteria": first["criteria"], "metrics": first["metrics"],
                          "seeds": {seed: {"largest_regime1_elr": res["largest_regime1_rate"],
                                           "smallest_regime3_elr": res["smallest_regime3_rate"],
                                           "ordered": res["ordered"], "out_of_order": res["out_of_order"],
                                           "rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                                    for r in res["rows"]],
                                           "skipped": res["skipped"]} for seed, res in results.items()},
                          "claims": claims})


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(seed_sweeps(args), metrics)
