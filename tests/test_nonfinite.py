"""Non-finite values end runs cleanly; folder commands skip what they cannot use; JSON is JSON."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

import landscape.steppers as steppers
from landscape.run import EXIT_NONFINITE
from landscape import Trajectory, train
from landscape.sweep import sweep

from test_cli import assert_one_line_error


def strict_json(path):
    """Python's json accepts NaN and Infinity; JSON does not."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(open(path).read(), parse_constant=refuse)


@pytest.fixture
def poisoned(monkeypatch):
    """From epoch 3, step 2 on, one input signal is inf: BatchNorm turns it into NaN (the way a
    bad sample or an overflow poisons a real run)."""
    real = steppers.train_batches

    def batches(data, batch_size, epoch, *a, **k):
        for step, (x, y) in enumerate(real(data, batch_size, epoch, *a, **k), 1):
            if (epoch, step) >= (3, 2):
                x = x.clone()
                x[0] = math.inf
            yield x, y
    monkeypatch.setattr(steppers, "train_batches", batches)


def _args(tiny, out, as_flags, **extra):
    return ["train", "-o", str(out)] + as_flags(dict(tiny, epochs=6, save_every=2, **extra))


def test_a_nonfinite_run_ends_with_its_status_and_keeps_its_epochs(tmp_path, tiny, poisoned, monkeypatch, cli, as_flags):
    path = tmp_path / "sw" / "elr0.01.h5"
    code, out, err = cli(_args(tiny, path, as_flags))
    assert code == EXIT_NONFINITE == 3, err
    assert "stopped: non-finite loss" in err and "epoch 3, step 2" in err and str(path) in err
    t = Trajectory(str(path))
    assert t.status == "nonfinite" and t.epochs_complete == 2 and list(t.epochs) == [1, 2]
    assert t.status_detail == {"epoch": 3, "step": 2, "what": ["loss", "gradient", "parameters"],
                               "elr": tiny["elr"]}
    assert t.checkpoint_epochs == [0, 2]
    for name, values in t.metrics.items():
        assert np.all(np.isfinite(values)), name
    assert all(torch.isfinite(v.double()).all() for v in t.state_dict(2).values())
    # resuming says so instead of running into it again
    code, _, err = cli(["train", "--resume", str(path), "-q"])
    assert_one_line_error(code, err, "non-finite", "epoch 3", "lower --elr")
    code, out, _ = cli(["show", str(path)])
    assert code == 0 and "status: nonfinite: non-finite loss" in out
    # regimes: its own label, next to a normal run, valid JSON
    monkeypatch.undo()  # clean data again
    train(out=str(tmp_path / "sw" / "elr0.001.h5"), progress=False, **dict(tiny, elr=1e-3, epochs=4))
    code, out, err = cli(["regimes", str(tmp_path / "sw"), "--json", str(tmp_path / "r.json"),
                          "--plot", str(tmp_path / "r.png")])
    assert code == 0, err
    rows = {r["elr"]: r for r in strict_json(tmp_path / "r.json")["rows"]}
    assert rows[0.01]["name"] == "nonfinite" and rows[0.01]["regime"] is None
    assert rows[0.01]["nonfinite_epoch"] == 3
    assert rows[0.001]["name"] != "nonfinite"  # 4 epochs: 'undetermined (too short)', not a guess
    assert "nonfinite (ep. 3)" in out


