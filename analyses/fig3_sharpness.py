"""Figure 3 (left), Section 5.1: in regime 1 a higher ELR traverses flatter regions and reaches
solutions with lower sharpness and test error at equal train loss.

    python analyses/fig3_sharpness.py [SWEEP_DIR]    (uses `landscape regimes` to pick regime-1 runs)
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import script_args, sweep_inputs, at_loss, claim, rank_correlation, save
from landscape.plots import colorbar, ordered_colors
from landscape.regimes import regimes
from landscape.sharpness import sharpness
from landscape.trajectory import Trajectory, read_analysis

LEVELS = (0.3, 0.1, 0.03)


def stored_sharpness(path):
    """The /analyses/sharpness a previous run of this script appended, if it covers the last
    checkpoint with an eigenvalue (a re-run then costs nothing)."""
    t = Trajectory(path)
    if "sharpness" not in t.analyses:
        return None
    res, _ = read_analysis(path, "sharpness")
    if res["epoch"][-1] != t.checkpoint_epochs[-1] or "eigenvalues_effective" not in res:
        return None
    return {k: v[-1:] for k, v in res.items()}


def main(sweep, metrics="auto"):
    res_regimes = regimes(sweep, metrics=metrics)
    rows = [r for r in res_regimes["rows"] if r["regime"] == 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    colors, mappable = ordered_colors([r["elr"] for r in rows])  # one ordered colour per ELR
    table = []
    for r, color in zip(rows, colors):
        m = r["_curves"]
        ok = ~np.isnan(m["test_accuracy"])
        axes[0].plot(m["train_loss"], m["effective_grad_norm"], color=color)
        axes[1].plot(m["train_loss"][ok], 1 - m["test_accuracy"][ok], color=color)
        entry = {"elr": r["elr"]}
        for level in LEVELS:
            entry[f"egn@{level}"] = at_loss(m["train_loss"], m["effective_grad_norm"], level)
            entry[f"test_error@{level}"] = at_loss(m["train_loss"][ok], 1 - m["test_accuracy"][ok], level)
        table.append(entry)
    # Hessian trace of the final solutions (effective units), 20 probes on 2 batches
    for entry, r in zip(table, rows):
        res = stored_sharpness(r["path"]) or sharpness(r["path"], "last", probes=20, eigs=1, batches=2,
                                                       progress=False, write=True)
        entry["trace_effective_final"] = float(res["trace_effective"][0])
        entry["lambda_max_effective_final"] = float(res["eigenvalues_effective"][0][0])
        entry["final_train_loss"] = r["final_train_loss"]
        entry["final_test_error"] = 1 - r["test_accuracy"]
    for ax, ylabel in zip(axes, ("mean stochastic effective grad norm", "test error")):
        ax.set(xscale="log", xlabel="train loss", ylabel=ylabel)
        ax.invert_xaxis()
    colorbar(fig, mappable, list(axes), "ELR (regime-1 runs)")
    axes[0].set_yscale("log")
    claims = []
    for level in LEVELS:
        pts = [(e["elr"], e[f"egn@{level}"], e[f"test_error@{level}"]) for e in table if e[f"egn@{level}"] is not None]
        if len(pts) >= 3:
            c_egn = rank_correlation([p[0] for p in pts], [p[1] for p in pts])
            c_err = rank_correlation([p[0] for p in pts], [p[2] for p in pts])
            claims.append(claim(f"at train loss {level}, a higher regime-1 ELR is flatter",
                                c_egn < -0.5, f"Spearman(ELR, eff. grad norm) = {c_egn:.2f} over {len(pts)} runs that reach it"))
            claims.append(claim(f"at train loss {level}, a higher regime-1 ELR generalises better",
                                c_err < -0.5, f"Spearman(ELR, test error) = {c_err:.2f} over {len(pts)} runs that reach it"))
    fin = [(e["elr"], e["trace_effective_final"], e["final_test_error"]) for e in table]
    if len(fin) >= 3:
        c_tr = rank_correlation([f[0] for f in fin], [f[1] for f in fin])
        claims.append(claim("final regime-1 solutions of higher ELR have a lower Hessian trace (effective units)",
                            c_tr < -0.5, f"Spearman(ELR, final effective trace) = {c_tr:.2f} over {len(fin)} runs"))
    save("fig3_sharpness", {"sweep": sweep, "levels": LEVELS, "runs": table, "claims": claims,
                            "metrics": res_regimes["metrics"]}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(sweep_inputs(args), metrics)
