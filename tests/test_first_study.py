"""What a newcomer meets first: no command writes over its own input, outputs are what their
names say, set-up commands need no more than they use, data is found from any folder."""
import os
import subprocess
import sys

import pytest

from landscape import Trajectory, train


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    path = str(tmp_path_factory.mktemp("first") / "t.h5")
    train(out=path, progress=False, model="convnet", width=4, dataset="mnist1d", data_root=data_root,
          train_subset=256, batch_size=64, epochs=2, device="cpu", save_every=1)
    return path


@pytest.mark.parametrize("argv", [
    ["export", "{t}", "-o", "{t}", "--overwrite"],
    ["export", "{t}@1", "-o", "{t}", "--overwrite"],
    ["show", "{t}", "--json", "{t}"],
    ["interpolate", "{t}@0", "{t}@2", "--points", "3", "-q", "--plot", "{t}"],
    ["evaluate", "{t}", "-q", "--json", "{t}"],
    ["repair", "{t}", "-o", "{t}", "--overwrite"],
    ["train", "--init", "{t}@1", "-o", "{t}", "--overwrite", "--epochs", "1", "-q"],
])
def test_no_command_writes_over_its_input(run, cli, argv):
    before = open(run, "rb").read()
    code, _, err = cli([a.format(t=run) for a in argv])
    assert code == 2 and "would destroy the input" in err and len(err.strip().splitlines()) == 1, err
    assert open(run, "rb").read() == before
    assert Trajectory(run).epochs_complete == 2


def test_report_writes_what_its_name_says(run, cli, tmp_path):
    code, _, err = cli(["report", os.path.dirname(run), "-o", str(tmp_path / "r.pdf")])
    assert code == 2 and "name it" in err and str(tmp_path / "r.html") in err
    assert not (tmp_path / "r.pdf").exists()


def test_sweep_print_config_needs_no_output_folder(cli):
    code, out, err = cli(["sweep", "--elrs", "1e-3,1e-2", "--print-config"])
    assert code == 0, err
    assert 'elrs = "1e-3,1e-2"' in out or "elrs" in out
    code, _, err = cli(["sweep", "--elrs", "1e-3,1e-2"])
    assert code == 2 and "-o DIR" in err


@pytest.mark.slow
def test_the_data_folder_is_stored_absolute_and_analyses_from_elsewhere_use_it(tmp_path, data_root):
    os.symlink(data_root, tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "landscape", "train", "--dataset", "mnist1d", "--data-root",
                           "data", "--train-subset", "256", "--batch-size", "64", "--width", "4", "--epochs",
                           "1", "--device", "cpu", "-q", "-o", "t.h5"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stored = Trajectory(str(tmp_path / "t.h5")).config["data_root"]
    assert os.path.isabs(stored) and os.path.samefile(stored, data_root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "landscape", "evaluate", str(tmp_path / "t.h5"), "-q"],
                          cwd=elsewhere, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.listdir(elsewhere) == []  # no dataset generated into ./data here


def test_interpolating_a_point_with_itself_is_refused_at_once(run, cli):
    code, _, err = cli(["interpolate", f"{run}@1", f"{run}@1", "--points", "3", "-q"])
    assert code == 2 and "are the same point" in err


@pytest.mark.slow
def test_sharpness_progress_counts_every_phase_and_ends_at_its_true_total(run, tmp_path):
    """Off a terminal, progress is status lines: they name each phase (trace, top eigenvalues,
    density), the estimate is corrected after each checkpoint, and the last line is 100% of
    the products really done (the trace probes, the Lanczos products, the density's steps)."""
    done = subprocess.run([sys.executable, "-m", "landscape", "sharpness", run, "--checkpoints", "all",
                           "--probes", "3", "--batches", "1", "--density", "--density-steps", "6", "--json",
                           str(tmp_path / "s.json")],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    import json
    res = json.load(open(tmp_path / "s.json"))
    import re
    last = done.stderr.strip().splitlines()[-1]
    total = re.search(r"(\d+)/(\d+) products \(100%\)", last)
    assert total and total.group(1) == total.group(2), done.stderr
    # the probes and Lanczos products of every checkpoint, and at most 6 density steps each
    counted = sum(3 + p for p in res["eigenvalue_products"])
    assert counted < int(total.group(1)) <= counted + 6 * len(res["eigenvalue_products"])
    percents = [int(p) for p in re.findall(r"\((\d+)%\)", done.stderr)]
    assert max(percents) == 100 and "epoch 2: eigenvalue density" in last  # the phase is named


def test_sharpness_help_states_the_cost(cli):
    from landscape.cli import build_parser
    text = build_parser()._subparsers._group_actions[0].choices["sharpness"].format_help()
    assert "Cost:" in text and "products" in text


def test_typos_get_the_option_meant(cli):
    for argv, words in ((["train", "--elsr", "1e-3"], "did you mean --elr?"),
                        (["sharpness", "x.h5", "--prbes", "3"], "did you mean --probes?"),
                        (["trian"], "did you mean 'train'?")):
        code, _, err = cli(argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_analyses_take_the_device_train_takes(cli):
    from landscape.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("sharpness", "evaluate", "interpolate", "surface", "train"):
        device = next(a for a in commands[name]._actions if "--device" in a.option_strings)
        assert device.default == "auto" or "(default auto)" in device.help, (name, device.default)


@pytest.mark.slow
def test_quiet_silences_the_dashboards_too(tmp_path, data_root):
    pytest.importorskip("wandb")
    done = subprocess.run([sys.executable, "-m", "landscape", "train", "--dataset", "mnist1d", "--data-root",
                           data_root, "--train-subset", "256", "--batch-size", "64", "--width", "4", "--epochs",
                           "1", "--device", "cpu", "-q", "-o", str(tmp_path / "t.h5"), "--log", "wandb"],
                          capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="offline"))
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr
