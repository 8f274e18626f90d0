"""``landscape toy``."""
from __future__ import annotations

from ..errors import LandscapeError
from ..toy import (_check, classify, convergence_threshold, equilibrium_level, output_paths,
                   simulate_many, write_trajectory)
from ..plots.toy import plot_toy
from .common import write_outputs
import os
import sys
from .common import _number, add_outputs, grid, number_list


def report(results: list[dict]) -> list[dict]:
    rows = [classify(r) for r in results]
    alphas = results[0]["alphas"]
    print(f"alphas {', '.join(f'{a:g}' for a in alphas)}: convergence threshold 1/sum(alpha) = "
          f"{convergence_threshold(alphas):.6g} (eq. 8)")
    print(f"{'ELR':>8}  {'regime':<12} {'F tail mean':>12} {'theory':>10}  ELR_i tail mean / eq. (9)")
    for row in rows:
        if row["regime"] == "convergence":
            theory = "0"
        else:
            level = equilibrium_level(alphas, row["elr"])
            theory = f"{level:.6g}" + ("" if row["regime"] == "equilibrium" else "*")
        ratios = "  ".join(f"{m:.4g}/{t:.4g}" for m, t in zip(row["group_elr_tail_mean"], row["theory_group_elr"]))
        print(f"{row['elr']:>8g}  {row['regime']:<12} {row['loss_tail_mean']:>12.6g} {theory:>10}  {ratios}")
    if len(alphas) == 1:
        print(f"one group: Proposition 1 gives 0 below ELR {1 / alphas[0]:g}, else (alpha - 1/ELR)/2")
    if any(r["regime"] == "divergence" for r in rows):
        print("* the equilibrium level holds only in the equilibrium regime")
    return rows


def add_parser(sub):
    p = sub.add_parser("toy", help="the paper's toy model: three regimes with closed-form checks",
                       description="Projected GD on the unit sphere for F = sum_i alpha_i x_i^2/(x_i^2+y_i^2) "
                       "(paper Section 3.2), one run per ELR from the same seeded point.")
    p.add_argument("--alphas", type=number_list(float), default="1,2,4", metavar="LIST",
                   help="positive coefficients, one SI group each, comma-separated (Figure 2: 1,2,4)")
    p.add_argument("--elrs", type=grid, default="0.1,0.2,0.5", metavar="GRID",
                   help="effective learning rates, the grid grammar of sweep: 0.1,0.2 | 1e-3:1 | 1e-3:1:12")
    p.add_argument("--elr", type=grid, default=None, metavar="GRID", help="deprecated alias of --elrs")
    p.add_argument("--steps", type=_number(int), default=10000, help="projected GD iterations")
    p.add_argument("--seed", type=_number(int), default=0, help="seed of the starting point (shared by every ELR)")
    p.add_argument("--out", "-o", default=None,
                   help="trajectory file; with several ELRs, one file each: STEM-elrELR.h5")
    p.add_argument("--overwrite", action="store_true", help="replace existing trajectory files")
    add_outputs(p, "Figure 2 (F against iteration) and the individual ELRs", "the per-ELR numbers")
    p.set_defaults(run=run)


def run(args):
    if args.elr is not None:
        print("landscape toy: note: --elr is deprecated, use --elrs", file=sys.stderr)
        args.elrs = args.elr
    args.elr = args.elrs
    _check(args.alphas, args.elr, args.steps)
    paths = output_paths(args.out, args.elr) if args.out else []
    if not args.overwrite:
        for path in paths:
            if os.path.exists(path):
                raise LandscapeError(f"{path} already exists: pass --overwrite to replace it")
    results = simulate_many(args.alphas, args.elr, args.steps, args.seed)
    rows = report(results)
    for path, r in zip(paths, results):
        write_trajectory(path, r, overwrite=args.overwrite)
        print(f"wrote {path}")
    write_outputs(args, {"alphas": list(args.alphas), "steps": args.steps, "seed": args.seed, "runs": rows},
                  lambda path: plot_toy(results, path))
