"""Appendix G, Section 5.3: under label noise the epoch-wise test error shows a peak and a
second descent, near the peak of sharpness (the mean stochastic effective-gradient norm), and
the peak grows with the noise.

    python analyses/appendix_g_double_descent.py [FOLDER_GLOB ...]   (default RECIPE/noise*, after
                                                                     train/label_noise_mnist1d.sh)
"""
import glob
import sys

import matplotlib
matplotlib.use("Agg")

from common import RECIPE, claim, save, script_args
import os
from landscape.double_descent import PeakCriteria, double_descent
from landscape.plots.double_descent import plot_double_descent


def main(*patterns, metrics="auto"):
    patterns = patterns or (os.path.join(RECIPE, "noise*"),)
    folders = sorted(f for p in patterns for f in glob.glob(p) if not f.endswith("noise0"))
    skipped = []
    criteria = PeakCriteria(window=9, min_height=0.02)
    result = double_descent(folders, criteria, skipped=skipped, metrics=metrics)
    rows = result["rows"]
    plot_double_descent(result, __import__("common").out_path("appendix_g_double_descent.png"))
    found = [r for r in rows if r["double_descent"]]
    close = [r for r in found if r.get("epochs_between_peaks") is not None
             and r["epochs_between_peaks"] <= 0.15 * len(r["epochs"])]
    # each run is one test at alpha: k detections out of n are evidence only when they are
    # unlikely under the test's own false-positive rate (binomial tail)
    from scipy.stats import binom
    p_many = float(binom.sf(len(found) - 1, len(rows), criteria.alpha)) if rows else float("nan")
    dd_confirmed = None if not rows else p_many < 0.01
    claims = [claim("with label noise, epoch-wise double descent appears in the test error",
                    dd_confirmed,
                    f"{len(found)} of {len(rows)} noisy runs show a peak and a second descent above their "
                    f"noise (rise-and-fall test against every no-peak curve, p < {criteria.alpha:g}); under its "
                    f"false-positive rate that many or more has probability {p_many:.2g}: " +
                    ", ".join(f"ELR {r['elr']:g} noise {r['label_noise']:.0%} peak epoch {r['peak_epoch']:g} height {r['height']:.3f} p {r['p_value']:.3g} ({r['qualification']})" for r in found),
                    statistic={"detected": len(found), "runs": len(rows), "binomial_p": p_many}),
              claim("the test-error peak sits near the sharpness (eff. grad norm) peak",
                    None if not dd_confirmed else len(close) >= len(found) / 2,
                    f"{len(close)} of {len(found)} within 15% of the run's epochs; across runs "
                    f"{result['alignment']['mean_epochs_apart']} epochs apart on average, permutation p = "
                    f"{result['alignment']['permutation_p']}: " +
                    ", ".join(f"{r['peak_epoch']} vs {r.get('egn_peak_epoch')}" for r in found))]
    by_elr = {}
    for r in rows:
        by_elr.setdefault(r["elr"], {})[r["label_noise"]] = r.get("height") or 0.0
    grows = [e for e, h in by_elr.items() if len(h) > 1 and h[max(h)] > h[min(h)]]
    # heights of bumps the test did not call peaks compare nothing: undetermined without a peak
    claims.append(claim("the peak is more noticeable with more label noise",
                        None if not dd_confirmed else len(grows) >= max(1, len(by_elr) / 2),
                        "; ".join(f"ELR {e:g}: " + ", ".join(f"{n:.0%}: {h:.3f}" for n, h in sorted(v.items())) for e, v in by_elr.items())))
    save("appendix_g_double_descent", {"runs": [{k: v for k, v in r.items() if k not in ("test_error", "epochs", "effective_grad_norm", "test_error_epochs") and not k.startswith(("_", "train_error_"))} for r in rows],
                                       "skipped": skipped, "metrics": rows[0]["metrics"] if rows else None,
                                       "alignment": result["alignment"], "claims": claims})


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(*args, metrics=metrics)
