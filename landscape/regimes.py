"""Regimes of training on the sphere and epoch-wise double descent (paper Section 5,
Section 5.3 and Appendix G).

Regime of a run, from the last ``tail`` fraction of its epochs (C classes, ln C = the loss of a
uniform guess):
    3 divergence    mean train accuracy <= 1/C + ``random_accuracy_margin`` and median train
                    loss >= ``random_loss_fraction`` * ln C: random-guess behaviour (with the
                    frozen norm-10 last layer a diverged run's loss is even above ln C);
    1 convergence   the final train loss (median of the last ``final_fraction`` of epochs) is
                    <= ``low_loss_fraction`` * ln C, or the loss keeps falling: the median of
                    the tail's last third <= ``falling_ratio`` x the median of its first third;
    2 equilibrium   otherwise: the loss holds a level away from both zero and random guessing.
Double descent: a peak of the (smoothed) epoch-wise test error above the minimum that precedes
it, followed by a second descent, both larger than the curve's own epoch-to-epoch noise; the
same detector finds the peak of the effective-gradient norm (sharpness) so the two can be
compared.
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from .errors import LandscapeError
from .trajectory import Trajectory

NAMES = {1: "convergence", 2: "equilibrium", 3: "divergence"}


@dataclass
class RegimeCriteria:
    tail: float = 0.2
    final_fraction: float = 0.05
    low_loss_fraction: float = 0.05
    falling_ratio: float = 0.5
    random_loss_fraction: float = 0.9
    random_accuracy_margin: float = 0.05


def classify_curve(train_loss, train_accuracy, num_classes: int,
                   criteria: RegimeCriteria | None = None) -> dict:
    """Regime (1, 2, 3) of one run from its per-epoch train loss and accuracy."""
    c = criteria or RegimeCriteria()
    loss = np.asarray(train_loss, float)
    acc = np.asarray(train_accuracy, float)
    if len(loss) < 3:
        raise LandscapeError(f"a run needs at least 3 epochs to be classified, got {len(loss)}")
    n_tail = max(3, int(round(c.tail * len(loss))))
    tail_loss, tail_acc = loss[-n_tail:], acc[-n_tail:]
    # medians: a converging run with rare spikes (the jumps out of the basin that the paper sees
    # at the highest regime-1 ELRs) must not read as a loss level
    final = float(np.median(loss[-max(1, int(round(c.final_fraction * len(loss)))):]))
    third = max(1, n_tail // 3)
    first, last = float(np.median(tail_loss[:third])), float(np.median(tail_loss[-third:]))
    random_loss = math.log(num_classes)
    if tail_acc.mean() <= 1.0 / num_classes + c.random_accuracy_margin and \
            np.median(tail_loss) >= c.random_loss_fraction * random_loss:
        regime = 3
    elif final <= c.low_loss_fraction * random_loss or last <= c.falling_ratio * first:
        regime = 1
    else:
        regime = 2
    return {"regime": regime, "name": NAMES[regime], "final_train_loss": final,
            "tail_train_loss": float(tail_loss.mean()), "tail_train_accuracy": float(tail_acc.mean()),
            "tail_fall_ratio": last / first if first > 0 else float("nan")}


def find_trajectories(inputs) -> list[str]:
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.h5")))
            if not found:
                raise LandscapeError(f"{item}: no trajectories (*.h5) in this folder")
            paths += found
        else:
            paths.append(item)
    if not paths:
        raise LandscapeError("give a sweep folder or trajectory files")
    return paths


MIN_EPOCHS = 3  # fewer committed epochs than this say nothing about a regime


def usable_runs(inputs, *, min_epochs: int = MIN_EPOCHS, nonfinite_ok: bool = True,
                need=None) -> tuple[list[Trajectory], list[dict]]:
    """The network trajectories among ``inputs`` (files and folders) that an analysis can use,
    and the others as ``{"path", "reason"}`` (damaged, foreign, a toy run, too short, ended by
    non-finite values unless ``nonfinite_ok``, or ``need(t)`` returned a reason). One bad run does
    not stop the rest; nothing usable at all is an error that lists why."""
    usable, skipped = [], []
    for path in find_trajectories(inputs):
        try:
            t = Trajectory(path)
        except LandscapeError as e:
            skipped.append({"path": path, "reason": str(e).removeprefix(f"{path}: ")})
            continue
        nonfinite = t.status == "nonfinite"
        if t.kind != "train":
            reason = f"a {t.kind} trajectory, not a network run"
        elif nonfinite and not nonfinite_ok:
            reason = "ended by non-finite values"
        elif t.epochs_complete < min_epochs and not nonfinite:
            reason = f"too short: {t.epochs_complete} epochs, needs at least {min_epochs}"
        else:
            reason = need(t) if need is not None else None
        if reason:
            skipped.append({"path": path, "reason": reason})
        else:
            usable.append(t)
    if not usable:
        raise LandscapeError("no usable trajectory: " + "; ".join(f"{s['path']} ({s['reason']})"
                                                                  for s in skipped))
    return usable, skipped


def print_skipped(skipped: list[dict]) -> None:
    for s in skipped:
        print(f"skipped {s['path']}: {s['reason']}")


METRIC_SOURCES = ("auto", "epoch", "checkpoint")
SOURCE_TEXT = {"epoch": "epoch means over the mini-batches of training (landscape train's log)",
               "checkpoint": "checkpoint metrics (the official protocol: whole training set in "
                             "fixed order, no update; landscape evaluate / --checkpoint-metrics)"}


def curves(t: Trajectory, source: str) -> dict | None:
    """A run's curves ('epoch', 'train_loss', 'train_accuracy', 'test_accuracy',
    'effective_grad_norm', ...) from ``source``: 'epoch' (training's epoch means) or
    'checkpoint' (None when the run has none)."""
    if source == "epoch":
        return t.metrics
    from .evaluation import stored_checkpoint_metrics
    return stored_checkpoint_metrics(t)


def pick_source(runs, source: str, min_points: int = MIN_EPOCHS) -> tuple[str, list, list]:
    """Resolve 'auto' (checkpoint metrics when every run has them, else epoch means) and split
    the runs into those that have the source's curves (at least ``min_points`` points) and the
    skipped others."""
    if source not in METRIC_SOURCES:
        raise LandscapeError(f"--metrics must be one of {', '.join(METRIC_SOURCES)}, got {source!r}")
    finite = [t for t in runs if t.status != "nonfinite"]
    if source == "auto":
        enough = [curves(t, "checkpoint") for t in finite]
        source = "checkpoint" if finite and all(c is not None and len(c["train_loss"]) >= min_points
                                                for c in enough) else "epoch"
    kept, skipped = [], []
    for t in runs:
        c = curves(t, source) if t.status != "nonfinite" else t.metrics
        if c is None:
            skipped.append({"path": t.path, "reason": "no checkpoint metrics: run 'landscape "
                            f"evaluate {t.path}' or train with --checkpoint-metrics"})
        elif len(c["train_loss"]) < min_points and t.status != "nonfinite":
            skipped.append({"path": t.path, "reason": f"{len(c['train_loss'])} points of {source} "
                            f"metrics, needs at least {min_points}"})
        else:
            kept.append((t, c))
    if not kept:
        raise LandscapeError("no usable trajectory: " + "; ".join(f"{s['path']} ({s['reason']})"
                                                                  for s in skipped))
    return source, kept, skipped


def _tail_mean(values, tail: float) -> float:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan")
    return float(v[-max(1, int(round(tail * len(v)))):].mean())


def regimes(inputs, criteria: RegimeCriteria | None = None, metrics: str = "auto") -> dict:
    """Classify every usable trajectory; rows sorted by ELR, plus the regime boundaries, the
    curves used (``metrics``: 'epoch', 'checkpoint' or 'auto' = checkpoint metrics when every
    run has them) and the runs skipped (with why). A run that met non-finite values (its status,
    or NaN in its train curve) gets regime None, name 'nonfinite': that is what happened, not a
    guess."""
    c = criteria or RegimeCriteria()
    rows = []
    runs, skipped = usable_runs(inputs)
    source, kept, left = pick_source(runs, metrics)
    skipped += left
    for t, m in kept:
        curves = np.concatenate([m["train_loss"], m["train_accuracy"]])
        if t.status == "nonfinite" or not np.all(np.isfinite(curves)):
            detail = t.status_detail
            res = {"regime": None, "name": "nonfinite",
                   "nonfinite_epoch": detail.get("epoch"), "nonfinite_what": detail.get("what"),
                   "final_train_loss": float(m["train_loss"][-1]) if len(m["train_loss"]) else float("nan"),
                   "tail_train_loss": float("nan"), "tail_train_accuracy": float("nan"),
                   "tail_fall_ratio": float("nan")}
        else:
            res = classify_curve(m["train_loss"], m["train_accuracy"], t.model_spec["num_classes"], c)
        test_acc = m["test_accuracy"][~np.isnan(m["test_accuracy"])]
        rows.append({"path": t.path, "elr": float(t.config["elr"]), **res,
                     "mean_effective_grad_norm": _tail_mean(m["effective_grad_norm"], c.tail),
                     "test_accuracy": float(test_acc[-1]) if len(test_acc) else float("nan"),
                     "epochs": int(t.epochs_complete), "num_classes": t.model_spec["num_classes"],
                     "_trajectory": t, "_curves": m})
    rows.sort(key=lambda r: r["elr"])
    ones = [r["elr"] for r in rows if r["regime"] == 1]
    threes = [r["elr"] for r in rows if r["regime"] == 3]
    return {"rows": rows, "criteria": asdict(c), "skipped": skipped, "metrics": source,
            "largest_regime1_elr": max(ones) if ones else None,
            "smallest_regime3_elr": min(threes) if threes else None}


def print_regimes(result: dict) -> None:
    print(f"metrics: {SOURCE_TEXT[result['metrics']]}")
    print(f"{'ELR':>10}  {'regime':<15} {'final_loss':>11} {'mean_egn':>10} {'test_acc':>9}  file")
    for r in result["rows"]:
        label = f"{r['regime']} {r['name']:<13}" if r["regime"] else \
            f"- nonfinite (ep. {r.get('nonfinite_epoch')})".ljust(15)
        print(f"{r['elr']:>10.3g}  {label} {r['final_train_loss']:>11.4g} "
              f"{r['mean_effective_grad_norm']:>10.4g} {r['test_accuracy']:>9.4f}  {r['path']}")
    print(f"largest regime-1 ELR: {result['largest_regime1_elr']}; smallest regime-3 ELR: "
          f"{result['smallest_regime3_elr']}")
    print_skipped(result["skipped"])


def plot_regimes(result: dict, path: str) -> None:
    """Figure 1: train loss against epoch coloured by ELR; effective-gradient norm against train
    loss; test error against ELR with regime bands."""
    import matplotlib
    from .plots import new_figure, save_figure
    rows = result["rows"]
    cmap = matplotlib.colormaps["viridis"]
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:red", None: "tab:gray"}
    fig, axes = new_figure(3, 4.7, 4.0)
    for i, r in enumerate(rows):
        m = r["_curves"]
        col = cmap(i / max(1, len(rows) - 1))
        axes[0].plot(m["epoch"], m["train_loss"], color=col, lw=1, label=f"{r['elr']:.3g}")
        axes[1].plot(m["train_loss"], m["effective_grad_norm"], color=col, lw=0.6, alpha=0.6)
        axes[1].scatter([r["tail_train_loss"]], [r["mean_effective_grad_norm"]], color=colors[r["regime"]],
                        zorder=3, s=18)
    axes[0].set(xlabel="epoch", ylabel="train loss", yscale="log",
                title=f"train loss (colour: ELR; {result['metrics']} metrics)")
    axes[0].legend(fontsize=6, ncol=2, title="ELR", title_fontsize=7)
    axes[1].set(xlabel="train loss", ylabel="mean stochastic effective grad norm", xscale="log",
                yscale="log", title="sharpness vs loss (dots: tail means, colour: regime)")
    elrs = np.array([r["elr"] for r in rows])
    err = 1 - np.array([r["test_accuracy"] for r in rows])
    ax = axes[2]
    for r, lo, hi in zip(rows, np.r_[elrs[:1] / 1.5, np.sqrt(elrs[:-1] * elrs[1:])],
                         np.r_[np.sqrt(elrs[:-1] * elrs[1:]), elrs[-1:] * 1.5]):
        ax.axvspan(lo, hi, color=colors[r["regime"]], alpha=0.15, lw=0)
    ax.plot(elrs, err, "ko-", ms=3)
    ax.set(xscale="log", xlabel="ELR", ylabel="test error", title="test error (bands: regimes 1 / 2 / 3)")
    save_figure(fig, path)


# --- double descent -------------------------------------------------------------------------

def smooth(values, window: int) -> np.ndarray:
    """Centred moving average; the ends use the points available."""
    v = np.asarray(values, float)
    if window <= 1:
        return v.copy()
    half = window // 2
    return np.array([v[max(0, i - half):i + half + 1].mean() for i in range(len(v))])


def fluctuation(values) -> float:
    """Robust epoch-to-epoch noise of a curve: 1.4826 x the median absolute first difference / sqrt 2."""
    d = np.diff(np.asarray(values, float))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2)) if len(d) else 0.0


def find_peak(values, window: int = 5, min_height: float = 0.01, final_fraction: float = 0.1,
              significance: float = 4.0) -> dict | None:
    """The highest rise of the smoothed curve above the minimum before it that is followed by a
    second descent (the final level below the peak by as much). Both must exceed ``min_height``
    and ``significance`` x the curve's noise after smoothing (``fluctuation / sqrt(window)``), so
    epoch-to-epoch chaos is not read as a peak. None if there is none."""
    s = smooth(values, window)
    n = len(s)
    if n < 5:
        return None
    min_height = max(min_height, significance * fluctuation(values) / math.sqrt(max(1, window)))
    k = max(1, int(round(final_fraction * n)))
    final = float(s[-k:].mean())
    best = None
    prefix_min_idx = 0
    for i in range(1, n - k):  # the peak must come before the final level it descends to
        if s[i - 1] < s[prefix_min_idx]:
            prefix_min_idx = i - 1
        height = s[i] - s[prefix_min_idx]
        after = s[i] - final
        if height >= min_height and after >= min_height and (best is None or height > best["height"]):
            best = {"index": i, "height": float(height), "value": float(s[i]),
                    "preceding_min_index": prefix_min_idx, "preceding_min": float(s[prefix_min_idx]),
                    "final": final, "second_descent": float(after)}
    return best


def double_descent(paths, window: int = 5, min_height: float = 0.01, significance: float = 4.0,
                   skipped: list | None = None, metrics: str = "auto") -> list[dict]:
    """Peak detection on every usable label-noise run, on the curves of ``metrics`` ('epoch',
    'checkpoint', 'auto'; each row says which); runs it cannot use are appended to ``skipped``
    (with why) when a list is given."""
    def needs_noise(t):
        if float(t.config.get("label_noise", 0.0)) <= 0:
            return ("trained without label noise; epoch-wise double descent needs --label-noise "
                    "P > 0 runs")
    runs, left = usable_runs(paths, min_epochs=5, nonfinite_ok=False, need=needs_noise)
    source, kept, more = pick_source(runs, metrics, min_points=5)
    if skipped is not None:
        skipped.extend(left + more)
    rows = []
    for t, m in kept:
        path, noise = t.path, float(t.config["label_noise"])
        ok = ~np.isnan(m["test_accuracy"])
        epochs = m["epoch"][ok]
        err = 1 - m["test_accuracy"][ok]
        peak = find_peak(err, window, min_height, significance=significance)
        egn_peak = find_peak(m["effective_grad_norm"], window, min_height=0.0, significance=significance)
        row = {"path": path, "elr": float(t.config["elr"]), "label_noise": noise, "metrics": source,
               "double_descent": peak is not None,
               "test_error_fluctuation": fluctuation(err),
               "test_error_epochs": epochs, "test_error": err, "epochs": m["epoch"],
               "effective_grad_norm": m["effective_grad_norm"]}
        if peak:
            row.update({"peak_epoch": int(epochs[peak["index"]]), "peak_test_error": peak["value"],
                        "height": peak["height"], "preceding_min_epoch": int(epochs[peak["preceding_min_index"]]),
                        "final_test_error": peak["final"], "second_descent": peak["second_descent"]})
        if egn_peak:
            row["egn_peak_epoch"] = int(m["epoch"][egn_peak["index"]])
        if peak and egn_peak:
            row["epochs_between_peaks"] = abs(row["peak_epoch"] - row["egn_peak_epoch"])
        rows.append(row)
    return rows


def print_double_descent(rows) -> None:
    if rows:
        print(f"metrics: {SOURCE_TEXT[rows[0]['metrics']]}")
    print(f"{'ELR':>9} {'noise':>6} {'peak_ep':>8} {'height':>8} {'final':>8} {'egn_peak_ep':>11} {'|diff|':>7}  file")
    for r in rows:
        def g(key, fmt):
            return format(r[key], fmt) if key in r else "-"
        print(f"{r['elr']:>9.3g} {r['label_noise']:>6.2f} {g('peak_epoch', '>8d'):>8} {g('height', '>8.4f'):>8} "
              f"{g('final_test_error', '>8.4f'):>8} {g('egn_peak_epoch', '>11d'):>11} {g('epochs_between_peaks', '>7d'):>7}  {r['path']}")


def plot_double_descent(rows, path: str) -> None:
    from .plots import new_figure, save_figure
    fig, axes = new_figure(len(rows), 4.5, 3.6, max_cols=3)
    for ax, r in zip(axes, rows):
        ax.plot(r["test_error_epochs"], r["test_error"], color="tab:blue", label="test error")
        if r.get("peak_epoch") is not None:
            ax.axvline(r["peak_epoch"], color="tab:blue", ls="--", lw=0.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error", color="tab:blue")
        tw = ax.twinx()
        tw.plot(r["epochs"], r["effective_grad_norm"], color="tab:red", lw=0.8, label="eff. grad norm")
        if r.get("egn_peak_epoch") is not None:
            tw.axvline(r["egn_peak_epoch"], color="tab:red", ls=":", lw=0.8)
        tw.set_ylabel("mean stochastic effective grad norm", color="tab:red")
        tw.set_yscale("log")
        ax.set_title(f"ELR {r['elr']:.3g}, label noise {r['label_noise']:.0%}", fontsize=9)
    save_figure(fig, path)


# --- CLI ----------------------------------------------------------------------------------

def add_regime_parsers(sub):
    from .cli import _number
    p = sub.add_parser("regimes", help="classify runs into the three regimes (Figure 1)",
                       description=__doc__.split("Double descent")[0])
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectory files")
    for f in RegimeCriteria.__dataclass_fields__.values():
        p.add_argument(f"--{f.name.replace('_', '-')}", type=_number(float), default=f.default)
    p.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves to judge: training's epoch means, the checkpoint metrics (official "
                   "protocol), or auto: checkpoint metrics when every run has them")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PNG")
    p.set_defaults(run=cmd_regimes)

    d = sub.add_parser("double-descent", help="epoch-wise double descent under label noise (Appendix G)")
    d.add_argument("inputs", nargs="+", help="trajectories trained with --label-noise")
    d.add_argument("--window", type=_number(int, True), default=5, help="moving-average window (epochs)")
    d.add_argument("--min-height", type=_number(float), default=0.01, help="smallest peak height (error)")
    d.add_argument("--significance", type=_number(float), default=4.0,
                   help="a peak must also exceed this many times the smoothed curve's noise")
    d.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves: epoch means, checkpoint metrics, or auto (checkpoint when all have them)")
    d.add_argument("--json", metavar="PATH")
    d.add_argument("--plot", metavar="PNG")
    d.set_defaults(run=cmd_double_descent)


def cmd_regimes(args):
    from .cli import write_json
    criteria = RegimeCriteria(**{k: getattr(args, k) for k in RegimeCriteria.__dataclass_fields__})
    result = regimes(args.inputs, criteria, args.metrics)
    print_regimes(result)
    if args.json:
        write_json(args.json, {"criteria": result["criteria"],
                               "largest_regime1_elr": result["largest_regime1_elr"],
                               "smallest_regime3_elr": result["smallest_regime3_elr"],
                               "skipped": result["skipped"], "metrics": result["metrics"],
                               "rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                        for r in result["rows"]]})
        print(f"wrote {args.json}")
    if args.plot:
        plot_regimes(result, args.plot)
        print(f"wrote {args.plot}")


def cmd_double_descent(args):
    from .cli import write_json
    skipped = []
    rows = double_descent(args.inputs, args.window, args.min_height, args.significance, skipped,
                          args.metrics)
    print_double_descent(rows)
    print_skipped(skipped)
    if args.json:
        write_json(args.json, {"rows": rows, "skipped": skipped})
        print(f"wrote {args.json}")
    if args.plot:
        plot_double_descent(rows, args.plot)
        print(f"wrote {args.plot}")
