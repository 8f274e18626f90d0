"""Projected SGD on the sphere (paper eq. (2)) and the effective quantities of Section 3.1.

One implementation serves network training, the toy model and batches of models trained
together: parameters are a list of SI groups (tensors); with ``batch_dims=k`` the first k
dimensions of every tensor index independent models, and ``lr`` / ``rho`` are tensors of that
batch shape (one learning rate and radius per model).

Definitions (per SI group i, at the point where the gradient is taken):
    rho_i = ||theta_i||,  g_i = ||grad_i L||,  rho = sqrt(sum_i rho_i^2),  g = sqrt(sum_i g_i^2)
    ELR_i = lr / rho_i^2,  effective gradient norm  = rho_i g_i,  effective step size = ELR_i rho_i g_i
    total ELR = lr / rho^2 (fixed), total effective gradient norm = rho g,
    angle a projected step turns the SI vector = arctan(total ELR * rho g).
Eq. (3), sum_i 1/ELR_i = 1/ELR, follows from sum_i rho_i^2 = rho^2.
"""
from __future__ import annotations

import math

import torch


def _bcast(value, like: torch.Tensor, batch_dims: int):
    """Reshape a per-model value (batch shape) so it broadcasts against one group tensor."""
    if batch_dims == 0 or not torch.is_tensor(value):
        return value
    return value.reshape(value.shape + (1,) * (like.dim() - batch_dims))


def group_sq_norms(tensors, batch_dims: int = 0) -> torch.Tensor:
    """Squared norm of each group: shape (*batch, n_groups)."""
    if batch_dims == 0:
        return torch.stack(torch._foreach_norm(list(tensors))).square()
    return torch.stack([t.flatten(batch_dims).square().sum(-1) for t in tensors], dim=-1)


_SEGMENT_LENGTHS: dict = {}


def _segment_sums(values: torch.Tensor, key: tuple, lengths) -> torch.Tensor:
    """Sums of consecutive segments along the last dimension, as one kernel
    (``torch.segment_reduce``) in place of one per segment (a ResNet has some 60 SI tensors,
    summed twice a step); ``lengths()`` gives the segments' lengths, made into a device tensor
    once per ``key`` (the layout)."""
    key = (key, values.shape[:-1], values.device)
    if key not in _SEGMENT_LENGTHS:
        _SEGMENT_LENGTHS[key] = torch.tensor(lengths(), device=values.device).expand(
            values.shape[:-1] + (-1,)).contiguous()
    return torch.segment_reduce(values, "sum", lengths=_SEGMENT_LENGTHS[key], axis=values.dim() - 1)


def filter_sq_norms(tensors, batch_dims: int = 0) -> torch.Tensor:
    """Squared norm of every filter (output channel: a slice along the first non-batch
    dimension) of every tensor, concatenated: shape (*batch, n_filters). Each filter of a weight
    followed by a BatchNorm is scale-invariant on its own, an SI group of the paper's Fig. 4."""
    if len(tensors) <= 4:  # a kernel per tensor is as fast, and reads no copy
        return per_tensor_filter_sq_norms(tensors, batch_dims)
    batch = tensors[0].shape[:batch_dims]
    flat = torch.cat([t.reshape(batch + (-1,)) for t in tensors], dim=-1)
    shapes = tuple(t.shape[batch_dims:] for t in tensors)
    # a 1-D tensor (a bias, a BatchNorm scale: conventional training) is one 'filter' per entry
    return _segment_sums(flat.square(), ("filters", shapes),
                         lambda: [math.prod(shape[1:]) for shape in shapes for _ in range(shape[0])])


def layer_sums(filter_values: torch.Tensor, sizes) -> torch.Tensor:
    """Per-filter values summed within each tensor (``sizes``: filters per tensor)."""
    if len(sizes) <= 4:
        return per_tensor_layer_sums(filter_values, sizes)
    return _segment_sums(filter_values, ("layers", tuple(sizes)), lambda: list(sizes))


def per_tensor_filter_sq_norms(tensors, batch_dims: int = 0) -> torch.Tensor:
    """``filter_sq_norms`` with a reduction per tensor (the few-tensor path)."""
    return torch.cat([t.reshape(t.shape[:batch_dims + 1] + (-1,)).square().sum(-1) for t in tensors], dim=-1)


