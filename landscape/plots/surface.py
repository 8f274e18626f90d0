"""Figures of ``landscape surface``."""
from __future__ import annotations

import numpy as np

from . import colorbar, new_figure, save_figure


def plot_surface(result: dict, path: str) -> None:
    """Contours of the loss (log-scaled levels, a colour bar) and the error on the slice, the
    solutions marked, and the run's checkpoints drawn as a path when projected."""
    import matplotlib
    keys = [k for k in ("train_loss", "test_loss", "train_error", "test_error") if k in result][:2]
    fig, axes = new_figure(len(keys), 5.0, 4.3)
    x, y = np.asarray(result["x"]), np.asarray(result["y"])
    path_colors = None
    if result.get("path_x") is not None and len(result["path_x"]):  # one epoch scale for every panel
        from matplotlib.cm import ScalarMappable
        epochs = np.asarray(result["path_epochs"])
        path_colors = ScalarMappable(matplotlib.colors.Normalize(epochs.min(), max(epochs.max(), epochs.min() + 1)),
                                     cmap="autumn")
    for ax, key in zip(axes, keys):
        z = np.asarray(result[key])
        if key.endswith("loss"):
            z = np.maximum(z, 1e-12)
            levels = np.geomspace(z.min(), z.max(), 25) if z.max() > z.min() else 25
            cs = ax.contourf(x, y, z, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="viridis")
            label = f"{key.replace('_', ' ')} (cross-entropy, log levels)"
        else:
            cs = ax.contourf(x, y, z, levels=20, cmap="magma")
            label = f"{key.replace('_', ' ')} (1 - accuracy)"
        cb = colorbar(fig, cs, ax, label)
        if key.endswith("loss"):  # plain numbers on a log colour bar
            from matplotlib.ticker import FormatStrFormatter, LogLocator
            cb.ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            cb.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            cb.ax.yaxis.set_minor_formatter(FormatStrFormatter(""))
        for name, (mx, my) in result["marks"].items():
            ax.plot(mx, my, "w*", ms=12, mec="k")
            ax.annotate(name, (mx, my), xytext=(4, 4), textcoords="offset points", color="w", fontsize=9)
        if result.get("path_x") is not None and len(result["path_x"]):
            ax.plot(result["path_x"], result["path_y"], "-", color="w", lw=1)
            ax.scatter(result["path_x"], result["path_y"], c=result["path_epochs"], cmap=path_colors.cmap,
                       norm=path_colors.norm, s=14, zorder=3, edgecolor="k", lw=0.3, label="checkpoints")
            ax.legend(fontsize=7, loc="lower right")
        what = "through three solutions" if result["directions"] == "three solutions" else \
            f"{result['directions']} directions"
        ax.set(xlabel="x (slice coordinate)", ylabel="y (slice coordinate)",
               title=f"{what}, {result['space']} slice")
    if path_colors is not None:
        colorbar(fig, path_colors, axes, "checkpoint epoch (the run's path)")
    save_figure(fig, path)
