"""Interpolation and loss barriers against known answers."""
import math

import numpy as np
import pytest
import torch

from landscape import train
from landscape.data import Dataset
from landscape.interpolation import (alpha_grid, barrier_summary, interpolate, interpolate_models,
                                     path_parameters)
from landscape.models import batchnorm_layers, si_groups
from landscape.trajectory import read_analysis


def _data(x, y, xt=None, yt=None, classes=2):
    return Dataset("synthetic", x, y, x if xt is None else xt, y if yt is None else yt, classes)


def test_grid_holds_both_ends():
    a = alpha_grid(25, 0.2)
    assert 0.0 in a and 1.0 in a and a.min() < 0 and a.max() > 1
    assert len(alpha_grid(2, 0.0)) == 2
    np.testing.assert_allclose(np.diff(a), 1 / 24)


def test_identical_endpoints_give_zero_barrier_and_flat_path(tmp_path, tiny):
    from landscape.analysis import analysis_data
    from landscape.interpolation import interpolate_pair
    from landscape.points import load_point
    t = train(out=str(tmp_path / "t.h5"), **tiny)
    (a, meta), (b, _) = load_point(f"{t.path}@3"), load_point(f"{t.path}@3")
    r = interpolate_pair(a, b, meta, analysis_data(meta["config"], None, "cpu", torch.float32),
                         alpha_grid(5, 0.25))
    with pytest.raises(ValueError, match="the same point"):  # the command refuses it at once
        interpolate(f"{t.path}@3", f"{t.path}@3", points=5, write=False)
    for key in ("train_loss", "test_loss", "train_error", "test_error"):
        assert np.ptp(r[key]) < 1e-6, key
        assert abs(r["summary"][key]["barrier"]) < 1e-6
        assert abs(r["summary"][key]["barrier_mean_ends"]) < 1e-6
    assert r["angle_degrees"] < 1e-3


class Softmax(torch.nn.Module):
    """A linear softmax classifier: cross-entropy is convex in its weights."""
    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 5, generator=g, dtype=torch.float64) * 2)

    def forward(self, x):
        return x @ self.w.T


def test_convex_loss_has_no_barrier():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (200,), generator=g)
    r = interpolate_models(Softmax(1), Softmax(2), _data(x, y, classes=3), alpha_grid(21, 0.3),
                           which="train", si_names=[])
    s = barrier_summary(r["alpha"], r["train_loss"])
    assert s["convex"] and s["barrier"] <= 1e-12
    # and the chord's loss really is below the chord of the ends everywhere inside
    inside = (r["alpha"] >= 0) & (r["alpha"] <= 1)
    a = r["alpha"][inside]
    assert np.all(r["train_loss"][inside] <= (1 - a) * s["start"] + a * s["end"] + 1e-12)


class DoubleWell(torch.nn.Module):
    """Logits (-g(w), 0) with g(w) = s (w^2 - 1)^2 - 5: for label 0 the loss is softplus(g(w)),
    a double well in w with minima at w = +-1 and its peak softplus(s - 5) at w = 0."""
    def __init__(self, w, s=6.0):
        super().__init__()
        self.w, self.s = torch.nn.Parameter(torch.tensor([float(w)], dtype=torch.float64)), s

    def forward(self, x):
        g = self.s * (self.w ** 2 - 1) ** 2 - 5
        return torch.stack([-g.expand(len(x)), torch.zeros(len(x), dtype=torch.float64)], 1)


def test_double_well_barrier_matches_the_analytic_height():
    x = torch.zeros(10, 1, dtype=torch.float64)
    y = torch.zeros(10, dtype=torch.long)
    r = interpolate_models(DoubleWell(-1), DoubleWell(1), _data(x, y), alpha_grid(25, 0.2),
                           which="train", si_names=[])
    s = barrier_summary(r["alpha"], r["train_loss"])
    height = math.log1p(math.exp(1.0)) - math.log1p(math.exp(-5.0))
    assert math.isclose(s["barrier"], height, rel_tol=1e-9)
    assert math.isclose(s["barrier_mean_ends"], height, rel_tol=1e-9)
    assert s["barrier_alpha"] == 0.5 and not s["convex"]
    # the path itself follows softplus(g(2 alpha - 1))
    w = 2 * r["alpha"] - 1
    expected = np.log1p(np.exp(6 * (w ** 2 - 1) ** 2 - 5))
    np.testing.assert_allclose(r["train_loss"], expected, rtol=1e-10)


