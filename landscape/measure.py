"""What is measured of a network: the per-epoch metrics a run logs, their names and layout in
the trajectory, the test pass, and the official protocol's checkpoint metrics.

Per-step statistics are summed on the device by ``EpochAccumulator``; the host reads them once
per epoch, so logging costs no synchronisation inside an epoch. The checkpoint metrics
(``checkpoint_metrics``) are the paper's figure quantities: the whole training set in stored
order, train-mode BatchNorm, no update.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset
from .models import si_groups, with_batch_statistics
from .sphere import filter_sq_norms, group_sq_norms, layer_sums, point_statistics

# Per-epoch scalar metrics (``/metrics/<name>``) and per-group ones (``/metrics/groups/<name>``).
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "effective_grad_norm",
           "grad_norm", "effective_step_size", "rho", "elr")
GROUP_METRICS = ("rho", "elr", "effective_grad_norm", "effective_step_size", "rho_end")  # also per filter
NONFINITE = {"loss": 1, "gradient": 2, "parameters": 4}  # bits of what went non-finite
# training rows only: sum over the epoch's steps of log cos(angle the step turned the SI vector),
# the factor by which a random walk with the same steps multiplies its expected cosine to the start
STEP_METRICS = ("log_cos_step_sum",)
# checkpoint rows only: where the point is relative to the run's start (scalar and per layer)
DISTANCE_METRICS = ("cos_to_init", "distance_to_init")
# checkpoint rows of a run with label noise: the official metrics on each training subset
SUBSETS = ("noisy", "clean")
# (the official ``--eval_on_train_subsets`` evaluates each subset forward only: loss and accuracy)
SUBSET_QUANTITIES = ("train_loss", "train_accuracy")
SUBSET_METRICS = tuple(f"{name}_{subset}" for subset in SUBSETS for name in SUBSET_QUANTITIES)
CHECKPOINT_PREFIX = "checkpoint/"  # rows of the checkpoint metrics under /metrics


def squared_loss(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The official code's squared loss: ||logits - one_hot(y)||^2 / C per example, averaged
    (or summed) over the batch."""
    per_example = (out.square().sum(1) - 2 * out.gather(1, y.view(-1, 1)).reshape(-1) + 1) / out.shape[1]
    return per_example.sum() if reduction == "sum" else per_example.mean()


# the training loss: cross-entropy, or the official squared loss (--use_squared_loss)
LOSSES = {"ce": F.cross_entropy, "mse": squared_loss}


