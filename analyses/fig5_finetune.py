"""Figures 3 (right) and 5, Sections 5.1-5.2: fine-tuning with another ELR.
Regime 1: a lower ELR continues the same sharpness-vs-loss trajectory; a higher one leaves the
basin and ends flatter. Regime 2: another regime-2 ELR moves to that ELR's own loss level.

    python analyses/fig5_finetune.py [FINETUNE_DIR] [SWEEP_DIR]   (after train/finetune_mnist1d.sh)
"""
import glob
import os
import re
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import SWEEP, claim, save
from landscape.trajectory import Trajectory


def tail(x, frac=0.2):
    return float(np.mean(x[-max(1, int(frac * len(x))):]))


def main(folder="runs/mnist1d-k16-finetune", sweep=SWEEP):
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "from*-to*.h5"))):
        src, dst = re.match(r"from(.+)-to(.+)\.h5", os.path.basename(path)).groups()
        runs[(float(src), float(dst))] = Trajectory(path)
    if not runs:
        raise SystemExit(f"no fine-tuning runs in {folder}: run train/finetune_mnist1d.sh first")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    table, claims = [], []
    for (src, dst), t in runs.items():
        base = Trajectory(os.path.join(sweep, f"elr{src:g}.h5"))
        ref = Trajectory(os.path.join(sweep, f"elr{dst:g}.h5"))
        start = t.config["init_source"]["epoch"]
        entry = {"from": src, "to": dst, "from_epoch": start,
                 "final_train_loss": tail(t.metrics["train_loss"]),
                 "final_egn": tail(t.metrics["effective_grad_norm"]),
                 "source_final_egn": tail(base.metrics["effective_grad_norm"]),
                 "source_final_train_loss": tail(base.metrics["train_loss"]),
                 "reference_final_train_loss": tail(ref.metrics["train_loss"]),
                 "reference_final_egn": tail(ref.metrics["effective_grad_norm"]),
                 "max_loss_after_switch": float(np.max(t.metrics["train_loss"]))}
        table.append(entry)
        ax = axes[0 if src <= 2e-3 else 1]
        ax.plot(base.metrics["train_loss"], base.metrics["effective_grad_norm"], color="grey", lw=0.8)
        ax.plot(t.metrics["train_loss"], t.metrics["effective_grad_norm"], label=f"{src:g} -> {dst:g}")
    for ax, title in zip(axes, ("fine-tuning a regime-1 solution", "fine-tuning from regime 2")):
        ax.set(xscale="log", yscale="log", xlabel="train loss", ylabel="mean stochastic eff. grad norm", title=title)
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    for e in table:
        if e["to"] < e["from"] and e["from"] <= 2e-3:
            claims.append(claim(f"from regime-1 ELR {e['from']:g}, a lower ELR {e['to']:g} stays in the basin (loss never rises much)",
                                e["max_loss_after_switch"] < 2 * e["source_final_train_loss"] + 0.05,
                                f"largest loss after the switch {e['max_loss_after_switch']:.4g} vs the start's {e['source_final_train_loss']:.4g}"))
        elif e["to"] > e["from"] and e["from"] <= 2e-3:
            claims.append(claim(f"from regime-1 ELR {e['from']:g}, a higher ELR {e['to']:g} ends in a flatter region",
                                e["final_egn"] < e["source_final_egn"],
                                f"final eff. grad norm {e['final_egn']:.4g} vs the source's {e['source_final_egn']:.4g}"))
        elif e["from"] > 2e-3 and e["to"] > 2e-3:
            rel = abs(e["final_train_loss"] / e["reference_final_train_loss"] - 1)
            claims.append(claim(f"from regime 2 (ELR {e['from']:g}), ELR {e['to']:g} moves to its own loss level",
                                rel < 0.3, f"final loss {e['final_train_loss']:.4g} vs a run trained at {e['to']:g} "
                                f"from the start: {e['reference_final_train_loss']:.4g} ({rel:.0%} apart)"))
        else:
            claims.append(claim(f"from regime 2 (ELR {e['from']:g}), the regime-1 ELR {e['to']:g} converges",
                                e["final_train_loss"] < 0.5 * e["source_final_train_loss"],
                                f"final loss {e['final_train_loss']:.4g} vs the start's {e['source_final_train_loss']:.4g}"))
    save("fig5_finetune", {"folder": folder, "sweep": sweep, "runs": table, "claims": claims}, fig)


if __name__ == "__main__":
    main(*sys.argv[1:])
