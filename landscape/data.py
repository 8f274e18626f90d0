"""Datasets as tensors on the target device, seeded batch order, label noise.

Everything fits in memory, so there are no DataLoader workers: a dataset is four tensors, and an
epoch is a seeded permutation of indices. The batch order of epoch ``e`` depends only on
``(data_seed, e)``, so runs with different ELRs see identical batches and a resumed run needs no
saved random state.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .legacy import stored_config
from .errors import ArgumentError, LandscapeError
from .files import atomic_write

DATASETS = ("mnist1d", "cifar10", "cifar100")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_FOLDERS = {"cifar10": ("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
                 "cifar100": ("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz")}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ArgumentError(f"device {device}: CUDA is not available on this machine; use device cpu", "device")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ArgumentError(f"unknown device {device!r}: use auto, cpu or cuda[:N]", "device") from None


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    # indices into the full training set when --train-subset is used (else None)
    subset_indices: np.ndarray | None = None
    # positions (in x_train) whose label --label-noise replaced, and their true labels (in
    # 'paper' mode a replaced label may have drawn its own class again)
    noisy_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    original_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # per channel, a black pixel after normalisation (what the official augmentation pads with:
    # it crops PIL images before normalising); None: the inputs are not normalised (0 is black)
    black: np.ndarray | None = None
    # images kept as uint8 (``raw_images``): the per-channel mean and std that normalise them
    # to model inputs of ``input_dtype``, on the device, one batch at a time (``inputs``)
    pixel_mean: np.ndarray | None = None
    pixel_std: np.ndarray | None = None
    input_dtype: torch.dtype = torch.float32
    _normalisers: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs from stored examples: uint8 images are normalised, in float32 exactly
        as the float path normalises them on the host ((x / 255 - mean) / std), then cast to
        ``input_dtype``; anything else is already an input."""
        if x.dtype != torch.uint8:
            return x
        key = (x.device, x.dim())
        if key not in self._normalisers:  # on the device once: a copy per batch would wait
            shape = (1, -1) + (1,) * (x.dim() - 2)
            self._normalisers[key] = tuple(torch.as_tensor(v, device=x.device).reshape(shape)
                                           for v in (self.pixel_mean, self.pixel_std))
        mean, std = self._normalisers[key]
        return ((x.float() / 255.0 - mean) / std).to(self.input_dtype)


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


# MNIST-1D generator settings a dataset name may change (``mnist1d:samples=20000,noise=2``):
# ``samples`` signals in all (80 % train, 20 % test, as the reference split), ``noise`` a factor
# on both of the generator's noise scales (correlated and iid). The reference is 5000 and 1.
MNIST1D_KEYS = {"samples": int, "noise": float}
MNIST1D_REFERENCE = {"samples": 5000, "noise": 1.0}


def mnist1d_settings(name: str) -> dict:
    """The generator settings of an MNIST-1D dataset name: ``mnist1d`` (the reference: 5000
    signals, 4000 train / 1000 test) or ``mnist1d:KEY=VALUE,...`` with keys ``samples`` and
    ``noise``.

    >>> mnist1d_settings("mnist1d:samples=20000")
    {'samples': 20000, 'noise': 1.0}
    """
    settings = dict(MNIST1D_REFERENCE)
    head, _, spec = name.partition(":")
    if head != "mnist1d":
        raise LandscapeError(f"not an MNIST-1D dataset: {name!r}")
    for item in filter(None, spec.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in MNIST1D_KEYS:
            raise ArgumentError(f"dataset {name}: {item!r} is not a setting; write "
                                 f"mnist1d:samples=N,noise=F (keys: {', '.join(MNIST1D_KEYS)})", "dataset")
        try:
            settings[key] = MNIST1D_KEYS[key](value)
        except ValueError:
            raise ArgumentError(f"dataset {name}: {key} must be a{'n integer' if key == 'samples' else ' number'}, "
                                 f"got {value!r}", "dataset") from None
    if settings["samples"] < 100:
        raise ArgumentError(f"dataset {name}: samples must be at least 100 (10 classes, 80/20 split)", "dataset")
    if not (math.isfinite(settings["noise"]) and settings["noise"] >= 0):
        raise ArgumentError(f"dataset {name}: noise must be a number >= 0", "dataset")
    return settings


def _mnist1d(root: str, name: str = "mnist1d"):
    """MNIST-1D generated locally by the mnist1d package (reference settings: 4000 train / 1000
    test signals of length 40; others by :func:`mnist1d_settings`), cached under ``root``."""
    settings = mnist1d_settings(name)
    reference = settings == MNIST1D_REFERENCE
    stem = "mnist1d" if reference else f"mnist1d-samples{settings['samples']}-noise{settings['noise']:g}"
    path = os.path.join(root, stem + ".npz")
    try:
        with np.load(path) as d:
            return d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], 10
    except (OSError, EOFError, ValueError, KeyError):
        pass  # absent or damaged cache: (re)generate it
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = settings["samples"]
    args.corr_noise_scale *= settings["noise"]
    args.iid_noise_scale *= settings["noise"]
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    arrays = dict(x=d["x"].astype(np.float32), y=d["y"].astype(np.int64),
                  x_test=d["x_test"].astype(np.float32), y_test=d["y_test"].astype(np.int64))
    # the suffix: np.savez appends .npz to any other name
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    with np.load(path) as d:
        return d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], 10


