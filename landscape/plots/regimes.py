"""Figures of ``landscape regimes``."""
from __future__ import annotations

import numpy as np

from ..regimes import NAMES, REGIME_COLOURS


def plot_regimes(result: dict, path: str) -> None:
    """Figure 1 with the evidence: train loss against epoch coloured by the label (grey:
    undetermined or non-finite), effective-gradient norm against train loss, the ESS spread of
    every run against ELR with its threshold, and test error against ELR with regime bands."""
    from . import new_figure, save_figure
    rows = result["rows"]
    colors = REGIME_COLOURS
    fig, axes = new_figure(4, 4.7, 4.0, max_cols=2)
    for r in rows:
        m = r["_curves"]
        axes[0].plot(m["epoch"], m["train_loss"], color=colors[r["regime"]], lw=1, alpha=0.8)
        axes[1].plot(m["train_loss"], m["effective_grad_norm"], color=colors[r["regime"]], lw=0.6, alpha=0.6)
        axes[1].scatter([r["tail_train_loss"]], [r["mean_effective_grad_norm"]], color=colors[r["regime"]],
                        zorder=3, s=18)
    for regime in (1, 2, 3, None):
        axes[0].plot([], [], color=colors[regime], label=NAMES[regime])
    axes[0].set(xlabel="epoch", ylabel="train loss", yscale="log",
                title=f"train loss by label ({result['metrics']} metrics)")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="train loss", ylabel="mean stochastic effective grad norm", xscale="log",
                yscale="log", title="sharpness vs loss (dots: tail means)")
    elrs = np.array([r["elr"] for r in rows])
    ax = axes[2]
    spread = np.array([r.get("ess_spread", np.nan) for r in rows])
    ax.scatter(elrs, spread, c=[colors[r["regime"]] for r in rows], s=20, zorder=3)
    thresholds = {r.get("ess_threshold") for r in rows if r.get("ess_threshold") is not None}
    for th in thresholds:
        ax.axhline(th, color="k", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="ELR", ylabel="std/mean of the SI groups' ESS",
           title="ESS spread (dashed: 'equalised' threshold)")
    if np.any(np.isfinite(spread) & (spread > 0)):
        ax.set_yscale("log")
    err = 1 - np.array([r["test_accuracy"] for r in rows])
    ax = axes[3]
    if len(elrs):
        for r, lo, hi in zip(rows, np.r_[elrs[:1] / 1.5, np.sqrt(elrs[:-1] * elrs[1:])],
                             np.r_[np.sqrt(elrs[:-1] * elrs[1:]), elrs[-1:] * 1.5]):
            ax.axvspan(lo, hi, color=colors[r["regime"]], alpha=0.15, lw=0)
    ax.plot(elrs, err, "ko-", ms=3)
    ax.set(xscale="log", xlabel="ELR", ylabel="test error",
           title="test error (bands: 1 blue, 2 orange, 3 red, grey undetermined)")
    save_figure(fig, path)
