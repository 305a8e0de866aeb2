"""Local training (plain SGD, optionally FedProx) and evaluation with Keras.

One Keras model per :class:`~ml.models.ModelSpec` is built once and cached in
this module; each call loads the given weights into it, so a federation with
many clients pays the (slow) model construction and tracing only once.

Training is a small custom loop with ``tf.GradientTape`` rather than
``model.fit``: it is faster for the few batches a client has, it lets us add
the FedProx proximal term, and it keeps every source of randomness explicit
(batch order from a numpy PCG64 generator seeded with ``seed``, dropout
seed generators reset from ``seed``) so the same call gives bit-identical
weights, in any process. No global seed is set: callers' random state is
left alone.
"""

from __future__ import annotations

import numbers
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.models import ModelSpec, build_model, import_keras, import_tensorflow, initial_weights, tensor_shapes

# Tuned on digits (10 clients, 10 rounds, see bench/ml_accuracy.py): E=1 FedAvg
# lags because each client takes few steps per round, so small batches (B=5,
# ~29 local steps per epoch) and a large plain-SGD step (0.3) close the gap to
# centralized training to <= 2 points on IID splits, and stay stable with E=5
# on non-IID splits.
DEFAULT_BATCH_SIZE = 5
DEFAULT_LEARNING_RATE = 0.3
DEFAULT_MOMENTUM = 0.0  # plain SGD; local momentum did not help FedAvg here and is reset each call
DEFAULT_EPOCHS = 1
DEFAULT_CENTRALIZED_EPOCHS = 10
EVAL_BATCH_SIZE = 1024


class TrainingError(ValueError):
    """Bad training input (shapes, labels, hyperparameters) or a diverged run."""


@dataclass(frozen=True)
class TrainConfig:
    """A client's local hyperparameters (here, not in ml.parties, so a training worker need not import the chain)."""

    epochs: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    mu: float = 0.0  # FedProx proximal term; 0 = plain FedAvg


@dataclass
class TrainResult:
    """A client's new weights; ``loss`` is the mean data loss over the last epoch (no proximal term)."""

    weights: list[np.ndarray]
    num_samples: int
    loss: float
    seconds: float


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    num_samples: int = 0


# --------------------------------------------------------------------------- the cached runner


class _Runner:
    """A built model plus traced train/eval steps for one spec."""

    def __init__(self, spec: ModelSpec) -> None:
        import_keras()
        tf = import_tensorflow()

        self.spec = spec
        self.lock = threading.Lock()
        self.model = build_model(spec)
        self.variables = list(self.model.trainable_variables)
        if [tuple(v.shape) for v in self.variables] != tensor_shapes(spec):
            raise TrainingError(f"trainable variables of the Keras model do not match spec {spec.to_json()}")
        self.anchor = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in self.variables]
        self.velocity = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in self.variables]
        self.seed_generators = [
            layer.seed_generator for layer in self.model.layers if hasattr(layer, "seed_generator")
        ]
        x_sig = tf.TensorSpec((None, *spec.input_shape), tf.float32)
        y_sig = tf.TensorSpec((None,), tf.int64)
        s_sig = tf.TensorSpec((), tf.float32)
        i_sig = tf.TensorSpec((), tf.int64)
        self.epoch = tf.function(
            self._epoch, input_signature=[x_sig, y_sig, tf.TensorSpec((None,), tf.int64), i_sig, s_sig, s_sig, s_sig]
        )
        self.forward = tf.function(self._forward, input_signature=[x_sig, y_sig])

    def _data_loss(self, x, y):
        tf = import_tensorflow()

        logits = self.model(x, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))

    def _step(self, x, y, lr, momentum, mu):
        """One SGD step (heavy-ball momentum) on loss + mu/2 * ||w - w_global||^2.

        With mu > 0 this is FedProx (Li et al., 2020); the proximal term is
        skipped entirely when mu == 0.
        """
        tf = import_tensorflow()

        with tf.GradientTape() as tape:
            loss = self._data_loss(x, y)
            total = tf.cond(
                mu > 0,
                lambda: loss
                + 0.5 * mu * tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in zip(self.variables, self.anchor)]),
                lambda: loss,
            )
        for v, m, g in zip(self.variables, self.velocity, tape.gradient(total, self.variables)):
            m.assign(momentum * m + g)
            v.assign_sub(lr * m)
        return loss

    def _epoch(self, x, y, order, batch_size, lr, momentum, mu):
        """One pass over ``order`` in mini-batches, as a graph loop (no Python per step).

        Returns the sum of per-sample data losses, in float64.
        """
        tf = import_tensorflow()

        n = tf.shape(order, out_type=tf.int64)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        for lo in tf.range(0, n, batch_size):
            idx = order[lo : tf.minimum(lo + batch_size, n)]
            loss = self._step(tf.gather(x, idx), tf.gather(y, idx), lr, momentum, mu)
            loss_sum += tf.cast(loss, tf.float64) * tf.cast(tf.size(idx), tf.float64)
        return loss_sum

    def _forward(self, x, y):
        tf = import_tensorflow()

        logits = self.model(x, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int64), y)
        return losses, correct

    def load(self, weights: list[np.ndarray]) -> None:
        for v, w in zip(self.variables, weights):
            v.assign(w)

    def weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy(), dtype=np.float32, copy=True) for v in self.variables]


