"""The paper's toy model (Section 3.2): F(x, y) = sum_i alpha_i x_i^2 / (x_i^2 + y_i^2) on the
unit sphere, where each pair (x_i, y_i) is one SI group.

Projected gradient descent uses ``sphere.projected_sgd_step``, the same implementation as network
training; all ELRs of one call run together as a batch of models (``batch_dims=1``), from the
same seeded starting point. Float64 throughout.

Theory (Proposition 1, eqs. (3), (5), (8), (9)):
    convergence threshold        ELR < 1 / sum(alpha)                          eq. (8)
    equilibrium ELRs             ELR_i* = ELR * sum(alpha) / alpha_i           eq. (9)
    equilibrium level of F       (sum(alpha) - 1/ELR) / 2   (eq. (9) in Proposition 1, summed)
    one group, ELR > 1/alpha     F -> (alpha - 1/ELR) / 2                      Proposition 1
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ArgumentError
from .sphere import effective_statistics, group_sq_norms, projected_sgd_step

REGIMES = ("convergence", "equilibrium", "divergence")


def _check(alphas, elrs, steps) -> None:
    if len(alphas) == 0:
        raise ArgumentError("alphas is empty: give at least one positive coefficient", "alphas")
    if any(not (a > 0 and math.isfinite(a)) for a in alphas):
        raise ArgumentError(f"alphas must all be positive, got {list(alphas)}", "alphas")
    if len(elrs) == 0 or any(not (e > 0 and math.isfinite(e)) for e in elrs):
        raise ArgumentError(f"elr must be positive numbers, got {list(elrs)}", "elr")
    if not (isinstance(steps, int) and steps > 0):
        raise ArgumentError(f"steps must be a positive integer, got {steps!r}", "steps")


def start_point(n_groups: int, seed: int) -> torch.Tensor:
    """A seeded uniformly random point of the 2n-dimensional unit sphere, as (n, 2)."""
    v = torch.randn(2 * n_groups, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return (v / v.norm()).reshape(n_groups, 2)


def loss_and_grads(groups, alphas):
    """F per model and its gradient w.r.t. each group, in closed form:
    d/dx [a x^2/(x^2+y^2)] = 2a x y^2/r^4,  d/dy = -2a x^2 y/r^4."""
    loss, grads = 0.0, []
    for p, a in zip(groups, alphas):
        x, y = p[:, 0], p[:, 1]
        r2 = x * x + y * y
        loss = loss + a * x * x / r2
        c = 2 * a / (r2 * r2)
        grads.append(torch.stack((c * x * y * y, -c * x * x * y), dim=1))
    return loss, grads


def simulate_many(alphas, elrs, steps: int, seed: int = 0) -> list[dict]:
    """Run projected GD for every ELR in ``elrs`` (batched). Row t of each array describes step t
    at the point theta^(t-1) where its gradient is taken; ``theta`` is the final point."""
    alphas = [float(a) for a in alphas]
    elrs = [float(e) for e in elrs]
    _check(alphas, elrs, steps)
    n, m = len(alphas), len(elrs)
    start = start_point(n, seed)
    groups = [start[i].repeat(m, 1) for i in range(n)]  # group i: (models, 2)
    lr = torch.tensor(elrs, dtype=torch.float64)        # rho = 1, so lr = ELR
    rho = torch.ones(m, dtype=torch.float64)
    loss = torch.empty(steps, m, dtype=torch.float64)
    keys = ("group_elr", "group_effective_grad_norm", "group_effective_step_size", "group_rho_sq")
    rows = {k: torch.empty(steps, m, n, dtype=torch.float64) for k in keys}
    total_egn = torch.empty(steps, m, dtype=torch.float64)
    for t in range(steps):
        f, grads = loss_and_grads(groups, alphas)
        stats = effective_statistics(group_sq_norms(groups, 1), group_sq_norms(grads, 1), lr)
        loss[t] = f
        for k in keys:
            rows[k][t] = stats[k]
        total_egn[t] = stats["effective_grad_norm"]
        projected_sgd_step(groups, grads, lr, rho, batch_dims=1)
    final_loss, _ = loss_and_grads(groups, alphas)
    out = []
    for j, elr in enumerate(elrs):
        out.append({
            "alphas": np.array(alphas), "elr": elr, "steps": steps, "seed": seed,
            "loss": loss[:, j].numpy(), "final_loss": float(final_loss[j]),
            "effective_grad_norm": total_egn[:, j].numpy(),
            "group_elr": rows["group_elr"][:, j].numpy(),
            "group_effective_grad_norm": rows["group_effective_grad_norm"][:, j].numpy(),
            "group_effective_step_size": rows["group_effective_step_size"][:, j].numpy(),
            "group_rho": rows["group_rho_sq"][:, j].sqrt().numpy(),
            "start": start.numpy(), "theta": torch.stack([g[j] for g in groups]).numpy(),
        })
    return out


def simulate(alphas, elr: float, steps: int, seed: int = 0) -> dict:
    """One run: ``landscape.toy.simulate([1, 2, 4], 0.2, 5000, seed=0)["loss"]``."""
    return simulate_many(alphas, [elr], steps, seed)[0]


# --- theory -------------------------------------------------------------------------------

def convergence_threshold(alphas) -> float:
    return 1.0 / float(np.sum(alphas))


def equilibrium_elrs(alphas, elr: float) -> np.ndarray:
    a = np.asarray(alphas, dtype=float)
    return elr * a.sum() / a


def equilibrium_level(alphas, elr: float) -> float:
    """Each group at its eq. (9) ELR sits at Proposition 1's level (alpha_i - 1/ELR_i*)/2;
    summed over groups with sum_i 1/ELR_i* = 1/ELR (eq. (3)): (sum(alpha) - 1/ELR) / 2."""
    return (float(np.sum(alphas)) - 1.0 / elr) / 2.0


def classify(result: dict, tail: float = 0.5, elr_tolerance: float = 0.1,
             converged_below: float = 1e-8) -> dict:
    """Label a run by its last ``tail`` fraction of steps:
    convergence  - F has fallen below ``converged_below`` * sum(alpha);
    equilibrium  - every group's mean ELR is within ``elr_tolerance`` (relative) of eq. (9);
    divergence   - neither: the ELRs never equilibrate and F wanders.
    """
    alphas, elr = result["alphas"], result["elr"]
    start = int(len(result["loss"]) * (1 - tail))
    loss_tail = result["loss"][start:]
    elr_tail = result["group_elr"][start:].mean(0)
    target = equilibrium_elrs(alphas, elr)
    worst = float(np.max(np.abs(elr_tail / target - 1)))
    if result["final_loss"] < converged_below * alphas.sum():
        regime = "convergence"
    elif worst < elr_tolerance:
        regime = "equilibrium"
    else:
        regime = "divergence"
    return {"elr": elr, "regime": regime, "loss_tail_mean": float(loss_tail.mean()),
            "loss_tail_std": float(loss_tail.std()), "final_loss": result["final_loss"],
            "theory_threshold": convergence_threshold(alphas),
            "theory_level": equilibrium_level(alphas, elr) if elr > convergence_threshold(alphas) else 0.0,
            "group_elr_tail_mean": elr_tail.tolist(), "theory_group_elr": target.tolist(),
            "worst_group_elr_error": worst}


# --- files, plots, CLI --------------------------------------------------------------------

def write_trajectory(path: str, result: dict, overwrite: bool = False) -> None:
    """A toy run in the trajectory format (kind 'toy'; rows are steps, not epochs)."""
    from .trajectory import atomic_create, write_header

    n = len(result["alphas"])
    names = [f"group{i} (alpha={a:g})" for i, a in enumerate(result["alphas"])]
    steps = result["steps"]

    def build(f):
        config = {"alphas": result["alphas"].tolist(), "elr": result["elr"], "steps": steps,
                  "seed": result["seed"]}
        write_header(f, config=config, model_spec={"name": "toy", "alphas": config["alphas"]},
                     group_names=names, kind="toy", epochs_complete=steps)
        f.attrs.update({"rho": 1.0, "lr": result["elr"]})
        m = f["metrics"]
        m["epoch"] = np.arange(1, steps + 1, dtype=np.float64)
        m["loss"] = result["loss"]
        m["effective_grad_norm"] = result["effective_grad_norm"]
        m["elr"] = np.full(steps, result["elr"])
        m["effective_step_size"] = result["elr"] * result["effective_grad_norm"]
        m["rho"] = np.sqrt((result["group_rho"] ** 2).sum(1))
        gm = f["metrics/groups"]
        for k in ("elr", "effective_grad_norm", "effective_step_size", "rho"):
            gm[k] = result[f"group_{k}"]
        for key, epoch, theta in (("000000", 0, result["start"]), (f"{steps:06d}", steps, result["theta"])):
            ck = f.create_group(f"checkpoints/{key}")
            ck.attrs["epoch"] = epoch
            ck["theta"] = theta
        assert gm["elr"].shape == (steps, n)

    atomic_create(path, overwrite, build)


def output_paths(out: str, elrs) -> list[str]:
    if len(elrs) == 1:
        return [out]
    stem = out[:-3] if out.endswith(".h5") else out
    return [f"{stem}-elr{e:g}.h5" for e in elrs]


