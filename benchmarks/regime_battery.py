"""The regime classifier on a battery of hard synthetic shapes, each drawn N times with fresh
noise: the share of each label and of confident wrong labels (with a 95% Wilson interval).
Goal: no shape gets a confident wrong label in more than 5% of draws; 'undetermined' is allowed
where a researcher would hesitate.

    python benchmarks/regime_battery.py [--draws 200]
"""
import argparse
import math

import numpy as np

from landscape.regimes import classify_curve

C, LN = 10, math.log(10)


def ar1(g, n, phi, sd):
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + sd * math.sqrt(1 - phi ** 2) * g.standard_normal()
    return x


def group_ess(g, n, equal, groups=40):
    base = np.ones(groups) if equal else np.exp(0.6 * g.standard_normal(groups))
    return base * (1 + 0.05 * g.standard_normal((n, groups)))


def shapes():
    """{name: (draw(g) -> (loss, accuracy, group ESS, tail walk cosine), right labels)}."""
    def tiny_elr(g):  # barely moved after 60 epochs at ELR 1e-7: at ln C, chance accuracy, tiny steps
        n = 60
        return LN * (1 + 0.001 * g.standard_normal(n)), 0.1 + 0.005 * g.standard_normal(n), group_ess(g, n, False), 0.9999

    def converged_equal(g):
        n = 100
        loss = LN * np.exp(-np.arange(1, n + 1) / 8) + 3e-4 * np.exp(0.1 * g.standard_normal(n))
        return loss, np.full(n, 1.0), group_ess(g, n, True), 0.3

    def transition(g):  # an equilibrium that converges in its last part (Fig. 6)
        n = 200
        loss = np.r_[0.8 * np.exp(0.05 * ar1(g, 150, 0.5, 1.0)), 0.8 * np.exp(-np.arange(1, 51) / 6)]
        return loss, np.full(n, 0.99), group_ess(g, n, True), 0.3

    def power_law(n):
        def draw(g):
            t = np.arange(1, n + 1)
            return 2.0 * t ** -0.3 * np.exp(0.01 * g.standard_normal(n)), np.full(n, 0.9), group_ess(g, n, False), 0.9
        return draw

    def final_jump(g):
        n = 100
        loss = LN * np.exp(-np.arange(1, n + 1) / 10) * np.exp(0.05 * g.standard_normal(n))
        loss[-4:] = 2.0 * np.exp(0.1 * g.standard_normal(4))
        return loss, np.full(n, 0.99), group_ess(g, n, False), 0.5

    def equilibrium(g):
        n = 100
        return 0.8 * np.exp(0.1 * ar1(g, n, 0.6, 1.0)), np.full(n, 0.7), group_ess(g, n, True), 0.2

    def divergence(g):
        n = 100
        return (LN * 1.3 * np.exp(0.05 * ar1(g, n, 0.5, 1.0)), 0.1 + 0.01 * g.standard_normal(n),
                group_ess(g, n, False), 1e-30)

    return {"tiny ELR, barely moved (60 ep.)": (tiny_elr, {None}),
            "converged, equal ESS (100 ep.)": (converged_equal, {1}),
            "equilibrium then convergence (200 ep.)": (transition, {1}),
            "t^-0.3 fall, 20 epochs": (power_law(20), {1, None}),
            "t^-0.3 fall, 40 epochs": (power_law(40), {1, None}),
            "t^-0.3 fall, 100 epochs": (power_law(100), {1, None}),
            "converged, jump in the last 4 epochs": (final_jump, {1, None}),
            "chaotic equilibrium, AR(1) 0.6": (equilibrium, {2, None}),
            "divergence, wandering": (divergence, {3, None})}


def wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=200)
    args = p.parse_args()
    print(f"{'shape':40s} {'1':>5} {'2':>5} {'3':>5} {'undet':>6}  {'wrong':>6}  95% CI")
    for name, (draw, right) in shapes().items():
        counts = {1: 0, 2: 0, 3: 0, None: 0}
        for seed in range(args.draws):
            loss, acc, ess, walk = draw(np.random.default_rng(seed))
            counts[classify_curve(loss, acc, C, None, ess, "filter", walk)["regime"]] += 1
        wrong = sum(v for k, v in counts.items() if k not in right and k is not None)
        lo, hi = wilson(wrong, args.draws)
        share = {k: 100 * v / args.draws for k, v in counts.items()}
        print(f"{name:40s} {share[1]:5.1f} {share[2]:5.1f} {share[3]:5.1f} {share[None]:6.1f}  "
              f"{100 * wrong / args.draws:5.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}]")


if __name__ == "__main__":
    main()
