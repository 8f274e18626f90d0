"""Mirrors of a trajectory for dashboards: CSV, TensorBoard and Weights & Biases (offline or
online), written while a run trains (``landscape train/sweep --log``) or after the fact
(``landscape export --to``). The HDF5 trajectory stays the source of truth; a mirror only copies
it.

Names: ``train_loss`` -> ``train/loss``, ``test_accuracy`` -> ``test/accuracy``, other scalar
metrics under their own names (``effective_grad_norm``, ``rho``, ``elr``, ...), per-layer values
as ``groups/<layer>/<metric>``; the run's configuration as hyper-parameters (TensorBoard's HParams
view then shows a sweep's regime map).
"""
from __future__ import annotations

import os

import numpy as np

from .measure import CHECKPOINT_PREFIX
from .errors import ArgumentError, LandscapeError

TRACKERS = ("csv", "tensorboard", "wandb")


def scalar_name(metric: str) -> str:
    """A metric's dashboard tag: train_loss -> train/loss; a checkpoint metric (the paper's
    protocol) under checkpoint/: checkpoint/train/loss."""
    if metric.startswith(CHECKPOINT_PREFIX):
        return CHECKPOINT_PREFIX + scalar_name(metric[len(CHECKPOINT_PREFIX):])
    for split in ("train", "test"):
        if metric.startswith(split + "_"):
            return f"{split}/{metric[len(split) + 1:]}"
    return metric


def parse_trackers(text) -> list[str]:
    kinds = [t.strip() for t in (text.split(",") if isinstance(text, str) else text or []) if t.strip()]
    bad = [k for k in kinds if k not in TRACKERS]
    if bad:
        raise ArgumentError(f"log {','.join(bad)}: choose from {', '.join(TRACKERS)} (comma-separated)", "log")
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
            raise LandscapeError("log tensorboard needs TensorBoard: pip install 'landscape[tensorboard]'", "log") from None
        self.writer = SummaryWriter(log_dir=os.path.join(folder, "tensorboard"), purge_step=start_epoch + 1)
        self.config = config
        self.losses = {}

    def log_epoch(self, epoch: int, metrics: dict, groups: dict, group_names: list) -> None:
        for k, v in metrics.items():
            if np.isfinite(v):
                self.writer.add_scalar(scalar_name(k), float(v), epoch)
                if k in ("train_loss", "test_loss"):
                    self.losses.setdefault(scalar_name(k), []).append((epoch, float(v)))
        for metric, values in groups.items():
            for name, v in zip(group_names, np.asarray(values).ravel()):
                if np.isfinite(v):
                    self.writer.add_scalar(f"groups/{name}/{metric}", float(v), epoch)
        self.writer.flush()

    def close(self, final: dict | None = None) -> None:
        if self.losses:  # a figure at the end: the loss curves of the run
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
            for key, values in self.losses.items():
                ax.plot(*zip(*values), label=key)
            ax.set(yscale="log", xlabel="epoch", ylabel="loss (cross-entropy)")
            ax.legend()
            self.writer.add_figure("figures/loss", fig, self.losses["train/loss"][-1][0] if "train/loss" in self.losses else 0)
        hparams = {k: v for k, v in self.config.items() if isinstance(v, (int, float, str, bool)) and v is not None}
        if final:
            self.writer.add_hparams(hparams, {f"hparam/{scalar_name(k)}": float(v) for k, v in final.items()
                                              if np.isfinite(v)}, run_name=".")
        self.writer.close()


def wandb_run(wandb, folder: str, name: str, config: dict):
    """A new W&B run (project from WANDB_PROJECT); quiet (``-q`` sets WANDB_SILENT): neither its
    console lines nor its warnings."""
    import warnings
    quiet = os.environ.get("WANDB_SILENT", "").lower() in ("1", "true")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        major, minor = (int(x) for x in wandb.__version__.split(".")[:2])
        reinit = "finish_previous" if (major, minor) >= (0, 19) else True  # (a boolean is deprecated since)
        return wandb.init(project=os.environ.get("WANDB_PROJECT", "landscape"), dir=folder, name=name,
                          config=config, reinit=reinit,
                          settings=wandb.Settings(silent=True, console="off") if quiet else None)


