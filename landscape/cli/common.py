"""Shared pieces of the command line: the parser class, number parsing, the training options, tables."""
from __future__ import annotations

import argparse
import re
import difflib
import math

import numpy as np

from ..config import COMPILE_MODES, DTYPES, GROUPINGS, LOSS_NAMES, OPTIMIZERS, PRECISIONS, SCHEDULES, TRAINING_SPACES
from ..errors import ArgumentError, LandscapeError
from ..points import parse_source
import json
import sys
import tomllib


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the text already states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS and \
                not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            shown = "off"
        elif isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        else:
            shown = _shown(action.default).replace("%", "%%")
        return f"{text} (default: {shown})".strip()


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The description as written (tables, formulas); options as ``HelpFormatter``."""


class Parser(argparse.ArgumentParser):
    """No abbreviated options (``--elr`` must not silently mean ``--elrs``), defaults in every
    option's help, one-line errors."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, not usage + message; the option meant, for a typo
        unknown = re.findall(r"(--[\w-]+)", message) if "unrecognized arguments" in message else []
        options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.75)
            if close:
                hints.append(f"did you mean {close[0]}?")
        invalid = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if invalid:
            choices = re.findall(r"'([^']*)'", invalid.group(2))
            close = difflib.get_close_matches(invalid.group(1), choices, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]!r}?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        self.exit(2, f"{self.prog}: error: {message}{hint} (see '{self.prog} --help')\n")