def test_an_overflowing_elr_ends_one_run_of_a_vectorised_sweep(tmp_path, tiny):
    """ELR 1e20 in float32: the step overflows the parameters at the first step. The other
    run of the same stacked model trains on, equal to a separate run."""
    cfg = dict(tiny, epochs=3)
    index = sweep([1e-3, 1e20], str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    assert [r["status"] for r in index["runs"]] == ["done", "nonfinite"]
    bad = Trajectory(str(tmp_path / "sw" / "elr1e+20.h5"))
    assert bad.epochs_complete == 0 and bad.status_detail["what"] == ["parameters"]
    assert bad.status_detail["epoch"] == 1 and bad.status_detail["step"] == 1
    good = Trajectory(str(tmp_path / "sw" / "elr0.001.h5"))
    ref = train(out=str(tmp_path / "ref.h5"), progress=False, **dict(cfg, elr=1e-3))
    np.testing.assert_allclose(good.metrics["train_loss"], ref.metrics["train_loss"], rtol=1e-5)
    # a re-run leaves both alone
    again = sweep([1e-3, 1e20], str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    assert [r["status"] for r in again["runs"]] == ["done", "nonfinite"]


@pytest.mark.slow
def test_processes_sweep_records_nonfinite_runs(tmp_path, tiny):
    index = sweep([1e20], str(tmp_path / "sw"), strategy="processes", progress=False, **dict(tiny, epochs=2))
    assert [r["status"] for r in index["runs"]] == ["nonfinite"]


def test_a_learning_rate_beyond_the_dtype_is_a_one_line_error(tmp_path, tiny, cli, as_flags):
    code, _, err = cli(_args(tiny, tmp_path / "t.h5", as_flags, elr=1e40) + ["-q"])
    assert_one_line_error(code, err, "overflows float32", "--dtype float64")
    assert not (tmp_path / "t.h5").exists()


def test_folders_skip_and_list_what_they_cannot_use(tmp_path, tiny, cli):
    sw = tmp_path / "sw"
    good = train(out=str(sw / "elr0.001.h5"), progress=False, **dict(tiny, elr=1e-3, epochs=5))
    train(out=str(sw / "elr0.002.h5"), progress=False, **dict(tiny, elr=2e-3, epochs=2))
    data = open(good.path, "rb").read()
    open(sw / "elr0.005.h5", "wb").write(data[:len(data) // 2])  # a truncated copy
    (sw / "notes.h5").write_bytes(b"not hdf5")                   # a foreign file
    code, out, err = cli(["regimes", str(sw), "--json", str(tmp_path / "r.json")])
    assert code == 0, err
    result = strict_json(tmp_path / "r.json")
    assert [r["elr"] for r in result["rows"]] == [1e-3]
    skipped = {os.path.basename(s["path"]): s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"elr0.002.h5", "elr0.005.h5", "notes.h5"}
    assert "too short: 2 epochs" in skipped["elr0.002.h5"]
    assert "truncated" in skipped["elr0.005.h5"]
    assert "not a readable HDF5" in skipped["notes.h5"]
    for name in skipped:
        assert f"skipped {sw / name}:" in out
    # double descent: the same, plus runs without label noise
    code, out, err = cli(["double-descent", str(sw)])
    assert_one_line_error(code, err, "no usable trajectory", "without label noise", "truncated")
    noisy = train(out=str(sw / "noisy.h5"), progress=False, **dict(tiny, label_noise=0.2, epochs=6))
    code, out, err = cli(["double-descent", str(sw), "--json", str(tmp_path / "d.json")])
    assert code == 0, err
    d = strict_json(tmp_path / "d.json")
    assert [r["path"] for r in d["rows"]] == [noisy.path] and len(d["skipped"]) == 4
    # nothing usable at all is still an error
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(sw / "elr0.005.h5", bad)
    code, _, err = cli(["regimes", str(bad)])
    assert_one_line_error(code, err, "no usable trajectory", "truncated")


def test_json_outputs_carry_null_for_nan(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), progress=False, **dict(tiny, epochs=3, eval_every=2))
    assert np.isnan(t.metrics["test_loss"][0])
    code, _, err = cli(["show", t.path, "--json", str(tmp_path / "s.json")])
    assert code == 0, err
    metrics = strict_json(tmp_path / "s.json")["metrics"]
    assert metrics["test_loss"][0] is None and metrics["test_loss"][1] is not None
    from landscape.files import write_json
    write_json(str(tmp_path / "x.json"), {"a": float("inf"), "b": np.array([1.0, np.nan]), "c": np.float32("nan")})
    assert strict_json(tmp_path / "x.json") == {"a": None, "b": [1.0, None], "c": None}


def test_the_accumulator_finds_each_models_first_nonfinite_step_and_sums_the_rest():
    """Two models stepped together: model 0's parameters go infinite after step 4, model 1's
    gradient at step 2 (and its loss from step 3); the first bad step and what went bad are each
    model's own, and the sums are a plain loop's."""
    from landscape.measure import EpochAccumulator
    acc = EpochAccumulator()
    inf, nan = math.inf, math.nan
    losses = [[1.0, 2.0], [1.5, 2.5], [1.2, nan], [1.1, nan], [1.0, nan]]
    grad_norms = [[0.5, 0.7], [0.4, inf], [0.3, nan], [0.2, nan], [0.1, nan]]
    after = [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0], [inf, 4.0], [nan, 4.0]]
    for loss, g, a in zip(losses, grad_norms, after):
        stats = {"grad_norm": torch.tensor(g, dtype=torch.float64), "rho_sq": torch.tensor(a).double()}
        acc.add(stats, torch.tensor(loss), torch.tensor([3, 5]), 10)
        acc.end_step(torch.tensor(a).reshape(2, 1))
    assert acc.nonfinite(0) == {"step": 4, "what": ["parameters"]}
    assert acc.nonfinite(1) == {"step": 2, "what": ["gradient"]}
    assert acc.sums["grad_norm"][0].item() == pytest.approx(sum(g[0] for g in grad_norms))
    assert acc.loss_sum[0].item() == pytest.approx(10 * sum(l[0] for l in losses))
    assert acc.correct.tolist() == [15, 25] and acc.steps == 5 and acc.seen == 50
    finite = EpochAccumulator()
    finite.add({"grad_norm": torch.tensor(0.5, dtype=torch.float64)}, torch.tensor(1.0), torch.tensor(3), 10)
    finite.end_step(torch.tensor([1.0, 2.0]))
    assert finite.nonfinite() is None
