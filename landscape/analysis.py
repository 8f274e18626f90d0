"""What every analysis of stored networks does around its own computation: open the input and
refuse what it cannot analyse, refuse early a file another process writes (the results are
appended to it), load the run's data on the device in the run's dtype, show progress, stack the
per-point results into arrays and append them under ``/analyses/<name>`` with their settings.

``over_checkpoints`` is the whole loop for an analysis of a trajectory's checkpoints (``evaluate``,
``sharpness``); the interpolation and surface analyses, whose points are not checkpoints, use the
same pieces (``network_trajectory``, ``analysis_data``, ``stack_rows``, ``append_analysis``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from .data import Dataset, dataset_of, resolve_device
from .errors import ArgumentError, LandscapeError
from .legacy import stored_config
from .measure import SUBSETS, label_noise_subsets
from .progress import Progress
from .trajectory import Trajectory, append_analysis
from .points import parse_source, select_epochs


def network_trajectory(path: str, write: bool) -> Trajectory:
    """The trajectory of a trained network at ``path`` (its committed epochs, also while a run
    writes it: results then wait beside it for the writer, ``trajectory.append_analysis``)."""
    traj = Trajectory(path)
    if traj.kind != "train":
        raise LandscapeError(f"{path}: a {traj.kind} trajectory has no network checkpoints")
    return traj


def analysis_data(config: dict, data_root: str | None, device, dtype: torch.dtype) -> Dataset:
    """The stored run's data (same subset and label noise) on ``device``, in ``dtype`` (the
    run's, like its models: a float64 run stays float64)."""
    data = dataset_of(config, data_root, device)
    data.x_train, data.x_test = data.x_train.to(dtype), data.x_test.to(dtype)
    return data


TRAINING_SUBSETS = ("all", *SUBSETS)


def check_subset(which: str) -> None:
    """``ArgumentError`` unless ``which`` names a training subset (``TRAINING_SUBSETS``)."""
    if which not in TRAINING_SUBSETS:
        raise ArgumentError(f"subset must be one of {', '.join(TRAINING_SUBSETS)}, got {which!r}", "subset")


def training_subset(data: Dataset, which: str) -> Dataset:
    """The run's data with its training set cut to the examples whose label the noise redrew
    ('noisy'), the others ('clean'), or all of them ('all'), in stored order."""
    check_subset(which)
    if which == "all":
        return data
    subsets = label_noise_subsets(data)
    if subsets is None:
        raise ArgumentError(f"subset {which}: the run has no label noise, so no noisy/clean split",
                            "subset")
    index = torch.as_tensor(subsets[which], dtype=torch.long, device=data.y_train.device)
    return dataclasses.replace(data, x_train=data.x_train[index], y_train=data.y_train[index])


def evaluation_sets(data: Dataset, which: str) -> dict:
    """{'train': [(x, y)], 'test': [(x, y)]} of ``data``, or the one of them ``which`` names
    ('train', 'test' or 'both')."""
    sets = {"train": [(data.x_train, data.y_train)], "test": [(data.x_test, data.y_test)]}
    return sets if which == "both" else {which: sets[which]}


def results_target(source: str, write: bool) -> str | None:
    """The trajectory the results of an analysis of ``source`` ('traj.h5@EPOCH' or a '.pt'
    checkpoint) are appended to (or wait beside, while a run writes it); None for a '.pt'
    file or ``write=False`` (nothing is stored)."""
    path = parse_source(source)[0]
    if not write or path.endswith(".pt"):
        return None
    return path


def stack_rows(rows: list[dict]) -> dict:
    """[{name: value}, ...] of the points -> {name: array over the points}."""
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


def over_checkpoints(path: str, epochs: str, measure: Callable, *, name: str, settings,
                     units: int = 1, unit: str = "checkpoint", device: str = "cpu",
                     data_root: str | None = None, progress: bool | None = None,
                     write: bool = True, finite: bool = False) -> dict:
    """Run an analysis over the chosen checkpoints of a network trajectory (``finite``: refuse a
    checkpoint with non-finite weights, where the analysis is undefined).

    ``measure(traj, data)`` prepares the analysis once (fixed batches, say) and returns the
    per-checkpoint function ``f(model, advance) -> {name: value}``, which calls
    ``advance(n, phase)`` as it does ``n`` of its work's units (shown as progress); ``units``
    is the estimate per checkpoint, corrected by what each checkpoint really took. Returns
    ``{"epoch": [n], name: [n, ...]}``; appended to the file under ``/analyses/<name>`` with
    ``settings`` (a dict, or a function of the trajectory giving it) unless ``write=False``
    ('/' in a row's name is stored as '.').
    """
    traj = network_trajectory(path, write)
    chosen = select_epochs(traj, epochs)
    device = resolve_device(device)
    data = analysis_data(traj.config, data_root, device, getattr(torch, stored_config(traj.config)["dtype"]))
    per_checkpoint = measure(traj, data)
    bar = Progress(len(chosen) * units, name, unit, progress)
    rows, planned = [], units
    try:
        for i, epoch in enumerate(chosen):
            model = traj.load_model(epoch, device)
            bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()] if finite else []
            if bad:
                raise LandscapeError(f"{path}@{epoch}: non-finite weights ({', '.join(bad[:3])}): its {name} "
                                     f"is undefined; choose an earlier checkpoint")
            used = [0]

            def advance(n=units, phase=None, e=epoch):
                used[0] += n
                bar.update(n, postfix=f"epoch {e}" + (f": {phase}" if phase else ""))
            rows.append(per_checkpoint(model, advance))
            if used[0] != planned:  # the work took more or less than estimated: so will the rest
                bar.add_total((used[0] - planned) * (len(chosen) - i))
                planned = used[0]
    finally:
        bar.close()
    result = {"epoch": np.array(chosen), **stack_rows(rows)}
    if write:  # HDF5 names cannot hold '/' inside a group's member: groups/rho -> groups.rho
        append_analysis(path, name, {k.replace("/", "."): v for k, v in result.items()},
                        {"settings": settings(traj) if callable(settings) else settings})
    return result
