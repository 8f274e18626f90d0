"""Loss surfaces against known answers: a quadratic model's closed form, filter
normalisation and tangent projection component-wise, norms kept on the sphere, an SI network
flat along its radial direction, PCA recovering a known 2-D path, and the command end to end."""
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from landscape import train
from landscape.models import build_model, model_spec, si_groups
from landscape.surface import Slice, evaluate_surface, filter_normalised, pca_directions, tangent


def test_a_quadratic_models_surface_matches_its_closed_form():
    """A linear model under MSE: L(w) = mean((X w - t)^2), a quadratic in w, everywhere."""
    g = torch.Generator().manual_seed(0)
    X, t = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    params = dict(model.named_parameters())
    d1, d2 = filter_normalised(params, g), filter_normalised(params, g)
    sl = Slice(params, [], "flat", directions=(d1, d2))
    xs = ys = np.linspace(-1, 1, 5)
    res = evaluate_surface(model, sl, xs, ys, {"train": [(X, t)]}, "batch", F.mse_loss, 64, X)
    w0 = model.weight.detach().T
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            w = w0 + x * d1["weight"].T + y * d2["weight"].T
            assert res["train_loss"][i, j] == pytest.approx(float(((X @ w - t) ** 2).mean()), rel=1e-12)
    assert "train_error" not in res  # targets are not class indices


def test_filter_normalisation_and_tangent_projection_componentwise():
    model = build_model(model_spec("convnet", (1, 16), 3, width=3), 0).double()
    params = {n: p for n, p in model.named_parameters()}
    params["head.bias"] = model.head.bias  # a 1-D tensor gets no component
    d = filter_normalised(params, torch.Generator().manual_seed(1))
    for n, p in params.items():
        if p.dim() <= 1:
            assert torch.all(d[n] == 0)
        else:
            torch.testing.assert_close(d[n].flatten(1).norm(dim=1), p.detach().double().flatten(1).norm(dim=1))
    si = [n for n, _ in si_groups(model)]
    t = tangent(d, params, si)
    theta = torch.cat([params[n].detach().double().reshape(-1) for n in si])
    dt = torch.cat([t[n].reshape(-1) for n in si])
    assert abs(float(dt @ theta)) < 1e-10 * float(dt.norm() * theta.norm())
    assert torch.equal(t["head.bias"], d["head.bias"])  # non-SI parameters untouched


def test_sphere_slices_keep_the_norm_and_pass_through_the_solutions():
    models = [build_model(model_spec("convnet", (1, 16), 3, width=3), s).double() for s in range(3)]
    si = [n for n, _ in si_groups(models[0])]
    params = [{n: p for n, p in m.named_parameters() if n in si} for m in models]
    with torch.no_grad():  # B and C at other radii: only their directions matter on the sphere
        for p in params[1].values():
            p.mul_(3.0)
    rho = float(torch.cat([p.reshape(-1) for p in params[0].values()]).double().norm())
    three = Slice(params[0], si, "sphere", solutions=params)
    gen = torch.Generator().manual_seed(0)
    around = Slice(params[0], si, "sphere", directions=(filter_normalised(params[0], gen), filter_normalised(params[0], gen)))
    for sl in (three, around):
        for x, y in ((0.3, -0.7), (1.0, 1.0), (-2.0, 0.5)):
            assert float(sl.flat_point(x, y).norm()) == pytest.approx(rho, rel=1e-12)
    for name, (x, y) in three.marks.items():
        target = params["ABC".index(name)]
        flat = torch.cat([target[n].reshape(-1).double() for n in si])
        torch.testing.assert_close(three.flat_point(x, y), flat * rho / flat.norm(), rtol=1e-9, atol=1e-12)
    with pytest.raises(Exception, match="same point"):
        Slice(params[0], si, "sphere", solutions=[params[0], {n: 2 * p for n, p in params[0].items()}, params[2]])


def test_an_si_network_is_flat_along_its_radial_direction(tiny, tmp_path):
    """Moving along theta itself only rescales the SI weights: the loss does not change (with
    mini-batch statistics), which is why flat-space directions waste much of their length."""
    t = train(out=str(tmp_path / "t.h5"), progress=False, **tiny)
    model = t.load_model()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    radial = {n: p.detach().double() for n, p in params.items()}
    sl = Slice(params, [], "flat", directions=(radial, {n: torch.zeros_like(v) for n, v in radial.items()}))
    from landscape.data import dataset_of
    data = dataset_of(t.config, tiny["data_root"])
    batches = [(data.x_train[:128], data.y_train[:128])]
    res = evaluate_surface(model, sl, np.array([-0.5, 0.0, 1.0, 3.0]), np.array([0.0]), {"train": batches}, "batch",
                           F.cross_entropy, 128, data.x_train)
    np.testing.assert_allclose(res["train_loss"][0], res["train_loss"][0][1], rtol=1e-4)


def test_pca_recovers_a_known_two_dimensional_path():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(50, generator=g, dtype=torch.float64)
    u, v = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    u, v = u / u.norm(), v - (v @ u) * u / (u @ u)
    v = v / v.norm()
    angles = np.linspace(0, 2.5, 12)
    points = [{"w": base + 3 * math.cos(a) * u + math.sin(a) * v} for a in angles]
    d1, d2, explained = pca_directions(points, ["w"])
    basis = torch.stack([d1["w"], d2["w"]])
    for target in (u, v):  # both lie in the recovered plane
        residual = target - basis.T @ (basis @ target)
        assert float(residual.norm()) < 1e-10
    assert explained[0] > explained[1] > 0
    sl = Slice({"w": points[-1]["w"]}, [], "flat", directions=(d1, d2))
    for p in points:  # the path's coordinates reproduce its distances exactly
        x, y = sl.project(p)
        assert math.hypot(x, y) == pytest.approx(float((p["w"] - points[-1]["w"]).norm()), rel=1e-9, abs=1e-9)


