"""``landscape surface``: the loss on a 2-D slice of parameter space (Li et al. 2018; Garipov et
al. 2018), exact for scale-invariant networks.

A slice is a map (x, y) -> theta(x, y):
    around one solution theta with two directions d1, d2 (random, filter-normalised: each filter
        of d_k rescaled to the norm of the same filter of theta; 1-D tensors, biases and
        BatchNorm parameters, get no component, as in loss-landscape's default; or the top two
        PCA directions of a run's checkpoints):
        flat    theta + x d1 + y d2
        sphere  the SI part of each d_k projected on the tangent space of the sphere at theta
                (d <- d - (d.u) u, u = theta/rho), and the SI weights moved along the great circle
                of v = x d1 + y d2: cos(|v|/rho) theta + sin(|v|/rho) rho v/|v|, so every point
                keeps the norm rho and a step changes the direction, not the norm; the other
                parameters move flat
    through three solutions A, B, C (origin A, x towards B, y towards C, in units of |B - A|):
        flat    the plane A + x (B - A) + y e2 |B - A|, e2 the unit part of C - A orthogonal to B - A
        sphere  that plane through the SI directions of A, B, C (each scaled to A's radius),
                projected radially onto the sphere: every point keeps the norm rho
Loss and error at every grid point under a BatchNorm mode (``recompute`` fresh statistics, as
``interpolate``, or ``batch``); checkpoints of a run projected on the slice (least squares in
the slice's basis) to draw its path.
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch

from .analysis import analysis_data, evaluation_sets, results_target
from .data import resolve_device
from .errors import ArgumentError, LandscapeError
from .legacy import stored_config
from .measure import LOSSES
from .interpolation import DATA, PATH_BN_MODES, check_compatible, evaluate_point
from .progress import Progress
from .trajectory import Trajectory, append_analysis, model_state
from .points import load_point, parse_source

SLICE_SPACES = ("sphere", "flat")  # a slice through the sphere, or a flat plane
def parse_axis(text: str) -> np.ndarray:
    """'LO:HI:N' -> N evenly spaced values."""
    try:
        lo, hi, n = text.split(":")
        lo, hi, n = float(lo), float(hi), int(n)
    except ValueError:
        raise ArgumentError(f"grid {text!r}: write LO:HI:N, e.g. -1:1:21", "grid") from None
    if n < 2 or not hi > lo or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ArgumentError(f"grid {text!r}: need LO < HI and N >= 2", "grid")
    return np.linspace(lo, hi, n)


def _flat(tensors: dict, names) -> torch.Tensor:
    return torch.cat([tensors[n].reshape(-1).double() for n in names]) if names else torch.zeros(0, dtype=torch.float64)


def _unflat(flat: torch.Tensor, like: dict, names) -> dict:
    out, i = {}, 0
    for n in names:
        k = like[n].numel()
        out[n] = flat[i:i + k].view_as(like[n]).to(like[n].dtype)
        i += k
    return out


def filter_normalised(params: dict, generator: torch.Generator) -> dict:
    """A random Gaussian direction with each filter (slice along dim 0) rescaled to the norm of
    the same filter of the parameters; 1-D tensors get none (Li et al. 2018)."""
    out = {}
    for n, p in params.items():
        if p.dim() <= 1:
            out[n] = torch.zeros_like(p, dtype=torch.float64)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        w = p.detach().double()
        dn = d.flatten(1).norm(dim=1).clamp_min(1e-300)
        wn = w.flatten(1).norm(dim=1)
        out[n] = d * (wn / dn).view(-1, *([1] * (p.dim() - 1)))
    return out


def tangent(direction: dict, params: dict, si_names) -> dict:
    """The SI part of ``direction`` projected on the tangent space of the sphere at the SI
    weights: d - (d . u) u, u = theta / |theta| (jointly over the SI tensors)."""
    if not si_names:
        return direction
    theta, d = _flat(params, si_names), _flat(direction, si_names)
    u = theta / theta.norm()
    return {**direction, **_unflat(d - (d @ u) * u, direction, si_names)}


class Slice:
    """theta(x, y) for the slice of the module docstring; ``origin_coords`` and
    ``marks`` name the solutions' places."""

    def __init__(self, origin: dict, si_names: list, space: str, *, directions=None, solutions=None):
        if space not in SLICE_SPACES:
            raise ArgumentError(f"space must be one of {', '.join(SLICE_SPACES)}, got {space!r}", "space")
        self.origin = {k: v.detach().double() for k, v in origin.items()}
        self.names = list(origin)
        self.si = [n for n in si_names if n in origin] if space == "sphere" else []
        self.other = [n for n in self.names if n not in self.si]
        self.space = space
        self.marks = {"A": (0.0, 0.0)}
        self.kind = "three" if solutions is not None else "around"
        if solutions is not None:
            self._through_three(*[{k: v.detach().double() for k, v in s.items()} for s in solutions])
        else:
            d1, d2 = directions
            if self.si:
                d1, d2 = tangent(d1, self.origin, self.si), tangent(d2, self.origin, self.si)
            self.d = [_flat(d1, self.names), _flat(d2, self.names)]
            self.theta = _flat(self.origin, self.names)

    def _through_three(self, a, b, c):
        self.theta = _flat(a, self.names)
        pa, pb, pc = self.theta, _flat(b, self.names), _flat(c, self.names)
        if self.si:  # SI directions scaled to A's radius: the plane through those points
            idx = self._si_index()
            rho = pa[idx].norm()
            for p in (pb, pc):
                p[idx] = p[idx] * rho / p[idx].norm()
        e1 = pb - pa
        length = e1.norm()
        if length < 1e-12 * max(1.0, float(pa.norm())):
            raise LandscapeError("A and B are the same point (on the sphere: the same direction): "
                                 "the three solutions must span a plane")
        e1 = e1 / length
        w = pc - pa
        e2 = w - (w @ e1) * e1
        if e2.norm() < 1e-9 * length:
            raise LandscapeError("A, B and C lie on one line: the three solutions must span a plane")
        e2 = e2 / e2.norm()
        self.d = [e1 * length, e2 * length]
        self.marks = {"A": (0.0, 0.0), "B": (1.0, 0.0),
                      "C": (float(w @ e1 / length), float(w @ e2 / length))}

    def _si_index(self) -> torch.Tensor:
        mask, i = [], 0
        for n in self.names:
            k = self.origin[n].numel()
            mask.append(torch.full((k,), n in self.si))
            i += k
        return torch.cat(mask)

    def flat_point(self, x: float, y: float) -> torch.Tensor:
        point = self.theta + x * self.d[0] + y * self.d[1]
        if not self.si:
            return point
        idx = self._si_index()
        theta = self.theta[idx]
        rho = theta.norm()
        if self.kind == "three":  # the plane through the three, projected radially
            point[idx] = point[idx] * rho / point[idx].norm()
            return point
        v = x * self.d[0][idx] + y * self.d[1][idx]  # tangent at theta: the great circle of v
        nv = v.norm()
        if nv > 0:
            point[idx] = math.cos(nv / rho) * theta + math.sin(nv / rho) * rho * v / nv
        else:
            point[idx] = theta
        return point

    def point(self, x: float, y: float) -> dict:
        return _unflat(self.flat_point(x, y), self.origin, self.names)

    def project(self, params: dict) -> tuple[float, float]:
        """Least-squares coordinates of a parameter vector in the slice's basis: of its
        difference from the origin (flat), or, for the SI part of a slice around a point on the
        sphere, of the tangent vector whose great circle reaches its direction (the inverse of
        ``flat_point``)."""
        delta = _flat(params, self.names) - self.theta
        if self.si and self.kind == "around":
            idx = self._si_index()
            theta = self.theta[idx]
            rho = theta.norm()
            u, t = _flat(params, self.names)[idx], theta / rho
            u = u / u.norm()
            along = u - (u @ t) * t
            angle = torch.atan2(along.norm(), u @ t)
            delta[idx] = angle * rho * along / along.norm() if along.norm() > 0 else 0 * along
        gram = torch.stack([torch.stack([a @ b for b in self.d]) for a in self.d])
        rhs = torch.stack([a @ delta for a in self.d])
        xy = torch.linalg.solve(gram, rhs)
        return float(xy[0]), float(xy[1])


