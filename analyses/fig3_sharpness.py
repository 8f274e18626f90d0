"""Figure 3 (left), Section 5.1: in regime 1 a higher ELR traverses flatter regions and reaches
solutions with lower sharpness and test error at equal train loss.

    python analyses/fig3_sharpness.py [SWEEP_DIR ...]   (one per seed; `landscape regimes` picks regime-1 runs)

Trends across ELRs are judged over seeds (pooled Spearman with a permutation p-value, every
seed's sign); the Hessian trace of every seed's final regime-1 solutions.
"""
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from common import at_loss, claim, regimes_by_seed, save, script_args, seed_band, seed_sweeps, trend_over_seeds
from landscape.plots import colorbar, new_figure, no_minor_labels, ordered_colors
from landscape.sharpness import sharpness
from landscape.trajectory import Trajectory, read_analysis

# train-loss levels of the matched comparisons: ones most regime-1 runs of the recipe reach in
# 100 epochs (the earlier setting, memorised within a few epochs, used 0.3, 0.1, 0.03)
LEVELS = (1.0, 0.6, 0.3)


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


def _final_sharpness(path):
    torch.set_num_threads(1)
    sharpness(path, "last", probes=20, eigs=1, batches=2, progress=False, write=True)


def final_sharpness(paths) -> dict:
    """{path: the sharpness of the run's last checkpoint}: the stored one, else measured and
    stored, the runs spread over one single-threaded process per core (each run's
    Hessian-vector products are small, so runs side by side use the cores better than one run
    on all of them)."""
    results = {p: stored_sharpness(p) for p in paths}
    todo = [p for p, res in results.items() if res is None]
    if todo:
        workers = min(len(todo), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_final_sharpness, todo))  # each writes its own run's file
        results.update({p: stored_sharpness(p) for p in todo})
    return results


def matched(rows):
    """Per regime-1 run: eff. grad norm and test error at the first epoch of each train-loss level."""
    table = []
    for r in rows:
        m = r["_curves"]
        ok = ~np.isnan(m["test_accuracy"])
        entry = {"elr": r["elr"]}
        for level in LEVELS:
            entry[f"egn@{level}"] = at_loss(m["train_loss"], m["effective_grad_norm"], level)
            entry[f"test_error@{level}"] = at_loss(m["train_loss"][ok], 1 - m["test_accuracy"][ok], level)
        table.append(entry)
    return table


def main(sweeps, metrics="auto"):
    by_seed = regimes_by_seed(sweeps, metrics)
    tables = {seed: matched([r for r in res["rows"] if r["regime"] == 1]) for seed, res in by_seed.items()}
    first_seed, res_regimes = next(iter(by_seed.items()))
    rows = [r for r in res_regimes["rows"] if r["regime"] == 1]
    table = tables[first_seed]
    fig, axes = new_figure(3, width=4.4, height=3.8)
    colors, mappable = ordered_colors([r["elr"] for r in rows])  # one ordered colour per ELR
    for r, color in zip(rows, colors):
        m = r["_curves"]
        ok = ~np.isnan(m["test_accuracy"])
        axes[0].plot(m["train_loss"], m["effective_grad_norm"], color=color)
        axes[1].plot(m["train_loss"][ok], 1 - m["test_accuracy"][ok], color=color)
    # Hessian trace of the final solutions (effective units), 20 probes on 2 batches, every seed
    finals = final_sharpness([r["path"] for res_seed in by_seed.values() for r in res_seed["rows"]
                              if r["regime"] == 1])
    for seed, res_seed in by_seed.items():
        for entry, r in zip(tables[seed], [r for r in res_seed["rows"] if r["regime"] == 1]):
            res = finals[r["path"]]
            entry["trace_effective_final"] = float(res["trace_effective"][0])
            entry["lambda_max_effective_final"] = float(res["eigenvalues_effective"][0][0])
            entry["final_train_loss"] = r["final_train_loss"]
            entry["final_test_error"] = 1 - r["test_accuracy"]
    for ax, ylabel in zip(axes, ("mean stochastic effective grad norm", "test error")):
        ax.set(xscale="log", xlabel="train loss", ylabel=ylabel, title=f"regime-1 runs ({first_seed})")
        ax.invert_xaxis()
    colorbar(fig, mappable, axes[:2], "ELR (regime-1 runs)")
    axes[0].set_yscale("log")
    # test error at the middle loss level against ELR: mean and min-max band over seeds
    level = LEVELS[1]
    seed_band(axes[2], {seed: [(e["elr"], e[f"test_error@{level}"]) for e in t] for seed, t in tables.items()})
    if axes[2].lines:
        axes[2].legend(fontsize=7)
    axes[2].set(xscale="log", xlabel="ELR (regime-1 runs)", ylabel=f"test error at train loss {level}",
                title="generalisation at equal train loss")
    for ax in axes:
        no_minor_labels(ax)
    claims = []
    for level in LEVELS:
        egn = {seed: [(e["elr"], e[f"egn@{level}"]) for e in t if e[f"egn@{level}"] is not None]
               for seed, t in tables.items()}
        err = {seed: [(e["elr"], e[f"test_error@{level}"]) for e in t if e[f"test_error@{level}"] is not None]
               for seed, t in tables.items()}
        t_egn = trend_over_seeds(egn, -1, f"ELR vs eff. grad norm at train loss {level}")
        t_err = trend_over_seeds(err, -1, f"ELR vs test error at train loss {level}")
        claims.append(claim(f"at train loss {level}, a higher regime-1 ELR is flatter", t_egn["confirmed"],
                            t_egn["evidence"], statistic=t_egn))
        claims.append(claim(f"at train loss {level}, a higher regime-1 ELR generalises better", t_err["confirmed"],
                            t_err["evidence"], statistic=t_err))
    fin = {seed: [(e["elr"], e["trace_effective_final"]) for e in t] for seed, t in tables.items()}
    t_tr = trend_over_seeds(fin, -1, "ELR vs final effective Hessian trace")
    claims.append(claim("final regime-1 solutions of higher ELR have a lower Hessian trace (effective units)",
                        t_tr["confirmed"], t_tr["evidence"] + " (Hutchinson, 20 probes on 2 batches)", statistic=t_tr))
    t_err = trend_over_seeds({seed: [(e["elr"], e["final_test_error"]) for e in t] for seed, t in tables.items()},
                             -1, "ELR vs final test error")
    claims.append(claim("final regime-1 solutions of higher ELR generalise better (Sec. 5.1)",
                        t_err["confirmed"], t_err["evidence"], statistic=t_err))
    save("fig3_sharpness", {"sweeps": sweeps, "levels": LEVELS, "runs": table, "seeds": tables,
                            "claims": claims, "metrics": res_regimes["metrics"]}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(seed_sweeps(args), metrics)
