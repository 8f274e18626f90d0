"""Every plot command renders on a tiny run, and every axis of every figure is labelled
(figures that read like a paper's)."""
import importlib

import numpy as np
import pytest

from landscape import train

PLOT_MODULES = ["sharpness", "toy", "regimes", "double_descent", "interpolation", "evaluation", "surface"]


@pytest.fixture
def figures(monkeypatch):
    """Capture each figure instead of (before) writing it."""
    import landscape.plots as plots
    captured = []
    real = plots.save_figure

    def capture(fig, path):
        captured.append(fig)
        real(fig, path)
    monkeypatch.setattr(plots, "save_figure", capture)
    for name in PLOT_MODULES:
        module = importlib.import_module(f"landscape.plots.{name}")
        if hasattr(module, "save_figure"):
            monkeypatch.setattr(module, "save_figure", capture)
    return captured


def unlabelled_axes(fig) -> list[str]:
    bad = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        is_colorbar = hasattr(ax, "_colorbar")
        if not ax.get_ylabel().strip():
            bad.append(f"axes {i}: no y label ({ax.get_title()!r})")
        twins = [o for o in ax.get_shared_x_axes().get_siblings(ax) if o is not ax]
        if not is_colorbar and not ax.get_xlabel().strip() and not any(o.get_xlabel().strip() for o in twins):
            bad.append(f"axes {i}: no x label ({ax.get_title()!r})")
    return bad


@pytest.mark.slow
def test_every_plot_command_labels_every_axis(tmp_path, tiny, cli, figures):
    sw = tmp_path / "sw"
    for elr in (1e-3, 1e-2, 0.3):
        train(out=str(sw / f"elr{elr:g}.h5"), progress=False, **dict(tiny, elr=elr, epochs=6, label_noise=0.2))
    run = str(sw / "elr0.01.h5")
    commands = [
        ["toy", "--steps", "300"],
        ["sharpness", run, "--checkpoints", "all", "--probes", "3", "--eigs", "1", "--density",
         "--density-steps", "6", "--batches", "1", "-q"],
        ["interpolate", f"{run}@1", f"{run}@6", "--points", "3", "--extend", "0", "-q"],
        ["interpolate", run, "--along", "1,2,3", "--points", "3", "--extend", "0", "-q"],
        ["regimes", str(sw), "--min-points", "3", "--min-tail", "2"],
        ["double-descent", str(sw), "-q"],
        ["evaluate", run, "--checkpoints", "2,6", "-q"],
        ["surface", f"{run}@6", "--grid", "-1:1:3", "--trajectory", run, "-q"],
    ]
    for argv in commands:
        before = len(figures)
        code, _, err = cli(argv + ["--plot", str(tmp_path / f"{argv[0]}.png")])
        assert code == 0, (argv, err)
        assert len(figures) == before + 1, argv
        assert (tmp_path / f"{argv[0]}.png").stat().st_size > 1000
        assert not unlabelled_axes(figures[-1]), (argv[0], unlabelled_axes(figures[-1]))


def test_ordered_parameters_get_an_ordered_colour_map():
    from landscape.plots import ordered_colors
    colors, mappable = ordered_colors([1e-5, 1e-4, 7.5e-3, 1e-1])
    assert len({tuple(np.round(c, 6)) for c in colors}) == 4  # no repeated colours
    # monotone along the map: the normalised positions increase with the ELR
    positions = mappable.norm(np.array([1e-5, 1e-4, 7.5e-3, 1e-1]))
    assert np.all(np.diff(positions) > 0)
