"""The double-descent test on curves with and without a peak, each family drawn N times with
fresh noise: the false-peak rate on no-peak shapes (a flat curve, a convex decay, a plateau then
a drop, a fall with a shelf, a rise that stays up, a step up, a U-shape) and the power on bumps,
under white and AR(1) noise, at several run lengths; 95% Wilson intervals. Every shape scales
with the run: a bump spans the same share of it (sd 8 %, FWHM 19 %) whatever its length.
"prominence 0.05" is a bump of 0.05 where the decay has flattened (it rises and falls 0.05);
"0.05 on a falling decay" is the same bump where the decay still falls, so it rises only 0.02
above the minimum before it. Goal: false peaks <= 2% at alpha = 0.01
(upper bound <= 5%) on every no-peak family; power >= 90% for a bump of 0.05 under white noise
sd 0.02 and >= 70% under AR(1) 0.5.

    python benchmarks/double_descent_calibration.py [--draws 200] [--epochs 60,100,150,300]
"""
import argparse
import math

import numpy as np

from landscape.double_descent import detect_peak
from regime_battery import wilson


def families(e: np.ndarray) -> dict:
    """{name: (mean test-error curve, has a peak)} over epochs ``e`` (1..E)."""
    E = e[-1]
    s = e / E  # the run's progress, so every shape scales with its length
    return {
        "flat": (0.3 + 0 * s, False),
        "convex decay": (0.25 + 0.35 * np.exp(-s / 0.15), False),
        "plateau, then a drop": (0.3 + 0.25 / (1 + np.exp((s - 0.5) / 0.04)), False),
        "two-stage fall with a shelf": (0.2 + 0.2 * np.exp(-s / 0.08) + 0.15 / (1 + np.exp((s - 0.6) / 0.03)), False),
        "rises and stays up": (0.3 + 0.1 / (1 + np.exp(-(s - 0.4) / 0.05)), False),
        "step up": (0.3 + 0.1 * (s > 0.5), False),
        "U-shape": (0.3 + 0.6 * (s - 0.5) ** 2, False),
        "bump, prominence 0.05": (0.25 + 0.35 * np.exp(-s / 0.1) + 0.05 * np.exp(-0.5 * ((s - 0.6) / 0.08) ** 2), True),
        "bump 0.05 on a falling decay": (0.25 + 0.35 * np.exp(-s / 0.15) + 0.05 * np.exp(-0.5 * ((s - 0.5) / 0.08) ** 2), True),
    }


def noise(g, n: int, phi: float, sd: float) -> np.ndarray:
    x = np.zeros(n)
    x[0] = sd * g.standard_normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + sd * math.sqrt(1 - phi ** 2) * g.standard_normal()
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--epochs", default="60,100,150,300")
    p.add_argument("--noise", default="0.0,0.5,0.8", help="AR(1) coefficients (0: white), sd 0.02")
    p.add_argument("--families", default=None, help="comma-separated family names (default: all)")
    args = p.parse_args()
    import time
    start = time.time()
    print(f"{'family':30s} {'epochs':>6} {'AR':>4} {'peaks':>7}  95% CI   (n = {args.draws} each)")
    for E in [int(x) for x in args.epochs.split(",")]:
        e = np.arange(1, E + 1, dtype=float)
        for phi in [float(x) for x in args.noise.split(",")]:
            for name, (mean, peak) in families(e).items():
                if args.families and name not in args.families.split(","):
                    continue
                hits = sum(bool(detect_peak(e, mean + noise(np.random.default_rng(seed), E, phi, 0.02))["double_descent"])
                           for seed in range(args.draws))
                lo, hi = wilson(hits, args.draws)
                kind = "power" if peak else "false"
                print(f"{name:30s} {E:>6} {phi:>4.1f} {100 * hits / args.draws:6.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}] {kind}",
                      flush=True)
    print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
