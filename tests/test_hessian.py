"""Curvature against explicit Hessians, PyHessian and scale invariance."""
import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh

from landscape.hessian import (Curvature, gradient_noise, hutchinson_trace, lanczos,
                               spectral_density, top_eigenvalues)
from landscape.models import build_model, model_spec, si_groups


@pytest.fixture(scope="module")
def problem():
    """A real (tiny) SI ConvNet, float64, and two mini-batches; its Hessian fits in memory."""
    model = build_model(model_spec("convnet", (1, 12), 3, width=2), 0).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    return model, [(x[:16], y[:16]), (x[16:], y[16:])]


def explicit(curv):
    H = torch.autograd.functional.hessian(curv.loss, curv.theta)
    return H.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["batch", "running"])
@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_hvp_and_operator_match_explicit_hessian(problem, bn, mode):
    curv = Curvature(*problem, bn=bn, hvp_mode=mode)
    H = explicit(curv)
    assert np.allclose(H, H.T, atol=1e-8 * np.abs(H).max())
    rng = np.random.default_rng(0)
    V = rng.standard_normal((curv.dim, 5))
    op = curv.operator()
    np.testing.assert_allclose(op.matmat(V), H @ V, rtol=1e-5, atol=1e-5 * np.abs(H @ V).max())
    np.testing.assert_allclose(op.matvec(V[:, 0]), H @ V[:, 0], rtol=1e-5, atol=1e-5 * np.abs(H).max())


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["batch", "running"])
def test_lanczos_top_eigenvalues_match_eigvalsh(problem, bn):
    curv = Curvature(*problem, bn=bn)
    exact = np.linalg.eigvalsh(explicit(curv))[::-1]
    np.testing.assert_allclose(top_eigenvalues(curv, 4), exact[:4], rtol=1e-4)


@pytest.mark.slow
def test_hutchinson_unbiased_and_error_shrinks_like_inverse_sqrt(problem):
    curv = Curvature(*problem, bn="batch", probe_batch=64)
    exact = float(np.trace(explicit(curv)))
    r = hutchinson_trace(curv, 600, seed=1)
    est, se, samples = r.value, r.stderr, r.samples
    assert len(samples) == 600
    assert abs(est - exact) < 3 * se
    errors = {}
    for m in (16, 256):
        errs = [hutchinson_trace(curv, m, seed=100 + s).value - exact for s in range(24)]
        errors[m] = math.sqrt(np.mean(np.square(errs)))
    ratio = errors[16] / errors[256]
    assert 2.5 < ratio < 6.5, ratio  # sqrt(256/16) = 4


@pytest.mark.slow
def test_spectral_density_with_full_lanczos_recovers_the_spectrum(problem):
    curv = Curvature(*problem, bn="batch")
    H = explicit(curv)
    exact = np.linalg.eigvalsh(H)
    a, b = lanczos(curv.operator().matvec, curv.dim, curv.dim, np.ones(curv.dim))
    from scipy.linalg import eigh_tridiagonal
    ritz = eigh_tridiagonal(a, b, eigvals_only=True)
    # the extreme Ritz values converge first and are exact here
    assert abs(ritz.max() - exact.max()) < 1e-6 * abs(exact).max()
    assert abs(ritz.min() - exact.min()) < 1e-6 * abs(exact).max()
    nodes, weights, grid, density = spectral_density(curv, steps=40, runs=2, seed=0)
    np.testing.assert_allclose(np.nansum(weights, 1), 1.0, rtol=1e-10)
    assert abs(np.trapezoid(density, grid) - 1) < 1e-3
    # quadrature of the identity f(x) = x is exact: v^T H v / v^T v for each start vector
    rng = np.random.default_rng(0)
    for run in range(2):
        v = rng.choice([-1.0, 1.0], size=curv.dim)
        assert math.isclose(np.nansum(weights[run] * nodes[run]), v @ H @ v / (v @ v), rel_tol=1e-8)


