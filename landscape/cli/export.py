"""``landscape export``."""
from __future__ import annotations

from ..errors import LandscapeError
from .common import _number


def add_parser(sub):
    p = sub.add_parser("export", help="write one checkpoint of a trajectory as a self-describing .pt")
    p.add_argument("trajectory", help="traj.h5 or traj.h5@EPOCH")
    p.add_argument("--epoch", type=_number(int), help="stored epoch (default: the last)")
    p.add_argument("-o", "--out", required=True, help="the .pt file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(run=run)


def run(args):
    from ..trajectory import export_checkpoint, parse_source
    path, epoch = parse_source(args.trajectory)
    if args.epoch is not None:
        if epoch is not None:
            raise LandscapeError("give the epoch once: either TRAJ@EPOCH or --epoch")
        epoch = args.epoch
    payload = export_checkpoint(path, epoch, args.out, args.overwrite)
    print(f"wrote {args.out}: epoch {payload['epoch']} of {path} "
          f"({payload['model_spec']['name']}, {len(payload['si_group_names'])} SI groups)")
