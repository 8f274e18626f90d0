"""The figure scripts of analyses/ read the metrics the regimes were judged on: the checkpoint
metrics (the paper's protocol) when every run has them."""
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape import train
from landscape.evaluation import stored_checkpoint_metrics
from landscape.regimes import regimes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyses"))


def test_fig4_reads_the_checkpoint_filter_rows(tmp_path, tiny):
    import fig4_equal_ess as fig4
    for elr in (1e-3, 1e-2):
        train(out=str(tmp_path / "sw" / f"elr{elr:g}.h5"), progress=False, **dict(tiny, epochs=10, elr=elr, checkpoint_metrics=True))
    res = regimes(str(tmp_path / "sw"))
    assert res["metrics"] == "checkpoint"
    table = fig4.spreads(res["rows"], 0.2)
    for row, entry in zip(res["rows"], table):
        t = row["_trajectory"]
        curves = stored_checkpoint_metrics(t)
        k = max(1, int(round(0.2 * len(curves["epoch"]))))
        want = curves["filters/effective_step_size"][-k:].mean(0)
        np.testing.assert_allclose(entry["groups"]["ess_i"], want, rtol=1e-12)
        # the epoch means are another quantity: the figure did not draw them
        k_epoch = max(1, int(round(0.2 * t.epochs_complete)))
        assert not np.allclose(entry["groups"]["ess_i"], t.filter_metrics["effective_step_size"][-k_epoch:].mean(0))
        assert entry["metrics"] == "checkpoint"
    epoch = fig4.spreads(regimes(str(tmp_path / "sw"), metrics="epoch")["rows"], 0.2)
    k_epoch = max(1, int(round(0.2 * 10)))
    np.testing.assert_allclose(epoch[0]["groups"]["ess_i"],
                               res["rows"][0]["_trajectory"].filter_metrics["effective_step_size"][-k_epoch:].mean(0))


def rows(regimes, egn):
    return [{"elr": 10.0 ** (k - 6), "regime": g, "mean_effective_grad_norm": e} for k, (g, e) in enumerate(zip(regimes, egn))]


def test_claim_7_sharpness_peak_at_the_boundary_is_read_from_the_runs():
    from fig1_regimes import sharpness_peak_at_boundary
    labels = [1, 1, 1, 1, 2, 2, 2, 3]
    at_boundary = [10, 20, 30, 50, 40, 20, 10, 1]    # largest at the last regime-1 ELR
    elsewhere = [60, 20, 30, 50, 40, 20, 10, 1]      # largest at the first ELR
    yes = sharpness_peak_at_boundary({s: rows(labels, at_boundary) for s in ("a", "b", "c")})
    assert yes[0] is True and yes[2]["statistic"]["seeds_at_boundary"] == 3
    assert yes[2]["statistic"]["p_value"] == pytest.approx((2 / 7) ** 3)  # chance 2 of 7 runs per seed
    no = sharpness_peak_at_boundary({"a": rows(labels, at_boundary), "b": rows(labels, elsewhere),
                                     "c": rows(labels, at_boundary)})
    assert no[0] is False and no[2]["statistic"]["seeds_at_boundary"] == 2
    assert sharpness_peak_at_boundary({"a": rows([1, 1, 3], [1, 2, 3])})[0] is None  # no 1/2 boundary


def test_claim_13_late_convergence_from_a_plateau():
    from fig6_transitions import late_drop
    e = np.arange(100)
    plateau_then_drop = np.where(e < 60, 1.0, 0.01)
    assert late_drop(plateau_then_drop) == 61          # the first epoch 5x below the plateau
    assert late_drop(np.exp(-e / 10)) is None            # no plateau: an ordinary convergence
    assert late_drop(np.full(100, 1.0)) is None          # a plateau that never drops


def test_appendix_m_claim_needs_walking_regime_3_and_non_walking_regime_1():
    from appendix_m_random_walk import judge
    walk, confined, drift = ({"verdict": v} for v in ("random walk", "random walk in ~900 of 8088 dimensions",
                                                       "not a random walk (nearer the start on average)"))
    assert judge({3: [walk, confined], 1: [drift]})[0] is True
    assert judge({3: [walk, drift], 1: [drift]})[0] is False
    assert judge({3: [walk], 1: [walk]})[0] is False     # the test does not tell them apart
    assert judge({3: [walk]})[0] is None