def test_command_end_to_end(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), progress=False, **tiny)
    code, out, err = cli(["surface", f"{t.path}@3", "--grid", "-1:1:3", "--trajectory", t.path, "-q",
                          "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
                          "--vtk", str(tmp_path / "s")])
    assert code == 0, err
    res = json.load(open(tmp_path / "s.json"))
    assert np.array(res["train_loss"]).shape == (3, 3) and len(res["path_x"]) == 4  # checkpoints 0..3
    assert res["path_x"][-1] == pytest.approx(0, abs=1e-9)  # the last checkpoint is the origin
    root = ET.parse(tmp_path / "s.vts").getroot()
    assert root.attrib["type"] == "StructuredGrid" and ET.parse(tmp_path / "s.vtp").getroot().attrib["type"] == "PolyData"
    code, out, _ = cli(["surface", f"{t.path}@1", f"{t.path}@2", f"{t.path}@3", "--grid", "-0.5:1.5:3", "-q"])
    assert code == 0 and "three solutions" in out
    from landscape.trajectory import Trajectory
    names = Trajectory(t.path).analyses
    assert "surface/t@3-sphere-random0" in names and "surface/t@1--t@2--t@3-sphere" in names
    for argv, words in ((["surface", f"{t.path}@1", f"{t.path}@2"], "one solution"),
                        (["surface", f"{t.path}@3", "--grid", "1:0:3"], "--grid"),
                        (["surface", f"{t.path}@3", "--directions", "pca"], "--trajectory")):
        code, _, err = cli(argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("bn", ["recompute", "batch"])
def test_points_evaluated_together_equal_one_at_a_time(tiny, tmp_path, bn):
    """vmap over stacked grid points (BatchNorm recomputed per point inside the batch) gives the
    numbers of the point-by-point path, whose BN recompute is the tested `interpolate` one."""
    t = train(out=str(tmp_path / "t.h5"), progress=False, **{**tiny, "dtype": "float64"})
    model = t.load_model()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(0)
    si = list(t.group_names)
    sl = Slice(params, si, "sphere", directions=(filter_normalised(params, gen), filter_normalised(params, gen)))
    from landscape.data import dataset_of
    data = dataset_of(t.config, tiny["data_root"])
    x, xt = data.x_train.double(), data.x_test.double()
    sets = {"train": [(x, data.y_train)], "test": [(xt[:300], data.y_test[:300])]}
    grid = np.linspace(-1, 1, 3)
    one = evaluate_surface(model, sl, grid, grid, sets, bn, F.cross_entropy, 64, x)
    calls = []
    together = evaluate_surface(model, sl, grid, grid, sets, bn, F.cross_entropy, 64, x,
                                on_point=lambda: calls.append(1), points_at_once=4)  # 9 = 4 + 4 + 1
    assert len(calls) == 9 and sorted(one) == sorted(together)
    for key in one:
        np.testing.assert_allclose(together[key], one[key], rtol=1e-9, atol=1e-12)
    assert np.ptp(one["train_loss"]) > 1e-3  # the points differ: the comparison means something


def test_a_sphere_slices_projection_inverts_its_great_circles():
    """project(flat_point(x, y)) = (x, y) around a point on the sphere: the path's coordinates
    are where the slice puts it (a least-squares difference would pull them inwards)."""
    model = build_model(model_spec("convnet", (1, 16), 3, width=3), 0).double()
    si = [n for n, _ in si_groups(model)]
    params = {n: p.detach() for n, p in model.named_parameters() if n in si}
    gen = torch.Generator().manual_seed(1)
    sl = Slice(params, si, "sphere", directions=(filter_normalised(params, gen), filter_normalised(params, gen)))
    for x, y in ((0.2, -0.1), (1.5, 0.7), (-2.5, 1.0)):
        point = sl.point(x, y)
        assert sl.project(point) == pytest.approx((x, y), abs=1e-9)
        # at any radius: only the direction counts on the sphere
        assert sl.project({n: 3.0 * v for n, v in point.items()}) == pytest.approx((x, y), abs=1e-9)


@pytest.mark.slow
def test_pca_on_the_sphere_follows_it_and_the_grid_covers_the_path(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), progress=False, **dict(tiny, epochs=6))
    code, _, err = cli(["surface", f"{t.path}@6", "--directions", "pca", "--trajectory", t.path, "-q",
                        "--json", str(tmp_path / "s.json"), "--points-at-once", "1"])
    assert code == 0, err
    res = json.load(open(tmp_path / "s.json"))
    assert res["space"] == "sphere"  # the default for an SI network, PCA directions included
    x, y = np.array(res["x"]), np.array(res["y"])
    px, py = np.array(res["path_x"]), np.array(res["path_y"])
    assert x.min() < px.min() and px.max() < x.max() and y.min() < py.min() and py.max() < y.max()
    assert (px.max() - px.min()) > 0.5 * (x.max() - x.min())  # the path fills the plot
    code, _, err = cli(["surface", f"{t.path}@6", "--directions", "pca", "--trajectory", t.path, "-q",
                        "--space", "flat", "--grid", "-1:1:3,-2:2:5", "--json", str(tmp_path / "f.json")])
    assert code == 0, err
    flat = json.load(open(tmp_path / "f.json"))
    assert flat["space"] == "flat" and np.array(flat["train_loss"]).shape == (5, 3)
