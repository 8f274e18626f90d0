"""``landscape sweep``."""
from __future__ import annotations

import os

from ..sweep import INDEX, STRATEGIES, sweep
from ..training import TrainConfig
from .common import check_rate_options


def add_parser(sub):
    from .common import _number, add_training_options
    p = sub.add_parser("sweep", help="train many ELRs (or LRs) from one initialisation and batch order",
                       description="One trajectory per ELR in OUT/ plus OUT/sweep.json; re-running "
                       "the command continues an interrupted sweep.")
    rates = p.add_mutually_exclusive_group(required=True)
    rates.add_argument("--elrs", metavar="GRID", default=None,
                       help="ELRs on the sphere: 0.001,0.002 | 1e-7:1 ({1,2,5}x10^k in range) | "
                       "1e-4:1e-2:12 (log-spaced) (default: none)")
    rates.add_argument("--lrs", metavar="GRID", default=None,
                       help="learning rates of --space whole (or --conventional), the same grammar "
                       "(default: none)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the runs")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto: processes on a CPU, vectorised on a GPU")
    p.add_argument("--chunk", type=_number(int, True), help="vectorised: at most N models at once")
    p.add_argument("--workers", type=_number(int, True), help="processes: pool size (default: CPU count)")
    add_training_options(p, with_elr=False)
    p.set_defaults(run=run)


def run(args):
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    if args.elrs is not None:
        given["elr"] = 1.0  # marks --elrs for the check; every run sets its own
    if args.lrs is not None:
        given["lr"] = 1.0
    check_rate_options(given, sweep=True)
    given.pop("elr", None), given.pop("lr", None)
    index = sweep(args.elrs if args.elrs is not None else args.lrs, args.out, TrainConfig(**given), strategy=args.strategy,
                  chunk=args.chunk, workers=args.workers, progress=False if args.quiet else None)
    rate = "lr" if given.get("space") == "whole" else "elr"
    print(f"{rate.upper():>10}  {'status':<9} file")
    for run in index["runs"]:
        print(f"{run[rate]:>10g}  {run['status']:<9} {os.path.join(args.out, run['file'])}")
    print(f"wrote {os.path.join(args.out, INDEX)} (strategy {index['strategy']})")
