"""Figures of ``landscape sharpness``."""
from __future__ import annotations

import numpy as np

from . import colorbar, log_or_symlog, new_figure, no_minor_labels, ordered_colors, save_figure


def plot_sharpness(result: dict, path: str) -> None:
    """One quantity per panel, each in its own unit: the effective Hessian trace (with its
    standard error), the top eigenvalue and the mean stochastic effective gradient norm against
    epoch; the trace against train loss as points coloured by epoch (a colour bar, no lines
    that would zig-zag); the spectral density of the last checkpoint when computed."""
    epochs = np.asarray(result["epoch"])
    series = [("trace_effective", "Hessian trace, effective (x rho^2)", "Hessian trace")]
    if "eigenvalues_effective" in result:
        series.append(("lambda_max", "top Hessian eigenvalue, effective", "top eigenvalue"))
    series.append(("mean_effective_grad_norm", "mean stochastic eff. gradient norm", "gradient noise"))
    values = {"lambda_max": np.asarray(result["eigenvalues_effective"])[:, 0]} if "eigenvalues_effective" in result else {}
    panels = len(series) + 1 + ("density" in result)
    fig, axes = new_figure(panels, 4.3, 3.6, max_cols=3)
    for ax, (key, label, title) in zip(axes, series):
        v = values.get(key, np.asarray(result.get(key, [])))
        if key == "trace_effective":
            ax.errorbar(epochs, v, yerr=2 * np.asarray(result["trace_stderr_effective"]), fmt="o-", ms=3,
                        capsize=2, label="±2 standard errors")
            ax.legend(fontsize=7)
        else:
            ax.plot(epochs, v, "o-", ms=3)
        log_or_symlog(ax, v)
        no_minor_labels(ax)
        ax.set(xlabel="epoch", ylabel=label, title=title)
    ax = axes[len(series)]
    colors, mappable = ordered_colors(epochs, cmap="viridis", log=False)  # epoch 0 included: linear
    trace = np.asarray(result["trace_effective"])
    ax.scatter(result["loss"], trace, c=colors, s=22, edgecolor="k", lw=0.4, zorder=3)
    ax.set(xscale="log", xlabel="train loss (curvature batches)",
           ylabel="Hessian trace, effective (x rho^2)", title="sharpness against train loss")
    log_or_symlog(ax, trace)
    no_minor_labels(ax)
    colorbar(fig, mappable, ax, "epoch")
    if "density" in result:
        ax = axes[-1]
        grid, dens = np.asarray(result["density_grid"][-1]), np.asarray(result["density"][-1])
        floor = dens.max() * 1e-6  # Gaussian tails below a millionth of the peak are not data
        ax.plot(grid, np.where(dens > floor, dens, np.nan))
        ax.set(yscale="log", xlabel="eigenvalue, effective (x rho^2)", ylabel="spectral density",
               title=f"Hessian spectrum (SLQ), epoch {epochs[-1]}")
    save_figure(fig, path)
