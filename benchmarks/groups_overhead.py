"""Cost of logging every filter as an SI group (`--groups filter`, the default) against logging
layers only (`--groups layer`): whole `landscape train` runs, interleaved in one process, so
machine noise hits both alike; the ratio is what counts.

    python benchmarks/groups_overhead.py [--epochs 5] [--rounds 4] [--model convnet] [--width 32]
"""
import os
import tempfile
import time

import torch

from landscape import train
from timing import interleaved, training_args


def run(args, folder, groups):
    train(out=os.path.join(folder, f"{groups}{time.perf_counter_ns()}.h5"), model=args.model,
          width=args.width, epochs=args.epochs, device=args.device, progress=False,
          data_root=args.data_root, save_every=args.epochs, groups=groups)


def main():
    args = training_args(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        t = interleaved({g: (lambda g=g: run(args, folder, g)) for g in ("layer", "filter")}, args.rounds)
    layer, filt = t["layer"] / args.epochs, t["filter"] / args.epochs
    print(f"model {args.model} width {args.width}, MNIST-1D, {args.device}, torch threads "
          f"{torch.get_num_threads()}, {args.rounds} interleaved runs of {args.epochs} epochs each")
    print(f"--groups layer  : median {layer * 1000:8.1f} ms/epoch")
    print(f"--groups filter : median {filt * 1000:8.1f} ms/epoch")
    print(f"overhead        : {100 * (filt / layer - 1):+.1f}%  (ratio {filt / layer:.3f})")


if __name__ == "__main__":
    main()
