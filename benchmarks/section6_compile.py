"""`--compile` against eager for the Section-6 runs of the reproduction (the conventional
ResNet-18 of width 8 on `mnist1d:noise=2`, momentum 0.9, weight decay 5e-4, random crops,
checkpoint metrics), side by side in one process on one thread: the median epoch (training
pass, test, checkpoint pass; the first epoch, which compiles, left out) and the start-up (the
run's wall time less its epochs: compiling, with inductor's cache warm after the first round).

    python benchmarks/section6_compile.py [--epochs 8] [--rounds 2] [--data-root data]
"""
import argparse
import os
import statistics
import tempfile
import time

import h5py
import torch

from landscape import train


def one_run(folder: str, epochs: int, compile: bool, data_root: str) -> tuple[float, float]:
    start = time.perf_counter()
    t = train(out=os.path.join(folder, "run.h5"), overwrite=True, progress=False, epochs=epochs,
              dataset="mnist1d:noise=2", data_root=data_root, model="resnet18", width=8, conventional=True,
              space="whole", lr=0.1, momentum=0.9, weight_decay=5e-4, augment=True, device="cpu",
              save_every=25, compile=compile)
    wall = time.perf_counter() - start
    with h5py.File(t.path, "r") as h:
        seconds = h["timing/epoch_seconds"][:]
    return float(statistics.median(seconds[1:])), wall - float(seconds[1:].sum()) - float(statistics.median(seconds[1:]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            for compile in (True, False):
                results[compile].append(one_run(folder, args.epochs, compile, args.data_root))
                epoch, startup = results[compile][-1]
                print(f"round {r + 1} {'compiled' if compile else 'eager   '}: epoch {epoch:.3f} s, "
                      f"start-up and first epoch beyond an epoch {startup:.1f} s", flush=True)
    eager, comp = statistics.median(e for e, _ in results[False]), statistics.median(e for e, _ in results[True])
    print(f"median epoch: eager {eager:.3f} s, compiled {comp:.3f} s, ratio {eager / comp:.2f}x")


if __name__ == "__main__":
    main()
