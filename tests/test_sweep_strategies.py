"""The sweep's GPU strategies, tested on the CPU with the same code: streams (the
models in turn on one batch, a CUDA stream each on a GPU) equal single runs bit for bit with
every speed option; the vectorised step takes bf16 autocast and torch.compile; auto times the
in-process strategies on a probe and keeps its choice."""
import json
import os

import numpy as np
import pytest
import torch

import landscape.sweep as sweep_mod
from landscape import Trajectory, train
from landscape.sweep import probe_strategies, sweep
from landscape.config import TrainConfig


def _identical(a: Trajectory, b: Trajectory):
    for k in b.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    for k in b.filter_metrics:
        np.testing.assert_array_equal(a.filter_metrics[k], b.filter_metrics[k], err_msg=k)
    for k, v in b.state_dict().items():
        assert torch.equal(a.state_dict()[k], v), k


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"precision": "bf16"}, {"space": "whole", "momentum": 0.9, "weight_decay": 1e-3}])
def test_streams_are_bit_identical_to_single_runs(tmp_path, tiny, options):
    """float32 and a chaotic ELR (0.1) included: the same computation, not merely close."""
    rate = "lrs" if options.get("space") == "whole" else "elrs"
    values = [1e-3, 0.1] if rate == "elrs" else [0.05, 0.5]
    cfg = dict(tiny, epochs=3, **options)
    sweep(values, str(tmp_path / "sw"), strategy="streams", progress=False, **cfg)
    for v in values:
        key = "elr" if rate == "elrs" else "lr"
        ref = train(out=str(tmp_path / f"ref{v:g}.h5"), progress=False, **dict(cfg, **{key: v}))
        _identical(Trajectory(str(tmp_path / "sw" / f"{key}{v:g}.h5")), ref)


@pytest.mark.slow
def test_streams_take_channels_last_and_compile(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_COMPILE_BACKEND", "aot_eager")
    cfg = dict(tiny, epochs=2, compile=True, channels_last=True)
    index = sweep([1e-3, 1e-2], str(tmp_path / "sw"), strategy="streams", progress=False, **cfg)
    assert index["strategy"] == "streams" and [r["status"] for r in index["runs"]] == ["done"] * 2
    ref = train(out=str(tmp_path / "ref.h5"), progress=False, **dict(cfg, elr=1e-2))
    _identical(Trajectory(str(tmp_path / "sw" / "elr0.01.h5")), ref)


def test_streams_end_a_nonfinite_run_and_train_the_others_on(tmp_path, tiny):
    """In the whole space a huge LR overflows the weights of its own model only."""
    cfg = dict(tiny, epochs=2, space="whole")
    index = sweep([0.05, 1e38], str(tmp_path / "sw"), strategy="streams", progress=False, **cfg)
    assert [r["status"] for r in index["runs"]] == ["done", "nonfinite"]
    assert Trajectory(str(tmp_path / "sw" / "lr1e+38.h5")).status_detail["epoch"] == 1
    ref = train(out=str(tmp_path / "ref.h5"), progress=False, **dict(cfg, lr=0.05))
    _identical(Trajectory(str(tmp_path / "sw" / "lr0.05.h5")), ref)


@pytest.mark.slow
def test_vectorised_bf16_tracks_single_bf16_runs(tmp_path, tiny):
    """Under vmap BatchNorm normalises in float32 (its batching rule takes no mixed dtypes);
    the runs track single bf16 runs as bf16 tracks float32, and the sphere stays exact."""
    # regime 1 (at higher ELRs this small task's loss is chaotic and bf16 rounding seeds it)
    cfg = dict(tiny, model="convnet", width=8, train_subset=512, epochs=6, precision="bf16")
    sweep([1e-4, 3e-4], str(tmp_path / "sw"), strategy="vectorised", progress=False, **cfg)
    for elr in (1e-4, 3e-4):
        got = Trajectory(str(tmp_path / "sw" / f"elr{elr:g}.h5"))
        ref = train(out=str(tmp_path / f"ref{elr:g}.h5"), progress=False, **dict(cfg, elr=elr))
        ratio = got.metrics["train_loss"] / ref.metrics["train_loss"]
        # as bf16 tracks float32 (the bound below); measured: within 5.5 %
        assert np.all(np.abs(ratio - 1) < 0.10), ratio
        total = np.sqrt((got.group_metrics["rho_end"] ** 2).sum(1))
        np.testing.assert_allclose(total, got.attrs["rho"], rtol=1e-6)
        np.testing.assert_allclose(got.metrics["elr"], elr, rtol=1e-6)
        # and the bf16 forward is really in use: not the float32 trajectory
        f32 = train(out=str(tmp_path / f"f32{elr:g}.h5"), progress=False, **dict(cfg, elr=elr, precision="float32"))
        assert not np.array_equal(got.metrics["train_loss"], f32.metrics["train_loss"])
        assert np.all(np.abs(got.metrics["train_loss"] / f32.metrics["train_loss"] - 1) < 0.10)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"space": "whole", "momentum": 0.9, "weight_decay": 1e-3, "schedule": "cosine"},
                                     {"optimizer": "adam"}])