def number_list(kind):
    """Comma-separated numbers: '1,2,4'."""
    item = _number(kind)

    def parse(text):
        parts = [t for t in str(text).split(",") if t.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 1,2,4")
        return [item(t.strip()) for t in parts]
    parse.__name__ = "list"
    return parse


def grid(text):
    """An ELR / LR grid in the grammar of ``landscape sweep``: 0.1,0.2 | 1e-3:1 | 1e-3:1:12."""
    from ..sweep import parse_rates
    try:
        return parse_rates(text)
    except LandscapeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


grid.__name__ = "grid"


def public(result: dict) -> dict:
    """A result without its private (underscore) keys, rows included: what --json writes."""
    out = {k: v for k, v in result.items() if not k.startswith("_")}
    if isinstance(out.get("rows"), list):
        out["rows"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in out["rows"]]
    return out


def write_outputs(args, payload, plot=None) -> None:
    """--json (``payload``, private keys dropped) and --plot (``plot(path)``), each announced."""
    from ..files import write_json
    if getattr(args, "json", None):
        write_json(args.json, public(payload) if isinstance(payload, dict) else payload)
        print(f"wrote {args.json}")
    if getattr(args, "plot", None) and plot is not None:
        plot(args.plot)
        print(f"wrote {args.plot}")


def add_quiet(p) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress output (a bar on a terminal, periodic lines otherwise)")


def progress_of(args):
    """The ``progress`` argument of the Python API: False with -q, else None (automatic)."""
    return False if getattr(args, "quiet", False) else None


def add_checkpoints(p, default: str) -> None:
    """``--checkpoints`` (checkpoint selection; ``--epochs`` is a count only in training) and
    its deprecated alias ``--epochs``."""
    p.add_argument("--checkpoints", default=None, metavar="SELECTION",
                   help=f"last | all | 10,50,100 | every:K (default {default})")
    p.add_argument("--epochs", default=None, metavar="SELECTION",
                   help="deprecated alias of --checkpoints (default: none)")


def checkpoints_of(args) -> str | None:
    if args.epochs is not None:
        if args.checkpoints is not None:
            raise LandscapeError("give --checkpoints only (--epochs is its deprecated alias)")
        print(f"landscape {args.command}: note: --epochs is deprecated here, use --checkpoints "
              f"{args.epochs}", file=sys.stderr)
        return args.epochs
    return args.checkpoints


def add_outputs(p, plot: str = "the figure", json: str = "the results") -> None:
    p.add_argument("--json", metavar="PATH", help=f"write {json} as JSON (NaN as null)")
    p.add_argument("--plot", metavar="PNG", help=f"draw {plot} (format from the extension: png, pdf, svg)")


def add_device(p, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (a GPU when there is one, as train) | cpu | cuda[:N]")


def add_checkpoint_run_options(p, plot: str) -> None:
    """What every command computing on stored checkpoints takes: --device, --data-root,
    --json/--plot, -q, --log/--log-dir."""
    add_device(p)
    p.add_argument("--data-root", default=None, help="override the stored data root")
    add_outputs(p, plot)
    add_quiet(p)
    p.add_argument("--log", default=None, metavar="KINDS",
                   help="also send the results to the run's dashboards: csv, tensorboard, wandb (default: none)")
    p.add_argument("--log-dir", default=None, metavar="DIR", help="as train's --log-dir (default: <run>.logs)")


def log_results(args, path: str, prefix: str, result: dict) -> None:
    """--log of an analysis: its numbers (and its --plot figure) into the run's dashboards."""
    if getattr(args, "log", None) and not path.endswith(".pt"):
        from ..trackers import log_analysis
        folder = log_analysis(path, args.log, prefix, result, args.log_dir,
                              figure=args.plot if getattr(args, "plot", None) else None)
        print(f"logged {prefix} to {folder}")


def _number(kind, positive=False, low=None, high=None):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        if low is not None and value < low or high is not None and value >= high:
            raise argparse.ArgumentTypeError(f"{text} must be in [{low}, {high})")
        return value
    parse.__name__ = kind.__name__
    return parse


S = argparse.SUPPRESS  # options not given stay absent, so --resume can tell what was asked


def add_training_options(p, with_elr: bool = True):
    """The options shared by `train` and `sweep` (every field of ``TrainConfig``)."""
    _model_and_data_options(p)
    _optimisation_options(p, with_elr)
    _logging_and_speed_options(p)


def _model_and_data_options(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, help="convnet | resnet18 (the paper's pre-activation SI "
                   "ResNet-18) | resnet18-post (post-activation, every conv SI on its own) | mlp "
                   "| transformer (SI attention and MLP, every weight followed by a token BatchNorm; inputs cut "
                   "into patches of 4) (default convnet)")
    g.add_argument("--width", type=_number(int, True), default=S,
                   help="channels k of the first layer / hidden units (default 32 / 64 / 256)")
    g.add_argument("--depth", type=_number(int, True), default=S,
                   help="mlp hidden layers / transformer blocks (default 3)")
    g.add_argument("--heads", type=_number(int, True), default=S,
                   help="transformer attention heads; --width must be a multiple (default 4)")
    g.add_argument("--last-layer-norm", type=_number(float, True), default=S,
                   help="Frobenius norm of the frozen last layer (default 10)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=S, help="mnist1d:samples=N,noise=F (MNIST-1D generated "
                   "with N signals, 80%% train, its noise scaled by F; keys optional) | mnist1d (the "
                   "reference: 5000, 1) | cifar10 | cifar100 (default mnist1d:noise=2, the CPU recipe)")
    g.add_argument("--data-root", default=S, help="dataset folder (default data)")
    g.add_argument("--download", action="store_true", default=S, help="allow downloading CIFAR")
    g.add_argument("--train-subset", type=_number(int, True), default=S, metavar="N",
                   help="train on a seeded random subset of N examples (default: the whole training set)")
    g.add_argument("--label-noise", type=_number(float, low=0.0, high=1.0), default=S, metavar="P",
                   help="give a seeded fraction P of training labels a different random class (default 0)")
    g.add_argument("--label-noise-mode", choices=("paper", "exact"), default=S,
                   help="paper (the official code): each label with probability P becomes a "
                   "uniform class, possibly its own; exact: round(P*N) labels move to another "
                   "class (default paper)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=S,
                   help="random crop (+ flip for images) each batch (default: on for the generated "
                   "MNIST-1D variants mnist1d:..., the CPU recipe; off for mnist1d and CIFAR, as the "
                   "paper's runs on the sphere)")


def _optimisation_options(p, with_elr: bool) -> None:
    g = p.add_argument_group("optimisation")
    if with_elr:
        g.add_argument("--elr", type=_number(float, True), default=S, help="effective learning rate (default 1e-3)")
    g.add_argument("--rho", type=_number(float, True), default=S,
                   help="sphere radius (default: the initial total norm of the SI weights)")
    g.add_argument("--epochs", type=_number(int, True), default=S, help="default 100")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S,
                   help="the step before the projection onto the sphere: sgd (the paper's), momentum "
                   "(torch.optim.SGD's heavy ball with --momentum) or adam (torch.optim.Adam); the ELR is "
                   "lr / rho^2 for sgd and momentum, lr / rho for adam (default sgd)")
    g.add_argument("--adam-beta1", type=_number(float, low=0.0, high=1.0), default=S, help="default 0.9")
    g.add_argument("--adam-beta2", type=_number(float, low=0.0, high=1.0), default=S, help="default 0.999")
    g.add_argument("--adam-eps", type=_number(float, True), default=S, help="default 1e-8")
    g = p.add_argument_group("outside the sphere (Section 6)")
    g.add_argument("--space", choices=TRAINING_SPACES, default=S,
                   help="sphere: projected SGD at a fixed ELR (the paper's setting); filter-spheres: "
                   "every filter on its own sphere of one common radius, all at the same ELR (the "
                   "official --fix_all_elr; lr = ELR * rho^2 with rho the total SI norm); whole: plain "
                   "SGD in the whole parameter space at --lr (default sphere)")
    if with_elr:
        g.add_argument("--lr", type=_number(float, True), default=S,
                       help="learning rate of --space whole (default: none; required there)")
    g.add_argument("--weight-decay", type=_number(float, low=0.0, high=float("inf")), default=S,
                   help="L2 weight decay of --space whole, as torch.optim.SGD (default 0; paper: "
                   "1e-4 ConvNet, 5e-4 ResNet-18)")
    g.add_argument("--momentum", type=_number(float, low=0.0, high=1.0), default=S,
                   help="heavy-ball momentum, as torch.optim.SGD: of --space whole, or of "
                   "--optimizer momentum on the sphere (default 0)")
    g.add_argument("--schedule", choices=SCHEDULES, default=S,
                   help="learning-rate schedule over the epochs: constant, or cosine annealing to "
                   "0 stepped per epoch (default constant)")
    g.add_argument("--loss", choices=LOSS_NAMES, default=S,
                   help="ce: cross-entropy; mse: the official squared loss ||logits - one_hot(y)||^2 / C "
                   "(--use_squared_loss), averaged over the batch (default ce)")
    g.add_argument("--conventional", action="store_true", default=S,
                   help="conventional network: BatchNorm scale and shift learnable, a trainable "
                   "last layer with bias; trains every weight (needs --space whole)")
    g.add_argument("--conventional-head-bias", action=argparse.BooleanOptionalAction, default=S,
                   help="--conventional: a bias in the trainable last layer (default: the official "
                   "code's choice: ResNet-18 without (ResNet18SIAf), the ConvNet with (convnet_si_af))")
    g.add_argument("--batch-size", type=_number(int, True), default=S, help="default 128")
    g.add_argument("--init-seed", type=_number(int), default=S, help="initialisation seed (default 0)")
    g.add_argument("--data-seed", type=_number(int), default=S,
                   help="batch order / augmentation / label-noise seed (default 0)")


def _logging_and_speed_options(p) -> None:
    g = p.add_argument_group("logging")
    g.add_argument("--eval-every", type=_number(int, True), default=S, help="test pass every K epochs (default 1)")
    g.add_argument("--save-every", type=_number(int, True), default=S,
                   help="checkpoint every K epochs; the first and last are always kept (default 10)")
    g.add_argument("--checkpoint-metrics", action=argparse.BooleanOptionalAction, default=S,
                   help="log the paper's figure quantities, the official code's metrics of the "
                   "initial point (epoch 0) and of every epoch's end, with no update: loss, "
                   "accuracy and mean stochastic effective gradient norm (total, per layer, per "
                   "filter) over the whole training set in stored order with train-mode BN, and "
                   "the test metrics; costs about one more forward-backward pass over the training "
                   "set per epoch; --no-checkpoint-metrics logs the training epoch means only "
                   "(default: on)")
    g.add_argument("--device", default=S, help="auto | cpu | cuda[:N] (default auto)")
    g.add_argument("--dtype", choices=DTYPES, default=S, help="default float32")
    g.add_argument("--groups", choices=GROUPINGS, default=S,
                   help="SI groups whose metrics are logged: every filter (output channel, as "
                   "the paper's Fig. 4) and each layer, or layers only (default filter)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    g.add_argument("--log", default=None, metavar="KINDS",
                   help="mirror every epoch to dashboards: csv, tensorboard, wandb (comma-separated) "
                   "(default: none; the HDF5 trajectory stays the source of truth)")
    g.add_argument("--log-dir", default=None, metavar="DIR",
                   help="where the mirrors go: DIR/<run> (default: <run>.logs beside the trajectory)")
    g = p.add_argument_group("speed")
    g.add_argument("--precision", choices=PRECISIONS, default=S,
                   help="bf16: forward and backward under bf16 autocast; parameters, the step, "
                   "norms and every logged metric stay float32 (default float32)")
    g.add_argument("--channels-last", action="store_true", default=S,
                   help="2-D convolutions in channels-last memory layout (meant for GPUs' tensor cores)")
    g.add_argument("--compile", action="store_true", default=S,
                   help="torch.compile the forward pass and the update (statistics and step; "
                   "a vectorised sweep: its whole vmapped step); pays a compilation first")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, default=S,
                   help="torch.compile's mode: reduce-overhead replays CUDA graphs (small batches "
                   "on a GPU), max-autotune searches kernels (default default)")


def add_config_options(p) -> None:
    p.add_argument("--config", metavar="TOML", default=None,
                   help="settings from a TOML file (the flags' names as keys, - or _); flags given "
                   "on the command line override it (default: none)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as TOML and exit without training")


def read_config(path: str, extra=()) -> dict:
    """A TOML file's settings with the flags' names (``--weight-decay`` as weight-decay or
    weight_decay); an unknown key is a one-line error naming it."""
    from ..config import TrainConfig
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise LandscapeError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise LandscapeError(f"--config {path} is a folder: give a TOML file") from None
    except OSError as e:
        raise LandscapeError(f"--config {path}: cannot be read ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LandscapeError(f"--config {path}: not valid TOML ({e})") from None
    known = set(TrainConfig.__dataclass_fields__) | set(extra)
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise LandscapeError(f"--config {path}: unknown key {key!r} (keys are the flags' names, "
                                 f"e.g. elr, weight-decay)")
        out[name] = value
    try:  # the file's own types, named as its keys (flags given on the command line come after)
        TrainConfig(**{k: v for k, v in out.items() if k in TrainConfig.__dataclass_fields__}).check_types()
    except ArgumentError as e:
        raise LandscapeError(f"--config {path}: {e}") from None
    return out


def config_toml(settings: dict) -> str:
    """Settings as TOML (None values, 'not set', are left out)."""
    lines = []
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        lines.append(f"{key.replace('_', '-')} = {text}")
    return "\n".join(lines) + "\n"


def check_rate_options(given: dict, sweep: bool = False) -> None:
    """--elr belongs to the sphere, --lr to the whole space; --conventional implies the whole
    space (one-line errors for the mixes)."""
    if given.get("conventional") and "space" not in given:
        given["space"] = "whole"
    whole = given.get("space") == "whole"
    flag = "--elrs" if sweep else "--elr"
    if whole and "elr" in given:
        raise LandscapeError(f"{flag} is the sphere's parameter: with --space whole give "
                             f"{'--lrs' if sweep else '--lr'}")
    if not whole and "lr" in given:
        raise LandscapeError(f"{'--lrs' if sweep else '--lr'} trains in the whole space: add "
                             f"--space whole (on the sphere give {flag})")


def print_table(traj, rows: int | None = 20, epochs=None) -> None:
    """The per-epoch table: every epoch (``rows`` None), at most ``rows`` evenly spaced with the
    first and last, or the given ``epochs``."""
    m = traj.metrics
    n = len(traj.epochs)
    if n == 0:
        print("(no complete epoch yet)")
        return
    if epochs is not None:
        idx = np.flatnonzero(np.isin(traj.epochs, epochs))
    else:
        idx = np.arange(n) if rows is None or n <= rows else np.unique(
            np.round(np.linspace(0, n - 1, rows)).astype(int))
    step = "step" if traj.kind == "toy" else "epoch"
    cols = [(step, "epoch", "{:>7d}")]
    cols += [(c, c, f) for c, f in (("train_loss", "{:>10.4f}"), ("train_accuracy", "{:>9.3f}"),
                                    ("test_loss", "{:>9.4f}"), ("test_accuracy", "{:>8.3f}"),
                                    ("loss", "{:>12.6g}"), ("effective_grad_norm", "{:>9.4g}"),
                                    ("effective_step_size", "{:>9.4g}"), ("elr", "{:>9.3g}"))
             if c in m]
    short = {"train_loss": "train_loss", "train_accuracy": "train_acc", "test_loss": "test_loss",
             "test_accuracy": "test_acc", "effective_grad_norm": "eff_grad", "loss": "F",
             "effective_step_size": "eff_step", "elr": "elr", "epoch": step}
    widths = [len(f.format(1 if f.endswith("d}") else 1.0)) for _, _, f in cols]
    print("  ".join(short[k].rjust(w) for (_, k, _), w in zip(cols, widths)))
    for i in idx:
        cells = []
        for (_, key, fmt), w in zip(cols, widths):
            v = m[key][i]
            cells.append(fmt.format(int(v)) if fmt.endswith("d}") else
                         ("-".rjust(w) if np.isnan(v) else fmt.format(v)))
        print("  ".join(cells))


def megabytes(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def print_skipped(skipped: list[dict]) -> None:
    for s in skipped:
        print(f"skipped {s['path']}: {s['reason']}")


def epochs_argument(source: str, epochs: str | None, default: str) -> tuple[str, str]:
    """(path, epoch spec) from a command's ``TRAJ`` or ``TRAJ@EPOCH`` and its ``--checkpoints``
    (given once at most; ``default`` when neither names them)."""
    path, epoch = parse_source(source)
    if epoch is not None and epochs is not None:
        raise LandscapeError("give the epochs once: TRAJ@EPOCH or --checkpoints")
    if epoch is not None:
        return path, "last" if epoch == -1 else str(epoch)
    return path, epochs or default
