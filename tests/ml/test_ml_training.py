"""ml.training: local SGD / FedProx, determinism, evaluation, input errors."""

from __future__ import annotations

import numpy as np
import pytest

from ml.aggregation import l2_norm
from ml.models import ModelSpec, initial_weights
from ml.training import EvalResult, TrainingError, centralized_baseline, evaluate, train_local


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_training_improves_accuracy_on_digits(digits, small_spec):
    w0 = initial_weights(small_spec, 0)
    before = evaluate(small_spec, w0, digits.x_test, digits.y_test)
    weights, after = centralized_baseline(small_spec, digits, epochs=3, seed=0)
    assert before.accuracy < 0.3
    assert after.accuracy > 0.9
    assert after.loss < before.loss
    assert [w.shape for w in weights] == [w.shape for w in w0]


def test_train_local_result_and_inputs_untouched(digits, small_spec):
    w0 = initial_weights(small_spec, 1)
    copy = [w.copy() for w in w0]
    res = train_local(small_spec, w0, digits.x_train[:100], digits.y_train[:100], epochs=2, seed=3)
    assert _same(w0, copy)  # the caller's arrays are not modified
    assert res.num_samples == 100
    assert np.isfinite(res.loss) and res.loss > 0 and res.seconds > 0
    assert all(w.dtype == np.float32 for w in res.weights)
    assert not _same(res.weights, w0)


def test_train_local_is_deterministic(digits, small_spec):
    w0 = initial_weights(small_spec, 0)
    x, y = digits.x_train[:150], digits.y_train[:150]
    a = train_local(small_spec, w0, x, y, epochs=2, seed=11)
    b = train_local(small_spec, w0, x, y, epochs=2, seed=11)
    c = train_local(small_spec, w0, x, y, epochs=2, seed=12)
    assert _same(a.weights, b.weights) and a.loss == b.loss
    assert not _same(a.weights, c.weights)  # the seed drives the batch order
    big = train_local(small_spec, w0, x, y, seed=10**30)  # composite seeds of any size are fine
    assert _same(big.weights, train_local(small_spec, w0, x, y, seed=10**30).weights)


def test_dropout_is_seeded(digits):
    spec = ModelSpec("mlp", (8, 8, 1), 10, hidden=(32,), dropout=0.5)
    w0 = initial_weights(spec, 0)
    x, y = digits.x_train[:100], digits.y_train[:100]
    a = train_local(spec, w0, x, y, seed=5)
    b = train_local(spec, w0, x, y, seed=5)
    assert _same(a.weights, b.weights)


def test_fedprox_keeps_weights_closer_to_global(digits, small_spec):
    w0, _ = centralized_baseline(small_spec, digits, epochs=1, seed=0)
    # a skewed client: only digits 0 and 1, many local epochs -> strong drift
    idx = np.flatnonzero(digits.y_train < 2)
    x, y = digits.x_train[idx], digits.y_train[idx]
    drift = {mu: l2_norm(train_local(small_spec, w0, x, y, epochs=5, mu=mu, seed=1).weights, w0) for mu in (0.0, 0.1, 1.0)}
    assert drift[1.0] < drift[0.1] < drift[0.0]
    assert drift[1.0] < 0.7 * drift[0.0]


def test_mu_zero_is_plain_sgd(digits, small_spec):
    """The proximal branch is skipped entirely at mu=0 (no rounding differences)."""
    w0 = initial_weights(small_spec, 0)
    x, y = digits.x_train[:50], digits.y_train[:50]
    a = train_local(small_spec, w0, x, y, mu=0.0, seed=2)
    b = train_local(small_spec, w0, x, y, seed=2)
    assert _same(a.weights, b.weights)


