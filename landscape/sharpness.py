"""``landscape sharpness``: curvature of a trajectory's checkpoints (paper Section 4, Figures 1, 3).

For each chosen checkpoint, on B fixed mini-batches (or the whole training set):
    trace         Hutchinson estimate of tr(H) with its standard error (Rademacher probes)
    trace_riemannian   trace of the Riemannian Hessian on the sphere |theta| = rho:
                  tr(P H P) - (P_dim - 1) <theta, g>/rho^2 with P = I - u u^T, u = theta/rho;
                  tr(P H P) = tr(H) - u^T H u, so it shares the probes of ``trace``
    eigenvalues   the K largest Hessian eigenvalues (Lanczos, stopped when each Ritz residual is
                  below ``eig_tol`` relative: the eigenvalue is then that close)
    density       optional eigenvalue density (stochastic Lanczos quadrature)
    gradient noise over one epoch of mini-batches (no update): the mean stochastic gradient norm
                  and the trace of the mini-batch gradient covariance
Units: raw values, and *effective* ones as if the point were rescaled to the unit sphere
(gradient x rho, Hessian x rho^2), so runs of different rho compare; ``trace_per_param`` is the
raw trace over the number of SI parameters P (what the paper's code reports: its probes are unit
Gaussian vectors, E[v^T H v] = tr(H)/P) and ``trace_per_param_effective`` = tr(H)/P * rho^2 the
paper's effective form (the ``trace_effective`` column is P times larger).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .analysis import check_subset, over_checkpoints, training_subset
from .data import train_batches
from .errors import ArgumentError
from .hessian import (CURVATURE_BN_MODES, ESTIMATORS, Curvature, gradient_noise, hutchinson_trace,
                      hutchpp_trace, spectral_density, top_eigenvalues)
from .legacy import stored_config
from .measure import LOSSES, fixed_order_batches


def fixed_batches(data, batch_size: int, count, seed: int):
    """The curvature's data: 'all', the whole training set in stored order (the official code's
    protocol), or ``count`` mini-batches of a seeded shuffle (a random subset); un-augmented."""
    if str(count) == "all":
        return list(fixed_order_batches(data, batch_size))
    batches = list(train_batches(data, batch_size, epoch=0, data_seed=seed))
    try:
        count = int(count)
    except ValueError:
        raise ArgumentError(f"batches must be a positive integer or 'all', got {count!r}", "batches") from None
    if count < 1:
        raise ArgumentError(f"batches must be a positive integer or 'all', got {count}", "batches")
    return batches[:count]


def checkpoint_sharpness(model, batches, noise_batches, *, criterion=None, probes: int = 5, eigs: int = 1,
                         bn: str = "batch", density: bool = False, seed: int = 0,
                         dtype=None, probe_batch: int | None = None, hvp_mode: str = "rev",
                         density_steps: int = 80, density_runs: int = 1, on_products=None,
                         matrix: str = "hessian", estimator: str = "hutchinson",
                         per_group: bool = False, eig_tol: float = 1e-3) -> dict:
    """Every curvature number of one model (see the module docstring); ``matrix`` 'hessian' or
    'ggn', ``estimator`` 'hutchinson' or 'hutchpp' (``probes`` is then the number of products),
    ``per_group``: the trace of every SI group's diagonal block, per layer and per filter;
    ``on_products(n, phase)`` is called as each phase (trace, top eigenvalues, eigenvalue
    density) does n curvature-vector products (progress)."""
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}", "estimator")
    curv = Curvature(model, batches, criterion=criterion, bn=bn, dtype=dtype, probe_batch=probe_batch,
                     hvp_mode=hvp_mode, matrix=matrix)
    rho, n = curv.rho, curv.dim
    layers, filters = curv.group_slices("layer"), curv.group_slices("filter")
    groups = layers + filters if per_group else None
    estimate = hutchinson_trace if estimator == "hutchinson" else hutchpp_trace
    res = estimate(curv, probes, seed, groups=groups,
                   on_probes=None if on_products is None else lambda n: on_products(n, "trace"))
    trace, stderr = res.value, res.stderr
    g = curv.gradient()
    out = {
        "loss": float(curv.loss(curv.theta)), "rho": rho, "num_params": n,
        "trace": trace, "trace_stderr": stderr,
        "trace_effective": trace * rho ** 2, "trace_stderr_effective": stderr * rho ** 2,
        "trace_per_param": trace / n,
        # the official code's "effective" trace: (tr(M) / #params) * rho^2
        "trace_per_param_effective": trace / n * rho ** 2,
        "grad_norm": float(g.norm()), "effective_grad_norm": float(g.norm()) * rho,
        # effective units (x rho^2) assume every differentiated tensor is scale-invariant
        "not_scale_invariant": len(curv.not_scale_invariant()),
    }
    if matrix == "hessian":  # the sphere's Riemannian Hessian: a statement about H itself
        u = curv.theta / curv.theta.norm()
        uHu = float(u @ curv.hvp(u))
        radial = float(curv.theta @ g) / rho ** 2
        riemannian = trace - uHu - (n - 1) * radial
        out.update({"trace_riemannian": riemannian, "trace_riemannian_effective": riemannian * rho ** 2})
    if per_group:  # effective units per group: the block as if that group sat on the unit sphere
        theta = curv.theta.double()
        sq = np.array([float(theta[s].square().sum()) for s in layers + filters])
        for name, sl in (("group", slice(0, len(layers))), ("filter", slice(len(layers), None))):
            out[f"{name}_trace"] = res.group_values[sl]
            out[f"{name}_trace_stderr"] = res.group_stderrs[sl]
            out[f"{name}_trace_effective"] = res.group_values[sl] * sq[sl]
    if eigs > 0:
        info = {}
        vals = top_eigenvalues(curv, eigs, seed, eig_tol, info=info,
                               on_product=None if on_products is None else lambda: on_products(1, "top eigenvalues"))
        out["eigenvalues"] = vals
        out["eigenvalue_products"] = info["products"]
        out["eigenvalues_effective"] = vals * rho ** 2
    noise = gradient_noise(model, noise_batches, dtype=dtype, criterion=criterion)
    out.update({k: noise[k] for k in ("mean_grad_norm", "mean_effective_grad_norm",
                                      "grad_cov_trace", "grad_cov_trace_effective")})
    if density:
        nodes, weights, grid, dens = spectral_density(
            curv, density_steps, density_runs, seed,
            on_product=None if on_products is None else lambda: on_products(1, "eigenvalue density"))
        out.update({"density_nodes": nodes * rho ** 2, "density_weights": weights,
                    "density_grid": grid * rho ** 2, "density": dens / rho ** 2})
    return out


EIG_PRODUCTS = 40  # a first estimate of Lanczos products per top eigenvalue (ConvNets at eig_tol 1e-3)


@dataclass
class SharpnessSettings:
    """What ``sharpness`` computes at each checkpoint (see ``checkpoint_sharpness``):
    ``probes`` Hutchinson probes (Hutch++: products), the ``eigs`` largest eigenvalues, on
    ``batches`` fixed mini-batches ('all': the whole training set) with BatchNorm ``bn``,
    seeded by ``seed``; ``double``: in float64; ``matrix`` 'hessian' or 'ggn'; ``per_group``:
    every SI group's block trace; ``density``: the SLQ eigenvalue density; ``subset``: 'all'
    the training examples, or (a run with label noise) only the 'noisy' or the 'clean' ones."""
    # the official estimate's cost: 5 probes (ours, Rademacher, reach its error with 4), and the
    # top eigenvalue as PyHessian's default (benchmarks/trace_cost.py, RESULTS.md)
    probes: int = 5
    eigs: int = 1
    batches: str = "all"
    bn: str = "batch"
    density: bool = False
    seed: int = 0
    double: bool = False
    probe_batch: int | None = None   # None: by model size (hessian.Curvature)
    hvp_mode: str = "rev"
    density_steps: int = 80
    density_runs: int = 1
    matrix: str = "hessian"
    estimator: str = "hutchinson"
    per_group: bool = False
    subset: str = "all"        # with label noise: the noisy or the clean training examples only
    eig_tol: float = 1e-3      # Lanczos stops when each Ritz residual is below this, relative

    def validate(self) -> None:
        if not isinstance(self.probes, int) or isinstance(self.probes, bool) or self.probes < 1:
            raise ArgumentError(f"probes must be a positive integer, got {self.probes!r}", "probes")
        if self.bn not in CURVATURE_BN_MODES:
            raise ArgumentError(f"bn must be one of {', '.join(CURVATURE_BN_MODES)}, got {self.bn!r}", "bn")
        check_subset(self.subset)
        if not (isinstance(self.eig_tol, (int, float)) and 0 < self.eig_tol < 1):
            raise ArgumentError(f"eig_tol must be in (0, 1), got {self.eig_tol!r}", "eig_tol")
        if self.estimator not in ESTIMATORS:
            raise ArgumentError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}",
                                "estimator")

    def products_estimate(self) -> int:
        """Curvature-vector products one checkpoint takes, as first estimated (progress): the
        probes, ``EIG_PRODUCTS`` per eigenvalue (Lanczos stops at its tolerance: the bar
        corrects itself once a checkpoint is done) and the density's Lanczos steps."""
        return (self.probes + EIG_PRODUCTS * self.eigs
                + (self.density_steps * self.density_runs if self.density else 0))

    def stored(self, epochs: str, batch_size: int) -> dict:
        """The settings as stored beside the results."""
        data = ("the whole training set in stored order" if str(self.batches) == "all"
                else f"{self.batches} mini-batches of a shuffle seeded {self.seed}")
        return {"epochs": epochs, "probes": self.probes, "eigs": self.eigs, "batches": str(self.batches),
                "data": data + (f" ({self.subset} examples)" if self.subset != "all" else ""),
                "batch_size": batch_size, "bn": self.bn, "seed": self.seed,
                "dtype": "float64" if self.double else "float32", "hvp": self.hvp_mode,
                "density": self.density, "density_steps": self.density_steps,
                "density_runs": self.density_runs, "matrix": self.matrix, "estimator": self.estimator,
                "per_group": self.per_group, "subset": self.subset, "eig_tol": self.eig_tol}


