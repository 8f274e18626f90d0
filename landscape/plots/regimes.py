"""Figures of ``landscape regimes``."""
from __future__ import annotations

import numpy as np

from . import REGIME_COLORS, colorbar, new_figure, ordered_colors, regime_legend, save_figure


def plot_regimes(result: dict, path: str) -> None:
    """Figure 1 with the evidence. (a) train loss against epoch, coloured by ELR (colour bar),
    line style by label; (b) mean stochastic effective gradient norm against train loss, the
    runs' tail means as dots in their regime's colour; (c) each run's ESS spread against ELR
    with the 'equalised' threshold; (d) test error against ELR over bands of the regimes."""
    rows = result["rows"]
    elrs = np.array([r["rate"] for r in rows])
    name = result.get("rate_name", "ELR")
    colors, mappable = ordered_colors(elrs)
    styles = {1: "-", 2: "--", 3: ":", None: "-."}
    axis = {r["gradient_axis"] for r in rows} if rows else {"effective_grad_norm"}
    # one axis per figure: conventional runs beside SI ones would mix two quantities
    axis = axis.pop() if len(axis) == 1 else "effective_grad_norm"
    axis_label = ("mean stochastic effective gradient norm" if axis == "effective_grad_norm"
                  else "mean stochastic gradient norm (all trained parameters)")
    fig, axes = new_figure(4, 4.7, 4.0, max_cols=2)
    for r, color in zip(rows, colors):
        m = r["_curves"]
        axes[0].plot(m["epoch"], m["train_loss"], color=color, ls=styles[r["regime"]], lw=1.1)
        axes[1].plot(m["train_loss"], m[axis], color=color, lw=0.6, alpha=0.7)
        axes[1].scatter([r["tail_train_loss"]], [r[f"mean_{axis}"]], s=28, zorder=3,
                        color=REGIME_COLORS[r["regime"]], edgecolor="k", lw=0.5)
    for regime in (1, 2, 3, None):
        axes[0].plot([], [], color="k", ls=styles[regime], label=f"regime {regime or '?'}")
    axes[0].set(xlabel="epoch", ylabel="train loss", yscale="log",
                title=f"train loss ({result['metrics']} metrics); line style: regime")
    axes[0].legend(fontsize=7, loc="lower left")  # the runs start high: the corner stays free
    axes[1].set(xlabel="train loss", ylabel=axis_label, xscale="log", yscale="log",
                title="gradient norm vs train loss\n(dots: tail means, regime colour)")
    regime_legend(axes[1], loc="lower left")
    colorbar(fig, mappable, axes[:2], "ELR (effective learning rate)" if name == "ELR" else f"{name} (learning rate)")
    ax = axes[2]
    spread = np.array([r.get("ess_spread", np.nan) for r in rows])
    ax.scatter(elrs, spread, c=[REGIME_COLORS[r["regime"]] for r in rows], s=24, zorder=3,
               edgecolor="k", lw=0.5)
    for th in sorted({r.get("ess_threshold") for r in rows if r.get("ess_threshold") is not None}):
        ax.axhline(th, color="k", ls="--", lw=0.8, label=f"equalised below {th:g}")
    ax.set(xscale="log", xlabel=name, ylabel="ESS spread (std / mean over SI groups)",
           title="effective step sizes equalise in regime 2")
    if np.any(np.isfinite(spread) & (spread > 0)):
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    err = 1 - np.array([r["test_accuracy"] for r in rows])
    ax = axes[3]
    if len(elrs):
        edges = np.r_[elrs[:1] / 1.5, np.sqrt(elrs[:-1] * elrs[1:]), elrs[-1:] * 1.5]
        for r, lo, hi in zip(rows, edges[:-1], edges[1:]):
            ax.axvspan(lo, hi, color=REGIME_COLORS[r["regime"]], alpha=0.18, lw=0)
    ax.plot(elrs, err, "ko-", ms=3)
    ax.set(xscale="log", xlabel=name, ylabel="test error (1 - accuracy)",
           title="test error over the regimes (bands)")
    regime_legend(ax, loc="best")
    save_figure(fig, path)
