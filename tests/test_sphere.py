"""Projected SGD on the sphere: eq. (2), norm conservation, eq. (3), batched models."""
import math

import numpy as np
import pytest
import torch

from landscape.sphere import effective_statistics, group_sq_norms, projected_sgd_step


def _groups(seed, shapes=((3, 4), (5,), (2, 2, 2)), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]


def test_step_matches_eq2_written_out():
    params, grads = _groups(0), _groups(1)
    lr, rho = 0.3, 2.5
    flat = torch.cat([p.flatten() for p in params])
    flat_g = torch.cat([g.flatten() for g in grads])
    hat = flat - lr * flat_g
    expected = hat * rho / hat.norm()
    projected_sgd_step(params, grads, lr, rho)
    torch.testing.assert_close(torch.cat([p.flatten() for p in params]), expected, rtol=1e-14, atol=0)


def test_norm_is_rho_after_every_step_and_eq3_holds():
    params = _groups(2, dtype=torch.float32)
    rho, elr = 4.0, 0.05
    lr = elr * rho ** 2
    for t in range(50):
        grads = _groups(100 + t, dtype=torch.float32)
        sq = projected_sgd_step(params, grads, lr, rho)
        total = math.sqrt(sum(float(p.double().square().sum()) for p in params))
        assert abs(total - rho) / rho < 1e-6
        stats = effective_statistics(group_sq_norms(params).double(), group_sq_norms(grads).double(), lr)
        assert abs(float((1 / stats["group_elr"]).sum()) - 1 / elr) * elr < 1e-6  # eq. (3)
        assert abs(float(stats["elr"]) - elr) / elr < 1e-6
        torch.testing.assert_close(sq.double(), group_sq_norms(params).double(), rtol=1e-5, atol=0)


def test_effective_statistics_definitions():
    params, grads = _groups(3), _groups(4)
    lr = 0.7
    s = effective_statistics(group_sq_norms(params), group_sq_norms(grads), lr)
    for i, (p, g) in enumerate(zip(params, grads)):
        rho_i, g_i = p.norm().item(), g.norm().item()
        assert math.isclose(s["group_elr"][i].item(), lr / rho_i ** 2, rel_tol=1e-12)
        assert math.isclose(s["group_effective_grad_norm"][i].item(), rho_i * g_i, rel_tol=1e-12)
        assert math.isclose(s["group_effective_step_size"][i].item(), lr / rho_i * g_i, rel_tol=1e-12)
    rho = torch.cat([p.flatten() for p in params]).norm().item()
    g = torch.cat([q.flatten() for q in grads]).norm().item()
    assert math.isclose(s["effective_grad_norm"].item(), rho * g, rel_tol=1e-12)
    # eq. (4): total squared ESS is the 1/ELR_i-weighted mean of the groups' squared ESS
    w = 1 / s["group_elr"]
    lhs = (s["elr"] * s["effective_grad_norm"]) ** 2
    rhs = (w / w.sum() * s["group_effective_step_size"] ** 2).sum()
    assert math.isclose(lhs.item(), rhs.item(), rel_tol=1e-12)


def test_batched_models_equal_separate_steps():
    lrs, rhos = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64), torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    separate = [(_groups(10 + k), _groups(20 + k)) for k in range(3)]
    stacked_p = [torch.stack([separate[k][0][i] for k in range(3)]) for i in range(3)]
    stacked_g = [torch.stack([separate[k][1][i] for k in range(3)]) for i in range(3)]
    projected_sgd_step(stacked_p, stacked_g, lrs, rhos, batch_dims=1)
    for k, (p, g) in enumerate(separate):
        projected_sgd_step(p, g, lrs[k].item(), rhos[k].item())
        for i in range(3):
            torch.testing.assert_close(stacked_p[i][k], p[i], rtol=1e-14, atol=1e-15)


