"""``landscape regimes``."""
from __future__ import annotations

from ..regimes import METRIC_SOURCES
from ..regimes import RegimeCriteria
from ..regimes import SOURCE_TEXT
from ..regimes import regimes
from ..plots.regimes import plot_regimes
from .common import print_skipped


def print_regimes(result: dict) -> None:
    print(f"metrics: {SOURCE_TEXT[result['metrics']]}")
    print(f"{'ELR':>10}  {'regime':<16} {'final_loss':>10} {'p_fall':>8} {'ess_sprd':>8} "
          f"{'mean_egn':>9} {'test_acc':>8}  file / reason")
    for r in result["rows"]:
        if r["name"] == "nonfinite":
            label = f"- nonfinite (ep. {r.get('nonfinite_epoch')})"
        else:
            label = f"{r['regime'] or '-'} {r['name']}"
        print(f"{r['elr']:>10.3g}  {label:<16} {r['final_train_loss']:>10.4g} "
              f"{r.get('trend_p_falling', float('nan')):>8.2g} {r.get('ess_spread', float('nan')):>8.3g} "
              f"{r['mean_effective_grad_norm']:>9.4g} {r['test_accuracy']:>8.4f}  {r['path']}"
              + (f"  ({r['reason']})" if r.get("reason") else ""))
    print(f"largest regime-1 ELR: {result['largest_regime1_elr']}; smallest regime-3 ELR: "
          f"{result['smallest_regime3_elr']} (between determined runs)")
    if not result["ordered"]:
        print("NOT ORDERED in ELR: " + "; ".join(
            f"ELR {o['elr']:g} is {o['regime']} but ELR {o['next_elr']:g} is {o['next_regime']}"
            for o in result["out_of_order"]))
    for key, what in (("duplicate_elrs", "ELRs"), ("duplicate_files", "files")):
        if result[key]:
            print(f"duplicate {what}: " + ", ".join(map(str, result[key])))
    print_skipped(result["skipped"])


def add_parser(sub):
    from .common import _number
    p = sub.add_parser("regimes", help="classify runs into the three regimes (Figure 1)",
                       description=__doc__)
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectory files")
    for f in RegimeCriteria.__dataclass_fields__.values():
        kind = int if isinstance(f.default, int) else float
        p.add_argument(f"--{f.name.replace('_', '-')}", type=_number(kind), default=f.default)
    p.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves to judge: training's epoch means, the checkpoint metrics (official "
                   "protocol), or auto: checkpoint metrics when every run has them")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PNG")
    p.set_defaults(run=run)


def run(args):
    from ..files import write_json
    criteria = RegimeCriteria(**{k: getattr(args, k) for k in RegimeCriteria.__dataclass_fields__})
    result = regimes(args.inputs, criteria, args.metrics)
    print_regimes(result)
    if args.json:
        write_json(args.json, {**{k: v for k, v in result.items() if k != "rows"},
                               "rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                        for r in result["rows"]]})
        print(f"wrote {args.json}")
    if args.plot:
        plot_regimes(result, args.plot)
        print(f"wrote {args.plot}")
