"""Figures of ``landscape interpolate``."""
from __future__ import annotations

import numpy as np

from . import colorbar, new_figure, ordered_colors, save_figure


def plot_interpolation(out: dict, path: str) -> None:
    """Loss and error along each path (train solid, test dashed), A and B marked, the barrier
    (the largest rise above the chord of the ends, train loss) drawn as a vertical segment;
    several paths (--along) coloured in epoch order with a colour bar."""
    pairs = out["pairs"]
    fig, axes = new_figure(2, 5.0, 3.8)
    colors, mappable = ordered_colors([max(1, p.get("epoch_a") or 1) for p in pairs], cmap="viridis")
    for r, color in zip(pairs, colors if len(pairs) > 1 else ["tab:blue"]):
        alpha = np.asarray(r["alpha"])
        ends = [i for i, a in enumerate(alpha) if abs(a) < 1e-9 or abs(a - 1) < 1e-9]
        for ax, metric in zip(axes, ("loss", "error")):
            for split, style in (("train", "-"), ("test", "--")):
                key = f"{split}_{metric}"
                if key in r:
                    ax.plot(alpha, r[key], style, color=color, label=split if len(pairs) == 1 else None)
                    ax.plot(alpha[ends], np.asarray(r[key])[ends], "o", color=color, ms=4)
        s = r["summary"].get("train_loss")
        if s and s.get("barrier_alpha") is not None:
            a = s["barrier_alpha"]
            i = int(np.argmin(np.abs(alpha - a)))
            chord = (1 - a) * r["train_loss"][ends[0]] + a * r["train_loss"][ends[-1]]
            axes[0].plot([a, a], [chord, r["train_loss"][i]], color="k", lw=1.5,
                         label=f"barrier {s['barrier']:.3g}" if len(pairs) == 1 else None)
    for ax, metric in zip(axes, ("loss", "error")):
        ax.axvline(0, color="grey", lw=0.5)
        ax.axvline(1, color="grey", lw=0.5)
        ax.set_xlabel("alpha along the path (0 = A, 1 = B)")
        ax.set_ylabel(f"{metric} ({'cross-entropy' if metric == 'loss' else '1 - accuracy'})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if len(pairs) == 1:
        r = pairs[0]
        fig.suptitle(f"A = {r['a']}\nB = {r['b']}", fontsize=8)
    else:
        colorbar(fig, mappable, axes, "epoch of A (paths between consecutive checkpoints)")
    axes[0].set_title(f"{out['settings']['path']} path, BN {out['settings']['bn']}", fontsize=9)
    save_figure(fig, path)
