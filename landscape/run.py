"""A training run from start to end: prepare it (a new trajectory, a fine-tuning start or a
resumed file), **the epoch loop** (``train_runs``, one loop for one run or many, whatever the
stepper), commit each epoch, and end it (finished, or stopped by non-finite values).

``train`` is ``landscape train``: one run, one trajectory. Sweeps call ``train_runs`` with
several runs and their strategy's stepper (``steppers.STEPPERS``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import HOW_SETTINGS, elr_power, TrainConfig, base_lr, epoch_lr, is_checkpoint_epoch, is_eval_epoch
from .data import Dataset, load_dataset, resolve_device
from .errors import ArgumentError, LandscapeError
from .measure import CHECKPOINT_PREFIX, checkpoint_metrics, epoch_rows, label_noise_subsets, row_shapes
from .models import build_model, model_spec, si_groups
from .progress import Progress
from .sphere import filter_radius, group_sq_norms, project_filters, project_to_sphere
from .steppers import Streams, training_state
from .trajectory import Trajectory, TrajectoryWriter, model_state, optimizer_keys
from .points import parse_source

EXIT_NONFINITE = 3  # `landscape train` exit status of a run ended by non-finite values


@dataclass
class Run:
    """One run set up for training: its model on the device, SI parameters, sphere and writer."""
    cfg: TrainConfig
    out: str
    model: torch.nn.Module
    names: list
    params: list
    rho: float
    lr: float
    start: int
    writer: TrajectoryWriter
    buffers: list | None = None  # the optimizer's state: momentum buffers, or Adam's moments and step
    buffer_keys: list | None = None  # their keys in a stored training state
    initial: list | None = None  # the SI tensors at epoch 0 (distances to the start)
    row_shapes: dict = dataclasses.field(default_factory=dict)  # the rows its file holds: their shapes
    mirrors: list = dataclasses.field(default_factory=list)  # dashboards: copies of the rows
    last_metrics: dict | None = None

    def state(self) -> dict:
        return training_state(self.model.state_dict(), self.buffers, self.buffer_keys)


# --- preparing a run -----------------------------------------------------------------------

def resolve_config(config, out: str, resume: bool, overrides: dict) -> TrainConfig:
    """The run's configuration: the stored one when resuming (only ``epochs`` and how it is
    computed, ``config.HOW_SETTINGS``, may change), else ``config`` (a TrainConfig, a dict or
    None) with ``overrides`` on top; validated."""
    if resume:
        stored = Trajectory(out)
        if stored.kind != "train":
            raise LandscapeError(f"{out}: a {stored.kind} trajectory cannot be resumed by 'train'")
        if stored.status == "nonfinite":
            raise LandscapeError(f"{out}: {nonfinite_message(stored.status_detail)}; resuming "
                                 f"would meet them again (training is deterministic): start a "
                                 f"new run, e.g. with a lower elr", "elr")
        cfg = TrainConfig.from_dict(stored.config)
        for k, v in overrides.items():
            if k != "epochs" and k not in HOW_SETTINGS:
                raise ArgumentError(f"resume takes the stored configuration; only epochs and how it "
                                    f"is computed ({', '.join(HOW_SETTINGS)}) may change (got {k})",
                                    "resume", k)
            setattr(cfg, k, v)
        if cfg.schedule != "constant" and cfg.epochs != stored.config.get("epochs"):
            raise ArgumentError(f"{out}: a {cfg.schedule} schedule depends on the run's length, so it "
                                f"cannot change from {stored.config.get('epochs')} to {cfg.epochs} epochs",
                                "epochs")
        if isinstance(cfg.epochs, int) and cfg.epochs < stored.epochs_complete:
            raise ArgumentError(f"{out} is trained to epoch {stored.epochs_complete}: epochs {cfg.epochs} "
                                f"would end it before that (give at least {stored.epochs_complete}, or "
                                f"leave epochs out to keep {stored.config.get('epochs')})", "epochs")
    else:
        if isinstance(config, dict):
            config = TrainConfig.from_settings(config)
        cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    if isinstance(cfg.data_root, str):  # stored absolute: analyses run from elsewhere find the same data
        cfg.data_root = os.path.abspath(os.path.expanduser(cfg.data_root))
    return cfg


def load_training_data(cfg: TrainConfig) -> Dataset:
    """The run's data on its device: CIFAR's training images stay uint8 there and are
    normalised batch by batch (``Dataset.inputs``), to the run's dtype."""
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.train_subset,
                        cfg.label_noise, cfg.data_seed, resolve_device(cfg.device),
                        cfg.label_noise_mode, raw_images=True)
    dtype = getattr(torch, cfg.dtype)
    data.input_dtype = dtype
    if data.x_train.dtype != torch.uint8:
        data.x_train = data.x_train.to(dtype)
    data.x_test = data.x_test.to(dtype)
    return data


