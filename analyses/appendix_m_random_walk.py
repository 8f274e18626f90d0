"""Appendix M: the third regime against a random walk on the sphere. Each run's angle to its
start (checkpoint metrics, every epoch from 0) is compared with random walks on S^(D-1) that take
the run's own step sizes (`landscape random-walk`: a Monte Carlo global envelope test, 999 walks,
alpha 0.01). The paper: "if the total ELR is set too high, the chaos will dominate equilibration
and the optimization dynamics will resemble a random walk" (Section 3.2).

Claim: every regime-3 run forgets its start as a random walk with its steps does (verdict
"random walk", or "random walk in ~k of D dimensions": it forgets its start as a walk does but
spreads as one on a smaller sphere), and no regime-1 run does (the contrast that makes the test
informative).

    python analyses/appendix_m_random_walk.py [SWEEP_DIR ...]   (one per seed)
"""
import sys

from common import claim, out_path, regimes_by_seed, save, script_args, seed_sweeps
from landscape.plots.random_walk import plot_random_walk
from landscape.random_walk import random_walk


def walks_like(row) -> bool:
    return row["verdict"].startswith("random walk")


def judge(rows_by_regime: dict):
    """(confirmed, evidence) from {regime: [random-walk rows]}: None without regime-3 runs or
    without regime-1 runs to contrast them with."""
    threes, ones = rows_by_regime.get(3, []), rows_by_regime.get(1, [])
    if not threes or not ones:
        return None, f"{len(threes)} regime-3 and {len(ones)} regime-1 runs: both are needed"
    ok3 = sum(walks_like(r) for r in threes)
    ok1 = sum(not walks_like(r) for r in ones)
    return (ok3 == len(threes) and ok1 == len(ones),
            f"{ok3} of {len(threes)} regime-3 runs move like a random walk with their steps; "
            f"{ok1} of {len(ones)} regime-1 runs do not")


def main(sweeps, metrics="auto"):
    labels = {}
    for res in regimes_by_seed(sweeps, metrics).values():
        labels.update({r["path"]: r["regime"] for r in res["rows"]})
    result = random_walk(sweeps)
    by_regime = {}
    for r in result["rows"]:
        r["regime"] = labels.get(r["path"])
        by_regime.setdefault(r["regime"], []).append(r)
    confirmed, evidence = judge(by_regime)
    detail = "; ".join(f"ELR {r['rate']:g} (regime {r['regime'] or '?'}): {r['verdict']}, final angle "
                       f"{r['final_angle_deg']:.1f} deg vs walk {r['final_walk_angle_deg']:.1f}, p = {r['p_value']:.3g}"
                       for r in result["rows"] if r["regime"] in (1, 3))
    claims = [claim("in regime 3 the SI vector moves like a random walk on the sphere (Appendix M)",
                    confirmed, f"{evidence}: {detail}",
                    statistic={"regime3_walks": sum(walks_like(r) for r in by_regime.get(3, [])),
                               "regime3_runs": len(by_regime.get(3, [])),
                               "regime1_not_walks": sum(not walks_like(r) for r in by_regime.get(1, [])),
                               "regime1_runs": len(by_regime.get(1, []))})]
    first = [r for r in result["rows"] if r["path"].startswith(sweeps[0].rstrip("/"))]
    shown = [r for r in first if r["regime"] in (1, 3)] or first  # the contrast, else every run
    if shown:
        plot_random_walk({**result, "rows": shown}, out_path("appendix_m_random_walk.png"))
    else:
        print("no run to draw: appendix_m_random_walk.png not written")
    keep = ("path", "rate", "regime", "verdict", "p_value", "statistic", "direction", "mean_deviation_deg",
            "max_deviation_deg", "effective_dimension", "forgets_start", "final_angle_deg",
            "final_walk_angle_deg", "dimension")
    save("appendix_m_random_walk", {"sweeps": sweeps, "metrics": "checkpoint", "walks": result["walks"],
                                    "alpha": result["alpha"], "skipped": result["skipped"],
                                    "runs": [{k: r.get(k) for k in keep} for r in result["rows"]],
                                    "claims": claims})


if __name__ == "__main__":
    args, metrics = script_args(sys.argv[1:])
    main(seed_sweeps(args), metrics)