def _cifar(name: str, root: str, download: bool):
    title, folder, archive = CIFAR_FOLDERS[name]
    if not download and not os.path.isdir(os.path.join(root, folder)):
        raise LandscapeError(
            f"{title} not found: expected the folder {os.path.join(root, folder)}/ (extracted from "
            f"{archive}); put it under data_root {root} or pass download", "data_root", "download")
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        train, test = (cls(root, train=t, download=download) for t in (True, False))
    except RuntimeError as e:  # torchvision's integrity check
        raise LandscapeError(f"{title} under {root} is incomplete or corrupt ({e}); re-extract "
                             f"{archive} there or pass download", "download") from None
    # raw uint8 images, channels first (N, 3, 32, 32); ``normalise_images`` makes inputs of them
    (x, y), (xt, yt) = ((ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets, np.int64)) for ds in (train, test))
    return x, y, xt, yt, len(train.classes)


def normalise_images(x: np.ndarray) -> np.ndarray:
    """uint8 CIFAR images (N, 3, H, W) as float32 model inputs: (x / 255 - mean) / std per
    channel, the official ``ToTensor`` then ``Normalize``."""
    mean = np.array(CIFAR_MEAN, np.float32)[:, None, None]
    std = np.array(CIFAR_STD, np.float32)[:, None, None]
    return (x.astype(np.float32) / 255.0 - mean) / std


LABEL_NOISE_MODES = ("paper", "exact")


def load_dataset(name: str = "mnist1d", data_root: str = "data", download: bool = False,
                 train_subset: int | None = None, label_noise: float = 0.0, data_seed: int = 0,
                 device: str | torch.device = "cpu", label_noise_mode: str = "paper",
                 raw_images: bool = False) -> Dataset:
    """A dataset as tensors on ``device``: MNIST-1D signals (float32) or CIFAR images, their
    training set subset (``train_subset``, seeded) and label noise applied. ``raw_images``:
    keep CIFAR's training images as uint8 on the device (a quarter of the memory and of the
    bytes each batch gathers and augments), normalised batch by batch (``Dataset.inputs``);
    test images are always normalised float32."""
    if name not in DATASETS and not name.startswith("mnist1d:"):
        raise LandscapeError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} "
                             f"(or mnist1d:samples=N,noise=F)")
    if os.path.exists(data_root) and not os.path.isdir(data_root):
        raise ArgumentError(f"data_root {data_root} is a file: give the folder that holds (or will "
                            f"hold) the datasets", "data_root")
    if not 0.0 <= label_noise < 1.0:
        raise ArgumentError(f"label_noise must be in [0, 1), got {label_noise}", "label_noise")
    if label_noise_mode not in LABEL_NOISE_MODES:
        raise ArgumentError(f"label_noise_mode must be one of {', '.join(LABEL_NOISE_MODES)}, "
                             f"got {label_noise_mode!r}", "label_noise_mode")
    if name.startswith("mnist1d"):
        x, y, xt, yt, classes = _mnist1d(data_root, name)
    else:
        x, y, xt, yt, classes = _cifar(name, data_root, download)

    subset = None
    if train_subset is not None:
        if not 2 <= train_subset <= len(y):
            raise ArgumentError(f"train_subset must be between 2 and {len(y)}, got {train_subset}", "train_subset")
        subset = np.sort(_rng(data_seed, 1).choice(len(y), train_subset, replace=False))
        x, y = x[subset], y[subset]

    noisy, original = corrupt_labels(y, label_noise, classes, data_seed, label_noise_mode)
    y = y.copy()
    if label_noise_mode == "paper":  # a uniform class, which may be the true one
        y[noisy] = _rng(data_seed, 3).integers(0, classes, len(noisy))
    else:  # a different class
        y[noisy] = (y[noisy] + _rng(data_seed, 3).integers(1, classes, len(noisy))) % classes

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    if name.startswith("mnist1d"):
        return Dataset(name, t(x), t(y), t(xt), t(yt), classes, subset, noisy, original)
    mean, std = np.array(CIFAR_MEAN, np.float32), np.array(CIFAR_STD, np.float32)
    return Dataset(name, t(x if raw_images else normalise_images(x)), t(y), t(normalise_images(xt)), t(yt),
                   classes, subset, noisy, original, -mean / std, mean, std)


