"""``landscape regimes``."""
from __future__ import annotations

from ..regimes import METRIC_SOURCES, RegimeCriteria, regimes, SOURCE_TEXT
from ..plots.regimes import plot_regimes
from .common import print_skipped
from .common import write_outputs
from .common import RawHelpFormatter, _number, add_outputs


def print_regimes(result: dict) -> None:
    print(f"metrics: {SOURCE_TEXT[result['metrics']]}")
    name = result["rate_name"]
    if result["mixed_spaces"]:
        print("warning: the runs mix the sphere (ELR) and the whole space (LR); their rates do not compare")
    print(f"{name:>10}  {'regime':<22} {'stable':>6} {'final_loss':>10} {'p_fall':>8} {'ess_sprd':>8} "
          f"{'mean_gn':>9} {'test_acc':>8}  file / reason")
    for r in result["rows"]:
        if r["name"] == "nonfinite":
            finite = r.get("finite_regime")
            label = f"{finite if finite is not None else '-'}, nonfinite (ep. {r.get('nonfinite_epoch')})"
        else:
            mark = "?" if r.get("confident") is False else ""
            label = f"{r['regime'] or '-'}{mark} {r['name']}"
        stable = "-" if r.get("stability") is None else f"{r['stability']:.2f}"
        print(f"{r['rate']:>10.3g}  {label:<22} {stable:>6} {r['final_train_loss']:>10.4g} "
              f"{r.get('trend_p_falling', float('nan')):>8.2g} {r.get('ess_spread', float('nan')):>8.3g} "
              f"{r['mean_' + r['gradient_axis']]:>9.4g} {r['test_accuracy']:>8.4f}  {r['path']}"
              + (f"  ({r['reason']})" if r.get("reason") else ""))
    print(f"stable: share of {result['criteria']['resamples']} block-bootstrap resamples of the curve's "
          f"own noise that keep the label ('?': below {result['criteria']['min_stability']:g})")
    axes = sorted({r.get("gradient_axis") for r in result["rows"]} - {None})
    print("mean_gn: tail mean of the " + " / ".join(
        {"effective_grad_norm": "stochastic effective gradient norm (SI parameters)",
         "grad_norm": "stochastic gradient norm (conventional networks: all trained parameters)"}[a]
        for a in axes))
    def rate(value, regime):
        return f"{value:g}" if value is not None else f"none (no run in regime {regime})"
    print(f"largest regime-1 {name}: {rate(result['largest_regime1_rate'], 1)}; smallest regime-3 {name}: "
          f"{rate(result['smallest_regime3_rate'], 3)} (between determined runs)")
    if not result["ordered"]:
        print(f"NOT ORDERED in {name}: " + "; ".join(
            f"{name} {o['rate']:g} is {o['regime']} but {name} {o['next_rate']:g} is {o['next_regime']}"
            for o in result["out_of_order"]))
    for key, what in (("duplicate_rates", f"{name}s (same seed)"), ("duplicate_files", "runs (same content)")):
        if result[key]:
            print(f"duplicate {what}: " + ", ".join(map(str, result[key])))
    if result.get("mixed_lengths"):
        print("runs of different lengths (epochs): " + ", ".join(map(str, result["mixed_lengths"]))
              + "; their tails cover different stages of training")
    print_skipped(result["skipped"])


CRITERIA_HELP = {
    "tail": "fraction of the run (its last points) the signatures are read from",
    "final_fraction": "fraction of the run averaged for the final loss",
    "low_loss_fraction": "regime 1 by level: final loss <= this x ln C",
    "random_loss_fraction": "regime 3: median tail loss >= this x ln C",
    "random_accuracy_margin": "regime 3: tail accuracy <= 1/C + this",
    "trend_alpha": "significance level of the autocorrelation-corrected Mann-Kendall fall test",
    "ess_equal_filter": "ESS spread (std/mean over filters) at or below which ESS are equalised",
    "ess_equal_layer": "the same over layers, when only per-layer metrics were logged",
    "sustained_fall_factor": "regime 1 whatever the ESS: the loss falls significantly over the "
                             "run's second half and by at least this factor",
    "sustained_min_points": "fewer points in the second half: no fall counts as lasting",
    "min_points": "fewer points: undetermined",
    "min_tail": "fewer points in the tail: undetermined",
    "min_stability": "a label kept by fewer block-bootstrap resamples of the curve's noise than this "
                     "share is printed with '?' (not confident)",
    "resamples": "block-bootstrap resamples of the curve's noise for each label's stability",
    "converged_loss_fraction": "regime 1 whatever the step sizes: the tail's median (or final) "
                               "loss <= this x ln C",
    "wander_cos": "regime 3 needs wandering steps: a random walk taking the run's own tail steps "
                  "keeps at most this cosine to the tail's start",
}


def add_parser(sub):
    from .. import regimes as module
    p = sub.add_parser("regimes", help="classify runs into the three regimes (Figure 1)",
                       description=module.__doc__.replace("``", ""), formatter_class=RawHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectory files")
    for f in RegimeCriteria.__dataclass_fields__.values():
        kind = int if isinstance(f.default, int) else float
        p.add_argument(f"--{f.name.replace('_', '-')}", type=_number(kind), default=f.default,
                       help=CRITERIA_HELP[f.name])
    p.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves to judge: training's epoch means, the checkpoint metrics (official "
                   "protocol), or auto: checkpoint metrics when every run has them")
    add_outputs(p, "the evidence: loss curves coloured by regime, ESS spread and test error against ELR",
                "every row with its evidence and the sweep checks")
    p.set_defaults(run=run)


def run(args):
    criteria = RegimeCriteria(**{k: getattr(args, k) for k in RegimeCriteria.__dataclass_fields__})
    result = regimes(args.inputs, criteria, args.metrics)
    print_regimes(result)
    write_outputs(args, result, lambda path: plot_regimes(result, path))
