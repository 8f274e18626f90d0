"""Scale invariance of every model and the frozen last layer."""
import pytest
import torch

from landscape.models import build_model, frozen_parameters, model_spec, si_groups

CASES = [
    ("convnet", (1, 40), {}),
    ("convnet", (3, 16, 16), {}),
    ("resnet18-post", (3, 16, 16), {"width": 4}),
    ("resnet18-post", (1, 40), {"width": 4}),  # 1-D convolutions for MNIST-1D signals
    ("mlp", (1, 40), {"width": 16, "depth": 3}),
]


def _outputs(model, x):
    model.train()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name,shape,kw", CASES)
def test_each_si_group_is_scale_invariant(name, shape, kw):
    spec = model_spec(name, shape, 10, width=kw.get("width", 4), depth=kw.get("depth", 3))
    model = build_model(spec, init_seed=1).double()
    for m in model.modules():  # BatchNorm's eps is the one (tiny) departure from invariance
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-30  # torch requires eps > 0 in training
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _outputs(model, x)
    groups = si_groups(model)
    assert len(groups) >= 3
    for gname, p in groups:
        for c in (0.25, 7.0):
            with torch.no_grad():
                p.mul_(c)
            out = _outputs(model, x)
            with torch.no_grad():
                p.div_(c)
            torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9, msg=f"{name}: {gname} x{c}")
    # the check can fail: scaling the frozen head does change the outputs
    head = dict(frozen_parameters(model))["head.weight"]
    with torch.no_grad():
        head.mul_(2.0)
    assert not torch.allclose(_outputs(model, x), ref, atol=1e-3)


def _exact_bn(model):
    for m in model.modules():  # BatchNorm's eps is the one (tiny) departure from invariance
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-30
    return model


def test_preactivation_resnet18_is_the_official_architecture_and_jointly_si():
    """--model resnet18: the official ResNet18SI (pre-activation blocks, BN in the downsampling
    shortcut, final BN, no head bias). Every conv is SI jointly; each block's first conv alone."""
    k = 4
    model = _exact_bn(build_model(model_spec("resnet18", (3, 32, 32), 10, width=k), 1).double())
    shapes = {n: tuple(p.shape) for n, p in si_groups(model)}
    expected = {"conv1.weight": (k, 3, 3, 3)}
    cin = k
    for i, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            blk, cout = f"layers.{2 * i + j}", k * mult
            expected[f"{blk}.conv1.weight"] = (cout, cin, 3, 3)
            expected[f"{blk}.conv2.weight"] = (cout, cout, 3, 3)
            if cin != cout:
                expected[f"{blk}.shortcut.1.weight"] = (cout, cin, 1, 1)
            cin = cout
    assert shapes == expected
    assert [n for n, _ in frozen_parameters(model)] == ["head.weight"]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 2 * 8 + 3 + 1 and not any(b.affine for b in bns)  # 3 shortcuts, final BN
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _outputs(model, x)
    with torch.no_grad():
        for _, p in si_groups(model):
            p.mul_(3.0)
    torch.testing.assert_close(_outputs(model, x), ref, rtol=1e-8, atol=1e-8)  # jointly SI
    with torch.no_grad():
        for _, p in si_groups(model):
            p.div_(3.0)
        params = dict(si_groups(model))
        params["layers.3.conv1.weight"].mul_(5.0)  # followed by a BN: SI on its own
        torch.testing.assert_close(_outputs(model, x), ref, rtol=1e-8, atol=1e-8)
        params["layers.3.conv1.weight"].div_(5.0)
        params["layers.3.conv2.weight"].mul_(5.0)  # added to the shortcut: not on its own
        assert not torch.allclose(_outputs(model, x), ref, atol=1e-4)
    # a spec stored before the variant existed still builds the post-activation model
    old = {k: v for k, v in model_spec("resnet18", (3, 32, 32), 10, width=k).items() if k != "variant"}
    assert "layers.0.conv1.weight" in dict(build_model(old).named_parameters())
    assert isinstance(build_model(old).layers[0].bn1, torch.nn.BatchNorm2d)
    assert type(build_model(old)).__name__ == "ResNet18"


@pytest.mark.parametrize("name,shape,kw", CASES)
def test_frozen_head_has_norm_10_and_is_not_trainable(name, shape, kw):
    model = build_model(model_spec(name, shape, 10, width=4), init_seed=3)
    frozen = dict(frozen_parameters(model))
    head = frozen.pop("head.weight")
    assert not head.requires_grad
    assert abs(head.norm().item() - 10.0) < 1e-4
    assert all(p.requires_grad for _, p in si_groups(model))
    # the official ConvNet keeps nn.Linear's random bias, frozen; the other models have none
    if name == "convnet":
        bias = frozen.pop("head.bias")
        bound = 1 / head.shape[1] ** 0.5  # nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert not bias.requires_grad and bias.abs().max() <= bound and bias.abs().max() > 0
    assert not frozen


