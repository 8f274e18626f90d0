"""What Fletcher-32 checksums cost a run: the same training (ConvNet on MNIST-1D, checkpoint
metrics, a checkpoint every epoch: the most writing a run does) with checksums on and off, side
by side in one process, alternating; the commit's and a whole-file read's time, each against
the epoch's.

    python benchmarks/checksum_cost.py [--width 16] [--epochs 20] [--rounds 3]
"""
import argparse
import os
import statistics
import tempfile
import time

import landscape.trajectory as trajectory
from landscape import Trajectory, train


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    commit = {True: [], False: []}
    read = {True: [], False: []}
    epoch = []
    real = trajectory.TrajectoryWriter.append_epoch

    def timed(self, *a, **kw):
        start = time.perf_counter()
        real(self, *a, **kw)
        commits.append(time.perf_counter() - start)
    trajectory.TrajectoryWriter.append_epoch = timed
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for on in (True, False):
                trajectory.CHECKSUMS = on
                commits = []
                path = os.path.join(tmp, f"{r}-{on}.h5")
                t = train(out=path, progress=False, dataset="mnist1d:noise=2", width=args.width, epochs=args.epochs,
                          save_every=1, device="cpu", augment=False)
                commit[on].append(statistics.median(commits))
                epoch.append(statistics.median(t.timing["epoch_seconds"]))
                start = time.perf_counter()
                t = Trajectory(path)
                for e in t.checkpoint_epochs:
                    t.state_dict(e)
                read[on].append((time.perf_counter() - start) / args.epochs)
    e = statistics.median(epoch)
    print(f"ConvNet k={args.width}, MNIST-1D, {args.epochs} epochs, a checkpoint every epoch; median epoch {e:.3f} s")
    for name, d in (("commit of one epoch", commit), ("reading one epoch back (rows + checkpoint)", read)):
        on, off = statistics.median(d[True]), statistics.median(d[False])
        print(f"{name:44s} checksums {on * 1e3:7.2f} ms, none {off * 1e3:7.2f} ms: "
              f"+{(on - off) * 1e3:.2f} ms = {100 * (on - off) / e:+.2f}% of an epoch")


if __name__ == "__main__":
    main()
