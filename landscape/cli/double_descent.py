"""``landscape double-descent``."""
from __future__ import annotations

from .common import RawHelpFormatter, _number, add_outputs, add_quiet, print_skipped, progress_of
from .common import write_outputs


def add_parser(sub):
    from ..double_descent import PeakCriteria, __doc__ as doc
    from ..regimes import METRIC_SOURCES
    d = PeakCriteria()
    p = sub.add_parser("double-descent", help="epoch-wise double descent under label noise "
                       "(Appendix G): a significant rise and fall, calibrated against every no-peak curve", description=doc.split("Example:")[0],
                       formatter_class=RawHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectories trained with --label-noise")
    p.add_argument("--alpha", type=_number(float, low=0.0, high=1.0), default=d.alpha,
                   help=f"significance level of the rise-and-fall test (default {d.alpha:g})")
    p.add_argument("--min-width", type=_number(float, True), default=d.min_width, metavar="EPOCHS",
                   help=f"narrowest bump counted; peak windows span half of it (default {d.min_width:g})")
    p.add_argument("--min-height", type=_number(float), default=d.min_height,
                   help=f"smallest rise into and fall after the peak window, in test error "
                   f"(default {d.min_height:g})")
    p.add_argument("--window", type=_number(float, True), default=d.window, metavar="EPOCHS",
                   help=f"moving average of the descriptive curve, in epochs whatever --eval-every "
                   f"was (default {d.window:g})")
    p.add_argument("--noise-window", type=_number(float, True), default=d.noise_window, metavar="EPOCHS",
                   help=f"local-quadratic smoother the noise is measured around (default {d.noise_window:g})")
    p.add_argument("--surrogates", type=_number(int, True), default=d.surrogates,
                   help=f"AR(1) noise curves of the least-favourable null (default {d.surrogates}; "
                   "the smallest p-value is 1/(surrogates+1))")
    p.add_argument("--seed", type=_number(int), default=d.seed, help="surrogates' seed (default 0)")
    p.add_argument("--metrics", choices=METRIC_SOURCES, default="auto",
                   help="curves: epoch means, checkpoint metrics, or auto (checkpoint when all have them)")
    add_outputs(p, "per run: test error, smoothed curve, peak window with its rise and fall, and the "
                "effective gradient norm", "every run's test, evidence and the peak alignment")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args):
    from ..double_descent import PeakCriteria, double_descent
    from ..plots.double_descent import plot_double_descent
    criteria = PeakCriteria(**{k: getattr(args, k) for k in PeakCriteria.__dataclass_fields__
                               if hasattr(args, k)})
    skipped = []
    result = double_descent(args.inputs, criteria, skipped, args.metrics, progress_of(args))
    print_double_descent(result)
    print_skipped(skipped)
    write_outputs(args, {**result, "skipped": skipped}, lambda path: plot_double_descent(result, path))


def print_double_descent(result: dict) -> None:
    from ..regimes import SOURCE_TEXT
    rows = result["rows"]
    print(f"metrics: {SOURCE_TEXT[result['metrics']]}")
    print(f"{(rows[0]['rate_name'] if rows else 'ELR'):>9} {'noise':>6} {'regime':>12} {'DD':>5} {'p':>7} {'peak_ep':>8} {'width':>6} "
          f"{'height':>7} {'descent':>7} {'egn_peak':>8} {'|diff|':>6}  file")

    def g(r, key, fmt):
        return "-" if r.get(key) is None else format(r[key], fmt)
    for r in rows:
        dd = {True: "yes", False: "no", None: "?"}[r["double_descent"]]
        print(f"{r['rate']:>9.3g} {r['label_noise']:>6.2f} {r['regime_name']:>12} {dd:>5} "
              f"{g(r, 'p_value', '.3g'):>7} {g(r, 'peak_epoch', '.0f'):>8} {g(r, 'peak_width', '.0f'):>6} "
              f"{g(r, 'height', '.4f'):>7} {g(r, 'second_descent', '.4f'):>7} "
              f"{g(r, 'egn_peak_epoch', '.0f'):>8} {g(r, 'epochs_between_peaks', '.0f'):>6}  {r['path']}")
        if r.get("reason"):
            print(f"{'':>9} {r['reason']}")
        if r["double_descent"] and r["qualifies"] is False:
            print(f"{'':>9} note: {r['qualification']}; Appendix G's double descent is a regime-1 "
                  "/ transition phenomenon")
    a = result["alignment"]
    if a["mean_epochs_apart"] is not None:
        p = "-" if a["permutation_p"] is None else f"{a['permutation_p']:.3g}"
        print(f"test-error vs sharpness peaks: {a['runs']} runs, mean {a['mean_epochs_apart']:.1f} "
              f"epochs apart, permutation p = {p}" + (f" ({a['reason']})" if a.get("reason") else ""))
