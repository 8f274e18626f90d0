"""Figure 4, Sections 3.2 and 5.2: in the chaotic equilibrium the effective step sizes (ESS =
ELR_i x effective gradient norm) of all SI groups become equal -- the points (ELR_i, eff. grad
norm_i) of every group lie on one hyperbola ELR_i g_i = const (the dashed line: the groups'
median); in regime 1 they do not.

The groups are every filter of every layer (`--groups filter`, the default of `landscape train`,
as the paper's figure: "each SI parameters group of each layer"); runs trained with layer groups
only are read per layer. Values are means over the last 20% of epochs (the paper: the last 200
of 1000).

    python analyses/fig4_equal_ess.py [SWEEP_DIR...]
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import script_args, sweep_inputs, claim, save
from landscape.regimes import ess_spread, regimes

REGIME_COLOURS = {1: "tab:blue", 2: "tab:orange", 3: "tab:red"}


def tail_groups(t, tail):
    """Per SI group (filters if logged, else layers): tail means of ELR_i (through the mean
    rho_i^2, as logged), effective grad norm and ESS; the layer of each group; the total ESS."""
    k = max(1, int(round(tail * t.epochs_complete)))
    filters = bool(t.filter_metrics)
    m = t.filter_metrics if filters else t.group_metrics
    layer = t.filter_layer if filters else np.arange(len(t.group_names))
    elr_i = t.attrs["lr"] / (m["rho"][-k:] ** 2).mean(0)
    return {"level": "filter" if filters else "layer", "layer": layer,
            "elr_i": elr_i, "egn_i": m["effective_grad_norm"][-k:].mean(0),
            "ess_i": m["effective_step_size"][-k:].mean(0),
            "ess_total": float(t.metrics["effective_step_size"][-k:].mean())}


def scatter(ax, entry, title):
    g = entry["groups"]
    cmap = plt.get_cmap("viridis")
    layers = g["layer"]
    for j in np.unique(layers):
        sel = layers == j
        ax.scatter(g["elr_i"][sel], g["egn_i"][sel], s=8, alpha=0.7,
                   color=cmap(j / max(1, layers.max())), label=f"layer {j + 1}")
    x = np.geomspace(g["elr_i"].min() / 1.5, g["elr_i"].max() * 1.5, 50)
    # the groups' common value, in the plotted quantities (the product of the tail means; per
    # step the network's squared ESS is the weighted mean of the groups' squared ones, eq. (4),
    # so the network's time-mean ESS sits higher whenever the groups' values fluctuate)
    common = float(np.median(g["elr_i"] * g["egn_i"]))
    ax.plot(x, common / x, "k--", lw=1, label=f"ELR_i g_i = {common:.3g} (median)")
    ax.set(xscale="log", yscale="log", xlabel="individual ELR_i",
           ylabel="effective gradient norm g_i", title=title)
    ax.legend(fontsize=6)


def main(sweeps, tail=0.2, metrics="auto"):
    res = regimes(sweeps, metrics=metrics)
    rows = [r for r in res["rows"] if r["regime"]]  # not the runs ended by non-finite values
    table = []
    for r in rows:
        g = tail_groups(r["_trajectory"], tail)
        table.append({"elr": r["elr"], "regime": r["regime"], "groups": g,
                      "ess_spread": ess_spread(g["ess_i"]),
                      "layer_ess_spread": ess_spread(r["_trajectory"].group_metrics["effective_step_size"]
                                                 [-max(1, int(round(tail * r["epochs"]))):].mean(0))})
    two = [e for e in table if e["regime"] == 2]
    one = [e for e in table if e["regime"] == 1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, runs, name in ((axes[0], two, "regime 2"), (axes[1], one, "regime 1")):
        if runs:
            show = runs[len(runs) // 2]
            scatter(ax, show, f"{name}, ELR {show['elr']:g}: one point per {show['groups']['level']}")
        else:
            ax.set_title(f"no {name} run in this sweep")
    ax = axes[2]
    ax.plot([e["elr"] for e in table], [e["ess_spread"] for e in table], "ko-", ms=3,
            label="per SI group (filters)")
    ax.plot([e["elr"] for e in table], [e["layer_ess_spread"] for e in table], "s:", color="grey",
            ms=3, label="per layer")
    for e in table:
        ax.axvspan(e["elr"] / 1.3, e["elr"] * 1.3, color=REGIME_COLOURS[e["regime"]], alpha=0.15, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="ELR", ylabel="std/mean of the groups' ESS",
           title="ESS spread (bands: regime 1 blue, 2 orange, 3 red)")
    ax.legend(fontsize=7)
    claims = []
    if two and one:
        s2 = float(np.median([e["layer_ess_spread"] for e in two]))
        s1 = float(np.median([e["layer_ess_spread"] for e in one]))
        claims.append(claim("in regime 2 the layers' effective step sizes equalise (spread far below regime 1's)",
                            s2 < 0.2 and s2 < 0.5 * s1,
                            f"median std/mean of layer ESS (last {tail:.0%} of epochs): regime 2 {s2:.3f}, regime 1 {s1:.3f}"))
        level = two[0]["groups"]["level"]
        f2 = float(np.median([e["ess_spread"] for e in two]))
        f1 = float(np.median([e["ess_spread"] for e in one]))
        n = len(two[0]["groups"]["ess_i"])
        claims.append(claim(f"in regime 2 every SI group's (each {level}'s) effective step size concentrates at the "
                            f"network's ESS (Fig. 4), unlike regime 1",
                            f2 < 0.5 * f1,
                            f"median std/mean of the {n} groups' ESS: regime 2 {f2:.3f}, regime 1 {f1:.3f} "
                            f"(not independent of the labels: 'landscape regimes' requires this spread "
                            f"below its threshold for regime 2)"))
    payload = [{"elr": e["elr"], "regime": e["regime"], "ess_spread": e["ess_spread"],
                "layer_ess_spread": e["layer_ess_spread"], "level": e["groups"]["level"],
                "ess_total": e["groups"]["ess_total"], "ess_median": float(np.median(e["groups"]["ess_i"])),
                "elr_i": e["groups"]["elr_i"],
                "effective_grad_norm_i": e["groups"]["egn_i"], "layer_of_group": e["groups"]["layer"]}
               for e in table]
    save("fig4_equal_ess", {"sweeps": sweeps, "tail": tail, "runs": payload,
                            "skipped": res["skipped"], "metrics": res["metrics"], "claims": claims}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(sweep_inputs(args), metrics=metrics)
