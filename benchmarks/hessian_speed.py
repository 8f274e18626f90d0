"""Curvature speed on the default ConvNet (k=32, MNIST-1D), measured side by side in one run:
(1) ``hvp``: one HVP against one gradient, (2) ``trace``: our Hutchinson trace against
PyHessian's with the same probes M, model, batch and BN mode (running statistics: PyHessian's
convention), (3) ``streamed-ggn``: one streamed GGN product (batch by batch, as above 8192
examples) with each batch's J v by a ``torch.func.linearize`` trace against forward-mode ``jvp``.

    python benchmarks/hessian_speed.py [--probes 32] [--batches 4] [--repeats 3] [--parts hvp,trace,streamed-ggn]
"""
import argparse
import warnings

import torch

from landscape import build_model, load_dataset, model_spec
from landscape.data import train_batches
from landscape.hessian import Curvature, hutchinson_trace
from timing import interleaved, median_seconds

warnings.filterwarnings("ignore")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--batches", type=int, default=4, help="mini-batches of a seeded shuffle, as `landscape sharpness --batches B` (default 4)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default="data")
    p.add_argument("--parts", default="hvp,trace,streamed-ggn")
    args = p.parse_args()
    parts = args.parts.split(",")
    data = load_dataset("mnist1d", args.data_root)
    model = build_model(model_spec("convnet", data.input_shape, 10), 0)
    batches = list(train_batches(data, 128, 0, 0))[:args.batches]
    model.train()
    with torch.no_grad():  # realistic running statistics for eval mode
        for x, _ in batches:
            model(x)
    v = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad))
    V = torch.randn(8, v.numel())

    print(f"ConvNet k=32 on MNIST-1D, {v.numel()} SI parameters, {args.batches} batch(es) of 128, "
          f"torch threads {torch.get_num_threads()}")
    for bn in ("batch", "running") if "hvp" in parts else ():
        curv = {m: Curvature(model, batches, bn=bn, hvp_mode=m) for m in ("rev", "fwd")}
        t_grad = median_seconds(lambda: torch.func.grad(curv["fwd"].loss)(curv["fwd"].theta), args.repeats)
        t_lin = median_seconds(lambda: Curvature(model, batches, bn=bn)._vjp(), args.repeats)
        t_rev = median_seconds(lambda: curv["rev"].hvp(v), args.repeats)
        t_rev8 = median_seconds(lambda: curv["rev"].hvp_batch(V), args.repeats) / 8
        t_fwd = median_seconds(lambda: curv["fwd"].hvp(v), args.repeats)
        print(f"[bn {bn}] gradient {t_grad * 1e3:.0f} ms | HVP/gradient: rev {t_rev / t_grad:.2f}x, "
              f"rev under vmap (8 probes) {t_rev8 / t_grad:.2f}x, fwd (jvp of grad) {t_fwd / t_grad:.2f}x; "
              f"one-off linearisation {t_lin / t_grad:.2f}x")

    if "streamed-ggn" in parts:
        curv = Curvature(model, batches, bn="batch", matrix="ggn", streamed=True)
        traced = median_seconds(lambda: curv._streamed(v[None], curv._ggn_of_batch), args.repeats)
        forward = median_seconds(lambda: curv._streamed(v[None], curv._streamed_ggn_of_batch), args.repeats)
        t_grad = median_seconds(lambda: curv.gradient(curv.theta), args.repeats)
        print(f"streamed GGN product, {args.batches} batch(es) of 128, bn batch: linearize trace per batch "
              f"{traced:.2f} s ({traced / t_grad:.1f}x a gradient), forward-mode jvp {forward:.3f} s "
              f"({forward / t_grad:.1f}x) -> {traced / forward:.0f}x faster")
    if "trace" not in parts:
        return
    import pyhessian
    crit = torch.nn.CrossEntropyLoss()
    for nb in sorted({1, args.batches}):
        chosen = list(train_batches(data, 128, 0, 0))[:nb]

        def ours():
            hutchinson_trace(Curvature(model, chosen, bn="running"), args.probes, seed=0)

        def theirs():
            if nb == 1:  # PyHessian's single-batch path keeps the gradient graph
                h = pyhessian.hessian(model, crit, data=chosen[0], cuda=False)
            else:        # its data-loader path recomputes each batch's gradient for every probe
                h = pyhessian.hessian(model, crit, dataloader=chosen, cuda=False)
            h.trace(maxIter=args.probes, tol=-1.0)
            model.zero_grad(set_to_none=True)

        t = interleaved({"ours": ours, "theirs": theirs}, args.repeats)
        a, b = t["ours"], t["theirs"]
        print(f"trace, M={args.probes} probes, {nb} batch(es) of 128, bn running, set-up included: "
              f"landscape {a:.2f} s, PyHessian {b:.2f} s -> landscape {b / a:.2f}x faster")


if __name__ == "__main__":
    main()
