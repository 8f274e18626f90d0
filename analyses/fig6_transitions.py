"""Figure 6, Section 5.3: train loss of ELRs across the regimes and the transitions between them
(a run near the 1/2 boundary that first holds an equilibrium level, then suddenly converges).

    python analyses/fig6_transitions.py [SWEEP_DIR]
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import script_args, sweep_inputs, claim, save
from landscape.regimes import regimes


def late_drop(loss, plateau=(0.2, 0.4), factor=5.0):
    """Epoch where a run that sat on a plateau (loss changing < 30% across the plateau window)
    falls ``factor`` below it afterwards; None if it never does."""
    n = len(loss)
    a, b = int(plateau[0] * n), int(plateau[1] * n)
    level = loss[a:b].mean()
    flat = abs(loss[b - 1] / loss[a] - 1) < 0.3
    hit = np.flatnonzero(loss[b:] < level / factor)
    return (b + int(hit[0]) + 1) if flat and len(hit) else None


def main(sweep, metrics="auto"):
    res = regimes(sweep, metrics=metrics)
    rows = [r for r in res["rows"] if r["regime"]]  # not the runs ended by non-finite values
    fig, ax = plt.subplots(figsize=(6, 4))
    table = []
    for r in rows:
        m = r["_curves"]
        drop = late_drop(m["train_loss"])
        table.append({"elr": r["elr"], "regime": r["regime"], "final_train_loss": r["final_train_loss"],
                      "late_convergence_epoch": drop})
        ax.plot(m["epoch"], m["train_loss"], lw=1, label=f"{r['elr']:g} ({r['regime']})")
    ax.set(yscale="log", xlabel="epoch", ylabel="train loss", title="regimes and transitions")
    ax.legend(fontsize=6, ncol=2)
    ones = [e for e in table if e["regime"] == 1]
    transitions = [e for e in ones if e["late_convergence_epoch"] is not None]
    boundary = max(e["elr"] for e in ones) if ones else None
    claims = [claim("near the regime 1/2 boundary a run can hold an equilibrium level, then suddenly converge",
                    bool(transitions) and boundary in [e["elr"] for e in transitions] + [None],
                    ("late convergence at " + ", ".join(f"ELR {e['elr']:g} (epoch {e['late_convergence_epoch']})" for e in transitions))
                    if transitions else f"no regime-1 run left a plateau late; the largest regime-1 ELR is {boundary}")]
    save("fig6_transitions", {"sweep": sweep, "runs": table, "claims": claims,
                              "metrics": res["metrics"]}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(sweep_inputs(args), metrics)
