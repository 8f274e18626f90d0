"""Loss-surface evaluation: grid points one at a time against K points per pass of the data
(vmap over their stacked parameters, BatchNorm recomputed per point inside the pass), measured
side by side (interleaved rounds) on the default ConvNet and MNIST-1D.

    python benchmarks/surface_speed.py [--width 32] [--grid 4] [--rounds 3] [--k 4,8,16]

Prints seconds per grid point of each contender and its speed-up over one at a time, for the
train set (4000 signals) with BN recompute, the default of `landscape surface`.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from landscape import build_model, load_dataset, model_spec
from landscape.models import si_groups
from landscape.surface import Slice, evaluate_surface, filter_normalised
from timing import interleaved


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--grid", type=int, default=4, help="N: an N x N grid")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", default="4,8,16", help="points per pass to compare with one at a time")
    p.add_argument("--bn", default="recompute", choices=("recompute", "batch"))
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    data = load_dataset("mnist1d", args.data_root)
    model = build_model(model_spec("convnet", data.input_shape, 10, width=args.width), 0)
    params = {n: q for n, q in model.named_parameters() if q.requires_grad}
    gen = torch.Generator().manual_seed(0)
    sl = Slice(params, [n for n, _ in si_groups(model)], "sphere",
               directions=(filter_normalised(params, gen), filter_normalised(params, gen)))
    grid = np.linspace(-1, 1, args.grid)
    sets = {"train": [(data.x_train, data.y_train)]}
    points = args.grid ** 2

    def run(k):
        return lambda: evaluate_surface(model, sl, grid, grid, sets, args.bn, F.cross_entropy, 128,
                                        data.x_train, points_at_once=k)
    ks = [1] + [int(k) for k in args.k.split(",")]
    times = interleaved({k: run(k) for k in ks}, args.rounds)
    print(f"ConvNet k={args.width} on MNIST-1D (4000 train signals), {points} grid points, BN {args.bn}, "
          f"torch threads {torch.get_num_threads()}")
    for k in ks:
        print(f"  {k:>2} point(s) per pass: {times[k] / points * 1e3:7.1f} ms per point, "
              f"speed-up over one at a time {times[1] / times[k]:.2f}x")


if __name__ == "__main__":
    main()
