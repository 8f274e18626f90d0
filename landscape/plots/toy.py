"""Figures of ``landscape toy``."""
from __future__ import annotations

import numpy as np

from ..toy import classify, equilibrium_elrs
from . import colorbar, new_figure, ordered_colors, save_figure

STYLES = {"convergence": "-", "equilibrium": "--", "divergence": ":"}


def plot_toy(results: list[dict], path: str) -> None:
    """Figure 2: F against iteration (log-log: convergence happens within tens of steps) for
    every ELR, coloured in ELR order (colour bar), line style by regime; then each run's
    individual ELRs with the eq. (9) equilibria (dashed)."""
    fig, axes = new_figure(1 + len(results), 5.0, 4.0, max_cols=2)  # rows of two: room for labels
    ax = axes[0]
    colors, mappable = ordered_colors([r["elr"] for r in results], cmap="plasma")
    order = sorted(range(len(results)), key=lambda i: -results[i]["elr"])  # smaller ELRs drawn on top
    for i in order:
        r = results[i]
        regime = classify(r)["regime"]
        ax.plot(np.arange(1, r["steps"] + 1), np.maximum(r["loss"], 1e-300), color=colors[i],
                ls=STYLES.get(regime, "-"), lw=1.6 if regime == "equilibrium" else 1.1,
                label=f"ELR {r['elr']:g}: {regime}")
    ax.set(xscale="log", yscale="log", xlabel="iteration", ylabel="F(x, y)")
    # converged runs reach F = 0 in float64; show 12 decades below the scale of F
    total = float(np.sum(results[0]["alphas"]))
    ax.set_ylim(1e-12 * total, 2 * total)
    ax.set_title(f"toy model, alphas {', '.join(f'{a:g}' for a in results[0]['alphas'])}")
    ax.legend(fontsize=7)
    colorbar(fig, mappable, ax, "ELR")
    for ax, r in zip(axes[1:], results):
        target = equilibrium_elrs(r["alphas"], r["elr"])
        group_colors, _ = ordered_colors(r["alphas"], cmap="viridis")
        for i, a in enumerate(r["alphas"]):
            ax.plot(np.arange(1, r["steps"] + 1), r["group_elr"][:, i], lw=0.8, color=group_colors[i],
                    label=f"group {i} (alpha = {a:g})")
            ax.axhline(target[i], color=group_colors[i], ls="--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="iteration", ylabel="individual ELR  lr / rho_i^2")
        ax.set_title(f"ELR {r['elr']:g} ({classify(r)['regime']})\ndashed: eq. (9) equilibria", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)
