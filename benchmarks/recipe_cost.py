"""What an epoch of the reproduction recipe (train/recipe.env) costs on this machine, for each
choice the recipe could make: eager or --compile, checkpoint metrics on or off, and the sweep
strategy. Each variant runs a sweep of the same ELRs at two lengths; the per-epoch cost is the
difference over the extra epochs (start-up and compilation cancel), and the start-up is the
rest. Measured side by side in one run.

    python benchmarks/recipe_cost.py [--elrs 1e-3,1e-2] [--epochs 3,10]
"""
import argparse
import os
import subprocess
import tempfile
import time

VARIANTS = {  # name: extra flags
    "eager, checkpoint metrics (processes)": [],
    "eager, no checkpoint metrics": ["--no-checkpoint-metrics"],
    "compile, checkpoint metrics": ["--compile"],
    "eager, checkpoint metrics, vectorised": ["--strategy", "vectorised"],
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--elrs", default="1e-3,1e-2")
    p.add_argument("--epochs", default="3,10")
    p.add_argument("--dataset", default="mnist1d:noise=2")
    p.add_argument("--width", default="16")
    args = p.parse_args()
    short, long_ = (int(x) for x in args.epochs.split(","))
    runs = len(args.elrs.split(","))
    print(f"{runs} ELRs, ConvNet k={args.width} on {args.dataset}, no augmentation; per run-epoch = "
          f"(time at {long_} - time at {short} epochs) / ({long_ - short} x {runs})")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in VARIANTS.items():
            times = []
            for epochs in (short, long_):
                out = os.path.join(tmp, f"{len(times)}-{abs(hash(name))}")
                start = time.perf_counter()
                subprocess.run(["landscape", "sweep", "--elrs", args.elrs, "-o", out, "--epochs", str(epochs),
                                "--dataset", args.dataset, "--width", args.width, "--device", "cpu", "-q", *flags],
                               check=True, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - start)
            per_epoch = (times[1] - times[0]) / ((long_ - short) * runs)
            start_up = times[0] - per_epoch * short * runs
            base = base or per_epoch
            print(f"{name:42s} {per_epoch:6.3f} s per run-epoch ({per_epoch / base:4.2f}x), start-up {start_up:5.1f} s",
                  flush=True)


if __name__ == "__main__":
    main()
