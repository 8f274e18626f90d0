"""One CLI grammar: no abbreviations, a default in every option's help, one-line
errors, analyses free of argparse."""
import argparse
import ast
from pathlib import Path

import pytest

from landscape import train
from landscape.cli import build_parser
from landscape.cli.common import HelpFormatter

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_of_every_command_has_help_with_its_default():
    missing = []
    for name, p in subparsers().items():
        formatter = p.formatter_class(prog=p.prog)
        for action in p._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action) if action.help else ""
            if "default" not in text or text.count("(default") > 1:
                missing.append(f"{name} {action.option_strings[-1]}: {text!r}")
        assert "(default: None)" not in p.format_help(), name
    assert not missing, missing
    assert issubclass(subparsers()["train"].formatter_class, HelpFormatter)


@pytest.mark.parametrize("argv", [
    ["sweep", "--elrs", "1e-3", "-o", "x", "--elr", "0.1"],   # --elr must not mean --elrs
    ["train", "--epoch", "3"],
    ["sharpness", "t.h5", "--probe", "3"],
    ["regimes", "runs", "--trend", "0.1"],
])
def test_abbreviated_options_are_refused(argv, cli):
    code, _, err = cli(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unrecognized arguments" in err


def test_version(capsys):
    from landscape.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    import landscape
    assert landscape.__version__ == "0.2.0"  # raised with the trajectory format's version 2
    assert e.value.code == 0 and f"landscape {landscape.__version__} (torch " in capsys.readouterr().out


@pytest.mark.slow
def test_user_errors_are_one_line(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "a.h5"), progress=False, **tiny)
    (tmp_path / "folder").mkdir()
    cases = [
        (["train", "-o", str(tmp_path / "folder"), "--overwrite", "--epochs", "1"], "is a folder"),
        (["evaluate", t.path, "--device", "cuda:0"], "CUDA is not available on this machine; use --device cpu"),
        (["sharpness", t.path, "--device", "cuda"], "CUDA is not available on this machine; use --device cpu"),
        (["interpolate", f"{t.path}@1", f"{t.path}@3", "--device", "cuda"], "CUDA is not available on this machine; use --device cpu"),
        (["evaluate", t.path, "--device", "tpu"], "unknown --device"),
        (["show", f"{t.path}@99"], "has no epoch 99"),
        (["show", str(tmp_path / "folder")], "no trajectories"),
        (["regimes", t.path, "--json", str(tmp_path / "folder")], "is a folder"),
        (["sharpness", t.path, "--checkpoints", "1", "--epochs", "1"], "--checkpoints only"),
    ]
    import torch
    if torch.cuda.is_available():
        cases = [c for c in cases if "CUDA" not in c[1]]
    for argv, words in cases:
        code, _, err = cli(argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert words in err, (argv, err)


def test_show_prints_resolved_settings_a_folder_and_an_epoch(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "runs" / "a.h5"), progress=False, **dict(tiny, width=None))
    code, out, _ = cli(["show", t.path])
    assert code == 0 and "width 32" in out and "device cpu" in out and "torch " in out
    code, out, _ = cli(["show", str(tmp_path / "runs")])
    assert code == 0 and "a.h5" in out and "1 trajectories" in out
    code, out, _ = cli(["show", f"{t.path}@2"])
    assert code == 0 and "checkpoint at epoch 2: stored" in out


def test_deprecated_epochs_alias_still_selects_checkpoints(tmp_path, tiny, cli):
    t = train(out=str(tmp_path / "a.h5"), progress=False, **tiny)
    code, out, err = cli(["evaluate", t.path, "--epochs", "3", "-q"])
    assert code == 0 and "deprecated" in err and "--checkpoints" in err


def test_analysis_modules_hold_no_argparse_and_do_not_import_the_cli():
    for path in (p for p in PACKAGE.glob("*.py") if p.name != "__main__.py"):  # python -m landscape
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != "argparse" for a in node.names), path.name
            if isinstance(node, ast.ImportFrom):
                assert node.module != "argparse", path.name
                assert not (node.level and (node.module or "").startswith("cli")), path.name
    for path in (PACKAGE / "plots").glob("*.py"):
        assert "argparse" not in path.read_text() and "from ..cli" not in path.read_text(), path.name
