"""Five costs of the recipe's runs outside the training pass, each against what it replaced, side
by side in one process (one thread, alternating rounds, medians):

1. commit: writing one epoch (some 50 rows, the model state's resume slot, the fsync) through
   h5py's low-level calls (``TrajectoryWriter`` now) against h5py's high-level resize and
   assignment, on the recipe's ConvNet k=16 and the Section-6 ResNet-18 of width 8;
2. the label-noise subsets of the checkpoint metrics: the noisy and the clean examples
   evaluated forward only (as the official ``--eval_on_train_subsets``) against a forward and
   backward pass of each batch (the gradients taken and dropped);
3. the per-filter SI statistics of every step and checkpoint batch on the Section-6 ResNet
   (62 tensors): one segment sum over all filters against a reduction per tensor, per call
   and per epoch;
4. summing a step's statistics into the epoch's accumulator: one ``_foreach_add_`` and the
   finiteness checked once an epoch (``EpochAccumulator`` now) against an add per statistic
   and a finiteness flag updated on the device every step, over epochs of 32 steps with the
   statistics of the ConvNet and of the ResNet;
5. the checkpoint pass's statistics: a batch's gradient norms only, the means made once at the
   end (``PointAccumulator`` now) against the whole of ``si_statistics`` every batch, for 32
   batches' statistics and for the whole checkpoint metrics of a recipe run (ConvNet, ResNet).

    python benchmarks/recipe_overheads.py [--epochs 6] [--rounds 3] [--data-root data] [--parts commit,...]
"""
import argparse
import contextlib
import os
import statistics
import tempfile
import time

import h5py
import numpy as np
import torch

from landscape import sphere, train, trajectory
from landscape import measure
from landscape.measure import (NONFINITE, EpochAccumulator, PointAccumulator, checkpoint_metrics,
                               forward_backward)
from landscape.steppers import statistics_and_step
from timing import interleaved
from landscape.run import load_training_data
from landscape.config import TrainConfig
from landscape.models import build_model, make_conventional, model_spec, si_groups


def high_level_append(f, name, row):
    row = np.asarray(row, dtype=np.float64)
    ds = trajectory.TrajectoryWriter._rows(f, name, row.shape)
    ds.resize(ds.shape[0] + 1, axis=0)
    ds[-1] = row


class HighLevelSlot:
    """The state slot written by assignment (``slot[name][...] = array``): the low-level
    dataset write the commit calls goes through h5py's high-level objects instead."""

    def __enter__(self):
        self.saved = h5py.h5d.open
        saved = self.saved

        class Opened:
            def __init__(self, parent, name):
                self.parent, self.name = parent, name

            def write(self, mspace, fspace, array):
                h5py.Group(self.parent)[self.name.decode()][...] = array

            def __getattr__(self, attr):  # a row's append: the real dataset
                return getattr(saved(self.parent, self.name), attr)
        h5py.h5d.open = lambda parent, name: Opened(parent, name) if b"/" not in name else saved(parent, name)

    def __exit__(self, *exc):
        h5py.h5d.open = self.saved


def commit_ms(settings: dict, epochs: int, high_level: bool, folder: str) -> float:
    """Median milliseconds of ``append_epoch`` over a run of ``epochs`` epochs."""
    times = []
    original_commit, original_append = trajectory.TrajectoryWriter.append_epoch, trajectory.TrajectoryWriter.__dict__["_append"]

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        original_commit(self, *args, **kwargs)
        times.append(time.perf_counter() - start)
    trajectory.TrajectoryWriter.append_epoch = timed
    if high_level:
        trajectory.TrajectoryWriter._append = staticmethod(high_level_append)
    try:
        if high_level:
            with HighLevelSlot():
                train(out=os.path.join(folder, "run.h5"), overwrite=True, progress=False, epochs=epochs, **settings)
        else:
            train(out=os.path.join(folder, "run.h5"), overwrite=True, progress=False, epochs=epochs, **settings)
    finally:
        trajectory.TrajectoryWriter.append_epoch, trajectory.TrajectoryWriter._append = original_commit, original_append
    return 1000 * statistics.median(times)