def test_evaluate_matches_a_numpy_forward_pass(digits, small_spec):
    w = initial_weights(small_spec, 4)
    w = [v + np.float32(0.01) for v in w]
    res = evaluate(small_spec, w, digits.x_test, digits.y_test, batch_size=100)
    assert isinstance(res, EvalResult) and res.num_samples == len(digits.y_test)
    x = digits.x_test.reshape(len(digits.x_test), -1).astype(np.float64)
    hidden = np.maximum(x @ w[0] + w[1], 0)
    logits = hidden @ w[2] + w[3]
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    assert res.accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == digits.y_test))
    assert res.loss == pytest.approx(-logp[np.arange(len(x)), digits.y_test].mean(), rel=1e-4)


def test_cnn_trains(digits):
    spec = ModelSpec("cnn", (8, 8, 1), 10, hidden=(16,), filters=(8,))
    w0 = initial_weights(spec, 0)
    res = train_local(spec, w0, digits.x_train, digits.y_train, epochs=2, seed=0)
    before = evaluate(spec, w0, digits.x_test, digits.y_test)
    after = evaluate(spec, res.weights, digits.x_test, digits.y_test)
    assert after.accuracy > before.accuracy + 0.3


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(x=np.zeros((5, 64), np.float32)), r"x must have shape \(n, 8, 8, 1\)"),
        (dict(y=np.arange(4)), "vector of 5 labels"),
        (dict(y=np.array([0, 1, 2, 3, 10])), r"labels must be in 0\.\.9"),
        (dict(y=np.zeros(5, np.float32)), "integer class indices"),
        (dict(weights="drop_last"), "expected 4 weight tensors"),
        (dict(weights="nan"), "NaN"),
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(mu=-1), "mu must be"),
        (dict(seed=-1), "seed"),
        (dict(x=np.zeros((0, 8, 8, 1), np.float32), y=np.zeros(0, np.int64)), "no samples"),
    ],
)
def test_train_local_input_errors(small_spec, change, match):
    args = dict(
        weights=initial_weights(small_spec, 0),
        x=np.zeros((5, 8, 8, 1), np.float32),
        y=np.arange(5),
    )
    if change.get("weights") == "drop_last":
        change = {"weights": args["weights"][:-1]}
    elif change.get("weights") == "nan":
        bad = [w.copy() for w in args["weights"]]
        bad[0][0, 0] = np.nan
        change = {"weights": bad}
    args.update(change)
    kwargs = {k: args.pop(k) for k in list(args) if k not in ("weights", "x", "y")}
    with pytest.raises(TrainingError, match=match):
        train_local(small_spec, args["weights"], args["x"], args["y"], **kwargs)


def test_divergence_is_reported(digits, small_spec):
    with pytest.raises(TrainingError, match="lower the learning rate"):
        train_local(small_spec, initial_weights(small_spec, 0), digits.x_train[:200], digits.y_train[:200], learning_rate=1e20)


def test_spec_must_be_a_model_spec(digits, small_spec):
    with pytest.raises(TrainingError, match="ModelSpec"):
        evaluate(small_spec.to_json(), initial_weights(small_spec, 0), digits.x_test, digits.y_test)


TRAIN_SCRIPT = """
from ml.codec import encode, hash_hex
from ml.data import load_dataset
from ml.models import ModelSpec, initial_weights, tensor_names
from ml.training import train_local
ds = load_dataset()
spec = ModelSpec("mlp", (8, 8, 1), 10, hidden=(32,))
r = train_local(spec, initial_weights(spec, 0), ds.x_train[:300], ds.y_train[:300], epochs=2, seed=77)
print(hash_hex(encode(r.weights, tensor_names(spec))))
"""


def test_training_is_reproducible_in_another_process(digits, small_spec):
    """A client re-running a round gets the same bytes (same machine and versions)."""
    import subprocess
    import sys

    from ml.codec import encode, hash_hex
    from ml.models import tensor_names

    r = train_local(small_spec, initial_weights(small_spec, 0), digits.x_train[:300], digits.y_train[:300], epochs=2, seed=77)
    proc = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == hash_hex(encode(r.weights, tensor_names(small_spec)))
