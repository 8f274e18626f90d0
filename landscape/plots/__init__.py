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
    """Write the figure atomically (its format from the extension of ``path``)."""
    import os
    import matplotlib.pyplot as plt
    from ..files import atomic_write
    fig.tight_layout()
    suffix = os.path.splitext(path)[1]
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=suffix[1:] or "png"), suffix=suffix)
    plt.close(fig)
