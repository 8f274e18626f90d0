"""``landscape`` command line: a thin layer over the Python API.

Every user error becomes one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from .errors import LandscapeError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
    """The options shared by `train` and `sweep`."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, help="convnet | resnet18 (the paper's pre-activation SI "
                   "ResNet-18) | resnet18-post (post-activation, every conv SI on its own) | mlp "
                   "(default convnet)")
    g.add_argument("--width", type=_number(int, True), default=S,
                   help="channels k of the first layer / hidden units (default 32 / 64 / 256)")
    g.add_argument("--depth", type=_number(int, True), default=S, help="mlp hidden layers (default 3)")
    g.add_argument("--last-layer-norm", type=_number(float, True), default=S,
                   help="Frobenius norm of the frozen last layer (default 10)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=S, help="mnist1d | cifar10 | cifar100 (default mnist1d)")
    g.add_argument("--data-root", default=S, help="dataset folder (default data)")
    g.add_argument("--download", action="store_true", default=S, help="allow downloading CIFAR")
    g.add_argument("--train-subset", type=_number(int, True), default=S, metavar="N",
                   help="train on a seeded random subset of N examples")
    g.add_argument("--label-noise", type=_number(float, low=0.0, high=1.0), default=S, metavar="P",
                   help="give a seeded fraction P of training labels a different random class")
    g.add_argument("--label-noise-mode", choices=("paper", "exact"), default=S,
                   help="paper (the official code): each label with probability P becomes a "
                   "uniform class, possibly its own; exact: round(P*N) labels move to another "
                   "class (default paper)")
    g.add_argument("--augment", action="store_true", default=S,
                   help="random crop (+ flip for images) each batch")
    g = p.add_argument_group("optimisation")
    if with_elr:
        g.add_argument("--elr", type=_number(float, True), default=S, help="effective learning rate (default 1e-3)")
    g.add_argument("--rho", type=_number(float, True), default=S,
                   help="sphere radius (default: the initial total norm of the SI weights)")
    g.add_argument("--epochs", type=_number(int, True), default=S, help="default 100")
    g.add_argument("--batch-size", type=_number(int, True), default=S, help="default 128")
    g.add_argument("--init-seed", type=_number(int), default=S, help="initialisation seed (default 0)")
    g.add_argument("--data-seed", type=_number(int), default=S,
                   help="batch order / augmentation / label-noise seed (default 0)")
    g = p.add_argument_group("logging")
    g.add_argument("--eval-every", type=_number(int, True), default=S, help="test pass every K epochs (default 1)")
    g.add_argument("--save-every", type=_number(int, True), default=S,
                   help="checkpoint every K epochs; the first and last are always kept (default 10)")
    g.add_argument("--checkpoint-metrics", action="store_true", default=S,
                   help="also log, at every epoch's end and with no update, the official code's "
                   "metrics: loss, accuracy and mean stochastic effective gradient norm over the "
                   "whole training set in fixed order (train-mode BN); costs about one more "
                   "forward-backward pass per epoch")
    g.add_argument("--device", default=S, help="auto | cpu | cuda[:N] (default auto)")
    g.add_argument("--dtype", choices=("float32", "float64"), default=S, help="default float32")
    g.add_argument("--groups", choices=("filter", "layer"), default=S,
                   help="SI groups whose metrics are logged: every filter (output channel, as "
                   "the paper's Fig. 4) and each layer, or layers only (default filter)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def add_train_parser(sub):
    p = sub.add_parser("train", help="train a fully scale-invariant network on the sphere",
                       description="Projected SGD on the sphere of radius rho at lr = ELR * rho^2 "
                       "(paper eq. (2)); writes an HDF5 trajectory epoch by epoch.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-o", "--out", default=None,
                   help="trajectory to write (default: runs/MODEL-DATASET-elrELR.h5)")
    p.add_argument("--resume", metavar="TRAJ", default=S,
                   help="continue this trajectory from its last complete epoch (its stored "
                   "configuration is used; --epochs may be raised)")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace an existing --out")
    p.add_argument("--init", metavar="TRAJ@EPOCH", default=S,
                   help="fine-tune: start from this stored checkpoint (model taken from it)")
    add_training_options(p)
    p.set_defaults(run=cmd_train)


def cmd_train(args):
    from .training import TrainConfig, train
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    progress = False if args.quiet else None
    if hasattr(args, "resume"):
        if args.out not in (None, args.resume):
            raise LandscapeError("--resume continues the given file: drop --out")
        traj = train(out=args.resume, resume=True, progress=progress, **given)
    else:
        cfg = TrainConfig(**given)
        out = args.out or f"runs/{cfg.model}-{cfg.dataset}-elr{cfg.elr:g}.h5"
        traj = train(cfg, out, overwrite=getattr(args, "overwrite", False), progress=progress)
    if not args.quiet:
        print_table(traj, rows=10)
        print(f"wrote {traj.path}")
    if traj.status == "nonfinite":
        from .training import EXIT_NONFINITE, nonfinite_message
        print(f"landscape train: stopped: {nonfinite_message(traj.status_detail)} in {traj.path} "
              f"(status 'nonfinite' recorded)", file=sys.stderr)
        return EXIT_NONFINITE
    return 0


def add_show_parser(sub):
    p = sub.add_parser("show", help="print a trajectory's configuration and per-epoch table")
    p.add_argument("trajectory")
    p.add_argument("--rows", type=_number(int, True), default=20,
                   help="at most this many epochs, evenly spaced, the last included")
    p.add_argument("--all", action="store_true", help="every epoch")
    p.add_argument("--json", metavar="PATH", help="write config and metrics as JSON")
    p.set_defaults(run=cmd_show)


def print_table(traj, rows: int | None = 20) -> None:
    m = traj.metrics
    n = len(traj.epochs)
    if n == 0:
        print("(no complete epoch yet)")
        return
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


def cmd_show(args):
    from .locks import describe, writer_of
    from .trajectory import Trajectory, storage
    t = Trajectory(args.trajectory)
    print(f"{t.path}: {t.kind} trajectory, {t.epochs_complete} "
          f"{'steps' if t.kind == 'toy' else 'epochs'} complete, format v{t.attrs['format_version']}, "
          f"landscape {t.attrs.get('landscape_version')}, torch {t.attrs.get('torch_version')}")
    size = storage(t.path)
    dead = size["file_bytes"] - size["live_bytes"]
    print(f"file {megabytes(size['file_bytes'])}, live data {megabytes(size['live_bytes'])}"
          + (f" ({megabytes(dead)} reclaimable: landscape repack {t.path})"
             if dead > 0.25 * size["live_bytes"] + 256e3 else ""))  # beyond HDF5's own ~100 kB
    status = t.status
    if status == "nonfinite":
        from .training import nonfinite_message
        status += f": {nonfinite_message(t.status_detail)}"
    writer = writer_of(t.path)
    print(f"status: {status}" + (f"; being written by {describe(writer)}" if writer else ""))
    print("config: " + json.dumps(t.config, sort_keys=True))
    if t.kind == "train":
        print(f"model: {json.dumps(t.model_spec, sort_keys=True)}; rho {t.attrs.get('rho'):.6g}; "
              f"{len(t.group_names)} SI groups; checkpoints at epochs {t.checkpoint_epochs}")
    if t.analyses:
        print("analyses: " + ", ".join(t.analyses))
    print_table(t, None if args.all else args.rows)
    if args.json:
        write_json(args.json, {"config": t.config, "metrics": t.metrics, "group_names": t.group_names,
                               "group_metrics": t.group_metrics})


def jsonable(x):
    """numpy arrays and scalars (at any depth) as plain lists and numbers; NaN and ±inf as None
    (JSON has no such numbers: ``null``)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str, payload) -> None:
    """Write valid JSON atomically (temp file + rename)."""
    from .files import atomic_write
    text = json.dumps(jsonable(payload), indent=1, allow_nan=False)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write, suffix=".json")


def add_export_parser(sub):
    p = sub.add_parser("export", help="write one checkpoint of a trajectory as a self-describing .pt")
    p.add_argument("trajectory", help="traj.h5 or traj.h5@EPOCH")
    p.add_argument("--epoch", type=_number(int), help="stored epoch (default: the last)")
    p.add_argument("-o", "--out", required=True, help="the .pt file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=cmd_export)


def cmd_export(args):
    from .trajectory import export_checkpoint, parse_source
    path, epoch = parse_source(args.trajectory)
    if args.epoch is not None:
        if epoch is not None:
            raise LandscapeError("give the epoch once: either TRAJ@EPOCH or --epoch")
        epoch = args.epoch
    payload = export_checkpoint(path, epoch, args.out, args.overwrite)
    print(f"wrote {args.out}: epoch {payload['epoch']} of {path} "
          f"({payload['model_spec']['name']}, {len(payload['si_group_names'])} SI groups)")


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="the official code's metrics of stored checkpoints",
                       description="At each chosen checkpoint, with no update: train loss and "
                       "accuracy over the whole training set in fixed order (the run's batch "
                       "size, train-mode BatchNorm), the mean stochastic effective gradient norm "
                       "over those batches (total, per layer, per filter), test loss and accuracy "
                       "(eval mode). Appended under /analyses/checkpoint_metrics.")
    p.add_argument("trajectory", help="traj.h5 (or traj.h5@EPOCH for one checkpoint)")
    p.add_argument("--epochs", default=None, help="last | all | 10,50,100 | every:K (default all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None, help="override the stored data root")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PNG", help="checkpoint metrics over training's epoch means")
    p.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args):
    from .evaluation import evaluate_checkpoints, plot_checkpoint_metrics, print_checkpoint_metrics
    from .trajectory import Trajectory, epochs_argument
    path, epochs = epochs_argument(args.trajectory, args.epochs, "all")
    result = evaluate_checkpoints(path, epochs, args.device, args.data_root)
    traj = Trajectory(path)
    print_checkpoint_metrics(result, traj)
    print(f"appended /analyses/checkpoint_metrics to {path}")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        plot_checkpoint_metrics(result, traj, args.plot)
        print(f"wrote {args.plot}")


def add_repack_parser(sub):
    p = sub.add_parser("repack", help="rewrite trajectories with their live data only",
                       description="Copies each trajectory's live data into a new file and "
                       "renames it into place (atomically, refused while a run writes it). "
                       "Files of format version 1 (which kept a dead model state per epoch) "
                       "become version 2.")
    p.add_argument("trajectories", nargs="+")
    p.set_defaults(run=cmd_repack)


def cmd_repack(args):
    from .trajectory import repack
    for path in args.trajectories:
        r = repack(path)
        print(f"{path}: {megabytes(r['before']['file_bytes'])} -> {megabytes(r['after']['file_bytes'])} "
              f"(live data {megabytes(r['after']['live_bytes'])})")


def add_double_descent_parser(sub):
    from .double_descent import PeakCriteria, __doc__ as doc
    from .regimes import METRIC_SOURCES
    d = PeakCriteria()
    p = sub.add_parser("double-descent", help="epoch-wise double descent under label noise "
                       "(Appendix G), with a calibrated p-value", description=doc.split("Example:")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectories trained with --label-noise")
    p.add_argument("--alpha", type=_number(float, low=0.0, high=1.0), default=d.alpha,
                   help=f"significance level of the bump test (default {d.alpha:g})")
    p.add_argument("--min-width", type=_number(float, True), default=d.min_width, metavar="EPOCHS",
                   help=f"narrowest bump counted, full width at half maximum (default {d.min_width:g})")
    p.add_argument("--min-height", type=_number(float), default=d.min_height,
                   help=f"smallest rise before and fall after the smoothed peak, in test error "
                   f"(default {d.min_height:g})")
    p.add_argument("--window", type=_number(float, True), default=d.window, metavar="EPOCHS",
                   help=f"moving average of the descriptive curve, in epochs whatever --eval-every "
                   f"was (default {d.window:g})")
    p.add_argument("--noise-window", type=_number(float, True), default=d.noise_window, metavar="EPOCHS",
                   help=f"wide moving average the noise is measured around (default {d.noise_window:g})")
    p.add_argument("--surrogates", type=_number(int, True), default=d.surrogates,
                   help=f"AR(1) noise curves the p-value is computed from (default {d.surrogates})")
    p.add_argument("--seed", type=_number(int), default=d.seed, help="surrogates' seed (default 0)")
    p.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves: epoch means, checkpoint metrics, or auto (checkpoint when all have them)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PNG")
    p.set_defaults(run=cmd_double_descent)


def cmd_double_descent(args):
    from .double_descent import PeakCriteria, double_descent, plot_double_descent, print_double_descent
    from .regimes import print_skipped
    criteria = PeakCriteria(**{k: getattr(args, k) for k in PeakCriteria.__dataclass_fields__
                               if hasattr(args, k)})
    skipped = []
    result = double_descent(args.inputs, criteria, skipped, args.metrics)
    print_double_descent(result)
    print_skipped(skipped)
    if args.json:
        write_json(args.json, {**{k: v for k, v in result.items() if k != "rows"}, "skipped": skipped,
                               "rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                        for r in result["rows"]]})
        print(f"wrote {args.json}")
    if args.plot:
        plot_double_descent(result, args.plot)
        print(f"wrote {args.plot}")


def build_parser() -> Parser:
    parser = Parser(prog="landscape", description="Scale-invariant networks trained on the sphere "
                    "at a fixed effective learning rate, and their loss landscape.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train_parser(sub)
    add_show_parser(sub)
    add_export_parser(sub)
    add_repack_parser(sub)
    add_evaluate_parser(sub)
    from .toy import add_toy_parser
    add_toy_parser(sub)
    from .sharpness import add_sharpness_parser
    add_sharpness_parser(sub)
    from .interpolation import add_interpolate_parser
    add_interpolate_parser(sub)
    from .sweep import add_sweep_parser
    add_sweep_parser(sub)
    from .regimes import add_regime_parsers
    add_regime_parsers(sub)
    add_double_descent_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except LandscapeError as e:
        print(f"landscape {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        how = {"train": "continue with --resume", "sweep": "re-run the same command to continue"}
        print(f"landscape {args.command}: interrupted; "
              + (f"completed epochs are saved ({how[args.command]})" if args.command in how
                 else "nothing was written"), file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