def test_filter_spheres_step_is_the_official_update():
    """One step = the official --fix_all_elr update written out: an SGD step, then every filter
    rescaled to the common norm (the RMS of the filter norms); batched models step alike."""
    from landscape.sphere import filter_radius, filter_spheres_step, project_filters
    torch.manual_seed(0)
    params = [torch.randn(4, 3, 5, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)]
    grads = [torch.randn_like(p) for p in params]
    rho = math.sqrt(sum(float(p.square().sum()) for p in params))
    r = math.sqrt(sum(float(p.square().sum()) for p in params) / 10)  # 4 + 6 filters
    assert filter_radius(params, rho) == pytest.approx(r)
    project_filters(params, r)
    want = []
    for p, g in zip(params, grads):
        q = p - 0.1 * g
        want.append(q * (r / q.flatten(1).norm(dim=1)).reshape(-1, *([1] * (q.dim() - 1))))
    before = [p.clone() for p in params]
    filter_spheres_step(params, grads, 0.1, rho)
    for p, w in zip(params, want):
        torch.testing.assert_close(p, w, rtol=1e-12, atol=1e-12)
    stacked = [torch.stack([b, b]) for b in before]
    filter_spheres_step(stacked, [torch.stack([g, g]) for g in grads], torch.tensor([0.1, 0.1], dtype=torch.float64),
                        torch.tensor([rho, rho], dtype=torch.float64), batch_dims=1)
    for s, w in zip(stacked, want):
        torch.testing.assert_close(s[1], w, rtol=1e-12, atol=1e-12)


def test_filter_spheres_training_holds_every_filter_at_the_common_norm(tmp_path, data_root):
    """After 64 steps every filter's norm is the common one to 1e-6, the total norm is the
    initial one, and every filter's logged ELR is n_filters * ELR (eq. (3) per filter)."""
    from landscape import train
    t = train(out=str(tmp_path / "f.h5"), progress=False, model="convnet", width=4, dataset="mnist1d",
              data_root=data_root, train_subset=256, batch_size=16, epochs=4, elr=1e-2, device="cpu",
              space="filter-spheres", dtype="float64", checkpoint_metrics=False)
    state = t.state_dict(4)
    norms = torch.cat([state[n].flatten(1).norm(dim=1) for n in t.group_names])
    rho = float(t.attrs["rho"])
    np.testing.assert_allclose(norms.numpy(), rho / math.sqrt(len(norms)), rtol=1e-6)
    np.testing.assert_allclose(t.filter_metrics["elr"], len(norms) * 1e-2, rtol=1e-9)
    assert t.metrics["rho"][-1] == pytest.approx(rho, rel=1e-9)


@pytest.mark.parametrize("count", [3, 7])  # a kernel per tensor, and one segment sum over all
def test_filter_and_layer_norms_equal_a_loop_over_filters(count):
    """Every filter's squared norm (a slice along the first dimension; each entry of a 1-D
    tensor its own filter) and every tensor's sum of them, for one model and for a stack of
    models, against an explicit loop."""
    from landscape.sphere import filter_sq_norms, layer_sums
    gen = torch.Generator().manual_seed(count)
    shapes = [(4, 3, 3, 3), (5, 4, 3), (6,), (2, 7), (3, 2, 1, 1), (8,), (1, 5, 2)][:count]
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    loop = torch.tensor([float(t[i].square().sum()) for t in tensors for i in range(t.shape[0])], dtype=torch.float64)
    torch.testing.assert_close(filter_sq_norms(tensors), loop, rtol=1e-14, atol=0)
    sizes = [t.shape[0] for t in tensors]
    torch.testing.assert_close(layer_sums(loop, sizes), torch.stack([t.square().sum() for t in tensors]), rtol=1e-14, atol=0)
    stacked = [torch.stack([t, 2 * t]) for t in tensors]
    torch.testing.assert_close(filter_sq_norms(stacked, batch_dims=1), torch.stack([loop, 4 * loop]), rtol=1e-14, atol=0)
    torch.testing.assert_close(layer_sums(torch.stack([loop, 4 * loop]), sizes),
                               torch.stack([layer_sums(loop, sizes), 4 * layer_sums(loop, sizes)]), rtol=1e-14, atol=0)
