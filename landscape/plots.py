"""Figures: one place that picks the file backend and writes PNGs."""
from __future__ import annotations


def new_figure(ncols: int = 1, width: float = 4.6, height: float = 3.8):
    """(figure, axes) with ``ncols`` panels side by side; axes is a list even for one panel."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
