"""How runs take their steps: one stepper per strategy, all driven by the one epoch loop
(``run.train_runs``).

    Streams     the models one after another on the same batches, each on its own CUDA stream
                so that their kernels can overlap (on a CPU: in turn). One model is a single
                run (``landscape train``); several are the ``streams`` sweep strategy. Each
                model's computation is exactly a single run's, so the trajectories are
                bit-identical to ``landscape train``'s on a CPU.
    Vectorised  the models as one stacked model (``torch.func.stack_module_state``): ``vmap``
                of ``grad`` of ``functional_call``, each model with its own learning rate and
                sphere through the one batched update (``batch_dims=1``).

A stepper trains the live runs for one epoch (``epoch``), returns each run's accumulator, runs
the test pass (``test``) and hands out each run's training state (``state``). The update itself
is ``statistics_and_step`` for every strategy, compiled (``compile=True``) or not.
"""
from __future__ import annotations

import contextlib
import copy
import os
import types

import torch

from .data import Dataset, train_batches
from .config import elr_power
from .measure import (LOSSES, EpochAccumulator, checkpoint_metrics, checkpoint_pass, checkpoint_results,
                      forward_backward, test_metrics)
from .models import kept_buffers, with_batch_statistics
from .sphere import (adam_direction, filter_spheres_step, momentum_direction, projected_sgd_step, sgd_step,
                     si_statistics, step_angles)

COMPILE_BACKEND_ENV = "LANDSCAPE_COMPILE_BACKEND"


def statistics_and_step(params, grads, lr, lr_stats, rho, filters: bool, space: str, buffers,
                        momentum: float, weight_decay: float, batch_dims: int = 0,
                        optimizer: str = "sgd", betas=(0.9, 0.999), eps: float = 1e-8):
    """The SI statistics of a step (before it, as ``measure.checkpoint_pass`` takes them) and the
    step itself in place for the training ``space``: ``projected_sgd_step`` (sphere),
    ``filter_spheres_step`` (filter-spheres) or ``sgd_step`` (whole); on the sphere the
    ``optimizer``'s direction (``momentum_direction``, ``adam_direction``; its state in
    ``buffers``) takes the gradient's place, and the effective step sizes and step angle are the
    measured turn of each group (``step_angles``) rather than ELR_i x effective gradient norm.
    Eager or compiled alike (``batch_dims=1``: stacked models, ``lr``, ``lr_stats`` and ``rho``
    one per model). Returns (statistics, group squared norms after the step)."""
    with torch.no_grad():
        stats = si_statistics(params, grads, lr_stats, batch_dims, filters=filters)
        if space == "whole":
            return stats, sgd_step(params, grads, lr, buffers, momentum, weight_decay, batch_dims)
        if space == "filter-spheres":
            return stats, filter_spheres_step(params, grads, lr, rho, batch_dims)
        if optimizer == "sgd":
            return stats, projected_sgd_step(params, grads, lr, rho, batch_dims)
        direction = (momentum_direction(grads, buffers, momentum) if optimizer == "momentum"
                     else adam_direction(grads, buffers, betas, eps, batch_dims))
        stats.update(step_angles(params, direction, lr_stats, batch_dims, filters))
        return stats, projected_sgd_step(params, direction, lr, rho, batch_dims)


def optimizer_settings(cfg) -> tuple:
    """(optimizer, Adam's betas, Adam's eps) of a configuration, as ``statistics_and_step`` takes them."""
    return cfg.optimizer, (cfg.adam_beta1, cfg.adam_beta2), cfg.adam_eps


def step_constants(lr: float, rho: float, params) -> tuple:
    """The compiled update's constants as device tensors, made once an epoch (a Python float
    would be baked into the compiled code, and a schedule would recompile it every epoch): the
    learning rate in the parameters' dtype, in float64 for the statistics, and the radius."""
    p = params[0]  # filled on the device (no copy from the host to wait for)
    return (torch.full((), lr, dtype=p.dtype, device=p.device),
            torch.full((), lr, dtype=torch.float64, device=p.device),
            torch.full((), rho, dtype=p.dtype, device=p.device))


def training_state(state: dict, buffers=None, keys=None) -> dict:
    """A run's training state as stored for resuming: a copy of the model's ``state`` (its
    state dict), plus the optimizer's ``buffers`` under their ``keys`` (``optimizer_keys``) when used."""
    out = {k: v.detach().clone() for k, v in state.items()}
    if buffers is not None:
        out.update({k: b.detach().clone() for k, b in zip(keys, buffers)})
    return out


