"""``landscape random-walk``."""
from __future__ import annotations

from .common import RawHelpFormatter, _number, add_outputs, print_skipped, write_outputs


def add_parser(sub):
    from .. import random_walk as module
    p = sub.add_parser("random-walk", help="compare runs with a random walk on the sphere taking "
                       "their own steps (Appendix M)", description=module.__doc__.split("Example:")[0],
                       formatter_class=RawHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectories (trained on a sphere, "
                   "with checkpoint metrics)")
    p.add_argument("--walks", type=_number(int, True), default=999,
                   help="simulated random walks; the smallest p-value is 1/(walks+1)")
    p.add_argument("--alpha", type=_number(float, low=0.0, high=1.0), default=0.01,
                   help="significance level: p below it is 'not a random walk'")
    p.add_argument("--seed", type=_number(int), default=0, help="the walks' seed")
    add_outputs(p, "each run's angle to its start over the random walks' band",
                "every run's test, evidence and curves")
    p.set_defaults(run=run)


def run(args):
    from ..plots.random_walk import plot_random_walk
    from ..random_walk import random_walk
    result = random_walk(args.inputs, walks=args.walks, seed=args.seed, alpha=args.alpha)
    print_random_walk(result)
    write_outputs(args, result, lambda path: plot_random_walk(result, path))


def print_random_walk(result: dict) -> None:
    rows = result["rows"]
    name = rows[0]["rate_name"] if rows else "ELR"
    print(f"random walks: {result['walks']} per run, alpha {result['alpha']:g}; angles to the start in degrees")
    print(f"{name:>9} {'p':>7} {'final':>6} {'walk':>6} {'mean_dev':>8} {'max_dev':>8} {'at_ep':>6} "
          f"{'D_eff':>8} {'D':>9}  verdict / file")
    for r in rows:
        d_eff = "-" if r["effective_dimension"] is None else f"{r['effective_dimension']:.3g}"
        print(f"{r['rate']:>9.3g} {r['p_value']:>7.3g} {r['final_angle_deg']:>6.1f} "
              f"{r['final_walk_angle_deg']:>6.1f} {r['mean_deviation_deg']:>+8.2f} {r['max_deviation_deg']:>+8.2f} "
              f"{r['max_deviation_epoch']:>6} {d_eff:>8} {r['dimension']:>9}  {r['verdict']}  {r['path']}")
    print("D_eff: 1/mean cos^2 to the start where the walk has forgotten it (a walk on the whole sphere: ~D)")
    print_skipped(result["skipped"])
