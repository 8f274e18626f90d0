"""``landscape surface``."""
from __future__ import annotations

from ..surface import POINTS_AT_ONCE, SLICE_SPACES, surface
import numpy as np

from .common import log_results, write_outputs
from .common import RawHelpFormatter, _number, add_checkpoint_run_options, progress_of


def add_parser(sub):
    from .. import surface as module
    p = sub.add_parser("surface", help="the loss on a 2-D slice: around a solution or through three",
                       description=module.__doc__.replace("``", ""), formatter_class=RawHelpFormatter)
    p.add_argument("inputs", nargs="+", help="one solution (a.pt or traj.h5@EPOCH) or three (their plane)")
    p.add_argument("--grid", default=None, help="LO:HI:N of both coordinates, or XLO:XHI:N,YLO:YHI:N "
                   "(default: fitted to --trajectory's projected path with a margin, else -1:1:21)")
    p.add_argument("--space", choices=SLICE_SPACES, default=None,
                   help="sphere: SI weights move on their sphere (tangent directions, great circles); "
                   "flat: straight lines (default: sphere for SI networks, flat otherwise)")
    p.add_argument("--directions", choices=("random", "pca"), default="random",
                   help="around one solution: random filter-normalised directions, or the top two PCA "
                   "directions of --trajectory's checkpoints")
    p.add_argument("--seed", type=_number(int), default=0, help="seed of the random directions")
    p.add_argument("--trajectory", default=None, metavar="TRAJ",
                   help="draw this run's checkpoints on the slice (default: none)")
    p.add_argument("--data", choices=("train", "test", "both"), default="train", help="sets evaluated")
    p.add_argument("--bn", choices=("recompute", "batch"), default="recompute",
                   help="recompute: fresh BatchNorm statistics at every point (as interpolate); batch")
    p.add_argument("--vtk", metavar="PREFIX", default=None,
                   help="also write PREFIX.vts (the surface) and PREFIX.vtp (the path) for ParaView")
    p.add_argument("--name", default=None, help="key under /analyses/surface/ (default: from the inputs)")
    p.add_argument("--points-at-once", type=_number(int, True), default=POINTS_AT_ONCE, metavar="K",
                   help="grid points evaluated together in one pass of the data (vmap over their "
                   "stacked parameters; 1: one at a time)")
    add_checkpoint_run_options(p, "contours of loss and error, solutions marked, the run's path")
    p.set_defaults(run=run)


def run(args):
    from ..surface import write_vtk
    from ..plots.surface import plot_surface
    result = surface(args.inputs, grid=args.grid, space=args.space, seed=args.seed,
                     directions=args.directions, trajectory=args.trajectory, data=args.data, bn=args.bn,
                     device=args.device, data_root=args.data_root, progress=progress_of(args), name=args.name,
                     points_at_once=args.points_at_once)
    for key in [k for k in result if k.endswith("_loss")]:
        z = result[key]
        i, j = divmod(int(z.argmin()), z.shape[1])
        print(f"{key}: min {z.min():.5g} at ({result['x'][j]:.3g}, {result['y'][i]:.3g}), max {z.max():.5g}; "
              f"{result['space']} slice, {result['directions']}")
    if "pca_explained" in result:
        print("PCA directions explain " + ", ".join(f"{v:.1%}" for v in result["pca_explained"]) + " of the path's variance")
    if "appended_to" in result:
        print(f"appended /analyses/surface/{result['name']} to {result['appended_to']}")
    if args.vtk:
        for path in write_vtk(args.vtk, result):
            print(f"wrote {path}")
    write_outputs(args, result, lambda path: plot_surface(result, path))
    from ..points import parse_source
    summary = {"epoch": np.array([0]), **{f"{k}_min": np.array([float(np.nanmin(v))]) for k, v in result.items()
                                          if k.endswith("_loss") or k.endswith("_error")}}
    log_results(args, parse_source(args.inputs[0])[0], f"surface/{result.get('name', 'slice')}", summary)
