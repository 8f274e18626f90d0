"""Figures of ``landscape sharpness``."""
from __future__ import annotations

import numpy as np


def plot_sharpness(result: dict, path: str) -> None:
    from . import new_figure, save_figure
    series = [("trace_effective", "Hessian trace (eff.)"),
              ("mean_effective_grad_norm", "mean stoch. eff. grad norm")]
    if "eigenvalues_effective" in result:
        series.insert(1, ("lambda_max", "top eigenvalue (eff.)"))
    vals = {k: (result["eigenvalues_effective"][:, 0] if k == "lambda_max" else result[k]) for k, _ in series}
    panels = 3 if "density" in result else 2
    fig, axes = new_figure(panels)
    for ax, xkey, xlabel in ((axes[0], "epoch", "epoch"), (axes[1], "loss", "train loss (at checkpoint)")):
        for key, label in series:
            ax.plot(result[xkey], vals[key], "o-", ms=3, label=label)
        ax.set_yscale("symlog", linthresh=1e-2)  # traces can be negative early in training
        ax.set_xlabel(xlabel)
        if xkey == "loss":
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    axes[0].set_title("sharpness along the trajectory")
    axes[1].set_title("sharpness against train loss")
    if panels == 3:
        ax = axes[2]
        ax.semilogy(result["density_grid"][-1], np.maximum(result["density"][-1], 1e-12))
        ax.set_xlabel("eigenvalue (eff.)")
        ax.set_title(f"spectral density, epoch {result['epoch'][-1]}")
    save_figure(fig, path)