@pytest.mark.slow
def test_the_whole_reproduction_at_toy_size_writes_every_claim_in_both_columns(tmp_path):
    """analyses/run_all.sh end to end at toy size (one seed, 5 epochs, width 4): every JSON of
    the checkpoint-metric column and of the epoch-mean column, runs with checkpoint metrics of
    every epoch from epoch 0, and the summary."""
    import json
    import os
    import subprocess
    from landscape.trajectory import Trajectory
    root = Path(__file__).resolve().parents[1]
    out, recipe = tmp_path / "out", tmp_path / "recipe"
    env = dict(os.environ, RECIPE=str(recipe), ANALYSES_OUT=str(out), EPOCHS="5", ELRS="1e-4,1e-2,1",
               SEEDS="0", WIDTH="4", NOISES="0.2", NOISE_ELRS="1e-4,1e-2", EPOCH="5", FT_EPOCHS="3",
               LOW_TO="2e-4", HIGH_TO="1e-4", LRS="0.1,1", LRS_SI="1,10", CONV_WIDTH="2",
               CONV_COMPILE="")  # Section 6's ResNets eager: compiling takes minutes (tested apart)
    done = subprocess.run(["bash", str(root / "analyses" / "run_all.sh")], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "[done" in done.stdout
    names = ("fig1_regimes", "fig3_sharpness", "fig4_equal_ess", "fig5_finetune", "fig6_transitions",
             "appendix_g_double_descent", "fig7_standard")
    for name in names + ("appendix_m_random_walk",):
        payload = json.load(open(out / f"{name}.json"))
        assert isinstance(payload["claims"], list), name  # toy runs: most claims undetermined
        if payload.get("metrics") is not None and name != "fig7_standard":
            assert payload["metrics"] == "checkpoint", name
    for name in names:
        assert isinstance(json.load(open(out / "epoch-means" / f"{name}.json"))["claims"], list), name
    assert json.load(open(out / "epoch-means" / "fig1_regimes.json"))["metrics"] == "epoch"
    assert json.load(open(out / "fig1_regimes.json"))["claims"]  # the regime claims are always stated
    assert (out / "summary.png").stat().st_size > 0
    # the fine-tuning diagnosis: the same fine-tuning run longer, beside its source continued
    done = subprocess.run(["bash", str(root / "analyses" / "diagnose.sh"), "finetune"], env=dict(env, FT_LONG="4"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (recipe / "finetune4").glob("*.h5")) == ["from0.0001-to0.0001.h5",
                                                                         "from0.0001-to2e-4.h5"]
    payload = json.load(open(out / "diagnosis" / "finetune-long" / "fig5_finetune.json"))
    assert all(r["source_continued"] for r in payload["runs"]) and all(r["to"] != r["from"] for r in payload["runs"])
    t = Trajectory(str(recipe / "sweep-seed0" / "elr0.01.h5"))
    assert t.config["augment"] is False  # the official protocol: no augmentation on the sphere
    assert list(stored_checkpoint_metrics(t)["epoch"]) == [0, 1, 2, 3, 4, 5]
    # the label-noise script leaves 0% to the main sweep's seed-0 runs: trained by it, they equal
    # those runs bit for bit
    done = subprocess.run(["bash", str(root / "train" / "label_noise_mnist1d.sh")], env=dict(env, NOISES="0"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for elr in ("0.0001", "0.01"):
        clean, main = (Trajectory(str(recipe / folder / f"elr{elr}.h5")) for folder in ("noise0", "sweep-seed0"))
        assert clean.config["label_noise"] == 0
        for a, b in ((clean.metrics, main.metrics), (stored_checkpoint_metrics(clean), stored_checkpoint_metrics(main))):
            assert a.keys() == b.keys()
            for key in a:
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key]), equal_nan=True), (elr, key)
