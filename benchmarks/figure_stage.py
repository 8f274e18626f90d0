"""The figure stage's two heaviest computations, each against what it replaced, side by side in
one run (alternating rounds, medians):

1. `landscape regimes` of the recipe's main sweeps (both metric sets; the label-stability
   resamples classify every run again 40 times): the trend test's Kendall tau and Theil-Sen line
   from one matrix of pairwise differences (`regimes.kendall_theil_sen`, its convex basis made
   once per length) against scipy's `kendalltau` and `theilslopes` with the basis made per call;
   the rows must be identical.
2. `fig3_sharpness`'s Hessian traces of final regime-1 checkpoints (20 probes on 2 batches, one
   eigenvalue): one process with every thread, run after run (before), against one
   single-threaded process per core (`analyses/fig3_sharpness.py` now). Nothing is written.

    python benchmarks/figure_stage.py [RECIPE] [--rounds 3] [--runs 8]
"""
import argparse
import glob
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from landscape import regimes as regimes_module
from landscape.curves import FINE_TIME_SCALES, baseline_basis
from landscape.regimes import regimes
from landscape.sharpness import sharpness
from timing import interleaved


def scipy_trend_statistics(y):
    from scipy import stats
    x = np.arange(len(y), dtype=float)
    slope, intercept = stats.theilslopes(y, x)[:2]
    return float(stats.kendalltau(x, y).statistic), float(slope), float(intercept)


def basis_per_call(n):
    return baseline_basis(np.arange(n, dtype=float), FINE_TIME_SCALES, linear=True)


def rows_of(sweeps):
    out = []
    for s in sweeps:
        for metrics in ("checkpoint", "epoch"):
            out += [{k: v for k, v in r.items() if not k.startswith("_")}
                    for r in regimes([s], metrics=metrics)["rows"]]
    return out


def regimes_contenders(sweeps):
    fast = (regimes_module.kendall_theil_sen, regimes_module._falling_basis)
    results = {}

    def with_scipy():
        regimes_module.kendall_theil_sen, regimes_module._falling_basis = scipy_trend_statistics, basis_per_call
        try:
            results["scipy"] = rows_of(sweeps)
        finally:
            regimes_module.kendall_theil_sen, regimes_module._falling_basis = fast

    def with_pairs():
        results["pairs"] = rows_of(sweeps)
    return {"scipy's kendalltau, theilslopes": with_scipy, "one matrix of pairs": with_pairs}, results


def one_trace(path):
    torch.set_num_threads(1)
    sharpness(path, "last", probes=20, eigs=1, batches=2, progress=False, write=False)


def sharpness_contenders(paths):
    threads = torch.get_num_threads()

    def serial():
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            for p in paths:
                sharpness(p, "last", probes=20, eigs=1, batches=2, progress=False, write=False)
        finally:
            torch.set_num_threads(threads)

    def per_core():
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(len(paths), os.cpu_count() or 1), mp_context=context) as pool:
            list(pool.map(one_trace, paths))
    return {f"one process, {os.cpu_count()} threads": serial, "a process per core, one thread": per_core}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default="runs/recipe")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=8, help="final checkpoints to trace (regime-1 ELRs of seed 0)")
    args = p.parse_args()
    sweeps = sorted(glob.glob(os.path.join(args.recipe, "sweep-seed*")))
    contenders, results = regimes_contenders(sweeps)
    times = interleaved(contenders, args.rounds)
    assert results["scipy"] == results["pairs"], "the regimes differ"
    base = next(iter(times.values()))
    print(f"landscape regimes of {len(sweeps)} sweeps, checkpoint metrics and epoch means (rows identical):")
    for name, t in times.items():
        print(f"  {name:40s} {t:7.2f} s  {base / t:5.2f}x")
    rows = [r for r in regimes([sweeps[0]], metrics="checkpoint")["rows"] if r["regime"] == 1]
    paths = [r["path"] for r in rows][:args.runs]
    times = interleaved(sharpness_contenders(paths), args.rounds)
    base = next(iter(times.values()))
    print(f"final-checkpoint sharpness of {len(paths)} regime-1 runs (20 probes on 2 batches, 1 eigenvalue):")
    for name, t in times.items():
        print(f"  {name:40s} {t:7.2f} s  {base / t:5.2f}x")


if __name__ == "__main__":
    main()
