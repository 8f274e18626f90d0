"""ELR sweeps: equal to separate runs, isolated, resumable."""
import dataclasses
import hashlib
import os
import shutil

import numpy as np
import torch
import pytest

import landscape.run as run_mod
from landscape import Trajectory, train
from landscape.errors import LandscapeError
from landscape.sweep import parse_rates, sweep


def test_grids():
    paper = parse_rates("1e-7:5")  # the paper's {1, 2, 5} x 10^-k, k = 0..7
    assert len(paper) == 24 and paper[0] == 1e-7 and paper[-1] == 5.0
    assert parse_rates("1e-7:1")[-3:] == [0.2, 0.5, 1.0]
    assert parse_rates("2e-3:1e-2") == [0.002, 0.005, 0.01]
    g = parse_rates("1e-4:1e-2:12")
    assert len(g) == 12 and np.isclose(g[0], 1e-4) and np.isclose(g[-1], 1e-2)
    np.testing.assert_allclose(np.diff(np.log(g)), np.log(100) / 11)
    assert parse_rates("0.001, 0.002") == [0.001, 0.002]
    # a grid refined near a boundary: merged, sorted, each value once
    assert parse_rates("2e-3:1e-2+3e-3,5e-3") == [0.002, 0.003, 0.005, 0.01]
    assert parse_rates("1e+0,2+5e-1") == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("grid", ["", "0,1", "-1e-3", "abc", "1:", "1e-2:1e-4", "1e-4:1e-2:0", "1:2:3:4", "1e-3,1e-3", "1e-3+", "+1e-3"])
def test_bad_grids(grid, cli):
    code, _, err = cli(["sweep", f"--elrs={grid}", "-o", "unused"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "grid" in err
    assert not os.path.exists("unused")


def _assert_same(a, b, rtol):
    for k in a.metrics:
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], rtol=rtol, atol=1e-9, err_msg=k)
    for k in a.group_metrics:
        np.testing.assert_allclose(a.group_metrics[k], b.group_metrics[k], rtol=rtol, atol=1e-9, err_msg=k)
    assert a.filter_metrics.keys() == b.filter_metrics.keys()
    for k in a.filter_metrics:  # per-filter SI groups, batched and single alike; a filter with
        # a tiny gradient carries float32 rounding of the layer's scale, not of its own
        np.testing.assert_allclose(a.filter_metrics[k], b.filter_metrics[k], rtol=rtol,
                                   atol=rtol * np.abs(b.filter_metrics[k]).max(), err_msg=k)


# In float32 a different summation order (a batched convolution, one thread instead of two)
# changes the last bits, and at chaotic ELRs three epochs amplify that past 1e-5; float64 runs
# compare every regime, float32 ones the convergent ELRs.
@pytest.mark.parametrize("strategy", ["vectorised", "streams", "processes"])
@pytest.mark.slow
@pytest.mark.parametrize("model,dtype,elrs", [("convnet", "float64", [1e-3, 1e-2, 0.1]),
                                              ("mlp", "float64", [1e-3, 1e-2, 0.1]),
                                              ("convnet", "float32", [1e-3, 2e-3])])
def test_sweep_equals_separate_runs(tmp_path, tiny, strategy, model, dtype, elrs):
    cfg = dict(tiny, model=model, width=4 if model == "convnet" else 16, epochs=3, save_every=3, dtype=dtype)
    index = sweep(elrs, str(tmp_path / "sw"), strategy=strategy, workers=2, progress=False, **cfg)
    assert [r["status"] for r in index["runs"]] == ["done"] * len(elrs)
    threads = torch.get_num_threads()
    for elr in elrs:
        if strategy == "processes":  # a worker trains on one thread (BatchNorm's sum order)
            torch.set_num_threads(1)
        try:
            ref = train(out=str(tmp_path / f"ref{elr:g}.h5"), progress=False, **dict(cfg, elr=elr))
        finally:
            torch.set_num_threads(threads)
        got = Trajectory(str(tmp_path / "sw" / f"elr{elr:g}.h5"))
        _assert_same(got, ref, rtol=1e-5)
        np.testing.assert_allclose(got.metrics["elr"], elr, rtol=1e-6)
        np.testing.assert_allclose((1 / got.group_metrics["elr"]).sum(1), 1 / elr, rtol=1e-6)
        np.testing.assert_allclose(got.metrics["rho"], got.attrs["rho"], rtol=1e-6)
        assert got.checkpoint_epochs == ref.checkpoint_epochs


