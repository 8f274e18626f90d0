"""``landscape show``."""
from __future__ import annotations

import json
from ..files import write_json
from .common import _number, megabytes, print_table


def add_parser(sub):
    p = sub.add_parser("show", help="print a trajectory's configuration and per-epoch table")
    p.add_argument("trajectory")
    p.add_argument("--rows", type=_number(int, True), default=20,
                   help="at most this many epochs, evenly spaced, the last included")
    p.add_argument("--all", action="store_true", help="every epoch")
    p.add_argument("--json", metavar="PATH", help="write config and metrics as JSON")
    p.set_defaults(run=run)


def run(args):
    from ..locks import describe, writer_of
    from ..trajectory import Trajectory, storage
    t = Trajectory(args.trajectory)
    print(f"{t.path}: {t.kind} trajectory, {t.epochs_complete} "
          f"{'steps' if t.kind == 'toy' else 'epochs'} complete, format v{t.attrs['format_version']}, "
          f"landscape {t.attrs.get('landscape_version')}, torch {t.attrs.get('torch_version')}")
    size = storage(t.path)
    dead = size["file_bytes"] - size["live_bytes"]
    print(f"file {megabytes(size['file_bytes'])}, live data {megabytes(size['live_bytes'])}"
          + (f" ({megabytes(dead)} reclaimable: landscape repack {t.path})"
             if dead > 0.25 * size["live_bytes"] + 256e3 else ""))  # beyond HDF5's own ~100 kB
    status = t.status
    if status == "nonfinite":
        from ..training import nonfinite_message
        status += f": {nonfinite_message(t.status_detail)}"
    writer = writer_of(t.path)
    print(f"status: {status}" + (f"; being written by {describe(writer)}" if writer else ""))
    print("config: " + json.dumps(t.config, sort_keys=True))
    if t.kind == "train":
        print(f"model: {json.dumps(t.model_spec, sort_keys=True)}; rho {t.attrs.get('rho'):.6g}; "
              f"{len(t.group_names)} SI groups; checkpoints at epochs {t.checkpoint_epochs}")
    if t.analyses:
        print("analyses: " + ", ".join(t.analyses))
    print_table(t, None if args.all else args.rows)
    if args.json:
        write_json(args.json, {"config": t.config, "metrics": t.metrics, "group_names": t.group_names,
                               "group_metrics": t.group_metrics})
