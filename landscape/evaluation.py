"""``landscape evaluate``: the official code's metrics of stored checkpoints (its get_info.py).

At each chosen checkpoint, with no update: the train loss and accuracy over the whole training
set in fixed order with the run's batch size and train-mode BatchNorm, the mean over those
batches of the stochastic effective gradient norm rho ||grad L_B|| (total, per layer and per
filter), and the test loss and accuracy in eval mode (``measure.checkpoint_metrics``). These
are the quantities of the paper's figures; the per-epoch metrics of ``landscape train`` are means
over an epoch's mini-batches while the weights move, a different (cheaper) quantity.

    >>> from landscape.evaluation import evaluate_checkpoints
    >>> res = evaluate_checkpoints("runs/t.h5", epochs="all")   # appended to /analyses/checkpoint_metrics
    >>> res["epoch"], res["train_loss"], res["effective_grad_norm"], res["filters/effective_grad_norm"]
"""
from __future__ import annotations

import numpy as np

from .analysis import over_checkpoints
from .legacy import stored_config
from .measure import CHECKPOINT_PREFIX, checkpoint_metrics, epoch_rows
from .trajectory import Trajectory, read_analysis

NAME = "checkpoint_metrics"


def evaluate_checkpoints(path: str, epochs: str = "all", device: str = "cpu",
                         data_root: str | None = None, progress: bool | None = None,
                         write: bool = True) -> dict:
    """Checkpoint metrics of the chosen checkpoints ('last', 'all', '10,50', 'every:K') of a
    network trajectory, in the run's dtype: {'epoch': [n], 'train_loss': [n], ...,
    'groups/<name>': [n, layers], 'filters/<name>': [n, filters]}; appended to the file under
    /analyses/checkpoint_metrics unless ``write=False``."""
    def measure(traj, data):
        batch_size, lr = traj.config["batch_size"], float(traj.attrs["lr"])
        loss = stored_config(traj.config)["loss"]
        start = traj.state_dict(0)
        initial = [start[n] for n in traj.group_names]

        def per_checkpoint(model, advance):
            row = epoch_rows(*checkpoint_metrics(model, data, batch_size, lr, "filter", initial=initial,
                                                 loss=loss))
            advance()
            return row
        return per_checkpoint
    def settings(traj):
        return {"epochs": epochs, "batch_size": traj.config["batch_size"],
                "bn": "train-mode (batch statistics)", "order": "fixed"}
    return over_checkpoints(path, epochs, measure, name=NAME, settings=settings, device=device,
                            data_root=data_root, progress=progress, write=write)


def stored_checkpoint_metrics(traj: Trajectory) -> dict | None:
    """The checkpoint metrics a trajectory holds, as curves over epochs: those logged in
    training (every epoch's end, and the initial point as epoch 0 when it was measured), else
    those ``landscape evaluate`` appended; None if neither. {'epoch': [n], name: [n],
    'groups/<name>': [n, layers], 'filters/<name>': [n, filters]}."""
    if traj.checkpoint_metrics:
        prefix = CHECKPOINT_PREFIX
        out = {"epoch": traj.metrics["epoch"], **traj.checkpoint_metrics}
        out.update({f"groups/{k}": v for k, v in traj.checkpoint_group_metrics.items()})
        out.update({f"filters/{k}": v for k, v in traj.checkpoint_filter_metrics.items()})
        start = {k[len(prefix):]: v for k, v in traj.initial_rows.items() if k.startswith(prefix)}
        if start and set(start) >= set(out) - {"epoch"}:
            start["epoch"] = 0
            out = {k: np.concatenate([np.asarray(start[k])[None], v]) for k, v in out.items()}
        return out
    if NAME in traj.analyses:
        arrays, _ = read_analysis(traj.path, NAME)
        return {k.replace(".", "/"): v for k, v in arrays.items()}
    return None
