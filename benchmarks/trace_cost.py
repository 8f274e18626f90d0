"""What a checkpoint's trace costs on the official data (the whole training set in stored order,
train-mode BatchNorm), ours against the official estimate (5 Gaussian probes, one HVP each over
the whole set, as the official code's Hessian trace: every product recomputes each batch's
gradient graph, a forward and a double backward per batch), for the same standard error.

Measures on the default ConvNet (k=32) on MNIST-1D after a short training: the per-probe
standard deviation of v^T H v for Gaussian probes (the official estimator) and Rademacher probes
(ours; their variance lacks the diagonal's share), n probes each, and the time of one HVP over
the whole set and of one training epoch. Prints the probes each needs for the official 5-probe
standard error, their cost per checkpoint, and that cost in training epochs (the unit that
carries over to CIFAR-10: both the HVPs and an epoch scale with the training set).

    python benchmarks/trace_cost.py [--probes 24] [--data-root data]
"""
import argparse
import math
import tempfile
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def main():
    from landscape import train
    from landscape.data import resolve_device
    from landscape.hessian import Curvature
    from landscape.measure import fixed_order_batches
    from landscape.analysis import analysis_data
    p = argparse.ArgumentParser()
    p.add_argument("--probes", type=int, default=24)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    out = tempfile.mkdtemp() + "/t.h5"
    t0 = time.perf_counter()
    t = train(out=out, epochs=args.epochs, elr=1e-3, data_root=args.data_root, progress=False,
              checkpoint_metrics=False)
    epoch_s = (time.perf_counter() - t0) / args.epochs
    data = analysis_data(t.config, args.data_root, resolve_device("cpu"), torch.float32)
    batches = list(fixed_order_batches(data, t.config["batch_size"]))
    curv = Curvature(t.load_model(), batches, bn="batch")
    t0 = time.perf_counter()
    curv._vjp()
    lin_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    samples, hvp_s = {"gaussian (official)": [], "rademacher (ours)": []}, []
    for _ in range(args.probes):
        for name in samples:
            v = torch.randn(curv.dim, generator=gen) if name.startswith("gaussian") else \
                torch.randint(0, 2, (curv.dim,), generator=gen, dtype=torch.float32).mul_(2).sub_(1)
            t0 = time.perf_counter()
            hv = curv.hvp(v)
            hvp_s.append(time.perf_counter() - t0)
            samples[name].append(float(v @ hv))
    hvp = float(np.median(hvp_s))
    official_s = official_hvp_seconds(t.load_model(), batches)
    print(f"ConvNet k=32, MNIST-1D, {len(batches)} batches ({sum(len(y) for _, y in batches)} examples), "
          f"{curv.dim:,} SI parameters, after {args.epochs} epochs at ELR 1e-3; {args.probes} probes each; "
          f"torch threads {torch.get_num_threads()}")
    print(f"one training epoch {epoch_s:.2f} s; one HVP over the whole set: ours {hvp:.2f} s after a "
          f"linearisation of {lin_s:.2f} s once per checkpoint, the official way {official_s:.2f} s")
    sd = {k: float(np.std(v, ddof=1)) for k, v in samples.items()}
    target = sd["gaussian (official)"] / math.sqrt(5)
    for name, values in samples.items():
        official = name.startswith("gaussian")
        need = 5 if official else max(1, math.ceil((sd[name] / target) ** 2))
        cost = need * official_s if official else lin_s + need * hvp
        print(f"{name:20s}: mean {np.mean(values):10.4g}, per-probe sd {sd[name]:9.4g}; probes for the "
              f"official 5-probe standard error ({target:.4g}): {need}, cost per checkpoint {cost:.1f} s "
              f"= {cost / epoch_s:.2f} training epochs")
    print(f"variance ratio Rademacher / Gaussian {(sd['rademacher (ours)'] / sd['gaussian (official)']) ** 2:.3f}")


def official_hvp_seconds(model, batches, repeats: int = 3) -> float:
    """Median time of one product the official way: for each batch a forward pass, the
    gradient with its graph, and the gradient of <gradient, v> (train-mode BatchNorm)."""
    from landscape.models import si_groups, with_batch_statistics
    import torch.nn.functional as F
    m = with_batch_statistics(model)
    params = [p for _, p in si_groups(m)]
    v = [torch.randn_like(p) for p in params]
    n = sum(len(y) for _, y in batches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, y in batches:
            loss = F.cross_entropy(m(x), y, reduction="sum") / n
            g = torch.autograd.grad(loss, params, create_graph=True)
            torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


if __name__ == "__main__":
    main()
