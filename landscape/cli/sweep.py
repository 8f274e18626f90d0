"""``landscape sweep``."""
from __future__ import annotations

import dataclasses
import os

from ..sweep import INDEX, STRATEGIES, sweep
from ..config import TrainConfig
from ..errors import LandscapeError
from .common import add_config_options, check_rate_options, config_toml, read_config
from .common import _number, add_training_options


def add_parser(sub):
    p = sub.add_parser("sweep", help="train many ELRs (or LRs) from one initialisation and batch order",
                       description="One trajectory per ELR in OUT/ plus OUT/sweep.json; re-running "
                       "the command continues an interrupted sweep.")
    rates = p.add_mutually_exclusive_group()
    rates.add_argument("--elrs", metavar="GRID", default=None,
                       help="ELRs on the sphere: 0.001,0.002 | 1e-7:1 ({1,2,5}x10^k in range) | "
                       "1e-4:1e-2:12 (log-spaced) (default: none)")
    rates.add_argument("--lrs", metavar="GRID", default=None,
                       help="learning rates of --space whole (or --conventional), the same grammar "
                       "(default: none)")
    p.add_argument("-o", "--out", default=None, metavar="DIR", help="folder for the runs (required, "
                   "except with --print-config)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="vectorised: one vmapped model; streams: the models in turn on each "
                   "batch, a CUDA stream each; processes: worker processes; auto: processes on a "
                   "CPU, on a GPU the fastest of the three timed on a short probe (default: auto)")
    p.add_argument("--chunk", type=_number(int, True), help="vectorised / streams: at most N models at once")
    p.add_argument("--workers", type=_number(int, True), help="processes: pool size (default: CPU count)")
    g = p.add_argument_group("beyond one machine")
    g.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                   help="local: --strategy on this machine; ray: one Ray task per run; slurm: a "
                   "submitit job array")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start a local instance)")
    g.add_argument("--gpus-per-run", type=_number(float, low=0.0, high=1e9), default=0.0,
                   help="ray: GPUs per run, a fraction lets small models share a GPU")
    g.add_argument("--retries", type=_number(int, low=0, high=1000), default=3,
                   help="ray / slurm: times a run whose worker died is retried (it resumes)")
    g.add_argument("--slurm-partition", default=None, help="slurm: partition (default: the cluster's)")
    g.add_argument("--slurm-time", type=_number(int, True), default=24 * 60, metavar="MINUTES",
                   help="slurm: time limit per task; a task that hits it is requeued and resumes")
    g.add_argument("--gpus-per-task", type=_number(int, low=0, high=1000), default=0, help="slurm: GPUs per task")
    g.add_argument("--array-parallelism", type=_number(int, True), default=256,
                   help="slurm: tasks of the array running at once")
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default=None,
                   help="submitit's executor: slurm, or local subprocesses (default: slurm when available)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="train only every N-th run from the I-th (I/N), or 'slurm' from the array "
                   "task id: for job arrays, Hydra or W&B agents sharing one folder (default: all runs)")
    add_training_options(p, with_elr=False)
    add_config_options(p)
    p.set_defaults(run=run)


def run(args):
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    if args.config:  # a config plus its grid: the grid from the flags or the file's elrs / lrs
        from_file = read_config(args.config, extra=("elrs", "lrs"))
        if args.elrs is None and args.lrs is None:
            args.elrs, args.lrs = from_file.get("elrs"), from_file.get("lrs")
        given = {**{k: v for k, v in from_file.items() if k not in ("elrs", "lrs", "elr", "lr")}, **given}
    if args.elrs is None and args.lrs is None:
        raise LandscapeError("give the grid: --elrs GRID (or --lrs GRID with --space whole)")
    if args.print_config:
        settings = {**dataclasses.asdict(TrainConfig(**{k: v for k, v in given.items()
                                                         if k not in ("elr", "lr")})),
                    "elrs": args.elrs, "lrs": args.lrs}
        settings.pop("elr"), settings.pop("lr")
        print(config_toml(settings), end="")
        return 0
    if args.out is None:
        raise LandscapeError("give the folder for the runs: -o DIR")
    if args.elrs is not None:
        given["elr"] = 1.0  # marks --elrs for the check; every run sets its own
    if args.lrs is not None:
        given["lr"] = 1.0
    check_rate_options(given, sweep=True)
    given.pop("elr", None), given.pop("lr", None)
    options = {}
    if args.executor == "ray":
        options = {"address": args.ray_address, "gpus_per_run": args.gpus_per_run, "retries": args.retries}
    elif args.executor == "slurm":
        options = {"cluster": args.slurm_cluster, "partition": args.slurm_partition,
                   "timeout_min": args.slurm_time, "gpus_per_task": args.gpus_per_task,
                   "array_parallelism": args.array_parallelism, "retries": args.retries}
    index = sweep(args.elrs if args.elrs is not None else args.lrs, args.out, TrainConfig(**given), strategy=args.strategy,
                  chunk=args.chunk, workers=args.workers, progress=False if args.quiet else None,
                  executor=args.executor, executor_options=options, shard=args.shard,
                  log=args.log, log_dir=args.log_dir)
    rate = "lr" if given.get("space") == "whole" else "elr"
    print(f"{rate.upper():>10}  {'status':<9} file")
    for run in index["runs"]:
        print(f"{run[rate]:>10g}  {run['status']:<9} {os.path.join(args.out, run['file'])}")
    print(f"wrote {os.path.join(args.out, INDEX)} (executor {index['executor']}"
          + (f", strategy {index['strategy']})" if index["executor"] == "local" else ")"))
