"""Figure of ``landscape random-walk``."""
from __future__ import annotations


def plot_random_walk(result: dict, path: str) -> None:
    """Each run's angle to its start against the epoch (the ELR's colour), over the band (2.5 to
    97.5 percentiles) and mean of random walks with the run's own steps (grey, dashed); one
    panel per run, titled with the verdict and its evidence."""
    from . import colorbar, new_figure, ordered_colors, save_figure
    rows = result["rows"]
    colors, mappable = ordered_colors([r["rate"] for r in rows])
    fig, axes = new_figure(len(rows), 4.0, 3.2, max_cols=4)
    for ax, r, c in zip(axes, rows, colors):
        ax.fill_between(r["epochs"], r["walk_low_deg"], r["walk_high_deg"], color="0.8", lw=0,
                        label="random walk, 95% band")
        ax.plot(r["epochs"], r["walk_mean_deg"], color="0.35", ls="--", lw=0.9, label="random walk, mean")
        ax.plot(r["epochs"], r["angle_deg"], color=c, lw=1.3, label="run")
        ax.set_xlabel("epoch")
        ax.set_ylabel("angle to the start (degrees)")
        ax.set_ylim(0, max(95.0, float(max(r["angle_deg"].max(), r["walk_high_deg"].max())) + 3))
        ax.set_title(f"{r['rate_name']} {r['rate']:.3g}: {r['verdict']}\np = {r['p_value']:.3g}, "
                     f"largest deviation {r['max_deviation_deg']:+.2g}° (epoch {r['max_deviation_epoch']})",
                     fontsize=7)
    if rows:
        axes[0].legend(fontsize=6, loc="lower right")
        colorbar(fig, mappable, axes, rows[0]["rate_name"])
    save_figure(fig, path)
