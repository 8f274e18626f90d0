"""The settings of one training run (``TrainConfig``), their validation, and what they mean per
epoch: the learning rate of an epoch, and whether an epoch is evaluated or checkpointed.

Defaults are written once, here; a stored configuration is read through ``from_dict``, which
fills the options a file predates from ``legacy``.

    >>> cfg = TrainConfig(elr=1e-3, epochs=5)
    >>> cfg.validate()
    >>> cfg.swept_rate
    ('ELR', 0.001)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from . import legacy
from .data import AUGMENT_PADDINGS
from .errors import ArgumentError
from .measure import LOSSES

# projected SGD at a fixed ELR on the sphere | every filter on its own sphere of one common
# radius (the official --fix_all_elr) | plain SGD at a fixed LR in the whole space
TRAINING_SPACES = ("sphere", "filter-spheres", "whole")
PRECISIONS = ("float32", "bf16")
DTYPES = ("float32", "float64")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
SCHEDULES = ("constant", "cosine")
GROUPINGS = ("filter", "layer")
OPTIMIZERS = ("sgd", "momentum", "adam")
LOSS_NAMES = tuple(LOSSES)
# how a run is computed, not what it trains (the arithmetic differs at most in its rounding): a
# resumed run, and a sweep run again, may change them
HOW_SETTINGS = ("device", "data_root", "compile", "compile_mode", "channels_last")


@dataclass
class TrainConfig:
    model: str = "convnet"
    width: int | None = None          # None: the model's default (convnet 32, resnet18 64, mlp 256)
    depth: int = 3                    # mlp hidden layers, transformer blocks
    heads: int = 4                    # transformer only
    last_layer_norm: float = 10.0
    # MNIST-1D with both generator noises doubled, which a small ConvNet cannot memorise in a
    # few epochs, so that regime 2 spans a decade of ELRs on a CPU
    dataset: str = "mnist1d:noise=2"
    data_root: str = "data"
    download: bool = False
    train_subset: int | None = None
    label_noise: float = 0.0
    label_noise_mode: str = "paper"   # paper: each label w.p. p -> uniform class; exact: round(pN) moved
    augment: bool | None = None       # None: on for the generated MNIST-1D variants (mnist1d:...)
    augment_padding: str = "black"    # crops padded with black pixels (official) or zeros
    elr: float | None = 1e-3
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
    # the paper's figure quantities: the official protocol's metrics of the initial point and of
    # every epoch's end (whole training set in stored order, train-mode BN, no update)
    checkpoint_metrics: bool = True
    init: str | None = None           # fine-tuning: "traj.h5@EPOCH"
    # Section 6: training outside the sphere
    space: str = "sphere"             # sphere: projected SGD at a fixed ELR; whole: plain SGD at lr
    lr: float | None = None           # the learning rate of space='whole'
    weight_decay: float = 0.0         # whole space only
    momentum: float = 0.0             # whole space only
    schedule: str = "constant"        # constant | cosine (of the LR / ELR over the epochs)
    # on the sphere: the step before the projection (momentum: torch.optim.SGD's heavy ball with
    # ``momentum``; adam: torch.optim.Adam); the ELR is lr / rho^2 (sgd, momentum), lr / rho (adam)
    optimizer: str = "sgd"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    loss: str = "ce"                  # ce: cross-entropy | mse: the official squared loss
    conventional: bool = False        # BN affine on, trainable last layer (whole space)
    conventional_head_bias: bool | None = None  # a bias in its last layer (None: official choice)
    # speed: numerics of the forward/backward only; steps, norms and metrics stay exact
    precision: str = "float32"        # float32 | bf16 (autocast of forward and backward)
    channels_last: bool = False       # 2-D convolutions in channels-last memory layout
    compile: bool = False             # torch.compile of the forward pass and of the update
    compile_mode: str = "default"     # torch.compile's mode: reduce-overhead replays CUDA graphs

    def validate(self) -> None:
        """Check every setting (``ArgumentError`` naming the field) and resolve the automatic
        ones (``augment``), so that the stored configuration says what was done."""
        self.check_types()
        for name in ("epochs", "batch_size", "eval_every", "save_every", "depth", "heads"):
            _positive(name, getattr(self, name), int)
        if self.rho is not None:
            _positive("rho", self.rho)
        if self.batch_size < 2:
            raise ArgumentError("batch_size must be at least 2 (train-mode BatchNorm)", "batch_size")
        if self.augment is None:
            self.augment = self.dataset.startswith("mnist1d:")
        for name, allowed in (("augment_padding", AUGMENT_PADDINGS), ("groups", GROUPINGS),
                              ("dtype", DTYPES), ("precision", PRECISIONS),
                              ("compile_mode", COMPILE_MODES), ("space", TRAINING_SPACES),
                              ("schedule", SCHEDULES), ("loss", LOSS_NAMES), ("optimizer", OPTIMIZERS)):
            _one_of(name, getattr(self, name), allowed)
        if self.precision == "bf16" and self.dtype != "float32":
            raise ArgumentError("precision bf16 autocasts a float32 model: drop dtype float64",
                                "precision", "dtype")
        if self.compile_mode != "default" and not self.compile:
            raise ArgumentError(f"compile_mode {self.compile_mode} is a mode of compile: add compile",
                                "compile_mode", "compile")
        if self.space == "whole":
            if self.optimizer != "sgd":
                raise ArgumentError("space whole trains by SGD (with momentum and weight_decay); "
                                    "optimizer is the sphere's", "optimizer", "space")
            if self.lr is None:
                raise ArgumentError("space whole trains at a learning rate: give lr", "space", "lr")
            _positive("lr", self.lr)
            self.elr = None  # the sphere's parameter: meaningless here
        else:
            _positive("elr", self.elr)
            if self.lr is not None:
                raise ArgumentError("lr is the learning rate of space whole; on the sphere give "
                                    "elr (lr = ELR * rho^2)", "lr", "space", "elr")
            if self.weight_decay:
                raise ArgumentError("weight_decay needs space whole (on the sphere the projection "
                                    "fixes the norm)", "weight_decay", "space")
            if self.optimizer == "momentum" and not 0 < self.momentum < 1:
                raise ArgumentError(f"optimizer momentum needs momentum in (0, 1), got {self.momentum!r}",
                                    "momentum", "optimizer")
            if self.momentum and self.optimizer != "momentum":
                raise ArgumentError("momentum on the sphere is the optimizer momentum: add optimizer "
                                    "momentum (or space whole)", "momentum", "optimizer")
            if self.optimizer != "sgd" and self.space != "sphere":
                raise ArgumentError(f"optimizer {self.optimizer} projects onto the whole sphere: use "
                                    f"space sphere", "optimizer", "space")
            for name in ("adam_beta1", "adam_beta2"):
                value = getattr(self, name)
                if not (_is_number(value) and 0 <= value < 1):
                    raise ArgumentError(f"{name} must be in [0, 1), got {value!r}", name)
            _positive("adam_eps", self.adam_eps)
            if self.conventional:
                raise ArgumentError("conventional trains every weight by SGD: add space whole and lr",
                                    "conventional", "space", "lr")
        if self.conventional_head_bias is not None and not self.conventional:
            raise ArgumentError("conventional_head_bias is for the trainable last layer of a "
                                "conventional network: add conventional (SI networks keep their "
                                "frozen head)", "conventional_head_bias", "conventional")
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise ArgumentError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}",
                                "weight_decay")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ArgumentError(f"momentum must be in [0, 1), got {self.momentum!r}", "momentum")

    def check_types(self) -> None:
        """Every field of the type its annotation names (no coercion: a width of 3.5, an epoch
        count of 2.0 or augment "yes" is an ``ArgumentError`` naming the field)."""
        for f in dataclasses.fields(self):
            allowed = {t.strip() for t in str(f.type).split("|")}
            value = getattr(self, f.name)
            if value is None:
                ok = "None" in allowed
            elif isinstance(value, bool):
                ok = "bool" in allowed
            elif isinstance(value, int):
                ok = bool(allowed & {"int", "float"})
            elif isinstance(value, float):
                ok = "float" in allowed
            else:
                ok = isinstance(value, str) and "str" in allowed
            if not ok:
                wanted = " or ".join(TYPE_WORDS[t] for t in sorted(allowed) if t in TYPE_WORDS and t != "None")
                raise ArgumentError(f"{f.name} must be {wanted}, got {value!r}", f.name)

    @property
    def swept_rate(self) -> tuple[str, float]:
        """The run's learning-rate parameter: ('ELR', elr) on the sphere, ('LR', lr) in the
        whole space."""
        return swept_rate(dataclasses.asdict(self))

    @classmethod
    def from_settings(cls, d: dict) -> "TrainConfig":
        """A new run's settings (a user's dict): what it leaves out takes today's default;
        an unknown name is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArgumentError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                f"(the TrainConfig fields: {', '.join(sorted(known))})", unknown[0])
        return cls(**d)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A stored configuration; options added later take the value that reproduces runs
        stored before them (``legacy.CONFIG``); unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in legacy.stored_config(d).items() if k in known})


TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(name: str, value, kind=float) -> None:
    if not _is_number(value) or value <= 0 or (kind is int and value != int(value)):
        raise ArgumentError(f"{name} must be a positive {'integer' if kind is int else 'number'}, "
                            f"got {value!r}", name)


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ArgumentError(f"{name} must be one of {', '.join(allowed)}, got {value!r}", name)


def swept_rate(config: dict) -> tuple[str, float]:
    """('ELR', elr) or ('LR', lr) of a configuration, stored or not: the parameter a sweep varies."""
    name, key = ("LR", "lr") if legacy.stored_config(config)["space"] == "whole" else ("ELR", "elr")
    value = config.get(key)
    return name, None if value is None else float(value)


def elr_power(cfg) -> int:
    """p in ELR = lr / rho^p: 2 for SGD and momentum SGD (an SI gradient scales as 1/rho, so the
    step on the unit sphere is lr |g| / rho = (lr / rho^2) |grad at the unit point|), 1 for Adam
    (its step ignores the gradient's scale, so it moves lr per coordinate whatever rho: lr / rho
    on the unit sphere)."""
    return 1 if getattr(cfg, "optimizer", "sgd") == "adam" else 2


def base_lr(cfg: TrainConfig, rho: float) -> float:
    """The learning rate before any schedule: ELR rho^p on the sphere (eq. (2); ``elr_power``),
    ``lr`` in the whole space (rho is then the initial norm)."""
    return cfg.lr if cfg.space == "whole" else cfg.elr * rho ** elr_power(cfg)


def epoch_lr(cfg: TrainConfig, base: float, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based): constant, or cosine annealing to 0 over the run
    stepped once per epoch, as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)``:
    base (1 + cos(pi (epoch - 1) / epochs)) / 2."""
    if cfg.schedule == "cosine":
        return base * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs)) / 2
    return base


def is_eval_epoch(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the test set is evaluated after ``epoch`` (every ``eval_every``, and the last)."""
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs


def is_checkpoint_epoch(cfg: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch``'s model is kept as a checkpoint (every ``save_every``, and the last)."""
    return epoch % cfg.save_every == 0 or epoch == cfg.epochs
