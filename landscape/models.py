"""Fully scale-invariant (SI) networks, built as the paper (Section 4) and its code build them.

Every convolution / hidden linear layer has no bias and is followed directly by a BatchNorm with
no learnable shift or scale, so each such weight tensor is one SI group: multiplying it by c > 0
leaves the train-mode output unchanged. The last linear layer is frozen at its random
initialisation, rescaled to Frobenius norm ``last_layer_norm`` (paper: 10), with the ConvNet's
random bias kept as in the official code; it is the only non-SI part and never trains.

A model is described by a JSON-able *spec* (``dict``) so that a trajectory file can rebuild it
with no command line: ``build_model(spec, init_seed)``.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .legacy import stored_model_spec
from .errors import ArgumentError, LandscapeError
import contextlib
import copy

MODELS = ("convnet", "resnet18", "resnet18-post", "mlp", "transformer")
DEFAULT_WIDTH = {"convnet": 32, "resnet18": 64, "resnet18-post": 64, "mlp": 256, "transformer": 32}
PATCH = 4  # the transformer's tokens: patches of 4 samples (signals) or 4 x 4 pixels (images)


def conv1d_time_major(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv1d(x, weight, stride=stride, padding=padding)`` (no bias, zero padding) computed
    as one matrix product over time-major rows: the signal (B, C, L) is read as (B, L, C), the
    kernel's ``k`` shifted windows are laid side by side, (B·L', k·C) @ (k·C, C_out). The result
    is (B, C_out, L') with time-major strides, which the next such convolution, a BatchNorm1d
    of this module and ``max_pool1d`` read without a copy. On the CPU this is 1.7x faster per
    training pass of the recipe's ConvNet than ``F.conv1d`` (``benchmarks/conv_layout.py``).

    >>> x, w = torch.randn(2, 3, 8), torch.randn(4, 3, 3)
    >>> torch.allclose(conv1d_time_major(x, w, 1, 1), F.conv1d(x, w, padding=1), atol=1e-6)
    True
    """
    batch, channels, length = x.shape
    kernel = weight.shape[-1]
    rows = x.transpose(1, 2)
    if padding:
        rows = F.pad(rows, (0, 0, padding, padding))
    out_length = (length + 2 * padding - kernel) // stride + 1
    span = stride * (out_length - 1) + 1
    windows = [rows[:, j:j + span:stride] for j in range(kernel)]
    u = windows[0] if kernel == 1 else torch.cat(windows, 2)
    w = weight.permute(2, 1, 0).reshape(kernel * channels, -1)  # rows in the windows' order
    return (u.reshape(batch * out_length, kernel * channels) @ w).view(batch, out_length, -1).transpose(1, 2)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state dict) whose CPU forward is
    :func:`conv1d_time_major`; other devices and configurations use the library's kernel."""

    def forward(self, x):
        if (x.device.type == "cpu" and x.dim() == 3 and self.bias is None and self.groups == 1
                and self.dilation == (1,) and self.padding_mode == "zeros" and isinstance(self.padding, tuple)):
            return conv1d_time_major(x, self.weight, self.stride[0], self.padding[0])
        return super().forward(x)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a time-major signal (B, C, L with C the fastest axis,
    as :class:`Conv1d` returns it) as the (B·L, C) matrix it is in memory: the same statistics
    over batch and length, without reordering it."""

    def forward(self, x):
        if x.dim() == 3 and x.stride(1) == 1 and x.shape[2] > 1:
            batch, channels, length = x.shape
            rows = x.transpose(1, 2).reshape(batch * length, channels)
            return super().forward(rows).view(batch, length, channels).transpose(1, 2)
        return super().forward(x)


def _conv(dim: int, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    cls = Conv1d if dim == 1 else nn.Conv2d
    return cls(cin, cout, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False)


def _bn(dim: int, channels: int) -> nn.Module:
    # affine=False: no learnable shift/scale, so the preceding weight is scale-invariant
    cls = {0: nn.BatchNorm1d, 1: BatchNorm1d}.get(dim, nn.BatchNorm2d)
    return cls(channels, affine=False)


def _frozen_head(features: int, num_classes: int, norm: float, bias: bool = False) -> nn.Linear:
    """The last layer, frozen at its random initialisation with the weight rescaled to Frobenius
    norm ``norm``; ``bias``: keep nn.Linear's random bias (frozen too), as the official ConvNet."""
    head = nn.Linear(features, num_classes, bias=bias)
    with torch.no_grad():
        head.weight.mul_(norm / head.weight.norm())
    head.requires_grad_(False)
    return head


