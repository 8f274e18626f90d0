"""Our curvature one-liners against PyHessian on a small and a large model, side by side in one
run on the same batch, eval-mode BatchNorm (PyHessian's convention), as a new user calls them:

  small  the package's ConvNet k=32 on 256 MNIST-1D examples (129k parameters)
  large  torchvision ResNet-18, 10 classes, 256 CIFAR-shaped images (11M parameters)

Per model: (1) one HVP: PyHessian's double backward against ours one probe at a time and
under vmap (8 probes); (2) a Hutchinson trace with the same number of Rademacher probes
(PyHessian ``trace(maxIter=M, tol=-inf)`` runs exactly M: with tol=0 its stopping test,
relative change / (running mean + 1e-6) < tol, fires at once whenever the running mean is negative); (3) the top eigenvalue at PyHessian's
accuracy setting: PyHessian's power iteration (``eigenvalues(top_n=1, tol=1e-3)``) against our
Lanczos stopped at a Ritz residual of 1e-3 relative, each compared with a tight reference
(our Lanczos to 1e-6).

    python benchmarks/curvature_vs_pyhessian.py [--probes 8] [--models small,large] [--parts hvp,trace,eig]
"""
import argparse
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def seconds(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def small_model(data_root):
    from landscape import build_model, load_dataset, model_spec
    data = load_dataset("mnist1d", data_root)
    model = build_model(model_spec("convnet", data.input_shape, 10), 0)
    return model, data.x_train[:256], data.y_train[:256]


def large_model(_):
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10), torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))


def compare(name, model, x, y, probes, parts=("hvp", "trace", "eig")):
    import pyhessian
    from landscape.hessian import Curvature, hutchinson_trace
    model.train()
    with torch.no_grad():  # realistic running statistics, then eval mode as PyHessian
        model(x)
    model.eval()
    crit = torch.nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    dim = sum(p.numel() for p in params)
    print(f"\n== {name}: {type(model).__name__}, {dim:,} parameters, batch {len(y)}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    t_ph_setup, h = seconds(lambda: pyhessian.hessian(model, crit, data=(x, y), cuda=False))
    t_setup, curv = seconds(lambda: Curvature(model, (x, y), bn="running"))
    t_lin, _ = seconds(curv._vjp)
    v = [torch.randint_like(p, high=2) * 2 - 1 for p in h.params]
    flat = torch.cat([a.reshape(-1) for a in v])
    single = Curvature(model, (x, y), bn="running", probe_batch=1)
    vmapped = Curvature(model, (x, y), bn="running", probe_batch=8)
    single._linear = vmapped._linear = curv._linear  # the same linearisation
    print(f"set-up: PyHessian {t_ph_setup:.2f} s, ours {t_setup + t_lin:.2f} s (incl. linearisation); "
          f"default probe batch here: {curv.probe_batch}")
    if "hvp" in parts:
        hvp_times(h, v, single, vmapped, flat)
    if "trace" in parts:
        t_ph, ph = seconds(lambda: h.trace(maxIter=probes, tol=-np.inf))
        t_us, us = seconds(lambda: hutchinson_trace(curv, probes, seed=0))
        print(f"trace, {probes} probes: PyHessian {t_ph:.1f} s ({np.mean(ph):.4g}), ours {t_us:.1f} s "
              f"({us.value:.4g} +- {us.stderr:.2g}): ours {t_ph / t_us:.2f}x PyHessian's speed")
    if "eig" in parts:
        top_eigenvalue(h, curv)


def hvp_times(h, v, single, vmapped, flat):
    from pyhessian.utils import hessian_vector_product
    hvp = {"pyhessian": lambda: hessian_vector_product(h.gradsH, h.params, v),
           "ours, one probe": lambda: single.hvp(flat),
           "ours, vmap 8 probes (per probe)": lambda: vmapped.hvp_batch(flat.expand(8, -1))}
    times = {k: [] for k in hvp}
    for _ in range(2):  # interleaved rounds after a warm-up of each
        for k, fn in hvp.items():
            if not times[k]:
                fn()
            times[k].append(seconds(fn)[0] / (8 if "vmap" in k else 1))
    for k, t in times.items():
        print(f"HVP {k}: {np.median(t):.3f} s")


def top_eigenvalue(h, curv):
    from pyhessian.utils import hessian_vector_product
    from landscape.hessian import top_eigenvalues
    info_ref, info = {}, {}
    t_ref, ref = seconds(lambda: top_eigenvalues(curv, 1, seed=1, tol=1e-6, info=info_ref))
    count = {"n": 0}
    orig = hessian_vector_product

    def counted(*a, **k):
        count["n"] += 1
        return orig(*a, **k)
    import sys
    ph_module = sys.modules["pyhessian.hessian"]  # (the package's attribute 'hessian' is the class)
    ph_module.hessian_vector_product = counted
    torch.manual_seed(0)
    t_ph, (ph_vals, _) = seconds(lambda: h.eigenvalues(maxIter=100, tol=1e-3, top_n=1))
    ph_module.hessian_vector_product = orig
    t_us, us_vals = seconds(lambda: top_eigenvalues(curv, 1, seed=0, tol=1e-3, info=info))
    lam = ref[0]
    print(f"top eigenvalue (reference {lam:.6g}, {info_ref['products']} products, {t_ref:.1f} s):")
    print(f"  PyHessian power iteration tol 1e-3: {ph_vals[0]:.6g} (rel. error {abs(ph_vals[0] - lam) / lam:.1e}), "
          f"{count['n']} products, {t_ph:.1f} s")
    print(f"  ours Lanczos, residual 1e-3:      {us_vals[0]:.6g} (rel. error {abs(us_vals[0] - lam) / lam:.1e}), "
          f"{info['products']} products, {t_us:.1f} s: ours {t_ph / t_us:.2f}x PyHessian's speed", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--models", default="small,large")
    p.add_argument("--parts", default="hvp,trace,eig", help="which comparisons: hvp, trace, eig")
    p.add_argument("--data-root", default="data")
    args = p.parse_args()
    for name in args.models.split(","):
        model, x, y = {"small": small_model, "large": large_model}[name](args.data_root)
        compare(name, model, x, y, args.probes, args.parts.split(","))


if __name__ == "__main__":
    main()