@pytest.mark.slow
def test_riemannian_trace_formula_and_euler_identity(problem):
    from landscape.sharpness import checkpoint_sharpness
    model, batches = problem
    out = checkpoint_sharpness(model, batches, batches, probes=20, eigs=0, bn="batch", seed=3)
    curv = Curvature(model, batches, bn="batch")
    H = explicit(curv)
    theta = curv.theta.numpy()
    g = curv.gradient().numpy()
    rho = np.linalg.norm(theta)
    u = theta / rho
    P = np.eye(len(u)) - np.outer(u, u)
    n = len(u)
    # same probes => trace_riemannian - trace is the exact correction
    expected_shift = -(u @ H @ u) - (n - 1) * (theta @ g) / rho ** 2
    assert math.isclose(out["trace_riemannian"] - out["trace"], expected_shift, rel_tol=1e-6, abs_tol=1e-8)
    assert math.isclose(np.trace(P @ H @ P), np.trace(H) - u @ H @ u, rel_tol=1e-9)
    # scale invariance (Euler): <theta, g> = 0 and H theta = -g, up to BatchNorm's eps
    assert abs(theta @ g) < 1e-4 * rho * np.linalg.norm(g)
    np.testing.assert_allclose(H @ theta, -g, atol=1e-3 * np.linalg.norm(g))


def test_effective_trace_is_scale_invariant(problem):
    from landscape.sharpness import checkpoint_sharpness
    model, batches = problem
    base = checkpoint_sharpness(model, batches, batches, probes=30, eigs=2, seed=5)
    scaled = build_model(model_spec("convnet", (1, 12), 3, width=2), 0).double()
    c = 3.0
    with torch.no_grad():
        for _, p in si_groups(scaled):
            p.mul_(c)
    out = checkpoint_sharpness(scaled, batches, batches, probes=30, eigs=2, seed=5)
    assert math.isclose(out["rho"], c * base["rho"], rel_tol=1e-12)
    for key in ("trace_effective", "eigenvalues_effective", "mean_effective_grad_norm", "grad_cov_trace_effective"):
        np.testing.assert_allclose(out[key], base[key], rtol=1e-3, err_msg=key)
    np.testing.assert_allclose(out["trace"], base["trace"] / c ** 2, rtol=1e-3)
    np.testing.assert_allclose(out["mean_grad_norm"], base["mean_grad_norm"] / c, rtol=1e-3)


def test_gradient_noise_against_direct_computation(problem):
    model, batches = problem
    noise = gradient_noise(model, batches)
    grads = []
    for x, y in batches:
        m = build_model(model_spec("convnet", (1, 12), 3, width=2), 0).double()
        m.train()
        ps = [p for _, p in si_groups(m)]
        loss = torch.nn.functional.cross_entropy(m(x), y)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, ps)]))
    G = torch.stack(grads)
    assert math.isclose(noise["mean_grad_norm"], G.norm(dim=1).mean().item(), rel_tol=1e-10)
    cov = ((G - G.mean(0)) ** 2).sum(1).mean().item()
    assert math.isclose(noise["grad_cov_trace"], cov, rel_tol=1e-8)


@pytest.mark.slow
def test_agrees_with_pyhessian_in_running_mode(problem):
    pyhessian = pytest.importorskip("pyhessian")
    model, batches = problem
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    # a few BN running-statistics updates so eval mode is not at the identity initialisation
    model = build_model(model_spec("convnet", (1, 12), 3, width=2), 0).double()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    curv = Curvature(model, [(x, y)], bn="running")
    H = explicit(curv)
    eig = np.linalg.eigvalsh(H)
    assert eig.max() > abs(eig.min())  # power iteration finds the largest |eigenvalue|
    ours = hutchinson_trace(curv, 400, seed=0)
    ours_trace, ours_se = ours.value, ours.stderr
    ours_top = top_eigenvalues(curv, 1)[0]

    torch.manual_seed(0)
    ref = pyhessian.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    ref_top = ref.eigenvalues(maxIter=300, tol=1e-8, top_n=1)[0][0]
    ref_samples = np.array(ref.trace(maxIter=400, tol=-1.0))
    ref_trace, ref_se = ref_samples.mean(), ref_samples.std(ddof=1) / math.sqrt(len(ref_samples))
    assert math.isclose(ours_top, ref_top, rel_tol=1e-4), (ours_top, ref_top)
    assert math.isclose(ours_top, eig.max(), rel_tol=1e-6)
    assert abs(ours_trace - ref_trace) < 4 * math.hypot(ours_se, ref_se)
    exact = float(np.trace(H))
    assert abs(ours_trace - exact) < 4 * ours_se and abs(ref_trace - exact) < 4 * ref_se


