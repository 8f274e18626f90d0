"""Per-epoch time of `landscape train` (metrics + HDF5 on) against a bare PyTorch loop over the
same model, batches and test pass. Both run in this process, interleaved, so machine noise hits
both alike; the ratio is what counts.

    python benchmarks/train_overhead.py [--epochs 5] [--rounds 4] [--model convnet] [--width 32]
"""
import os
import tempfile
import time

import torch
import torch.nn.functional as F

from landscape import build_model, load_dataset, model_spec, train
from landscape.data import train_batches
from landscape.measure import test_metrics as evaluate
from timing import interleaved, training_args


def bare_run(args, data):
    """The loop a user would write: forward, backward, SGD step, test pass. No sphere, no
    metrics, no file."""
    model = build_model(model_spec(args.model, data.input_shape, data.num_classes, args.width), 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3 * 12.6 ** 2)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, y in train_batches(data, 128, epoch, 0):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        evaluate(model, data.x_test, data.y_test)


def landscape_run(args, folder):
    """The whole `landscape train` run, file creation and every checkpoint write included."""
    train(out=os.path.join(folder, f"b{time.perf_counter_ns()}.h5"), model=args.model,
          width=args.width, epochs=args.epochs, device="cpu", progress=False,
          data_root=args.data_root, save_every=1, checkpoint_metrics=False)  # training speed: the checkpoint metrics' pass is timed by checkpoint_metrics_cost.py


def main():
    args = training_args(__doc__, device=False)
    data = load_dataset("mnist1d", args.data_root)
    with tempfile.TemporaryDirectory() as folder:
        t = interleaved({"bare": lambda: bare_run(args, data),
                         "landscape": lambda: landscape_run(args, folder)}, args.rounds)
    b, o = t["bare"] / args.epochs, t["landscape"] / args.epochs
    print(f"model {args.model} width {args.width}, MNIST-1D, torch threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved runs of {args.epochs} epochs each, whole-run time / epochs "
          f"(landscape: --save-every 1; test pass every epoch in both)")
    print(f"bare PyTorch loop : median {b * 1000:8.1f} ms/epoch")
    print(f"landscape train   : median {o * 1000:8.1f} ms/epoch")
    print(f"overhead          : {100 * (o / b - 1):+.1f}%  (ratio {o / b:.3f})")


if __name__ == "__main__":
    main()
