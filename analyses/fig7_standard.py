"""Figure 7, Section 6: the regimes in standard training.

    python analyses/fig7_standard.py      (after train/section6_mnist1d.sh)

Left: the fully SI ConvNet in the whole parameter space with weight decay: three regimes as on
the sphere, and the norm rho moving (high first-regime LRs jump out of the low-loss region and
back, Lobacheva et al. 2021). Middle / right: a conventional ResNet-18 (width 8) with momentum, weight
decay and augmentation, constant LR and cosine schedule: two regimes, high LRs end in NaN.
"""
import glob
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import RECIPE, claim, save, script_args
from landscape.plots import REGIME_COLORS, colorbar, ordered_colors, regime_legend
from landscape.regimes import regimes

PANELS = (("si-whole", "SI ConvNet, whole space, weight decay"),
          ("conv-constant", "conventional ResNet-18, constant LR"),
          ("conv-cosine", "conventional ResNet-18, cosine LR"))


def best_test(rows):
    usable = [r for r in rows if r["name"] != "nonfinite" and np.isfinite(r["test_accuracy"])]
    return max(usable, key=lambda r: r["test_accuracy"]) if usable else None


def main(prefix=None, metrics="auto"):
    prefix = prefix or os.path.join(RECIPE, "s6")
    results = {}
    for key, _ in PANELS:
        folder = f"{prefix}-{key}"
        if not glob.glob(os.path.join(folder, "*.h5")):
            raise SystemExit(f"{folder}: no runs; run train/section6_mnist1d.sh first")
        results[key] = regimes([folder], metrics=metrics)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), layout="constrained")
    for col, (key, title) in enumerate(PANELS):
        rows = results[key]["rows"]
        colors, mappable = ordered_colors([r["rate"] for r in rows])
        for r, color in zip(rows, colors):
            m = r["_curves"]
            ls = "-" if r["name"] != "nonfinite" else ":"
            axes[0, col].plot(m["epoch"], m["train_loss"], color=color, ls=ls, lw=1)
            axes[1, col].plot(m["epoch"], m["rho"], color=color, ls=ls, lw=1)
            if r["name"] == "nonfinite" and len(m["epoch"]):
                axes[0, col].plot(m["epoch"][-1], m["train_loss"][-1], "x", color="k", ms=6)
        axes[0, col].set(yscale="log", xlabel="epoch", ylabel="train loss", title=title)
        axes[1, col].set(yscale="log", xlabel="epoch", ylabel="norm rho of the trained weights",
                         title="norm dynamics (x: run ended in NaN)")
        colorbar(fig, mappable, axes[:, col].tolist(), "LR")
    save("fig7_standard", {"prefix": prefix, "metrics": results["si-whole"]["metrics"],
                           **{key: [{k: v for k, v in r.items() if not k.startswith("_")} for r in res["rows"]]
                              for key, res in results.items()},
                           "claims": claims_of(results)}, fig)
    # the regime of each run against LR with test accuracy, per setting
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
    for ax, (key, title) in zip(axes, PANELS):
        rows = results[key]["rows"]
        lrs = np.array([r["rate"] for r in rows])
        acc = np.array([r["test_accuracy"] if r["name"] != "nonfinite" else np.nan for r in rows])
        ax.plot(lrs, acc, "k-", lw=0.8)
        ax.scatter(lrs, np.where(np.isnan(acc), 0, acc), c=[REGIME_COLORS[r["regime"]] for r in rows],
                   marker="o", s=30, edgecolor="k", zorder=3)
        ax.set(xscale="log", xlabel="LR", ylabel="final test accuracy (0: NaN)", title=title)
        regime_legend(ax, loc="best")
    from landscape.plots import save_figure
    save_figure(fig, __import__("common").out_path("fig7_standard_accuracy.png"))
    plt.close("all")


def claims_of(results) -> list:
    out = []
    si = results["si-whole"]["rows"]
    labels = [r["regime"] for r in si]
    out.append(claim("SI network in the whole space with weight decay: the three regimes appear in order of LR",
                     results["si-whole"]["ordered"] and {1, 2, 3} <= set(labels),
                     "regimes by LR: " + ", ".join(f"{r['rate']:g}:{r['regime'] or r['name']}" for r in si)))
    for key in ("conv-constant", "conv-cosine"):
        rows = results[key]["rows"]
        names = [r["name"] for r in rows]
        determined = {r["regime"] for r in rows if r["regime"] in (1, 2, 3)}
        out.append(claim(f"conventional training ({key[5:]} LR): high LRs end in NaN, leaving at most two regimes",
                         "nonfinite" in names and 3 not in determined,
                         "by LR: " + ", ".join(f"{r['rate']:g}:{r['regime'] or r['name']}" for r in rows)))
    for key in ("si-whole", "conv-constant"):
        rows = results[key]["rows"]
        best, ones = best_test(rows), [r for r in rows if r["regime"] == 1]
        out.append(claim(f"{key}: the best test accuracy is at the largest first-regime LR",
                         # without a regime-1 run the claim cannot be tested: undetermined
                         None if best is None or not ones else best["rate"] == max(r["rate"] for r in ones),
                         f"best test accuracy {best['test_accuracy']:.3f} at LR {best['rate']:g} ({best['name']}); "
                         f"largest regime-1 LR {max((r['rate'] for r in ones), default=float('nan')):g}"
                         if best else "no finite run"))
    const, cos = best_test(results["conv-constant"]["rows"]), best_test(results["conv-cosine"]["rows"])
    if const and cos:
        out.append(claim("a cosine schedule from a medium LR gives the best test accuracy overall",
                         cos["test_accuracy"] >= const["test_accuracy"],
                         f"cosine best {cos['test_accuracy']:.3f} at LR {cos['rate']:g}; constant best "
                         f"{const['test_accuracy']:.3f} at LR {const['rate']:g}"))
    return out


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(*args, metrics=metrics)
