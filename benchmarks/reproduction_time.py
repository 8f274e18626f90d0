"""Where the wall time of a reproduction went: for every run under a recipe folder, its interval
(the file's creation to the end of its last epoch, from its own epoch times: the file's
modification time would count the analyses that write into it later; each run's start-up after
its creation, a second or so, is left out) and its epoch times; per stage (a folder group) the
wall time, the core-seconds of epochs, and how busy the machine's cores were (the time-average
of min(runs in flight, cores) / cores). Idle core time is what a perfect packing of the same runs
would save.

    python benchmarks/reproduction_time.py [RECIPE] [--cores 2]
"""
import argparse
import datetime
import glob
import os

import h5py
import numpy as np

STAGES = {  # stage: folder patterns under the recipe folder (train/*.sh)
    "main sweeps": ["sweep-seed*"],
    "label noise": ["noise*"],
    "fine-tuning": ["finetune"],
    "Section 6, SI whole space": ["s6-si-whole"],
    "Section 6, conventional": ["s6-conv-*"],
}


def intervals(folder_patterns, recipe):
    out = []
    for pattern in folder_patterns:
        for path in sorted(glob.glob(os.path.join(recipe, pattern, "*.h5"))):
            with h5py.File(path, "r") as h:
                start = datetime.datetime.fromisoformat(h.attrs["created"]).timestamp()
                epochs = h["/timing/epoch_seconds"][:] if "timing/epoch_seconds" in h else np.zeros(0)
            out.append((start, start + float(np.sum(epochs)), float(np.sum(epochs))))
    return out


def busy_fraction(spans, cores):
    """Time-average of min(in flight, cores) / cores over the union's extent."""
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    busy, active, last = 0.0, 0, events[0][0]
    for t, step in events:
        busy += min(active, cores) * (t - last)
        active, last = active + step, t
    return busy / (cores * (events[-1][0] - events[0][0]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default="runs/recipe")
    p.add_argument("--cores", type=int, default=os.cpu_count())
    args = p.parse_args()
    print(f"{'stage':28s} {'runs':>4s} {'wall min':>8s} {'epoch core-min':>14s} {'cores busy':>10s}")
    everything = []
    for stage, patterns in STAGES.items():
        spans = intervals(patterns, args.recipe)
        if not spans:
            continue
        everything += spans
        wall = max(e for _, e, _ in spans) - min(s for s, _, _ in spans)
        print(f"{stage:28s} {len(spans):4d} {wall / 60:8.1f} {sum(c for _, _, c in spans) / 60:14.1f} "
              f"{busy_fraction(spans, args.cores):10.0%}")
    wall = max(e for _, e, _ in everything) - min(s for s, _, _ in everything)
    core = sum(c for _, _, c in everything)
    print(f"{'all training':28s} {len(everything):4d} {wall / 60:8.1f} {core / 60:14.1f} "
          f"{busy_fraction(everything, args.cores):10.0%}")
    print(f"epochs alone on {args.cores} perfectly packed cores: {core / args.cores / 60:.1f} min")


if __name__ == "__main__":
    main()
