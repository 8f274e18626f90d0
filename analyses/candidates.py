"""The regime map (ELR -> regime, from `landscape regimes`) of candidate CPU-scale settings, as
the Markdown table in REPRODUCTION.md ("Choosing the CPU-scale setting").

    python analyses/candidates.py NAME=SWEEP_DIR [NAME=SWEEP_DIR ...]   (analyses/candidates.sh runs them)

Per setting: the label at each ELR of the {1,2,5}x10^-k grid (1, 2, 3, ? undetermined, x
non-finite), whether the labels are in order, the longest run of consecutive regime-2 grid
points, and the best test accuracy (how learnable the task still is).
"""
import sys

from common import save
from landscape.regimes import regimes


def regime_map(folder, metrics="auto"):
    res = regimes([folder], metrics=metrics)
    rows = sorted(res["rows"], key=lambda r: r["rate"])
    marks = {r["rate"]: ("x" if r["name"] == "nonfinite" else str(r["regime"] or "?")) for r in rows}
    longest = best = 0
    for r in rows:
        best = best + 1 if r["regime"] == 2 else 0
        longest = max(longest, best)
    return {"map": marks, "ordered": res["ordered"], "regime2_points": longest,
            "all_three": {1, 2, 3} <= {r["regime"] for r in rows},
            "best_test_accuracy": max(r["test_accuracy"] for r in rows if r["test_accuracy"] == r["test_accuracy"]),
            "metrics": res["metrics"]}


def main(pairs):
    table = {}
    for pair in pairs:
        name, _, folder = pair.rpartition("=")  # names may hold "=" (mnist1d:noise=2)
        table[name] = regime_map(folder)
    rates = sorted({e for t in table.values() for e in t["map"]})
    print("| setting | " + " | ".join(f"{e:g}" for e in rates) + " | in order | regime-2 points | best test acc. |")
    print("| --- |" + " --- |" * (len(rates) + 3))
    for name, t in table.items():
        print(f"| {name} | " + " | ".join(t["map"].get(e, "") for e in rates) +
              f" | {'yes' if t['ordered'] and t['all_three'] else 'no'} | {t['regime2_points']} | "
              f"{t['best_test_accuracy']:.3f} |")
    save("candidates", {"settings": {k: {**v, "map": {f"{e:g}": m for e, m in v["map"].items()}}
                                     for k, v in table.items()}})


if __name__ == "__main__":
    main(sys.argv[1:])