def test_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int = 1000, loss: str = "ce") -> tuple[float, float]:
    """Mean loss (``LOSSES[loss]``) and accuracy of the model in eval mode over (x, y)."""
    criterion = LOSSES[loss]
    was_training = model.training
    model.eval()
    total, correct = torch.zeros((), device=x.device, dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            out = model(x[i:i + batch_size])
            total += criterion(out, y[i:i + batch_size], reduction="sum").double()
            correct += (out.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return total.item() / len(y), float(correct) / len(y)


class EpochAccumulator:
    """Sums of per-step statistics on the device (no host synchronisation inside the epoch).
    With a batch of models every value carries a leading model dimension, and ``index`` picks
    one model when reading. A step costs a few kernels: the statistics are summed by one
    ``_foreach_add_``, and the finiteness of the loss, gradient and parameters is kept as one
    small tensor per step and checked once, when the epoch's end asks (``nonfinite``)."""

    def __init__(self, elr_power: int = 2):
        # the ELR is lr / rho^elr_power: 2 for SGD and momentum SGD, 1 for Adam (``config.elr_power``)
        self.elr_power = elr_power
        self.sums, self.steps, self.seen = None, 0, 0
        self.loss_sum = self.correct = self.rho_end_sq = self.filter_rho_end_sq = None
        # per step: (loss, gradient norm) and the parameters' squared norm after the step
        self._step_values, self._params_after = [], []
        self._first_bad = None  # (first non-finite step, what) once computed

    @torch.no_grad()
    def add(self, stats: dict, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        if self.sums is None:  # its own copies (a compiled update may reuse its outputs' memory)
            self.sums = {k: v.clone() for k, v in stats.items()}
        else:
            torch._foreach_add_(list(self.sums.values()), [stats[k] for k in self.sums])
        loss = loss.detach().double()
        self.steps += 1
        self._step_values.append(torch.stack([loss, stats["grad_norm"].to(loss.dtype)]))
        self._first_bad = None
        self._count(loss, correct, n)

    def _count(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        """A batch's ``n`` examples: its mean ``loss`` (float64) and number ``correct``."""
        loss = loss * n
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.correct = correct if self.correct is None else self.correct + correct
        self.seen += n

    @torch.no_grad()
    def end_step(self, rho_end_sq: torch.Tensor) -> None:
        """After the step: the new group norms (the next step's rho_i^2), checked as well."""
        self.rho_end_sq = rho_end_sq
        self._params_after.append(rho_end_sq.sum(-1))
        self._first_bad = None

    @torch.no_grad()
    def end_epoch(self, params, filters: bool, batch_dims: int = 0) -> None:
        """The epoch's last statistics: the filters' norms after its last step."""
        if filters:
            self.filter_rho_end_sq = filter_sq_norms(params, batch_dims)

    @torch.no_grad()
    def _find_first_bad(self) -> tuple:
        """(first step, 1-based, at which something was not finite, or -1; the NONFINITE bits
        of what), each of the batch shape: one look over the steps' values."""
        if self._first_bad is None:
            values = torch.stack(self._step_values)  # (steps, 2, *batch)
            what = (NONFINITE["loss"] * ~torch.isfinite(values[:, 0])
                    + NONFINITE["gradient"] * ~torch.isfinite(values[:, 1]))
            if self._params_after:
                what = what + NONFINITE["parameters"] * ~torch.isfinite(torch.stack(self._params_after))
            bad = what > 0
            first = bad.long().argmax(0)  # the first True (0 where there is none)
            step = torch.where(bad.any(0), first + 1, -1)
            self._first_bad = (step, what.gather(0, first.unsqueeze(0)).squeeze(0))
        return self._first_bad

    def nonfinite(self, index=None) -> dict | None:
        """None, or the first step of the epoch (1-based) at which the loss, a gradient or the
        parameters were not finite, with which of them."""
        if not self._step_values:
            return None
        bad_step, bad_what = self._find_first_bad()
        step = int(bad_step if index is None else bad_step[index])
        if step < 0:
            return None
        what = int(bad_what if index is None else bad_what[index])
        return {"step": step, "what": [k for k, bit in NONFINITE.items() if what & bit]}

    def means(self) -> dict:
        """The per-step statistics' means over the epoch's steps, on the device."""
        return {k: v / self.steps for k, v in self.sums.items()}

    def metrics(self, lr: float, index=None) -> tuple[dict, dict, dict]:
        """(scalar metrics, per-layer metrics, per-filter metrics or {}) of the epoch; ``index``
        picks one model of a batch."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        mean = {k: pick(v).cpu().numpy() for k, v in self.means().items()}
        metrics = {
            "train_loss": pick(self.loss_sum).item() / self.seen,
            "train_accuracy": pick(self.correct).item() / self.seen,
            "effective_grad_norm": float(mean["effective_grad_norm"]),
            "grad_norm": float(mean["grad_norm"]),
            "rho": math.sqrt(mean["rho_sq"]),
            # ELRs from the epoch-mean squared norms, so eq. (3) holds exactly for the logged values
            "elr": lr / float(mean["rho_sq"]) ** (self.elr_power / 2),
        }
        # the measured turn of the SI vector where the step is not along the gradient (momentum,
        # Adam); for SGD the two are the same and the paper's product is kept
        metrics["effective_step_size"] = (float(mean["effective_step_size"]) if "effective_step_size" in mean
                                          else metrics["elr"] * metrics["effective_grad_norm"])
        if "log_cos_step" in mean:  # steps were taken
            metrics["log_cos_step_sum"] = float(mean["log_cos_step"]) * self.steps

        def per_group(prefix, rho_end_sq):  # layers ('group_') and filters ('filter_') alike
            return {"rho": np.sqrt(mean[f"{prefix}rho_sq"]),
                    "elr": lr / mean[f"{prefix}rho_sq"] ** (self.elr_power / 2),
                    "effective_grad_norm": mean[f"{prefix}effective_grad_norm"],
                    "effective_step_size": mean[f"{prefix}effective_step_size"],
                    "rho_end": np.sqrt(pick(rho_end_sq).double().cpu().numpy())}
        filters = per_group("filter_", self.filter_rho_end_sq) if "filter_rho_sq" in mean else {}
        return metrics, per_group("group_", self.rho_end_sq), filters


class PointAccumulator(EpochAccumulator):
    """``EpochAccumulator``'s sums for mini-batch gradients taken at one point, without a step
    (the checkpoint pass): the parameters' norms do not change between batches, so a batch adds
    only its gradient's norms (per filter or per layer, and of the whole SI vector) and the
    means of ``si_statistics`` follow from theirs at the end (``sphere.point_statistics``): a
    few kernels a batch instead of the whole set of statistics, the same means up to rounding.
    Its ``metrics`` have no ``log_cos_step_sum`` (no step is taken)."""

    def __init__(self, params, lr, filters: bool, batch_dims: int = 0, elr_power: int = 2):
        super().__init__(elr_power)
        self.filters, self.batch_dims, self.lr = filters, batch_dims, lr
        self.sizes = [p.shape[batch_dims] for p in params]
        with torch.no_grad():  # nothing moves: the norms at the end are the norms
            self.rho_end_sq = group_sq_norms(params, batch_dims)
            self.filter_rho_end_sq = filter_sq_norms(params, batch_dims) if filters else None
            if filters:
                self.filter_param_sq = self.filter_rho_end_sq.double()
                self.param_sq = layer_sums(self.filter_param_sq, self.sizes)
            else:
                self.param_sq = self.rho_end_sq.double()

    @torch.no_grad()
    def add_gradients(self, grads, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        if self.filters:
            filter_sq = filter_sq_norms(grads, self.batch_dims).double()
            layer_sq = layer_sums(filter_sq, self.sizes)
            norms = [filter_sq.sqrt(), layer_sq.sqrt(), layer_sq.sum(-1).sqrt()]
        else:
            layer_sq = group_sq_norms(grads, self.batch_dims).double()
            norms = [layer_sq.sqrt(), layer_sq.sum(-1).sqrt()]
        if self.sums is None:
            self.sums = norms
        else:
            torch._foreach_add_(self.sums, norms)
        self.steps += 1
        self._count(loss.detach().double(), correct, n)

    def means(self) -> dict:
        norms = [s / self.steps for s in self.sums]
        out = point_statistics(self.param_sq, norms[-2], norms[-1], self.lr)
        if self.filters:
            per_filter = point_statistics(self.filter_param_sq, norms[0], norms[-1], self.lr)
            out.update({"filter_rho_sq": self.filter_param_sq,
                        "filter_effective_grad_norm": per_filter["group_effective_grad_norm"],
                        "filter_effective_step_size": per_filter["group_effective_step_size"]})
        return out


def forward_backward(model, params, x, y, precision: str = "float32", loss: str = "ce"):
    """(loss, number correct, gradients of ``params``) of one mini-batch (``LOSSES[loss]``), the
    forward pass (and so the backward) under bf16 autocast with ``precision='bf16'``; the loss
    is taken in float32 and the gradients come out in the parameters' float32."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(x)
    out = out.float() if precision == "bf16" else out
    value = LOSSES[loss](out, y)
    grads = torch.autograd.grad(value, params)
    return value, (out.argmax(1) == y).sum(), grads


def fixed_order_batches(data: Dataset, batch_size: int, indices=None):
    """The training set (or its examples ``indices``) in stored order, un-augmented, in batches
    (a trailing batch of one example is dropped: train-mode BatchNorm cannot normalise it)."""
    x, y = data.x_train, data.y_train
    if indices is not None:
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=y.device)
        x, y = x[index], y[index]
    for i in range(0, len(y), batch_size):
        if len(y[i:i + batch_size]) > 1:
            yield data.inputs(x[i:i + batch_size]), y[i:i + batch_size]


def label_noise_subsets(data: Dataset) -> dict | None:
    """{'noisy': indices whose label the noise redrew, 'clean': the others}, in stored order;
    None without label noise (or when every label was redrawn)."""
    noisy = np.sort(np.asarray(data.noisy_indices, dtype=np.int64))
    if len(noisy) == 0 or len(noisy) == len(data.y_train):
        return None
    return {"noisy": noisy, "clean": np.setdiff1d(np.arange(len(data.y_train)), noisy)}


def distance_to_start(params, initial) -> tuple[dict, dict]:
    """Where the SI parameters ``params`` are relative to the run's initial ones ``initial``
    (tensors of the same shapes): cosine and Euclidean distance of the whole SI vector, and per
    layer (SI weight tensor); in float64. Returns (scalars, per-layer arrays)."""
    with torch.no_grad():
        a = [p.detach().double().reshape(-1) for p in params]
        b = [p.detach().double().reshape(-1).to(a[0].device) for p in initial]
        dots = torch.stack([(x * y).sum() for x, y in zip(a, b)])
        sq_a = torch.stack([x.square().sum() for x in a])
        sq_b = torch.stack([y.square().sum() for y in b])
        dist_sq = torch.stack([(x - y).square().sum() for x, y in zip(a, b)])
        layer_cos = (dots / (sq_a * sq_b).sqrt()).cpu().numpy()
        total_cos = float(dots.sum() / (sq_a.sum() * sq_b.sum()).sqrt())
    return ({"cos_to_init": total_cos, "distance_to_init": float(dist_sq.sum().sqrt())},
            {"cos_to_init": layer_cos, "distance_to_init": dist_sq.sqrt().cpu().numpy()})


def checkpoint_metrics(model, data: Dataset, batch_size: int, lr: float, groups: str = "filter",
                       test: tuple | None = None, initial=None, loss: str = "ce",
                       elr_power: int = 2, measured=None) -> tuple[dict, dict, dict]:
    """The official code's metrics of a point, no update: over the whole training set in fixed
    order with the run's batch size and train-mode BatchNorm (each batch normalised by its own
    statistics; no buffer changes), the train loss and accuracy (size-weighted) and the mean
    over batches of the stochastic effective gradient norm rho ||grad L_B|| (and per layer and
    filter); the test loss and accuracy in eval mode (``test``: already computed); with
    ``initial`` (the run's initial SI tensors) the cosine and distance to them
    (``distance_to_start``). With label noise (the official ``--eval_on_train_subsets``) the
    noisy and the clean examples are also evaluated apart, forward only, each in its own
    batches in stored order (``train_loss_noisy``, ``train_accuracy_noisy``, the same
    ``_clean``), and the train loss and accuracy are their size-weighted means, as the official
    code reports them; the effective gradient norm stays the whole set's. Returns (metrics,
    per-layer, per-filter) with the names of the per-epoch metrics; the ELRs are
    lr / rho^``elr_power``. ``measured``: the forward to measure with, ``model``'s own in train
    mode (its compiled forward, say: it normalises each batch by the batch's statistics, and
    the caller keeps the running buffers it updates, ``kept_buffers``); None: a fresh
    batch-statistics copy (``with_batch_statistics``)."""
    m = measured if measured is not None else with_batch_statistics(model)
    params = [p for _, p in si_groups(model if measured is not None else m)]
    passes = checkpoint_pass(lambda x, y: forward_backward(m, params, x, y, loss=loss), params, data,
                             batch_size, lr, groups, elr_power=elr_power,
                             batch_losses=lambda x, y: forward_loss(m, x, y, loss))
    test = test or test_metrics(model, data.x_test, data.y_test, loss=loss)
    return checkpoint_results(passes, lr, test, params, initial)


def forward_loss(model, x, y, loss: str = "ce") -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, number correct) of one batch, forward only."""
    with torch.no_grad():
        out = model(x)
        return LOSSES[loss](out, y), (out.argmax(1) == y).sum()


def checkpoint_pass(batch_gradients, params, data: Dataset, batch_size: int, lr, groups: str,
                    batch_dims: int = 0, elr_power: int = 2, batch_losses=None) -> dict:
    """The checkpoint protocol's sums, one model or a stacked batch of them (``batch_dims=1``,
    ``lr`` then one per model): ``batch_gradients(x, y)`` gives (loss, number correct, SI
    gradients) of a batch at the point, without a step; ``batch_losses(x, y)`` (loss, number
    correct), forward only. {'all': accumulator of the whole set, and with label noise
    'noisy'/'clean': (loss sum, number correct, examples) of each subset in its own
    stored-order batches}."""
    acc = PointAccumulator(params, lr, groups == "filter", batch_dims, elr_power)
    for x, y in fixed_order_batches(data, batch_size):
        value, correct, grads = batch_gradients(x, y)
        acc.add_gradients(grads, value, correct, len(y))
    passes = {"all": acc}
    for name, indices in (label_noise_subsets(data) or {}).items():
        loss_sum = correct_sum = 0
        seen = 0
        for x, y in fixed_order_batches(data, batch_size, indices):
            value, correct = batch_losses(x, y)
            loss_sum, correct_sum, seen = loss_sum + value.double() * len(y), correct_sum + correct, seen + len(y)
        passes[name] = (loss_sum, correct_sum, seen)
    return passes


def checkpoint_results(passes: dict, lr: float, test: tuple, params, initial=None,
                       index=None) -> tuple[dict, dict, dict]:
    """(metrics, per-layer, per-filter) of ``checkpoint_pass``'s sums for one model (``index``
    in a stacked batch; ``params`` that model's SI tensors), with the ``test`` (loss, accuracy)
    and, given ``initial``, the distance to the start."""
    metrics, per_layer, per_filter = passes["all"].metrics(lr, index)
    pick = float if index is None else (lambda t: float(t[index]))
    subsets = {name: sums for name, sums in passes.items() if name != "all"}  # (loss sum, correct, examples)
    if subsets:  # the official total under label noise: the subsets' size-weighted means
        seen = sum(n for _, _, n in subsets.values())
        metrics["train_loss"] = sum(pick(loss) for loss, _, _ in subsets.values()) / seen
        metrics["train_accuracy"] = sum(pick(correct) for _, correct, _ in subsets.values()) / seen
        for name, (loss, correct, n) in subsets.items():
            metrics[f"train_loss_{name}"], metrics[f"train_accuracy_{name}"] = pick(loss) / n, pick(correct) / n
    metrics["test_loss"], metrics["test_accuracy"] = test
    if initial is not None:
        scalars, layers = distance_to_start(params, initial)
        metrics.update(scalars)
        per_layer.update(layers)
    return metrics, per_layer, per_filter


def epoch_rows(metrics: dict, groups: dict, filters: dict, prefix: str = "") -> dict:
    """One epoch's rows by their path under /metrics (``prefix``: ``CHECKPOINT_PREFIX`` for the
    checkpoint metrics)."""
    rows = {prefix + k: metrics[k] for k in METRICS + STEP_METRICS + DISTANCE_METRICS + SUBSET_METRICS
            if k in metrics}
    rows.update({f"{prefix}groups/{k}": v for k, v in groups.items()})
    rows.update({f"{prefix}filters/{k}": v for k, v in filters.items()})
    return rows


def row_shapes(groups: str, checkpoint: bool, n_groups: int, n_filters: int,
               label_noise: bool = False) -> dict:
    """The rows a run logs each epoch, with their shapes (created empty with the file):
    ``groups`` 'filter' adds the per-filter rows, ``checkpoint`` the checkpoint metrics (with
    ``label_noise``, their subsets' too)."""
    shapes = {}
    for prefix in ("", CHECKPOINT_PREFIX) if checkpoint else ("",):
        distances = DISTANCE_METRICS if prefix else ()
        subsets = SUBSET_METRICS if prefix and label_noise else ()
        steps = () if prefix else STEP_METRICS
        shapes.update({prefix + k: () for k in METRICS + steps + distances + subsets})
        shapes.update({f"{prefix}groups/{k}": (n_groups,) for k in GROUP_METRICS + distances})
        if groups == "filter":
            shapes.update({f"{prefix}filters/{k}": (n_filters,) for k in GROUP_METRICS})
    return shapes
