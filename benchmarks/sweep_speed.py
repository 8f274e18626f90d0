"""A 12-ELR sweep with each strategy against 12 sequential `landscape.train` runs of the same
epochs, measured side by side in one run.

    python benchmarks/sweep_speed.py                                  # 2-core CPU, MNIST-1D ConvNet
    python benchmarks/sweep_speed.py --device cuda --data random-cifar --strategies vectorised

`random-cifar` stands in CIFAR-10-shaped random tensors (50,000 x 3 x 32 x 32, 10 classes) for
timing on a machine without the dataset.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

import landscape.run as run_layer
from landscape.data import Dataset
from landscape.sweep import sweep


def random_cifar(name, root, download, subset, noise, seed, device, *options, **keywords):
    g = torch.Generator().manual_seed(0)
    n = subset or 50000
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("random-cifar", x.to(device), y.to(device), x[:1000].to(device), y[:1000].to(device), 10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", choices=("mnist1d", "random-cifar"), default="mnist1d")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--strategies", default="processes,vectorised")
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    if args.data == "random-cifar":
        run_layer.load_dataset = random_cifar  # timing only: workers of `processes` can't see this
    elrs = [float(f"{m}e-{k}") for k in (5, 4, 3, 2) for m in (1, 2, 5)]
    cfg = dict(model="convnet", width=args.width, epochs=args.epochs, device=args.device,
               data_root=args.data_root, save_every=args.epochs, train_subset=args.train_subset,
               checkpoint_metrics=False)  # training speed: the checkpoint metrics' pass is timed by checkpoint_metrics_cost.py
    folder = tempfile.mkdtemp()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    try:
        run_layer.train(out=os.path.join(folder, "warm.h5"), progress=False, **dict(cfg, epochs=1))
        cli = None
        if args.data == "mnist1d":  # what the sweep replaces: one `landscape train` command per ELR
            t0 = time.perf_counter()
            for e in elrs:
                cmd = [sys.executable, "-m", "landscape", "train", "-q", "--elr", str(e), "-o",
                       os.path.join(folder, f"cli{e:g}.h5")]
                for k, v in cfg.items():
                    if v is not None:
                        cmd += [f"--{k.replace('_', '-')}", str(v)]
                subprocess.run(cmd, check=True)
            cli = time.perf_counter() - t0
        t0 = time.perf_counter()
        for e in elrs:
            run_layer.train(out=os.path.join(folder, f"seq{e:g}.h5"), progress=False, **dict(cfg, elr=e))
        sync()
        sequential = time.perf_counter() - t0
        print(f"{len(elrs)} ELRs x {args.epochs} epochs, ConvNet k={args.width}, {args.data}, device "
              f"{args.device}, torch threads {torch.get_num_threads()}")
        if cli is not None:
            print(f"12 x `landscape train` CLI : {cli:8.1f} s")
        print(f"12 x landscape.train()    : {sequential:8.1f} s   (in one process: no start-up per run)")
        for strategy in args.strategies.split(","):
            t0 = time.perf_counter()
            sweep(elrs, os.path.join(folder, strategy), strategy=strategy, progress=False,
                  chunk=args.chunk, **cfg)
            sync()
            t = time.perf_counter() - t0
            vs_cli = f"{cli / t:.2f}x vs the CLI runs, " if cli is not None else ""
            print(f"sweep --strategy {strategy:<10}: {t:8.1f} s   ({vs_cli}{sequential / t:.2f}x vs landscape.train())")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