def per_tensor_layer_sums(filter_values: torch.Tensor, sizes) -> torch.Tensor:
    """``layer_sums`` with a reduction per tensor (the few-tensor path)."""
    return torch.stack([s.sum(-1) for s in filter_values.split(list(sizes), dim=-1)], dim=-1)


@torch.no_grad()
def project_to_sphere(params, rho, batch_dims: int = 0) -> torch.Tensor:
    """Rescale all groups jointly to total norm ``rho``; returns the new group squared norms."""
    sq = group_sq_norms(params, batch_dims)
    scale = rho / sq.sum(-1).sqrt()
    if batch_dims == 0:
        torch._foreach_mul_(params, scale)
    else:
        for p in params:
            p.mul_(_bcast(scale, p, batch_dims))
    return sq * (scale * scale).unsqueeze(-1)


@torch.no_grad()
def projected_sgd_step(params, grads, lr, rho, batch_dims: int = 0) -> torch.Tensor:
    """Eq. (2) in place: theta <- theta - lr * grad, then all groups rescaled jointly to norm rho.
    Returns the group squared norms after the step (the next step's rho_i^2)."""
    if batch_dims == 0 and not torch.is_tensor(lr):
        torch._foreach_add_(params, list(grads), alpha=-lr)
    else:
        for p, g in zip(params, grads):
            p.sub_(_bcast(lr, p, batch_dims) * g)
    return project_to_sphere(params, rho, batch_dims)


@torch.no_grad()
def project_filters(params, radius, batch_dims: int = 0) -> torch.Tensor:
    """Rescale every filter (a slice along the first non-batch dimension) of every group to norm
    ``radius`` (a float, or a tensor of the batch shape); returns the group squared norms."""
    for p in params:
        norms = p.flatten(batch_dims + 1).norm(dim=-1)  # (*batch, filters)
        r = radius.reshape(radius.shape + (1,)) if torch.is_tensor(radius) and batch_dims else radius
        p.mul_((r / norms).reshape(norms.shape + (1,) * (p.dim() - batch_dims - 1)))
    return group_sq_norms(params, batch_dims)


def filter_radius(params, rho, batch_dims: int = 0):
    """The common filter norm of ``filter-spheres``: every filter at rho / sqrt(number of
    filters), so that the total norm is rho."""
    n = sum(p.shape[batch_dims] for p in params)
    return rho / n ** 0.5


@torch.no_grad()
def filter_spheres_step(params, grads, lr, rho, batch_dims: int = 0) -> torch.Tensor:
    """The official ``--fix_all_elr`` step in place: theta <- theta - lr * grad, then every filter
    rescaled to the common norm rho / sqrt(n_filters) (``filter_radius``), so the total norm stays
    rho and every filter has the same ELR, lr / radius^2 = n_filters * lr / rho^2. Returns the
    group squared norms after the step."""
    if batch_dims == 0 and not torch.is_tensor(lr):
        torch._foreach_add_(params, list(grads), alpha=-lr)
    else:
        for p, g in zip(params, grads):
            p.sub_(_bcast(lr, p, batch_dims) * g)
    return project_filters(params, filter_radius(params, rho, batch_dims), batch_dims)


@torch.no_grad()
def momentum_direction(grads, buffers, momentum: float) -> list:
    """``torch.optim.SGD(momentum=mu)``'s direction, in place on ``buffers``: b <- mu b + g (b starts
    at 0, so the first step uses g). Projected momentum SGD is theta <- theta - lr b, then eq. (2)'s
    projection of all groups jointly to norm rho. The buffers are kept as torch keeps them, not
    projected: each step's projection removes whatever radial part b carries, and on a sphere of
    fixed radius a gradient's scale (1 / rho_i) stays what it was when it entered b."""
    torch._foreach_mul_(buffers, momentum)
    torch._foreach_add_(buffers, list(grads))
    return buffers