def sharpness(path: str, epochs: str = "last", settings: SharpnessSettings | None = None, *,
              device: str = "cpu", data_root: str | None = None, progress: bool | None = None,
              write: bool = True, **options) -> dict:
    """Curvature of the chosen checkpoints of a trajectory; appended to /analyses/sharpness
    (unless ``write=False``) and returned as {name: array over epochs} with its ``settings``.
    ``options`` set fields of ``SharpnessSettings``: ``sharpness("t.h5", "all", probes=20)``."""
    settings = dataclasses.replace(settings or SharpnessSettings(), **options)
    settings.validate()
    s = settings
    stored = {}  # the settings as stored, once the run's batch size is read

    def measure(traj, data):
        bs = traj.config["batch_size"]
        stored.update(s.stored(epochs, bs))
        data = training_subset(data, s.subset)
        hess_batches = fixed_batches(data, bs, s.batches, s.seed)
        # the gradient norms over the whole set in stored order: the official gnorm_m (the
        # curvature's own batches when they are that set)
        noise_batches = hess_batches if str(s.batches) == "all" else list(fixed_order_batches(data, bs))
        criterion = LOSSES[stored_config(traj.config)["loss"]]

        def per_checkpoint(model, advance):
            return checkpoint_sharpness(
                model, hess_batches, noise_batches, criterion=criterion, probes=s.probes, eigs=s.eigs, bn=s.bn,
                density=s.density, seed=s.seed, dtype=torch.float64 if s.double else None,
                probe_batch=s.probe_batch, hvp_mode=s.hvp_mode, density_steps=s.density_steps,
                density_runs=s.density_runs, on_products=advance, matrix=s.matrix,
                estimator=s.estimator, per_group=s.per_group, eig_tol=s.eig_tol)
        return per_checkpoint

    result = over_checkpoints(path, epochs, measure, name="sharpness", finite=True,
                              settings=lambda traj: stored, units=s.products_estimate(), unit="product",
                              device=device, data_root=data_root, progress=progress, write=write)
    result["settings"] = stored
    return result