class WandbMirror:
    """A Weights & Biases run per trajectory (project from WANDB_PROJECT, default 'landscape';
    WANDB_MODE=offline works without a network), the configuration as its config, one step
    per epoch."""

    def __init__(self, folder: str, config: dict, start_epoch: int = 0):
        try:
            import wandb
        except ImportError:
            raise LandscapeError("log wandb needs Weights & Biases: pip install 'landscape[wandb]'", "log") from None
        os.makedirs(folder, exist_ok=True)
        self.run = wandb_run(wandb, folder, os.path.basename(folder.rstrip(os.sep)).removesuffix(".logs"),
                             {k: v for k, v in config.items() if v is not None})

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
    checkpoint = t.checkpoint_metrics
    last = {}
    for i, epoch in enumerate(m["epoch"]):
        metrics = {k: float(m[k][i]) for k in scalars}
        metrics.update({CHECKPOINT_PREFIX + k: float(v[i]) for k, v in checkpoint.items()})
        groups = {k: np.asarray(v[i]) for k, v in g.items()}
        for mirror in mirrors:
            mirror.log_epoch(int(epoch), metrics, groups, t.group_names)
        last = metrics
    for mirror in mirrors:
        mirror.close(last)
    return log_dir_of(path, log_dir)


def log_analysis(trajectory_path: str, kinds, prefix: str, result: dict, log_dir: str | None = None,
                 config: dict | None = None, figure: str | None = None) -> str:
    """An analysis's per-checkpoint numbers into the run's dashboards under ``prefix``
    (``sharpness/trace_effective`` at step = epoch ...): every 1-D array of ``result`` indexed
    like ``result['epoch']``, the top eigenvalue, the last eigenvalue density as a histogram,
    and ``figure`` (a PNG) as an image. CSV: ``<prefix>.csv`` beside ``metrics.csv``."""
    kinds = parse_trackers(kinds)
    folder = log_dir_of(trajectory_path, log_dir)
    os.makedirs(folder, exist_ok=True)
    epochs = np.asarray(result.get("epoch", []))
    series = {k: np.asarray(v, float) for k, v in result.items()
              if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == len(epochs) and k != "epoch"
              and v.dtype.kind in "fiu"}
    if "eigenvalues_effective" in result:
        series["lambda_max_effective"] = np.asarray(result["eigenvalues_effective"])[:, 0]
    density = None
    if "density_nodes" in result:  # Ritz values weighted by their quadrature weights
        nodes = np.asarray(result["density_nodes"][-1], float)
        weights = np.asarray(result["density_weights"][-1], float)
        ok = np.isfinite(nodes) & np.isfinite(weights)
        density = np.repeat(nodes[ok], np.maximum(1, np.round(weights[ok] * 1000).astype(int)))
    if "csv" in kinds and len(epochs):
        from .files import atomic_write
        keys = sorted(series)
        lines = [",".join(["epoch"] + keys)] + [
            ",".join([str(int(e))] + [repr(float(series[k][i])) for k in keys]) for i, e in enumerate(epochs)]
        atomic_write(os.path.join(folder, f"{prefix.replace('/', '_')}.csv"),
                     lambda tmp: open(tmp, "w").write("\n".join(lines) + "\n"), suffix=".csv")
    if "tensorboard" in kinds:
        from torch.utils.tensorboard import SummaryWriter
        w = SummaryWriter(log_dir=os.path.join(folder, "tensorboard"))
        for k, values in series.items():
            for e, v in zip(epochs, values):
                if np.isfinite(v):
                    w.add_scalar(f"{prefix}/{k}", float(v), int(e))
        if density is not None and len(density):
            w.add_histogram(f"{prefix}/eigenvalue_density", density, int(epochs[-1]))
        if figure:
            import matplotlib.image as mpimg
            w.add_image(f"{prefix}/figure", mpimg.imread(figure)[..., :3], dataformats="HWC")
        w.close()
    if "wandb" in kinds:
        import wandb
        stem = os.path.basename(folder.rstrip(os.sep)).removesuffix(".logs")
        run = wandb_run(wandb, folder, f"{stem}-{prefix}", config or {})
        for i, e in enumerate(epochs):
            run.log({f"{prefix}/epoch": int(e), **{f"{prefix}/{k}": float(v[i]) for k, v in series.items()
                                                    if np.isfinite(v[i])}})
        if density is not None and len(density):
            run.log({f"{prefix}/eigenvalue_density": wandb.Histogram(density)})
        if figure:
            run.log({f"{prefix}/figure": wandb.Image(figure)})
        run.finish()
    return folder
