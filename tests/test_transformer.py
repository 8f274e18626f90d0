"""The scale-invariant Transformer: every row of every trained weight is an SI group of the
function (train-mode outputs unchanged when it is scaled, alone or all groups at once with
random factors), the frozen parts never move, the per-filter groups make up the layers, eq. (3)
holds over them, and a run resumes bit-identically."""
import math

import numpy as np
import pytest
import torch

from landscape import Trajectory, train
from landscape.models import build_model, frozen_parameters, model_spec, si_groups


def _model(shape=(1, 40), width=8, depth=2, heads=2, seed=1):
    model = build_model(model_spec("transformer", shape, 10, width=width, depth=depth, heads=heads), seed).double()
    for m in model.modules():  # BatchNorm's eps is the one (tiny) departure from invariance
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-30
    return model.train()


def _out(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("shape", [(1, 40), (3, 8, 8)])
def test_every_row_of_every_weight_is_scale_invariant(shape):
    model = _model(shape)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _out(model, x)
    groups = si_groups(model)
    assert len(groups) == 2 * 6  # q, k, v, o and the MLP's two maps, per block
    g = torch.Generator().manual_seed(1)
    for name, p in groups:
        row = int(torch.randint(p.shape[0], (1,), generator=g))
        with torch.no_grad():
            p[row] *= 5.0
        torch.testing.assert_close(_out(model, x), ref, rtol=1e-9, atol=1e-9, msg=f"{name} row {row}")
        with torch.no_grad():
            p[row] /= 5.0
    # every group at once, a random factor per row
    with torch.no_grad():
        for _, p in groups:
            p.mul_(torch.exp(torch.randn(p.shape[0], 1, generator=g, dtype=torch.float64)))
    torch.testing.assert_close(_out(model, x), ref, rtol=1e-9, atol=1e-9)
    # the check can fail: the frozen parts are not scale-invariant
    for name in ("embed.weight", "position", "head.weight"):
        p = dict(frozen_parameters(model))[name]
        with torch.no_grad():
            p.mul_(3.0)
        assert not torch.allclose(_out(model, x), ref, atol=1e-3), name
        with torch.no_grad():
            p.div_(3.0)


def test_spec_checks_heads_and_patches():
    with pytest.raises(ValueError, match="heads"):
        model_spec("transformer", (1, 40), 10, width=10, heads=4)
    with pytest.raises(Exception, match="patches of 4"):
        model_spec("transformer", (1, 42), 10, width=8)


def test_heads_is_a_train_flag_checked_against_the_width(tmp_path, data_root, cli):
    base = ["train", "--model", "transformer", "--dataset", "mnist1d", "--data-root", data_root,
            "--train-subset", "64", "--batch-size", "32", "--epochs", "1", "--device", "cpu", "-q"]
    code, _, err = cli(base + ["--width", "8", "--heads", "3", "-o", str(tmp_path / "bad.h5")])
    assert code != 0 and "heads" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.h5").exists()
    code, _, err = cli(base + ["--width", "8", "--heads", "2", "-o", str(tmp_path / "t.h5")])
    assert code == 0, err
    assert Trajectory(str(tmp_path / "t.h5")).config["heads"] == 2


def test_training_moves_only_the_si_weights_and_eq3_holds_over_rows(tmp_path, data_root):
    t = train(out=str(tmp_path / "t.h5"), progress=False, model="transformer", width=8, depth=1, heads=2,
              dataset="mnist1d", data_root=data_root, train_subset=256, batch_size=32, epochs=3,
              elr=1e-2, device="cpu", dtype="float64", save_every=1, checkpoint_metrics=False)
    first, last = t.state_dict(0), t.state_dict(3)
    for name in ("embed.weight", "position", "head.weight"):
        assert torch.equal(first[name], last[name]), name
    assert all(not torch.equal(first[n], last[n]) for n in t.group_names)
    rho = math.sqrt(sum(float(last[n].square().sum()) for n in t.group_names))
    assert rho == pytest.approx(float(t.attrs["rho"]), rel=1e-9)  # on the sphere
    f = t.filter_metrics
    rows = sum(last[n].shape[0] for n in t.group_names)
    assert f["elr"].shape[1] == rows
    # eq. (3): 1/ELR = sum over groups of 1/ELR_i, over the rows as over the layers
    np.testing.assert_allclose((1 / f["elr"]).sum(1), 1 / t.metrics["elr"], rtol=1e-6)
    np.testing.assert_allclose((1 / t.group_metrics["elr"]).sum(1), 1 / t.metrics["elr"], rtol=1e-6)


def test_a_transformer_run_resumes_bit_identically(tmp_path, data_root, interrupted_and_resumed):
    kw = dict(model="transformer", width=8, depth=1, heads=2, dataset="mnist1d", data_root=data_root,
              train_subset=256, batch_size=32, epochs=3, elr=1e-2, device="cpu", save_every=1)
    straight = train(out=str(tmp_path / "a.h5"), progress=False, **kw)
    resumed = interrupted_and_resumed(str(tmp_path / "b.h5"), kw, 2, 3)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(straight.metrics["train_loss"], resumed.metrics["train_loss"])


@pytest.mark.slow
def test_every_analysis_runs_on_a_transformer(tmp_path, data_root, cli):
    t = train(out=str(tmp_path / "sw" / "elr0.01.h5"), progress=False, model="transformer", width=8, depth=1,
              heads=2, dataset="mnist1d", data_root=data_root, train_subset=256, batch_size=32, epochs=3,
              elr=1e-2, device="cpu", save_every=1)
    for argv in (["evaluate", t.path, "-q"],
                 ["sharpness", f"{t.path}@3", "--probes", "2", "--batches", "2", "-q"],
                 ["interpolate", f"{t.path}@0", f"{t.path}@3", "--points", "3", "-q"],
                 ["surface", f"{t.path}@3", "--grid", "-1:1:3", "--trajectory", t.path, "-q"],
                 ["regimes", str(tmp_path / "sw"), "--min-points", "3", "--min-tail", "2"]):
        code, out, err = cli(argv)
        assert code == 0, (argv, err)