def subsets_seconds(cfg: TrainConfig, with_gradients: bool) -> float:
    """Seconds of one checkpoint measurement of a label-noise run (its subsets included)."""
    data = load_training_data(cfg)
    model = build_model(model_spec(cfg.model, data.input_shape, data.num_classes, cfg.width), 0)
    import landscape.measure as measure
    original = measure.forward_loss
    if with_gradients:  # the subsets' batches through forward and backward, as before
        def forward_loss(m, x, y, loss="ce"):
            params = [p for p in m.parameters() if p.requires_grad]
            value, correct, _ = forward_backward(m, params, x, y, loss=loss)
            return value.detach(), correct
        measure.forward_loss = forward_loss
    try:
        start = time.perf_counter()
        checkpoint_metrics(model, data, cfg.batch_size, 1e-3, cfg.groups, test=(0.0, 0.0))
        return time.perf_counter() - start
    finally:
        measure.forward_loss = original


class PerTensorStatistics:
    """The per-filter and per-layer sums a reduction per tensor, as before."""

    def __enter__(self):
        self.saved = sphere.filter_sq_norms, sphere.layer_sums
        sphere.filter_sq_norms, sphere.layer_sums = sphere.per_tensor_filter_sq_norms, sphere.per_tensor_layer_sums

    def __exit__(self, *exc):
        sphere.filter_sq_norms, sphere.layer_sums = self.saved


def statistics_cost(settings: dict, epochs: int, rounds: int, folder: str) -> None:
    model = make_conventional(build_model(model_spec("resnet18", (1, 40), 10, width=8), 0))
    params = [p.detach() for _, p in si_groups(model)]
    grads = [torch.randn_like(p) for p in params]
    per_call, per_epoch = {False: [], True: []}, {False: [], True: []}
    for _ in range(rounds):
        for segment in (False, True):
            with contextlib.nullcontext() if segment else PerTensorStatistics():
                start = time.perf_counter()
                for _ in range(500):
                    sphere.si_statistics(params, grads, 0.1, filters=True)
                per_call[segment].append((time.perf_counter() - start) / 500)
                t = train(out=os.path.join(folder, "stats.h5"), overwrite=True, progress=False, epochs=epochs, **settings)
                with h5py.File(t.path, "r") as h:
                    per_epoch[segment].append(float(np.median(h["timing/epoch_seconds"][:])))
    old, new = statistics.median(per_call[False]), statistics.median(per_call[True])
    old_e, new_e = statistics.median(per_epoch[False]), statistics.median(per_epoch[True])
    print(f"SI statistics of a step, ResNet-18 w=8 ({len(params)} tensors): per tensor {1000 * old:.3f} ms  "
          f"segment sum {1000 * new:.3f} ms  ratio {old / new:.2f}x; its epoch {old_e:.3f} s against {new_e:.3f} s "
          f"({old_e / new_e:.3f}x)")


class PerStepFlags(EpochAccumulator):
    """The accumulator as it was: an add per statistic, and the first non-finite step kept up
    to date on the device by a few kernels every step."""

    def add(self, stats, loss, correct, n):
        self.sums = stats if self.sums is None else {k: self.sums[k] + v for k, v in stats.items()}
        loss = loss.detach().double()
        self.steps += 1
        self._flag(NONFINITE["loss"] * ~torch.isfinite(loss) + NONFINITE["gradient"] * ~torch.isfinite(stats["grad_norm"]))
        loss = loss * n
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.correct = correct if self.correct is None else self.correct + correct
        self.seen += n

    def end_step(self, rho_end_sq):
        self.rho_end_sq = rho_end_sq
        self._flag(NONFINITE["parameters"] * ~torch.isfinite(rho_end_sq.sum(-1)))

    def _flag(self, what):
        what = what.long()
        if getattr(self, "bad_step", None) is None:
            self.bad_step, self.bad_what = torch.full_like(what, -1), torch.zeros_like(what)
        self.bad_step = torch.where((self.bad_step < 0) & (what > 0), self.steps, self.bad_step)
        self.bad_what = torch.where(self.bad_step == self.steps, self.bad_what | what, self.bad_what)

    def nonfinite(self, index=None):
        step = int(self.bad_step)
        return None if step < 0 else {"step": step, "what": int(self.bad_what)}


