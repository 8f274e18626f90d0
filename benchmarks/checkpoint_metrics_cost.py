"""The cost of the paper's checkpoint metrics (the official protocol at epoch 0 and every epoch's
end), three ways to the same numbers, interleaved in one process:

    epoch means only      `landscape train --no-checkpoint-metrics` (the floor: no checkpoint metrics)
    in training           `landscape train` (the default: measured at each epoch's end)
    post-hoc (official)   `landscape train --no-checkpoint-metrics --save-every 1`, then a separate
                          pass that reloads every epoch's checkpoint and measures it
                          (`landscape evaluate --checkpoints all`), as the official get_info.py does

Prints each way's whole time per epoch and the two routes' extra cost over the floor; checks that
both routes give the same numbers (float64 runs, to 1e-9). With ``--sweep K`` the same for a
sweep of K ELRs trained together (strategy vectorised): in training all K models are measured in
one vmapped pass, post-hoc every run's checkpoints are reloaded and measured one by one.

    python benchmarks/checkpoint_metrics_cost.py [--epochs 5] [--rounds 3] [--width 32] [--sweep 8]
"""
import glob
import os
import tempfile
import time

import numpy as np

from landscape import train
from landscape.evaluation import evaluate_checkpoints, stored_checkpoint_metrics
from timing import interleaved, training_args


def main():
    args = training_args(__doc__, extra=lambda p: p.add_argument("--sweep", type=int, default=0,
                                                                 help="K ELRs trained together (0: one run)"))
    folder = tempfile.mkdtemp(prefix="ckpt-cost-")
    base = dict(model=args.model, width=args.width, epochs=args.epochs, device=args.device,
                data_root=args.data_root, progress=False, dtype="float64", elr=2e-3)
    if args.sweep:
        return sweep_cost(args, folder, base)

    def out():
        return os.path.join(folder, f"r{time.perf_counter_ns()}.h5")

    def floor():
        train(out=out(), checkpoint_metrics=False, **base)

    def in_training():
        return train(out=out(), **base)

    def post_hoc():
        t = train(out=out(), checkpoint_metrics=False, save_every=1, **base)
        return evaluate_checkpoints(t.path, "all", device=args.device, progress=False)

    a, b = stored_checkpoint_metrics(in_training()), post_hoc()
    assert list(a["epoch"]) == list(b["epoch"]) == list(range(args.epochs + 1))
    for key in ("train_loss", "train_accuracy", "effective_grad_norm", "test_loss", "test_accuracy",
                "filters/effective_grad_norm"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, err_msg=key)
    report({"epoch means only": floor, "in training": in_training, "post-hoc": post_hoc}, args.rounds,
           args.epochs, f"model {args.model} width {args.width}, MNIST-1D, {args.epochs} epochs, float64, "
           f"{args.rounds} interleaved rounds (median); both routes give the same numbers (1e-9)", "epoch")


def report(ways: dict, rounds: int, units: int, heading: str, unit: str) -> None:
    """Time the three ways interleaved; print each per ``unit`` and the routes' extra cost."""
    times = interleaved(ways, rounds)
    print(heading)
    per_unit = {k: 1000 * v / units for k, v in times.items()}
    for name, ms in per_unit.items():
        print(f"{name:18s}: {ms:8.1f} ms per {unit}")
    floor_ms = per_unit["epoch means only"]
    extra_in, extra_post = per_unit["in training"] - floor_ms, per_unit["post-hoc"] - floor_ms
    print(f"extra cost of the checkpoint metrics per {unit}: in training {extra_in:.1f} ms, post-hoc "
          f"{extra_post:.1f} ms (ratio post-hoc / in training {extra_post / extra_in:.2f})")


def disk_mb(sweep_folder: str) -> float:
    """Mean size of a sweep folder's trajectories in MB."""
    files = glob.glob(os.path.join(sweep_folder, "*.h5"))
    return sum(os.path.getsize(f) for f in files) / len(files) / 1e6


def sweep_cost(args, folder, base):
    from landscape.sweep import sweep
    elrs = list(np.geomspace(1e-3, 1e-1, args.sweep))
    base = {k: v for k, v in base.items() if k != "elr"}

    def out():
        return os.path.join(folder, f"s{time.perf_counter_ns()}")

    def floor():
        sweep(elrs, out(), strategy="vectorised", checkpoint_metrics=False, **base)

    def in_training():
        path = out()
        sweep(elrs, path, strategy="vectorised", **base)
        return path

    def post_hoc():
        path = out()
        sweep(elrs, path, strategy="vectorised", checkpoint_metrics=False, save_every=1, **base)
        return {e: evaluate_checkpoints(os.path.join(path, f"elr{e:g}.h5"), "all", device=args.device,
                                        progress=False) for e in elrs}

    from landscape.trajectory import Trajectory
    a, b = in_training(), post_hoc()
    post_folder = max(glob.glob(os.path.join(folder, "s*")), key=os.path.getmtime)  # the post-hoc sweep just made
    print(f"disk per run: in training {disk_mb(a):.2f} MB (checkpoints every {Trajectory(glob.glob(a + '/*.h5')[0]).config['save_every']} "
          f"epochs), post-hoc {disk_mb(post_folder):.2f} MB (every epoch's checkpoint kept for the reload)")
    for e in elrs:  # the vectorised pass sums in another order: float64 rounding apart
        ca = stored_checkpoint_metrics(Trajectory(os.path.join(a, f"elr{e:g}.h5")))
        for key in ("train_loss", "train_accuracy", "effective_grad_norm", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(ca[key], b[e][key], rtol=1e-8, err_msg=key)
    report({"epoch means only": floor, "in training": in_training, "post-hoc": post_hoc}, args.rounds,
           args.epochs * args.sweep, f"sweep of {args.sweep} ELRs, vectorised, model {args.model} width "
           f"{args.width}, MNIST-1D, {args.epochs} epochs, float64, {args.rounds} interleaved rounds "
           f"(median); both routes give the same numbers (1e-8)", "run-epoch")


if __name__ == "__main__":
    main()
