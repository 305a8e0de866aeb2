"""Datasets for the federation: small, local, deterministic.

Nothing here downloads anything. ``digits`` ships with scikit-learn, MNIST is
read from a Keras-format ``.npz`` that the user puts on disk, and user data
comes from an ``.npz`` (arrays ``x`` and ``y``) or a ``.csv`` with a label
column. Every loader returns the same :class:`Dataset` record with features
scaled to [0, 1] as float32 and labels as int64 class indices 0..K-1.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist", "npz", "csv")
MNIST_DEFAULT_PATH = Path("~/.keras/datasets/mnist.npz")


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says what to change."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset file is not on disk (we never download it)."""


class UnknownDatasetError(DatasetError, KeyError):
    """The dataset name is not one of :data:`DATASETS`."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(eq=False)
class Dataset:
    """A train/test split ready for training: x is (n, *input_shape) float32 in [0, 1]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    classes: tuple = field(default=())  # original label of each class index

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape})"
        )


def load_dataset(
    name: str = "digits",
    *,
    path: str | os.PathLike | None = None,
    label_column: str = "label",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name; a path ending in .npz/.csv may be given as the name.

    ``test_fraction`` and ``seed`` drive the stratified split of datasets that
    have none of their own (digits, npz, csv); MNIST keeps its official split.
    """
    if not isinstance(name, str | os.PathLike):
        raise UnknownDatasetError(f"dataset name must be a string, got {type(name).__name__}")
    name = os.fspath(name)
    if path is None and name.lower().endswith((".npz", ".csv")):
        name, path = name.lower().rsplit(".", 1)[1], name
    key = name.lower()
    if key not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
            "(npz and csv need path=...)"
        )
    if key == "mnist":
        return _load_mnist(path)
    if key != "digits" and path is None:
        raise DatasetError(f"dataset {key!r} needs path= pointing to your .{key} file")
    _check_fraction(test_fraction)
    if key == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = bunch.data.reshape(-1, 8, 8, 1).astype(np.float64) / 16.0
        return _split("digits", x, bunch.target, test_fraction, seed, scale=False)
    file = _existing_file(path, key)
    if key == "npz":
        x, y = _read_npz(file)
    else:
        x, y = _read_csv(file, label_column)
    return _split(file.stem, x, y, test_fraction, seed, scale=True)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) index arrays; each class is split in the same proportion.

    Implemented here (not sklearn) so the split is fixed by the seed alone,
    whatever the scikit-learn version. Every class keeps at least one
    training sample.
    """
    _check_fraction(test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise DatasetError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    labels = np.asarray(labels)
    rng = np.random.RandomState(int(seed))
    train, test = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_test = min(int(round(test_fraction * len(idx))), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# --------------------------------------------------------------------------- helpers


def _check_fraction(test_fraction: float) -> None:
    if not (isinstance(test_fraction, numbers.Real) and 0.0 < test_fraction < 1.0):
        raise DatasetError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")


def _existing_file(path: str | os.PathLike, kind: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetNotFoundError(
            f"{kind} file not found: {file.resolve()} (check the path; nothing is downloaded)"
        )
    return file


def _load_mnist(path: str | os.PathLike | None) -> Dataset:
    file = Path(path if path is not None else MNIST_DEFAULT_PATH).expanduser()
    if not file.is_file():
        raise DatasetNotFoundError(
            f"MNIST file not found at {file.resolve()}. This project never downloads data: "
            f"copy Keras' mnist.npz (arrays x_train, y_train, x_test, y_test) to "
            f"{MNIST_DEFAULT_PATH} or pass path=... to load_dataset('mnist')."
        )
    arrays = _open_npz(file, ("x_train", "y_train", "x_test", "y_test"))
    x_tr, x_te = arrays["x_train"], arrays["x_test"]
    for split, x in (("x_train", x_tr), ("x_test", x_te)):
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DatasetError(f"{file}: {split} must have shape (n, 28, 28), got {x.shape}")
    y_tr = _labels_1d(arrays["y_train"], len(x_tr), f"{file}: y_train")
    y_te = _labels_1d(arrays["y_test"], len(x_te), f"{file}: y_test")
    classes, y_all = np.unique(np.concatenate([y_tr, y_te]), return_inverse=True)
    scale = 255.0 if x_tr.dtype == np.uint8 or x_tr.max() > 1.0 else 1.0
    return Dataset(
        name="mnist",
        x_train=(x_tr[..., None] / scale).astype(np.float32),
        y_train=y_all[: len(y_tr)].astype(np.int64),
        x_test=(x_te[..., None] / scale).astype(np.float32),
        y_test=y_all[len(y_tr) :].astype(np.int64),
        num_classes=len(classes),
        input_shape=(28, 28, 1),
        classes=tuple(classes.tolist()),
    )


def _open_npz(file: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DatasetError(
                    f"{file}: missing arrays {missing}; it has {sorted(npz.files)}, "
                    f"expected {list(keys)}"
                )
            return {k: np.asarray(npz[k]) for k in keys}
    except DatasetError:
        raise
    except Exception as exc:  # zipfile / pickle / format errors
        raise DatasetError(f"{file} is not a readable .npz file: {exc}") from exc


def _read_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = _open_npz(file, ("x", "y"))
    x = arrays["x"]
    if x.ndim < 2:
        raise DatasetError(f"{file}: x must have shape (n, features...), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError(f"{file}: x must be real numbers, got dtype {x.dtype}")
    return x, arrays["y"]


def _read_csv(file: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        frame = pd.read_csv(file)
    except Exception as exc:
        raise DatasetError(f"{file} is not a readable CSV file: {exc}") from exc
    if label_column not in frame.columns:
        raise DatasetError(
            f"{file}: no label column {label_column!r}; columns are {list(frame.columns)}. "
            "Pass label_column=... to load_dataset."
        )
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise DatasetError(f"{file}: no feature columns besides {label_column!r}")
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise DatasetError(
            f"{file}: feature columns must be numeric; not numeric: {bad}. "
            "Encode them as numbers first."
        )
    y = frame[label_column].to_numpy()
    if pd.isna(y).any():
        raise DatasetError(f"{file}: label column {label_column!r} has empty values")
    return features.to_numpy(dtype=np.float64), y


def _labels_1d(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{where}: labels must be a vector of {n} values, got shape {y.shape}")
    return y


def _split(
    name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, *, scale: bool
) -> Dataset:
    x = np.asarray(x, dtype=np.float64)
    y = _labels_1d(y, len(x), name)
    if len(x) < 2:
        raise DatasetError(f"{name}: need at least 2 samples, got {len(x)}")
    if not np.isfinite(x).all():
        raise DatasetError(f"{name}: features contain NaN or infinite values; clean them first")
    if x.ndim == 3:  # (n, h, w) images: add the channel axis the CNN expects
        x = x[..., None]
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DatasetError(f"{name}: need at least 2 classes, found {classes.tolist()}")
    train, test = stratified_split(y_idx, test_fraction, seed)
    if len(test) == 0:
        raise DatasetError(
            f"{name}: test_fraction={test_fraction} leaves no test samples; raise it or add data"
        )
    if scale:
        x = _min_max(x, train)
    return Dataset(
        name=name,
        x_train=x[train].astype(np.float32),
        y_train=y_idx[train].astype(np.int64),
        x_test=x[test].astype(np.float32),
        y_test=y_idx[test].astype(np.int64),
        num_classes=len(classes),
        input_shape=tuple(int(d) for d in x.shape[1:]),
        classes=tuple(classes.tolist()),
    )


def _min_max(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] with training statistics only (no test leakage).

    Tabular data (n, d) is scaled per feature; images by one global range, so
    pixels keep their relative brightness. Test values may fall slightly
    outside [0, 1] and are clipped.
    """
    axis = 0 if x.ndim == 2 else None
    lo = x[train].min(axis=axis, keepdims=True)
    hi = x[train].max(axis=axis, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((x - lo) / span, 0.0, 1.0)