def test_vectorised_compile_equals_eager(tmp_path, tiny, monkeypatch, options):
    """The compiled vmapped step and the compiled batched update give the eager numbers."""
    monkeypatch.setenv("LANDSCAPE_COMPILE_BACKEND", "aot_eager")
    cfg = dict(tiny, epochs=2, dtype="float64", **options)
    key = "lr" if options.get("space") == "whole" else "elr"
    sweep([1e-3, 1e-2], str(tmp_path / "e"), strategy="vectorised", progress=False, **cfg)
    sweep([1e-3, 1e-2], str(tmp_path / "c"), strategy="vectorised", progress=False, compile=True, **cfg)
    for v in (1e-3, 1e-2):
        a, b = (Trajectory(str(tmp_path / d / f"{key}{v:g}.h5")) for d in ("e", "c"))
        for k, want in a.state_dict().items():  # BatchNorm buffers included: updated once per step
            torch.testing.assert_close(b.state_dict()[k], want, rtol=1e-10, atol=1e-12)
        for k, want in a.metrics.items():
            np.testing.assert_allclose(b.metrics[k], want, rtol=1e-10, atol=1e-12, err_msg=k)
        for k, want in a.filter_metrics.items():
            np.testing.assert_allclose(b.filter_metrics[k], want, rtol=1e-9, atol=1e-12, err_msg=k)


def test_vectorised_refuses_channels_last(tmp_path, tiny, cli):
    code, _, err = cli(["sweep", "--elrs", "1e-3", "-o", str(tmp_path / "sw"), "--strategy", "vectorised",
                        "--channels-last", "--data-root", tiny["data_root"], "--device", "cpu"])
    assert code == 2 and "--strategy streams" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_probe_times_the_real_strategies_and_picks_the_fastest(tiny, tmp_path):
    base = TrainConfig(**{k: v for k, v in tiny.items()})
    base.validate()
    probe = probe_strategies(base, [1e-3, 1e-2, 2e-2], batches=2, workers=2)
    rates = probe["images_per_second"]
    assert set(rates) == {"vectorised", "streams", "processes"} and all(r > 0 for r in rates.values())
    assert probe["chosen"] == max(rates, key=rates.get) and probe["models"] == 3
    # processes: two workers, the first trains two runs in turn, the second one; each worker's
    # rate is its images over its time, so the aggregate is below 3 x the fastest single rate
    assert rates["processes"] < 3 * 2 * 128 / 1e-3


def test_probe_arithmetic(monkeypatch, tiny):
    """The rates from known epoch times: in-process shares summed; processes per worker."""
    import types
    times = iter([[1.0, 2.0, 3.0], [3.0, 3.0, 3.0]])

    def fake_sweep(values, folder, cfg, strategy, workers, progress):
        t = next(times)
        for i, v in enumerate(values):
            json.dump([0, t[i]], open(os.path.join(folder, f"{i}.json"), "w"))
        return {"runs": [{"file": f"{i}.json"} for i in range(len(values))]}
    monkeypatch.setattr(sweep_mod, "sweep", fake_sweep)
    monkeypatch.setattr(sweep_mod, "Trajectory", lambda path: types.SimpleNamespace(
        timing={"epoch_seconds": json.load(open(path))}))
    base = TrainConfig(**{k: v for k, v in tiny.items()})
    probe = probe_strategies(base, [1e-3, 1e-2, 2e-2], ("streams", "processes"), batches=2, workers=2)
    images = 2 * 64  # two batches of 64
    assert probe["images_per_second"]["streams"] == pytest.approx(3 * images / 6.0)
    # worker 0: runs 0 and 2 in turn (3 + 3 s for two runs' images), worker 1: run 1 (3 s)
    assert probe["images_per_second"]["processes"] == pytest.approx(2 * images / 6.0 + images / 3.0)
    assert probe["chosen"] == "processes"


@pytest.mark.slow
def test_auto_on_a_gpu_probes_once_and_keeps_its_choice(tmp_path, tiny, monkeypatch):
    """The device auto sees is a GPU here (training itself stays on the CPU): the first call
    probes and records its figures; a re-run keeps the recorded strategy without probing."""
    monkeypatch.setattr(sweep_mod, "resolve_device", lambda d: torch.device("cuda"))
    probes = []

    def probe(base, values, strategies, **k):
        probes.append(list(values) if "vectorised" in strategies else list(strategies))
        return {"images_per_second": {"vectorised": 1.0, "streams": 2.0}, "chosen": "streams",
                "models": len(values), "batches": 20}
    monkeypatch.setattr(sweep_mod, "probe_strategies", probe)
    cfg = dict(tiny, epochs=1)
    index = sweep([1e-3, 1e-2], str(tmp_path / "sw"), progress=False, **cfg)
    assert index["strategy"] == "streams" and index["strategy_probe"]["chosen"] == "streams"
    assert probes == [[1e-3, 1e-2]]  # all three strategies timed on these models
    stored = json.load(open(tmp_path / "sw" / "sweep.json"))
    assert stored["strategy_probe"]["images_per_second"] == {"vectorised": 1.0, "streams": 2.0}
    (tmp_path / "sw" / "elr0.01.h5").unlink()  # as if it had not begun: trained again
    index = sweep([1e-3, 1e-2], str(tmp_path / "sw"), progress=False, **cfg)
    assert index["strategy"] == "streams" and len(probes) == 1
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    # with channels-last vectorised is not a candidate (vmap cannot keep the layout)
    index = sweep([1e-3, 1e-2], str(tmp_path / "cl"), progress=False, channels_last=True, **cfg)
    assert index["strategy"] == "streams" and probes[-1] == ["streams", "processes"]
    monkeypatch.undo()
    assert sweep([1e-3], str(tmp_path / "cpu"), progress=False, **cfg)["strategy"] == "processes"
