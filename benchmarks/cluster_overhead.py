"""What a cluster engine costs on one machine: 12 short runs (an MLP on MNIST-1D,
--epochs each) through `landscape sweep` with the local processes strategy, the Ray executor (a
local instance started by the sweep) and the Slurm executor on submitit's local backend, run in
turn in one process; the differences are the engines' start-up and scheduling.

    cd benchmarks && python cluster_overhead.py [--epochs 3] [--data-root ../data]
"""
import argparse
import os
import tempfile
import time

from landscape.sweep import sweep

ELRS = [float(f"{m}e-{k}") for k in (4, 3, 2, 1) for m in (1, 2, 5)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    cfg = dict(model="mlp", width=64, depth=2, train_subset=1024, epochs=args.epochs, device="cpu",
               save_every=args.epochs, data_root=args.data_root, checkpoint_metrics=False)
    contenders = {
        "local processes (2 workers)": dict(strategy="processes", workers=2),
        "ray (local instance, 2 CPUs)": dict(executor="ray", executor_options={"num_cpus": 2}),
        "slurm (submitit local backend)": dict(executor="slurm", executor_options={"cluster": "local"}),
    }
    with tempfile.TemporaryDirectory() as folder:
        sweep(ELRS[:1], os.path.join(folder, "warm"), progress=False, **dict(cfg, epochs=1))
        times = {}
        for name, kw in contenders.items():
            t0 = time.perf_counter()
            sweep(ELRS, os.path.join(folder, name.split()[0]), progress=False, **kw, **cfg)
            times[name] = time.perf_counter() - t0
    base = times["local processes (2 workers)"]
    print(f"12 runs x {args.epochs} epochs, MLP width 64 on 1024 MNIST-1D signals, CPU")
    for name, t in times.items():
        print(f"{name:<32} {t:7.1f} s   ({t - base:+.1f} s against local processes)")


if __name__ == "__main__":
    main()
