"""GPU speed: one command, CIFAR-10-shaped random data (no download).

    python benchmarks/gpu_speed.py --json OUT.json           # on a GPU machine (cuda by default there)
    python benchmarks/gpu_speed.py --device cpu --images 512 --sweep-images 256 --width 4 \\
        --models 1,2 --repeats 1 --workers 0                  # the CPU smoke test (tests/test_gpu_benchmark.py)

Measured side by side in one run, each after a warm-up (cuDNN autotuning, compilation), every
figure a median over --repeats epochs; the JSON is rewritten after every measurement, so a run
cut short keeps what it measured, and a contender that fails records its error and the rest go on.

Single run, one epoch of --images images, batch 128, no test pass in any contender (the
official run scripts also evaluate every epoch; left out of both sides), `landscape` writing
its checkpoint every epoch (the official loop saves nothing here: our side pays more):
  official        the official training script's settings: the ConvNet (k = --width), a
                  DataLoader (--workers processes, pinned memory) over uint8 images with its PIL
                  transforms (Resize(32), RandomCrop(32, padding=4), horizontal flip, ToTensor,
                  Normalize), then per step backward, torch.optim.SGD, zero_grad, the rescaling to
                  the initial SI norm from each SI tensor's norm read on the host, and the loss
                  and accuracy read on the host (its training loop)
  bare            the same model and projected step on uint8 tensors already on the device,
                  cropped / flipped / normalised there, no statistics
  graphed         `bare` with the whole step (forward, backward, projection) captured once as a
                  CUDA graph and replayed (CUDA only)
  landscape       `landscape.train`: every metric, per-filter groups, a checkpoint each epoch
  +bf16+cl        --precision bf16 --channels-last
  +compile        ... --compile (forward and update compiled, inductor)
  +reduce-overhead ... --compile --compile-mode reduce-overhead (CUDA graphs of the compiled parts)
  resnet18 ...    (--resnet18) `landscape.train` of ResNet-18, float32 and +bf16+cl
plus `host syncs`: one epoch of `landscape.train`'s loop under torch.cuda.set_sync_debug_mode
("error"), which raises at the first operation that waits on the GPU (CUDA only).

Sweeps of N models (--models), one epoch of --sweep-images images each, aggregate images/s
(N x images / wall time):
  bare-vmap       vmap of grad of functional_call, the projected step batched, no statistics
  bare-grouped    one wide ConvNet: the first convolution with N k outputs, the others grouped
                  (groups = N), BatchNorm over all N k channels, the heads as one einsum (a check
                  against the N models' outputs comes first)
  vectorised      `landscape.sweep --strategy vectorised` (float32; +bf16; +bf16+compile at the
                  largest N only: compiling costs a minute each)
  streams         `landscape.sweep --strategy streams` (float32; +bf16+cl)
  processes       N concurrent processes, each `landscape.train` (N <= --max-processes)
and the projected wall time of the paper's Figure 1 sweep (24 ELRs x 1000 epochs of 50,000
images) from the best aggregate rate measured at the largest N.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import landscape.run as run_layer
from landscape.steppers import train_epoch
from landscape.data import CIFAR_MEAN, CIFAR_STD, Dataset, train_batches
from landscape.models import build_model, model_spec, si_groups
from landscape.sphere import group_sq_norms, projected_sgd_step
from landscape.sweep import sweep

ELR = 1e-3


# --- data and models ----------------------------------------------------------------------

def random_cifar(images: int, device, seed: int = 0) -> Dataset:
    """CIFAR-10-shaped random uint8 images (N, 3, 32, 32) on the device, as `landscape train`
    keeps CIFAR, with a normalised test set of 1000."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (images, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (images,), generator=g)
    mean, std = np.array(CIFAR_MEAN, np.float32), np.array(CIFAR_STD, np.float32)
    data = Dataset("random-cifar", x.to(device), y.to(device), None, y[:1000].to(device), 10,
                   black=-mean / std, pixel_mean=mean, pixel_std=std)
    data.x_test = data.inputs(data.x_train[:1000])
    return data


def use_random_cifar(images: int, device) -> Dataset:
    """Point `landscape.train` (and the in-process sweeps) at the random images: timing only."""
    data = random_cifar(images, device)
    run_layer.load_dataset = lambda *a, **k: data
    return data