# --- torch.compile: made once per model (forward) and per mode (update) ---------------------

_COMPILED = {}


def compile_options(mode: str = "default") -> dict:
    """torch.compile's arguments: the backend (``LANDSCAPE_COMPILE_BACKEND``, default inductor;
    the tests use aot_eager, which compiles in seconds), and the mode where the backend is
    inductor (the others take none)."""
    backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor")
    return {"backend": backend, **({"mode": mode} if backend == "inductor" and mode != "default" else {})}


def compiled(model, mode: str = "default"):
    """``torch.compile`` of the model's forward, made once per model and mode."""
    key = (id(model), mode)
    if key not in _COMPILED or _COMPILED[key][0] is not model:
        _COMPILED[key] = (model, torch.compile(model, **compile_options(mode)))
    return _COMPILED[key][1]


def compiled_update(mode: str = "default"):
    """``statistics_and_step`` compiled once per mode (shared by every model of the process:
    its tensors are arguments, so models of one shape share the compiled code)."""
    key = ("update", mode)
    if key not in _COMPILED:
        _COMPILED[key] = (None, torch.compile(statistics_and_step, **compile_options(mode)))
    return _COMPILED[key][1]


def full_batches_compiled(model, cfg):
    """The model's forward, compiled for batches of ``cfg.batch_size`` and eager for the others
    (an epoch's last, partial batch): a graph for that one batch would cost a first compile of
    its own (a dynamic-shape one, a minute of C++ on a CPU) to save milliseconds an epoch."""
    fast = compiled(model, cfg.compile_mode)
    return lambda x: (fast if len(x) == cfg.batch_size else model)(x)


def float_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Make the model's BatchNorms normalise in float32 under bf16 autocast (input cast up,
    output cast back to the input's dtype): vmap's batch-norm rule takes no mixed dtypes, and
    the statistics (and running buffers) stay float32 as a single run's do."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            def forward(self, x, batchnorm=type(m).forward):  # its own bookkeeping kept
                return batchnorm(self, x.float()).to(x.dtype)
            m.forward = types.MethodType(forward, m)
    return model


def epoch_batches(data: Dataset, cfg, epoch: int):
    """The epoch's training batches, the same for every run of a sweep (the paper's protocol),
    in channels-last layout once for all models when asked."""
    for x, y in train_batches(data, cfg.batch_size, epoch, cfg.data_seed, cfg.augment,
                              cfg.augment_padding):
        if cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, y


def train_step(forward, params, x, y, lr: float, rho: float, cfg, acc: EpochAccumulator,
               buffers=None, constants: tuple | None = None) -> None:
    """One step of one model on the batch (x, y): its statistics into ``acc``, then projected
    SGD on the sphere (or SGD in the whole space), all on the device. With ``cfg.compile`` the
    update is compiled (``constants``: the epoch's ``step_constants``), so its few dozen small
    kernels fuse into a few."""
    loss, correct, grads = forward_backward(forward, params, x, y, cfg.precision, cfg.loss)
    if cfg.compile:
        update, constants = compiled_update(cfg.compile_mode), constants or step_constants(lr, rho, params)
    else:
        update, constants = statistics_and_step, (lr, lr, rho)
    stats, rho_end_sq = update(params, list(grads), *constants, cfg.groups == "filter",
                               cfg.space, buffers, cfg.momentum, cfg.weight_decay, 0, *optimizer_settings(cfg))
    acc.add(stats, loss, correct, len(y))
    acc.end_step(rho_end_sq)


