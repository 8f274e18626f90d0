"""Momentum SGD and Adam on the sphere: each equals torch.optim's step followed by the joint
projection (a hand-written reference loop) to 1e-6 in float64, keeps the norm, reduces to
projected SGD in its SGD limit, logs the effective step sizes as the measured turn of each group,
resumes bit-identically, and trains the same in a vectorised sweep as alone."""
import math

import numpy as np
import pytest
import torch

from landscape import train
from landscape.sphere import projected_sgd_step, step_angles
from landscape.steppers import statistics_and_step
from landscape.sweep import sweep
from landscape.trajectory import Trajectory

SHAPES = ((6, 3), (4, 6, 3), (5,))


def _tensors(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]


def _zeros(optimizer):
    z = [torch.zeros(s, dtype=torch.float64) for s in SHAPES]
    if optimizer == "adam":
        return z + [torch.zeros(s, dtype=torch.float64) for s in SHAPES] + [torch.zeros((), dtype=torch.float64)]
    return z


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_equals_torch_optim_then_projection_over_20_steps(optimizer):
    params, rho, lr = _tensors(0), 3.0, 0.05
    ref = [p.clone().requires_grad_(True) for p in params]
    opt = (torch.optim.SGD(ref, lr=lr, momentum=0.9) if optimizer == "momentum"
           else torch.optim.Adam(ref, lr=lr, betas=(0.8, 0.99), eps=1e-8))

    def project(ps):  # eq. (2)'s projection: every tensor by the same factor
        scale = rho / math.sqrt(sum(float(q.square().sum()) for q in ps))
        for p in ps:
            p.mul_(scale)
    with torch.no_grad():
        project(ref)
        project(params)
    buffers = _zeros(optimizer)
    for t in range(20):
        grads = _tensors(100 + t)
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        opt.step()
        with torch.no_grad():
            project(ref)
        statistics_and_step(params, grads, lr, lr, rho, True, "sphere", buffers, 0.9, 0.0, 0,
                            optimizer, (0.8, 0.99), 1e-8)
        total = math.sqrt(sum(float(p.square().sum()) for p in params))
        assert abs(total - rho) < 1e-6 * rho  # on the sphere after every step
        for p, r in zip(params, ref):
            torch.testing.assert_close(p, r.detach(), rtol=1e-6, atol=1e-9)


def test_momentum_zero_and_adams_sgd_limit_are_projected_sgd():
    rho, lr = 2.0, 0.1
    want, mom, adam = _tensors(1), _tensors(1), _tensors(1)
    buf_m, buf_a = _zeros("momentum"), _zeros("adam")
    for t in range(5):
        grads = _tensors(50 + t)
        projected_sgd_step(want, grads, lr, rho)
        statistics_and_step(mom, grads, lr, lr, rho, False, "sphere", buf_m, 0.0, 0.0, 0, "momentum")
        # beta1 = 0 and eps far above sqrt(v): d = g / eps, so lr * eps is SGD's lr
        statistics_and_step(adam, grads, lr * 1e9, lr, rho, False, "sphere", buf_a, 0.0, 0.0, 0, "adam",
                            (0.0, 0.999), 1e9)
    for a, b, c in zip(want, mom, adam):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=1e-6, atol=1e-9)