def pca_directions(checkpoints: list[dict], names) -> tuple[dict, dict, np.ndarray]:
    """The top two principal directions of the checkpoints centred at the last one, from the
    eigenvectors of their Gram matrix (T x T, never the parameters' covariance), each scaled to
    unit norm; and the share of variance each explains."""
    X = torch.stack([_flat(c, names) for c in checkpoints])
    X = X - X[-1]
    gram = X @ X.T
    vals, vecs = torch.linalg.eigh(gram)
    order = torch.argsort(vals, descending=True)[:2]
    dirs = []
    for k in order:
        d = X.T @ vecs[:, k]
        dirs.append(d / d.norm())
    like = checkpoints[-1]
    explained = (vals[order] / vals.clamp_min(0).sum()).numpy()
    return _unflat(dirs[0], {n: like[n].double() for n in names}, names), \
        _unflat(dirs[1], {n: like[n].double() for n in names}, names), explained


POINTS_AT_ONCE = 1  # the default of --points-at-once: batching measured slower on CPU (0.6x, benchmarks/RESULTS.md)


def evaluate_surface(model, sl: Slice, xs, ys, sets: dict, bn: str, criterion, batch_size: int,
                     bn_inputs, on_point=None, points_at_once: int = 1) -> dict:
    """Loss (and error) of every grid point: {'<set>_loss': [len(ys), len(xs)], ...}.
    ``points_at_once`` > 1 evaluates that many grid points in one pass of the data (``vmap`` of
    ``functional_call`` over their stacked parameters; in 'recompute' mode their BatchNorm
    statistics are recomputed together, each point its own), which gives the same numbers as one
    point at a time up to float rounding."""
    if points_at_once > 1:
        return _evaluate_surface_batched(model, sl, xs, ys, sets, bn, criterion, batch_size,
                                         bn_inputs, on_point, points_at_once)
    work = copy.deepcopy(model)
    slots = dict(work.named_parameters())
    rows = {}
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            with torch.no_grad():
                for k, v in sl.point(float(x), float(y)).items():
                    slots[k].copy_(v)
            for key, value in evaluate_point(work, sets, bn, criterion, batch_size, bn_inputs).items():
                rows.setdefault(key, np.full((len(ys), len(xs)), np.nan))[i, j] = value
            if on_point is not None:
                on_point()
    return rows


