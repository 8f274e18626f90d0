"""``landscape sharpness``."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..hessian import CURVATURE_BN_MODES, ESTIMATORS, MATRICES
from ..analysis import TRAINING_SUBSETS
from ..sharpness import SharpnessSettings, sharpness
from ..plots.sharpness import plot_sharpness
from .common import log_results, write_outputs
from .common import _number, add_checkpoint_run_options, add_checkpoints, checkpoints_of, epochs_argument, progress_of


def print_sharpness(result: dict) -> None:
    has_eigs = "eigenvalues_effective" in result
    has_riem = "trace_riemannian_effective" in result
    settings = result.get("settings", {})
    print(f"matrix: {settings.get('matrix', 'hessian')}, estimator: {settings.get('estimator', 'hutchinson')}; "
          f"trace_eff = tr * rho^2, trace/P*rho^2 = the official code's effective unit")
    head = (f"{'epoch':>6} {'loss':>9} {'trace_eff':>11} {'±se':>9}" +
            (f" {'riem_eff':>11}" if has_riem else "") + f" {'trace/P*rho^2':>13}" +
            (f" {'lmax_eff':>10}" if has_eigs else "") + f" {'mean_egn':>9} {'covtr_eff':>10}")
    print(head)
    for i, e in enumerate(result["epoch"]):
        line = (f"{e:>6d} {result['loss'][i]:>9.4g} {result['trace_effective'][i]:>11.5g} "
                f"{result['trace_stderr_effective'][i]:>9.3g}")
        if has_riem:
            line += f" {result['trace_riemannian_effective'][i]:>11.5g}"
        line += f" {result['trace_per_param_effective'][i]:>13.4g}"
        if has_eigs:
            line += f" {result['eigenvalues_effective'][i][0]:>10.5g}"
        line += f" {result['mean_effective_grad_norm'][i]:>9.4g} {result['grad_cov_trace_effective'][i]:>10.4g}"
        print(line)
    bad = np.asarray(result.get("not_scale_invariant", 0))
    if bad.any():
        print(f"warning: {int(bad.max())} differentiated parameter tensor(s) are not scale-invariant "
              f"(rescaling them changes the outputs{'; with --bn running BatchNorm uses fixed statistics' if settings.get('bn') == 'running' else ''}): "
              "the effective (x rho^2) columns assume scale invariance; read the raw ones in --json")
    if "group_trace_effective" in result:
        print("per-layer trace (effective, x rho_i^2) at the last epoch: " +
              ", ".join(f"{v:.4g}" for v in result["group_trace_effective"][-1]))


def add_parser(sub):
    D = SharpnessSettings()  # the defaults, written once
    p = sub.add_parser("sharpness", help="Hessian trace, top eigenvalues and gradient noise of checkpoints",
                       description="Curvature of a trajectory's checkpoints; results are appended "
                       "to it under /analyses/sharpness. Cost: per checkpoint about --probes + 40 per "
                       "eigenvalue (+ --density-steps with --density) curvature-vector products, each "
                       "about two gradient passes over --batches (default: the whole training set), plus "
                       "one gradient pass; the defaults make a first look of a few minutes for a small "
                       "ConvNet on CPU (use --batches 10 for a quicker estimate). Progress counts products "
                       "over every phase, with the time left.")
    p.add_argument("trajectory", help="traj.h5 (or traj.h5@EPOCH for one checkpoint)")
    add_checkpoints(p, "last")
    p.add_argument("--probes", type=_number(int), default=D.probes,
                   help="Hutchinson probes M (5: the official estimate's number)")
    p.add_argument("--eigs", type=_number(int), default=D.eigs, help="top-K eigenvalues (0: none)")
    p.add_argument("--eig-tol", type=_number(float, True), default=D.eig_tol,
                   help="Lanczos stops when every top-K Ritz residual is below this times its value "
                   "(the eigenvalue is then within it)")
    p.add_argument("--batches", default=D.batches,
                   help="the curvature's data: all, the whole training set in stored order (the "
                   "official protocol), or B mini-batches of a seeded shuffle (a random subset)")
    p.add_argument("--bn", choices=CURVATURE_BN_MODES, default=D.bn,
                   help="batch: mini-batch statistics (SI, what training optimises); running: stored statistics (PyHessian)")
    p.add_argument("--matrix", choices=MATRICES, default=D.matrix,
                   help="hessian, or ggn: the generalised Gauss-Newton J^T H_out J (the official code's 'Fisher')")
    p.add_argument("--estimator", choices=ESTIMATORS, default=D.estimator,
                   help="trace estimator: hutchinson, or hutchpp (Hutch++: --probes products, a third "
                   "of them sketching the top of the spectrum; fewer products for the same error)")
    p.add_argument("--per-group", action="store_true",
                   help="also the trace of every SI group's diagonal block, per layer and per filter "
                   "(raw and effective: x rho_i^2)")
    p.add_argument("--subset", choices=TRAINING_SUBSETS, default=D.subset,
                   help="training examples the curvature is taken on: all, or for a run with label "
                   "noise only the noisy (relabelled) or the clean ones, as the official code's "
                   "per-subset traces")
    p.add_argument("--density", action="store_true", help="also the eigenvalue density (SLQ)")
    p.add_argument("--density-steps", type=_number(int, True), default=D.density_steps, help="Lanczos steps per SLQ run")
    p.add_argument("--density-runs", type=_number(int, True), default=D.density_runs, help="SLQ random starts")
    p.add_argument("--hvp", dest="hvp_mode", choices=("rev", "fwd"), default=D.hvp_mode,
                   help="rev: vjp of grad, linearised once per checkpoint (fastest here); fwd: jvp of grad")
    p.add_argument("--seed", type=_number(int), default=D.seed, help="seed of the batches, probes and Lanczos starts")
    p.add_argument("--double", action="store_true", help="compute in float64")
    p.add_argument("--probe-batch", type=_number(int, True), default=None,
                   help="probes per vmap call (default: 8, or 1 above 2M parameters, where vmap is slower)")
    add_checkpoint_run_options(p, "trace, top eigenvalue and gradient noise against epoch and train loss (and the density)")
    p.set_defaults(run=run)


def run(args):
    path, epochs = epochs_argument(args.trajectory, checkpoints_of(args), "last")
    settings = SharpnessSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SharpnessSettings)})
    result = sharpness(path, epochs, settings, device=args.device, data_root=args.data_root,
                       progress=progress_of(args))
    print_sharpness(result)
    print(f"appended /analyses/sharpness to {path}")
    write_outputs(args, result, lambda out: plot_sharpness(result, out))
    log_results(args, path, "sharpness", result)
