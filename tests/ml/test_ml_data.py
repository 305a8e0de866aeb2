"""ml.data: bundled digits, local MNIST, user .npz/.csv, stratified split, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    UnknownDatasetError,
    load_dataset,
    stratified_split,
)


def test_digits_shapes_scaling_and_split(digits):
    assert digits.name == "digits"
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert digits.x_train.shape == (len(digits.y_train), 8, 8, 1)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert 0.19 < len(digits.y_test) / 1797 < 0.21
    for x in (digits.x_train, digits.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert digits.x_train.max() == 1.0
    # stratified: every class has about the same share in train and test
    train_p = np.bincount(digits.y_train, minlength=10) / len(digits.y_train)
    test_p = np.bincount(digits.y_test, minlength=10) / len(digits.y_test)
    assert np.abs(train_p - test_p).max() < 0.01


def test_digits_split_is_seeded():
    a, b, c = load_dataset(seed=3), load_dataset(seed=3), load_dataset(seed=4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_stratified_split_disjoint_complete_proportional():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, test = stratified_split(labels, 0.25, seed=1)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    assert np.bincount(labels[test]).tolist() == [2, 5, 8, 10]  # round(0.25 * n_c); 2.5 rounds to even
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_stratified_split_keeps_a_training_sample_of_every_class():
    labels = np.array([0, 1, 1, 1])
    train, test = stratified_split(labels, 0.9, seed=0)
    assert set(labels[train]) == {0, 1}


def test_unknown_dataset_lists_choices():
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("cifar")
    for choice in DATASETS:
        assert choice in str(err.value)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.2"])
def test_bad_test_fraction(fraction):
    with pytest.raises(DatasetError, match="test_fraction"):
        load_dataset("digits", test_fraction=fraction)


def test_mnist_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "~/.keras/datasets/mnist.npz" in msg
    assert str(tmp_path / ".keras" / "datasets" / "mnist.npz") in msg
    assert "never downloads" in msg
    assert not (tmp_path / ".keras").exists()  # nothing was fetched or created
    with pytest.raises(DatasetNotFoundError, match="elsewhere.npz"):
        load_dataset("mnist", path=tmp_path / "elsewhere.npz")
    assert isinstance(err.value, FileNotFoundError)  # also catchable as the builtin


def _fake_mnist(path: Path, n_train=30, n_test=10, seed=0) -> None:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train) % 10,
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=np.arange(n_test) % 10,
    )


def test_mnist_from_local_npz(tmp_path):
    _fake_mnist(tmp_path / "mnist.npz")
    ds = load_dataset("mnist", path=tmp_path / "mnist.npz")
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    raw = np.load(tmp_path / "mnist.npz")
    assert np.allclose(ds.x_train[..., 0], raw["x_train"] / 255.0)
    assert np.array_equal(ds.y_test, raw["y_test"])


def test_mnist_with_missing_arrays(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 28, 28)))
    with pytest.raises(DatasetError, match="missing arrays"):
        load_dataset("mnist", path=tmp_path / "m.npz")


def test_not_an_npz(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset("mnist", path=tmp_path / "m.npz")


def test_user_npz_tabular_with_label_remapping(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 50, (60, 5))
    y = np.where(np.arange(60) % 3 == 0, 7, 3)  # labels {3, 7} -> class indices {0, 1}
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ds = load_dataset("npz", path=tmp_path / "mine.npz", test_fraction=0.25, seed=2)
    assert ds.input_shape == (5,) and ds.num_classes == 2 and ds.classes == (3, 7)
    assert set(np.unique(ds.y_train)) == {0, 1}
    assert len(ds.y_train) + len(ds.y_test) == 60
    # per-feature min-max from the training part: each feature spans exactly [0, 1] there
    assert np.allclose(ds.x_train.min(axis=0), 0.0) and np.allclose(ds.x_train.max(axis=0), 1.0)
    assert ds.x_test.min() >= 0.0 and ds.x_test.max() <= 1.0


def test_user_npz_images_get_a_channel_axis(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (20, 6, 6)).astype(np.uint8)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(20) % 2)
    ds = load_dataset(str(tmp_path / "img.npz"))  # a path as the name works too
    assert ds.input_shape == (6, 6, 1) and ds.x_train.shape[1:] == (6, 6, 1)


def test_user_npz_rejects_nan(tmp_path):
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(10) % 2)
    with pytest.raises(DatasetError, match="NaN"):
        load_dataset("npz", path=tmp_path / "nan.npz")


def test_user_npz_label_count_mismatch(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.ones((10, 3)), y=np.arange(9) % 2)
    with pytest.raises(DatasetError, match="labels must be a vector of 10"):
        load_dataset("npz", path=tmp_path / "bad.npz")


def _write_csv(path: Path, label_column="label", labels=None) -> None:
    labels = labels or ["cat", "dog"]
    lines = [f"f1,f2,{label_column},f3"]
    for i in range(40):
        lines.append(f"{i},{2 * i % 7},{labels[i % 2]},{(i * 13) % 5}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_string_labels(tmp_path):
    _write_csv(tmp_path / "pets.csv")
    ds = load_dataset("csv", path=tmp_path / "pets.csv", seed=1)
    assert ds.name == "pets"
    assert ds.input_shape == (3,) and ds.num_classes == 2 and ds.classes == ("cat", "dog")
    assert ds.x_train.dtype == np.float32 and ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    assert np.bincount(ds.y_test).tolist() == [4, 4]


def test_csv_custom_label_column_and_missing_column(tmp_path):
    _write_csv(tmp_path / "d.csv", label_column="target")
    ds = load_dataset(str(tmp_path / "d.csv"), label_column="target")
    assert ds.num_classes == 2
    with pytest.raises(DatasetError) as err:
        load_dataset("csv", path=tmp_path / "d.csv")
    assert "no label column 'label'" in str(err.value) and "target" in str(err.value)


def test_csv_non_numeric_feature(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,x,0\n2,y,1\n3,z,0\n4,w,1\n")
    with pytest.raises(DatasetError, match=r"not numeric: \['b'\]"):
        load_dataset("csv", path=tmp_path / "t.csv")


def test_missing_user_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nothing is downloaded"):
        load_dataset("csv", path=tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="needs path"):
        load_dataset("npz")