@torch.no_grad()
def _evaluate_surface_batched(model, sl, xs, ys, sets, bn, criterion, batch_size, bn_inputs,
                              on_point, points_at_once):
    from torch.func import functional_call, vmap
    from .models import batchnorm_layers, size_weighted_pass, with_batch_statistics
    template = with_batch_statistics(model) if bn == "batch" else copy.deepcopy(model)
    layers = batchnorm_layers(template)
    base_params = {n: p.detach() for n, p in template.named_parameters()}
    base_buffers = {n: b.detach() for n, b in template.named_buffers()}
    forward = vmap(lambda p, b, x: functional_call(template, (p, b), (x,)), in_dims=(0, 0, None))
    cells = [(i, j, float(x), float(y)) for i, y in enumerate(ys) for j, x in enumerate(xs)]
    rows = {}
    for start in range(0, len(cells), points_at_once):
        chunk = cells[start:start + points_at_once]
        k = len(chunk)
        points = [sl.point(x, y) for _, _, x, y in chunk]
        params = {n: (torch.stack([pt[n] for pt in points]).to(p.dtype) if n in points[0]
                      else p.expand(k, *p.shape)) for n, p in base_params.items()}
        buffers = {n: b.expand(k, *b.shape).clone() for n, b in base_buffers.items()}
        if bn == "recompute":
            # as recompute_batchnorm, for all k points at once: reset, then one train-mode pass
            # whose momentum b/(seen+b) makes the running values size-weighted batch means
            for n in buffers:
                if n.endswith("running_mean") or n.endswith("num_batches_tracked"):
                    buffers[n].zero_()
                elif n.endswith("running_var"):
                    buffers[n].fill_(1.0)
            template.train()
            size_weighted_pass(layers, bn_inputs, batch_size, lambda xb: forward(params, buffers, xb))
            template.eval()
        else:
            template.train()  # batch statistics, no running buffers to touch
        for name, batches in sets.items():
            loss = torch.zeros(k, dtype=torch.float64)
            correct = torch.zeros(k, dtype=torch.float64)
            seen, labels = 0, True
            for x, y in batches:
                for i in range(0, len(y), batch_size):
                    xc, yc = x[i:i + batch_size], y[i:i + batch_size]
                    out = forward(params, buffers, xc)  # [k, batch, classes]
                    loss += torch.stack([criterion(o, yc).double() for o in out]).cpu() * len(yc)
                    labels = labels and not yc.is_floating_point() and out.dim() == 3 and yc.dim() == 1
                    if labels:
                        correct += (out.argmax(-1) == yc).sum(-1).double().cpu()
                    seen += len(yc)
            for (i, j, _, _), value in zip(chunk, (loss / seen).tolist()):
                rows.setdefault(f"{name}_loss", np.full((len(ys), len(xs)), np.nan))[i, j] = value
            if labels:
                for (i, j, _, _), value in zip(chunk, (1.0 - correct / seen).tolist()):
                    rows.setdefault(f"{name}_error", np.full((len(ys), len(xs)), np.nan))[i, j] = value
        if on_point is not None:
            for _ in chunk:
                on_point()
    return rows


