"""Figures: one style for every command. The file backend, an ordered colour map with a
colour bar for ordered parameters (ELR, LR), the regime colours with their legend, axes that
read like a paper's."""
from __future__ import annotations
import math
import os

REGIME_COLORS = {1: "tab:blue", 2: "tab:orange", 3: "tab:red", None: "0.6"}
REGIME_NAMES = {1: "1 convergence", 2: "2 chaotic equilibrium", 3: "3 divergence", None: "undetermined"}


def ordered_colors(values, cmap: str = "viridis", log: bool = True):
    """(colours, ScalarMappable) for an ordered parameter: a colour per value along ``cmap``
    (log scale by default: ELRs span decades), the mappable for ``colorbar``."""
    import matplotlib
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize
    v = np.asarray(values, float)
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (1.0, 10.0)
    if lo == hi:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 1, hi + 1)
    norm = LogNorm(lo, hi) if log and lo > 0 else Normalize(lo, hi)
    mappable = ScalarMappable(norm=norm, cmap=matplotlib.colormaps[cmap])
    return [mappable.to_rgba(x) for x in v], mappable


def colorbar(fig, mappable, axes, label: str):
    """A colour bar beside ``axes`` (one axes or a list) labelled with the parameter."""
    cb = fig.colorbar(mappable, ax=axes, pad=0.02, fraction=0.05)
    cb.set_label(label)
    return cb


def regime_legend(ax, regimes=(1, 2, 3, None), **kwargs) -> None:
    """A legend naming the regime colours (lines, dots and bands of the figure use them)."""
    from matplotlib.patches import Patch
    handles = [Patch(color=REGIME_COLORS[r], label=REGIME_NAMES[r]) for r in regimes]
    ax.legend(handles=handles, fontsize=7, title="regime", title_fontsize=7, **kwargs)


def log_or_symlog(ax, values, axis: str = "y") -> None:
    """Log scale when every value is positive; otherwise symlog with a threshold from the data,
    so a few negative values (early Hessian traces) neither vanish nor fill the axis with ticks."""
    import numpy as np
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if len(v) and np.all(v > 0):
        setter("log")
    elif len(v) and np.any(v != 0):
        setter("symlog", linthresh=max(float(np.percentile(np.abs(v[v != 0]), 10)), 1e-12))


def no_minor_labels(ax) -> None:
    """Readable log axes: labels at 1, 2 and 5 x 10^k, none on minor ticks (on an axis spanning
    under a decade matplotlib labels every minor tick, and they collide)."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":  # labels at 1, 2, 5 x 10^k: some fall inside any range
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
            axis.set_minor_formatter(NullFormatter())


def new_figure(panels: int = 1, width: float = 4.6, height: float = 3.8, max_cols: int | None = None):
    """(figure, axes) with ``panels`` panels, side by side or in rows of ``max_cols``; axes is a
    flat list even for one panel (unused cells of the last row are hidden)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    cols = panels if max_cols is None else max(1, min(panels, max_cols))
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")  # room for colour bars and legends
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def readable_log_axes(fig) -> None:
    """Every log axis labelled where labels fit: at 1, 2 and 5 x 10^k over at most two decades,
    at the powers of ten (at most about seven of them) over more; minor ticks unlabelled."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(limits)
            if not (lo > 0 and hi > lo):
                continue
            decades = math.log10(hi / lo)
            if decades <= 2:  # (the thresholds: label 2 and 5 too, which matplotlib skips past a decade)
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False,
                                                                 minor_thresholds=(math.inf, math.inf)))
            else:
                axis.set_major_locator(LogLocator(base=10, subs=(1.0,), numticks=8))
                axis.set_major_formatter(LogFormatterSciNotation())
            axis.set_minor_formatter(NullFormatter())


INSPECT = []  # functions called with (figure, path) before a figure is written (the suite's checks)


def save_figure(fig, path: str) -> None:
    """Write the figure atomically (its format from the extension of ``path``)."""
    import matplotlib.pyplot as plt
    from ..files import atomic_write
    readable_log_axes(fig)
    for inspect in INSPECT:
        inspect(fig, path)
    suffix = os.path.splitext(path)[1]
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=suffix[1:] or "png"), suffix=suffix)
    plt.close(fig)
