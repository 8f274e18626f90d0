"""``landscape interpolate``."""
from __future__ import annotations

from ..interpolation import DATA, PATH_BN_MODES, PATHS, interpolate
from ..plots.interpolation import plot_interpolation
from .common import log_results, write_outputs
from .common import _number, add_checkpoint_run_options, progress_of


def print_interpolation(out: dict) -> None:
    for r in out["pairs"]:
        keys = [k for k in ("train_loss", "train_error", "test_loss", "test_error") if k in r]
        print(f"{r['a']} -> {r['b']}  (angle between SI weights {r['angle_degrees']:.2f} degrees; "
              f"path {out['settings']['path']}, BN {out['settings']['bn']})")
        print(f"{'alpha':>7} " + " ".join(f"{k:>11}" for k in keys))
        for i, alpha in enumerate(r["alpha"]):
            mark = " <" if abs(alpha) < 1e-9 or abs(alpha - 1) < 1e-9 else ""
            print(f"{alpha:>7.3f} " + " ".join(f"{r[k][i]:>11.5g}" for k in keys) + mark)
        for k in keys:
            s = r["summary"][k]
            print(f"  {k:<11} barrier (above the chord of the ends) {s['barrier']:.5g} at alpha "
                  f"{s['barrier_alpha']:.3f}; barrier (above the ends' mean) {s['barrier_mean_ends']:.5g}; "
                  f"{'convex' if s['convex'] else 'not convex'}")


def add_parser(sub):
    p = sub.add_parser("interpolate", help="loss and error on the path between two solutions",
                       description="Loss barriers on the linear (or great-circle) path between two "
                       "checkpoints: A B as .pt exports or traj.h5@EPOCH, or one trajectory with --along.")
    p.add_argument("a", help="a.pt or traj.h5@EPOCH (with --along: traj.h5)")
    p.add_argument("b", nargs="?", help="b.pt or traj.h5@EPOCH")
    p.add_argument("--along", metavar="EPOCHS", help="paths between consecutive checkpoints: 10,20,30 | all | every:K")
    p.add_argument("--points", type=_number(int), default=25, help="points on [0, 1] (0 and 1 included)")
    p.add_argument("--extend", type=_number(float), default=0.2, help="also this far beyond each end")
    p.add_argument("--data", choices=DATA, default="both", help="evaluate on the train set, the test set or both")
    p.add_argument("--bn", choices=PATH_BN_MODES, default="recompute",
                   help="recompute: fresh BatchNorm statistics at every point from one pass over the "
                   "training data, then eval mode (the official protocol); batch: mini-batch statistics")
    p.add_argument("--path", choices=PATHS, default="chord",
                   help="chord: straight line; sphere: great circle of the SI weights on A's sphere")
    p.add_argument("--name", default=None,
                   help="key of the result under /analyses/interpolation/ (default: from the inputs, "
                   "so different pairs never overwrite each other)")
    add_checkpoint_run_options(p, "loss and error along the path, ends and barrier marked")
    p.set_defaults(run=run)


def run(args):
    out = interpolate(args.a, args.b, along=args.along, points=args.points, extend=args.extend,
                      data=args.data, bn=args.bn, path=args.path, device=args.device,
                      data_root=args.data_root, progress=progress_of(args), name=args.name)
    print_interpolation(out)
    if "appended_to" in out:
        print(f"appended /analyses/interpolation/{out['name']} to {out['appended_to']}")
    write_outputs(args, out, lambda path: plot_interpolation(out, path))
    import numpy as np
    pairs = out["pairs"]
    summary = {"epoch": np.array([p.get("epoch_b") or 0 for p in pairs])}
    for key in [k for k in pairs[0]["summary"]]:
        summary[f"{key}_barrier"] = np.array([p["summary"][key]["barrier"] for p in pairs])
    log_results(args, out.get("appended_to") or "", f"interpolation/{out.get('name', 'pair')}", summary)
