"""The 1-D models' convolutions on the CPU: the library's kernels (``nn.Conv1d`` and
``nn.BatchNorm1d`` on (B, C, L) signals) against the time-major matrix products of
``landscape.models.Conv1d`` / ``BatchNorm1d``, side by side in one run. One "pass" is what a
training epoch and the checkpoint metrics each cost: forward and backward over the whole
training set (4000 signals of length 40) in batches of 128, train-mode BN, one thread.

    python benchmarks/conv_layout.py [--repeats 5]
"""
import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from landscape import models
from landscape.models import build_model, make_conventional, model_spec


def library_kernels(model: nn.Module) -> nn.Module:
    """The same model, weights and buffers with ``nn.Conv1d`` / ``nn.BatchNorm1d`` forwards."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) is models.Conv1d:
            module.__class__ = nn.Conv1d
        elif type(module) is models.BatchNorm1d:
            module.__class__ = nn.BatchNorm1d
    return model


def seconds_per_pass(model, x, y, repeats):
    params = [p for p in model.parameters() if p.requires_grad]

    def one_pass():
        for i in range(0, len(x), 128):
            torch.autograd.grad(F.cross_entropy(model(x[i:i + 128]), y[i:i + 128]), params)
    one_pass()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4000, 1, 40, generator=gen), torch.randint(0, 10, (4000,), generator=gen)
    cases = {"ConvNet k=16 (the recipe)": build_model(model_spec("convnet", (1, 40), 10, width=16), 0),
             # the post-activation variant: the row recorded since the first run of this script
             "ResNet-18 w=8 post-act., conventional":
                 make_conventional(build_model(model_spec("resnet18-post", (1, 40), 10, width=8), 0)),
             "ResNet-18 w=8 pre-act., conventional (Section 6)":
                 make_conventional(build_model(model_spec("resnet18", (1, 40), 10, width=8), 0))}
    print(f"one pass = forward + backward over {len(x)} signals in batches of 128, one thread; best of {args.repeats}")
    for name, model in cases.items():
        model.train()
        old = seconds_per_pass(library_kernels(model), x, y, args.repeats)
        new = seconds_per_pass(model, x, y, args.repeats)
        print(f"{name:48s} library kernels {old:.3f} s  time-major {new:.3f} s  speed-up {old / new:.2f}x", flush=True)


if __name__ == "__main__":
    main()
