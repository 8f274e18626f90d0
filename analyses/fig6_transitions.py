"""Figure 6, Section 5.3: train loss of ELRs across the regimes and the transitions between them
(a run near the 1/2 boundary that first holds an equilibrium level, then suddenly converges).

    python analyses/fig6_transitions.py [SWEEP_DIR ...]   (one per seed; a panel each)
"""
import sys

import numpy as np

from common import claim, regimes_by_seed, save, script_args, seed_sweeps
from landscape.plots import colorbar, new_figure, ordered_colors


def late_drop(loss, plateau=(0.2, 0.4), factor=5.0):
    """Epoch where a run that sat on a plateau (loss changing < 30% across the plateau window)
    falls ``factor`` below it afterwards; None if it never does."""
    n = len(loss)
    a, b = int(plateau[0] * n), int(plateau[1] * n)
    level = loss[a:b].mean()
    flat = abs(loss[b - 1] / loss[a] - 1) < 0.3
    hit = np.flatnonzero(loss[b:] < level / factor)
    return (b + int(hit[0]) + 1) if flat and len(hit) else None


def main(sweeps, metrics="auto"):
    by_seed = regimes_by_seed(sweeps, metrics)
    fig, axes = new_figure(len(by_seed), width=4.4, height=3.6)
    tables, claims = {}, []
    everything = [r for res in by_seed.values() for r in res["rows"]]
    colors, mappable = ordered_colors([r["elr"] for r in everything])
    color_of = {r["elr"]: c for r, c in zip(everything, colors)}
    for ax, (seed, res) in zip(axes, by_seed.items()):
        rows = [r for r in res["rows"] if r["regime"]]  # not the runs ended by non-finite values
        table = []
        for r in rows:
            m = r["_curves"]
            drop = late_drop(m["train_loss"])
            table.append({"elr": r["elr"], "regime": r["regime"], "final_train_loss": r["final_train_loss"],
                          "late_convergence_epoch": drop})
            style = {1: "-", 2: "--", 3: ":"}[r["regime"]]
            ax.plot(m["epoch"], m["train_loss"], style, lw=1, color=color_of[r["elr"]])
            if drop is not None:
                ax.plot(m["epoch"][drop - 1], m["train_loss"][drop - 1], "kv", ms=6)
        ax.set(yscale="log", xlabel="epoch", ylabel="train loss", title=seed)
        tables[seed] = table
    colorbar(fig, mappable, axes, "ELR (effective learning rate)")
    fig.suptitle("Figure 6: regimes and transitions (line: regime 1 solid, 2 dashed, 3 dotted; "
                 "v: a late convergence from a plateau)", fontsize=9)
    found = {seed: [e for e in t if e["regime"] == 1 and e["late_convergence_epoch"] is not None]
             for seed, t in tables.items()}
    boundary = {seed: max((e["elr"] for e in t if e["regime"] == 1), default=None) for seed, t in tables.items()}
    n_found = sum(bool(v) for v in found.values())
    claims.append(claim("near the regime 1/2 boundary a run can hold an equilibrium level, then suddenly converge",
                        n_found > 0,
                        f"{n_found} of {len(tables)} seeds have a run that sat on a plateau over 20-40% of training "
                        f"and later fell 5x below it: " + "; ".join(
                            f"{seed}: " + (", ".join(f"ELR {e['elr']:g} (epoch {e['late_convergence_epoch']})" for e in v)
                                           if v else f"none (largest regime-1 ELR {boundary[seed]})")
                            for seed, v in found.items()),
                        statistic={"seeds_with_transition": n_found, "seeds": len(tables)}))
    save("fig6_transitions", {"sweeps": sweeps, "seeds": tables, "claims": claims,
                              "metrics": next(iter(by_seed.values()))["metrics"]}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(seed_sweeps(args), metrics)