_RUNNERS: dict[ModelSpec, _Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def _check_spec(spec: ModelSpec) -> None:
    if not isinstance(spec, ModelSpec):
        hint = " (parse JSON with ModelSpec.from_json)" if isinstance(spec, str | bytes) else ""
        raise TrainingError(f"spec must be an ml.models.ModelSpec, got {type(spec).__name__}{hint}")


def _runner(spec: ModelSpec) -> _Runner:
    _check_spec(spec)
    with _RUNNERS_LOCK:
        if spec not in _RUNNERS:
            _RUNNERS[spec] = _Runner(spec)
        return _RUNNERS[spec]


def warm_up(spec: ModelSpec) -> None:
    """Build and trace the cached model for ``spec`` now (one step on one zero sample), so that a
    training worker pays for it at start-up rather than in its first round. Changes no later result:
    every call loads its own weights and resets the optimiser and seed state."""
    x = np.zeros((1, *spec.input_shape), np.float32)
    train_local(spec, initial_weights(spec, 0), x, np.zeros(1, np.int64), epochs=1, batch_size=1)


def clear_cache() -> None:
    """Drop the cached Keras models (e.g. to free memory after trying many specs)."""
    with _RUNNERS_LOCK:
        _RUNNERS.clear()


# --------------------------------------------------------------------------- validation


def _check_weights(spec: ModelSpec, weights: Any) -> list[np.ndarray]:
    expected = tensor_shapes(spec)
    weights = list(weights)
    if len(weights) != len(expected):
        raise TrainingError(f"expected {len(expected)} weight tensors for this spec, got {len(weights)}")
    out = []
    for i, (w, shape) in enumerate(zip(weights, expected)):
        w = np.asarray(w)
        if w.shape != shape:
            raise TrainingError(f"weight tensor {i} has shape {w.shape}, the spec needs {shape}")
        if not np.isfinite(w).all():
            raise TrainingError(f"weight tensor {i} contains NaN or infinite values")
        out.append(w.astype(np.float32, copy=False))
    return out


def _check_data(spec: ModelSpec, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or x.shape[1:] != spec.input_shape:
        raise TrainingError(
            f"x must have shape (n, {', '.join(map(str, spec.input_shape))}) for this spec, got {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise TrainingError(f"y must be a vector of {len(x)} labels, got shape {y.shape}")
    if len(x) == 0:
        raise TrainingError("no samples: x and y are empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise TrainingError(f"y must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise TrainingError(f"labels must be in 0..{spec.num_classes - 1}, got {y.min()}..{y.max()}")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64, copy=False)


def _positive(value: Any, name: str, kind: type = numbers.Real) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise TrainingError(f"{name} must be a positive {'integer' if kind is numbers.Integral else 'number'}, got {value!r}")


# --------------------------------------------------------------------------- public API


def train_local(
    spec: ModelSpec,
    weights: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    mu: float = 0.0,
    momentum: float = DEFAULT_MOMENTUM,
    seed: int = 0,
) -> TrainResult:
    """Train ``epochs`` passes of mini-batch SGD from ``weights``; FedProx when ``mu > 0``.

    Deterministic: the same arguments give bit-identical weights.
    """
    start = time.perf_counter()
    _check_spec(spec)
    weights = _check_weights(spec, weights)
    x, y = _check_data(spec, x, y)
    _positive(epochs, "epochs", numbers.Integral)
    _positive(batch_size, "batch_size", numbers.Integral)
    _positive(learning_rate, "learning_rate")
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not mu >= 0:
        raise TrainingError(f"mu must be a number >= 0 (0 = plain FedAvg), got {mu!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
        raise TrainingError(f"momentum must be in [0, 1), got {momentum!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TrainingError(f"seed must be an integer >= 0, got {seed!r}")
    tf = import_tensorflow()

    runner = _runner(spec)
    rng = np.random.Generator(np.random.PCG64(int(seed)))  # any size of seed, e.g. seed * 1_000_003 + round
    lr = tf.constant(learning_rate, tf.float32)
    mu_t = tf.constant(mu, tf.float32)
    mom = tf.constant(momentum, tf.float32)
    n = len(x)
    with runner.lock:
        runner.load(weights)
        if mu > 0:
            for a, w in zip(runner.anchor, weights):
                a.assign(w)
        for m in runner.velocity:
            m.assign(tf.zeros_like(m))
        for i, gen in enumerate(runner.seed_generators):
            gen.state.assign(np.array([int(seed) % (2**31 - 1), i], dtype=gen.state.dtype))
        x_t, y_t, bs = tf.constant(x), tf.constant(y), tf.constant(batch_size, tf.int64)
        for _ in range(epochs):
            order = tf.constant(rng.permutation(n).astype(np.int64))
            loss_sum = float(runner.epoch(x_t, y_t, order, bs, lr, mom, mu_t))
        new_weights = runner.weights()
    if not all(np.isfinite(w).all() for w in new_weights) or not np.isfinite(loss_sum):
        raise TrainingError(
            f"training diverged (weights or loss became NaN/inf) with learning_rate={learning_rate}; "
            "lower the learning rate"
        )
    return TrainResult(
        weights=new_weights,
        num_samples=n,
        loss=loss_sum / n,
        seconds=time.perf_counter() - start,
    )


def evaluate(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE
) -> EvalResult:
    """Mean cross-entropy and accuracy of ``weights`` on (x, y)."""
    _check_spec(spec)
    weights = _check_weights(spec, weights)
    x, y = _check_data(spec, x, y)
    _positive(batch_size, "batch_size", numbers.Integral)
    tf = import_tensorflow()

    runner = _runner(spec)
    loss_sum, correct = 0.0, 0
    with runner.lock:
        runner.load(weights)
        for lo in range(0, len(x), batch_size):
            losses, hits = runner.forward(tf.constant(x[lo : lo + batch_size]), tf.constant(y[lo : lo + batch_size]))
            loss_sum += float(np.sum(losses.numpy(), dtype=np.float64))
            correct += int(np.sum(hits.numpy()))
    return EvalResult(loss=loss_sum / len(x), accuracy=correct / len(x), num_samples=len(x))


def centralized_baseline(
    spec: ModelSpec,
    dataset: Any,
    *,
    epochs: int = DEFAULT_CENTRALIZED_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    momentum: float = DEFAULT_MOMENTUM,
    seed: int = 0,
) -> tuple[list[np.ndarray], EvalResult]:
    """Train on the pooled training set from the seeded initial weights; evaluate on the test set.

    The reference FedAvg is compared against: same model, optimiser and data.
    """
    weights = initial_weights(spec, seed)
    result = train_local(
        spec,
        weights,
        dataset.x_train,
        dataset.y_train,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        seed=seed,
    )
    return result.weights, evaluate(spec, result.weights, dataset.x_test, dataset.y_test)
