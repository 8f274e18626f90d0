"""GPU correctness before any timing: the paths the suite tests on a CPU, run on the
GPU against single runs of the same device, on CIFAR-shaped random data.

    python benchmarks/gpu_check.py --json OUT.json          # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --images 256 --width 4   # the CPU smoke test

Each check prints its figure against its bound and PASS or FAIL; the exit status is 1 if any
check failed. Bounds: paths that differ only in summation order 1e-8 relative after two epochs in
float64 (in float32 this task's own rounding moves a run by 1e-3); bf16 against float32 10 %
(the CPU suite's bound); the sphere's norm 1e-6.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_speed import use_random_cifar  # noqa: E402

import landscape  # noqa: E402
from landscape.sweep import sweep  # noqa: E402


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    use_random_cifar(args.images, torch.device(args.device))
    folder = tempfile.mkdtemp(prefix="gpu-check-")
    base = dict(model="convnet", width=args.width, dataset="cifar10", augment=True, epochs=2, batch_size=128,
                device=args.device, save_every=2, progress=False, checkpoint_metrics=False)
    elrs = [3e-4, 1e-3]
    checks = {}

    def check(name, value, bound):
        checks[name] = {"value": value, "bound": bound, "pass": bool(value <= bound)}
        print(f"{'PASS' if value <= bound else 'FAIL'}  {name:<64} {value:.3g} (bound {bound:g})", flush=True)

    def single(elr, **options):
        return landscape.train(out=os.path.join(folder, f"single-{elr:g}-{len(os.listdir(folder))}.h5"),
                              **{**base, **options, "elr": elr})

    def swept(strategy, **options):
        out = os.path.join(folder, f"{strategy}-{len(os.listdir(folder))}")
        sweep(elrs, out, strategy=strategy, **{**base, **options})
        return [landscape.Trajectory(os.path.join(out, f"elr{e:g}.h5")) for e in elrs]

    # the strategies against single runs in float64: in float32 this task's own rounding moves
    # the effective gradient norm by 1e-3 within two epochs (float32 against float64, one run)
    refs64 = [single(e, dtype="float64") for e in elrs]
    for strategy in ("streams", "vectorised"):
        for elr, got, ref in zip(elrs, swept(strategy, dtype="float64"), refs64):
            for metric in ("train_loss", "effective_grad_norm"):
                check(f"{strategy} = single run ({metric}, float64), ELR {elr:g}",
                      rel(got.metrics[metric], ref.metrics[metric]), 1e-8)
    compiled = single(elrs[0], compile=True, dtype="float64")
    check("--compile = eager (train loss, float64)", rel(compiled.metrics["train_loss"],
                                                         refs64[0].metrics["train_loss"]), 1e-8)
    refs = [single(e) for e in elrs]
    bf16 = [single(e, precision="bf16", channels_last=True) for e in elrs]
    for elr, got, ref in zip(elrs, bf16, refs):
        check(f"bf16+channels-last tracks float32 (train loss), ELR {elr:g}", rel(got.metrics["train_loss"],
                                                                    ref.metrics["train_loss"]), 0.10)
        norms = np.sqrt((got.group_metrics["rho_end"] ** 2).sum(1))
        check(f"bf16: the sphere's norm, ELR {elr:g}", rel(norms, np.full_like(norms, got.attrs["rho"])), 1e-6)
        check(f"bf16: eq. (3) on the logged ELRs, ELR {elr:g}", rel(1 / (1 / got.group_metrics["elr"]).sum(1),
                                                      got.metrics["elr"]), 1e-9)
    for elr, got, ref in zip(elrs, swept("vectorised", precision="bf16"), bf16):
        check(f"vectorised bf16 tracks single bf16 (train loss), ELR {elr:g}", rel(got.metrics["train_loss"],
                                                                     ref.metrics["train_loss"]), 0.10)
    failed = [k for k, v in checks.items() if not v["pass"]]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU",
                       "torch": torch.__version__, "checks": checks, "failed": failed}, f, indent=1)
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