def write_vtk(prefix: str, result: dict, key: str = "train_loss") -> list[str]:
    """ParaView files: PREFIX.vts (the grid as a structured surface, height = log10 of ``key``,
    every loss/error array as point data) and, with a path, PREFIX.vtp (its polyline)."""
    from .files import atomic_write
    xs, ys = np.asarray(result["x"]), np.asarray(result["y"])
    z = np.log10(np.maximum(np.asarray(result[key]), 1e-300))
    nx, ny = len(xs), len(ys)
    points = " ".join(f"{xs[j]:.9g} {ys[i]:.9g} {z[i, j]:.9g}" for i in range(ny) for j in range(nx))
    arrays = "".join(
        f'<DataArray type="Float64" Name="{k}" format="ascii">'
        + " ".join(f"{v:.9g}" for v in np.asarray(result[k]).ravel()) + "</DataArray>"
        for k in result if k.endswith("_loss") or k.endswith("_error"))
    vts = (f'<?xml version="1.0"?><VTKFile type="StructuredGrid" version="0.1">'
           f'<StructuredGrid WholeExtent="0 {nx - 1} 0 {ny - 1} 0 0"><Piece Extent="0 {nx - 1} 0 {ny - 1} 0 0">'
           f'<PointData>{arrays}</PointData><Points><DataArray type="Float64" NumberOfComponents="3" '
           f'format="ascii">{points}</DataArray></Points></Piece></StructuredGrid></VTKFile>')
    written = []

    def write(path, text):
        atomic_write(path, lambda tmp: open(tmp, "w").write(text), suffix=path[-4:])
        written.append(path)
    write(prefix + ".vts", vts)
    if result.get("path_x") is not None and len(result["path_x"]):
        px, py = np.asarray(result["path_x"]), np.asarray(result["path_y"])
        pz = np.full(len(px), float(np.nanmax(z)) + 0.1)  # drawn above the surface
        pts = " ".join(f"{a:.9g} {b:.9g} {c:.9g}" for a, b, c in zip(px, py, pz))
        n = len(px)
        vtp = (f'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1"><PolyData>'
               f'<Piece NumberOfPoints="{n}" NumberOfLines="1"><Points><DataArray type="Float64" '
               f'NumberOfComponents="3" format="ascii">{pts}</DataArray></Points><Lines>'
               f'<DataArray type="Int64" Name="connectivity" format="ascii">{" ".join(map(str, range(n)))}'
               f'</DataArray><DataArray type="Int64" Name="offsets" format="ascii">{n}</DataArray>'
               f'</Lines></Piece></PolyData></VTKFile>')
        write(prefix + ".vtp", vtp)
    return written


