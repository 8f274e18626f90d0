"""``landscape interpolate``: the loss on the line between two solutions (paper Sections 5.1,
5.2; Appendices I and K).

Points theta(alpha), alpha on [-extend, 1 + extend] with 0 and 1 on the grid:
    chord   (1 - alpha) theta_A + alpha theta_B (every parameter);
    sphere  the great circle between the SI parameters (slerp of their directions) on the sphere
            of A's radius (runs of one sphere share it), natural for SI networks whose function
            depends only on the direction; non-SI parameters follow the chord.
BatchNorm: ``recompute`` (default) resets the running statistics of each point and recomputes
them as an exact average over one no-grad train-mode pass of the un-augmented training data,
then evaluates in eval mode; ``batch`` evaluates with mini-batch statistics.
Barriers (over alpha in [0, 1]):
    barrier          max L(alpha) - ((1 - alpha) L(0) + alpha L(1))   (above the chord of the ends)
    barrier_mean_ends  max L(alpha) - (L(0) + L(1)) / 2               (the other definition in use)
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from .analysis import analysis_data, evaluation_sets, results_target, stack_rows
from .data import Dataset, as_batches, resolve_device
from .errors import ArgumentError, LandscapeError
from .legacy import stored_config
from .measure import LOSSES
from .models import recompute_batchnorm, si_groups, with_batch_statistics
from .progress import Progress
from .trajectory import Trajectory, append_analysis
from .points import load_point, parse_source, select_epochs

PATHS = ("chord", "sphere")
PATH_BN_MODES = ("recompute", "batch")  # BatchNorm on a path: recomputed statistics or batch statistics
DATA = ("train", "test", "both")


def alpha_grid(points: int = 25, extend: float = 0.2) -> np.ndarray:
    """``points`` evenly spaced values on [0, 1] plus as many of the same spacing as fit in
    ``extend`` on each side, so that 0 and 1 are grid points."""
    if points < 2:
        raise ArgumentError(f"points must be at least 2, got {points}", "points")
    if extend < 0 or not math.isfinite(extend):
        raise ArgumentError(f"extend must be a non-negative number, got {extend}", "extend")
    step = 1.0 / (points - 1)
    extra = int(math.floor(extend / step + 1e-9))
    return np.arange(-extra, points + extra) * step


def check_compatible(meta_a: dict, meta_b: dict, state_a: dict, state_b: dict, names=("A", "B")) -> None:
    sa, sb = meta_a["model_spec"], meta_b["model_spec"]
    diff = [f"{k} {sa.get(k)} vs {sb.get(k)}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
    if diff:
        raise LandscapeError(f"{names[0]} and {names[1]} are different architectures: {'; '.join(diff)}")
    for k in state_a:
        if k not in state_b or state_a[k].shape != state_b[k].shape:
            raise LandscapeError(f"{names[0]} and {names[1]} differ in parameter {k}: "
                                 f"{tuple(state_a[k].shape)} vs {tuple(state_b[k].shape) if k in state_b else 'missing'}")


def angle_between(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    cos = float((a @ b) / (a.norm() * b.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def path_parameters(params_a: dict, params_b: dict, si_names: list[str], alpha: float, path: str) -> dict:
    """The parameters at ``alpha`` on the chosen path."""
    out = {k: (1 - alpha) * params_a[k] + alpha * params_b[k] for k in params_a}
    if path == "chord" or not si_names:
        return out
    a = torch.cat([params_a[k].reshape(-1) for k in si_names]).double()
    b = torch.cat([params_b[k].reshape(-1) for k in si_names]).double()
    ra = a.norm()
    ua, ub = a / ra, b / b.norm()
    omega = torch.arccos(torch.clamp(ua @ ub, -1.0, 1.0))
    if float(omega) < 1e-7:  # same direction: the great circle is a point
        direction = ua
    else:
        direction = (torch.sin((1 - alpha) * omega) * ua + torch.sin(alpha * omega) * ub) / torch.sin(omega)
    flat = direction * ra  # on A's sphere: an SI network's function depends only on direction
    sizes = [params_a[k].numel() for k in si_names]
    for k, chunk in zip(si_names, flat.split(sizes)):
        out[k] = chunk.view_as(params_a[k]).to(params_a[k].dtype)
    return out


def _loss_and_error(net, batches, criterion, chunk: int) -> tuple[float, float | None]:
    """Size-weighted mean criterion over the batches (eval mode, no grad); the classification
    error too when the targets are class indices."""
    was = net.training
    net.eval()
    loss, correct, seen, labels = 0.0, 0, 0, True
    with torch.no_grad():
        for x, y in batches:
            for i in range(0, len(y), chunk):
                xc, yc = x[i:i + chunk], y[i:i + chunk]
                out = net(xc)
                loss += float(criterion(out, yc).double()) * len(yc)
                labels = labels and not yc.is_floating_point() and out.dim() == 2 and yc.dim() == 1
                if labels:
                    correct += int((out.argmax(1) == yc).sum())
                seen += len(yc)
    net.train(was)
    return loss / seen, (1.0 - correct / seen) if labels else None


def evaluate_point(model, sets: dict, bn: str, criterion, batch_size: int, bn_inputs) -> dict:
    """Loss (and error) of ``model`` on each named set of batches under the BN mode:
    'recompute' resets the running statistics from ``bn_inputs`` first, 'batch' uses
    mini-batch statistics."""
    if bn == "recompute":
        recompute_batchnorm(model, bn_inputs, batch_size)
        net = model
    else:
        net = with_batch_statistics(model)
    out = {}
    for name, batches in sets.items():
        loss, err = _loss_and_error(net, batches, criterion, batch_size)
        out[f"{name}_loss"] = loss
        if err is not None:
            out[f"{name}_error"] = err
    return out


def interpolate_models(model_a, model_b, data, alphas=None, *, criterion=None, test_data=None,
                       path: str = "chord", bn: str = "recompute", which: str = "both",
                       batch_size: int = 128, si_names=None, on_point=None) -> dict:
    """The loss (and error) at every point of the path between two models of one architecture.

    ``data``: the training data, as (x, y) tensors, a DataLoader, a list of (x, y) batches or a
    ``landscape.data.Dataset`` (then its test set too, per ``which``); ``test_data`` likewise,
    optional. ``criterion``: (outputs, targets) -> mean loss, default cross-entropy (the error
    is reported when the targets are class indices). ``alphas``: default ``alpha_grid()``.
    ``si_names``: the parameters the 'sphere' path moves on the sphere (default: the trainable
    ones). Returns {"alpha", "train_loss", "train_error", ...} as numpy arrays.

    >>> import torch
    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> r = interpolate_models(a, b, (torch.randn(8, 3), torch.randint(0, 2, (8,))), [0.0, 0.5, 1.0])
    >>> sorted(r)
    ['alpha', 'train_error', 'train_loss']
    """
    if path not in PATHS:
        raise ArgumentError(f"path must be one of {', '.join(PATHS)}, got {path!r}", "path")
    if bn not in PATH_BN_MODES:
        raise ArgumentError(f"bn must be one of {', '.join(PATH_BN_MODES)}, got {bn!r}", "bn")
    if which not in DATA:
        raise ArgumentError(f"data must be one of {', '.join(DATA)}, got {which!r}", "data")
    alphas = alpha_grid() if alphas is None else alphas
    criterion = criterion if criterion is not None else F.cross_entropy
    if isinstance(data, Dataset):
        bn_inputs = data.x_train
        sets = evaluation_sets(data, which)
    else:
        sets = {"train": as_batches(data, "data")}
        if test_data is not None:
            sets["test"] = as_batches(test_data, "test_data")
        bn_inputs = torch.cat([x for x, _ in sets["train"]])
    pa = {k: v.detach().clone() for k, v in model_a.named_parameters()}
    pb = {k: v.detach().clone() for k, v in model_b.named_parameters()}
    if si_names is None:
        si_names = [k for k, _ in si_groups(model_a)]
    if path == "sphere" and not si_names:
        raise ArgumentError("path sphere needs scale-invariant parameter groups", "path")
    work = copy.deepcopy(model_a)
    slots = dict(work.named_parameters())
    rows = []
    for alpha in alphas:
        with torch.no_grad():
            for k, v in path_parameters(pa, pb, si_names, float(alpha), path).items():
                slots[k].copy_(v)
        rows.append(evaluate_point(work, sets, bn, criterion, batch_size, bn_inputs))
        if on_point is not None:
            on_point()
    return {"alpha": np.asarray(alphas, dtype=float), **stack_rows(rows)}


def barrier_summary(alphas: np.ndarray, values: np.ndarray, tol: float | None = None) -> dict:
    """Both barrier definitions over alpha in [0, 1], and convexity of the whole sampled path
    (second differences >= -tol; tol defaults to 1e-6 of the values' scale)."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    i0 = int(np.argmin(np.abs(alphas - 0.0)))
    i1 = int(np.argmin(np.abs(alphas - 1.0)))
    inside = slice(i0, i1 + 1)
    a, v = alphas[inside], values[inside]
    v0, v1 = values[i0], values[i1]
    above_chord = v - ((1 - a) * v0 + a * v1)
    k = int(np.argmax(above_chord))
    scale = max(1e-12, float(np.max(np.abs(values))))
    tol = 1e-6 * scale if tol is None else tol
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    return {"barrier": float(above_chord[k]), "barrier_alpha": float(a[k]),
            "barrier_mean_ends": float(np.max(v) - (v0 + v1) / 2),
            "start": float(v0), "end": float(v1), "max_on_segment": float(np.max(v)),
            "convex": bool(np.all(second >= -tol)) if len(values) >= 3 else True}


def summarise(result: dict) -> dict:
    out = {}
    for key in result:
        if key.endswith("_loss") or key.endswith("_error"):
            out[key] = barrier_summary(result["alpha"], result[key])
    return out


# --- driver -------------------------------------------------------------------------------

def result_name(pairs: list, along: str | None) -> str:
    """The key of a result under /analyses/interpolation: its inputs, so that different pairs
    never overwrite each other ('a@15--b@15', 'along-a@10..30')."""

    def short(source):
        path, epoch = parse_source(source)
        stem = os.path.splitext(os.path.basename(path))[0]
        return stem if epoch is None else f"{stem}@{epoch}"
    if along is not None:
        first, last = short(pairs[0][0]), short(pairs[-1][1])
        return f"along-{first}..{last.split('@')[-1]}"
    return f"{short(pairs[0][0])}--{short(pairs[0][1])}"


def interpolate_pair(model_a, model_b, meta_a: dict, dataset, alphas, **options) -> dict:
    """``interpolate_models`` between two stored points of one run (``meta_a``: the first's
    metadata), with the angle between their SI parameters and the barrier summary."""
    si = meta_a["si_group_names"]
    res = interpolate_models(model_a, model_b, dataset, alphas, si_names=si,
                             criterion=LOSSES[stored_config(meta_a["config"])["loss"]],
                             batch_size=meta_a["config"].get("batch_size", 128), **options)
    res["angle_degrees"] = angle_between(
        torch.cat([dict(model_a.named_parameters())[k].reshape(-1) for k in si]),
        torch.cat([dict(model_b.named_parameters())[k].reshape(-1) for k in si]))
    res["summary"] = summarise(res)
    return res


def interpolate(a: str, b: str | None = None, *, along: str | None = None, points: int = 25,
                extend: float = 0.2, data: str = "both", bn: str = "recompute", path: str = "chord",
                device: str = "cpu", data_root: str | None = None, progress: bool | None = None,
                write: bool = True, name: str | None = None) -> dict:
    """The Python API of ``landscape interpolate`` (see the module docstring).
    ``interpolate("a.pt", "b.pt")`` or ``interpolate("traj.h5", along="10,20,30")``."""
    device = resolve_device(device)
    alphas = alpha_grid(points, extend)
    pairs = interpolation_pairs(a, b, along)
    name = name or result_name(pairs, along)
    if "/" in name or not name.strip("."):
        raise ArgumentError(f"name {name!r}: a name without '/'", "name")
    target = results_target(pairs[0][0], write)
    bar = Progress(len(pairs) * len(alphas), "interpolate", "point", progress)
    runs, dataset = [], None
    try:
        for src_a, src_b in pairs:
            model_a, meta_a = load_point(src_a, device)
            model_b, meta_b = load_point(src_b, device)
            check_compatible(meta_a, meta_b, meta_a["state_dict"], meta_b["state_dict"], (src_a, src_b))
            if all(torch.equal(v, meta_b["state_dict"][k]) for k, v in meta_a["state_dict"].items()):
                raise ArgumentError(f"{src_a} and {src_b} are the same point: the path between them has no "
                                    f"length; give two different checkpoints", "a", "b")
            if dataset is None:
                dataset = analysis_data(meta_a["config"], data_root, device, next(model_a.parameters()).dtype)
            runs.append(interpolate_pair(model_a, model_b, meta_a, dataset, alphas, path=path, bn=bn,
                                         which=data, on_point=bar.update))
            runs[-1].update({"a": src_a, "b": src_b, "epoch_a": meta_a.get("epoch"), "epoch_b": meta_b.get("epoch")})
    finally:
        bar.close()
    settings = {"points": points, "extend": extend, "data": data, "bn": bn, "path": path}
    out = {"settings": settings, "pairs": runs}
    if target is not None:
        append_analysis(target, f"interpolation/{name}", stored_arrays(alphas, runs),
                        {"settings": settings, "pairs": [[r["a"], r["b"]] for r in runs]})
        out["appended_to"], out["name"] = target, name
    return out


def interpolation_pairs(a: str, b: str | None, along: str | None) -> list[tuple[str, str]]:
    """The (A, B) pairs to interpolate: the two inputs, or consecutive checkpoints ``along``."""
    if along is None:
        if b is None:
            raise ArgumentError("give two inputs (a and b), or one trajectory with along", "along")
        return [(a, b)]
    if b is not None:
        raise ArgumentError("along takes one trajectory: drop the second input", "along")
    path_a, epoch = parse_source(a)
    if epoch is not None:
        raise ArgumentError("along takes the epochs: pass the trajectory without @EPOCH", "along")
    epochs = select_epochs(Trajectory(path_a), along)
    if len(epochs) < 2:
        raise ArgumentError(f"along {along} selects {len(epochs)} checkpoint(s): need at least 2", "along")
    return [(f"{path_a}@{e0}", f"{path_a}@{e1}") for e0, e1 in zip(epochs[:-1], epochs[1:])]


def stored_arrays(alphas, runs: list[dict]) -> dict:
    """The arrays stored of an interpolation: curves [pair, alpha], barriers and angles [pair]."""
    arrays = {"alpha": alphas, "angle_degrees": np.array([r["angle_degrees"] for r in runs]),
              "epoch_a": np.array([r["epoch_a"] for r in runs]),
              "epoch_b": np.array([r["epoch_b"] for r in runs])}
    for key in runs[0]:
        if key.endswith("_loss") or key.endswith("_error"):
            arrays[key] = np.stack([r[key] for r in runs])
            arrays[f"{key}_barrier"] = np.array([r["summary"][key]["barrier"] for r in runs])
            arrays[f"{key}_barrier_mean_ends"] = np.array([r["summary"][key]["barrier_mean_ends"] for r in runs])
    return arrays
