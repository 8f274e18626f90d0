"""``landscape train``."""
from __future__ import annotations

import dataclasses
import sys

from ..errors import LandscapeError
from .common import (S, add_config_options, add_training_options, check_rate_options, config_toml,
                     print_table, read_config)


def add_parser(sub):
    p = sub.add_parser("train", help="train a fully scale-invariant network on the sphere",
                       description="Projected SGD on the sphere of radius rho at lr = ELR * rho^2 "
                       "(paper eq. (2)); writes an HDF5 trajectory epoch by epoch.")
    p.add_argument("-o", "--out", default=None,
                   help="trajectory to write (default: runs/MODEL-DATASET-elrELR.h5)")
    p.add_argument("--resume", metavar="TRAJ", default=S,
                   help="continue this trajectory from its last complete epoch (its stored "
                   "configuration is used; --epochs may be raised, and how it is computed may change: "
                   "--device, --data-root, --compile, --compile-mode, --channels-last; default: a new run)")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace an existing --out")
    p.add_argument("--init", metavar="TRAJ@EPOCH", default=S,
                   help="fine-tune: start from this stored checkpoint (model taken from it; default: a "
                   "fresh initialisation)")
    add_training_options(p)
    add_config_options(p)
    p.set_defaults(run=run)


def run(args):
    from ..config import TrainConfig
    from ..executors import run_slot
    from ..run import train
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    if args.config:
        given = {**read_config(args.config), **given}  # flags override the file
    check_rate_options(given)
    if args.print_config:
        cfg = TrainConfig(**given)
        cfg.validate()
        print(config_toml(dataclasses.asdict(cfg)), end="")
        return 0
    progress = False if args.quiet else None
    if hasattr(args, "resume") and args.out not in (None, args.resume):
        raise LandscapeError("--resume continues the given file: drop --out")
    with run_slot():  # LANDSCAPE_SLOTS: wait for a run slot, as a sweep's workers do
        if hasattr(args, "resume"):
            traj = train(out=args.resume, resume=True, progress=progress, log=args.log, log_dir=args.log_dir,
                         **given)
        else:
            cfg = TrainConfig(**given)
            name, value = cfg.swept_rate if cfg.space == "whole" else ("ELR", cfg.elr)
            dataset = cfg.dataset.replace(":", "-").replace(",", "-").replace("=", "")  # a plain file name
            out = args.out or f"runs/{cfg.model}-{dataset}-{name.lower()}{value:g}.h5"
            traj = train(cfg, out, overwrite=getattr(args, "overwrite", False), progress=progress,
                         log=args.log, log_dir=args.log_dir)
    if not args.quiet:
        print_table(traj, rows=10)
        print(f"wrote {traj.path}")
    if traj.status == "nonfinite":
        from ..run import EXIT_NONFINITE, nonfinite_message
        print(f"landscape train: stopped: {nonfinite_message(traj.status_detail)} in {traj.path} "
              f"(status 'nonfinite' recorded)", file=sys.stderr)
        return EXIT_NONFINITE
    return 0
