"""ml.models: spec identity (canonical JSON, keccak), layout, seeded initial weights, Keras build."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from eth_utils import keccak

from ml.models import (
    ModelSpec,
    ModelSpecError,
    build_model,
    initial_weights,
    num_params,
    spec_for_dataset,
    tensor_names,
    tensor_shapes,
)

CNN = ModelSpec("cnn", (8, 8, 1), 10, hidden=(16,), filters=(4, 8))


def test_canonical_json_and_hash(small_spec):
    text = small_spec.to_json()
    assert " " not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data == {
        "arch": "mlp",
        "dropout": 0.0,
        "filters": [],
        "format": 1,
        "hidden": [32],
        "input_shape": [8, 8, 1],
        "num_classes": 10,
    }
    h = small_spec.hash()
    assert isinstance(h, bytes) and len(h) == 32
    assert h == keccak(text.encode())
    assert small_spec.hash_hex() == "0x" + h.hex()


def test_equal_specs_hash_equal_whatever_the_python_types():
    a = ModelSpec("mlp", (8, 8, 1), 10, hidden=(32,), dropout=0)
    b = ModelSpec("mlp", [8, 8, 1], np.int64(10), hidden=[np.int32(32)], dropout=0.0)
    assert a == b and a.to_json() == b.to_json() and a.hash() == b.hash()
    assert hash(a) == hash(b)  # usable as a cache key


def test_different_specs_hash_differently(small_spec):
    other = ModelSpec("mlp", (8, 8, 1), 10, hidden=(33,))
    assert other.hash() != small_spec.hash()
    assert CNN.hash() != small_spec.hash()


def test_from_json_round_trip(small_spec):
    for spec in (small_spec, CNN, ModelSpec("mlp", (5,), 3, hidden=(4, 4), dropout=0.25)):
        back = ModelSpec.from_json(spec.to_json())
        assert back == spec and back.hash() == spec.hash()


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"arch": "mlp", "input_shape": [4], "num_classes": 2, "colour": "red"}', "unknown model spec fields"),
        ('{"arch": "mlp", "input_shape": [4]}', "missing fields"),
        ('{"arch": "mlp", "input_shape": [4], "num_classes": 2, "format": 9}', "format"),
    ],
)
def test_from_json_errors(text, match):
    with pytest.raises(ModelSpecError, match=match):
        ModelSpec.from_json(text)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="rnn", input_shape=(4,), num_classes=2), "unknown arch 'rnn'; choose one of mlp, cnn"),
        (dict(arch="mlp", input_shape=(4,), num_classes=1), "at least 2"),
        (dict(arch="mlp", input_shape=(0,), num_classes=2), "positive integers"),
        (dict(arch="mlp", input_shape=(4,), num_classes=2, hidden=(8, -1)), "hidden"),
        (dict(arch="mlp", input_shape=(4,), num_classes=2, dropout=1.0), "dropout"),
        (dict(arch="mlp", input_shape=(4,), num_classes=2, filters=(8,)), "only apply to arch='cnn'"),
        (dict(arch="cnn", input_shape=(64,), num_classes=2, filters=(8,)), "use arch='mlp' for tabular"),
        (dict(arch="cnn", input_shape=(8, 8, 1), num_classes=2), "at least one conv layer"),
        (dict(arch="cnn", input_shape=(4, 4, 1), num_classes=2, filters=(2, 2, 2)), "too small"),
    ],
)
def test_invalid_specs(kwargs, match):
    with pytest.raises(ModelSpecError, match=match):
        ModelSpec(**kwargs)


def test_spec_for_dataset(digits):
    mlp = spec_for_dataset(digits)
    assert (mlp.arch, mlp.input_shape, mlp.num_classes) == ("mlp", (8, 8, 1), 10)
    cnn = spec_for_dataset(digits, "cnn")
    assert cnn.filters and cnn.input_shape == (8, 8, 1)
    assert spec_for_dataset(digits, hidden=(7,)).hidden == (7,)
    with pytest.raises(ModelSpecError, match="choose one of"):
        spec_for_dataset(digits, "transformer")


def test_layout_names_and_shapes(small_spec):
    assert tensor_names(small_spec) == ["dense_0/kernel", "dense_0/bias", "output/kernel", "output/bias"]
    assert tensor_shapes(small_spec) == [(64, 32), (32,), (32, 10), (10,)]
    assert num_params(small_spec) == 64 * 32 + 32 + 32 * 10 + 10
    assert tensor_names(CNN)[:4] == ["conv_0/kernel", "conv_0/bias", "conv_1/kernel", "conv_1/bias"]
    assert tensor_shapes(CNN)[2] == (3, 3, 4, 8) and tensor_shapes(CNN)[4] == (2 * 2 * 8, 16)


@pytest.mark.parametrize(
    "spec", [ModelSpec("mlp", (8, 8, 1), 10, hidden=(32, 16), dropout=0.5), CNN], ids=["mlp", "cnn"]
)
def test_keras_model_matches_the_pure_layout(spec):
    model = build_model(spec)
    assert [tuple(w.shape) for w in model.get_weights()] == tensor_shapes(spec)
    assert [w.path.split("/", 1)[1] for w in model.weights] == tensor_names(spec)
    assert model.count_params() == num_params(spec)
    out = model(np.zeros((2, *spec.input_shape), np.float32))
    assert tuple(out.shape) == (2, spec.num_classes)


def test_initial_weights_deterministic(small_spec):
    a, b = initial_weights(small_spec, 7), initial_weights(small_spec, 7)
    c = initial_weights(small_spec, 8)
    assert all(x.dtype == np.float32 and np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert [w.shape for w in a] == tensor_shapes(small_spec)
    assert not a[1].any() and not a[3].any()  # biases start at zero
    limit = np.sqrt(6 / (64 + 32))  # Glorot uniform
    assert np.abs(a[0]).max() <= limit and np.abs(a[0]).max() > 0.9 * limit


def test_tensorflow_loads_without_its_c_plus_plus_notices():
    """absl/oneDNN notices written while TF loads stay off the terminal; a fresh process shows it."""
    code = "from ml.models import import_keras; import_keras(); import sys; print('loaded', file=sys.stderr)"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "loaded"
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard"):
        assert noise not in proc.stderr, proc.stderr


def test_only_known_tensorflow_notices_are_filtered():
    from ml.models import _TF_LOAD_NOISE

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795863512.299283    7355 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1795863512.336533    7355 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the flags.",
    ]
    kept = ["E0000 00:00:1 cuda_dnn.cc:1] could not load a library", "UserWarning: something the user should see"]
    assert all(_TF_LOAD_NOISE.search(line) for line in noise)
    assert not any(_TF_LOAD_NOISE.search(line) for line in kept)
