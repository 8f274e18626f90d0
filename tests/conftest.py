import os

import pytest
import torch

# two threads, or the cores' share of one of pytest-xdist's workers (-n N: N tests at once)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A session-wide dataset cache: MNIST-1D is generated into it once."""
    root = tmp_path_factory.mktemp("data")
    from landscape.data import load_dataset
    load_dataset("mnist1d", str(root))
    return str(root)


@pytest.fixture
def tiny(data_root):
    """A tiny, fast training configuration (4 steps per epoch)."""
    return dict(model="convnet", width=4, dataset="mnist1d", data_root=data_root,
                train_subset=256, batch_size=64, epochs=3, elr=1e-2, device="cpu",
                save_every=1, checkpoint_metrics=False)  # the default-on measurement: tests that ask for it


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit status, stdout, stderr)."""
    from landscape.cli import main

    def run(argv):
        capsys.readouterr()  # only this command's output
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def as_flags():
    """A configuration dict as `landscape train` flags (booleans as --name / --no-name)."""
    def flags(cfg: dict) -> list:
        out = []
        for k, v in cfg.items():
            name = k.replace("_", "-")
            out += [f"--{name}" if v else f"--no-{name}"] if isinstance(v, bool) else [f"--{name}", str(v)]
        return out
    return flags


@pytest.fixture
def interrupted_and_resumed():
    """Train ``out`` with ``settings``, stopped by a KeyboardInterrupt at (``epoch``, ``step``),
    then resumed to the end: returns the resumed trajectory."""
    from landscape import train

    def run(out: str, settings: dict, epoch: int, step: int):
        def stop(e, s, model):
            if (e, s) == (epoch, step):
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            train(out=out, progress=False, on_step=stop, **settings)
        return train(out=out, resume=True, progress=False)
    return run
