"""Dashboard mirrors: what TensorBoard and the CSV hold equals the HDF5 trajectory,
while training, in a sweep and after the fact."""
import csv
import os

import numpy as np
import pytest

from landscape import train
from landscape.sweep import sweep
from landscape.trajectory import Trajectory


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(os.path.join(folder, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: np.array([e.value for e in acc.Scalars(tag)]) for tag in acc.Tags()["scalars"]}, acc


def csv_columns(folder):
    with open(os.path.join(folder, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def check(t: Trajectory, folder: str):
    scalars, _ = tensorboard_scalars(folder)
    table = csv_columns(folder)
    m = t.metrics
    np.testing.assert_array_equal(table["epoch"], m["epoch"])
    for key, tag in (("train_loss", "train/loss"), ("test_accuracy", "test/accuracy"),
                     ("effective_grad_norm", "effective_grad_norm"), ("elr", "elr")):
        np.testing.assert_allclose(scalars[tag], m[key], rtol=1e-6)          # TensorBoard stores float32
        np.testing.assert_array_equal(table[tag], m[key])                    # the CSV, every digit
    name = t.group_names[0]
    np.testing.assert_allclose(scalars[f"groups/{name}/elr"], t.group_metrics["elr"][:, 0], rtol=1e-6)
    # the checkpoint metrics (the paper's protocol, on by default) beside them
    for key, tag in () if not t.checkpoint_metrics else (("train_loss", "checkpoint/train/loss"), ("effective_grad_norm", "checkpoint/effective_grad_norm")):
        np.testing.assert_allclose(scalars[tag], t.checkpoint_metrics[key], rtol=1e-6)
        np.testing.assert_array_equal(table[tag], t.checkpoint_metrics[key])


def test_training_mirrors_equal_the_trajectory(tmp_path, tiny):
    t = train(out=str(tmp_path / "t.h5"), progress=False, log="csv,tensorboard",
              **dict(tiny, checkpoint_metrics=True))
    assert t.checkpoint_metrics
    check(t, str(tmp_path / "t.logs"))
    _, acc = tensorboard_scalars(str(tmp_path / "t.logs"))
    assert "figures/loss" in acc.Tags()["images"]  # the run's loss curves, drawn at its end


def test_a_resumed_run_mirrors_each_epoch_once(tmp_path, tiny):
    def stop(epoch, step, model):
        if epoch == 2 and step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(out=str(tmp_path / "t.h5"), progress=False, log="csv", on_step=stop, **tiny)
    t = train(out=str(tmp_path / "t.h5"), resume=True, progress=False, log="csv")
    np.testing.assert_array_equal(csv_columns(str(tmp_path / "t.logs"))["epoch"], [1, 2, 3])
    np.testing.assert_array_equal(csv_columns(str(tmp_path / "t.logs"))["train/loss"], t.metrics["train_loss"])


@pytest.mark.slow
def test_sweep_and_after_the_fact_export(tmp_path, tiny, cli):
    cfg = {k: v for k, v in tiny.items() if k != "elr"}
    sweep([1e-3, 1e-2], str(tmp_path / "sw"), strategy="processes", workers=2, progress=False,
          log=["csv", "tensorboard"], log_dir=str(tmp_path / "tb"), **cfg)
    for e in ("0.001", "0.01"):
        check(Trajectory(str(tmp_path / "sw" / f"elr{e}.h5")), str(tmp_path / "tb" / f"elr{e}"))
    code, out, err = cli(["export", "--to", "csv,tensorboard", str(tmp_path / "sw" / "elr0.01.h5"),
                          "--log-dir", str(tmp_path / "after")])
    assert code == 0, err
    check(Trajectory(str(tmp_path / "sw" / "elr0.01.h5")), str(tmp_path / "after" / "elr0.01"))
    _, acc = tensorboard_scalars(str(tmp_path / "after" / "elr0.01"))
    code, _, err = cli(["train", "--log", "mlflow", "-o", str(tmp_path / "x.h5")])
    assert code == 2 and "--log mlflow" in err and not (tmp_path / "x.h5").exists()


def wandb_history(folder):
    """The per-step rows of a W&B offline run, read from its own log file: LevelDB-style records
    of wandb's protobuf ``Record`` (the format its sync command uploads)."""
    import glob
    import json
    import struct
    from wandb.proto import wandb_internal_pb2
    path = glob.glob(os.path.join(folder, "wandb", "offline-run-*", "run-*.wandb"))[0]
    data = open(path, "rb").read()
    pos, block, buf, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk, pos = data[pos:pos + length], pos + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            chunks.append(buf + chunk)
    rows = []
    for c in chunks:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(c)
        if rec.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return rows


@pytest.mark.slow
def test_wandb_offline_run_holds_the_same_numbers(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    t = train(out=str(tmp_path / "t.h5"), progress=False, log="wandb", **tiny)
    rows = wandb_history(str(tmp_path / "t.logs"))
    assert [r["epoch"] for r in rows] == list(t.metrics["epoch"])
    np.testing.assert_array_equal([r["train/loss"] for r in rows], t.metrics["train_loss"])
    np.testing.assert_array_equal([r["effective_grad_norm"] for r in rows], t.metrics["effective_grad_norm"])


def test_analyses_log_to_the_runs_dashboards(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "t.h5"), progress=False, **tiny)
    code, out, err = cli(["sharpness", t.path, "--checkpoints", "all", "--probes", "3", "--eigs", "1", "--density",
                          "--density-steps", "5", "--batches", "1", "-q", "--log", "csv,tensorboard"])
    assert code == 0, err
    from landscape.trajectory import read_analysis
    stored, _ = read_analysis(t.path, "sharpness")
    scalars, acc = tensorboard_scalars(str(tmp_path / "t.logs"))
    np.testing.assert_allclose(scalars["sharpness/trace_effective"], stored["trace_effective"], rtol=1e-6)
    np.testing.assert_allclose(scalars["sharpness/lambda_max_effective"], stored["eigenvalues_effective"][:, 0], rtol=1e-6)
    assert "sharpness/eigenvalue_density" in acc.Tags()["histograms"]
    with open(tmp_path / "t.logs" / "sharpness.csv") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_array_equal([float(r["trace_effective"]) for r in rows], stored["trace_effective"])
