"""Figure 4, Sections 3.2 and 5.2: in the chaotic equilibrium the effective step sizes (ESS =
ELR_i x effective gradient norm) of all SI groups become equal -- the points (ELR_i, eff. grad
norm_i) of every group lie on one hyperbola ELR_i g_i = const (the dashed line: the groups'
median); in regime 1 they do not.

The groups are every filter of every layer (`--groups filter`, the default of `landscape train`,
as the paper's figure: "each SI parameters group of each layer"); runs trained with layer groups
only are read per layer. Values are means over the last 20% of epochs (the paper: the last 200
of 1000).

    python analyses/fig4_equal_ess.py [SWEEP_DIR ...]   (one per seed; the figure shows the first)
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common import ALPHA, claim, regimes_by_seed, save, script_args, seed_sweeps
from landscape.plots import REGIME_COLORS, new_figure, no_minor_labels, regime_legend
from landscape.regimes import ess_spread



def group_rows(t, curves=None):
    """(per-filter rows if logged else per-layer ones, per-layer rows, scalar rows, level) of a
    run: from ``curves``, the checkpoint metrics the regimes were judged on, when given (the
    paper's protocol), else from training's epoch means."""
    if curves is not None:
        def under(prefix):
            return {k[len(prefix):]: v for k, v in curves.items() if k.startswith(prefix)}
        filters, layers = under("filters/"), under("groups/")
        scalars = curves
    else:
        filters, layers, scalars = t.filter_metrics, t.group_metrics, t.metrics
    level = "filter" if filters else "layer"
    return (filters or layers), layers, scalars, level


def tail_groups(t, tail, curves=None):
    """Per SI group (filters if logged, else layers): tail means of ELR_i (through the mean
    rho_i^2, as logged), effective grad norm and ESS; the layer of each group; the total ESS;
    from the checkpoint metrics ``curves`` when given, else the epoch means."""
    m, _, scalars, level = group_rows(t, curves)
    k = max(1, int(round(tail * len(scalars["train_loss"]))))
    layer = t.filter_layer if level == "filter" else np.arange(len(t.group_names))
    elr_i = t.attrs["lr"] / (m["rho"][-k:] ** 2).mean(0)
    return {"level": level, "layer": layer,
            "elr_i": elr_i, "egn_i": m["effective_grad_norm"][-k:].mean(0),
            "ess_i": m["effective_step_size"][-k:].mean(0),
            "ess_total": float(scalars["effective_step_size"][-k:].mean())}


def positive(*arrays):
    """The mask of the points a log-log axis can show (every value finite and > 0)."""
    mask = np.ones(len(arrays[0]), bool)
    for a in arrays:
        a = np.asarray(a, float)
        mask &= np.isfinite(a) & (a > 0)
    return mask


def scatter(ax, entry, title):
    g = dict(entry["groups"])
    keep = positive(g["elr_i"], g["egn_i"])  # a dead filter (zero gradient) has no place on log axes
    if not keep.any():
        ax.set_title(f"{title}\n(no group with a positive gradient norm)", fontsize=8)
        return
    g.update({k: np.asarray(g[k])[keep] for k in ("elr_i", "egn_i", "layer")})
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
    no_minor_labels(ax)
    ax.legend(fontsize=6)


def spreads(rows, tail):
    """Each run's groups and ESS spreads, read from the metrics its regime was judged on."""
    table = []
    for r in rows:
        curves = r["_curves"] if r["metrics"] == "checkpoint" else None
        g = tail_groups(r["_trajectory"], tail, curves)
        _, layers, scalars, _ = group_rows(r["_trajectory"], curves)
        k = max(1, int(round(tail * len(scalars["train_loss"]))))
        table.append({"elr": r["elr"], "regime": r["regime"], "groups": g, "metrics": r["metrics"],
                      "ess_spread": ess_spread(g["ess_i"]),
                      "layer_ess_spread": ess_spread(layers["effective_step_size"][-k:].mean(0))})
    return table


def main(sweeps, tail=0.2, metrics="auto"):
    # every seed's sweep on its own (the same ELR in two seeds is no duplicate)
    by_seed = regimes_by_seed(sweeps, metrics)
    res = next(iter(by_seed.values()))
    # not the runs ended by non-finite values
    tables = {seed: spreads([r for r in r_["rows"] if r["regime"]], tail) for seed, r_ in by_seed.items()}
    table = next(iter(tables.values()))  # the figure: the first seed
    everything = [e for t in tables.values() for e in t]
    two = [e for e in table if e["regime"] == 2]
    one = [e for e in table if e["regime"] == 1]
    two_all = [e for e in everything if e["regime"] == 2]
    one_all = [e for e in everything if e["regime"] == 1]
    fig, axes = new_figure(3, width=4.6, height=4.0)
    for ax, runs, name in ((axes[0], two, "regime 2"), (axes[1], one, "regime 1")):
        if runs:
            show = runs[len(runs) // 2]
            scatter(ax, show, f"{name}, ELR {show['elr']:g}: one point per {show['groups']['level']}")
        else:
            ax.set_title(f"no {name} run in this sweep")
    ax = axes[2]
    for key, style, label in (("ess_spread", dict(fmt="ko-"), "per SI group (filters)"),
                              ("layer_ess_spread", dict(fmt="s:", color="grey"), "per layer")):
        shown = [e for e in table if positive([e["elr"]], [e[key]])[0]]
        fmt = style.pop("fmt")
        ax.plot([e["elr"] for e in shown], [e[key] for e in shown], fmt, ms=3, label=label, **style)
    for e in table:
        ax.axvspan(e["elr"] / 1.3, e["elr"] * 1.3, color=REGIME_COLORS[e["regime"]], alpha=0.15, lw=0)
    if any(positive([e["elr"]], [e[k]])[0] for e in table for k in ("ess_spread", "layer_ess_spread")):
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel="ELR (effective learning rate)", ylabel="std/mean of the groups' ESS",
           title="ESS spread (bands: the run's regime)" if table else "no run with a regime label")
    first = ax.legend(fontsize=7, loc="upper left")
    ax.add_artist(first)
    regime_legend(ax, regimes=(1, 2, 3), loc="lower right")
    claims = []
    if two_all and one_all:
        # one-sided Mann-Whitney over every seed's runs: regime-2 spreads below regime-1 ones
        from scipy.stats import mannwhitneyu
        s2 = [e["layer_ess_spread"] for e in two_all]
        s1 = [e["layer_ess_spread"] for e in one_all]
        p_layer = float(mannwhitneyu(s2, s1, alternative="less").pvalue)
        claims.append(claim("in regime 2 the layers' effective step sizes equalise (spread far below regime 1's)",
                            p_layer < ALPHA and np.median(s2) < 0.5 * np.median(s1),
                            f"std/mean of the layers' ESS (last {tail:.0%} of epochs), median over {len(s2)} regime-2 "
                            f"runs {np.median(s2):.3f} (range {min(s2):.3f}-{max(s2):.3f}) vs {len(s1)} regime-1 runs "
                            f"{np.median(s1):.3f} ({min(s1):.3f}-{max(s1):.3f}), {len(tables)} seeds; one-sided "
                            f"Mann-Whitney p = {p_layer:.2g} (the labels use the filter spread, not this one)",
                            statistic={"p_value": p_layer}))
        level = two_all[0]["groups"]["level"]
        f2 = [e["ess_spread"] for e in two_all]
        f1 = [e["ess_spread"] for e in one_all]
        p_filter = float(mannwhitneyu(f2, f1, alternative="less").pvalue)
        n = len(two_all[0]["groups"]["ess_i"])
        claims.append(claim(f"in regime 2 every SI group's (each {level}'s) effective step size concentrates at the "
                            f"network's ESS (Fig. 4), unlike regime 1",
                            p_filter < ALPHA and np.median(f2) < 0.5 * np.median(f1),
                            f"std/mean of the {n} groups' ESS, median: regime 2 {np.median(f2):.3f}, regime 1 "
                            f"{np.median(f1):.3f}; one-sided Mann-Whitney p = {p_filter:.2g} (not independent of "
                            f"the labels: 'landscape regimes' requires this spread below its threshold for regime 2)",
                            statistic={"p_value": p_filter}))
    else:  # too few labelled runs to compare: the claim stands undetermined, not silent
        claims.append(claim("in regime 2 the layers' effective step sizes equalise (spread far below regime 1's)",
                            None, f"{len(two_all)} regime-2 and {len(one_all)} regime-1 runs: both are needed"))
    payload = [{"elr": e["elr"], "regime": e["regime"], "ess_spread": e["ess_spread"],
                "layer_ess_spread": e["layer_ess_spread"], "level": e["groups"]["level"],
                "ess_total": e["groups"]["ess_total"], "ess_median": float(np.median(e["groups"]["ess_i"])),
                "elr_i": e["groups"]["elr_i"],
                "effective_grad_norm_i": e["groups"]["egn_i"], "layer_of_group": e["groups"]["layer"]}
               for e in table]
    save("fig4_equal_ess", {"sweeps": sweeps, "tail": tail, "runs": payload,
                            "seeds": {seed: [{"elr": e["elr"], "regime": e["regime"], "ess_spread": e["ess_spread"],
                                              "layer_ess_spread": e["layer_ess_spread"]} for e in t]
                                      for seed, t in tables.items()},
                            "skipped": res["skipped"], "metrics": res["metrics"], "claims": claims}, fig)


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(seed_sweeps(args), metrics=metrics)