def test_head_bias_stays_frozen_in_training_and_old_specs_rebuild_without_it(tmp_path, tiny):
    from landscape import train
    t = train(out=str(tmp_path / "t.h5"), progress=False, **tiny)
    assert t.model_spec["head_bias"] is True
    assert torch.equal(t.state_dict(0)["head.bias"], t.state_dict(3)["head.bias"])
    old = {k: v for k, v in t.model_spec.items() if k != "head_bias"}  # stored before the bias
    assert "head.bias" not in dict(build_model(old).named_parameters())


def test_initialisation_depends_only_on_init_seed():
    spec = model_spec("convnet", (1, 40), 10, width=4)
    a, b, c = build_model(spec, 5), build_model(spec, 5), build_model(spec, 6)
    torch.manual_seed(123)  # the global generator must not matter
    for (n, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_preactivation_resnet18_on_signals_is_jointly_si():
    """The ResNet-18 with 1-D convolutions (MNIST-1D, Section 6 at CPU scale): scaling every SI
    weight by one c > 0 leaves its outputs unchanged; scaling the frozen head does not."""
    model = _exact_bn(build_model(model_spec("resnet18", (1, 40), 10, width=4), 1).double())
    assert all(p.dim() == 3 for _, p in si_groups(model))  # Conv1d weights
    x = torch.randn(16, 1, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _outputs(model, x)
    with torch.no_grad():
        for _, p in si_groups(model):
            p.mul_(3.5)
    torch.testing.assert_close(_outputs(model, x), ref, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        dict(frozen_parameters(model))["head.weight"].mul_(2.0)
    assert not torch.allclose(_outputs(model, x), ref, atol=1e-3)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0), (5, 1, 2)])
def test_time_major_convolution_is_conv1d(kernel, stride, padding):
    """The CPU's time-major convolution against ``F.conv1d`` in float64: output, input and weight
    gradients, from a contiguous input and from a time-major one."""
    from landscape.models import conv1d_time_major
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, kernel, dtype=torch.float64, generator=gen)
    g = None
    for x in (torch.randn(5, 4, 17, dtype=torch.float64, generator=gen),
              torch.randn(5, 17, 4, dtype=torch.float64, generator=gen).transpose(1, 2)):
        outs = []
        for conv in (lambda a, b: conv1d_time_major(a, b, stride, padding),
                     lambda a, b: torch.nn.functional.conv1d(a, b, stride=stride, padding=padding)):
            a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = conv(a, b)
            g = torch.randn(y.shape, dtype=torch.float64, generator=gen) if g is None else g
            outs.append((y, *torch.autograd.grad((y * g).sum(), (a, b))))
        for new, ref in zip(*outs):
            assert new.shape == ref.shape
            torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("affine", [False, True])
def test_time_major_batchnorm_is_batchnorm1d(affine):
    """BatchNorm1d of a time-major signal against nn.BatchNorm1d on the same values: train-mode
    output and gradients, running statistics (momentum and cumulative), then eval mode."""
    from landscape.models import BatchNorm1d
    gen = torch.Generator().manual_seed(1)
    for momentum in (0.1, None):
        new = BatchNorm1d(6, affine=affine, momentum=momentum).double()
        ref = torch.nn.BatchNorm1d(6, affine=affine, momentum=momentum).double()
        if affine:
            with torch.no_grad():
                for m in (new, ref):
                    m.weight.copy_(torch.linspace(0.5, 2, 6)), m.bias.copy_(torch.linspace(-1, 1, 6))
        for _ in range(3):
            rows = torch.randn(4, 9, 6, dtype=torch.float64, generator=gen) * 3 + 1
            a, b = rows.transpose(1, 2).requires_grad_(), rows.transpose(1, 2).contiguous().requires_grad_()
            assert a.stride(1) == 1  # the time-major path
            ya, yb = new(a), ref(b)
            g = torch.randn(yb.shape, dtype=torch.float64, generator=gen)
            torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(torch.autograd.grad((ya * g).sum(), a)[0],
                                       torch.autograd.grad((yb * g).sum(), b)[0], rtol=1e-10, atol=1e-12)
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(new.state_dict()[key], value, rtol=1e-12, atol=0)
        new.eval(), ref.eval()
        torch.testing.assert_close(new(a.detach()), ref(b.detach()), rtol=1e-12, atol=1e-12)