def test_barrier_definitions_differ_for_unequal_ends():
    a = np.linspace(0, 1, 11)
    v = 1 - a  # a straight line from 1 to 0
    s = barrier_summary(a, v)
    assert abs(s["barrier"]) < 1e-12 and math.isclose(s["barrier_mean_ends"], 0.5)


def _manual_recompute(model, x, batch_size):
    """Each BN layer's input in a train-mode pass (every BN normalising by its batch), averaged
    over the batches weighted by their sizes: per-batch means and unbiased variances, as the
    official code's recompute (SWA's bn_update) gives."""
    import copy
    probe = copy.deepcopy(model).train()
    seen = {}
    for layer in batchnorm_layers(probe):
        layer.register_forward_hook(lambda m, inp, out: seen.setdefault(m, []).append(inp[0].detach()))
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            probe(x[i:i + batch_size])
    out = []
    for layer in batchnorm_layers(probe):
        inputs = seen[layer]
        dims = [0] + list(range(2, inputs[0].dim()))
        w = torch.tensor([float(len(t)) for t in inputs], dtype=inputs[0].dtype)
        w = (w / w.sum())[:, None]
        out.append(((w * torch.stack([t.mean(dims) for t in inputs])).sum(0),
                    (w * torch.stack([t.var(dims, unbiased=True) for t in inputs])).sum(0)))
    return out


def test_batchnorm_recompute_at_the_midpoint(tmp_path, tiny):
    from landscape.interpolation import evaluate_point
    from landscape.data import load_dataset
    t = train(out=str(tmp_path / "t.h5"), **tiny)
    a, b = t.load_model(1), t.load_model(3)
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=256)
    mid = t.load_model(1)
    pa = {k: v.detach() for k, v in a.named_parameters()}
    pb = {k: v.detach() for k, v in b.named_parameters()}
    with torch.no_grad():
        for k, v in path_parameters(pa, pb, [], 0.5, "chord").items():
            dict(mid.named_parameters())[k].copy_(v)
    stale = [(l.running_mean.clone(), l.running_var.clone()) for l in batchnorm_layers(mid)]
    # batches of 100, 100 and 56: equal weights would differ from weights by size
    manual = _manual_recompute(mid, data.x_train, 100)
    import torch.nn.functional as F
    evaluate_point(mid, {"train": [(data.x_train, data.y_train)]}, "recompute", F.cross_entropy, 100, data.x_train)
    for layer, (mm, mv), (sm, sv) in zip(batchnorm_layers(mid), manual, stale):
        torch.testing.assert_close(layer.running_mean, mm, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.running_var, mv, rtol=1e-5, atol=1e-6)
        assert (layer.running_mean - sm).abs().max() > 1e-2 or (layer.running_var - sv).abs().max() > 1e-2


def test_sphere_path_ignores_the_scale_of_b(tmp_path, tiny):
    t = train(out=str(tmp_path / "t.h5"), **tiny)
    from landscape.data import load_dataset
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=256)
    a, b = t.load_model(1), t.load_model(3)
    scaled = t.load_model(3)
    with torch.no_grad():
        for _, p in si_groups(scaled):
            p.mul_(4.0)
    alphas = alpha_grid(5, 0.25)
    base = interpolate_models(a, b, data, alphas, path="sphere", batch_size=64)
    other = interpolate_models(a, scaled, data, alphas, path="sphere", batch_size=64)
    for key in ("train_loss", "test_loss", "train_error", "test_error"):
        np.testing.assert_allclose(other[key], base[key], rtol=1e-5, atol=1e-6, err_msg=key)
    chord = interpolate_models(a, scaled, data, alphas, path="chord", batch_size=64)
    assert not np.allclose(chord["train_loss"], base["train_loss"], rtol=1e-3)  # the chord does care


