"""Figures of ``landscape evaluate``."""
from __future__ import annotations

from ..trajectory import Trajectory


def plot_checkpoint_metrics(result: dict, traj: Trajectory, path: str) -> None:
    """Train loss and mean stochastic effective gradient norm against epoch: the checkpoint
    protocol (dots) over training's epoch means (lines)."""
    from . import new_figure, save_figure
    fig, axes = new_figure(2, 4.8, 3.8)
    m = traj.metrics
    for ax, key, label in ((axes[0], "train_loss", "train loss"),
                           (axes[1], "effective_grad_norm", "mean stochastic effective grad norm")):
        ax.plot(m["epoch"], m[key], color="tab:grey", lw=1, label="epoch means (training)")
        ax.plot(result["epoch"], result[key], "o", color="tab:blue", ms=3,
                label="checkpoint (fixed order, no update)")
        ax.set(xlabel="epoch", ylabel=label, yscale="log", title=label)
        ax.legend(fontsize=7)
    save_figure(fig, path)