class Streams:
    """The runs' models one after another on each batch, each on its own CUDA stream (the
    batch is made once on the default stream; each stream waits for it, and the default stream
    waits for all at the epoch's end). One run: a single run."""

    def __init__(self, runs, data: Dataset):
        self.runs, self.data, self.cfg = runs, data, runs[0].cfg
        dev = data.x_train.device
        self.cuda = dev.type == "cuda"
        self.device = dev
        self.streams = [torch.cuda.Stream(dev) if self.cuda else None for _ in runs]
        self.forwards = [full_batches_compiled(r.model, self.cfg) if self.cfg.compile else r.model
                         for r in runs]

    def _on(self, j, tensors):
        if not self.cuda:
            return contextlib.nullcontext()
        self.streams[j].wait_stream(torch.cuda.current_stream(self.device))
        for t in tensors:  # the allocator must not reuse the batch while stream j reads it
            t.record_stream(self.streams[j])
        return torch.cuda.stream(self.streams[j])

    def epoch(self, epoch: int, lrs: list, live: list, on_step=None) -> dict:
        """Train the ``live`` runs one epoch; {run index: (accumulator, None)}."""
        cfg, runs = self.cfg, self.runs
        accs = {j: EpochAccumulator(elr_power(cfg)) for j in live}
        constants = {j: step_constants(lrs[j], runs[j].rho, runs[j].params) if cfg.compile else None
                     for j in live}
        for j in live:
            runs[j].model.train()
        for x, y in epoch_batches(self.data, cfg, epoch):
            for j in live:
                with self._on(j, (x, y)):
                    train_step(self.forwards[j], runs[j].params, x, y, lrs[j], runs[j].rho, cfg,
                               accs[j], runs[j].buffers, constants[j])
                if on_step is not None:
                    on_step(epoch, accs[j].steps, runs[j].model)
        for j in live:
            with self._on(j, ()):
                accs[j].end_epoch(runs[j].params, cfg.groups == "filter")
        if self.cuda:
            for stream in self.streams:
                torch.cuda.current_stream(self.device).wait_stream(stream)
        return {j: (accs[j], None) for j in live}

    def test(self, live: list) -> dict:
        """{run index: (test loss, test accuracy)} in eval mode."""
        return {j: test_metrics(self.runs[j].model, self.data.x_test, self.data.y_test, loss=self.cfg.loss)
                for j in live}

    def checkpoint(self, live: list, lrs: list, tests: dict) -> dict:
        """{run index: the checkpoint metrics of its model now} (``tests``: test metrics already
        measured this epoch, by run)."""
        cfg, out = self.cfg, {}
        for j in live:
            model = self.runs[j].model.train()
            # compiled, the pass runs through training's own compiled graphs (a graph of its own
            # would cost a first compile as long as training's), the running statistics kept
            with kept_buffers(model) if cfg.compile else contextlib.nullcontext():
                out[j] = checkpoint_metrics(model, self.data, cfg.batch_size, lrs[j], cfg.groups, tests.get(j),
                                            self.runs[j].initial, cfg.loss, elr_power(cfg),
                                            self.forwards[j] if cfg.compile else None)
        return out

    def state(self, j: int) -> dict:
        return self.runs[j].state()