def test_cli_along_appends_and_plots(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), **tiny)
    code, out, _ = cli(["interpolate", t.path, "--along", "1,2,3", "--points", "3", "--extend", "0",
                        "--data", "train", "--plot", str(tmp_path / "p.png"), "--json", str(tmp_path / "p.json")])
    assert code == 0 and "barrier (above the chord of the ends)" in out and "above the ends' mean" in out
    res, attrs = read_analysis(t.path, "interpolation/along-t@1..3")
    assert res["train_loss"].shape == (2, 3) and list(res["epoch_a"]) == [1, 2]
    # a second pair does not replace the first: results are keyed by their inputs
    code, out, _ = cli(["interpolate", f"{t.path}@1", f"{t.path}@3", "--points", "3", "--extend", "0"])
    assert code == 0 and "/analyses/interpolation/t@1--t@3" in out
    code, out, _ = cli(["interpolate", f"{t.path}@2", f"{t.path}@3", "--points", "3", "--extend", "0"])
    from landscape.trajectory import Trajectory
    assert {"interpolation/along-t@1..3", "interpolation/t@1--t@3", "interpolation/t@2--t@3"} <= set(Trajectory(t.path).analyses)
    assert read_analysis(t.path, "interpolation/t@1--t@3")[0]["epoch_a"][0] == 1
    assert (tmp_path / "p.png").exists() and (tmp_path / "p.json").exists()


def test_bad_input(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), **tiny)
    other = train(out=str(tmp_path / "o.h5"), progress=False, **dict(tiny, width=8, epochs=1))
    cases = [
        (["interpolate", str(tmp_path / "missing.pt"), f"{t.path}@3"], "no such file"),
        (["interpolate", f"{t.path}@3", f"{other.path}@1"], "different architectures: width 4 vs 8"),
        (["interpolate", f"{t.path}@3", f"{t.path}@1", "--points", "1"], "--points must be at least 2"),
        (["interpolate", f"{t.path}@9", f"{t.path}@1"], "no checkpoint at epoch 9"),
        (["interpolate", f"{t.path}@3"], "give two inputs"),
    ]
    for argv, words in cases:
        code, _, err = cli(argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert words in err, err


def test_float64_runs_are_analysed_in_float64(tmp_path, tiny):
    """A float64 trajectory's points are rebuilt in float64 (bit for bit) and its interpolation
    endpoints and curvature agree with a float64 computation by hand to 1e-10."""
    import torch.nn.functional as F
    from landscape.data import load_dataset
    from landscape.hessian import Curvature
    from landscape.interpolation import interpolate
    t = train(out=str(tmp_path / "t.h5"), progress=False, **dict(tiny, dtype="float64"))
    model = t.load_model(3)
    for k, v in model.state_dict().items():
        assert v.dtype == t.state_dict(3)[k].dtype and torch.equal(v, t.state_dict(3)[k]), k
    res = interpolate(f"{t.path}@1", f"{t.path}@3", points=3, extend=0.0, data="train", bn="batch",
                      write=False)["pairs"][0]
    data = load_dataset("mnist1d", tiny["data_root"], train_subset=256)
    x = data.x_train.double()
    for alpha, epoch in ((0.0, 1), (1.0, 3)):
        net = t.load_model(epoch).train()
        with torch.no_grad():
            losses = [F.cross_entropy(net(x[i:i + 64]), data.y_train[i:i + 64], reduction="sum")
                      for i in range(0, 256, 64)]
        ref = float(sum(losses)) / 256
        got = res["train_loss"][list(res["alpha"]).index(alpha)]
        assert abs(got - ref) <= 1e-10 * ref, (alpha, got, ref)
    curv = Curvature(model, [(x[:64], data.y_train[:64])], bn="batch")
    assert curv.theta.dtype == torch.float64
    v = torch.randn(curv.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta = curv.theta.clone().requires_grad_(True)  # double backward, by hand, in float64
    g = torch.autograd.grad(curv.loss(theta), theta, create_graph=True)[0]
    Hv = torch.autograd.grad(g @ v, theta)[0]
    torch.testing.assert_close(curv.hvp(v), Hv, rtol=1e-10, atol=1e-10 * float(Hv.abs().max()))