@pytest.mark.slow
def test_per_param_trace_is_the_official_codes_quantity(problem):
    """The official code averages v^T H v over unit-norm Gaussian probes: E = tr(H) / P. Our
    ``trace_per_param`` estimates the same (checked against the explicit Hessian, and against
    that estimator run on it), and ``trace_per_param_effective`` is it times rho^2."""
    from landscape.sharpness import checkpoint_sharpness
    model, batches = problem
    out = checkpoint_sharpness(model, batches, batches, probes=400, eigs=0, seed=2)
    curv = Curvature(*problem, bn="batch")
    H = explicit(curv)
    P = curv.dim
    assert out["num_params"] == P
    exact = np.trace(H) / P
    assert abs(out["trace_per_param"] - exact) < 3 * out["trace_stderr"] / P
    v = np.random.default_rng(0).standard_normal((20000, P))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    official = np.einsum("ij,jk,ik->i", v, H, v)
    assert abs(official.mean() - exact) < 4 * official.std() / math.sqrt(len(v))
    assert math.isclose(out["trace_per_param_effective"], out["trace_per_param"] * out["rho"] ** 2, rel_tol=1e-12)
    assert math.isclose(out["trace_effective"], P * out["trace_per_param_effective"], rel_tol=1e-12)


def explicit_ggn(curv):
    """sum_B w_B J_B^T H_out J_B with the Jacobians built explicitly (autograd.functional)."""
    G = 0
    for (x, y), w in zip(curv.batches, curv.weights):
        J = torch.autograd.functional.jacobian(lambda t: curv.logits(t, x), curv.theta)  # [B, C, P]
        p = torch.softmax(curv.logits(curv.theta, x), 1).detach()
        H = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / len(p)                # [B, C, C]
        G = G + w * torch.einsum("bcp,bcd,bdq->pq", J, H, J)
    return G.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["batch", "running"])
def test_ggn_matches_the_explicit_matrix(problem, bn):
    curv = Curvature(*problem, bn=bn, matrix="ggn")
    G = explicit_ggn(curv)
    eig = np.linalg.eigvalsh(G)
    assert eig.min() > -1e-8 * eig.max()  # positive semi-definite, unlike the Hessian
    V = np.random.default_rng(0).standard_normal((curv.dim, 4))
    np.testing.assert_allclose(curv.operator().matmat(V), G @ V, rtol=1e-5, atol=1e-5 * np.abs(G @ V).max())
    np.testing.assert_allclose(top_eigenvalues(curv, 3), np.sort(eig)[::-1][:3], rtol=1e-5)
    r = hutchinson_trace(curv, 300, seed=3)
    est, se = r.value, r.stderr
    assert abs(est - np.trace(G)) < 3 * se


