"""Config files: TOML in, the resolved settings out, flags overriding the file."""
import tomllib

import numpy as np
import pytest

from landscape import train
from landscape.trajectory import Trajectory


def flags(tiny):
    return ["--model", "mlp", "--width", "16", "--data-root", tiny["data_root"], "--train-subset", "256",
            "--batch-size", "64", "--epochs", "2", "--device", "cpu", "--dtype", "float64"]


def test_print_config_then_config_gives_a_bit_identical_trajectory(tmp_path, tiny, cli):
    code, toml_text, _ = cli(["train", "--elr", "3e-3", "--momentum", "0", "--print-config"] + flags(tiny))
    assert code == 0 and 'model = "mlp"' in toml_text and "elr = 0.003" in toml_text
    assert not list(tmp_path.glob("*.h5"))  # printing trains nothing
    (tmp_path / "run.toml").write_text(toml_text)
    assert cli(["train", "--config", str(tmp_path / "run.toml"), "-o", str(tmp_path / "a.h5"), "-q"])[0] == 0
    assert cli(["train", "--elr", "3e-3", "-o", str(tmp_path / "b.h5"), "-q"] + flags(tiny))[0] == 0
    a, b = Trajectory(str(tmp_path / "a.h5")), Trajectory(str(tmp_path / "b.h5"))
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    for k, v in a.state_dict().items():
        assert (v == b.state_dict()[k]).all(), k
    # a flag overrides the file
    assert cli(["train", "--config", str(tmp_path / "run.toml"), "--elr", "1e-2", "-o", str(tmp_path / "c.h5"), "-q"])[0] == 0
    assert Trajectory(str(tmp_path / "c.h5")).config["elr"] == 1e-2


@pytest.mark.slow
def test_a_sweep_takes_a_config_and_its_grid(tmp_path, tiny, cli):
    (tmp_path / "sweep.toml").write_text(
        f'model = "mlp"\nwidth = 16\ndata-root = "{tiny["data_root"]}"\ntrain-subset = 256\n'
        'epochs = 1\ndevice = "cpu"\nelrs = "1e-3,1e-2"\n')
    code, out, err = cli(["sweep", "--config", str(tmp_path / "sweep.toml"), "-o", str(tmp_path / "sw"), "-q"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sw").glob("*.h5")) == ["elr0.001.h5", "elr0.01.h5"]


def test_bad_config_files_are_one_line_errors(tmp_path, cli):
    (tmp_path / "bad.toml").write_text("elr = 1e-3\nwieght-decay = 1\n")
    (tmp_path / "broken.toml").write_text("elr = \n")
    for argv, words in ((["train", "--config", str(tmp_path / "bad.toml")], "unknown key 'wieght-decay'"),
                        (["train", "--config", str(tmp_path / "broken.toml")], "not valid TOML"),
                        (["train", "--config", str(tmp_path / "none.toml")], "no such file"),
                        (["sweep", "-o", str(tmp_path / "x")], "give the grid")):
        code, _, err = cli(argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("text,words", [
    ('width = 3.5\n', "width must be an integer, got 3.5"),
    ('width = "wide"\n', "width must be an integer, got 'wide'"),
    ('epochs = 2.0\n', "epochs must be an integer, got 2.0"),
    ('device = 0\n', "device must be a string, got 0"),
    ('augment = "yes"\n', "augment must be true or false, got 'yes'"),
])
def test_config_values_of_the_wrong_type_are_refused_not_coerced(tmp_path, cli, text, words):
    (tmp_path / "c.toml").write_text(text)
    code, _, err = cli(["train", "--config", str(tmp_path / "c.toml"), "-o", str(tmp_path / "t.h5")])
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.h5").exists()
    with pytest.raises(ValueError, match=words.split(",")[0]):  # the library says the same
        from landscape.config import TrainConfig
        TrainConfig.from_settings(tomllib.loads(text.replace("-", "_"))).validate()


def test_a_config_that_is_a_folder_or_binary_is_one_line(tmp_path, cli):
    (tmp_path / "garbage.toml").write_bytes(bytes(range(256)) * 4)
    for path, words in ((tmp_path, "is a folder"), (tmp_path / "garbage.toml", "not valid TOML")):
        code, _, err = cli(["train", "--config", str(path), "-o", str(tmp_path / "t.h5")])
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_resume_cannot_shorten_a_run(tmp_path, tiny, cli):
    path = str(tmp_path / "t.h5")
    train(out=path, progress=False, **dict(tiny, epochs=3))
    code, _, err = cli(["train", "--resume", path, "--epochs", "2", "-q"])
    assert code == 2 and "trained to epoch 3" in err and "--epochs 2" in err, err
    assert Trajectory(path).config["epochs"] == 3 and Trajectory(path).epochs_complete == 3
