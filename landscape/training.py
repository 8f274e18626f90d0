"""``landscape train``: a fully SI network trained by projected SGD on a sphere at a fixed ELR,
or (Section 6) by plain SGD in the whole parameter space, with weight decay, momentum, a
schedule, and optionally as a conventional network.

One readable path: data tensors on the device -> seeded batches -> forward -> gradients of the
trained groups (``torch.autograd.grad``, no ``.grad`` fields) -> statistics -> the step
(``sphere.projected_sgd_step`` on the sphere, ``sphere.sgd_step`` in the whole space).
Per-step statistics stay on the device and are summed; the host sees them once per epoch, so
logging costs no synchronisation inside the epoch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import AUGMENT_PADDINGS, Dataset, load_dataset, resolve_device, train_batches
from .errors import LandscapeError
from .progress import Progress
from .models import build_model, model_spec, si_groups, with_batch_statistics
from .sphere import (filter_sq_norms, group_sq_norms, project_to_sphere, projected_sgd_step, sgd_step,
                     si_statistics)
from .trajectory import OPTIMIZER_PREFIX, Trajectory, TrajectoryWriter, model_state, parse_source

# Per-epoch scalar metrics (``/metrics/<name>``) and per-group ones (``/metrics/groups/<name>``).
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "effective_grad_norm",
           "grad_norm", "effective_step_size", "rho", "elr")
GROUP_METRICS = ("rho", "elr", "effective_grad_norm", "effective_step_size", "rho_end")  # also per filter
NONFINITE = {"loss": 1, "gradient": 2, "parameters": 4}  # bits of what went non-finite
EXIT_NONFINITE = 3  # `landscape train` exit status of a run ended by non-finite values


@dataclass
class TrainConfig:
    model: str = "convnet"
    width: int | None = None          # None: the model's default (convnet 32, resnet18 64, mlp 256)
    depth: int = 3                    # mlp only
    last_layer_norm: float = 10.0
    # the CPU recipe's task (issue 20): MNIST-1D with both generator noises doubled, which a
    # small ConvNet cannot memorise in a few epochs, so regime 2 spans a decade of ELRs
    dataset: str = "mnist1d:noise=2"
    data_root: str = "data"
    download: bool = False
    train_subset: int | None = None
    label_noise: float = 0.0
    label_noise_mode: str = "paper"   # paper: each label w.p. p -> uniform class; exact: round(pN) moved
    augment: bool | None = None       # None: on for the generated MNIST-1D variants (mnist1d:...)
    augment_padding: str = "black"    # crops padded with black pixels (official) or zeros
    elr: float = 1e-3
    rho: float | None = None          # None: the initial total SI norm
    epochs: int = 100
    batch_size: int = 128
    init_seed: int = 0
    data_seed: int = 0
    eval_every: int = 1
    save_every: int = 10
    device: str = "auto"
    dtype: str = "float32"            # float64: slower, but rounding no longer seeds chaos
    groups: str = "filter"            # SI groups logged: every filter (and each layer), or layers
    checkpoint_metrics: bool = False  # also the official protocol's metrics at every epoch's end
    init: str | None = None           # fine-tuning: "traj.h5@EPOCH"
    # Section 6: training outside the sphere
    space: str = "sphere"             # sphere: projected SGD at a fixed ELR; whole: plain SGD at --lr
    lr: float | None = None           # the learning rate of --space whole
    weight_decay: float = 0.0         # whole space only
    momentum: float = 0.0             # whole space only
    schedule: str = "constant"        # constant | cosine (of the LR / ELR over the epochs)
    conventional: bool = False        # BN affine on, trainable last layer with bias (whole space)
    # speed (issue 16): numerics of the forward/backward only; steps, norms and metrics stay exact
    precision: str = "float32"        # float32 | bf16 (autocast of forward and backward)
    channels_last: bool = False       # 2-D convolutions in channels-last memory layout
    compile: bool = False             # torch.compile of the forward pass and of the update
    compile_mode: str = "default"     # torch.compile's mode: reduce-overhead replays CUDA graphs

    def validate(self) -> None:
        def positive(name, value, kind=float):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                    not math.isfinite(value) or value <= 0 or (kind is int and value != int(value)):
                raise LandscapeError(f"--{name.replace('_', '-')} must be a positive "
                                     f"{'integer' if kind is int else 'number'}, got {value!r}")
        if self.space != "whole":
            positive("elr", self.elr)
        for name in ("epochs", "batch_size", "eval_every", "save_every"):
            positive(name, getattr(self, name), int)
        if self.rho is not None:
            positive("rho", self.rho)
        if self.batch_size < 2:
            raise LandscapeError("--batch-size must be at least 2 (train-mode BatchNorm)")
        if self.augment is None:  # resolved here, so the stored configuration says what was done
            self.augment = self.dataset.startswith("mnist1d:")
        if self.augment_padding not in AUGMENT_PADDINGS:
            raise LandscapeError(f"augment_padding must be one of {', '.join(AUGMENT_PADDINGS)}, "
                                 f"got {self.augment_padding!r}")
        if self.groups not in ("filter", "layer"):
            raise LandscapeError(f"--groups must be filter or layer, got {self.groups!r}")
        if self.dtype not in ("float32", "float64"):
            raise LandscapeError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.precision not in PRECISIONS:
            raise LandscapeError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "bf16" and self.dtype != "float32":
            raise LandscapeError("--precision bf16 autocasts a float32 model: drop --dtype float64")
        if self.compile_mode not in COMPILE_MODES:
            raise LandscapeError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, "
                                 f"got {self.compile_mode!r}")
        if self.compile_mode != "default" and not self.compile:
            raise LandscapeError(f"--compile-mode {self.compile_mode} is a mode of --compile: add --compile")
        if self.space not in SPACES:
            raise LandscapeError(f"--space must be one of {', '.join(SPACES)}, got {self.space!r}")
        if self.schedule not in SCHEDULES:
            raise LandscapeError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.space == "whole":
            if self.lr is None:
                raise LandscapeError("--space whole trains at a learning rate: give --lr")
            positive("lr", self.lr)
            self.elr = None  # the sphere's parameter: meaningless here
        else:
            if self.lr is not None:
                raise LandscapeError("--lr is the learning rate of --space whole; on the sphere "
                                     "give --elr (lr = ELR * rho^2)")
            for name in ("weight_decay", "momentum"):
                if getattr(self, name):
                    raise LandscapeError(f"--{name.replace('_', '-')} needs --space whole (on the "
                                         f"sphere the projection fixes the norm)")
            if self.conventional:
                raise LandscapeError("--conventional trains every weight by SGD: add --space whole --lr LR")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise LandscapeError(f"--weight-decay must be a number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise LandscapeError(f"--momentum must be in [0, 1), got {self.momentum!r}")

    @property
    def rate(self) -> tuple[str, float]:
        """The swept learning-rate parameter: ('ELR', elr) on the sphere, ('LR', lr) in the
        whole space."""
        return ("LR", self.lr) if self.space == "whole" else ("ELR", self.elr)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A stored configuration; options added later take the value that reproduces runs
        stored before them (``LEGACY``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEGACY, **{k: v for k, v in d.items() if k in known}})


# what a configuration stored before an option existed meant by its absence
LEGACY = {"label_noise_mode": "exact", "augment_padding": "zero", "groups": "layer", "compile_mode": "default"}
SPACES = ("sphere", "whole")
PRECISIONS = ("float32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
SCHEDULES = ("constant", "cosine")


def epoch_lr(cfg: TrainConfig, base_lr: float, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based): constant, or cosine annealing to 0 over the run
    stepped once per epoch, as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)``:
    base (1 + cos(pi (epoch - 1) / epochs)) / 2."""
    if cfg.schedule == "cosine":
        return base_lr * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs)) / 2
    return base_lr


def rate_of(config: dict) -> tuple[str, float]:
    """('ELR', elr) or ('LR', lr) of a stored configuration (runs stored before Section 6 were
    on the sphere)."""
    if config.get("space", "sphere") == "whole":
        return "LR", float(config["lr"])
    return "ELR", float(config["elr"])




def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the model in eval mode over (x, y)."""
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=x.device, dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            out = model(x[i:i + batch_size])
            loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").double()
            correct += (out.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return loss.item() / len(y), float(correct) / len(y)


class EpochAccumulator:
    """Sums of per-step statistics on the device (no host synchronisation inside the epoch).
    With a batch of models every value carries a leading model dimension."""

    def __init__(self):
        self.sums, self.steps, self.seen = None, 0, 0
        self.loss_sum = self.correct = self.rho_end_sq = self.filter_rho_end_sq = None
        self.bad_step = self.bad_what = None  # first step with a non-finite value, and which

    @torch.no_grad()
    def add(self, stats: dict, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        self.sums = stats if self.sums is None else {k: self.sums[k] + v for k, v in stats.items()}
        loss = loss.detach().double()
        self.steps += 1
        self._flag(NONFINITE["loss"] * ~torch.isfinite(loss)
                   + NONFINITE["gradient"] * ~torch.isfinite(stats["grad_norm"]))
        loss = loss * n
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.correct = correct if self.correct is None else self.correct + correct
        self.seen += n

    @torch.no_grad()
    def end_step(self, rho_end_sq: torch.Tensor) -> None:
        """After the step: the new group norms (the next step's rho_i^2), checked as well."""
        self.rho_end_sq = rho_end_sq
        self._flag(NONFINITE["parameters"] * ~torch.isfinite(rho_end_sq.sum(-1)))

    def _flag(self, what: torch.Tensor) -> None:
        """Remember the first step at which something went non-finite, on the device (checking
        on the host every step would synchronise; the epoch's end looks once)."""
        what = what.long()
        if self.bad_step is None:
            self.bad_step, self.bad_what = torch.full_like(what, -1), torch.zeros_like(what)
        self.bad_step = torch.where((self.bad_step < 0) & (what > 0), self.steps, self.bad_step)
        self.bad_what = torch.where(self.bad_step == self.steps, self.bad_what | what, self.bad_what)

    def nonfinite(self, index=None) -> dict | None:
        """None, or the first step of the epoch (1-based) at which the loss, a gradient or the
        parameters were not finite, with which of them."""
        if self.bad_step is None:
            return None
        step = int(self.bad_step if index is None else self.bad_step[index])
        if step < 0:
            return None
        what = int(self.bad_what if index is None else self.bad_what[index])
        return {"step": step, "what": [k for k, bit in NONFINITE.items() if what & bit]}

    def metrics(self, lr: float, index=None) -> tuple[dict, dict, dict]:
        """(scalar metrics, per-layer metrics, per-filter metrics or {}) of the epoch; ``index``
        picks one model of a batch."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        mean = {k: (pick(v) / self.steps).cpu().numpy() for k, v in self.sums.items()}
        metrics = {
            "train_loss": pick(self.loss_sum).item() / self.seen,
            "train_accuracy": pick(self.correct).item() / self.seen,
            "effective_grad_norm": float(mean["effective_grad_norm"]),
            "grad_norm": float(mean["grad_norm"]),
            "rho": math.sqrt(mean["rho_sq"]),
            # ELRs from the epoch-mean squared norms, so eq. (3) holds exactly for the logged values
            "elr": lr / float(mean["rho_sq"]),
        }
        metrics["effective_step_size"] = metrics["elr"] * metrics["effective_grad_norm"]
        def per_group(prefix, rho_end_sq):  # layers ('group_') and filters ('filter_') alike
            return {"rho": np.sqrt(mean[f"{prefix}rho_sq"]), "elr": lr / mean[f"{prefix}rho_sq"],
                    "effective_grad_norm": mean[f"{prefix}effective_grad_norm"],
                    "effective_step_size": mean[f"{prefix}effective_step_size"],
                    "rho_end": np.sqrt(pick(rho_end_sq).double().cpu().numpy())}
        filters = per_group("filter_", self.filter_rho_end_sq) if "filter_rho_sq" in mean else {}
        return metrics, per_group("group_", self.rho_end_sq), filters


def train_epoch(model, params, data: Dataset, lr: float, rho: float, cfg: TrainConfig,
                epoch: int, on_step=None, buffers=None) -> EpochAccumulator:
    """One epoch of projected SGD (or, ``--space whole``, plain SGD with ``buffers`` the
    momentum buffers); its statistics are read from the returned accumulator
    (``.metrics(lr)``, ``.nonfinite()``)."""
    model.train()
    acc = EpochAccumulator()
    forward = compiled(model, cfg.compile_mode) if cfg.compile else model
    rates = step_rates(lr, rho, params) if cfg.compile else None
    for x, y in train_batches(data, cfg.batch_size, epoch, cfg.data_seed, cfg.augment,
                              cfg.augment_padding):
        train_step(forward, params, x, y, lr, rho, cfg, acc, buffers, rates)
        if on_step is not None:
            on_step(epoch, acc.steps, model)
    end_epoch(acc, params, cfg)
    return acc


def train_step(forward, params, x, y, lr: float, rho: float, cfg: TrainConfig, acc: EpochAccumulator,
               buffers=None, rates: tuple | None = None) -> None:
    """One step of one model on the batch (x, y): its statistics into ``acc``, then projected
    SGD on the sphere (or SGD in the whole space), all on the device (``statistics_and_step``).
    With ``--compile`` that function is compiled (``compiled_update``; ``rates``: the epoch's
    ``step_rates``), so its few dozen small kernels fuse into a few."""
    if cfg.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    loss, correct, grads = forward_backward(forward, params, x, y, cfg.precision)
    if cfg.compile:
        update, constants = compiled_update(cfg.compile_mode), rates or step_rates(lr, rho, params)
    else:
        update, constants = statistics_and_step, (lr, lr, rho)
    stats, rho_end_sq = update(params, list(grads), *constants, cfg.groups == "filter",
                               cfg.space == "whole", buffers, cfg.momentum, cfg.weight_decay)
    acc.add(stats, loss, correct, len(y))
    acc.end_step(rho_end_sq)


def step_rates(lr: float, rho: float, params) -> tuple:
    """The step's constants as device tensors, made once an epoch (a Python float would be
    baked into the compiled update, and a schedule would recompile it every epoch): the
    learning rate in the parameters' dtype, in float64 for the statistics, and the radius."""
    p = params[0]  # filled on the device (no copy from the host to wait for)
    return (torch.full((), lr, dtype=p.dtype, device=p.device),
            torch.full((), lr, dtype=torch.float64, device=p.device),
            torch.full((), rho, dtype=p.dtype, device=p.device))


def statistics_and_step(params, grads, lr, lr_stats, rho, filters: bool, whole: bool, buffers,
                        momentum: float, weight_decay: float, batch_dims: int = 0):
    """The SI statistics of a step (before it, as ``measure_batch`` takes them) and the step
    itself in place, ``projected_sgd_step`` or ``sgd_step``; eager or compiled alike
    (``batch_dims=1``: a vectorised sweep's stacked models, ``lr``, ``lr_stats`` and ``rho``
    one per model). Returns (statistics, group squared norms after the step)."""
    with torch.no_grad():
        stats = si_statistics(params, grads, lr_stats, batch_dims, filters=filters)
        if whole:
            return stats, sgd_step(params, grads, lr, buffers, momentum, weight_decay, batch_dims)
        return stats, projected_sgd_step(params, grads, lr, rho, batch_dims)


def end_epoch(acc: EpochAccumulator, params, cfg: TrainConfig, batch_dims: int = 0) -> None:
    """The epoch's last statistics: the filters' norms after its last step."""
    if cfg.groups == "filter":
        with torch.no_grad():
            acc.filter_rho_end_sq = filter_sq_norms(params, batch_dims)


def measure_batch(model, params, x, y, lr: float, groups: str, acc: EpochAccumulator,
                  precision: str = "float32"):
    """Loss, accuracy and the SI statistics of one mini-batch into ``acc``, no step (the
    checkpoint protocol's measurement); returns the SI gradients. With
    ``precision='bf16'`` the forward pass (and so the backward) runs under bf16 autocast; the
    loss is taken in float32 and the gradients come out in the parameters' float32."""
    loss, correct, grads = forward_backward(model, params, x, y, precision)
    with torch.no_grad():
        acc.add(si_statistics(params, grads, lr, filters=groups == "filter"), loss, correct, len(y))
    return grads


def forward_backward(model, params, x, y, precision: str = "float32"):
    """(loss, number correct, gradients of ``params``) of one mini-batch, the forward pass
    (and so the backward) under bf16 autocast with ``precision='bf16'``; the loss is taken in
    float32 and the gradients come out in the parameters' float32."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(x)
    out = out.float() if precision == "bf16" else out
    loss = F.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, params)
    return loss, (out.argmax(1) == y).sum(), grads


_COMPILED = {}


def compile_backend() -> str:
    """torch.compile's backend: LANDSCAPE_COMPILE_BACKEND, default inductor (the tests use
    aot_eager, which compiles in seconds)."""
    import os
    return os.environ.get("LANDSCAPE_COMPILE_BACKEND", "inductor")


def compile_options(mode: str = "default") -> dict:
    """torch.compile's arguments: the backend, and the mode where the backend is inductor
    (the others take none)."""
    backend = compile_backend()
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


def float_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Make the model's BatchNorms normalise in float32 under bf16 autocast (input cast up,
    output cast back to the input's dtype): vmap's batch-norm rule takes no mixed dtypes, and
    the statistics (and running buffers) stay float32 as a single run's do."""
    import types
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            def forward(self, x, batchnorm=type(m).forward):  # its own bookkeeping kept
                return batchnorm(self, x.float()).to(x.dtype)
            m.forward = types.MethodType(forward, m)
    return model