@pytest.mark.slow
def test_ggn_agrees_with_curvlinops(problem):
    """curvlinops' GGNLinearOperator on the same batches (train-mode BN through a copy that
    keeps no running statistics, as ours)."""
    from curvlinops import GGNLinearOperator
    from landscape.models import with_batch_statistics
    model, batches = problem
    curv = Curvature(model, batches, bn="batch", matrix="ggn")
    net = with_batch_statistics(model)
    params = [p for _, p in si_groups(net)]
    ref = GGNLinearOperator(net, torch.nn.CrossEntropyLoss(), params, batches,
                            check_deterministic=False)
    V = np.random.default_rng(1).standard_normal((curv.dim, 3))
    theirs, ours = ref.to_scipy() @ V, curv.operator().matmat(V)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8 * np.abs(ours).max())
    np.testing.assert_allclose(top_eigenvalues(curv, 1), eigsh(ref.to_scipy(), k=1, which="LA")[0], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("matrix", ["hessian", "ggn"])
def test_per_group_traces_are_the_diagonal_blocks_and_sum_to_the_trace(problem, matrix):
    from landscape.hessian import hutchpp_trace
    curv = Curvature(*problem, bn="batch", matrix=matrix)
    M = explicit(curv) if matrix == "hessian" else explicit_ggn(curv)
    for level in ("layer", "filter"):
        groups = curv.group_slices(level)
        assert sum(s.stop - s.start for s in groups) == curv.dim
        exact = np.array([np.trace(M[s, s]) for s in groups])
        for estimate in (hutchinson_trace, hutchpp_trace):
            r = estimate(curv, 240, seed=4, groups=groups)
            total, per_group, group_se = r.value, r.group_values, r.group_stderrs
            assert math.isclose(per_group.sum(), total, rel_tol=1e-9)
            assert np.all(np.abs(per_group - exact) <= 4 * group_se + 1e-9 * np.abs(exact).max()), level


@pytest.mark.slow
def test_hutchpp_is_unbiased_and_beats_hutchinson_on_the_ggn(problem):
    """On a matrix with a decaying spectrum (the GGN) Hutch++ reaches a smaller error than
    Hutchinson with the same number of products; both are unbiased."""
    from landscape.hessian import hutchpp_trace
    curv = Curvature(*problem, bn="batch", matrix="ggn", probe_batch=64)
    exact = float(np.trace(explicit_ggn(curv)))
    plain = [hutchinson_trace(curv, 60, seed=s).value - exact for s in range(30)]
    plus = [hutchpp_trace(curv, 60, seed=s).value - exact for s in range(30)]
    assert abs(np.mean(plus)) < 4 * np.std(plus) / math.sqrt(30) + 1e-9 * exact
    assert math.sqrt(np.mean(np.square(plus))) < 0.5 * math.sqrt(np.mean(np.square(plain)))


def test_lanczos_stops_at_its_residual_bound_and_the_bound_holds():
    """A symmetric matrix with a known spectrum: Lanczos stops once every top-k Ritz residual is
    below tol |theta|, well before the dimension, and each value is then within that of an
    eigenvalue (the symmetric residual bound)."""
    from scipy.sparse.linalg import aslinearoperator
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    spectrum = np.concatenate([[50.0, 30.0, 20.0], rng.uniform(-1.0, 5.0, 397)])
    op = aslinearoperator((Q * spectrum) @ Q.T)
    for tol in (1e-3, 1e-8):
        info = {}
        vals = top_eigenvalues(op, 3, seed=1, tol=tol, info=info)
        assert info["converged"] and info["products"] < 100
        assert np.all(info["residuals"] <= tol * np.abs(vals))
        assert np.all(np.abs(vals - [50.0, 30.0, 20.0]) <= tol * np.abs(vals))


@pytest.mark.parametrize("matrix", ["hessian", "ggn"])
def test_streamed_products_equal_the_explicit_matrix(problem, matrix):
    """Batch by batch (one batch's graph in memory) the products, the gradient and the trace
    are those of the explicit matrix of the whole data."""
    model, batches = problem
    kept = Curvature(model, batches, bn="batch", matrix=matrix, streamed=False)
    streamed = Curvature(model, batches, bn="batch", matrix=matrix, streamed=True)
    M = kept.operator().matmat(np.eye(kept.dim))
    if matrix == "hessian":
        np.testing.assert_allclose(M, explicit(kept), rtol=1e-6, atol=1e-9 * np.abs(M).max())
    V = np.random.default_rng(0).standard_normal((kept.dim, 6))
    np.testing.assert_allclose(streamed.operator().matmat(V), M @ V, rtol=1e-9, atol=1e-12 * np.abs(M @ V).max())
    v = torch.randn(kept.dim, dtype=torch.float64)
    np.testing.assert_allclose(streamed.mvp(v).numpy(), M @ v.numpy(), rtol=1e-9, atol=1e-12 * np.abs(M).max())
    np.testing.assert_allclose(streamed.gradient().numpy(), kept.gradient().numpy(), rtol=1e-10, atol=1e-14)
    a, b = hutchinson_trace(kept, 16, seed=3), hutchinson_trace(streamed, 16, seed=3)
    np.testing.assert_allclose(b.samples, a.samples, rtol=1e-9)
    assert np.isclose(top_eigenvalues(streamed, 1)[0], np.linalg.eigvalsh(M)[-1], rtol=1e-6)


def test_large_data_is_streamed_by_default():
    from landscape.hessian import STREAM_ABOVE_EXAMPLES
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(STREAM_ABOVE_EXAMPLES + 2, 3), torch.randint(0, 2, (STREAM_ABOVE_EXAMPLES + 2,))
    assert Curvature(net, [(x[:-2], y[:-2]), (x[-2:], y[-2:])]).streamed
    assert not Curvature(net, [(x[:64], y[:64]), (x[64:128], y[64:128])]).streamed
    assert not Curvature(net, (x, y)).streamed  # one batch: its graph is the whole data's anyway