def adam_direction(grads, buffers, betas, eps: float, batch_dims: int = 0) -> list:
    """``torch.optim.Adam``'s moment updates, in place on ``buffers`` = [exp_avg..., exp_avg_sq...,
    step] (step: the number of steps so far, one per model of a batch), and its step direction
    m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)."""
    n = len(grads)
    m, v, step = buffers[:n], buffers[n:2 * n], buffers[2 * n]
    beta1, beta2 = betas
    step.add_(1)
    torch._foreach_lerp_(m, list(grads), 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, list(grads), list(grads), value=1 - beta2)
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step  # bias corrections, one per model
    return [mi / _bcast(bc1, mi, batch_dims).to(mi.dtype)
            / (vi.sqrt() / _bcast(bc2, vi, batch_dims).to(vi.dtype).sqrt() + eps) for mi, vi in zip(m, v)]


def step_angles(params, updates, lr, batch_dims: int = 0, filters: bool = False) -> dict:
    """The angle each SI group turns by in a projected step theta <- theta - lr u (the joint
    projection rescales every group alike, so it leaves each group's direction as the step made
    it): tan(angle) = lr |u_perp| / (|theta| - lr u.theta / |theta|), per tensor
    (``group_effective_step_size``), per filter with ``filters`` (``filter_effective_step_size``),
    and of the whole SI vector (``effective_step_size``, and log cos of its angle,
    ``log_cos_step``). For an SI gradient (u orthogonal to theta) tan(angle) is the paper's ESS,
    lr |g_i| / rho_i. In float64."""
    lr = lr if not torch.is_tensor(lr) else lr.double()
    # u.theta, |u|^2 and |theta|^2 per filter (or per tensor), once; per tensor as their sums
    keep = batch_dims + 1 if filters else batch_dims
    flat = [(p.double().reshape(p.shape[:keep] + (-1,)), u.double().reshape(u.shape[:keep] + (-1,)))
            for p, u in zip(params, updates)]
    join = (lambda xs: torch.cat(xs, -1)) if filters else (lambda xs: torch.stack(xs, -1))
    rows = (join([(p2 * u2).sum(-1) for p2, u2 in flat]), join([u2.square().sum(-1) for _, u2 in flat]),
            join([p2.square().sum(-1) for p2, _ in flat]))
    sizes = [p.shape[batch_dims] for p in params]
    dot, uu, tt = [layer_sums(r, sizes) for r in rows] if filters else rows

    def tan_angle(dot, uu, tt):
        lr_b = lr.unsqueeze(-1) if torch.is_tensor(lr) and dot.dim() > lr.dim() else lr
        radial = dot / tt.sqrt()
        perp = (uu - radial.square()).clamp_min(0).sqrt()
        return lr_b * perp / (tt.sqrt() - lr_b * radial)
    out = {"group_effective_step_size": tan_angle(dot, uu, tt)}
    # the whole SI vector: cos = (|theta|^2 - lr u.theta) / (|theta| |theta - lr u|)
    d, q, t = dot.sum(-1), uu.sum(-1), tt.sum(-1)
    after = (t - 2 * lr * d + lr * lr * q).sqrt()
    cos = ((t - lr * d) / (t.sqrt() * after)).clamp(-1.0, 1.0)
    out["log_cos_step"] = torch.log(cos)
    out["effective_step_size"] = (1 - cos * cos).clamp_min(0).sqrt() / cos  # tan of the whole turn
    if filters:
        out["filter_effective_step_size"] = tan_angle(*rows)
    return out


@torch.no_grad()
def sgd_step(params, grads, lr, buffers=None, momentum: float = 0.0, weight_decay: float = 0.0,
             batch_dims: int = 0) -> torch.Tensor:
    """Plain SGD in the whole parameter space (Section 6), in place and exactly as
    ``torch.optim.SGD`` (dampening 0, no Nesterov): d = grad + wd theta; b <- mu b + d (b starts
    at 0, so the first step uses d, as torch's first step does); theta <- theta - lr b (without
    momentum, theta - lr d). ``buffers``: the momentum buffers, updated in place. Returns the
    group squared norms after the step."""
    grads = list(grads)
    if weight_decay:
        grads = torch._foreach_add(grads, list(params), alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, grads)
        grads = buffers
    if batch_dims == 0 and not torch.is_tensor(lr):
        torch._foreach_add_(params, grads, alpha=-lr)
    else:
        for p, d in zip(params, grads):
            p.sub_(_bcast(lr, p, batch_dims) * d)
    return group_sq_norms(params, batch_dims)


