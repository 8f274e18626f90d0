"""Cost of a step in the whole parameter space (Section 6: plain SGD with weight decay and
momentum, `--space whole`) against the sphere's projected step (`--space sphere`): whole
`landscape train` runs, interleaved in one process so machine noise hits both alike; the ratio
is what counts (the goal: within 10 %).

    python benchmarks/whole_space_overhead.py [--epochs 5] [--rounds 4] [--model convnet] [--width 32]
"""
import os
import tempfile
import time

import torch

from landscape import train
from timing import interleaved, training_args

SETTINGS = {
    "sphere": dict(elr=1e-3),
    "whole": dict(space="whole", lr=0.05, weight_decay=1e-4, momentum=0.9),
}


def run(args, folder, name):
    train(out=os.path.join(folder, f"{name}{time.perf_counter_ns()}.h5"), model=args.model,
          width=args.width, epochs=args.epochs, device=args.device, progress=False,
          data_root=args.data_root, save_every=args.epochs, **SETTINGS[name])


def main():
    args = training_args(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        t = interleaved({n: (lambda n=n: run(args, folder, n)) for n in SETTINGS}, args.rounds)
    sphere, whole = t["sphere"] / args.epochs, t["whole"] / args.epochs
    print(f"model {args.model} width {args.width}, MNIST-1D, {args.device}, torch threads "
          f"{torch.get_num_threads()}, {args.rounds} interleaved runs of {args.epochs} epochs each")
    print(f"--space sphere (projected SGD)              : median {sphere * 1000:8.1f} ms/epoch")
    print(f"--space whole (SGD, weight decay, momentum) : median {whole * 1000:8.1f} ms/epoch")
    print(f"whole / sphere                              : {100 * (whole / sphere - 1):+.1f}%  "
          f"(ratio {whole / sphere:.3f})")


if __name__ == "__main__":
    main()