def model_and_sphere(width, device, seed=0):
    model = build_model(model_spec("convnet", (3, 32, 32), 10, width=width), seed).to(device)
    params = [p for _, p in si_groups(model)]
    rho = float(group_sq_norms(params).detach().sum().sqrt())
    return model, params, rho


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def augmented_batches(data: Dataset, epoch: int, batch_size: int = 128):
    """The epoch's batches as `landscape train` makes them (uint8 on the device, crop, flip,
    normalise), full batches only (static shapes for the CUDA graph)."""
    for x, y in train_batches(data, batch_size, epoch, 0, augment=True):
        if len(y) == batch_size:
            yield x, y


class GroupedConvNet(nn.Module):
    """N ConvNets of one architecture as one network: the first convolution with N k outputs
    (every model sees the same input), each later one grouped (groups = N: model n's filters
    read model n's channels only), BatchNorm per channel over all N k channels (per channel, so
    per model), the frozen heads as one einsum. ``si_views()``: each SI weight viewed as (N, ...)
    for the batched projection. Output (batch, N, classes)."""

    def __init__(self, models):
        super().__init__()
        self.n = n = len(models)
        per_model = [[m for m in net.features if isinstance(m, nn.Conv2d)] for net in models]
        layers = []
        for i, conv in enumerate(per_model[0]):
            grouped = nn.Conv2d(conv.in_channels * (1 if i == 0 else n), conv.out_channels * n, 3,
                                padding=1, bias=False, groups=1 if i == 0 else n)
            with torch.no_grad():
                grouped.weight.copy_(torch.cat([convs[i].weight for convs in per_model]))
            layers += [grouped, nn.BatchNorm2d(conv.out_channels * n, affine=False), nn.ReLU()]
            if i > 0:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.register_buffer("head_weight", torch.stack([net.head.weight for net in models]).detach())
        self.register_buffer("head_bias", torch.stack([net.head.bias for net in models]).detach())

    def forward(self, x):
        h = torch.amax(self.features(x), dim=(2, 3))
        h = h.view(h.shape[0], self.n, -1)
        return torch.einsum("bnc,noc->bno", h, self.head_weight) + self.head_bias

    def si_views(self):
        return [m.weight.view(self.n, m.out_channels // self.n, *m.weight.shape[1:])
                for m in self.features if isinstance(m, nn.Conv2d)]


# --- single runs --------------------------------------------------------------------------

def median_epoch(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def official_epoch(data: Dataset, width, device, workers):
    """The official script's pipeline and loop (its facts: transforms, DataLoader, the SGD
    step then the norm fixed from host-read norms, loss and accuracy read every step)."""
    from PIL import Image
    from torch.utils.data import DataLoader
    import torchvision.transforms as T
    transform = T.Compose([T.Resize(32), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                           T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    images = data.x_train.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # HWC, as torchvision's CIFAR
    labels = data.y_train.cpu().tolist()

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i])), labels[i]
    loader = DataLoader(Images(), batch_size=128, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model, params, rho = model_and_sphere(width, device)
    optimizer = torch.optim.SGD(params, lr=ELR * rho ** 2, momentum=0.0)
    model.train()

    def run():
        loss_sum = correct = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():
                norm = np.sqrt(sum((p ** 2).sum().item() for p in params))
                for p in params:
                    p.mul_(rho / norm)
            loss_sum += loss.item() * len(yb)
            correct += (out.argmax(1) == yb).sum().item()
        sync(device)
    return run


def bare_epoch(data: Dataset, width, device):
    model, params, rho = model_and_sphere(width, device)
    model.train()
    epoch = [0]

    def run():
        epoch[0] += 1
        for x, y in augmented_batches(data, epoch[0]):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
            projected_sgd_step(params, grads, ELR * rho ** 2, rho)
        sync(device)
    return run


def graphed_epoch(data: Dataset, width, device):
    """`bare` with the step captured as one CUDA graph: the batch is copied into static
    inputs, then the graph replays forward, backward and the projection."""
    model, params, rho = model_and_sphere(width, device)
    model.train()
    static_x = torch.zeros(128, 3, 32, 32, device=device)
    static_y = torch.zeros(128, dtype=torch.long, device=device)

    def step():
        grads = torch.autograd.grad(F.cross_entropy(model(static_x), static_y), params)
        projected_sgd_step(params, grads, ELR * rho ** 2, rho)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    epoch = [0]

    def run():
        epoch[0] += 1
        for x, y in augmented_batches(data, epoch[0]):
            static_x.copy_(x)
            static_y.copy_(y)
            graph.replay()
        sync(device)
    return run


def landscape_epoch(folder, base, repeats, **options):
    """The median of epochs 2.. of one `landscape.train` run (its own per-epoch wall times)."""
    out = os.path.join(folder, f"train{time.perf_counter_ns()}.h5")
    traj = run_layer.train(out=out, **{**base, **options, "epochs": 1 + repeats})
    return float(np.median(traj.timing["epoch_seconds"][1:]))


def host_syncs(data: Dataset, width, device) -> str:
    """One epoch of `landscape train`'s loop with CUDA's sync debug mode set to error."""
    cfg = run_layer.TrainConfig(model="convnet", width=width, dataset="cifar10", augment=True)
    model, params, rho = model_and_sphere(width, device)
    train_epoch(model, params, data, ELR * rho ** 2, rho, cfg, 1)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_epoch(model, params, data, ELR * rho ** 2, rho, cfg, 2)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return "none inside the epoch"


# --- sweeps -------------------------------------------------------------------------------

def elrs_of(n):
    return [float(f"{v:.6g}") for v in np.geomspace(1e-5, 1.0, n)] if n > 1 else [ELR]


def bare_vmap_epoch(data: Dataset, width, device, n):
    from torch.func import functional_call, grad, stack_module_state, vmap
    import copy
    models = [model_and_sphere(width, device)[0] for _ in range(n)]
    names = [k for k, _ in si_groups(models[0])]
    params, buffers = stack_module_state(models)
    trainable = {k: params[k].detach() for k in names}
    frozen = {k: v.detach() for k, v in params.items() if k not in names}
    template = copy.deepcopy(models[0]).to("meta")
    rho = group_sq_norms([trainable[k] for k in names], 1).sum(-1).sqrt()
    lr = torch.tensor(elrs_of(n), device=device) * rho ** 2

    def loss_fn(tp, fp, b, x, y):
        return F.cross_entropy(functional_call(template, ({**tp, **fp}, b), (x,)), y)
    step = vmap(grad(loss_fn), in_dims=(0, 0, 0, None, None))
    epoch = [0]

    def run():
        epoch[0] += 1
        for x, y in augmented_batches(data, epoch[0]):
            g = step(trainable, frozen, buffers, x, y)
            projected_sgd_step([trainable[k] for k in names], [g[k] for k in names], lr, rho, batch_dims=1)
        sync(device)
    return run


def grouped_check(width, device, n) -> float:
    """Largest difference between the grouped network's outputs and the N models' own."""
    data = random_cifar(256, device, seed=1)
    models = [model_and_sphere(width, device, seed=s)[0] for s in range(n)]
    grouped = GroupedConvNet(models).to(device).train()
    x = data.inputs(data.x_train[:64])
    with torch.no_grad():
        want = torch.stack([m.train()(x) for m in models], dim=1)
        return float((grouped(x) - want).abs().max() / want.abs().max())


def bare_grouped_epoch(data: Dataset, width, device, n):
    models = [model_and_sphere(width, device)[0] for _ in range(n)]
    grouped = GroupedConvNet(models).to(device).train()
    convs = [m for m in grouped.features if isinstance(m, nn.Conv2d)]
    views = grouped.si_views()
    rho = group_sq_norms(views, 1).sum(-1).sqrt().detach()
    lr = torch.tensor(elrs_of(n), device=device) * rho ** 2
    epoch = [0]

    def run():
        epoch[0] += 1
        for x, y in augmented_batches(data, epoch[0]):
            out = grouped(x)  # (batch, N, classes): the sum of the N mean losses
            loss = F.cross_entropy(out.permute(0, 2, 1), y[:, None].expand(-1, n), reduction="sum") / len(y)
            grads = torch.autograd.grad(loss, [c.weight for c in convs])
            projected_sgd_step(grouped.si_views(), [g.view_as(v) for g, v in zip(grads, views)], lr, rho,
                               batch_dims=1)
        sync(device)
    return run


def sweep_rate(folder, base, n, images, **options) -> float:
    """Aggregate images/s of `landscape.sweep` over N models: epoch 2's wall time (each run's
    share, as the in-process strategies record it) summed."""
    out = os.path.join(folder, f"sweep{n}-{time.perf_counter_ns()}")
    index = sweep(elrs_of(n), out, **{**base, **options, "epochs": 2})
    seconds = sum(float(run_layer.Trajectory(os.path.join(out, r["file"])).timing["epoch_seconds"][1])
                  for r in index["runs"])
    return n * images / seconds


def processes_rate(folder, base, n, images, args) -> float:
    """N concurrent processes, each training one model with `landscape.train` on the same
    random images (a worker of this script: fresh interpreters cannot see this process's
    data); each process's epoch-2 rate, summed."""
    outs = [os.path.join(folder, f"proc{n}-{i}-{time.perf_counter_ns()}.h5") for i in range(n)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", out, "--elr", str(elr),
                               "--device", args.device, "--width", str(args.width),
                               "--sweep-images", str(images)], env=env)
             for out, elr in zip(outs, elrs_of(n))]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"a worker failed (exit {p.returncode})")
    return sum(images / float(run_layer.Trajectory(o).timing["epoch_seconds"][1]) for o in outs)


