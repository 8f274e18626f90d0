"""Figures of ``landscape toy``."""
from __future__ import annotations

import numpy as np

from ..toy import classify, equilibrium_elrs


def plot_toy(results: list[dict], path: str) -> None:
    from . import new_figure, save_figure
    fig, axes = new_figure(1 + len(results), 4.2, 3.6)
    ax = axes[0]
    for r in results:
        label = f"ELR {r['elr']:g} ({classify(r)['regime']})"
        ax.plot(np.arange(1, r["steps"] + 1), np.maximum(r["loss"], 1e-300), label=label)
    ax.set_yscale("log")
    # converged runs reach F = 0 in float64; show 12 decades below the scale of F
    total = float(np.sum(results[0]["alphas"]))
    ax.set_ylim(1e-12 * total, 2 * total)
    ax.set_xlabel("iteration")
    ax.set_ylabel("F(x, y)")
    ax.set_title(f"toy model, alphas {', '.join(f'{a:g}' for a in results[0]['alphas'])}")
    ax.legend(fontsize=8)
    for ax, r in zip(axes[1:], results):
        target = equilibrium_elrs(r["alphas"], r["elr"])
        for i, a in enumerate(r["alphas"]):
            line, = ax.plot(r["group_elr"][:, i], lw=0.8, label=f"ELR_{i} (alpha={a:g})")
            ax.axhline(target[i], color=line.get_color(), ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"individual ELRs, ELR {r['elr']:g}\n(dashed: eq. (9) equilibria)", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)