def _orthogonal_rows(g, p):
    """g with each row's component along p's row removed: the gradient of a function for which
    every filter is scale-invariant (a filter before a BatchNorm)."""
    g2, p2 = g.reshape(g.shape[0], -1), p.reshape(p.shape[0], -1)
    return (g2 - (g2 * p2).sum(1, keepdim=True) / p2.square().sum(1, keepdim=True) * p2).reshape(g.shape)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_logged_step_sizes_are_the_measured_turns(optimizer):
    """tan(angle between a group before and after the step) is the logged ESS, per tensor and
    per filter, and log cos of the whole vector's turn is log_cos_step; for SGD the paper's
    ESS = lr |g_i| / rho_i (an SI gradient, orthogonal to its tensor)."""
    params, rho, lr = _tensors(2), None, 0.05
    rho = math.sqrt(sum(float(p.square().sum()) for p in params))
    buffers = _zeros(optimizer)
    for t in range(3):
        grads = [_orthogonal_rows(g, p) for g, p in zip(_tensors(70 + t), params)]
        before = [p.clone() for p in params]
        stats, _ = statistics_and_step(params, grads, lr, lr, rho, True, "sphere", buffers, 0.9, 0.0, 0,
                                       optimizer, (0.9, 0.999), 1e-8)

        def tan_turn(a, b):
            cos = float((a * b).sum() / (a.norm() * b.norm()))
            return math.sqrt(max(1 - cos * cos, 0.0)) / cos
        np.testing.assert_allclose(stats["group_effective_step_size"].numpy(),
                                   [tan_turn(a, b) for a, b in zip(before, params)], rtol=1e-7, atol=1e-7)
        rows = [(a[i], b[i]) for a, b in zip(before, params) for i in range(a.shape[0])]
        np.testing.assert_allclose(stats["filter_effective_step_size"].numpy(),
                                   [tan_turn(a.reshape(-1), b.reshape(-1)) for a, b in rows], rtol=1e-6, atol=1e-7)
        whole = (torch.cat([a.reshape(-1) for a in before]), torch.cat([b.reshape(-1) for b in params]))
        cos = float(whole[0] @ whole[1] / (whole[0].norm() * whole[1].norm()))
        if optimizer != "sgd":
            assert float(stats["log_cos_step"]) == pytest.approx(math.log(cos), rel=1e-7, abs=1e-12)
    turn = step_angles(before, grads, lr, filters=False)["group_effective_step_size"]
    paper = lr * torch.stack([g.norm() / p.norm() for g, p in zip(grads, before)])
    torch.testing.assert_close(turn, paper, rtol=1e-12, atol=1e-15)


def test_validation_names_the_setting():
    from landscape.config import TrainConfig
    for bad, word in (({"optimizer": "momentum"}, "momentum"), ({"momentum": 0.9}, "optimizer momentum"),
                      ({"optimizer": "adam", "space": "filter-spheres"}, "space sphere"),
                      ({"optimizer": "adam", "adam_beta2": 1.0}, "adam_beta2"),
                      ({"optimizer": "nadam"}, "optimizer")):
        with pytest.raises(ValueError, match=word):
            TrainConfig(**bad).validate()


def test_adam_elr_is_lr_over_rho_and_resume_is_bit_identical(tmp_path, tiny, interrupted_and_resumed):
    kw = dict(tiny, epochs=3, optimizer="adam", elr=1e-2)
    straight = train(out=str(tmp_path / "a.h5"), progress=False, **kw)
    rho = float(straight.attrs["rho"])
    assert float(straight.attrs["lr"]) == pytest.approx(1e-2 * rho, rel=1e-12)  # lr = ELR rho
    np.testing.assert_allclose(straight.metrics["elr"], 1e-2, rtol=1e-5)
    resumed = interrupted_and_resumed(str(tmp_path / "b.h5"), kw, 2, 2)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(straight.metrics["effective_step_size"], resumed.metrics["effective_step_size"])


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"optimizer": "adam"}, {"optimizer": "momentum", "momentum": 0.9}])
def test_vectorised_sweep_equals_single_runs(tmp_path, tiny, options):
    cfg = dict(tiny, epochs=2, dtype="float64", **options)
    sweep([1e-3, 1e-2], str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    for elr in (1e-3, 1e-2):
        got = Trajectory(str(tmp_path / "sw" / f"elr{elr:g}.h5"))
        ref = train(out=str(tmp_path / f"ref{elr:g}.h5"), progress=False, **dict(cfg, elr=elr))
        for k, want in ref.state_dict().items():
            torch.testing.assert_close(got.state_dict()[k], want, rtol=1e-8, atol=1e-10)
        for k in ("train_loss", "elr", "effective_step_size", "log_cos_step_sum"):
            np.testing.assert_allclose(got.metrics[k], ref.metrics[k], rtol=1e-7, err_msg=k)
