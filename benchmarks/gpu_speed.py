"""GPU speed (issue 16), one command, CIFAR-10-shaped random data (no download):

    python benchmarks/gpu_speed.py                    # on a GPU machine (--device cuda by default there)
    python benchmarks/gpu_speed.py --device cpu --images 1024 --models 1,2 --width 8   # a smoke test

Measured side by side in one run (after a warm-up each):
  official   the official training script's settings: the ConvNet (k = --width), a DataLoader
             over uint8 images with PIL transforms (RandomCrop(32, padding=4), horizontal flip,
             ToTensor, Normalize), batch 128, SGD then the projection onto the sphere, no logging
  bare       the same model and step on tensors already on the device, no logging
  landscape  `landscape.train` (float32; every metric, a checkpoint at the end)
  fast       `landscape.train --precision bf16 --channels-last` (and `--compile` with --compile)
  sweep N    `landscape.sweep --strategy vectorised` of N ELRs, aggregate images/s
and the projected wall time of the paper's Figure 1 sweep (24 ELRs x 1000 epochs of 50,000
images) from the best measured sweep throughput.
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

import landscape.training as training
from landscape.data import Dataset
from landscape.models import build_model, model_spec, si_groups
from landscape.sphere import group_sq_norms, projected_sgd_step
from landscape.sweep import sweep


def random_cifar(images: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 32, 32, 3), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (images,), generator=g)
    return x, y


def normalised(x_uint8, device):
    x = x_uint8.permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return ((x - mean) / std).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_and_sphere(width, device):
    model = build_model(model_spec("convnet", (3, 32, 32), 10, width=width), 0).to(device)
    params = [p for _, p in si_groups(model)]
    rho = float(group_sq_norms(params).detach().sum().sqrt())
    return model, params, rho


def official_epoch(x_uint8, y, width, device, workers):
    """The official script's input pipeline: PIL images through torchvision transforms."""
    from PIL import Image
    from torch.utils.data import DataLoader
    import torchvision.transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return transform(Image.fromarray(x_uint8[i].numpy())), int(y[i])
    loader = DataLoader(Images(), batch_size=128, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model, params, rho = model_and_sphere(width, device)
    lr = 1e-3 * rho ** 2
    model.train()

    def run():
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            grads = torch.autograd.grad(F.cross_entropy(model(xb), yb), params)
            projected_sgd_step(params, grads, lr, rho)
        sync(device)
    return run


def bare_epoch(x, y, width, device):
    model, params, rho = model_and_sphere(width, device)
    lr = 1e-3 * rho ** 2
    model.train()

    def run():
        order = torch.randperm(len(y), device=device)
        for i in range(0, len(y), 128):
            idx = order[i:i + 128]
            grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), params)
            projected_sgd_step(params, grads, lr, rho)
        sync(device)
    return run


def timed(fn, repeats):
    fn()  # warm-up (cuDNN autotuning, compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--models", default="1,4,8,24", help="sweep sizes to measure")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the official pipeline")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    x_uint8, y_cpu = random_cifar(args.images, device)
    x, y = normalised(x_uint8, device), y_cpu.to(device)
    data = Dataset("random-cifar", x, y, x[:1000], y[:1000], 10)
    training.load_dataset = lambda *a, **k: data  # timing only: the in-process paths see it
    folder = tempfile.mkdtemp()
    # augmentation on (crop + flip on the device), as the official pipeline augments
    base = dict(model="convnet", width=args.width, epochs=1, device=args.device, save_every=1,
                batch_size=128, progress=False, augment=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, ConvNet k={args.width}, {args.images} CIFAR-shaped images")

    def landscape_run(**kw):
        return lambda: training.train(out=os.path.join(folder, f"t{time.perf_counter_ns()}.h5"), **{**base, **kw})
    epoch = {
        "official": timed(official_epoch(x_uint8, y_cpu, args.width, device, args.workers), args.repeats),
        "bare": timed(bare_epoch(x, y, args.width, device), args.repeats),
        "landscape": timed(landscape_run(), args.repeats),
        "fast": timed(landscape_run(precision="bf16", channels_last=True, compile=args.compile), args.repeats),
    }
    for k, v in epoch.items():
        print(f"{k:<10} {v * 1000:9.1f} ms/epoch  {args.images / v:10.0f} images/s  "
              f"official / this = {epoch['official'] / v:5.2f}x")
    best = 0.0
    for n in [int(m) for m in args.models.split(",")]:
        elrs = list(np.geomspace(1e-5, 1.0, n)) if n > 1 else [1e-3]
        out = os.path.join(folder, f"sweep{n}")
        t = timed(lambda: sweep(elrs, out + str(time.perf_counter_ns()), strategy="vectorised",
                                progress=False, **{k: v for k, v in base.items() if k != "progress"}), 1)
        rate = n * args.images / t
        best = max(best, rate)
        print(f"sweep {n:>3} models (vectorised): {t:8.2f} s/epoch  {rate:10.0f} images/s aggregate")
    total = 24 * 1000 * 50000
    print(f"projected Figure 1 sweep (24 ELRs x 1000 epochs x 50,000 images) at the best aggregate "
          f"rate: {total / best / 3600:.2f} h")


if __name__ == "__main__":
    main()
