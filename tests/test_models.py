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
    (hname, head), = frozen_parameters(model)
    with torch.no_grad():
        head.mul_(2.0)
    assert not torch.allclose(_outputs(model, x), ref, atol=1e-3)


@pytest.mark.parametrize("name,shape,kw", CASES)
def test_frozen_head_has_norm_10_and_is_not_trainable(name, shape, kw):
    model = build_model(model_spec(name, shape, 10, width=4), init_seed=3)
    (hname, head), = frozen_parameters(model)
    assert not head.requires_grad
    assert abs(head.norm().item() - 10.0) < 1e-4
    assert all(p.requires_grad for _, p in si_groups(model))


def test_initialisation_depends_only_on_init_seed():
    spec = model_spec("convnet", (1, 40), 10, width=4)
    a, b, c = build_model(spec, 5), build_model(spec, 5), build_model(spec, 6)
    torch.manual_seed(123)  # the global generator must not matter
    for (n, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
