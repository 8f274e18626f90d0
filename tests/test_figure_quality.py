"""Every --plot a command draws, checked as a reader would: no tick labels that overlap, every
colour mapping with its colour bar, no title or axis label cut off by the figure's edge
(matplotlib's own text extents, measured on the drawn figure)."""
import numpy as np
import pytest

import landscape.plots as plots
from landscape import train


def layout_problems(fig) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    edge = fig.bbox
    found = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = ax.get_title() or ax.get_label() or "an axes"
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    w = min(a.x1, b.x1) - max(a.x0, b.x0)
                    h = min(a.y1, b.y1) - max(a.y0, b.y0)
                    if w > 1 and h > 1:
                        found.append(f"{name!r}: {which} tick labels {labels[i].get_text()!r} and "
                                     f"{labels[j].get_text()!r} overlap")
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if text.get_visible() and text.get_text():
                box = text.get_window_extent(renderer)
                if box.x0 < edge.x0 - 1 or box.x1 > edge.x1 + 1 or box.y0 < edge.y0 - 1 or box.y1 > edge.y1 + 1:
                    found.append(f"{name!r}: {text.get_text()!r} is cut off by the figure's edge")
    for text in fig.texts + ([fig._suptitle] if fig._suptitle is not None else []):
        box = text.get_window_extent(renderer)
        if text.get_text() and (box.x0 < edge.x0 - 1 or box.x1 > edge.x1 + 1):
            found.append(f"figure text {text.get_text()[:40]!r} is cut off")
    # every colour mapping is explained by a colour bar of the same colour map and range
    bars = [ax._colorbar.mappable for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]

    def explained(a):
        return any(m is a or (m.get_cmap().name == a.get_cmap().name
                              and np.allclose([m.norm.vmin, m.norm.vmax], [a.norm.vmin, a.norm.vmax], rtol=1e-6))
                   for m in bars)
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None:
            continue
        for a in list(ax.collections) + list(ax.images):
            values = a.get_array()
            if values is not None and np.size(np.unique(np.asarray(values))) > 1 and not explained(a):
                found.append(f"{ax.get_title()!r}: a colour mapping ({a.get_cmap().name}) without its colour bar")
    return found


@pytest.fixture
def checked(monkeypatch):
    """Every figure written meanwhile, with its problems: {path: [problem, ...]}."""
    seen = {}
    monkeypatch.setattr(plots, "INSPECT", [lambda fig, path: seen.__setitem__(path, layout_problems(fig))])
    return seen


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("figs") / "sw"
    for elr in (1e-4, 1e-3, 3e-3, 1e-2, 0.1, 0.3, 1.0):  # decades of ELR: the axes' labels must fit
        train(out=str(folder / f"elr{elr:g}.h5"), progress=False, model="convnet", width=4, dataset="mnist1d",
              data_root=data_root, train_subset=256, batch_size=64, epochs=8, device="cpu", save_every=2,
              elr=elr, label_noise=0.1)
    return folder


@pytest.mark.slow
def test_every_plot_reads_cleanly(sweep, tmp_path, cli, checked):
    run = str(sweep / "elr0.001.h5")  # (fixture: 7 runs, 8 epochs each)
    commands = {
        "regimes": ["regimes", str(sweep), "--min-points", "2", "--min-tail", "2"],
        "sharpness": ["sharpness", run, "--checkpoints", "all", "--probes", "2", "--batches", "1", "-q"],
        "interpolate": ["interpolate", f"{run}@0", f"{run}@8", "--points", "5", "-q"],
        "surface": ["surface", f"{run}@8", "--grid", "-1:1:3", "--trajectory", run, "-q"],
        "evaluate": ["evaluate", run, "-q"],
        "double-descent": ["double-descent", str(sweep), "--min-width", "2", "--window", "1",
                           "--noise-window", "3"],
        "random-walk": ["random-walk", str(sweep), "--walks", "100"],
        "toy": ["toy", "--alphas", "1,2,4", "--elrs", "0.1,0.5", "--steps", "200"],
    }
    for name, argv in commands.items():
        code, _, err = cli(argv + ["--plot", str(tmp_path / f"{name}.png")])
        assert code == 0, (name, err)
    assert set(checked) == {str(tmp_path / f"{name}.png") for name in commands}
    problems = {path: p for path, p in checked.items() if p}
    assert not problems, problems