def initial_model(cfg: TrainConfig, data: Dataset) -> tuple[torch.nn.Module, dict, dict | None]:
    """(model on the run's device and dtype, its spec, the fine-tuning source or None): built
    from ``init_seed``, or taken from the ``init`` checkpoint ('traj.h5@EPOCH')."""
    source = init_state = None
    if cfg.init:
        src_path, src_epoch = parse_source(cfg.init)
        src = Trajectory(src_path)
        if src.kind != "train":
            raise ArgumentError(f"init {cfg.init}: needs a network trajectory, not a {src.kind} one", "init")
        src_epoch = src.resolve_epoch(src_epoch)
        spec = src.model_spec
        if tuple(spec["input_shape"]) != data.input_shape or spec["num_classes"] != data.num_classes:
            raise ArgumentError(f"init {cfg.init}: its model takes inputs {spec['input_shape']} with "
                                f"{spec['num_classes']} classes, but dataset {cfg.dataset} has "
                                f"{list(data.input_shape)} and {data.num_classes}", "init", "dataset")
        init_state = src.state_dict(src_epoch)
        source = {"path": src_path, "epoch": src_epoch, "elr": src.config.get("elr")}
        cfg.init = f"{src_path}@{src_epoch}"
    else:
        spec = model_spec(cfg.model, data.input_shape, data.num_classes, cfg.width, cfg.depth,
                          cfg.last_layer_norm, cfg.conventional, cfg.conventional_head_bias, cfg.heads)
    model = build_model(spec, cfg.init_seed)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device=data.x_train.device, dtype=getattr(torch, cfg.dtype))
    if cfg.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model, spec, source


def filter_layout(params) -> tuple[np.ndarray, np.ndarray]:
    """(layer index, channel) of every filter group, in the order of ``filter_sq_norms``."""
    layer = np.concatenate([np.full(p.shape[0], i) for i, p in enumerate(params)])
    channel = np.concatenate([np.arange(p.shape[0]) for p in params])
    return layer.astype(np.int64), channel.astype(np.int64)


def optimizer_state(cfg: TrainConfig, names, params) -> tuple:
    """(buffers, their keys) of the run's optimizer, zero at the start: momentum buffers (space
    whole with momentum, or optimizer momentum), Adam's moments and step count, or (None, None)."""
    if cfg.optimizer == "adam":
        moments = [torch.zeros_like(p) for p in params] + [torch.zeros_like(p) for p in params]
        return moments + [torch.zeros((), dtype=torch.float64, device=params[0].device)], optimizer_keys("adam", names)
    if cfg.momentum:
        return [torch.zeros_like(p) for p in params], optimizer_keys("momentum", names)
    return None, None