def corrupt_labels(labels: np.ndarray, fraction: float, num_classes: int, data_seed: int,
                   mode: str = "paper"):
    """Which labels get noise, seeded; returns the sorted indices and their original labels.
    ``paper`` (the official code's protocol): each label independently with probability
    ``fraction``, and ``load_dataset`` replaces it by a uniform class (the same one with
    probability 1/C, so about fraction * (1 - 1/C) of the labels end up wrong). ``exact``:
    exactly round(fraction * N) labels, each moved to a different class."""
    rng = _rng(data_seed, 2)
    if mode == "paper":
        idx = np.flatnonzero(rng.random(len(labels)) < fraction).astype(np.int64)
    else:
        n = int(round(fraction * len(labels)))
        idx = np.sort(rng.choice(len(labels), n, replace=False)).astype(np.int64)
    return idx, labels[idx].copy()


def epoch_generator(data_seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch (batch order and augmentation): a function of
    (data_seed, epoch) only, so runs with different ELRs and resumed runs share it."""
    seed = int(np.random.SeedSequence([int(data_seed), int(epoch), 0]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def augment_draws(gen: torch.Generator, n: int, spatial_dims: int, pad: int = 4) -> tuple:
    """The random draws of one batch's augmentation, in the order the generator gives them:
    a crop offset in [0, 2 pad] per example and spatial dimension, then (images only) a flip
    per example. Returns (offsets (spatial_dims, n), flips (n,) bool or None), on the CPU."""
    offsets = torch.stack([torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(spatial_dims)])
    flips = torch.rand(n, generator=gen) < 0.5 if spatial_dims == 2 else None
    return offsets, flips


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, pad: int = 4,
                  fill=None) -> torch.Tensor:
    """Random crop with padding ``pad`` (+ horizontal flip for images) of a whole batch on its
    device, from ``augment_draws`` already there: the padding is ``fill`` per channel (None:
    zeros; uint8 images pad with 0, black)."""
    n = x.shape[0]
    spatial = x.shape[2:]
    if fill is None:
        padded = torch.nn.functional.pad(x, (pad, pad) * len(spatial))
    else:
        shape = tuple(x.shape[:2]) + tuple(s + 2 * pad for s in spatial)
        padded = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(
            (1, -1) + (1,) * len(spatial)).expand(shape).clone()
        padded[(slice(None), slice(None)) + tuple(slice(pad, pad + s) for s in spatial)] = x
    batch = torch.arange(n, device=x.device)
    chan = torch.arange(x.shape[1], device=x.device)
    if len(spatial) == 1:
        cols = offsets[0][:, None] + torch.arange(spatial[0], device=x.device)
        return padded[batch[:, None, None], chan[None, :, None], cols[:, None, :]]
    rows = offsets[0][:, None] + torch.arange(spatial[0], device=x.device)
    cols = offsets[1][:, None] + torch.arange(spatial[1], device=x.device)
    out = padded[batch[:, None, None, None], chan[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return torch.where(flips[:, None, None, None], out.flip(-1), out)


AUGMENT_PADDINGS = ("black", "zero")


def epoch_plan(data: Dataset, batch_size: int, epoch: int, data_seed: int, augment: bool = False):
    """Every random draw of one epoch, made on the CPU before its first step and moved to the
    data's device at once, so that no batch waits on the host: the order (a seeded
    permutation), and per batch the augmentation's crop offsets and flips, in the generator's
    order (the same stream as drawing batch by batch). Returns (order, [(offsets, flips)] or
    None), on the device."""
    gen = epoch_generator(data_seed, epoch)
    n = data.y_train.shape[0]
    order = torch.randperm(n, generator=gen)
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    sizes = [b for b in sizes if b >= 2]
    device = data.x_train.device

    def to_device(t):  # pinned and asynchronous on a GPU: the host does not wait for the copy
        return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
    if not augment:
        return to_device(order), None
    draws = [augment_draws(gen, b, data.x_train.dim() - 2) for b in sizes]
    offsets = to_device(torch.cat([o for o, _ in draws], dim=1)).split(sizes, dim=1)
    flips = ([None] * len(sizes) if draws[0][1] is None
             else to_device(torch.cat([f for _, f in draws])).split(sizes))
    return to_device(order), list(zip(offsets, flips))


def train_batches(data: Dataset, batch_size: int, epoch: int, data_seed: int, augment: bool = False,
                  padding: str = "black"):
    """Yield the (x, y) mini-batches of one epoch in their seeded order, as model inputs
    (uint8 images normalised on the device, ``Dataset.inputs``). A trailing batch of one
    example is dropped: train-mode BatchNorm cannot normalise a single example. ``padding`` of
    the augmentation's crops: 'black' pixels as the official code (uint8 images are cropped
    before they are normalised, as the official PIL pipeline does), or 'zero' (the data's mean
    colour; runs stored before the option)."""
    order, draws = epoch_plan(data, batch_size, epoch, data_seed, augment)
    raw = data.x_train.dtype == torch.uint8
    fill = data.black if padding == "black" else None
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        if idx.numel() < 2:
            break
        x = data.x_train[idx]
        if augment:
            offsets, flips = draws[b]
            if raw and padding == "black":  # crop the raw image padded with black, then normalise
                x = data.inputs(crop_and_flip(x, offsets, flips))
            else:
                x = crop_and_flip(data.inputs(x), offsets, flips, fill=fill)
        else:
            x = data.inputs(x)
        yield x, data.y_train[idx]


def dataset_of(config: dict, data_root: str | None = None, device="cpu") -> Dataset:
    """The training data of a stored run (same subset and label noise), for analyses."""
    c = stored_config(config)
    return load_dataset(c["dataset"], data_root or c["data_root"], False, c["train_subset"],
                        c["label_noise"], c["data_seed"], device, c["label_noise_mode"])


def as_batches(data, name: str = "data") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches ``[(x, y), ...]`` from what a user has at hand: one ``(x, y)`` pair of
    tensors, a ``torch.utils.data.DataLoader`` (or any iterable of ``(x, y, ...)`` batches, extra
    fields ignored), a list of such pairs, or a :class:`Dataset` (its training set, one batch).

    >>> import torch
    >>> len(as_batches((torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))))
    1
    """
    if isinstance(data, Dataset):
        return [(data.x_train, data.y_train)]
    if (isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data)
            and len(data[0]) == len(data[1]) and data[1].dim() >= 1):
        return [(data[0], data[1])]
    try:
        items = list(data)
    except TypeError:
        raise LandscapeError(f"{name} must be (x, y) tensors, a DataLoader or a list of (x, y) "
                             f"batches, got {type(data).__name__}") from None
    batches = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2 or not torch.is_tensor(item[0]):
            raise LandscapeError(f"{name}: every batch must be (x, y, ...), got {type(item).__name__}")
        batches.append((item[0], torch.as_tensor(item[1])))
    if not batches:
        raise LandscapeError(f"{name} is empty")
    return batches