def accumulator_cost(rounds: int) -> None:
    for name, spec in (("ConvNet k=16", model_spec("convnet", (1, 40), 10, width=16)),
                       ("ResNet-18 w=8", model_spec("resnet18", (1, 40), 10, width=8))):
        params = [p for _, p in si_groups(build_model(spec, 0))]
        grads = [1e-3 * torch.randn_like(p) for p in params]
        stats, rho_end_sq = statistics_and_step(params, grads, 1e-4, 1e-4, 10.0, True, "sphere", None, 0.0, 0.0)
        loss, correct = torch.tensor(1.0), torch.tensor(3)
        def epoch(cls):
            acc = cls()
            for _ in range(32):
                acc.add(stats, loss, correct, 128)
                acc.end_step(rho_end_sq)
            acc.end_epoch(params, True)
            acc.nonfinite()
            acc.metrics(0.1)
        t = interleaved({"old": lambda: epoch(PerStepFlags), "new": lambda: epoch(EpochAccumulator)}, rounds * 20)
        old, new = t["old"], t["new"]
        print(f"accumulating an epoch of 32 steps' statistics, {name}: per statistic, flags each step "
              f"{1000 * old:.2f} ms  foreach, one check an epoch {1000 * new:.2f} ms  ratio {old / new:.2f}x")


class FullStatistics(PointAccumulator):
    """The checkpoint pass's accumulator as it was: every statistic of ``si_statistics`` taken
    and summed for each batch, their means read at the end."""

    def add_gradients(self, grads, loss, correct, n):
        params = self.params
        EpochAccumulator.add(self, sphere.si_statistics(params, grads, self.lr, self.batch_dims, self.filters),
                             loss, correct, n)

    def means(self):
        return EpochAccumulator.means(self)


class Accumulators:
    """``measure.checkpoint_pass`` with ``cls`` as its accumulator."""

    def __init__(self, cls):
        self.cls = cls

    def __enter__(self):
        self.saved = measure.PointAccumulator
        cls = self.cls

        def make(params, *args, **kwargs):
            acc = cls(params, *args, **kwargs)
            acc.params = params
            return acc
        measure.PointAccumulator = make

    def __exit__(self, *exc):
        measure.PointAccumulator = self.saved


