"""Library errors speak in library terms (the Python argument, a ValueError); the command line
shows the same problem under its flag, on one line."""
import ast
from pathlib import Path

import pytest

import landscape
from landscape import ArgumentError, TrainConfig
from landscape.sharpness import SharpnessSettings

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"


def test_a_bad_setting_is_a_value_error_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"^batch_size must be at least 2") as e:
        landscape.train(out=str(tmp_path / "t.h5"), batch_size=1)
    assert isinstance(e.value, ArgumentError) and e.value.arguments == ("batch_size",)
    with pytest.raises(ArgumentError, match=r"^elr must be a positive number, got -1"):
        TrainConfig(elr=-1).validate()
    with pytest.raises(ArgumentError, match=r"^probes must be a positive integer"):
        SharpnessSettings(probes=0).validate()
    assert not (tmp_path / "t.h5").exists()


def test_the_command_line_shows_the_flags(cli, tmp_path):
    code, _, err = cli(["train", "--batch-size", "1", "-o", str(tmp_path / "t.h5")])
    assert code == 2 and err.strip().splitlines() == [
        "landscape train: error: --batch-size must be at least 2 (train-mode BatchNorm)"]
    code, _, err = cli(["train", "--precision", "bf16", "--dtype", "float64", "-o", str(tmp_path / "t.h5")])
    assert code == 2 and "--precision bf16 autocasts a float32 model: drop --dtype float64" in err
    code, _, err = cli(["sweep", "--elrs", "0.1,0.2", "--strategy", "vectorised", "--channels-last",
                        "-o", str(tmp_path / "sw")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--channels-last: vmap folds" in err and "use --strategy streams" in err


def test_no_library_message_names_a_flag():
    """Every string in a ``raise`` of the library (below ``landscape/cli``) is free of '--flag'."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for const in ast.walk(node.exc):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str) and "--" in const.value \
                            and any(ch.isalpha() for ch in const.value.split("--", 1)[1][:1]):
                        offenders.append(f"{path.name}:{node.lineno}: {const.value!r}")
    assert not offenders, offenders
