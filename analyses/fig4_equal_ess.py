"""Figure 4, Sections 3.2 and 5.2: in the chaotic equilibrium the effective step sizes of all
layers become equal; in regime 1 they are not.

    python analyses/fig4_equal_ess.py [SWEEP_DIR]
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import sweep_inputs, claim, save
from landscape.regimes import regimes
from landscape.trajectory import Trajectory


def main(sweep, tail=0.2):
    res = regimes(sweep)
    rows = [r for r in res["rows"] if r["regime"]]  # not the runs ended by non-finite values
    table = []
    for r in rows:
        t = Trajectory(r["path"])
        k = max(1, int(tail * t.epochs_complete))
        ess = t.group_metrics["effective_step_size"][-k:].mean(0)
        table.append({"elr": r["elr"], "regime": r["regime"], "groups": t.group_names,
                      "ess": ess, "elr_i": t.group_metrics["elr"][-k:].mean(0),
                      "egn_i": t.group_metrics["effective_grad_norm"][-k:].mean(0),
                      "ess_spread": float(ess.std() / ess.mean())})
    two = [e for e in table if e["regime"] == 2]
    one = [e for e in table if e["regime"] == 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if two:
        show = two[len(two) // 2]
        x = np.arange(len(show["groups"]))
        axes[0].bar(x - 0.2, show["elr_i"], 0.4, label="ELR_i")
        axes[0].bar(x + 0.2, show["egn_i"] / show["egn_i"].max() * show["elr_i"].max(), 0.4,
                    label="eff. grad norm (rescaled)")
        axes[0].set_xticks(x, [g.replace(".weight", "") for g in show["groups"]], rotation=30, fontsize=7)
        axes[0].set_title(f"regime 2, ELR {show['elr']:g}: ELR_i and eff. grad norms")
        axes[0].legend(fontsize=7)
    axes[1].plot([e["elr"] for e in table], [e["ess_spread"] for e in table], "ko-", ms=3)
    for e in table:
        axes[1].axvspan(e["elr"] / 1.3, e["elr"] * 1.3, color={1: "tab:blue", 2: "tab:orange", 3: "tab:red"}[e["regime"]], alpha=0.15, lw=0)
    axes[1].set(xscale="log", yscale="log", xlabel="ELR", ylabel="std/mean of layers' effective step sizes",
                title="ESS spread across layers (bands: regime)")
    claims = []
    if two and one:
        s2 = float(np.median([e["ess_spread"] for e in two]))
        s1 = float(np.median([e["ess_spread"] for e in one]))
        claims.append(claim("in regime 2 the layers' effective step sizes equalise (spread far below regime 1's)",
                            s2 < 0.2 and s2 < 0.5 * s1,
                            f"median std/mean of layer ESS (last {tail:.0%} of epochs): regime 2 {s2:.3f}, regime 1 {s1:.3f}"))
    save("fig4_equal_ess", {"sweep": sweep, "tail": tail, "runs": table, "claims": claims}, fig)


if __name__ == "__main__":
    main(sweep_inputs(sys.argv[1:]))
