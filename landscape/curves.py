"""Shapes of learning curves shared by the verdicts: the decreasing convex (completely
monotone) curves, fitted by non-negative least squares on a basis of constants and decaying
exponentials of several time scales."""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


TIME_SCALES = (0.01, 0.03, 0.08, 0.2, 0.5, 1.3)  # of the exponentials, in units of the span
FINE_TIME_SCALES = tuple(np.geomspace(0.005, 5.0, 32))  # dense: follows any smooth decay closely


def baseline_basis(epochs, scales=TIME_SCALES, linear: bool = False) -> np.ndarray:
    """Columns [1, -1, exp(-(e - e0)/tau)...], tau = span x ``scales`` (and with ``linear`` a
    falling line): with non-negative weights, every decreasing convex curve of these time
    scales (a learning curve without a bump)."""
    e = np.asarray(epochs, float)
    span = max(e[-1] - e[0], 1.0)
    taus = span * np.asarray(scales)
    line = [-(e - e[0]) / span] if linear else []
    return np.column_stack([np.ones_like(e), -np.ones_like(e)] + line + [np.exp(-(e - e[0]) / t) for t in taus])


def fit_baseline(y, basis) -> np.ndarray:
    """The least-squares decreasing convex curve (``basis`` from ``baseline_basis``)."""
    return basis @ nnls(basis, y)[0]