def prepare_run(cfg: TrainConfig, out: str, data: Dataset, *, resume: bool = False,
                overwrite: bool = False) -> Run:
    """Build the model, then either create the trajectory (epoch 0) or reopen it at its last
    committed epoch."""
    model, spec, source = initial_model(cfg, data)
    named = si_groups(model)
    names, params = [n for n, _ in named], [p for _, p in named]
    buffers, keys = optimizer_state(cfg, names, params)
    if resume:
        writer = TrajectoryWriter(out)
        start, state = writer.latest_state()
        model.load_state_dict(model_state(state))
        if buffers is not None:
            with torch.no_grad():
                for k, b in zip(keys, buffers):
                    b.copy_(state[k])
        rho = float(writer.attr("rho"))
        start_state = writer.initial_state()
        initial = [start_state[n].to(device=p.device, dtype=p.dtype) for n, p in zip(names, params)]
        writer.set_attrs({"device_used": str(data.x_train.device)})  # this session's device
        stored_config = json.loads(writer.attr("config"))
        if stored_config["epochs"] != cfg.epochs:  # extending a finished run
            stored_config["epochs"] = cfg.epochs
            writer.set_attrs({"config": json.dumps(stored_config, sort_keys=True)})
        return Run(cfg, out, model, names, params, rho, base_lr(cfg, rho), start, writer, buffers, keys,
                   initial, writer.row_shapes())
    if cfg.rho is not None:
        project_to_sphere(params, cfg.rho)
    rho = cfg.rho if cfg.rho is not None else float(group_sq_norms(params).detach().sum().sqrt())
    if cfg.space == "filter-spheres":  # every filter at the RMS of the filter norms: the total stays rho
        project_filters(params, filter_radius(params, rho))
    config_dict = dataclasses.asdict(cfg)
    if source:
        config_dict["init_source"] = source
    if cfg.space != "whole":
        largest = torch.finfo(getattr(torch, cfg.dtype)).max
        try:
            lr0 = cfg.elr * rho ** elr_power(cfg)
        except OverflowError:
            lr0 = math.inf
        if not (rho < largest and lr0 < largest):
            raise ArgumentError(f"elr {cfg.elr:g} at rho {rho:.3g}: the learning rate ELR × ρ^"
                                f"{elr_power(cfg)} = {lr0:.3g} overflows {cfg.dtype}; use a smaller elr or "
                                f"rho, or dtype float64", "elr", "rho", "dtype")
    initial_rows = None
    if cfg.checkpoint_metrics:  # the start point, before any step (no randomness drawn)
        initial_rows = epoch_rows(*checkpoint_metrics(model, data, cfg.batch_size, base_lr(cfg, rho),
                                                      cfg.groups, initial=params, loss=cfg.loss,
                                                      elr_power=elr_power(cfg)),
                                  prefix=CHECKPOINT_PREFIX)
    shapes = row_shapes(cfg.groups, cfg.checkpoint_metrics, len(params), sum(p.shape[0] for p in params),
                        label_noise_subsets(data) is not None)
    writer = TrajectoryWriter.create(
        out, config=config_dict, model_spec=spec, group_names=names, initial_rows=initial_rows,
        initial_state=training_state(model.state_dict(), buffers, keys), overwrite=overwrite,
        row_shapes=shapes,
        filter_layout=filter_layout(params) if cfg.groups == "filter" else None,
        data_arrays={"subset_indices": data.subset_indices, "noisy_indices": data.noisy_indices,
                     "original_labels": data.original_labels},
        attrs={"rho": rho, "lr": base_lr(cfg, rho), "device_used": str(data.x_train.device)})
    return Run(cfg, out, model, names, params, rho, base_lr(cfg, rho), 0, writer, buffers, keys,
               [p.detach().clone() for p in params], shapes)


def open_run_mirrors(run: Run, log, log_dir: str | None) -> None:
    """Dashboards (csv, tensorboard, wandb) for this run, resumed at its start."""
    if log:
        from .trackers import open_mirrors
        run.mirrors = open_mirrors(log, run.out, dataclasses.asdict(run.cfg), log_dir, run.start)


def close_run(run: Run) -> None:
    """Close the run's dashboards (with its last metrics) and its trajectory."""
    try:
        for mirror in run.mirrors:
            mirror.close(run.last_metrics)
    finally:
        run.writer.close()


