"""The GPU benchmark is one command that must work the first time it meets a GPU:
its CPU smoke run measures every contender the CPU has, and its one-wide-network alternative
(grouped convolutions) trains each model exactly as the model alone."""
import pytest
import importlib.util
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark():
    spec = importlib.util.spec_from_file_location("gpu_speed", os.path.join(ROOT, "benchmarks", "gpu_speed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grouped_network_gives_each_model_its_own_gradient():
    gpu_speed = _benchmark()
    torch.manual_seed(0)
    models = [gpu_speed.model_and_sphere(4, torch.device("cpu"), seed=s)[0].double() for s in range(3)]
    grouped = gpu_speed.GroupedConvNet(models).double().train()
    x, y = torch.randn(16, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (16,))
    out = grouped(x)
    loss = F.cross_entropy(out.permute(0, 2, 1), y[:, None].expand(-1, 3), reduction="sum") / len(y)
    convs = [m for m in grouped.features if isinstance(m, torch.nn.Conv2d)]
    grads = torch.autograd.grad(loss, [c.weight for c in convs])
    for n, model in enumerate(models):
        own = model.train()(x)
        torch.testing.assert_close(out[:, n], own, rtol=1e-10, atol=1e-10)
        params = [m.weight for m in model.features if isinstance(m, torch.nn.Conv2d)]
        want = torch.autograd.grad(F.cross_entropy(own, y), params)
        for g, w in zip(grads, want):
            torch.testing.assert_close(g.view(3, *w.shape)[n], w, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, LANDSCAPE_COMPILE_BACKEND="aot_eager", OMP_NUM_THREADS=str(torch.get_num_threads()))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_speed.py"), "--device", "cpu",
                          "--images", "384", "--sweep-images", "256", "--width", "4", "--models", "2",
                          "--repeats", "1", "--workers", "0", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["errors"] == {}
    assert set(result["epoch_seconds"]) == {"official", "bare", "landscape", "landscape+bf16+cl",
                                            "landscape+bf16+cl+compile", "landscape+bf16+cl+reduce-overhead"}
    assert all(v > 0 for v in result["epoch_seconds"].values())
    assert set(result["sweep_images_per_second"]["2"]) == {
        "bare-vmap", "bare-grouped", "vectorised", "vectorised+bf16", "vectorised+bf16+compile", "streams",
        "streams+bf16+cl", "processes"}
    assert float(result["grouped_check_max_rel_diff"]) < 1e-5
    assert result["figure1_projection"]["hours"] > 0 and "projected Figure 1" in run.stdout


@pytest.mark.slow
def test_the_gpu_checks_pass_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py, the correctness half of a GPU session, at toy size."""
    out = tmp_path / "check.json"
    env = dict(os.environ, LANDSCAPE_COMPILE_BACKEND="aot_eager", OMP_NUM_THREADS=str(torch.get_num_threads()))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--device", "cpu",
                          "--images", "256", "--width", "4", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["failed"] == [] and len(result["checks"]) == 17
