"""Fixtures for the off-chain ML unit tests (no chain needed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def digits():
    from ml.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_spec():
    """A small MLP for digits: fast to build and train."""
    from ml.models import ModelSpec

    return ModelSpec("mlp", (8, 8, 1), 10, hidden=(32,))


@pytest.fixture
def random_weights():
    """random_weights(spec, seed) -> float32 arrays with the spec's shapes."""
    from ml.models import tensor_shapes

    def _make(spec, seed=0):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(s).astype(np.float32) for s in tensor_shapes(spec)]

    return _make
