"""Figures 3 (right) and 5, Sections 5.1-5.2: fine-tuning with another ELR.
Regime 1: a lower ELR continues the same sharpness-vs-loss trajectory; a higher one leaves the
basin and ends flatter. Regime 2: another regime-2 ELR moves to that ELR's own loss level.

    python analyses/fig5_finetune.py [FINETUNE_DIR] [SWEEP_DIR]   (after train/finetune_mnist1d.sh)
"""
import glob
import os
import sys

import numpy as np

from common import RECIPE, SWEEP, claim, save, script_args
from landscape.plots import colorbar, new_figure, no_minor_labels, ordered_colors
from landscape.regimes import curves, pick_source, regimes, usable_runs
from landscape.trajectory import Trajectory


def tail(x, frac=0.2):
    return float(np.mean(x[-max(1, int(frac * len(x))):]))


def main(folder=os.path.join(RECIPE, "finetune"), *sweeps, metrics="auto"):
    sweeps = list(sweeps) or SWEEP  # the fine-tuned runs' own sweep (seed 0)
    res = regimes(sweeps, metrics=metrics)
    by_elr = {round(r["elr"], 12): r for r in res["rows"]}
    paths = sorted(glob.glob(os.path.join(folder, "from*-to*.h5")))
    if not paths:
        raise SystemExit(f"no fine-tuning runs in {folder}: run train/finetune_mnist1d.sh first")
    runs, skipped = usable_runs(paths, nonfinite_ok=False)  # damaged or short runs are listed
    source, kept, more = pick_source(runs, res["metrics"])  # the sweep's curves, for both
    skipped += more
    fig, axes = new_figure(2, width=4.8, height=4.0)
    # one ordered colour per target ELR, the source runs in grey
    colors, mappable = ordered_colors([float(t.config["elr"]) for t, _ in kept])
    color_of = {id(t): c for (t, _), c in zip(kept, colors)}
    table, claims = [], []
    # a run fine-tuned at its source's own ELR is the source continued: the others from the same
    # checkpoint are compared with it, at the same length, in place of the source's own tail
    def source_of(t):  # (the source checkpoint, whether this run continues it at its own ELR)
        src = t.config["init_source"]
        return (os.path.realpath(src["path"]), src["epoch"]), float(t.config["elr"]) == float(src["elr"])
    continued = {source_of(t)[0]: tm for t, tm in kept if source_of(t)[1]}
    for t, tm in kept:
        src_info = t.config["init_source"]
        key, continues = source_of(t)
        if continues:
            continue  # the continued source: the reference, not a claim
        base = curves(Trajectory(src_info["path"]), source)
        switch = np.flatnonzero(base["epoch"] == src_info["epoch"]) if base is not None else []
        if not len(switch):
            skipped.append({"path": t.path, "reason": f"its source run has no {source} metrics at "
                            f"epoch {src_info['epoch']}"})
            continue
        src, dst = float(src_info["elr"]), float(t.config["elr"])
        if by_elr.get(round(src, 12)) is None or by_elr[round(src, 12)]["regime"] not in (1, 2, 3):
            skipped.append({"path": t.path, "reason": f"its source run (ELR {src:g}) is not a usable sweep "
                            f"run with a determined regime"})
            continue
        src_regime = by_elr[round(src, 12)]["regime"]
        ref = by_elr.get(round(dst, 12))
        entry = {"from": src, "from_regime": src_regime, "to": dst,
                 "to_regime": ref["regime"] if ref else None, "from_epoch": src_info["epoch"],
                 "final_train_loss": tail(tm["train_loss"]),
                 "final_egn": tail(tm["effective_grad_norm"]),
                 "source_final_egn": tail((continued.get(key) or base)["effective_grad_norm"]),
                 "source_continued": key in continued,
                 "source_final_train_loss": tail(base["train_loss"]),
                 "source_loss_at_switch": float(base["train_loss"][switch[0]]),
                 "reference_final_train_loss": ref["tail_train_loss"] if ref else None,
                 "max_loss_after_switch": float(np.max(tm["train_loss"]))}
        table.append(entry)
        ax = axes[0 if src_regime == 1 else 1]
        ax.plot(base["train_loss"], base["effective_grad_norm"], color="grey", lw=0.8)
        ax.plot(tm["train_loss"], tm["effective_grad_norm"], color=color_of[id(t)],
                label=f"ELR {src:g} -> {dst:g} from epoch {src_info['epoch']}")
    for ax, title in zip(axes, ("fine-tuning a regime-1 solution", "fine-tuning from regime 2")):
        ax.set(xscale="log", yscale="log", xlabel="train loss", ylabel="mean stochastic eff. grad norm", title=title)
        ax.invert_xaxis()
        no_minor_labels(ax)
        ax.plot([], [], color="grey", lw=0.8, label="source run (trained at its ELR)")
        ax.legend(fontsize=7)
    colorbar(fig, mappable, axes, "fine-tuning ELR")
    for e in table:
        if e["from_regime"] == 1 and e["to"] < e["from"]:
            claims.append(claim(f"from regime-1 ELR {e['from']:g}, a lower ELR {e['to']:g} stays in the basin",
                                e["max_loss_after_switch"] < 2 * e["source_loss_at_switch"] + 0.01,
                                f"largest loss after the switch {e['max_loss_after_switch']:.4g} vs {e['source_loss_at_switch']:.4g} at the switch"))
        elif e["from_regime"] == 1:
            claims.append(claim(f"from regime-1 ELR {e['from']:g}, a higher ELR {e['to']:g} ends in a flatter region",
                                e["final_egn"] < e["source_final_egn"],
                                f"final eff. grad norm {e['final_egn']:.4g} vs the source run's {e['source_final_egn']:.4g}"
                                + (" (continued as long)" if e["source_continued"] else "")))
        elif e["to_regime"] == 2:
            rel = abs(e["final_train_loss"] / e["reference_final_train_loss"] - 1)
            claims.append(claim(f"from regime 2 (ELR {e['from']:g}), regime-2 ELR {e['to']:g} moves to that ELR's loss level",
                                rel < 0.3, f"final loss {e['final_train_loss']:.4g} vs {e['reference_final_train_loss']:.4g} "
                                f"for ELR {e['to']:g} trained from the start ({rel:.0%} apart)"))
        else:
            claims.append(claim(f"from regime 2 (ELR {e['from']:g}), the regime-1 ELR {e['to']:g} converges",
                                e["final_train_loss"] < 0.5 * e["source_loss_at_switch"],
                                f"final loss {e['final_train_loss']:.4g} vs {e['source_loss_at_switch']:.4g} at the switch"))
    save("fig5_finetune", {"folder": folder, "sweeps": sweeps, "runs": table, "skipped": skipped,
                           "metrics": source, "claims": claims}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(*args, metrics=metrics)
