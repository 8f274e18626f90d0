"""Figures: one place that picks the file backend and writes PNGs."""
from __future__ import annotations


def new_figure(panels: int = 1, width: float = 4.6, height: float = 3.8, max_cols: int | None = None):
    """(figure, axes) with ``panels`` panels, side by side or in rows of ``max_cols``; axes is a
    flat list even for one panel (unused cells of the last row are hidden)."""
    import math
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    cols = panels if max_cols is None else max(1, min(panels, max_cols))
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def save_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
