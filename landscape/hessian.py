"""Curvature of a checkpoint: Hessian-vector products, Hutchinson trace, Lanczos eigenvalues,
spectral density, gradient noise.

The loss is a pure function of the flat vector of SI parameters (``torch.func.functional_call``
over fixed mini-batches). Two HVP modes, both ``torch.func``:
    ``rev`` (default): ``vjp`` of ``grad``, linearised once per point; each HVP is then one
          backward pass through the saved graph (H is symmetric, so vjp = Hv), and ``vmap`` runs
          several probes per pass;
    ``fwd``: forward-over-reverse, ``jvp`` of ``grad``, recomputing forward and backward per call.
On the default ConvNet on CPU ``rev`` costs ~2x a gradient per HVP (1.5x under vmap) against ~4x
for ``fwd`` (benchmarks/RESULTS.md). Every curvature object is a
``scipy.sparse.linalg.LinearOperator``.

BatchNorm modes, chosen explicitly for a model with BatchNorm: ``batch`` normalises each
mini-batch by its own statistics, the loss training optimises, which keeps scale invariance;
``running`` uses the stored running statistics (eval mode), PyHessian's convention. Neither mode
mutates any buffer.

Your own model, PyHessian-short (any criterion; data as (x, y), a DataLoader or a list)::

    >>> import torch, torch.nn.functional as F
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> est = hessian_trace(net, F.cross_entropy, (x, y), probes=50)
    >>> est.value > 0, est.stderr < est.value
    (True, True)

The estimators (``hutchinson_trace``, ``hutchpp_trace``, ``top_eigenvalues``,
``spectral_density``) take a :class:`Curvature` or any square
``scipy.sparse.linalg.LinearOperator``.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch.func import functional_call, grad, jvp, vjp, vmap

from .errors import ArgumentError, LandscapeError
from .data import as_batches
from .models import batchnorm_layers, with_batch_statistics

CURVATURE_BN_MODES = ("batch", "running")  # BatchNorm in curvature: batch statistics or running buffers
HVP_MODES = ("rev", "fwd")
# probes per vmap call by default: vmap over probes makes an HVP 1.5x cheaper on the ConvNet
# (129k parameters), 1.6x dearer on a torchvision ResNet-18 (11M; benchmarks/RESULTS.md), so
# large models take their probes one at a time
VMAP_PROBES, VMAP_MAX_PARAMETERS = 8, 2_000_000
# above this many examples the data is taken batch by batch (``Curvature(streamed=...)``): a
# graph of the whole set (CIFAR-10's 50,000 images through a ResNet) would not fit in memory
STREAM_ABOVE_EXAMPLES = 8192
MATRICES = ("hessian", "ggn")
ESTIMATORS = ("hutchinson", "hutchpp")


def _prepare(model: torch.nn.Module, bn: str | None) -> tuple[torch.nn.Module, str]:
    if bn is None:
        if batchnorm_layers(model):
            raise LandscapeError("the model has BatchNorm: choose bn='batch' (mini-batch statistics, "
                                 "the loss training optimises; keeps scale invariance) or "
                                 "bn='running' (stored statistics, eval mode: PyHessian's convention)")
        bn = "batch"
    if bn not in CURVATURE_BN_MODES:
        raise ArgumentError(f"bn must be one of {', '.join(CURVATURE_BN_MODES)}, got {bn!r}", "bn")
    if bn == "batch":
        return with_batch_statistics(model), bn
    return copy.deepcopy(model).eval(), bn


class Curvature:
    """The loss L(theta) = sum_B w_B criterion(f(x_B; theta), y_B) over fixed mini-batches (w_B
    = |B| / N) as a function of the differentiated parameters theta.

    ``data``: (x, y) tensors, a DataLoader, or a list of (x, y) batches (see ``as_batches``).
    ``criterion``: (outputs, targets) -> mean loss of a batch; default cross-entropy.
    ``bn``: 'batch' or 'running' (module docstring); required when the model has BatchNorm.
    ``params``: names of the parameters to differentiate (default: the trainable ones; for the
    package's SI networks the SI groups, the frozen last layer excluded).
    ``streamed``: products batch by batch, each batch linearised once per call and freed (the
    memory of one batch's graph; every ``mvp_batch`` call re-linearises), instead of the whole
    data's graph built once and kept; default: streamed above ``STREAM_ABOVE_EXAMPLES`` examples.
    ``probe_batch``: products per ``vmap`` call in ``mvp_batch`` (default: ``VMAP_PROBES`` up to
    ``VMAP_MAX_PARAMETERS`` parameters, else 1, where vmap costs more than it saves).
    ``matrix``: the curvature matrix M that ``mvp``, ``operator`` and the estimators use:
    'hessian' (H) or 'ggn', the generalised Gauss-Newton G = sum_B w_B J_B^T H_out J_B with J_B
    the Jacobian of batch B's outputs and H_out the Hessian of the criterion in the outputs
    (for cross-entropy (diag p - p p^T) / |B| per example, the official code's "Fisher", in
    closed form; any other criterion by ``torch.func``); products by ``torch.func.linearize``
    (J v; streamed, by forward-mode ``jvp``, since a batch's trace would serve one call) and
    ``vjp`` (J^T u), never the Jacobian itself.

    >>> import torch, torch.nn.functional as F
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> curv = Curvature(net, (torch.randn(16, 4), torch.randint(0, 3, (16,))), matrix="ggn")
    >>> hutchinson_trace(curv, 20).value > 0, top_eigenvalues(curv, 2).shape
    (True, (2,))
    """

    def __init__(self, model, data=None, *, criterion=None, bn: str | None = None, dtype=None,
                 params=None, probe_batch: int | None = None, hvp_mode: str = "rev", matrix: str = "hessian",
                 streamed: bool | None = None):
        if hvp_mode not in HVP_MODES:
            raise ArgumentError(f"hvp_mode must be one of {', '.join(HVP_MODES)}, got {hvp_mode!r}", "hvp_mode")
        if matrix not in MATRICES:
            raise ArgumentError(f"matrix must be one of {', '.join(MATRICES)}, got {matrix!r}", "matrix")
        self.hvp_mode, self.matrix = hvp_mode, matrix
        self.criterion = criterion if criterion is not None else F.cross_entropy
        self._linear = self._ggn_parts = None
        m, bn = _prepare(model, bn)
        if dtype is not None:
            m = m.to(dtype)
        self.model, self.bn = m, bn
        names = params or [n for n, p in m.named_parameters() if p.requires_grad]
        named = dict(m.named_parameters())
        unknown = [n for n in names if n not in named]
        if unknown:
            raise LandscapeError(f"no parameter named {', '.join(unknown)} in the model")
        self.names = list(names)
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [named[n].numel() for n in self.names]
        self.fixed = {n: p.detach() for n, p in named.items() if n not in self.names}
        self.fixed.update({n: b for n, b in m.named_buffers() if b is not None})
        self.theta = torch.cat([named[n].detach().reshape(-1) for n in self.names])
        self.probe_batch = max(1, int(probe_batch)) if probe_batch is not None else \
            VMAP_PROBES if self.dim <= VMAP_MAX_PARAMETERS else 1
        dt = self.theta.dtype
        if data is None:
            raise LandscapeError("give data: (x, y) tensors, a DataLoader or a list of (x, y) batches")
        self.batches = [(x.to(self.theta.device, dt), y.to(self.theta.device, dt if y.is_floating_point() else None))
                        for x, y in as_batches(data)]
        total = sum(len(y) for _, y in self.batches)
        if total == 0:
            raise LandscapeError("no data to evaluate the loss on")
        self.weights = [len(y) / total for _, y in self.batches]
        self.streamed = (len(self.batches) > 1 and total > STREAM_ABOVE_EXAMPLES) if streamed is None else bool(streamed)

    @property
    def dim(self) -> int:
        return self.theta.numel()

    @property
    def rho(self) -> float:
        return float(self.theta.double().norm())

    def unflatten(self, flat: torch.Tensor) -> dict:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def batch_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The criterion on one mini-batch at the parameters ``flat``."""
        state = {**self.fixed, **self.unflatten(flat)}
        return self.criterion(functional_call(self.model, state, (x,)), y)

    def loss(self, flat: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for (x, y), w in zip(self.batches, self.weights):
            total = total + w * self.batch_loss(flat, x, y)
        return total

    def gradient(self, flat: torch.Tensor | None = None) -> torch.Tensor:
        if flat is None and self._linear is not None:
            return self._linear[0]
        flat = self.theta if flat is None else flat
        if self.streamed:  # batch by batch: one batch's graph at a time
            return sum(w * grad(self.batch_loss)(flat, x, y).detach() for (x, y), w in zip(self.batches, self.weights))
        return grad(self.loss)(flat)

    def _hessian_of_batch(self, x, y):
        """v -> H_B v of one batch, linearised once (its graph lives as long as the function)."""
        _, fn = vjp(grad(lambda t: self.batch_loss(t, x, y)), self.theta)
        return lambda v: fn(v)[0].detach()

    def _streamed(self, vs: torch.Tensor, linearise) -> torch.Tensor:
        """sum_B w_B M_B V, batch by batch: each batch linearised once for all rows of V and
        freed before the next, so memory holds one batch's graph, not the whole set's."""
        total = torch.zeros_like(vs)
        for (x, y), w in zip(self.batches, self.weights):
            total += w * self._batched(linearise(x, y), vs)
        return total

    def _vjp(self):
        if self._linear is None:  # the gradient's graph, built once and reused by every HVP
            g, fn = vjp(grad(self.loss), self.theta)
            self._linear = (g.detach(), fn)
        return self._linear[1]

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v at theta."""
        if self.streamed:
            return self._streamed(v[None], self._hessian_of_batch)[0]
        if self.hvp_mode == "fwd":
            return jvp(grad(self.loss), (self.theta,), (v,))[1]
        return self._vjp()(v)[0].detach()

    def hvp_batch(self, vs: torch.Tensor) -> torch.Tensor:
        """H V for the rows of V, ``probe_batch`` rows per vmap call (one at a time: no vmap)."""
        if self.streamed:
            return self._streamed(vs, self._hessian_of_batch)
        return self._batched(self.hvp, vs)

    def _batched(self, product, vs: torch.Tensor) -> torch.Tensor:
        if self.probe_batch == 1:
            return torch.stack([product(v) for v in vs])
        return torch.cat([vmap(product)(chunk) for chunk in vs.split(self.probe_batch)])

    def logits(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, {**self.fixed, **self.unflatten(flat)}, (x,))

    def _ggn_of_batch(self, x, y, traced: bool = True):
        """v -> J_B^T H_out J_B v of one batch (unweighted). ``traced``: J v by a
        ``torch.func.linearize`` trace, which pays when the function serves many products;
        else by forward-mode ``jvp`` per call (a streamed batch serves one call: tracing it
        would cost more than all its products)."""
        def f(t):
            return self.logits(t, x)
        out, vjp_fn = vjp(f, self.theta)
        if traced:
            with warnings.catch_warnings():  # linearize's graph folding is chatty
                warnings.simplefilter("ignore")
                _, jv = torch.func.linearize(f, self.theta)
        else:
            def jv(v):
                return jvp(f, (self.theta,), (v,))[1]
        out = out.detach()
        if self.criterion is F.cross_entropy and out.dim() == 2 and not y.is_floating_point():
            p = torch.softmax(out, dim=1)

            def h_out(u):  # the mean cross-entropy's Hessian in the logits
                return (p * u - p * (p * u).sum(1, keepdim=True)) / len(p)
        else:  # the criterion's Hessian in the outputs, linearised once (symmetric: vjp = Hu)
            _, out_hvp = vjp(grad(lambda z: self.criterion(z, y)), out)

            def h_out(u):
                return out_hvp(u)[0]
        return lambda v: vjp_fn(h_out(jv(v)))[0].detach()

    def _streamed_ggn_of_batch(self, x, y):
        return self._ggn_of_batch(x, y, traced=False)

    def _ggn(self):
        """Per batch, linearised once and kept: [(w_B, v -> J_B^T H_out J_B v)]."""
        if self._ggn_parts is None:
            self._ggn_parts = [(w, self._ggn_of_batch(x, y)) for (x, y), w in zip(self.batches, self.weights)]
        return self._ggn_parts

    def ggnvp(self, v: torch.Tensor) -> torch.Tensor:
        """G v = sum_B w_B J_B^T H_out J_B v (see the class docstring)."""
        if self.streamed:
            return self._streamed(v[None], self._streamed_ggn_of_batch)[0]
        total = torch.zeros_like(self.theta)
        for w, product in self._ggn():
            total = total + w * product(v)
        return total.detach()

    def mvp(self, v: torch.Tensor) -> torch.Tensor:
        """M v for the chosen curvature matrix."""
        return self.hvp(v) if self.matrix == "hessian" else self.ggnvp(v)

    def mvp_batch(self, vs: torch.Tensor) -> torch.Tensor:
        """M V for the rows of V, ``probe_batch`` rows per vmap call."""
        if self.matrix == "hessian":
            return self.hvp_batch(vs)
        if self.streamed:
            return self._streamed(vs, self._streamed_ggn_of_batch)
        return self._batched(self.ggnvp, vs)

    def group_slices(self, level: str = "layer") -> list[slice]:
        """The coordinates of every SI group in the flat vector: each tensor ('layer') or each
        filter (its output-channel slice, 'filter')."""
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            if level == "layer":
                out.append(slice(start, start + size))
            else:
                row = size // shape[0]
                out += [slice(start + c * row, start + (c + 1) * row) for c in range(shape[0])]
            start += size
        return out

    def operator(self) -> LinearOperator:
        """The curvature matrix as a float64 LinearOperator (computed in the model's dtype)."""
        dt, dev = self.theta.dtype, self.theta.device

        def matvec(v):
            v = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dt, device=dev)
            return self.mvp(v).double().cpu().numpy()

        def matmat(V):
            V = torch.as_tensor(np.asarray(V).T.copy(), dtype=dt, device=dev)
            return self.mvp_batch(V).double().cpu().numpy().T

        return LinearOperator((self.dim, self.dim), matvec=matvec, matmat=matmat,
                              rmatvec=matvec, dtype=np.float64)

    def scale_invariance(self, scale: float = 2.0, rtol: float = 1e-3) -> dict:
        """Which differentiated parameter tensors are scale-invariant, tested on the first batch:
        the outputs with that tensor multiplied by ``scale`` differ from the unscaled ones by at
        most ``rtol`` of their magnitude (an all-zero tensor counts as not invariant). Effective quantities (x rho^2, Sec. 2 of the paper)
        are meaningful only when every tensor is. With ``bn='running'`` BatchNorm no longer
        removes the scale, so SI networks test as not invariant: that is the truth of that mode."""
        x = self.batches[0][0]
        with torch.no_grad():
            base = self.logits(self.theta, x)
            mag = float(base.abs().max()) or 1.0
            out, start = {}, 0
            for name, size in zip(self.names, self.sizes):
                flat = self.theta.clone()
                flat[start:start + size] *= scale
                diff = float((self.logits(flat, x) - base).abs().max())
                # a zero tensor rescales to itself: it has no direction to be invariant in
                out[name] = diff <= rtol * mag and bool(flat[start:start + size].any())
                start += size
        return out

    def not_scale_invariant(self) -> list[str]:
        """The differentiated parameters that fail ``scale_invariance`` (cached)."""
        if not hasattr(self, "_not_si"):
            self._not_si = [n for n, ok in self.scale_invariance().items() if not ok]
        return self._not_si

    def tangent_projector(self):
        """v -> v - (v . u) u with u = theta / |theta|: the tangent space of the sphere."""
        u = self.theta / self.theta.norm()
        return lambda V: V - (V @ u)[..., None] * u


class _Products:
    """What an estimator needs of a curvature operator: its size, dtype and device, and
    products with a batch of vectors (rows). A :class:`Curvature` computes them with torch; any
    square ``scipy.sparse.linalg.LinearOperator`` through its ``matmat`` in float64."""

    def __init__(self, op, probe_batch: int = 8):
        if isinstance(op, Curvature):
            self.dim, self.dtype, self.device = op.dim, op.theta.dtype, op.theta.device
            self.batch, self.probe_batch, self.operator = op.mvp_batch, op.probe_batch, op.operator
            self.single = op.mvp  # one vector: no vmap
        elif isinstance(op, LinearOperator) and op.shape[0] == op.shape[1]:
            self.dim, self.dtype, self.device = op.shape[0], torch.float64, torch.device("cpu")
            self.probe_batch, self.operator = probe_batch, lambda: op
            self.batch = lambda V: torch.from_numpy(np.asarray(op.matmat(V.double().numpy().T)).T.copy())
            self.single = lambda v: torch.from_numpy(np.asarray(op.matvec(v.double().numpy())).reshape(-1))
        else:
            raise LandscapeError(f"need a Curvature or a square scipy LinearOperator, got {type(op).__name__}")


@dataclass
class TraceEstimate:
    """A stochastic trace estimate.

    value     the estimate of tr(M)
    stderr    its standard error (Hutch++: of the Hutchinson part; the rest is exact)
    samples   the probes' v^T M v (Hutch++: of the deflated operator)
    estimator 'hutchinson' | 'hutchpp';  matvecs: products with M used
    group_values, group_stderrs  traces of each group's diagonal block (when groups were given)
    """
    value: float
    stderr: float
    samples: np.ndarray
    estimator: str = "hutchinson"
    matvecs: int = 0
    group_values: np.ndarray | None = None
    group_stderrs: np.ndarray | None = None


def rademacher(n: int, dim: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    # drawn in the target dtype: the same draws as int64, one pass fewer over the probes
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.int64
    return torch.randint(0, 2, (n, dim), generator=gen, dtype=draw_dtype).mul_(2).sub_(1).to(device=device, dtype=dtype)


def _segment_sums(rows: torch.Tensor, slices) -> torch.Tensor:
    """Row-wise sums over each slice of the columns: [n, groups]."""
    return torch.stack([rows[:, s].sum(1) for s in slices], dim=1)


def hutchinson_trace(curv, probes: int, seed: int = 0, project=None, on_probes=None,
                     groups=None) -> TraceEstimate:
    """Hutchinson's estimate of tr(M) (or tr(P M P) with ``project`` = P) with Rademacher probes:
    the mean of v^T M v, for a :class:`Curvature` or any square LinearOperator ``curv``. With
    ``groups`` (a list of coordinate slices, e.g. ``curv.group_slices('filter')``) also the
    trace of each group's diagonal block from the same probes, E[v_g^T (M v)_g] = tr(M_gg).

    >>> from scipy.sparse.linalg import aslinearoperator
    >>> round(hutchinson_trace(aslinearoperator(np.diag([1.0, 2.0, 3.0])), 10).value, 6)
    6.0
    """
    if probes < 1:
        raise ArgumentError(f"probes must be a positive integer, got {probes}", "probes")
    curv = _Products(curv)
    gen = torch.Generator().manual_seed(int(seed))
    samples, group_samples = [], []
    done = 0
    while done < probes:
        n = min(curv.probe_batch, probes - done)
        V = rademacher(n, curv.dim, gen, curv.dtype, curv.device)
        if project is not None:
            V = project(V)
        prod = V * curv.batch(V)
        samples.append(prod.sum(1, dtype=torch.float64).cpu())
        if groups is not None:
            group_samples.append(_segment_sums(prod.double(), groups).cpu())
        done += n
        if on_probes is not None:
            on_probes(n)
    s = torch.cat(samples).numpy()
    stderr = float(s.std(ddof=1) / math.sqrt(len(s))) if len(s) > 1 else float("nan")
    out = TraceEstimate(float(s.mean()), stderr, s, "hutchinson", probes)
    if groups is not None:
        g = torch.cat(group_samples).numpy()
        out.group_values = g.mean(0)
        out.group_stderrs = g.std(0, ddof=1) / math.sqrt(len(g)) if len(g) > 1 else np.full(g.shape[1], np.nan)
    return out


def hutchpp_trace(curv, matvecs: int, seed: int = 0, on_probes=None, groups=None) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021) with about ``matvecs`` products: a third
    sketches the top of the spectrum (Q = orth(M S)), a third computes tr(Q^T M Q) exactly, the
    last third runs Hutchinson on the rest, (I - QQ^T) M (I - QQ^T). Exact on the captured
    subspace, so for the low effective rank of network Hessians it reaches a given error with
    far fewer products than Hutchinson. Per-group block traces with ``groups`` as
    ``hutchinson_trace``; ``curv`` a :class:`Curvature` or any square LinearOperator."""
    k = max(1, matvecs // 3)
    m = max(2, matvecs - 2 * k)
    op = curv
    curv = _Products(curv)
    gen = torch.Generator().manual_seed(int(seed))
    dt, dev = curv.dtype, curv.device
    S = rademacher(k, curv.dim, gen, dt, dev)
    Q = torch.linalg.qr(curv.batch(S).double().T).Q.to(dt)  # [dim, k], orthonormal columns
    MQ = curv.batch(Q.T.contiguous()).double().T              # [dim, k]
    # with P = QQ^T, M = MP + M(I-P): the diagonal of MP is known exactly (its trace is
    # tr(Q^T M Q)); probes v = (I-P)g give E[v_i (M v)_i] = [M(I-P)]_ii, the rest of every
    # diagonal entry, so the per-group sums are unbiased too
    top_diag = (MQ * Q.double()).sum(1)
    if on_probes is not None:
        on_probes(2 * k)

    def deflate(V):
        return V - (V @ Q) @ Q.T
    res = hutchinson_trace(op, m, seed + 1, project=deflate, on_probes=on_probes, groups=groups)
    out = TraceEstimate(float(top_diag.sum()) + res.value, res.stderr, res.samples, "hutchpp", 2 * k + m)
    if groups is not None:
        out.group_values = _segment_sums(top_diag[None, :], groups)[0].cpu().numpy() + res.group_values
        out.group_stderrs = res.group_stderrs
    return out


def top_eigenvalues(curv, k: int, seed: int = 0, tol: float = 1e-6, max_products: int | None = None,
                    info: dict | None = None, on_product=None) -> np.ndarray:
    """The k largest (algebraic) eigenvalues of a :class:`Curvature` or square LinearOperator,
    in decreasing order, by Lanczos with full reorthogonalisation, one product per step, stopped
    as soon as each of the top k Ritz pairs (theta_i, y_i) has residual ||M y_i - theta_i y_i||
    = beta_j |s_ji| <= tol |theta_i|; since M is symmetric an eigenvalue then lies within
    tol |theta_i| of theta_i. (ARPACK's ``eigsh`` spends at least ncv = 20 products per restart
    whatever the accuracy asked; PyHessian's power iteration stops when the estimate changes by
    less than 1e-3 relatively, which bounds nothing.) ``max_products``: at most this many
    (default max(300, 20 k), at most the dimension); ``info``, a dict, receives
    ``products``, ``residuals`` and ``converged``; ``on_product()`` is called after each
    product (progress).

    >>> from scipy.sparse.linalg import aslinearoperator
    >>> top_eigenvalues(aslinearoperator(np.diag(np.arange(1.0, 101.0))), 2).round(6)
    array([100.,  99.])
    """
    ops = _Products(curv)
    if not 1 <= k < ops.dim:
        raise ArgumentError(f"k must be between 1 and {ops.dim - 1}, got {k}", "k", "eigs")
    if not tol > 0:
        raise ArgumentError(f"tol must be positive, got {tol}", "tol")
    limit = min(ops.dim, max_products or max(300, 20 * k))

    def matvec(q: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(q).to(device=ops.device, dtype=ops.dtype)
        out = ops.single(v).double().cpu().numpy()
        if on_product is not None:
            on_product()
        return out
    found = {"theta": None, "residuals": None, "converged": False}

    def converged(alpha, beta, b, exhausted):
        if len(alpha) < k:
            return False
        vals, S = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
        order = np.argsort(vals)[::-1][:k]
        found["theta"], found["residuals"] = vals[order], b * np.abs(S[-1, order])
        # an exhausted Krylov space is invariant: its Ritz values are eigenvalues
        found["converged"] = exhausted or bool(np.all(found["residuals"] <= tol * np.maximum(np.abs(vals[order]), 1e-300)))
        return found["converged"]
    alpha, _ = lanczos(matvec, ops.dim, limit, np.random.default_rng(seed).standard_normal(ops.dim), converged)
    if info is not None:
        info.update(products=len(alpha), residuals=found["residuals"], converged=found["converged"])
    return np.asarray(found["theta"], float)


def lanczos(matvec, dim: int, steps: int, v0: np.ndarray, stop=None):
    """``steps`` Lanczos iterations with full reorthogonalisation; returns the tridiagonal's
    (alpha, beta). Stops early if the Krylov space is exhausted, or when ``stop(alpha, beta, b,
    exhausted)`` (called after each step with the next off-diagonal b) returns True."""
    q = v0 / np.linalg.norm(v0)
    Q = [q]
    alpha, beta = [], []
    for j in range(min(steps, dim)):
        w = matvec(Q[-1])
        a = float(w @ Q[-1])
        alpha.append(a)
        basis = np.array(Q)
        w = w - basis.T @ (basis @ w)  # full reorthogonalisation (twice is enough)
        w = w - basis.T @ (basis @ w)
        b = float(np.linalg.norm(w))
        exhausted = b < 1e-10 * max(1.0, abs(a))
        if stop is not None and stop(alpha, beta, b, exhausted):
            break
        if j == min(steps, dim) - 1 or exhausted:
            break
        beta.append(b)
        Q.append(w / b)
    return np.array(alpha), np.array(beta)


def spectral_density(curv, steps: int = 80, runs: int = 1, seed: int = 0,
                     grid_points: int = 400, sigma: float | None = None, on_product=None):
    """Eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019; PyHessian's
    ``density()``): each run's Ritz values are quadrature nodes weighted by the squared first
    components of the tridiagonal's eigenvectors; nodes are broadened by Gaussians of width
    ``sigma`` (default: 1% of the spectrum's span). Returns nodes [runs, m], weights, grid, density."""
    from scipy.linalg import eigh_tridiagonal
    ops = _Products(curv)
    op = ops.operator()
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(runs):
        v0 = rng.choice([-1.0, 1.0], size=ops.dim)
        a, b = lanczos(op.matvec if on_product is None else lambda q: (op.matvec(q), on_product())[0],
                       ops.dim, steps, v0)
        theta, vecs = eigh_tridiagonal(a, b) if len(a) > 1 else (a, np.ones((1, 1)))
        nodes.append(theta)
        weights.append(vecs[0] ** 2)
    lo = min(n.min() for n in nodes)
    hi = max(n.max() for n in nodes)
    span = max(hi - lo, 1e-12)
    sigma = sigma or 0.01 * span
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_points)
    density = np.zeros_like(grid)
    for th, w in zip(nodes, weights):
        density += (w[:, None] * np.exp(-0.5 * ((grid[None, :] - th[:, None]) / sigma) ** 2)).sum(0)
    density /= runs * sigma * math.sqrt(2 * math.pi)
    m = max(len(n) for n in nodes)
    pad = lambda arrs: np.array([np.pad(x, (0, m - len(x)), constant_values=np.nan) for x in arrs])
    return pad(nodes), pad(weights), grid, density


def gradient_noise(model, batches, params=None, dtype=None, criterion=None) -> dict:
    """Mean stochastic gradient norm over the given mini-batches (no update) and the trace of the
    mini-batch gradient covariance, mean_B |g_B - g_mean|^2 (BN in batch mode: per-example
    gradients are not defined when BatchNorm couples the examples of a batch)."""
    batches = list(batches)
    if not batches:
        raise LandscapeError("no mini-batch to measure gradient noise on")
    curv = Curvature(model, batches, criterion=criterion, bn="batch", dtype=dtype, params=params)
    g_sum, sq_sum, norm_sum = None, 0.0, 0.0
    for x, y in curv.batches:
        flat = grad(curv.batch_loss)(curv.theta, x, y).double()
        g_sum = flat if g_sum is None else g_sum + flat
        sq = float(flat @ flat)
        sq_sum += sq
        norm_sum += math.sqrt(sq)
    n = len(curv.batches)
    mean = g_sum / n
    rho = curv.rho
    cov_trace = sq_sum / n - float(mean @ mean)
    return {"mean_grad_norm": norm_sum / n, "mean_effective_grad_norm": rho * norm_sum / n,
            "grad_cov_trace": cov_trace, "grad_cov_trace_effective": rho ** 2 * cov_trace,
            "full_grad_norm": float(mean.norm()), "batches": n}


# --- one-liners for your own model ----------------------------------------------------------

class NotScaleInvariantWarning(UserWarning):
    """Effective (x rho^2) units were asked of parameters that are not scale-invariant."""


def hessian_trace(model, criterion=None, data=None, *, probes: int = 100, estimator: str = "hutchinson",
                  matrix: str = "hessian", bn: str | None = None, seed: int = 0, params=None,
                  effective: bool = False) -> TraceEstimate:
    """tr(M) of ``model``'s loss on ``data`` (PyHessian's ``hessian(model, criterion,
    data=(x, y)).trace()``): M the Hessian or the GGN of all trainable parameters (or
    ``params``), ``probes`` Rademacher probes (Hutch++: that many products). ``effective``:
    in the paper's effective units, x rho^2 (rho the norm of those parameters), with a
    :class:`NotScaleInvariantWarning` when any of them is not scale-invariant. Returns a
    :class:`TraceEstimate` (``.value``, ``.stderr``, ``.samples``)."""
    if estimator not in ESTIMATORS:
        raise LandscapeError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    curv = Curvature(model, data, criterion=criterion, bn=bn, matrix=matrix, params=params)
    out = (hutchinson_trace if estimator == "hutchinson" else hutchpp_trace)(curv, probes, seed)
    if effective:
        warn_if_not_scale_invariant(curv)
        r2 = curv.rho ** 2
        out.value, out.stderr, out.samples = out.value * r2, out.stderr * r2, out.samples * r2
    return out


def warn_if_not_scale_invariant(curv: Curvature) -> None:
    bad = curv.not_scale_invariant()
    if bad:
        warnings.warn(f"{len(bad)} of {len(curv.names)} parameter tensors are not scale-invariant "
                      f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): effective units "
                      "(x rho^2) assume scale invariance", NotScaleInvariantWarning, stacklevel=3)


def scale_invariant_parameters(model, data, criterion=None, params=None) -> dict:
    """{parameter name: True if scaling it leaves the model's outputs unchanged} on the first
    batch of ``data``, BatchNorm with mini-batch statistics (see ``Curvature.scale_invariance``).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False), torch.nn.BatchNorm1d(6, affine=False),
    ...                           torch.nn.ReLU(), torch.nn.Linear(6, 3))
    >>> scale_invariant_parameters(net, (torch.randn(16, 4), torch.zeros(16, dtype=torch.long)))
    {'0.weight': True, '3.weight': False, '3.bias': False}
    """
    return Curvature(model, data, criterion=criterion, bn="batch", params=params).scale_invariance()


def hessian_eigenvalues(model, criterion=None, data=None, k: int = 1, *, matrix: str = "hessian",
                        bn: str | None = None, seed: int = 0, params=None, tol: float = 1e-6,
                        max_products: int | None = None, info: dict | None = None) -> np.ndarray:
    """The ``k`` largest eigenvalues of the Hessian (or GGN) of ``model``'s loss on ``data``,
    decreasing (PyHessian's ``eigenvalues(top_n=k)``), each within ``tol`` (relative) of an
    eigenvalue (``top_eigenvalues``), in at most ``max_products`` Hessian-vector products
    (default max(300, 20 k)); ``info`` (a dict) receives the products spent, the residuals and
    whether the tolerance was reached."""
    curv = Curvature(model, data, criterion=criterion, bn=bn, matrix=matrix, params=params)
    return top_eigenvalues(curv, k, seed, tol, max_products=max_products, info=info)