DEFAULT_GRID = "-1:1:21"


def fitted_grid(points, n: int = 21, margin: float = 0.15) -> str:
    """'XLO:XHI:N,YLO:YHI:N' covering ``points`` (x, y) with ``margin`` of each extent around."""
    xy = np.asarray(points, dtype=float)
    axes = []
    for k in (0, 1):
        lo, hi = float(xy[:, k].min()), float(xy[:, k].max())
        pad = margin * max(hi - lo, 1e-3 * max(1.0, abs(lo), abs(hi)))
        axes.append(f"{lo - pad:.6g}:{hi + pad:.6g}:{n}")
    return ",".join(axes)


def parse_grid(grid: str) -> tuple[np.ndarray, np.ndarray]:
    """'LO:HI:N' (both coordinates) or 'XLO:XHI:N,YLO:YHI:N' -> (xs, ys)."""
    parts = str(grid).split(",")
    if len(parts) not in (1, 2):
        raise ArgumentError(f"grid must be LO:HI:N or XLO:XHI:N,YLO:YHI:N, got {grid!r}", "grid")
    xs = parse_axis(parts[0])
    return xs, parse_axis(parts[-1])


def surface(inputs: list[str], *, grid: str | None = None, space: str | None = None, seed: int = 0,
            directions: str = "random", trajectory: str | None = None, data: str = "train",
            bn: str = "recompute", device: str = "cpu", data_root: str | None = None,
            progress: bool | None = None, write: bool = True, name: str | None = None,
            points_at_once: int = POINTS_AT_ONCE) -> dict:
    """The Python API of ``landscape surface``: ``inputs`` one solution (random or PCA
    directions) or three (their plane); ``trajectory``: a run whose checkpoints are projected
    on the slice (with ``directions='pca'`` they also give the directions). ``grid``: 'LO:HI:N'
    or 'XLO:XHI:N,YLO:YHI:N'; None: fitted to the trajectory's projected path, else -1:1:21."""
    if len(inputs) not in (1, 3):
        raise ArgumentError(f"give one solution (with random or PCA directions) or three (their "
                            f"plane) as inputs, got {len(inputs)}", "inputs")
    if directions not in ("random", "pca"):
        raise ArgumentError(f"directions must be random or pca, got {directions!r}", "directions")
    if directions == "pca" and (trajectory is None or len(inputs) != 1):
        raise ArgumentError("directions pca takes one solution and the trajectory whose checkpoints "
                            "give them", "directions", "trajectory")
    if bn not in PATH_BN_MODES or data not in DATA:
        raise ArgumentError(f"bn must be one of {', '.join(PATH_BN_MODES)} and data one of "
                            f"{', '.join(DATA)}", "bn", "data")
    device = resolve_device(device)
    loaded = [load_point(src, device) for src in inputs]
    for (m, meta), src in zip(loaded[1:], inputs[1:]):
        check_compatible(loaded[0][1], meta, loaded[0][1]["state_dict"], meta["state_dict"], (inputs[0], src))
    model, meta = loaded[0]
    target = results_target(inputs[0], write)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    checkpoints = []
    if trajectory is not None:
        t = Trajectory(trajectory)
        checkpoints = [(e, {n: v for n, v in model_state(t.state_dict(e)).items() if n in params})
                       for e in t.checkpoint_epochs]
    sl, space, explained = make_slice(loaded, params, space, directions, seed, checkpoints, trajectory)
    coords = [sl.project(c) for _, c in checkpoints]
    if grid is None:  # the path's extent, and the marks', with a margin; else -1..1
        grid = fitted_grid(coords + list(sl.marks.values())) if coords else DEFAULT_GRID
    xs, ys = parse_grid(grid)
    dataset = analysis_data(meta["config"], data_root, device, next(model.parameters()).dtype)
    bar = Progress(len(xs) * len(ys), "surface", "point", progress)
    try:
        result = evaluate_surface(model, sl, xs, ys, evaluation_sets(dataset, data), bn,
                                  LOSSES[stored_config(meta["config"])["loss"]],
                                  meta["config"].get("batch_size", 128), dataset.x_train, bar.update,
                                  points_at_once=points_at_once)
    finally:
        bar.close()
    result.update({"x": xs, "y": ys, "marks": sl.marks, "space": space, "inputs": list(inputs),
                   "directions": directions if len(inputs) == 1 else "three solutions"})
    if explained is not None:
        result["pca_explained"] = explained
    if checkpoints:
        result.update({"path_epochs": np.array([e for e, _ in checkpoints]), "trajectory": trajectory,
                       "path_x": np.array([c[0] for c in coords]), "path_y": np.array([c[1] for c in coords])})
    if target is not None:
        settings = {"grid": grid, "space": space, "seed": seed, "directions": result["directions"],
                    "data": data, "bn": bn, "inputs": list(inputs), "trajectory": trajectory}
        name = name or default_name(inputs, space, directions, seed)
        append_analysis(target, f"surface/{name}", {k: v for k, v in result.items() if isinstance(v, np.ndarray)},
                        {"settings": settings, "marks": {k: list(v) for k, v in sl.marks.items()}})
        result["appended_to"], result["name"] = target, name
    return result