# --- committing and ending epochs ----------------------------------------------------------

def commit_epoch(run: Run, epoch: int, metrics: dict, groups: dict, filters: dict, state: dict,
                 seconds: float, checkpoint: tuple | None = None) -> None:
    """Write one epoch, with ``checkpoint`` (metrics, per-layer, per-filter) the official
    protocol's metrics of the epoch's end point when the run measures them."""
    rows = epoch_rows(metrics, groups, filters)
    if checkpoint is not None:
        rows.update(epoch_rows(*checkpoint, prefix=CHECKPOINT_PREFIX))
    # a file keeps its layout: every row it holds has one value per epoch, a row it lacks is not
    # written, and a row the run no longer measures is NaN
    rows = {k: rows[k] if k in rows else np.full(shape, np.nan) for k, shape in run.row_shapes.items()}
    run.writer.append_epoch(epoch, rows, state, checkpoint=is_checkpoint_epoch(run.cfg, epoch),
                            seconds=seconds)
    shown = {**metrics, **{k: v for k, v in rows.items()  # and the checkpoint scalars (the paper's)
                           if k.startswith(CHECKPOINT_PREFIX) and "/" not in k[len(CHECKPOINT_PREFIX):]}}
    for mirror in run.mirrors:  # after the commit: a dashboard never shows an uncommitted epoch
        mirror.log_epoch(epoch, shown, groups, run.names)
    run.last_metrics = metrics


def nonfinite_message(detail: dict) -> str:
    kept = int(detail.get("epoch", 1)) - 1
    rate = f"LR {detail['lr']:g}" if "lr" in detail else f"ELR {detail.get('elr', float('nan')):g}"
    return (f"non-finite {' and '.join(detail.get('what', ['values']))} at epoch "
            f"{detail.get('epoch')}, step {detail.get('step')} ({rate}); "
            + (f"epochs up to {kept} are kept" if kept else "no epoch was completed"))


def end_nonfinite(run: Run, epoch: int, bad: dict) -> dict:
    """A run whose loss, gradient or parameters went non-finite ends here: the epoch in flight
    is not committed (its state is not finite), the status records where and what (returned)."""
    name, value = run.cfg.swept_rate
    detail = {"epoch": epoch, **bad, name.lower(): value}
    run.writer.set_attrs({"status": "nonfinite", "status_detail": json.dumps(detail)})
    return detail


# --- the epoch loop ------------------------------------------------------------------------

def train_runs(runs: list, data: Dataset, stepper, report, on_step=None, on_epoch=None) -> None:
    """Train runs that share everything but their learning rate, from their common start epoch
    to the end: each epoch the stepper trains the live runs, the test pass runs on eval epochs,
    and each run's epoch is committed to its trajectory (its wall time is the epoch's over the
    live runs). A run that goes non-finite ends (``end_nonfinite``) while the others go on.
    ``report.update(out, epoch, metrics)`` / ``report.ended(out, message)`` show progress;
    ``on_step(epoch, step, model)`` and ``on_epoch(epoch, metrics)`` are hooks for the caller."""
    cfg = runs[0].cfg
    live = list(range(len(runs)))
    for epoch in range(runs[0].start + 1, cfg.epochs + 1):
        if not live:
            break
        t0 = time.perf_counter()
        lrs = [epoch_lr(cfg, r.lr, epoch) for r in runs]
        measured = stepper.epoch(epoch, lrs, live, on_step)
        tests = stepper.test(live) if is_eval_epoch(cfg, epoch) else {}
        finite = []
        for j in list(live):
            run, (acc, index) = runs[j], measured[j]
            bad = acc.nonfinite(index)
            if bad is not None:
                live.remove(j)
                report.ended(run.out, nonfinite_message(end_nonfinite(run, epoch, bad)))
            else:
                finite.append(j)
        # the official protocol's metrics of every end point, all runs in one pass where the
        # stepper can (a vectorised sweep measures its models together)
        checkpoints = stepper.checkpoint(finite, lrs, tests) if cfg.checkpoint_metrics and finite else {}
        seconds = (time.perf_counter() - t0) / max(1, len(finite))
        for j in finite:
            run, (acc, index) = runs[j], measured[j]
            metrics, groups, filters = acc.metrics(lrs[j], index)
            metrics["test_loss"], metrics["test_accuracy"] = tests.get(j, (math.nan, math.nan))
            commit_epoch(run, epoch, metrics, groups, filters, stepper.state(j), seconds, checkpoints.get(j))
            report.update(run.out, epoch, metrics)
            if on_epoch is not None:
                on_epoch(epoch, metrics)