# Every comparison below that includes a chaotic ELR (0.1 for this model) runs in float64: in
# float32 the rounding of the machine's kernels seeds the chaos and the runs part within epochs
# on some CPUs (epoch-4 effective grad norm 577 vs 1140 seen), so such a test would depend on
# the machine rather than on the code.
def test_vectorised_runs_do_not_leak(tmp_path, tiny):
    tiny = dict(tiny, dtype="float64")
    sweep([1e-3, 1e-2, 0.1], str(tmp_path / "a"), strategy="vectorised", progress=False, **tiny)
    sweep([1e-3, 0.5, 0.1], str(tmp_path / "b"), strategy="vectorised", progress=False, **tiny)
    for elr in (1e-3, 0.1):
        _assert_same(Trajectory(str(tmp_path / "a" / f"elr{elr:g}.h5")),
                     Trajectory(str(tmp_path / "b" / f"elr{elr:g}.h5")), rtol=1e-6)
    # and the changed run really differs
    assert not np.allclose(Trajectory(str(tmp_path / "a" / "elr0.01.h5")).metrics["train_loss"],
                           Trajectory(str(tmp_path / "b" / "elr0.5.h5")).metrics["train_loss"])


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["vectorised", "streams"])
def test_in_process_resume_after_interruption(tmp_path, tiny, monkeypatch, strategy):
    cfg = dict(tiny, epochs=4, save_every=2, dtype="float64")  # 0.1 is chaotic: see above
    elrs = [1e-3, 1e-2, 0.1]
    full = tmp_path / "full"
    sweep(elrs, str(full), strategy=strategy, progress=False, **cfg)
    commits = []
    real = run_mod.commit_epoch

    def dying(run, epoch, *a):
        if epoch == 3 and len([c for c in commits if c == 3]) == 1:
            raise KeyboardInterrupt  # the first run has epoch 3, the others stop at 2
        commits.append(epoch)
        return real(run, epoch, *a)

    monkeypatch.setattr(run_mod, "commit_epoch", dying)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        sweep(elrs, str(cut), strategy=strategy, progress=False, **cfg)
    monkeypatch.setattr(run_mod, "commit_epoch", real)
    assert [Trajectory(str(cut / f"elr{e:g}.h5")).epochs_complete for e in elrs] == [3, 2, 2]
    index = sweep(elrs, str(cut), strategy=strategy, progress=False, **cfg)
    assert [r["status"] for r in index["runs"]] == ["done"] * 3
    for e in elrs:
        _assert_same(Trajectory(str(cut / f"elr{e:g}.h5")), Trajectory(str(full / f"elr{e:g}.h5")), rtol=1e-5)


@pytest.mark.slow
def test_processes_resume_keeps_finished_runs(tmp_path, tiny):
    cfg = dict(tiny, epochs=2, dtype="float64")  # a worker's one thread against this process's two
    out = tmp_path / "sw"
    sweep([1e-3], str(out), strategy="processes", progress=False, **cfg)
    finished = _digest(out / "elr0.001.h5")
    train(out=str(out / "elr0.01.h5"), progress=False, **dict(cfg, elr=1e-2, epochs=1))  # a partial run
    index = sweep([1e-3, 1e-2], str(out), strategy="processes", workers=2, progress=False, **cfg)
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    assert _digest(out / "elr0.001.h5") == finished  # not redone
    resumed = Trajectory(str(out / "elr0.01.h5"))
    ref = train(out=str(tmp_path / "ref.h5"), progress=False, **dict(cfg, elr=1e-2))
    _assert_same(resumed, ref, rtol=1e-5)


def test_a_worker_resumes_a_run_computed_as_the_new_command_says(tmp_path, tiny):
    """A sweep's worker (``run_one``) resumes a partial run with the new command's data root
    (how it computes, not what it trains): the data moved, the run reads it where it is now
    and ends identical to an uninterrupted run; what it trains cannot change on resume."""
    from landscape.config import TrainConfig
    from landscape.executors import run_one
    old, new = tmp_path / "old-data", tmp_path / "new-data"
    shutil.copytree(tiny["data_root"], old)
    cfg = dict(tiny, epochs=3, elr=1e-2)
    train(out=str(tmp_path / "run.h5"), progress=False, **dict(cfg, data_root=str(old), epochs=1))
    old.rename(new)
    moved = dataclasses.asdict(TrainConfig.from_settings(dict(cfg, data_root=str(new))))
    result = run_one(moved, str(tmp_path / "run.h5"), threads=torch.get_num_threads())
    assert result["status"] == "done" and result["epochs"] == 3
    assert not old.exists()  # not regenerated where it was
    _assert_same(Trajectory(str(tmp_path / "run.h5")), train(out=str(tmp_path / "ref.h5"), progress=False, **cfg),
                 rtol=0)
    with pytest.raises(Exception, match="only epochs and how it is computed"):
        train(out=str(tmp_path / "run.h5"), resume=True, progress=False, width=8)