def is_eval_epoch(cfg: "TrainConfig", epoch: int) -> bool:
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs


def is_checkpoint_epoch(cfg: "TrainConfig", epoch: int) -> bool:
    return epoch % cfg.save_every == 0 or epoch == cfg.epochs


def epoch_line(epoch: int, total: int, metrics: dict) -> str:
    return (f"epoch {epoch}/{total}  train loss {metrics['train_loss']:.4f}  "
            f"acc {metrics['train_accuracy']:.3f}  eff. grad norm {metrics['effective_grad_norm']:.4g}")


def _state(model, buffers=None, names=None) -> dict:
    """The training state: the model's, plus the momentum buffers (resume only) when used."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if buffers is not None:
        state.update({f"{OPTIMIZER_PREFIX}momentum.{n}": b.detach().clone() for n, b in zip(names, buffers)})
    return state


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
    buffers: list | None = None  # momentum buffers of --space whole --momentum
    mirrors: list = dataclasses.field(default_factory=list)  # dashboards (--log): copies of the rows
    last_metrics: dict | None = None

    def state(self) -> dict:
        return _state(self.model, self.buffers, self.names)


def resolve_config(config, out: str, resume: bool, overrides: dict) -> TrainConfig:
    if resume:
        stored = Trajectory(out)
        if stored.kind != "train":
            raise LandscapeError(f"{out}: a {stored.kind} trajectory cannot be resumed by 'train'")
        if stored.status == "nonfinite":
            raise LandscapeError(f"{out}: {nonfinite_message(stored.status_detail)}; resuming "
                                 f"would meet them again (training is deterministic): start a "
                                 f"new run, e.g. with a lower --elr")
        cfg = TrainConfig.from_dict(stored.config)
        for k, v in overrides.items():
            if k not in ("epochs", "device", "data_root"):
                raise LandscapeError(f"--resume takes the stored configuration; only --epochs, "
                                     f"--device and --data-root may change (got {k})")
            setattr(cfg, k, v)
    else:
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
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


def prepare_run(cfg: TrainConfig, out: str, data: Dataset, *, resume: bool = False,
                overwrite: bool = False) -> Run:
    """Build the model (from --init-seed, or from an --init checkpoint), then either create the
    trajectory (epoch 0) or reopen it at its last committed epoch."""
    source_info = None
    if cfg.init:
        src_path, src_epoch = parse_source(cfg.init)
        src = Trajectory(src_path)
        if src.kind != "train":
            raise LandscapeError(f"{src_path}: --init needs a network trajectory, not a {src.kind} one")
        src_epoch = src.resolve_epoch(src_epoch)
        spec = src.model_spec
        if tuple(spec["input_shape"]) != data.input_shape or spec["num_classes"] != data.num_classes:
            raise LandscapeError(f"--init {cfg.init}: its model takes inputs {spec['input_shape']} "
                                 f"with {spec['num_classes']} classes, but dataset {cfg.dataset} "
                                 f"has {list(data.input_shape)} and {data.num_classes}")
        init_state = src.state_dict(src_epoch)
        source_info = {"path": src_path, "epoch": src_epoch, "elr": src.config.get("elr")}
        cfg.init = f"{src_path}@{src_epoch}"
    else:
        spec = model_spec(cfg.model, data.input_shape, data.num_classes, cfg.width, cfg.depth,
                          cfg.last_layer_norm, cfg.conventional)
        init_state = None

    model = build_model(spec, cfg.init_seed)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device=data.x_train.device, dtype=getattr(torch, cfg.dtype))
    if cfg.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    named = si_groups(model)
    names = [n for n, _ in named]
    params = [p for _, p in named]

    buffers = [torch.zeros_like(p) for p in params] if cfg.space == "whole" and cfg.momentum else None
    start = 0
    if resume:
        writer = TrajectoryWriter(out)
        start, state = writer.latest_state()
        model.load_state_dict(model_state(state))
        if buffers is not None:
            with torch.no_grad():
                for n, b in zip(names, buffers):
                    b.copy_(state[f"{OPTIMIZER_PREFIX}momentum.{n}"])
        rho = float(writer.attr("rho"))
        writer.set_attrs({"device_used": str(data.x_train.device)})  # this session's device
        stored_config = json.loads(writer.attr("config"))
        if stored_config["epochs"] != cfg.epochs:  # extending a finished run
            stored_config["epochs"] = cfg.epochs
            writer.set_attrs({"config": json.dumps(stored_config, sort_keys=True)})
    else:
        if cfg.rho is not None:
            project_to_sphere(params, cfg.rho)
        rho = cfg.rho if cfg.rho is not None else float(group_sq_norms(params).detach().sum().sqrt())
        config_dict = dataclasses.asdict(cfg)
        if source_info:
            config_dict["init_source"] = source_info
        dtype = getattr(torch, cfg.dtype)
        if cfg.space == "sphere" and not cfg.elr * rho ** 2 < torch.finfo(dtype).max:
            raise LandscapeError(f"--elr {cfg.elr:g}: the learning rate ELR * rho^2 = "
                                 f"{cfg.elr * rho ** 2:.3g} overflows {cfg.dtype}; use a smaller "
                                 f"ELR or --dtype float64")
        writer = TrajectoryWriter.create(
            out, config=config_dict, model_spec=spec, group_names=names,
            initial_state=_state(model, buffers, names), overwrite=overwrite,
            row_shapes=row_shapes(cfg, len(params), sum(p.shape[0] for p in params)),
            filter_layout=filter_layout(params) if cfg.groups == "filter" else None,
            data_arrays={"subset_indices": data.subset_indices,
                         "noisy_indices": data.noisy_indices,
                         "original_labels": data.original_labels},
            attrs={"rho": rho, "lr": base_lr(cfg, rho), "device_used": str(data.x_train.device)})
    return Run(cfg, out, model, names, params, rho, base_lr(cfg, rho), start, writer, buffers)


def base_lr(cfg: TrainConfig, rho: float) -> float:
    """The learning rate before any schedule: ELR rho^2 on the sphere (eq. (2)), --lr in the
    whole space (rho is then the initial norm)."""
    return cfg.lr if cfg.space == "whole" else cfg.elr * rho ** 2


def filter_layout(params) -> tuple[np.ndarray, np.ndarray]:
    """(layer index, channel) of every filter group, in the order of ``filter_sq_norms``."""
    layer = np.concatenate([np.full(p.shape[0], i) for i, p in enumerate(params)])
    channel = np.concatenate([np.arange(p.shape[0]) for p in params])
    return layer.astype(np.int64), channel.astype(np.int64)


def epoch_rows(metrics: dict, groups: dict, filters: dict, prefix: str = "") -> dict:
    """One epoch's rows by their path under /metrics (``prefix``: 'checkpoint/' for the
    checkpoint metrics)."""
    rows = {prefix + k: metrics[k] for k in METRICS}
    rows.update({f"{prefix}groups/{k}": v for k, v in groups.items()})
    rows.update({f"{prefix}filters/{k}": v for k, v in filters.items()})
    return rows


def row_shapes(cfg: TrainConfig, n_groups: int, n_filters: int) -> dict:
    """The rows a run logs each epoch, with their shapes (created empty with the file)."""
    shapes = {}
    for prefix in ("", "checkpoint/") if cfg.checkpoint_metrics else ("",):
        shapes.update({prefix + k: () for k in METRICS})
        shapes.update({f"{prefix}groups/{k}": (n_groups,) for k in GROUP_METRICS})
        if cfg.groups == "filter":
            shapes.update({f"{prefix}filters/{k}": (n_filters,) for k in GROUP_METRICS})
    return shapes


def fixed_order_batches(data: Dataset, batch_size: int):
    """The training set in its stored order, un-augmented, in batches (a trailing batch of one
    example is dropped: train-mode BatchNorm cannot normalise it)."""
    for i in range(0, len(data.y_train), batch_size):
        if len(data.y_train[i:i + batch_size]) > 1:
            yield data.inputs(data.x_train[i:i + batch_size]), data.y_train[i:i + batch_size]


def checkpoint_metrics(model, data: Dataset, batch_size: int, lr: float, groups: str = "filter",
                       test: tuple | None = None) -> tuple[dict, dict, dict]:
    """The official code's metrics of a point, no update: over the whole training set in fixed
    order with the run's batch size and train-mode BatchNorm (each batch normalised by its own
    statistics; no buffer changes), the train loss and accuracy (size-weighted) and the mean
    over batches of the stochastic effective gradient norm rho ||grad L_B|| (and per layer and
    filter); the test loss and accuracy in eval mode (``test``: already computed). Returns
    (metrics, per-layer, per-filter) with the names of the per-epoch metrics."""
    m = with_batch_statistics(model)
    params = [p for _, p in si_groups(m)]
    acc = EpochAccumulator()
    for x, y in fixed_order_batches(data, batch_size):
        measure_batch(m, params, x, y, lr, groups, acc)
    with torch.no_grad():  # nothing moved: the norms at the end are the norms
        acc.rho_end_sq = group_sq_norms(params)
        if groups == "filter":
            acc.filter_rho_end_sq = filter_sq_norms(params)
    metrics, per_layer, per_filter = acc.metrics(lr)
    metrics["test_loss"], metrics["test_accuracy"] = test or evaluate(model, data.x_test, data.y_test)
    return metrics, per_layer, per_filter


def commit_epoch(run: Run, epoch: int, metrics: dict, groups: dict, filters: dict, state: dict,
                 seconds: float, data: Dataset | None = None, lr: float | None = None) -> None:
    """Write one epoch (and, with --checkpoint-metrics, the official protocol's metrics of the
    model ``state`` describes, measured on ``data``)."""
    rows = epoch_rows(metrics, groups, filters)
    if run.cfg.checkpoint_metrics:
        test = None if math.isnan(metrics["test_loss"]) else (metrics["test_loss"], metrics["test_accuracy"])
        run.model.load_state_dict(model_state(state))
        rows.update(epoch_rows(*checkpoint_metrics(run.model, data, run.cfg.batch_size, lr or run.lr,
                                                   run.cfg.groups, test), prefix="checkpoint/"))
    run.writer.append_epoch(epoch, rows, state, checkpoint=is_checkpoint_epoch(run.cfg, epoch),
                            seconds=seconds)
    for mirror in run.mirrors:  # after the commit: a dashboard never shows an uncommitted epoch
        mirror.log_epoch(epoch, metrics, groups, run.names)
    run.last_metrics = metrics


def close_epoch(run: Run, acc: EpochAccumulator, epoch: int, lr: float, data: Dataset,
                t0: float, share: int = 1) -> tuple[dict | None, dict | None]:
    """The end of one model's epoch (its accumulator read once): the test pass on eval epochs,
    then the commit, its wall time since ``t0`` split over ``share`` models trained together.
    Returns (metrics, None), or (None, where) when something went non-finite: the run is then
    ended, its status saying where."""
    bad = acc.nonfinite()
    if bad is not None:
        return None, end_nonfinite(run, epoch, bad)
    metrics, groups, filters = acc.metrics(lr)
    if is_eval_epoch(run.cfg, epoch):
        metrics["test_loss"], metrics["test_accuracy"] = evaluate(run.model, data.x_test, data.y_test)
    else:
        metrics["test_loss"] = metrics["test_accuracy"] = float("nan")
    commit_epoch(run, epoch, metrics, groups, filters, run.state(), (time.perf_counter() - t0) / share,
                 data, lr)
    return metrics, None


def open_run_mirrors(run: Run, log, log_dir: str | None) -> None:
    """Dashboards of ``--log`` (csv, tensorboard) for this run, resumed at its start."""
    if log:
        from .trackers import open_mirrors
        run.mirrors = open_mirrors(log, run.out, dataclasses.asdict(run.cfg), log_dir, run.start)


def close_run_mirrors(run: Run) -> None:
    for mirror in run.mirrors:
        mirror.close(run.last_metrics)


def nonfinite_message(detail: dict) -> str:
    kept = int(detail.get("epoch", 1)) - 1
    rate = f"LR {detail['lr']:g}" if "lr" in detail else f"ELR {detail.get('elr', float('nan')):g}"
    return (f"non-finite {' and '.join(detail.get('what', ['values']))} at epoch "
            f"{detail.get('epoch')}, step {detail.get('step')} ({rate}); "
            + (f"epochs up to {kept} are kept" if kept else "no epoch was completed"))


def end_nonfinite(run: Run, epoch: int, bad: dict) -> dict:
    """A run whose loss, gradient or parameters went non-finite ends here: the epoch in flight
    is not committed (its state is not finite), the status records where and what (returned)."""
    name, value = run.cfg.rate
    detail = {"epoch": epoch, **bad, name.lower(): value}
    run.writer.set_attrs({"status": "nonfinite", "status_detail": json.dumps(detail)})
    return detail


def train(config: TrainConfig | dict | None = None, out: str = "traj.h5", *, resume: bool = False,
          overwrite: bool = False, progress: bool | None = None, on_step=None, on_epoch=None,
          log=None, log_dir: str | None = None, **overrides) -> Trajectory:
    """Train on the sphere and write the trajectory ``out``; returns it opened for reading.

    ``landscape.train(out="t.h5", elr=1e-3, epochs=10)`` or with a ``TrainConfig``. With
    ``resume=True`` the configuration stored in ``out`` is used (``epochs`` may be raised) and
    training continues from its last committed epoch to the same result as an uninterrupted run.
    ``on_step(epoch, step, model)`` is called after every step (tests use it to interrupt a run),
    ``on_epoch(epoch, metrics)`` after every committed epoch. A run whose loss, gradient or
    parameters go non-finite ends cleanly: the returned trajectory has ``status == 'nonfinite'``
    and ``status_detail`` (epoch, step, what); its committed epochs are kept. ``log``: dashboard
    mirrors ('csv', 'tensorboard' or a list), in ``log_dir``/<run> or <run>.logs beside ``out``.
    """
    cfg = resolve_config(config, out, resume, overrides)
    if log:
        from .trackers import parse_trackers
        parse_trackers(log)  # a bad --log fails before anything is written
    data = load_training_data(cfg)
    run = prepare_run(cfg, out, data, resume=resume, overwrite=overwrite)
    open_run_mirrors(run, log, log_dir)
    model, params, lr, rho = run.model, run.params, run.lr, run.rho
    report = Progress(cfg.epochs, "train", "epoch", progress, initial=run.start)
    try:
        for epoch in range(run.start + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr_now = epoch_lr(cfg, lr, epoch)
            acc = train_epoch(model, params, data, lr_now, rho, cfg, epoch, on_step, run.buffers)
            metrics, _ = close_epoch(run, acc, epoch, lr_now, data, t0)
            if metrics is None:
                break
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            report.update(line=epoch_line(epoch, cfg.epochs, metrics))
    finally:
        report.close()
        close_run_mirrors(run)
        run.writer.close()
    return Trajectory(out)
