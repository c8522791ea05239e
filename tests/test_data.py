"""Datasets load as tensors with the right shapes; samplers draw what they promise."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from conftest import make_cfg
from fake_datasets import write_cifar, write_idx, write_mnist
from sgdexp.data import load_dataset, make_sampler
from sgdexp.errors import ConfigError

CPU = torch.device("cpu")


def load(overrides):
    return load_dataset(make_cfg(overrides).dataset, CPU)


def test_digits_fixed_split_standardised():
    a, b = load([]), load([])
    assert a.input_shape == (1, 8, 8) and a.num_outputs == 10 and a.task == "classification"
    assert a.n_train + len(a.x_test) == 1797 and len(a.x_test) == 360
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-3


def test_subset_takes_first_samples_and_rejects_too_many():
    full, sub = load([]), load(["dataset.subset=100"])
    assert sub.n_train == 100 and sub.y_train.tolist() == full.y_train[:100].tolist()
    with pytest.raises(ConfigError, match="dataset.subset=5000"):
        load(["dataset.subset=5000"])


def test_synthetic_datasets():
    gm = load(["dataset=gaussian_mixture", "dataset.n_train=64", "dataset.dim=5", "dataset.classes=3"])
    assert gm.input_shape == (5,) and gm.num_outputs == 3 and set(gm.y_train.tolist()) <= {0, 1, 2}
    ts = load(["dataset=teacher_student", "dataset.n_train=64", "dataset.dim=7"])
    assert ts.input_shape == (7,) and ts.task == "regression" and ts.y_train.shape == (64, 1)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(tmp_path, name, folder):
    write_mnist(tmp_path, folder=folder, n_train=60, n_test=20)
    data = load([f"dataset={name}", f"dataset.root={tmp_path}"])
    assert data.input_shape == (1, 28, 28) and data.n_train == 60 and len(data.x_test) == 20
    assert data.num_outputs == 10 and data.y_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_from_python_pickles(tmp_path, name, classes):
    write_cifar(tmp_path, name, n_per_file=20)
    data = load([f"dataset={name}", f"dataset.root={tmp_path}"])
    n_train = 100 if name == "cifar10" else 20
    assert data.input_shape == (3, 32, 32) and data.n_train == n_train and data.num_outputs == classes


@pytest.mark.parametrize("name,expected", [
    ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
    ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/train"),
])
def test_missing_files_named_with_download_hint(tmp_path, name, expected):
    with pytest.raises(ConfigError) as err:
        load([f"dataset={name}", f"dataset.root={tmp_path}"])
    assert expected in str(err.value) and "dataset.download=true" in str(err.value)


def test_damaged_mnist_files_name_the_folder_and_stay(tmp_path):
    # torchvision's reader asserts on a foreign file: the error blamed dataset.download, never set
    write_mnist(tmp_path)
    damaged = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damaged.write_bytes(b"not an idx file")
    with pytest.raises(ConfigError) as err:
        load(["dataset=mnist", f"dataset.root={tmp_path}"])
    assert str(err.value).startswith("dataset.root=") and "MNIST/raw failed" in str(err.value)
    assert "download" not in str(err.value) and damaged.read_bytes() == b"not an idx file"


@pytest.mark.parametrize("damage,expected", [
    ("label_count", "its training files hold 50 labels for 60 images"),
    ("label_value", "its test files hold labels in 0..12, where mnist has classes 0..9"),
    ("test_shape", "its test files hold images of shape (1, 20, 20), where the training images are (1, 28, 28)"),
])
def test_mnist_files_that_do_not_fit_together_are_one_line_at_load(tmp_path, damage, expected):
    # each read, then failed steps later inside the loss or the model with a traceback
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    if damage == "label_count":
        write_idx(raw / "train-labels-idx1-ubyte", np.arange(50) % 10)
    elif damage == "label_value":
        write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(20) % 13)
    else:
        write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((20, 20, 20)))
    with pytest.raises(ConfigError) as err:
        load(["dataset=mnist", f"dataset.root={tmp_path}"])
    assert str(err.value) == f"dataset.root='{raw}' is not allowed: mnist files that fit together: {expected}"


@pytest.mark.parametrize("data,expected", [
    (None, "data_batch_1 has no data"),
    (np.zeros((20, 3000), dtype=np.uint8), "data_batch_1 has data of shape (20, 3000) and dtype uint8"),
    (np.zeros((20, 3072)), "data_batch_1 has data of shape (20, 3072) and dtype float64"),  # was cast to 0s
])
def test_a_cifar_batch_without_uint8_rows_of_3072_is_one_line(tmp_path, data, expected):
    write_cifar(tmp_path, n_per_file=20)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch = {b"labels": list(range(10)) * 2, **({} if data is None else {b"data": data})}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ConfigError) as err:
        load(["dataset=cifar10", f"dataset.root={tmp_path}"])
    assert str(err.value).endswith(expected) and "N x 3072 uint8" in str(err.value)


def test_a_cifar_batch_written_with_str_keys_loads(tmp_path):
    write_cifar(tmp_path, n_per_file=20)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    rows = np.arange(20 * 3072, dtype=np.int64).reshape(20, 3072).astype(np.uint8)
    path.write_bytes(pickle.dumps({"data": rows, "labels": [3] * 20}, protocol=2))
    data = load(["dataset=cifar10", f"dataset.root={tmp_path}"])
    assert len(data.x_test) == 20 and data.y_test.tolist() == [3] * 20


@pytest.mark.parametrize("fraction", [0.0001, 0.999])
def test_a_split_without_every_class_on_both_sides_is_one_line(fraction):
    # sklearn's stratified split raised a 68-line ValueError
    with pytest.raises(ConfigError, match=r"dataset.test_fraction=.* between 0.0056 and 0.9944 for digits' 1797"):
        load([f"dataset.test_fraction={fraction}"])
    assert load(["dataset.test_fraction=0.0056"]).n_train == 1797 - 11


def test_a_synthetic_set_beyond_memory_is_one_line():
    with pytest.raises(ConfigError, match=r"dataset='gaussian_mixture' is not allowed: a dataset that fits in memory"):
        load(["dataset=gaussian_mixture", "dataset.n_train=10000000", "dataset.dim=10000000"])


def test_epoch_sampler_covers_every_sample_once_per_epoch():
    n, b = 96, 8
    sampler = make_sampler("epoch", n, b, seed=1, device=CPU)
    epochs = [torch.cat([sampler.next() for _ in range(n // b)]) for _ in range(3)]
    for idx in epochs:
        assert sorted(idx.tolist()) == list(range(n))
    assert not torch.equal(epochs[0], epochs[1])  # a fresh permutation each epoch


def test_epoch_sampler_drops_the_remainder():
    sampler = make_sampler("epoch", 10, 3, seed=0, device=CPU)
    idx = torch.cat([sampler.next() for _ in range(3)])
    assert len(set(idx.tolist())) == 9 and sampler.epoch == 1
    sampler.next()
    assert sampler.epoch == 2


def test_replacement_sampler_is_uniform_iid():
    n, b, draws = 10, 5, 4000
    sampler = make_sampler("replacement", n, b, seed=0, device=CPU)
    counts = torch.bincount(torch.cat([sampler.next() for _ in range(draws)]), minlength=n).double()
    expected = draws * b / n
    # chi-square with 9 dof: its 99.9% quantile is 27.9
    assert float(((counts - expected) ** 2 / expected).sum()) < 27.9


@pytest.mark.parametrize("kind", ["epoch", "replacement"])
def test_sampler_seeded_and_resumable(kind):
    a, b = make_sampler(kind, 50, 7, seed=3, device=CPU), make_sampler(kind, 50, 7, seed=3, device=CPU)
    for _ in range(9):
        assert torch.equal(a.next(), b.next())
    state = a.state_dict()
    after = [a.next() for _ in range(10)]
    c = make_sampler(kind, 50, 7, seed=99, device=CPU)
    c.load_state_dict(state)
    assert all(torch.equal(x, c.next()) for x in after)
