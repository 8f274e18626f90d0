"""Scale invariance of every model and the frozen last layer (issue 2)."""
import pytest
import torch

from landscape.models import build_model, frozen_parameters, model_spec, si_groups

CASES = [
    ("convnet", (1, 40), {}),
    ("convnet", (3, 16, 16), {}),
    ("resnet18", (3, 16, 16), {"width": 4}),
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
