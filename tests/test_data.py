"""MNIST-1D generator settings in the dataset name (a harder CPU-scale task)."""
import numpy as np
import pytest

from landscape import LandscapeError, load_dataset
from landscape.data import mnist1d_settings


def test_reference_name_is_the_reference_generator(data_root):
    assert mnist1d_settings("mnist1d") == {"samples": 5000, "noise": 1.0}
    d = load_dataset("mnist1d", data_root)
    assert d.x_train.shape == (4000, 1, 40) and d.x_test.shape == (1000, 1, 40)


def test_settings_equal_the_packages_own_generator(tmp_path):
    # independent truth: mnist1d's make_dataset called by hand with the same arguments
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.corr_noise_scale, args.iid_noise_scale = 1000, 0.25 * 3, 0.02 * 3
    state = np.random.get_state()
    ref = make_dataset(args)
    np.random.set_state(state)
    d = load_dataset("mnist1d:samples=1000,noise=3", str(tmp_path))
    assert d.x_train.shape == (800, 1, 40) and d.x_test.shape == (200, 1, 40)
    np.testing.assert_array_equal(d.x_train[:, 0].numpy(), ref["x"].astype(np.float32))
    np.testing.assert_array_equal(d.y_test.numpy(), ref["y_test"])
    # cached under its own name, beside (never over) the reference file
    assert (tmp_path / "mnist1d-samples1000-noise3.npz").exists()
    assert not (tmp_path / "mnist1d.npz").exists()
    again = load_dataset("mnist1d:noise=3,samples=1000", str(tmp_path))
    assert np.array_equal(again.x_train.numpy(), d.x_train.numpy())


@pytest.mark.parametrize("name, words", [("mnist1d:size=10", "not a setting"),
                                         ("mnist1d:samples=ten", "integer"),
                                         ("mnist1d:noise=-1", ">= 0"),
                                         ("mnist1d:samples=50", "at least 100"),
                                         ("mnist2d", "unknown dataset")])
def test_bad_settings_are_one_line_errors(tmp_path, name, words):
    with pytest.raises(LandscapeError, match=words) as e:
        load_dataset(name, str(tmp_path))
    assert "\n" not in str(e.value)


def test_cli_trains_on_a_generated_variant_and_names_the_file_plainly(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["train", "--dataset", "mnist1d:samples=400", "--width", "4", "--epochs", "1",
                          "--batch-size", "64", "--device", "cpu", "-q"])
    assert code == 0, err
    assert (tmp_path / "runs" / "convnet-mnist1d-samples400-elr0.001.h5").exists()
