"""Hessian trace at equal accuracy: how many Hessian-vector products, and how much time, each
estimator needs for a 1% relative error on the same checkpoint and batch, side by side in one
run: our Hutchinson, our Hutch++ (`--estimator hutchpp`) and PyHessian's `trace()` (Rademacher
Hutchinson, as ours).

Reference trace: Hutch++ with --reference products (its error is printed). Hutchinson's (ours
and PyHessian's) products for 1%: (sample std / (0.01 * trace))^2 from each one's own samples.
Hutch++: the smallest product count on a doubling grid whose root-mean-square error over
--repeats seeds is at most 1% of the reference.

    python benchmarks/trace_accuracy.py [--width 16] [--epochs 10] [--batches 1] [--repeats 8]
"""
import argparse
import math
import tempfile
import time
import warnings

import numpy as np
import torch

from landscape import train
from landscape.data import dataset_of
from landscape.hessian import Curvature, hutchinson_trace, hutchpp_trace
from landscape.sharpness import fixed_batches
from timing import median_seconds

warnings.filterwarnings("ignore")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--elr", type=float, default=1e-3)
    p.add_argument("--batches", type=int, default=1)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--probes", type=int, default=200, help="Hutchinson samples for the std")
    p.add_argument("--reference", type=int, default=3000, help="Hutch++ products for the reference")
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        traj = train(out=f"{d}/t.h5", width=args.width, epochs=args.epochs, elr=args.elr,
                     device="cpu", progress=False, data_root=args.data_root)
        model = traj.load_model()
        data = dataset_of(traj.config, args.data_root)
    batches = fixed_batches(data, 128, args.batches, 0)
    model.train()
    with torch.no_grad():  # PyHessian evaluates in eval mode: give it real running statistics
        for x, _ in batches:
            model(x)
    curv = Curvature(model, batches, bn="running", probe_batch=16)
    reference = hutchpp_trace(curv, args.reference, seed=999)
    ref, ref_se = reference.value, reference.stderr
    target = 0.01 * abs(ref)
    print(f"ConvNet k={args.width} on MNIST-1D after {args.epochs} epochs at ELR {args.elr:g}, "
          f"{curv.dim} SI parameters, {args.batches} batch(es) of 128, BN running statistics "
          f"(PyHessian's convention), torch threads {torch.get_num_threads()}")
    print(f"reference trace {ref:.6g} (Hutch++ with {args.reference} products, standard error "
          f"{ref_se:.2g} = {100 * ref_se / abs(ref):.2f}%)")

    samples = hutchinson_trace(curv, args.probes, seed=1).samples
    n_ours = math.ceil((samples.std(ddof=1) / target) ** 2)
    t_hvp = median_seconds(lambda: curv.hvp_batch(torch.randn(16, curv.dim))) / 16

    grid, n_pp = [], None
    m = 24
    while n_pp is None and m <= args.reference // 2:
        errs = [hutchpp_trace(curv, m, seed=s).value - ref for s in range(args.repeats)]
        rmse = math.sqrt(np.mean(np.square(errs)))
        grid.append((m, rmse / abs(ref)))
        if rmse <= target:
            n_pp = m
        m *= 2
    t_pp = median_seconds(lambda: hutchpp_trace(curv, n_pp, seed=0), 1) if n_pp else float("nan")

    import pyhessian
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    h = pyhessian.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    theirs = np.array(h.trace(maxIter=args.probes, tol=-1.0))
    t_probe_theirs = (time.perf_counter() - t0) / args.probes
    n_theirs = math.ceil((theirs.std(ddof=1) / target) ** 2)

    print(f"Hutchinson (ours):      per-probe std {samples.std(ddof=1):.4g} -> {n_ours} HVPs for 1%; "
          f"{t_hvp * 1e3:.1f} ms per HVP -> {n_ours * t_hvp:.1f} s")
    print("Hutch++ (ours):         relative RMSE over "
          f"{args.repeats} seeds: " + ", ".join(f"{k} products {100 * e:.2f}%" for k, e in grid) +
          (f" -> {n_pp} products for 1%, {t_pp:.1f} s" if n_pp else " (1% not reached on the grid)"))
    print(f"PyHessian trace():      per-probe std {theirs.std(ddof=1):.4g} -> {n_theirs} HVPs for 1%; "
          f"{t_probe_theirs * 1e3:.1f} ms per probe -> {n_theirs * t_probe_theirs:.1f} s")
    best = min(n_ours * t_hvp, t_pp if n_pp else float("inf"))
    print(f"time to 1%: PyHessian / best of ours = {n_theirs * t_probe_theirs / best:.2f}x; "
          f"HVPs: Hutchinson / Hutch++ = {n_ours / n_pp if n_pp else float('nan'):.2f}x")


if __name__ == "__main__":
    main()