class Vectorised:
    """The runs as one stacked model, trained by ``vmap`` of ``grad`` of ``functional_call``;
    each run keeps its own learning rate, radius and momentum buffers."""

    def __init__(self, runs, data: Dataset):
        from torch.func import functional_call, grad, stack_module_state, vmap
        self.runs, self.data, cfg = runs, data, runs[0].cfg
        self.cfg, self.names = cfg, runs[0].names
        params, self.buffers = stack_module_state([r.model for r in runs])
        self.params = {k: v.detach() for k, v in params.items()}
        self.trainable = {k: self.params[k] for k in self.names}
        self.frozen = {k: v for k, v in self.params.items() if k not in self.names}
        template = copy.deepcopy(runs[0].model).to("meta")
        self.template = template
        dev = self.device = data.x_train.device
        self.dtype = next(iter(self.trainable.values())).dtype
        self.rho = torch.tensor([r.rho for r in runs], dtype=torch.float64, device=dev).to(self.dtype)
        self.si_list = [self.trainable[k] for k in self.names]
        self.optimizer_state = ([torch.stack([r.buffers[i] for r in runs]) for i in range(len(runs[0].buffers))]
                         if runs[0].buffers is not None else None)  # the optimizer's state, stacked
        bf16 = cfg.precision == "bf16"
        if bf16:
            float_batchnorm(template)
        criterion = LOSSES[cfg.loss]

        def loss_fn(tp, fp, b, x, y):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = functional_call(template, ({**tp, **fp}, b), (x,))
            out = out.float() if bf16 else out  # the loss in float32, as a single run takes it
            loss = criterion(out, y)
            return loss, (loss, (out.argmax(1) == y).sum())

        def test_pass(p, b, x, y):
            out = functional_call(template, (p, b), (x,))
            return criterion(out, y, reduction="sum").double(), (out.argmax(1) == y).sum()

        self.step = vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, None, None))
        self.update = statistics_and_step
        if cfg.compile:  # the vmapped forward and backward as one graph, the update as another
            self.step = torch.compile(self.step, **compile_options(cfg.compile_mode))
            self.update = compiled_update(cfg.compile_mode)
        self.test_pass = vmap(test_pass, in_dims=(0, 0, None, None))
        measured = with_batch_statistics(template)  # the checkpoint protocol: batch statistics, no buffers

        def measure_fn(tp, fp, x, y):
            out = functional_call(measured, {**tp, **fp}, (x,))
            loss = criterion(out, y)
            return loss, (loss, (out.argmax(1) == y).sum())
        self.measure = vmap(grad(measure_fn, has_aux=True), in_dims=(0, 0, None, None))
        self.measure_losses = vmap(lambda tp, fp, x, y: measure_fn(tp, fp, x, y)[1], in_dims=(0, 0, None, None))

    def epoch(self, epoch: int, lrs: list, live: list, on_step=None) -> dict:
        """Train every model one epoch (a run that went non-finite keeps computing NaN beside
        the others, uncommitted); {run index: (the shared accumulator, its index)}."""
        cfg, names = self.cfg, self.names
        lr = torch.tensor(lrs, dtype=torch.float64, device=self.device)
        lr_step = lr.to(self.dtype)
        self.template.train()
        acc = EpochAccumulator(elr_power(cfg))
        for x, y in epoch_batches(self.data, cfg, epoch):
            grads, (loss, correct) = self.step(self.trainable, self.frozen, self.buffers, x, y)
            stats, rho_end_sq = self.update(self.si_list, [grads[k] for k in names], lr_step, lr,
                                            self.rho, cfg.groups == "filter", cfg.space,
                                            self.optimizer_state, cfg.momentum, cfg.weight_decay, 1,
                                            *optimizer_settings(cfg))
            acc.add(stats, loss, correct, len(y))
            acc.end_step(rho_end_sq)
        acc.end_epoch(self.si_list, cfg.groups == "filter", batch_dims=1)
        return {j: (acc, j) for j in live}

    def test(self, live: list) -> dict:
        """{run index: (test loss, test accuracy)}, all models in one vmapped eval pass."""
        data, n = self.data, len(self.runs)
        self.template.eval()
        with torch.no_grad():
            loss_sum = torch.zeros(n, dtype=torch.float64, device=self.device)
            correct = torch.zeros(n, dtype=torch.int64, device=self.device)
            for i in range(0, len(data.y_test), 1000):
                ls, cs = self.test_pass({**self.trainable, **self.frozen}, self.buffers,
                                        data.x_test[i:i + 1000], data.y_test[i:i + 1000])
                loss_sum += ls
                correct += cs
        loss = loss_sum.cpu().numpy() / len(data.y_test)
        accuracy = correct.cpu().numpy() / len(data.y_test)
        return {j: (float(loss[j]), float(accuracy[j])) for j in live}

    def checkpoint(self, live: list, lrs: list, tests: dict) -> dict:
        """{run index: the checkpoint metrics of its model now}, every model measured in one
        vmapped pass over the training set (``measure.checkpoint_pass`` with a model dimension)."""
        if any(j not in tests for j in live):
            tests = self.test(live)
        names = self.names

        def batch_gradients(x, y):
            grads, (loss, correct) = self.measure(self.trainable, self.frozen, x, y)
            return loss, correct, [grads[k] for k in names]
        lr = torch.tensor(lrs, dtype=torch.float64, device=self.device)
        def batch_losses(x, y):
            with torch.no_grad():
                return self.measure_losses(self.trainable, self.frozen, x, y)
        passes = checkpoint_pass(batch_gradients, self.si_list, self.data, self.cfg.batch_size, lr,
                                 self.cfg.groups, batch_dims=1, elr_power=elr_power(self.cfg),
                                 batch_losses=batch_losses)
        return {j: checkpoint_results(passes, lrs[j], tests[j], [p[j] for p in self.si_list],
                                      self.runs[j].initial, index=j) for j in live}

    def state(self, j: int) -> dict:
        run = self.runs[j]
        state = {k: self.params[k][j] if k in self.params else self.buffers[k][j] for k in run.model.state_dict()}
        buffers = [b[j] for b in self.optimizer_state] if self.optimizer_state is not None else None
        return training_state(state, buffers, run.buffer_keys)


STEPPERS = {"single": Streams, "streams": Streams, "vectorised": Vectorised}


def train_epoch(model, params, data: Dataset, lr: float, rho: float, cfg, epoch: int, on_step=None,
                buffers=None) -> EpochAccumulator:
    """One epoch of one model outside a run (no trajectory): the ``Streams`` stepper's epoch,
    its statistics read from the returned accumulator (``.metrics(lr)``, ``.nonfinite()``)."""
    run = types.SimpleNamespace(cfg=cfg, model=model, params=params, rho=rho, buffers=buffers)
    return Streams([run], data).epoch(epoch, [lr], [0], on_step)[0][0]