def make_slice(loaded, params: dict, space: str | None, directions: str, seed: int, checkpoints,
               trajectory) -> tuple[Slice, str, np.ndarray | None]:
    """(the slice, its space, the PCA explained variance or None) of the loaded solutions."""
    meta = loaded[0][1]
    si = list(meta.get("si_group_names") or [])
    conventional = bool(meta["model_spec"].get("conventional"))
    space = space or ("flat" if conventional or not si else "sphere")
    if space == "sphere" and (conventional or not si):
        raise ArgumentError("space sphere needs a scale-invariant network: use space flat", "space")
    if len(loaded) == 3:
        return Slice(params, si, space, solutions=[{n: p for n, p in m.named_parameters() if n in params}
                                                   for m, _ in loaded]), space, None
    if directions == "pca":
        if len(checkpoints) < 3:
            raise LandscapeError(f"{trajectory}: PCA directions need at least 3 checkpoints, it has {len(checkpoints)}")
        d1, d2, explained = pca_directions([c for _, c in checkpoints], list(params))
        # on the sphere the directions are taken on its tangent space at the solution and the
        # slice follows great circles, as for random directions; flat: the path as it went
        return Slice(params, si, space, directions=(d1, d2)), space, explained
    gen = torch.Generator().manual_seed(int(seed))
    return Slice(params, si, space, directions=(filter_normalised(params, gen),
                                                 filter_normalised(params, gen))), space, None


def default_name(inputs, space: str, directions: str, seed: int) -> str:
    """The key of a surface under /analyses/surface: its inputs, space and directions."""
    kind = "" if len(inputs) == 3 else ("-pca" if directions == "pca" else f"-random{seed}")
    def short(source):
        path, epoch = parse_source(source)
        return os.path.splitext(os.path.basename(path))[0] + (f"@{epoch}" if epoch is not None else "")
    return "--".join(short(s) for s in inputs) + f"-{space}{kind}"
