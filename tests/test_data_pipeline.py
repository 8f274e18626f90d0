"""The GPU input pipeline, tested on the CPU with the same code: CIFAR's training
images stay uint8 on the device and are cropped, flipped and normalised there for the whole
batch; every random draw of an epoch is made before its first step (no host round trip per
batch); nothing inside an epoch reads a value back to the host. The trajectories are
bit-identical to the float pipeline's."""
import pickle

import numpy as np
import pytest
import torch

import landscape.run as run_mod
from landscape.config import TrainConfig
from landscape.steppers import train_epoch
from landscape import train
from landscape.data import CIFAR_MEAN, CIFAR_STD, Dataset, epoch_generator, load_dataset, train_batches


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A CIFAR-10 folder in torchvision's format (5 training batches and a test batch of
    random images); torchvision's checksums of the real files are switched off for it."""
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 40) for i in range(1, 6)] + [("test_batch", 50)]:
        images = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images, "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return str(tmp_path / "cifar")


def test_uint8_images_normalise_as_the_float_path(fake_cifar):
    raw = load_dataset("cifar10", fake_cifar, raw_images=True)
    ref = load_dataset("cifar10", fake_cifar)
    assert raw.x_train.dtype == torch.uint8 and ref.x_train.dtype == torch.float32
    assert raw.x_train.element_size() == 1  # a quarter of float32's bytes
    assert torch.equal(raw.inputs(raw.x_train), ref.x_train)  # bit for bit
    assert torch.equal(raw.x_test, ref.x_test) and torch.equal(raw.y_train, ref.y_train)
    # an independent formula: the official ToTensor then Normalize of one image
    img = raw.x_train[7].numpy().astype(np.float64) / 255
    official = (img - np.array(CIFAR_MEAN)[:, None, None]) / np.array(CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(ref.x_train[7].numpy(), official, rtol=1e-6, atol=1e-6)
    raw.input_dtype = torch.float64
    assert torch.equal(raw.inputs(raw.x_train[:3]), ref.x_train[:3].double())


def reference_batches(data: Dataset, batch_size, epoch, seed, padding):
    """The batch-by-batch pipeline (the float pipeline): float inputs, each batch's draws taken
    when it is made, crops of the normalised images padded with ``fill``."""
    fill = data.black if padding == "black" else None
    gen = epoch_generator(seed, epoch)
    order = torch.randperm(len(data.y_train), generator=gen)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < 2:
            break
        x = data.x_train[idx]
        n, pad = len(idx), 4
        spatial = x.shape[2:]
        offsets = [torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in spatial]
        if fill is None:
            padded = torch.nn.functional.pad(x, (pad, pad) * len(spatial))
        else:
            padded = torch.as_tensor(fill).reshape((1, -1) + (1,) * len(spatial)).expand(
                (n, x.shape[1]) + tuple(s + 2 * pad for s in spatial)).clone()
            padded[(slice(None), slice(None)) + tuple(slice(pad, pad + s) for s in spatial)] = x
        if len(spatial) == 1:
            out = torch.stack([padded[i, :, o:o + spatial[0]] for i, o in enumerate(offsets[0])])
        else:
            out = torch.stack([padded[i, :, r:r + spatial[0], c:c + spatial[1]]
                               for i, (r, c) in enumerate(zip(*offsets))])
            flips = torch.rand(n, generator=gen) < 0.5
            out = torch.stack([o.flip(-1) if f else o for o, f in zip(out, flips)])
        yield out, data.y_train[idx]


@pytest.mark.parametrize("padding", ["black", "zero"])
def test_device_augmentation_equals_the_batch_by_batch_reference(fake_cifar, padding):
    raw = load_dataset("cifar10", fake_cifar, raw_images=True)
    ref = load_dataset("cifar10", fake_cifar)
    for epoch in (1, 2):
        got = list(train_batches(raw, 64, epoch, 3, augment=True, padding=padding))
        want = list(reference_batches(ref, 64, epoch, 3, padding))
        assert len(got) == len(want) == 4  # 200 images: 64, 64, 64, 8
        for (x, y), (xr, yr) in zip(got, want):
            assert x.dtype == torch.float32 and torch.equal(y, yr)
            assert torch.equal(x, xr), padding  # bit for bit, black pixels included


def test_signals_augment_as_the_reference(data_root):
    data = load_dataset("mnist1d", data_root, train_subset=300)
    got = list(train_batches(data, 128, 5, 0, augment=True, padding="zero"))
    want = list(reference_batches(data, 128, 5, 0, "zero"))
    assert len(got) == 3
    for (x, y), (xr, yr) in zip(got, want):
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_every_draw_of_an_epoch_is_made_before_its_first_batch(fake_cifar, monkeypatch):
    data = load_dataset("cifar10", fake_cifar, raw_images=True)
    calls = []
    for name in ("randint", "rand", "randperm"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k))
    batches = train_batches(data, 32, 1, 0, augment=True)
    next(batches)
    before = len(calls)
    assert before == 1 + 7 * 3  # the order, then 7 batches x (two offsets and the flips)
    rest = list(batches)
    assert len(rest) == 6 and len(calls) == before


def test_an_epoch_reads_nothing_back_to_the_host(fake_cifar, monkeypatch):
    """A GPU epoch must not wait on the device: no tensor is read by the host (.item(), bool,
    float, .tolist(), .cpu(), .numpy()) between the first step and the epoch's end."""
    from landscape.models import build_model, model_spec, si_groups
    from landscape.sphere import group_sq_norms
    data = load_dataset("cifar10", fake_cifar, raw_images=True)
    cfg = TrainConfig(model="convnet", width=4, batch_size=32, augment=True, dataset="cifar10")
    model = build_model(model_spec("convnet", (3, 32, 32), 10, width=4), 0)
    params = [p for _, p in si_groups(model)]
    rho = float(group_sq_norms(params).detach().sum().sqrt())

    def refuse(*a, **k):
        raise AssertionError("a host read inside the epoch")
    with monkeypatch.context() as m:
        for name in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy"):
            m.setattr(torch.Tensor, name, refuse)
        acc = train_epoch(model, params, data, 1e-3 * rho ** 2, rho, cfg, 1)
    assert acc.steps == 7 and acc.metrics(1e-3)[0]["train_loss"] > 0  # read once, after it


def test_uint8_training_is_bit_identical_to_the_float_pipeline(fake_cifar, tmp_path, monkeypatch):
    kw = dict(model="convnet", width=4, dataset="cifar10", data_root=fake_cifar, batch_size=32,
              epochs=2, elr=1e-3, device="cpu", augment=True, checkpoint_metrics=True, progress=False)
    fast = train(out=str(tmp_path / "uint8.h5"), **kw)
    real = run_mod.load_dataset
    monkeypatch.setattr(run_mod, "load_dataset", lambda *a, **k: real(*a, **{**k, "raw_images": False}))
    slow = train(out=str(tmp_path / "float.h5"), **kw)
    for k, v in slow.state_dict().items():
        assert torch.equal(fast.state_dict()[k], v), k
    for k in ("train_loss", "effective_grad_norm", "test_loss"):
        np.testing.assert_array_equal(fast.metrics[k], slow.metrics[k])
    for k in ("train_loss", "effective_grad_norm"):  # the official protocol's pass, normalised too
        np.testing.assert_array_equal(fast.checkpoint_metrics[k], slow.checkpoint_metrics[k])