def si_statistics(params, grads, lr, batch_dims: int = 0, filters: bool = False) -> dict:
    """``effective_statistics`` of the SI groups per weight tensor (``group_*``) and, with
    ``filters``, per filter as well (``filter_rho_sq``, ``filter_effective_grad_norm``,
    ``filter_effective_step_size``): the per-tensor values are then sums of the per-filter
    squared norms, one source for both. In float64."""
    if not filters:
        return effective_statistics(group_sq_norms(params, batch_dims).double(),
                                    group_sq_norms(grads, batch_dims).double(), lr)
    sizes = [p.shape[batch_dims] for p in params]
    param_sq = filter_sq_norms(params, batch_dims).double()
    grad_sq = filter_sq_norms(grads, batch_dims).double()
    stats = effective_statistics(layer_sums(param_sq, sizes), layer_sums(grad_sq, sizes), lr)
    per_filter = effective_statistics(param_sq, grad_sq, lr)
    stats.update({"filter_rho_sq": param_sq,
                  "filter_effective_grad_norm": per_filter["group_effective_grad_norm"],
                  "filter_effective_step_size": per_filter["group_effective_step_size"]})
    return stats


def point_statistics(param_sq: torch.Tensor, grad_norm: torch.Tensor, total_grad_norm: torch.Tensor, lr) -> dict:
    """The mean over mini-batches of ``effective_statistics`` (all but ``log_cos_step``) for
    gradients taken at one point, where the groups' squared norms ``param_sq`` stay fixed: each
    quantity is then a constant times a gradient norm, so its mean is that constant times the
    mean norm, ``grad_norm`` per group and ``total_grad_norm`` of the whole SI vector (shapes as
    ``effective_statistics``). E.g. the mean effective gradient norm is rho * mean_B ||g_B||.

    >>> p, g = torch.tensor([4.0, 1.0]), torch.tensor([[1.0, 4.0], [9.0, 0.0]])  # two batches
    >>> per_batch = [effective_statistics(p, gb, 0.1) for gb in g]
    >>> mean = point_statistics(p, g.sqrt().mean(0), g.sum(-1).sqrt().mean(0), 0.1)
    >>> all(torch.allclose(mean[k], sum(b[k] for b in per_batch) / 2) for k in mean)
    True
    """
    lr_b = lr.unsqueeze(-1) if torch.is_tensor(lr) else lr
    group_egn = param_sq.sqrt() * grad_norm
    group_elr = lr_b / param_sq
    rho_sq = param_sq.sum(-1)
    egn = rho_sq.sqrt() * total_grad_norm
    return {
        "group_rho_sq": param_sq,
        "group_elr": group_elr,
        "group_effective_grad_norm": group_egn,
        "group_effective_step_size": group_elr * group_egn,
        "rho_sq": rho_sq,
        "elr": lr / rho_sq,
        "grad_norm": total_grad_norm,
        "effective_grad_norm": egn,
    }


def effective_statistics(param_sq: torch.Tensor, grad_sq: torch.Tensor, lr) -> dict:
    """Section 3.1's quantities from group squared norms of parameters and gradients
    (shape (*batch, n_groups)); ``lr`` is a float or a tensor of the batch shape."""
    lr_b = lr.unsqueeze(-1) if torch.is_tensor(lr) else lr
    group_egn = (param_sq * grad_sq).sqrt()
    group_elr = lr_b / param_sq
    rho_sq, total_grad_sq = param_sq.sum(-1), grad_sq.sum(-1)
    egn = (rho_sq * total_grad_sq).sqrt()
    ess = lr / rho_sq * egn
    return {
        "group_rho_sq": param_sq,
        "group_elr": group_elr,
        "group_effective_grad_norm": group_egn,
        "group_effective_step_size": group_elr * group_egn,
        "rho_sq": rho_sq,
        "elr": lr / rho_sq,
        "grad_norm": total_grad_sq.sqrt(),
        "effective_grad_norm": egn,
        # a projected step of effective size s turns the SI vector by arctan(s) (the gradient
        # is orthogonal to it): log cos of that angle, which a random walk's cosine multiplies by
        "log_cos_step": -0.5 * torch.log1p(ess * ess),
    }
