"""Speed options keep the numerics that matter: bf16 autocast tracks float32 while the
sphere norm and eq. (3) stay exact; channels-last and torch.compile change nothing but speed.
GPU paths, tested here on the CPU with the same logic."""
import math

import numpy as np
import pytest
import torch

from landscape import train
from landscape.data import Dataset
from landscape.models import build_model, model_spec, si_groups
from landscape.sphere import group_sq_norms
from landscape.config import TrainConfig
from landscape.steppers import train_epoch


@pytest.fixture
def regime1(data_root):
    return dict(model="convnet", width=8, dataset="mnist1d", data_root=data_root, train_subset=512,
                batch_size=64, epochs=10, elr=3e-4, device="cpu", save_every=10)


@pytest.mark.slow
def test_bf16_tracks_float32_and_keeps_the_sphere_exact(tmp_path, regime1):
    f32 = train(out=str(tmp_path / "f32.h5"), progress=False, **regime1)
    bf16 = train(out=str(tmp_path / "bf16.h5"), progress=False, precision="bf16", **regime1)
    ratio = bf16.metrics["train_loss"] / f32.metrics["train_loss"]
    assert np.all(np.abs(ratio - 1) < 0.10), ratio           # measured: within 7 %
    assert abs(bf16.metrics["test_accuracy"][-1] - f32.metrics["test_accuracy"][-1]) < 0.05
    rho = float(bf16.attrs["rho"])
    total = np.sqrt((bf16.group_metrics["rho_end"] ** 2).sum(1))
    np.testing.assert_allclose(total, rho, rtol=1e-6)        # the projection is float32-exact
    np.testing.assert_allclose(bf16.metrics["elr"], 3e-4, rtol=1e-6)  # eq. (3) on the logged ELRs
    np.testing.assert_allclose(1 / (1 / bf16.group_metrics["elr"]).sum(1), bf16.metrics["elr"], rtol=1e-9)
    assert all(v.dtype == torch.float32 for v in bf16.state_dict().values() if v.is_floating_point())


def random_images(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("random-images", x, y, x[:32], y[:32], 10)


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
def test_channels_last_changes_nothing_but_the_layout(name):
    data = random_images()
    runs = {}
    for channels_last in (False, True):
        cfg = TrainConfig(model=name, width=4, batch_size=32, channels_last=channels_last, dtype="float64")
        model = build_model(model_spec(name, (3, 8, 8), 10, width=4), 0).double()
        data.x_train = data.x_train.double()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        params = [p for _, p in si_groups(model)]
        rho = float(group_sq_norms(params).sum().sqrt())
        for epoch in (1, 2):
            acc = train_epoch(model, params, data, 0.05 * rho ** 2, rho, cfg, epoch)
        runs[channels_last] = ({k: v.contiguous() for k, v in model.state_dict().items()}, acc.metrics(0.05)[0])
        if channels_last:
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for k, v in runs[False][0].items():
        torch.testing.assert_close(runs[True][0][k], v, rtol=1e-6, atol=1e-9)  # summation order only
    assert math.isclose(runs[True][1]["train_loss"], runs[False][1]["train_loss"], rel_tol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"space": "whole", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3,
                                      "schedule": "cosine", "elr": None}])
def test_compile_equals_eager(tmp_path, regime1, monkeypatch, options):
    """The compiled forward and the compiled update (statistics and step as one function, the
    learning rate a device tensor) compute what the eager ones do: in float64 to rounding (in
    float32 the fused multiply-add of a compiled step moves last bits, which three epochs carry
    to 1e-6), every logged metric included; a schedule does not recompile it each epoch."""
    from torch._dynamo.utils import counters
    monkeypatch.setenv("LANDSCAPE_COMPILE_BACKEND", "aot_eager")  # inductor needs minutes of C++ here
    # 500 examples: 7 batches of 64 and a partial one of 52, which runs eager
    kw = {k: v for k, v in dict(regime1, epochs=3, dtype="float64", checkpoint_metrics=True, train_subset=500,
                                **options).items() if v is not None}
    eager = train(out=str(tmp_path / "e.h5"), progress=False, **kw)
    graphs, copies = [], []
    import landscape.measure
    copy_each_time = landscape.measure.with_batch_statistics
    monkeypatch.setattr(landscape.measure, "with_batch_statistics", lambda m: copies.append(1) or copy_each_time(m))
    counters.clear()
    torch._dynamo.reset()  # graphs counted from none compiled
    comp = train(out=str(tmp_path / "c.h5"), progress=False, compile=True,
                 on_epoch=lambda e, m: graphs.append(counters["stats"]["unique_graphs"]), **kw)
    assert len(copies) == 1  # epoch 0's, before training; then training's compiled forward measures
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(comp.state_dict()[k], v, rtol=1e-10, atol=1e-12)
    for k, v in eager.metrics.items():
        np.testing.assert_allclose(comp.metrics[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    for k, v in eager.filter_metrics.items():
        np.testing.assert_allclose(comp.filter_metrics[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    assert eager.checkpoint_metrics  # and the checkpoint pass, through training's compiled forward
    for k, v in eager.checkpoint_metrics.items():
        np.testing.assert_allclose(comp.checkpoint_metrics[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    assert graphs[0] == graphs[-1] > 0  # compiled in epoch 1, reused after
    # neither the checkpoint pass nor the partial batch compiles a graph of its own: as many as
    # training full batches alone (the running statistics the pass goes through are restored:
    # the state dicts above agree)
    counters.clear()
    torch._dynamo.reset()
    train(out=str(tmp_path / "n.h5"), progress=False, compile=True,
          **dict(kw, checkpoint_metrics=False, train_subset=448))
    assert counters["stats"]["unique_graphs"] == graphs[-1]


def test_bad_speed_options(cli, tmp_path):
    code, _, err = cli(["train", "--precision", "bf16", "--dtype", "float64", "-o", str(tmp_path / "x.h5")])
    assert code == 2 and "drop --dtype float64" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["train", "--precision", "fp8", "-o", str(tmp_path / "x.h5")])
    assert code == 2 and "--precision" in err
    code, _, err = cli(["train", "--compile-mode", "reduce-overhead", "-o", str(tmp_path / "x.h5")])
    assert code == 2 and "add --compile" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_inductor_compiles_the_step_as_eager_computes_it(tmp_path, tiny):
    """The default backend, the one a GPU uses (inductor; on a CPU it generates C++, about a
    minute here): the compiled forward and update of a single run, and the compiled vmapped
    step and batched update of a sweep, equal eager in float64."""
    from landscape.sweep import sweep
    from landscape import Trajectory
    kw = dict(tiny, epochs=2, dtype="float64")
    eager = train(out=str(tmp_path / "e.h5"), progress=False, **kw)
    comp = train(out=str(tmp_path / "c.h5"), progress=False, compile=True, **kw)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(comp.state_dict()[k], v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(comp.metrics["effective_grad_norm"], eager.metrics["effective_grad_norm"], rtol=1e-10)
    kw.pop("elr")
    sweep([1e-3, 1e-2], str(tmp_path / "se"), strategy="vectorised", progress=False, **kw)
    sweep([1e-3, 1e-2], str(tmp_path / "sc"), strategy="vectorised", progress=False, compile=True, **kw)
    a, b = Trajectory(str(tmp_path / "se" / "elr0.01.h5")), Trajectory(str(tmp_path / "sc" / "elr0.01.h5"))
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.metrics["train_loss"], a.metrics["train_loss"], rtol=1e-10)
