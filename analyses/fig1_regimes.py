"""Figure 1: the three regimes over an ELR sweep, and where sharpness peaks.

    python analyses/fig1_regimes.py [SWEEP_DIR]      (default runs/mnist1d-k16, from train/sweep_mnist1d.sh)
"""
import sys

from common import script_args, sweep_inputs, claim, rank_correlation, save
from landscape.plots.regimes import plot_regimes
from landscape.regimes import regimes


def main(sweep, metrics="auto"):
    res = regimes(sweep, metrics=metrics)
    rows = res["rows"]
    labels = [r["regime"] for r in rows]
    elrs = [r["elr"] for r in rows]
    ordered = res["ordered"]  # between determined runs (undetermined and non-finite ones aside)
    claims = [claim("three regimes appear in order of ELR (1: convergence, 2: chaotic equilibrium, 3: divergence)",
                    ordered and {1, 2, 3} <= set(labels),
                    "regimes by ELR: " + ", ".join(f"{e:g}:{r['regime'] or r['name']}" for e, r in zip(elrs, rows)) +
                    "".join(f"; out of order: {o['rate']:g} ({o['regime']}) before {o['next_rate']:g} ({o['next_regime']})"
                            for o in res["out_of_order"]))]
    two = [r for r in rows if r["regime"] == 2]
    if len(two) >= 3:
        c_loss = rank_correlation([r["elr"] for r in two], [r["tail_train_loss"] for r in two])
        c_egn = rank_correlation([r["elr"] for r in two], [r["mean_effective_grad_norm"] for r in two])
        claims.append(claim("in regime 2 a higher ELR holds a higher loss level but a lower sharpness (Sec. 5.2)",
                            c_loss > 0.5 and c_egn < -0.5,
                            f"Spearman(ELR, tail loss) = {c_loss:.2f}, Spearman(ELR, mean eff. grad norm) = {c_egn:.2f} "
                            f"over {len(two)} regime-2 runs"))
    # Figure 1 (right): across ELRs the final sharpness (tail mean eff. grad norm) falls with ELR
    # in regime 1 and in regime 2, so it peaks where regime 1 hands over to regime 2
    one = [r for r in rows if r["regime"] == 1]
    two = [r for r in rows if r["regime"] == 2]
    if len(one) >= 3:
        c1 = rank_correlation([r["elr"] for r in one], [r["mean_effective_grad_norm"] for r in one])
        claims.append(claim("in regime 1 a higher ELR converges to a flatter solution (lower final eff. grad norm)",
                            c1 < -0.5, f"Spearman(ELR, tail eff. grad norm) = {c1:.2f} over {len(one)} regime-1 runs"))
    if one and two:
        last1, first2 = one[-1], two[0]
        rest2 = two[1:2]
        peak = first2["mean_effective_grad_norm"] > last1["mean_effective_grad_norm"] and all(
            first2["mean_effective_grad_norm"] > r["mean_effective_grad_norm"] for r in rest2)
        claims.append(claim("the final sharpness of the runs peaks at the regime 1/2 transition (Fig. 1 right)",
                            peak, f"tail eff. grad norm: last regime-1 ELR {last1['elr']:g}: {last1['mean_effective_grad_norm']:.4g}; "
                            f"first regime-2 ELR {first2['elr']:g}: {first2['mean_effective_grad_norm']:.4g}" +
                            "".join(f"; next ELR {r['elr']:g}: {r['mean_effective_grad_norm']:.4g}" for r in rest2)))
    else:
        claims.append(claim("the final sharpness of the runs peaks at the regime 1/2 transition (Fig. 1 right)", False,
                            "no regime-2 run in this sweep: add a finer grid near the boundary"))
    plot_regimes(res, __import__("common").out_path("fig1_regimes.png"))
    save("fig1_regimes", {"sweep": sweep, "criteria": res["criteria"],
                          "largest_regime1_elr": res["largest_regime1_rate"],
                          "smallest_regime3_elr": res["smallest_regime3_rate"],
                          "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                          "skipped": res["skipped"], "metrics": res["metrics"], "claims": claims})


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(sweep_inputs(args), metrics)
