"""``landscape show``."""
from __future__ import annotations

import json
from ..files import write_json
from ..trajectory import _compact
from .common import _number, megabytes, print_table
import glob
import os
from ..errors import LandscapeError


def add_parser(sub):
    p = sub.add_parser("show", help="print a trajectory's settings and per-epoch table (or a folder's runs)")
    p.add_argument("trajectory", help="traj.h5, traj.h5@EPOCH (that epoch's row and checkpoint), or a "
                   "folder (one line per trajectory in it)")
    p.add_argument("--rows", type=_number(int, True), default=20,
                   help="at most this many epochs, evenly spaced, the last included")
    p.add_argument("--all", action="store_true", help="every epoch")
    p.add_argument("--json", metavar="PATH", help="write config and metrics as JSON")
    p.add_argument("--verify", action="store_true",
                   help="read every stored byte against its checksum and report damage (exit status 1 if any)")
    p.set_defaults(run=run)


def verify_file(path: str) -> int:
    from ..integrity import verify
    r = verify(path)
    print(f"{path}: {r['datasets']} datasets, {megabytes(r['bytes'])} read"
          + (f", {r['unchecked']} without a checksum (scalars, or written before checksums)" if r["unchecked"] else ""))
    if not r["corrupt"]:
        print("verified: every checksum matches")
        return 0
    for where in r["corrupt"]:
        print(f"  damaged: {where}")
    print(f"{len(r['corrupt'])} damaged datasets: 'landscape repair {path} -o REPAIRED.h5' keeps every intact epoch")
    return 1


def show_folder(folder: str) -> None:
    """One line per trajectory of a folder (a sweep): ELR, epochs, status, final losses."""
    from ..trajectory import Trajectory
    from ..config import swept_rate
    paths = sorted(glob.glob(os.path.join(folder, "*.h5")))
    if not paths:
        raise LandscapeError(f"{folder} is a folder with no trajectories (*.h5): give a trajectory file")
    print(f"{folder}: {len(paths)} trajectories")
    print(f"{'file':<28} {'kind':<6} {'rate':>12} {'epochs':>7} {'status':<10} {'train_loss':>10} {'test_acc':>8}")
    for path in paths:
        try:
            t = Trajectory(path)
        except LandscapeError as e:
            print(f"{os.path.basename(path):<28} unreadable: {str(e).removeprefix(path + ': ')}")
            continue
        m = t.metrics
        last = lambda k: f"{m[k][-1]:.4g}" if k in m and len(m[k]) else "-"
        if t.kind == "train":
            name, value = swept_rate(t.config)
            rate = f"{name} {value:.3g}"
        else:
            rate = f"ELR {t.config.get('elr', float('nan')):.3g}"
        print(f"{os.path.basename(path):<28} {t.kind:<6} {rate:>12} "
              f"{t.epochs_complete:>7d} {t.status:<10} {last('train_loss'):>10} {last('test_accuracy'):>8}"
              + "".join(f"  warning: {p}" for p in t.problems()))


def run(args):
    from ..locks import describe, writer_of
    from ..trajectory import Trajectory, storage
    from ..points import parse_source
    if os.path.isdir(args.trajectory):
        if args.verify:
            return max([verify_file(p) for p in sorted(glob.glob(os.path.join(args.trajectory, "*.h5")))] or [0])
        return show_folder(args.trajectory)
    if args.verify:
        return verify_file(args.trajectory)
    path, epoch = parse_source(args.trajectory)
    t = Trajectory(path)
    if epoch is not None:
        stored = t.epochs.tolist()
        epoch = stored[-1] if epoch == -1 and stored else epoch
        if epoch not in stored:
            raise LandscapeError(f"{path} has no epoch {epoch}: it has epochs "
                                 f"{stored[0] if stored else '-'}..{stored[-1] if stored else '-'} "
                                 f"(checkpoints at {t.checkpoint_epochs})")
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
        from ..run import nonfinite_message
        status += f": {nonfinite_message(t.status_detail)}"
    writer = writer_of(t.path)
    print(f"status: {status}" + (f"; being written by {describe(writer)}" if writer is not None else ""))
    for problem in t.problems():
        print(f"warning: {problem}")
    print("config (as given): " + json.dumps(t.config, sort_keys=True))
    if t.kind == "train":
        spec, cfg = t.model_spec, t.config
        device = t.attrs.get("device_used", "not recorded (written before landscape 0.1.0 recorded it)")
        print(f"resolved: model {spec['name']}, width {spec.get('width')}"
              + (f", depth {spec.get('depth')}" if spec["name"] == "mlp" else "")
              + f", {spec['num_classes']} classes, input {tuple(spec['input_shape'])}; device {device}; "
              f"dtype {cfg.get('dtype', 'float32')}; rho {t.attrs.get('rho'):.6g}; "
              f"lr = ELR rho^2 = {t.attrs.get('lr', float('nan')):.6g}; {len(t.group_names)} SI layers; "
              f"torch {t.attrs.get('torch_version')}")
        print(f"checkpoints at epochs {_compact(t.checkpoint_epochs)}")
    if t.analyses:
        print("analyses: " + ", ".join(t.analyses))
    if epoch is not None:
        print_table(t, epochs=[epoch])
        print(f"checkpoint at epoch {epoch}: {'stored' if epoch in t.checkpoint_epochs else 'not stored'}")
    else:
        print_table(t, None if args.all else args.rows)
    if args.json:
        write_json(args.json, {"config": t.config, "metrics": t.metrics, "group_names": t.group_names,
                               "group_metrics": t.group_metrics})
