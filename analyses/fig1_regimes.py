"""Figure 1: the three regimes over an ELR sweep, and where sharpness peaks.

    python analyses/fig1_regimes.py [SWEEP_DIR]      (default runs/mnist1d-k16, from train/sweep_mnist1d.sh)
"""
import sys

import numpy as np

from common import SWEEP, claim, rank_correlation, save
from landscape.regimes import plot_regimes, regimes
from landscape.trajectory import Trajectory


def main(sweep=SWEEP):
    res = regimes([sweep])
    rows = res["rows"]
    labels = [r["regime"] for r in rows]
    elrs = [r["elr"] for r in rows]
    ordered = all(a <= b for a, b in zip(labels, labels[1:]))
    claims = [claim("three regimes appear in order of ELR (1: convergence, 2: chaotic equilibrium, 3: divergence)",
                    ordered and set(labels) == {1, 2, 3},
                    "regimes by ELR: " + ", ".join(f"{e:g}:{l}" for e, l in zip(elrs, labels)))]
    two = [r for r in rows if r["regime"] == 2]
    if len(two) >= 3:
        c_loss = rank_correlation([r["elr"] for r in two], [r["tail_train_loss"] for r in two])
        c_egn = rank_correlation([r["elr"] for r in two], [r["mean_effective_grad_norm"] for r in two])
        claims.append(claim("in regime 2 a higher ELR holds a higher loss level but a lower sharpness (Sec. 5.2)",
                            c_loss > 0.5 and c_egn < -0.5,
                            f"Spearman(ELR, tail loss) = {c_loss:.2f}, Spearman(ELR, mean eff. grad norm) = {c_egn:.2f} "
                            f"over {len(two)} regime-2 runs"))
    # Figure 1 (right): the highest sharpness along any trajectory is met at the 1/2 transition
    peak = []
    for r in rows:
        if r["regime"] in (1, 2):
            egn = Trajectory(r["path"]).metrics["effective_grad_norm"]
            skip = max(1, len(egn) // 10)  # the first epochs leave the random initialisation
            peak.append((float(np.max(egn[skip:])), r["elr"], r["regime"]))
    if peak and res["largest_regime1_elr"] is not None:
        top = max(peak)
        one = sorted(e for _, e, g in peak if g == 1)
        twos = sorted(e for _, e, g in peak if g == 2)
        near = {one[-1]} | ({twos[0]} if twos else set())
        if len(one) > 1:
            near.add(one[-2])
        claims.append(claim("sharpness (max eff. grad norm after the first epochs) peaks at the regime 1/2 boundary (Fig. 1 right)",
                            top[1] in near,
                            f"highest peak {top[0]:.4g} at ELR {top[1]:g} (regime {top[2]}); boundary between "
                            f"ELR {one[-1]:g} (last regime 1) and {twos[0] if twos else None} (first regime 2)"))
    plot_regimes(res, __import__("common").out_path("fig1_regimes.png"))
    save("fig1_regimes", {"sweep": sweep, "criteria": res["criteria"],
                          "largest_regime1_elr": res["largest_regime1_elr"],
                          "smallest_regime3_elr": res["smallest_regime3_elr"],
                          "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                          "claims": claims})


if __name__ == "__main__":
    main(*sys.argv[1:])
