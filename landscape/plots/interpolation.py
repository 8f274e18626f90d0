"""Figures of ``landscape interpolate``."""
from __future__ import annotations



def plot_interpolation(out: dict, path: str) -> None:
    from . import new_figure, save_figure
    fig, axes = new_figure(2, 5.0)
    for r in out["pairs"]:
        label = f"{r['epoch_a']}->{r['epoch_b']}" if len(out["pairs"]) > 1 else ""
        for ax, metric in zip(axes, ("loss", "error")):
            for split, style in (("train", "-"), ("test", "--")):
                key = f"{split}_{metric}"
                if key in r:
                    line, = ax.plot(r["alpha"], r[key], style, label=f"{split} {label}".strip())
                    ends = [i for i, a in enumerate(r["alpha"]) if abs(a) < 1e-9 or abs(a - 1) < 1e-9]
                    ax.plot(r["alpha"][ends], r[key][ends], "o", color=line.get_color())
    for ax, metric in zip(axes, ("loss", "error")):
        ax.axvline(0, color="grey", lw=0.5)
        ax.axvline(1, color="grey", lw=0.5)
        ax.set_xlabel("alpha (0 = A, 1 = B)")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    axes[0].set_title(f"{out['settings']['path']} path, BN {out['settings']['bn']}")
    save_figure(fig, path)