def test_other_settings_in_the_same_folder_are_refused(tmp_path, tiny, cli):
    sweep([1e-3], str(tmp_path / "sw"), strategy="vectorised", progress=False, **dict(tiny, epochs=1))
    code, _, err = cli(["sweep", "--elrs", "1e-3", "-o", str(tmp_path / "sw"), "--data-root", tiny["data_root"],
                        "--width", "8", "--train-subset", "256", "--batch-size", "64", "--epochs", "1", "--device", "cpu"])
    assert code == 2 and "other settings" in err and "width" in err


@pytest.mark.slow  # it compiles (aot_eager): some 18 s
def test_a_sweep_continues_compiled_and_keeps_its_eager_runs(tmp_path, tiny, monkeypatch):
    """Compiling is how a sweep computes, not what it trains: the same sweep re-run with compile
    keeps its finished eager runs and trains the new ones compiled; another width is refused."""
    monkeypatch.setenv("LANDSCAPE_COMPILE_BACKEND", "aot_eager")
    sweep([1e-3], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1))
    finished = _digest(tmp_path / "sw" / "elr0.001.h5")
    out = sweep([1e-3, 1e-2], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1, compile=True))
    assert [r["status"] for r in out["runs"]] == ["done", "done"]
    assert _digest(tmp_path / "sw" / "elr0.001.h5") == finished
    assert Trajectory(str(tmp_path / "sw" / "elr0.01.h5")).config["compile"] is True
    with pytest.raises(Exception, match="other settings"):
        sweep([1e-3], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1, compile=True, width=8))


def test_a_sweep_made_before_an_option_existed_continues(tmp_path, tiny):
    """A folder whose sweep.json predates options (here the transformer's heads and the
    optimizer's) is the same sweep: its runs continue instead of being refused."""
    import json
    sweep([1e-3], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1))
    index_path = tmp_path / "sw" / "sweep.json"
    index = json.load(open(index_path))
    for key in ("heads", "optimizer", "adam_beta1", "adam_beta2", "adam_eps"):
        del index["config"][key]
    json.dump(index, open(index_path, "w"))
    out = sweep([1e-3, 1e-2], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1))
    assert [r["status"] for r in out["runs"]] == ["done", "done"]
    with pytest.raises(Exception, match="other settings"):  # a real difference is still refused
        sweep([1e-3], str(tmp_path / "sw"), progress=False, **dict(tiny, epochs=1, width=8))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["processes", "streams"])
def test_a_finished_sweep_is_extended_to_more_epochs(tmp_path, tiny, cli, strategy):
    cfg = dict(tiny, epochs=2, dtype="float64")
    out = tmp_path / "sw"
    sweep([1e-3, 1e-2], str(out), strategy=strategy, progress=False, **cfg)
    index = sweep([1e-3, 1e-2], str(out), strategy=strategy, progress=False, **dict(cfg, epochs=4))
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    for elr in (1e-3, 1e-2):
        extended = Trajectory(str(out / f"elr{elr:g}.h5"))
        assert extended.epochs_complete == 4
        ref = train(out=str(tmp_path / f"ref{elr:g}.h5"), progress=False, **dict(cfg, elr=elr, epochs=4))
        _assert_same(extended, ref, rtol=1e-5)
    base = ["sweep", "--elrs", "1e-3,1e-2", "-o", str(out), "--data-root", tiny["data_root"], "--width", "4",
            "--train-subset", "256", "--batch-size", "64", "--device", "cpu", "--dtype", "float64", "-q"]
    code, _, err = cli(base + ["--epochs", "3"])
    assert code == 2 and "would end it before them" in err


@pytest.mark.slow
def test_a_cosine_sweep_cannot_be_extended(tmp_path, tiny):
    cfg = dict(tiny, epochs=2, schedule="cosine", space="whole", lr=0.1, elr=None)
    out = tmp_path / "sw"
    given = {k: v for k, v in cfg.items() if k != "lr"}
    sweep([0.1], str(out), strategy="processes", progress=False, **given)
    with pytest.raises(LandscapeError, match="cosine schedule depends on the run's length"):
        sweep([0.1], str(out), strategy="processes", progress=False, **dict(given, epochs=4))
