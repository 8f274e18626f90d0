"""``landscape repack``."""
from __future__ import annotations

from .common import megabytes


def add_parser(sub):
    p = sub.add_parser("repack", help="rewrite trajectories with their live data only",
                       description="Copies each trajectory's live data into a new file and "
                       "renames it into place (atomically, refused while a run writes it). "
                       "Files of format version 1 (which kept a dead model state per epoch) "
                       "become version 2.")
    p.add_argument("trajectories", nargs="+")
    p.set_defaults(run=run)


def run(args):
    from ..trajectory import repack
    for path in args.trajectories:
        r = repack(path)
        print(f"{path}: {megabytes(r['before']['file_bytes'])} -> {megabytes(r['after']['file_bytes'])} "
              f"(live data {megabytes(r['after']['live_bytes'])})")
