"""``landscape export``: a checkpoint as a .pt, or trajectories mirrored to dashboards."""
from __future__ import annotations

from ..errors import LandscapeError
from .common import _number


def add_parser(sub):
    p = sub.add_parser("export", help="a checkpoint as a self-describing .pt, or trajectories to "
                       "CSV / TensorBoard (--to)")
    p.add_argument("trajectory", nargs="+", help="traj.h5 or traj.h5@EPOCH (with --to: any number of trajectories)")
    p.add_argument("--epoch", type=_number(int), help="stored epoch (default: the last)")
    p.add_argument("-o", "--out", default=None, help="the .pt file to write (default: none; required without --to)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--to", default=None, metavar="KINDS",
                   help="mirror every epoch of the trajectories to csv, tensorboard (comma-separated) "
                   "instead (default: none)")
    p.add_argument("--log-dir", default=None, metavar="DIR",
                   help="with --to: DIR/<run> (default: <run>.logs beside each trajectory)")
    p.set_defaults(run=run)


def run(args):
    from ..points import export_checkpoint, parse_source
    if args.to:
        from ..trackers import mirror_trajectory
        for path in args.trajectory:
            print(f"{path} -> {mirror_trajectory(parse_source(path)[0], args.to, args.log_dir)}")
        return 0
    if args.out is None or len(args.trajectory) != 1:
        raise LandscapeError("give one trajectory and -o OUT.pt (or --to csv,tensorboard to mirror many)")
    path, epoch = parse_source(args.trajectory[0])
    if args.epoch is not None:
        if epoch is not None:
            raise LandscapeError("give the epoch once: either TRAJ@EPOCH or --epoch")
        epoch = args.epoch
    payload = export_checkpoint(path, epoch, args.out, args.overwrite)
    print(f"wrote {args.out}: epoch {payload['epoch']} of {path} "
          f"({payload['model_spec']['name']}, {len(payload['si_group_names'])} SI groups)")