class ConvNet(nn.Module):
    """The paper's "3-layer BN ConvNet": conv k (no pool) -> conv 2k -> pool -> conv 4k -> pool
    -> conv 8k -> pool -> global max-pool -> frozen linear. ``dim=1`` for MNIST-1D signals."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, dim: int = 2,
                 last_layer_norm: float = 10.0, head_bias: bool = True):
        super().__init__()
        pool = nn.MaxPool1d(2) if dim == 1 else nn.MaxPool2d(2)
        layers, cin = [], in_channels
        for i, mult in enumerate((1, 2, 4, 8)):
            # pool, then ReLU: the same output as ReLU then pool (both monotone), on half the values
            layers += [_conv(dim, cin, width * mult), _bn(dim, width * mult)] + ([pool] if i > 0 else []) + [nn.ReLU()]
            cin = width * mult
        self.features = nn.Sequential(*layers)
        self.head = _frozen_head(cin, num_classes, last_layer_norm, head_bias)

    def forward(self, x):
        h = self.features(x)
        return self.head(torch.amax(h, dim=tuple(range(2, h.dim()))))


class BasicBlock(nn.Module):
    """Standard (post-activation) ResNet block with a BN after *every* convolution, the shortcut
    convolution included, so each convolution weight is SI on its own. (The pre-activation block
    of the paper's code is SI only for all weights jointly.)"""

    def __init__(self, cin: int, cout: int, stride: int, dim: int = 2):
        super().__init__()
        self.conv1, self.bn1 = _conv(dim, cin, cout, 3, stride), _bn(dim, cout)
        self.conv2, self.bn2 = _conv(dim, cout, cout), _bn(dim, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(dim, cin, cout, 1, stride), _bn(dim, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _resnet18_stages(block, width: int, dim: int = 2) -> tuple[nn.Sequential, int]:
    """ResNet-18's 4 stages x 2 blocks of widths k, 2k, 4k, 8k (each stage after the first
    halves the resolution in its first block); returns them and the output width."""
    blocks, cin = [], width
    for i, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            blocks.append(block(cin, width * mult, 2 if (i > 0 and j == 0) else 1, dim))
            cin = width * mult
    return nn.Sequential(*blocks), cin


class PreActBlock(nn.Module):
    """The official code's SI pre-activation block: BN -> ReLU -> conv -> BN -> ReLU -> conv,
    plus the input (or, when the shape changes, BN -> 1x1 conv of the normalised input). Only
    the first convolution is followed directly by a BatchNorm; the block's convolutions are SI
    jointly with the rest of the network, not one by one."""

    def __init__(self, cin: int, cout: int, stride: int, dim: int = 2):
        super().__init__()
        self.bn1, self.conv1 = _bn(dim, cin), _conv(dim, cin, cout, 3, stride)
        self.bn2, self.conv2 = _bn(dim, cout), _conv(dim, cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_bn(dim, cin), _conv(dim, cin, cout, 1, stride))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + skip


class PreActResNet18(nn.Module):
    """The paper's ResNet-18 (the official ``ResNet18SI``): a stem convolution, 4 x 2
    pre-activation blocks of widths k, 2k, 4k, 8k, then BN -> ReLU -> average pool -> the frozen
    linear layer (no bias). Every convolution weight is SI jointly (scaling them all by c > 0
    leaves the outputs unchanged); only each block's first convolution is SI on its own."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64,
                 last_layer_norm: float = 10.0, dim: int = 2):
        super().__init__()
        self.conv1 = _conv(dim, in_channels, width)
        self.layers, cin = _resnet18_stages(PreActBlock, width, dim)
        self.bn = _bn(dim, cin)
        self.head = _frozen_head(cin, num_classes, last_layer_norm)

    def forward(self, x):
        h = F.relu(self.bn(self.layers(self.conv1(x))))
        # = the official 4x4 average pool on 32x32 inputs; over the length of 1-D signals
        return self.head(h.mean(dim=tuple(range(2, h.dim()))))


class ResNet18(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 64,
                 last_layer_norm: float = 10.0, dim: int = 2):
        super().__init__()
        self.conv1, self.bn1 = _conv(dim, in_channels, width), _bn(dim, width)
        self.layers, cin = _resnet18_stages(BasicBlock, width, dim)
        self.head = _frozen_head(cin, num_classes, last_layer_norm)

    def forward(self, x):
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.head(h.mean(dim=tuple(range(2, h.dim()))))


class MLP(nn.Module):
    """BN MLP: ``depth`` x (linear without bias -> BN -> ReLU) -> frozen linear."""

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 3,
                 last_layer_norm: float = 10.0):
        super().__init__()
        layers, cin = [nn.Flatten()], in_features
        for _ in range(depth):
            layers += [nn.Linear(cin, width, bias=False), _bn(0, width), nn.ReLU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = _frozen_head(cin, num_classes, last_layer_norm)

    def forward(self, x):
        return self.head(self.features(x))


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm of a token sequence (batch, tokens, features): every feature normalised over
    the batch and the tokens together, no learnable shift or scale. Each output feature of the
    linear map before it (a row of its weight) is then scale-invariant on its own, as a filter
    before a BatchNorm in a ConvNet."""

    def __init__(self, features: int):
        super().__init__(features, affine=False)

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _si_linear(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout, bias=False), TokenBatchNorm(cout))


class SIAttention(nn.Module):
    """Multi-head self-attention whose query, key, value and output maps are each followed by a
    TokenBatchNorm: every row of every one of them is an SI group."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (_si_linear(width, width) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        split = lambda z: z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        # written out, not F.scaled_dot_product_attention: its fused CPU kernels have no double
        # backward, which Hessian-vector products need
        weights = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        return self.o((weights @ v).transpose(1, 2).reshape(b, t, d))


class SITransformerBlock(nn.Module):
    """x + attention(x), then x + MLP(x) with MLP = SI linear (2x width) -> ReLU -> SI linear."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attention = SIAttention(width, heads)
        self.mlp = nn.Sequential(_si_linear(width, 2 * width), nn.ReLU(), _si_linear(2 * width, width))

    def forward(self, x):
        x = x + self.attention(x)
        return x + self.mlp(x)


class SITransformer(nn.Module):
    """A fully scale-invariant Transformer (the paper's Appendix O asks whether the three regimes
    appear beyond ConvNets): the input cut into patches of ``PATCH`` samples (or PATCH x PATCH
    pixels), a patch embedding and positional embeddings frozen at their random initialisation,
    ``depth`` blocks of SI attention and SI MLP (every trained weight followed by a TokenBatchNorm),
    the mean over tokens, and the frozen last layer of norm ``last_layer_norm``. Trained tensors:
    the blocks' weights only; each of their rows is an SI group."""

    def __init__(self, input_shape, num_classes: int, width: int = 32, depth: int = 2, heads: int = 4,
                 last_layer_norm: float = 10.0):
        super().__init__()
        if width % heads:
            raise ArgumentError(f"width {width} must be a multiple of heads {heads}", "width", "heads")
        channels, *size = input_shape
        if any(n % PATCH for n in size):
            raise LandscapeError(f"the transformer cuts inputs into patches of {PATCH}: input shape "
                                 f"{tuple(input_shape)} is not a multiple of it")
        tokens = 1
        for n in size:
            tokens *= n // PATCH
        self.dim = len(size)
        self.embed = nn.Linear(channels * PATCH ** self.dim, width, bias=False)
        self.position = nn.Parameter(torch.randn(tokens, width))
        self.blocks = nn.Sequential(*(SITransformerBlock(width, heads) for _ in range(depth)))
        self.head = _frozen_head(width, num_classes, last_layer_norm)
        self.embed.requires_grad_(False)
        self.position.requires_grad_(False)

    def patches(self, x):
        if self.dim == 1:  # (B, C, L) -> (B, L/P, C*P)
            return x.unfold(2, PATCH, PATCH).permute(0, 2, 1, 3).flatten(2)
        # (B, C, H, W) -> (B, H/P * W/P, C*P*P)
        return x.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)

    def forward(self, x):
        h = self.blocks(self.embed(self.patches(x)) + self.position)
        return self.head(h.mean(1))


def make_conventional(model: nn.Module, head_bias: bool = True) -> nn.Module:
    """The conventional version of an SI network (Section 6, Fig. 7 middle and right): every
    BatchNorm gets its learnable scale and shift, and the last layer is a standard trainable
    ``nn.Linear`` (PyTorch's default initialisation), with a bias or without (the official
    ``ResNet18SIAf``). Nothing is scale-invariant any more; training moves every weight."""
    for bn in batchnorm_layers(model):
        bn.affine = True
        bn.weight = nn.Parameter(torch.ones(bn.num_features))
        bn.bias = nn.Parameter(torch.zeros(bn.num_features))
    model.head = nn.Linear(model.head.in_features, model.head.out_features, bias=head_bias)
    return model


def model_spec(name: str, input_shape, num_classes: int, width: int | None = None,
               depth: int = 3, last_layer_norm: float = 10.0, conventional: bool = False,
               conventional_head_bias: bool | None = None, heads: int = 4) -> dict:
    """The JSON-able description a trajectory stores to rebuild the model. A ``conventional``
    network's trainable last layer has a bias unless ``conventional_head_bias`` is False; None
    takes the official code's choice (``ResNet18SIAf``: none; ``convnet_si_af``: a bias)."""
    if name not in MODELS:
        raise LandscapeError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    input_shape = [int(s) for s in input_shape]
    if name.startswith("resnet18") and len(input_shape) not in (2, 3):
        raise LandscapeError(f"model {name!r} needs signals (C, L) or images (C, H, W), got input "
                             f"shape {tuple(input_shape)}")
    width = DEFAULT_WIDTH[name] if width is None else int(width)
    if width <= 0 or depth <= 0 or last_layer_norm <= 0:
        raise ArgumentError("width, depth and last_layer_norm must be positive", "width", "depth", "last_layer_norm")
    spec = {"name": name, "input_shape": input_shape, "num_classes": int(num_classes),
            "width": width, "depth": int(depth), "last_layer_norm": float(last_layer_norm)}
    if name == "convnet":  # the official ConvNet's last layer keeps a (frozen) random bias
        spec["head_bias"] = True
    if name == "resnet18":  # marks the official pre-activation variant (older specs: post)
        spec["variant"] = "preact"
    if name == "transformer":
        if int(heads) <= 0 or width % int(heads):
            raise ArgumentError(f"heads must be a positive divisor of width {width}, got {heads}", "heads")
        spec.update(heads=int(heads), patch=PATCH)
        SITransformer(input_shape, int(num_classes), width, int(depth), int(heads))  # checks the shape
    if conventional:
        spec["conventional"] = True
        spec["conventional_head_bias"] = (not name.startswith("resnet18") if conventional_head_bias is None
                                          else bool(conventional_head_bias))
    return spec


def build_model(spec: dict, init_seed: int = 0) -> nn.Module:
    """Build the model of ``spec`` (stored ones read through ``legacy.stored_model_spec``); its
    initialisation depends on ``init_seed`` alone."""
    spec = stored_model_spec(spec)
    name, shape = spec["name"], spec["input_shape"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if name == "convnet":
            model = ConvNet(shape[0], spec["num_classes"], spec["width"], dim=len(shape) - 1,
                            last_layer_norm=spec["last_layer_norm"],
                            head_bias=spec["head_bias"])
        elif name == "resnet18" and spec.get("variant") == "preact":
            model = PreActResNet18(shape[0], spec["num_classes"], spec["width"], spec["last_layer_norm"],
                                   dim=len(shape) - 1)  # 1-D convolutions for MNIST-1D
        elif name in ("resnet18", "resnet18-post"):
            model = ResNet18(shape[0], spec["num_classes"], spec["width"], spec["last_layer_norm"],
                             dim=len(shape) - 1)
        elif name == "transformer":
            model = SITransformer(shape, spec["num_classes"], spec["width"], spec["depth"], spec["heads"],
                                  spec["last_layer_norm"])
        elif name == "mlp":
            features = 1
            for s in shape:
                features *= s
            model = MLP(features, spec["num_classes"], spec["width"], spec["depth"],
                        spec["last_layer_norm"])
        else:
            raise LandscapeError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
        if spec["conventional"]:
            make_conventional(model, spec["conventional_head_bias"])
    return model


def si_groups(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trained parameter groups, one per trainable tensor, with readable names: the SI
    groups of the package's SI networks (every other tensor is frozen), every tensor of a
    conventional one."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def frozen_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if not p.requires_grad]


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def with_batch_statistics(model: nn.Module) -> nn.Module:
    """A copy whose BatchNorms always normalise by the current batch's statistics and keep no
    running buffers, so evaluating or differentiating it mutates nothing."""
    m = copy.deepcopy(model)
    for bn in batchnorm_layers(m):
        bn.track_running_stats = False
        bn.running_mean = bn.running_var = bn.num_batches_tracked = None
    return m.train()


@contextlib.contextmanager
def kept_buffers(model: nn.Module):
    """The model's buffers (BatchNorm running statistics, batch counts) as they are on entry,
    restored on exit: a train-mode pass through the model itself (its compiled forward, say)
    inside leaves nothing it keeps changed.

    >>> bn = nn.BatchNorm1d(2)
    >>> with kept_buffers(bn):
    ...     _ = bn(torch.randn(8, 2))
    >>> bool(bn.running_mean.eq(0).all()), int(bn.num_batches_tracked)
    (True, 0)
    """
    saved = [b.clone() for b in model.buffers()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, value in zip(model.buffers(), saved):
                b.copy_(value)


@torch.no_grad()
def size_weighted_pass(layers, x: torch.Tensor, batch_size: int, forward) -> None:
    """One train-mode pass of ``x`` in batches through ``forward`` with each BatchNorm of
    ``layers`` at momentum b/(seen+b), so their running values become the size-weighted mean of
    the batches' statistics; the layers' momenta are restored afterwards."""
    momenta = [bn.momentum for bn in layers]
    seen = 0
    for i in range(0, len(x), batch_size):
        b = len(x[i:i + batch_size])
        if b > 1:  # train-mode BN cannot normalise one example
            for bn in layers:  # new = old + b/(seen+b) (batch - old): a size-weighted mean
                bn.momentum = b / (seen + b)
            forward(x[i:i + batch_size])
            seen += b
    for bn, mom in zip(layers, momenta):
        bn.momentum = mom


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them over one train-mode pass of
    ``x`` in batches: the average of the batches' means and (unbiased) variances weighted by
    their sizes, as the official code (SWA's ``bn_update``) does; leaves eval mode."""
    layers = batchnorm_layers(model)
    for bn in layers:
        bn.reset_running_stats()
    model.train()
    size_weighted_pass(layers, x, batch_size, model)
    return model.eval()