def checkpoint_statistics_cost(rounds: int, data_root: str) -> None:
    for name, cfg in (("ConvNet k=16", TrainConfig(dataset="mnist1d:noise=2", data_root=data_root, model="convnet",
                                                   width=16, device="cpu", augment=False)),
                      ("ResNet-18 w=8", TrainConfig(dataset="mnist1d:noise=2", data_root=data_root, model="resnet18",
                                                    width=8, conventional=True, space="whole", lr=0.1,
                                                    momentum=0.9, weight_decay=5e-4, device="cpu"))):
        data = load_training_data(cfg)
        model = build_model(model_spec(cfg.model, data.input_shape, data.num_classes, cfg.width), 0)
        if cfg.conventional:
            model = make_conventional(model)
        params = [p for _, p in si_groups(model)]
        grads = [1e-3 * torch.randn_like(p) for p in params]
        loss, correct = torch.tensor(1.0), torch.tensor(3)

        def batches(cls):
            acc = cls(params, 0.1, True)
            acc.params = params
            for _ in range(32):
                acc.add_gradients(grads, loss, correct, 128)
            acc.metrics(0.1)
        t = interleaved({"old": lambda: batches(FullStatistics), "new": lambda: batches(PointAccumulator)}, rounds * 20)
        old, new = t["old"], t["new"]
        print(f"the statistics of a checkpoint pass's 32 batches, {name}: every statistic each batch "
              f"{1000 * old:.2f} ms  gradient norms, means at the end {1000 * new:.2f} ms  ratio {old / new:.2f}x")

        def whole(cls):
            with Accumulators(cls):
                checkpoint_metrics(model, data, cfg.batch_size, 0.1, cfg.groups, test=(0.0, 0.0))
        t = interleaved({"old": lambda: whole(FullStatistics), "new": lambda: whole(PointAccumulator)}, rounds * 4)
        old, new = t["old"], t["new"]
        print(f"  the whole checkpoint metrics (the test pass aside): {old:.3f} s against {new:.3f} s  "
              f"ratio {old / new:.3f}x", flush=True)


PARTS = ("commit", "subsets", "segments", "accumulator", "checkpoint")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-root", default="data")
    p.add_argument("--parts", default=",".join(PARTS), help=f"which costs, of {', '.join(PARTS)}")
    args = p.parse_args()
    parts = args.parts.split(",")
    if set(parts) - set(PARTS):
        p.error(f"--parts: unknown {', '.join(sorted(set(parts) - set(PARTS)))}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(1)
    common = dict(dataset="mnist1d:noise=2", data_root=args.data_root, augment=False, device="cpu",
                  save_every=25, elr=1e-3)
    cases = {"ConvNet k=16 (the recipe)": dict(common, model="convnet", width=16),
             "ResNet-18 w=8, conventional (Section 6)": dict(common, model="resnet18", width=8,
                                                               conventional=True, momentum=0.9,
                                                               weight_decay=5e-4, space="whole", lr=0.1)}
    if "commit" in parts:
        commit_cost(cases, args)
    if "subsets" in parts:
        subsets_cost(args)
    if "segments" in parts:
        with tempfile.TemporaryDirectory() as folder:
            statistics_cost(dict(cases["ResNet-18 w=8, conventional (Section 6)"], augment=True), args.epochs,
                            args.rounds, folder)
    if "accumulator" in parts:
        accumulator_cost(args.rounds)
    if "checkpoint" in parts:
        checkpoint_statistics_cost(args.rounds, args.data_root)


def commit_cost(cases, args):
    print(f"commit of one epoch, median over {args.epochs} epochs, {args.rounds} alternating rounds")
    with tempfile.TemporaryDirectory() as folder:
        for name, settings in cases.items():
            low, high = [], []
            for _ in range(args.rounds):
                high.append(commit_ms(settings, args.epochs, True, folder))
                low.append(commit_ms(settings, args.epochs, False, folder))
            lo, hi = statistics.median(low), statistics.median(high)
            print(f"  {name:42s} high-level {hi:6.1f} ms  low-level {lo:6.1f} ms  ratio {hi / lo:.2f}x", flush=True)


def subsets_cost(args):
    cfg = TrainConfig(dataset="mnist1d:noise=2", data_root=args.data_root, model="convnet", width=16,
                      label_noise=0.2, device="cpu")
    fwd, both = [], []
    for _ in range(args.rounds):
        both.append(subsets_seconds(cfg, True))
        fwd.append(subsets_seconds(cfg, False))
    f, b = statistics.median(fwd), statistics.median(both)
    print(f"checkpoint metrics of a label-noise run (ConvNet k=16, 20% noise), median of {args.rounds}: "
          f"subsets forward and backward {b:.3f} s  forward only {f:.3f} s  ratio {b / f:.2f}x")


if __name__ == "__main__":
    main()