def worker(args):
    torch.set_num_threads(1)
    use_random_cifar(args.sweep_images, torch.device(args.device))
    run_layer.train(out=args.worker, model="convnet", width=args.width, epochs=2, device=args.device,
                   elr=args.elr, save_every=1, eval_every=10 ** 6, augment=True, progress=False,
                   dataset="cifar10", checkpoint_metrics=False)


# --- the run ------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=50000, help="images of a single run's epoch")
    p.add_argument("--sweep-images", type=int, default=10000, help="images of a sweep's epoch")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--models", default="1,4,8,24", help="sweep sizes")
    p.add_argument("--max-processes", type=int, default=8, help="processes measured up to this N")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the official pipeline (its default)")
    p.add_argument("--skip", default="", help="comma-separated contenders not to measure")
    p.add_argument("--resnet18", action="store_true", help="also single-run epochs of ResNet-18 (k = 64)")
    p.add_argument("--json", default=None, help="write the figures here (rewritten after each)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--elr", type=float, default=ELR, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    skip = set(filter(None, args.skip.split(",")))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    result = {"device": name, "torch": torch.__version__, "width": args.width, "images": args.images,
              "sweep_images": args.sweep_images, "command": " ".join(sys.argv), "epoch_seconds": {},
              "sweep_images_per_second": {}, "errors": {}}
    print(f"{name}, torch {torch.__version__}, ConvNet k={args.width}, CIFAR-shaped random images", flush=True)

    def save():
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump(result, f, indent=1)
            os.replace(args.json + ".tmp", args.json)

    def shown(value):
        if isinstance(value, str):
            return value
        return f"{value * 1000:10.1f} ms/epoch" if table_is_epochs[0] else f"{value:10.0f} images/s"
    table_is_epochs = [True]

    def measure(key, fn, table):
        if key in skip:
            return
        t0 = time.perf_counter()
        try:
            table[key] = fn()
        except Exception as e:  # one failing contender must not cost the others their figures
            result["errors"][key] = f"{type(e).__name__}: {e}"[:400]
            print(f"{key:<28} failed: {result['errors'][key]}", flush=True)
        else:
            print(f"{key:<34} {shown(table[key]):<22} ({time.perf_counter() - t0:.0f} s to measure)", flush=True)
        save()

    folder = tempfile.mkdtemp(prefix="gpu-speed-")
    data = use_random_cifar(args.images, device)
    base = dict(model="convnet", width=args.width, device=args.device, save_every=1, eval_every=10 ** 6,
                batch_size=128, augment=True, progress=False, dataset="cifar10",
                checkpoint_metrics=False)  # training speed: the checkpoint metrics' pass is timed by checkpoint_metrics_cost.py
    epoch = result["epoch_seconds"]
    cuda = device.type == "cuda"
    single = {
        "official": lambda: median_epoch(official_epoch(data, args.width, device, args.workers), args.repeats),
        "bare": lambda: median_epoch(bare_epoch(data, args.width, device), args.repeats),
        "graphed": (lambda: median_epoch(graphed_epoch(data, args.width, device), args.repeats)) if cuda else None,
        "landscape": lambda: landscape_epoch(folder, base, args.repeats),
        "landscape+bf16+cl": lambda: landscape_epoch(folder, base, args.repeats, precision="bf16", channels_last=True),
        "landscape+bf16+cl+compile": lambda: landscape_epoch(folder, base, args.repeats, precision="bf16",
                                                             channels_last=True, compile=True),
        "landscape+bf16+cl+reduce-overhead": lambda: landscape_epoch(
            folder, base, args.repeats, precision="bf16", channels_last=True, compile=True,
            compile_mode="reduce-overhead"),
    }
    for key, fn in single.items():
        if fn is not None:
            measure(key, fn, epoch)
    if cuda:
        measure("host_syncs", lambda: host_syncs(data, args.width, device), result)
    result["single_run_speedup_vs_official"] = {k: epoch["official"] / v for k, v in epoch.items()
                                                if "official" in epoch and k != "official" and "resnet" not in k}
    for k, v in result["single_run_speedup_vs_official"].items():
        print(f"  official / {k}: {v:.2f}x", flush=True)
    save()

    use_random_cifar(args.sweep_images, device)
    sizes = [int(m) for m in args.models.split(",")]
    rates = result["sweep_images_per_second"]
    sweep_base = {**base, "save_every": 2}
    measure("grouped_check_max_rel_diff", lambda: f"{grouped_check(args.width, device, max(2, sizes[-1])):.2e}", result)
    table_is_epochs[0] = False
    for n in sizes:
        row = rates.setdefault(str(n), {})
        sweep_data = random_cifar(args.sweep_images, device)
        images = args.sweep_images
        contenders = {
            "bare-vmap": lambda: images * n / median_epoch(bare_vmap_epoch(sweep_data, args.width, device, n), 1),
            "bare-grouped": lambda: images * n / median_epoch(bare_grouped_epoch(sweep_data, args.width, device, n), 1),
            "vectorised": lambda: sweep_rate(folder, sweep_base, n, images, strategy="vectorised"),
            "vectorised+bf16": lambda: sweep_rate(folder, sweep_base, n, images, strategy="vectorised", precision="bf16"),
            "streams": lambda: sweep_rate(folder, sweep_base, n, images, strategy="streams"),
            "streams+bf16+cl": lambda: sweep_rate(folder, sweep_base, n, images, strategy="streams", precision="bf16",
                                                  channels_last=True),
        }
        if n == sizes[-1]:
            contenders["vectorised+bf16+compile"] = lambda: sweep_rate(
                folder, sweep_base, n, images, strategy="vectorised", precision="bf16", compile=True)
        if n <= args.max_processes:
            contenders["processes"] = lambda: processes_rate(folder, sweep_base, n, images, args)
        for key, fn in contenders.items():
            measure(f"{key}", fn, row)
        print(f"-- {n} models: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()) + " images/s", flush=True)
    best = rates.get(str(sizes[-1]), {})
    product = {k: v for k, v in best.items() if not k.startswith("bare")}
    if product:
        winner = max(product, key=product.get)
        hours = 24 * 1000 * 50000 / product[winner] / 3600
        result["figure1_projection"] = {"strategy": winner, "models": sizes[-1], "images_per_second": product[winner],
                                        "hours": hours}
        print(f"projected Figure 1 sweep (24 ELRs x 1000 epochs x 50,000 images) with {winner} at "
              f"{sizes[-1]} models: {hours:.2f} h", flush=True)
    save()
    if args.resnet18:  # the paper's second network, last (the sweeps matter more): single runs, k = 64
        table_is_epochs[0] = True
        use_random_cifar(args.images, device)
        resnet = {**base, "model": "resnet18", "width": None}
        measure("resnet18 landscape", lambda: landscape_epoch(folder, resnet, args.repeats), epoch)
        measure("resnet18 landscape+bf16+cl", lambda: landscape_epoch(folder, resnet, args.repeats, precision="bf16",
                                                                      channels_last=True), epoch)


if __name__ == "__main__":
    main()
