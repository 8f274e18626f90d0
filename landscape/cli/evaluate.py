"""``landscape evaluate``."""
from __future__ import annotations

from ..trajectory import Trajectory
from .common import log_results, write_outputs
from .common import add_checkpoint_run_options, add_checkpoints, checkpoints_of, epochs_argument, progress_of


def add_parser(sub):
    p = sub.add_parser("evaluate", help="the official code's metrics of stored checkpoints",
                       description="At each chosen checkpoint, with no update: train loss and "
                       "accuracy over the whole training set in fixed order (the run's batch "
                       "size, train-mode BatchNorm), the mean stochastic effective gradient norm "
                       "over those batches (total, per layer, per filter), test loss and accuracy "
                       "(eval mode). Appended under /analyses/checkpoint_metrics.")
    p.add_argument("trajectory", help="traj.h5 (or traj.h5@EPOCH for one checkpoint)")
    add_checkpoints(p, "all")
    add_checkpoint_run_options(p, "the checkpoint metrics over training's epoch means")
    p.set_defaults(run=run)


def run(args):
    from ..evaluation import evaluate_checkpoints
    from ..plots.evaluation import plot_checkpoint_metrics
    from ..trajectory import Trajectory
    path, epochs = epochs_argument(args.trajectory, checkpoints_of(args), "all")
    result = evaluate_checkpoints(path, epochs, args.device, args.data_root, progress=progress_of(args))
    traj = Trajectory(path)
    print_checkpoint_metrics(result, traj)
    print(f"appended /analyses/checkpoint_metrics to {path}")
    write_outputs(args, result, lambda out: plot_checkpoint_metrics(result, traj, out))
    log_results(args, path, "checkpoint_metrics", result)


def print_checkpoint_metrics(result: dict, traj: Trajectory | None = None) -> None:
    """The table: checkpoint metrics, and beside them the epoch means training logged."""
    epoch_means = None
    if traj is not None:
        idx = {int(e): i for i, e in enumerate(traj.metrics["epoch"])}
        epoch_means = traj.metrics, idx
    print(f"{'epoch':>6} {'train_loss':>11} {'train_acc':>9} {'test_loss':>9} {'test_acc':>8} "
          f"{'eff_grad':>9} | {'epoch-mean loss':>15} {'eff_grad':>9}")
    for i, e in enumerate(result["epoch"]):
        line = (f"{int(e):>6d} {result['train_loss'][i]:>11.4g} {result['train_accuracy'][i]:>9.3f} "
                f"{result['test_loss'][i]:>9.4g} {result['test_accuracy'][i]:>8.3f} "
                f"{result['effective_grad_norm'][i]:>9.4g} |")
        if epoch_means and int(e) in epoch_means[1]:
            j = epoch_means[1][int(e)]
            line += (f" {epoch_means[0]['train_loss'][j]:>15.4g} "
                     f"{epoch_means[0]['effective_grad_norm'][j]:>9.4g}")
        else:
            line += f" {'-':>15} {'-':>9}"
        print(line)