def epoch_line(epoch: int, total: int, metrics: dict) -> str:
    return (f"epoch {epoch}/{total}  train loss {metrics['train_loss']:.4f}  "
            f"acc {metrics['train_accuracy']:.3f}  eff. grad norm {metrics['effective_grad_norm']:.4g}")


class RunProgress:
    """The progress display of one run: its epochs, each with a line of its metrics."""

    def __init__(self, cfg: TrainConfig, start: int, progress: bool | None):
        self.epochs = cfg.epochs
        self.bar = Progress(cfg.epochs, "train", "epoch", progress, initial=start)

    def update(self, out: str, epoch: int, metrics: dict) -> None:
        self.bar.update(line=epoch_line(epoch, self.epochs, metrics))

    def ended(self, out: str, message: str) -> None:
        """Stopped by non-finite values: the trajectory's status says so, the caller reports."""

    def close(self) -> None:
        self.bar.close()


def train(config: TrainConfig | dict | None = None, out: str = "traj.h5", *, resume: bool = False,
          overwrite: bool = False, progress: bool | None = None, on_step=None, on_epoch=None,
          log=None, log_dir: str | None = None, **overrides) -> Trajectory:
    """Train on the sphere and write the trajectory ``out``; returns it opened for reading.

    ``landscape.train(out="t.h5", elr=1e-3, epochs=10)`` or with a ``TrainConfig``. With
    ``resume=True`` the configuration stored in ``out`` is used (``epochs`` may be raised, and
    how it is computed, ``config.HOW_SETTINGS``, changed) and training continues from its last
    committed epoch to the same result as an uninterrupted run (computed the same way).
    ``on_step(epoch, step, model)`` is called after every step (tests use it to interrupt a run),
    ``on_epoch(epoch, metrics)`` after every committed epoch. A run whose loss, gradient or
    parameters go non-finite ends cleanly: the returned trajectory has ``status == 'nonfinite'``
    and ``status_detail`` (epoch, step, what); its committed epochs are kept. ``log``: dashboard
    mirrors ('csv', 'tensorboard', 'wandb' or a list), in ``log_dir``/<run> or <run>.logs beside
    ``out``.
    """
    cfg = resolve_config(config, out, resume, overrides)
    if log:
        from .trackers import parse_trackers
        parse_trackers(log)  # a bad tracker name fails before anything is written
    data = load_training_data(cfg)
    run = prepare_run(cfg, out, data, resume=resume, overwrite=overwrite)
    report = RunProgress(cfg, run.start, progress)
    try:
        open_run_mirrors(run, log, log_dir)
        train_runs([run], data, Streams([run], data), report, on_step, on_epoch)
    finally:
        report.close()
        close_run(run)
    return Trajectory(out)


def train_or_resume(cfg: TrainConfig, out: str, **options) -> Trajectory:
    """Train the run ``out`` to ``cfg.epochs``: a new trajectory, or the existing one resumed
    from its last committed epoch (what a sweep's worker does, so that a retried or requeued
    task continues where the killed one stopped), computed as ``cfg`` says (its
    ``HOW_SETTINGS``: device, data root, compile), as the in-process strategies do."""
    if os.path.exists(out):
        how = {k: getattr(cfg, k) for k in HOW_SETTINGS}
        return train(None, out, resume=True, epochs=cfg.epochs, **how, **options)
    return train(cfg, out, **options)
