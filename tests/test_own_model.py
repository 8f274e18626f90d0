"""The own-model API: any module, any criterion, data as tensors / DataLoader /
list, against explicit Hessians and GGNs; the README example runs as written."""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import landscape
from landscape.errors import LandscapeError
from landscape.hessian import Curvature, NotScaleInvariantWarning


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 3, 3, bias=False), nn.BatchNorm1d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 6, 4)).double()


def mse_one_hot(out, t):
    return F.mse_loss(out, F.one_hot(t, 4).to(out.dtype))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 1, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (24,), generator=g)
    return x, y


def explicit_hessian(net, criterion, batches, bn):
    """The Hessian of sum_B w_B criterion(f(x_B), y_B) in all trainable parameters, by
    autograd.functional on a hand-written functional loss (no landscape code)."""
    from torch.func import functional_call
    import copy
    m = copy.deepcopy(net)
    if bn == "running":
        m.eval()
    else:
        for layer in m.modules():
            if isinstance(layer, nn.BatchNorm1d):
                layer.track_running_stats = False
                layer.running_mean = layer.running_var = None
        m.train()
    names = [n for n, p in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    total = sum(len(y) for _, y in batches)

    def loss(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            params[n] = flat[i:i + k].view(s)
            i += k
        return sum(len(y) / total * criterion(functional_call(m, params, (x,)), y) for x, y in batches)
    return torch.autograd.functional.hessian(loss, theta).numpy(), loss, theta


@pytest.mark.slow
@pytest.mark.parametrize("criterion", [F.cross_entropy, mse_one_hot], ids=["cross_entropy", "mse_one_hot"])
@pytest.mark.parametrize("bn", ["batch", "running"])
def test_bn_cnn_from_a_dataloader_matches_the_explicit_hessian(data, criterion, bn):
    x, y = data
    net = cnn()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    curv = Curvature(net, loader, criterion=criterion, bn=bn)
    H, loss, theta = explicit_hessian(net, criterion, [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)], bn)
    assert float(curv.loss(curv.theta)) == pytest.approx(float(loss(theta)), rel=1e-12)
    np.testing.assert_allclose(curv.operator().matmat(np.eye(curv.dim)), H, rtol=1e-7, atol=1e-9 * np.abs(H).max())
    top = landscape.hessian_eigenvalues(net, criterion, loader, k=2, bn=bn)
    np.testing.assert_allclose(top, np.sort(np.linalg.eigvalsh(H))[::-1][:2], rtol=1e-6)
    est = landscape.hessian_trace(net, criterion, loader, probes=400, bn=bn)
    assert abs(est.value - np.trace(H)) <= 4 * est.stderr and len(est.samples) == 400


def test_ggn_with_mse_matches_the_explicit_matrix(data):
    """For MSE the GGN is sum_B w_B J_B^T (2 / (|B| C)) J_B."""
    x, y = data
    net = cnn()
    curv = Curvature(net, [(x[:12], y[:12]), (x[12:], y[12:])], criterion=mse_one_hot, bn="batch", matrix="ggn")
    G = 0
    for (xb, yb), w in zip(curv.batches, curv.weights):
        J = torch.autograd.functional.jacobian(lambda t: curv.logits(t, xb), curv.theta).reshape(-1, curv.dim)
        G = G + w * (2.0 / J.shape[0]) * (J.T @ J)
    np.testing.assert_allclose(curv.operator().matmat(np.eye(curv.dim)), G.numpy(), rtol=1e-7,
                               atol=1e-9 * float(G.abs().max()))


def test_scale_invariance_is_detected_by_rescaling(data):
    x, y = data
    si = landscape.scale_invariant_parameters(cnn(), (x, y))
    assert si == {"0.weight": True, "1.weight": False, "1.bias": False, "4.weight": False, "4.bias": False}
    frozen_affine = cnn()
    for p in list(frozen_affine[1].parameters()) + list(frozen_affine[4].parameters()):
        p.requires_grad_(False)
    assert landscape.scale_invariant_parameters(frozen_affine, (x, y)) == {"0.weight": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotScaleInvariantWarning)
        est = landscape.hessian_trace(frozen_affine, F.cross_entropy, (x, y), probes=5, bn="batch", effective=True)
        raw = landscape.hessian_trace(frozen_affine, F.cross_entropy, (x, y), probes=5, bn="batch")
        rho2 = float(frozen_affine[0].weight.double().square().sum())
        assert est.value == pytest.approx(raw.value * rho2)
    with pytest.warns(NotScaleInvariantWarning, match="not scale-invariant"):
        landscape.hessian_trace(cnn(), F.cross_entropy, (x, y), probes=5, bn="batch", effective=True)


def test_bad_inputs_are_one_line_errors(data):
    x, y = data
    with pytest.raises(LandscapeError, match="BatchNorm: choose bn="):
        landscape.hessian_trace(cnn(), F.cross_entropy, (x, y))
    with pytest.raises(LandscapeError, match="DataLoader"):
        Curvature(cnn(), 3.0, bn="batch")
    with pytest.raises(LandscapeError, match="no parameter named"):
        Curvature(cnn(), (x, y), bn="batch", params=["nope"])
    with pytest.raises(LandscapeError, match="LinearOperator"):
        landscape.hutchinson_trace(np.eye(3), 5)


def test_interpolation_of_own_models_with_a_criterion(data):
    x, y = data
    a, b = cnn(), cnn()
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(-1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    r = landscape.interpolate_models(a, b, loader, [0.0, 0.5, 1.0], criterion=mse_one_hot, test_data=(x, y), bn="batch")
    assert set(r) == {"alpha", "train_loss", "train_error", "test_loss", "test_error"}
    for end, model in ((0, a), (2, b)):  # the ends are the models themselves (batch statistics)
        m = landscape.models.with_batch_statistics(model)
        with torch.no_grad():
            want = np.mean([float(mse_one_hot(m(x[i:i + 8]), y[i:i + 8])) for i in range(0, 24, 8)])
        assert r["train_loss"][end] == pytest.approx(want, rel=1e-10)


def test_the_readme_example_runs_as_written(capsys):
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = text[text.index("## Your own model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md (Your own model)", "exec"), {})
    out = capsys.readouterr().out
    assert "tr(H) =" in out and "top eigenvalues" in out and "'0.weight': True" in out
