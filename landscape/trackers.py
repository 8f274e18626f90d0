"""Mirrors of a trajectory for dashboards (issue 19): CSV and TensorBoard, written while a run
trains (``landscape train/sweep --log``) or after the fact (``landscape export --to``). The
HDF5 trajectory stays the source of truth; a mirror only copies it.

Names: ``train_loss`` -> ``train/loss``, ``test_accuracy`` -> ``test/accuracy``, other scalar
metrics under their own names (``effective_grad_norm``, ``rho``, ``elr``, ...), per-layer values
as ``groups/<layer>/<metric>``; the run's configuration as hyper-parameters (TensorBoard's HParams
view then shows a sweep's regime map).
"""
from __future__ import annotations

import os

import numpy as np

from .errors import LandscapeError

TRACKERS = ("csv", "tensorboard", "wandb")


def scalar_name(metric: str) -> str:
    for split in ("train", "test"):
        if metric.startswith(split + "_"):
            return f"{split}/{metric[len(split) + 1:]}"
    return metric


def parse_trackers(text) -> list[str]:
    kinds = [t.strip() for t in (text.split(",") if isinstance(text, str) else text or []) if t.strip()]
    bad = [k for k in kinds if k not in TRACKERS]
    if bad:
        raise LandscapeError(f"--log {','.join(bad)}: choose from {', '.join(TRACKERS)} (comma-separated)")
    return kinds


def log_dir_of(trajectory_path: str, log_dir: str | None = None) -> str:
    """Where a run's mirrors go: LOG_DIR/<run> when given, else <run>.logs beside the file."""
    stem = os.path.splitext(os.path.basename(trajectory_path))[0]
    return os.path.join(log_dir, stem) if log_dir else os.path.splitext(trajectory_path)[0] + ".logs"


class CSVMirror:
    """``metrics.csv``: one row per epoch, the scalar metrics and the per-layer values."""

    def __init__(self, folder: str, config: dict, start_epoch: int = 0):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "metrics.csv")
        self.columns = None
        if start_epoch == 0 or not os.path.exists(self.path):
            self.file = open(self.path, "w")
        else:  # a resumed run: keep the rows of its committed epochs, drop any later ones
            with open(self.path) as f:
                lines = f.readlines()
            self.columns = lines[0].rstrip("\n").split(",") if lines else None
            kept = [lines[0]] + [l for l in lines[1:] if int(float(l.split(",", 1)[0])) <= start_epoch] if lines else []
            self.file = open(self.path, "w")
            self.file.writelines(kept)

    def log_epoch(self, epoch: int, metrics: dict, groups: dict, group_names: list) -> None:
        row = {"epoch": epoch, **{scalar_name(k): v for k, v in metrics.items()}}
        for metric, values in groups.items():
            for name, v in zip(group_names, np.asarray(values).ravel()):
                row[f"groups/{name}/{metric}"] = v
        if self.columns is None:
            self.columns = list(row)
            self.file.write(",".join(self.columns) + "\n")
        self.file.write(",".join(repr(float(row.get(c, float("nan")))) for c in self.columns) + "\n")
        self.file.flush()

    def close(self, final: dict | None = None) -> None:
        self.file.close()


class TensorBoardMirror:
    """TensorBoard event files: scalars per epoch, the configuration as hyper-parameters."""

    def __init__(self, folder: str, config: dict, start_epoch: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LandscapeError("--log tensorboard needs TensorBoard: pip install 'landscape[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=os.path.join(folder, "tensorboard"), purge_step=start_epoch + 1)
        self.config = config

    def log_epoch(self, epoch: int, metrics: dict, groups: dict, group_names: list) -> None:
        for k, v in metrics.items():
            if np.isfinite(v):
                self.writer.add_scalar(scalar_name(k), float(v), epoch)
        for metric, values in groups.items():
            for name, v in zip(group_names, np.asarray(values).ravel()):
                if np.isfinite(v):
                    self.writer.add_scalar(f"groups/{name}/{metric}", float(v), epoch)
        self.writer.flush()

    def close(self, final: dict | None = None) -> None:
        hparams = {k: v for k, v in self.config.items() if isinstance(v, (int, float, str, bool)) and v is not None}
        if final:
            self.writer.add_hparams(hparams, {f"hparam/{scalar_name(k)}": float(v) for k, v in final.items()
                                              if np.isfinite(v)}, run_name=".")
        self.writer.close()


class WandbMirror:
    """A Weights & Biases run per trajectory (project from WANDB_PROJECT, default 'landscape';
    WANDB_MODE=offline works without a network), the configuration as its config, one step
    per epoch."""

    def __init__(self, folder: str, config: dict, start_epoch: int = 0):
        try:
            import wandb
        except ImportError:
            raise LandscapeError("--log wandb needs Weights & Biases: pip install 'landscape[wandb]'") from None
        os.makedirs(folder, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "landscape"), dir=folder,
                              name=os.path.basename(folder.rstrip(os.sep)).removesuffix(".logs"),
                              config={k: v for k, v in config.items() if v is not None}, reinit=True)

    def log_epoch(self, epoch: int, metrics: dict, groups: dict, group_names: list) -> None:
        row = {scalar_name(k): float(v) for k, v in metrics.items() if np.isfinite(v)}
        for metric, values in groups.items():
            for name, v in zip(group_names, np.asarray(values).ravel()):
                if np.isfinite(v):
                    row[f"groups/{name}/{metric}"] = float(v)
        self.run.log({**row, "epoch": epoch}, step=epoch)

    def close(self, final: dict | None = None) -> None:
        self.run.finish()


MIRRORS = {"csv": CSVMirror, "tensorboard": TensorBoardMirror, "wandb": WandbMirror}


def open_mirrors(kinds, trajectory_path: str, config: dict, log_dir: str | None = None,
                 start_epoch: int = 0) -> list:
    folder = log_dir_of(trajectory_path, log_dir)
    return [MIRRORS[k](folder, config, start_epoch) for k in parse_trackers(kinds)]


def mirror_trajectory(path: str, kinds, log_dir: str | None = None) -> str:
    """Copy a stored trajectory's epochs into the mirrors (after the fact); returns the folder."""
    from .trajectory import Trajectory
    t = Trajectory(path)
    if t.kind != "train":
        raise LandscapeError(f"{path}: a {t.kind} trajectory has no training metrics to mirror")
    mirrors = open_mirrors(kinds, path, t.config, log_dir)
    m, g = t.metrics, t.group_metrics
    scalars = [k for k in m if k != "epoch" and np.asarray(m[k]).ndim == 1]
    last = {}
    for i, epoch in enumerate(m["epoch"]):
        metrics = {k: float(m[k][i]) for k in scalars}
        groups = {k: np.asarray(v[i]) for k, v in g.items()}
        for mirror in mirrors:
            mirror.log_epoch(int(epoch), metrics, groups, t.group_names)
        last = metrics
    for mirror in mirrors:
        mirror.close(last)
    return log_dir_of(path, log_dir)
