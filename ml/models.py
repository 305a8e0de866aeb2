"""Model specs that hash to an on-chain id, and the Keras models they describe.

A :class:`ModelSpec` is the whole architecture in a few fields. Its canonical
JSON (sorted keys, no spaces) hashes with keccak-256 to the ``modelSpecHash``
the contract stores, so every party can check it trains the same model.

Everything except :func:`build_model` is pure Python/numpy: tensor names,
shapes and the seeded initial weights are computed from the spec alone, so
the aggregator, the codec and ``verify_round`` never need to import Keras.
Initial weights come from numpy (Glorot-uniform kernels, zero biases, like
Keras' defaults) so the same seed gives bit-identical arrays in any process.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ARCHS = ("mlp", "cnn")
SPEC_FORMAT = 1

# Defaults chosen so 10-client FedAvg on digits matches centralized training
# within 2 points in 10 rounds (see bench/ml_accuracy.py).
DEFAULT_HIDDEN = {"mlp": (512,), "cnn": (64,)}
DEFAULT_FILTERS = {"mlp": (), "cnn": (16, 32)}


class ModelSpecError(ValueError):
    """The model spec is invalid or does not fit the data; the message says what to change."""


def _int_tuple(value: Any, what: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise ModelSpecError(f"{what} must be a sequence of positive integers, got {value!r}") from None
    if not allow_empty and not items:
        raise ModelSpecError(f"{what} must not be empty")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 1:
            raise ModelSpecError(f"{what} must contain positive integers, got {value!r}")
    return tuple(int(i) for i in items)


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: ``mlp`` (flatten -> dense*) or ``cnn`` (conv3x3+maxpool* -> dense*).

    The output layer has ``num_classes`` units and emits logits.
    """

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = DEFAULT_HIDDEN["mlp"]
    filters: tuple[int, ...] = ()
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelSpecError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        # Normalise types so equal specs give equal JSON (0 vs 0.0, list vs tuple).
        set_ = object.__setattr__
        set_(self, "input_shape", _int_tuple(self.input_shape, "input_shape", allow_empty=False))
        set_(self, "hidden", _int_tuple(self.hidden, "hidden"))
        set_(self, "filters", _int_tuple(self.filters, "filters"))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, numbers.Integral):
            raise ModelSpecError(f"num_classes must be an integer, got {self.num_classes!r}")
        if self.num_classes < 2:
            raise ModelSpecError(f"num_classes must be at least 2, got {self.num_classes}")
        set_(self, "num_classes", int(self.num_classes))
        if not isinstance(self.dropout, numbers.Real) or not 0.0 <= float(self.dropout) < 1.0:
            raise ModelSpecError(f"dropout must be in [0, 1), got {self.dropout!r}")
        set_(self, "dropout", float(self.dropout))
        if self.arch == "mlp" and self.filters:
            raise ModelSpecError("filters only apply to arch='cnn'; leave them empty for 'mlp'")
        if self.arch == "cnn":
            if not self.filters:
                raise ModelSpecError("arch='cnn' needs at least one conv layer in filters, e.g. (16, 32)")
            if len(self.input_shape) != 3:
                raise ModelSpecError(
                    f"arch='cnn' needs input_shape (height, width, channels), got {self.input_shape}; "
                    "use arch='mlp' for tabular data"
                )
            h, w, _ = self.input_shape
            if min(h, w) < 2 ** len(self.filters):
                raise ModelSpecError(
                    f"input {h}x{w} is too small for {len(self.filters)} conv+pool blocks "
                    "(each halves the size); use fewer filters"
                )

    # ---------------------------------------------------------------- identity

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = SPEC_FORMAT
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; the input of :meth:`hash`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ModelSpecError(f"model spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelSpecError("model spec JSON must be an object")
        fmt = data.pop("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise ModelSpecError(f"model spec format {fmt!r} is not supported (expected {SPEC_FORMAT})")
        allowed = {"arch", "input_shape", "num_classes", "hidden", "filters", "dropout"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ModelSpecError(f"unknown model spec fields {unknown}; allowed: {sorted(allowed)}")
        missing = sorted({"arch", "input_shape", "num_classes"} - set(data))
        if missing:
            raise ModelSpecError(f"model spec is missing fields {missing}")
        return cls(**data)

    def hash(self) -> bytes:
        """32-byte keccak-256 of the canonical JSON (the contract's modelSpecHash)."""
        from eth_utils import keccak

        return keccak(text=self.to_json())

    def hash_hex(self) -> str:
        return "0x" + self.hash().hex()


def spec_for_dataset(
    dataset: Any,
    arch: str = "mlp",
    *,
    hidden: tuple[int, ...] | None = None,
    filters: tuple[int, ...] | None = None,
    dropout: float = 0.0,
) -> ModelSpec:
    """A spec sized for ``dataset`` (anything with ``input_shape`` and ``num_classes``)."""
    if arch not in ARCHS:
        raise ModelSpecError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return ModelSpec(
        arch=arch,
        input_shape=tuple(dataset.input_shape),
        num_classes=dataset.num_classes,
        hidden=DEFAULT_HIDDEN[arch] if hidden is None else hidden,
        filters=DEFAULT_FILTERS[arch] if filters is None else filters,
        dropout=dropout,
    )


# --------------------------------------------------------------------------- layout


def _layers(spec: ModelSpec) -> list[tuple[str, tuple[int, ...], tuple[int, ...], int, int]]:
    """(name, kernel shape, bias shape, fan_in, fan_out) per weighted layer, in order."""
    if not isinstance(spec, ModelSpec):
        hint = " (parse JSON with ModelSpec.from_json)" if isinstance(spec, str | bytes) else ""
        raise ModelSpecError(f"expected an ml.models.ModelSpec, got {type(spec).__name__}{hint}")
    layers = []
    if spec.arch == "cnn":
        h, w, channels = spec.input_shape
        for i, f in enumerate(spec.filters):
            layers.append((f"conv_{i}", (3, 3, channels, f), (f,), 9 * channels, 9 * f))
            channels, h, w = f, h // 2, w // 2
        width = h * w * channels
    else:
        width = math.prod(spec.input_shape)
    for i, units in enumerate(spec.hidden):
        layers.append((f"dense_{i}", (width, units), (units,), width, units))
        width = units
    layers.append(("output", (width, spec.num_classes), (spec.num_classes,), width, spec.num_classes))
    return layers


def tensor_names(spec: ModelSpec) -> list[str]:
    """Stable tensor names in ``model.get_weights()`` order, e.g. ``dense_0/kernel``."""
    return [f"{name}/{part}" for name, *_ in _layers(spec) for part in ("kernel", "bias")]


def tensor_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """Tensor shapes in ``model.get_weights()`` order."""
    return [shape for _, k, b, _, _ in _layers(spec) for shape in (k, b)]


def num_params(spec: ModelSpec) -> int:
    return sum(math.prod(s) for s in tensor_shapes(spec))


def initial_weights(spec: ModelSpec, seed: int = 0) -> list[np.ndarray]:
    """Seeded Glorot-uniform kernels and zero biases, float32, from numpy's PCG64.

    Independent of Keras/TensorFlow so the initial model (and its hash) is the
    same in every process and on every machine with the same numpy.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    weights = []
    for _, kernel, bias, fan_in, fan_out in _layers(spec):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=kernel).astype(np.float32))
        weights.append(np.zeros(bias, dtype=np.float32))
    return weights


# --------------------------------------------------------------------------- keras


# What TensorFlow's C++ side writes to stderr while it loads, whatever TF_CPP_MIN_LOG_LEVEL says
# (absl logs before it is initialised): the oneDNN and CPU-feature notices. Nothing a user acts on.
_TF_LOAD_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|\] oneDNN custom operations are on|cpu_feature_guard|"
    r"^To enable the following instructions:.*rebuild TensorFlow")


# Threads TensorFlow splits one op over, in every process (set when ml imports TensorFlow). One: the
# project's models are small, and TensorFlow's default (one per core) trained the digits CNN about 3x
# slower on 2 cores (it synchronises on every tiny op) and made its weights depend on the core count
# (the thread count changes how float sums are split). Cores are used by training clients in separate
# processes instead (ml.parallel), which stay bit-identical to training them here.
INTRA_OP_THREADS = 1
_threads_set = False


def _set_threads(tf) -> None:
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
    except RuntimeError:  # its runtime was started before ml imported it: keep what it has
        pass


def import_tensorflow():
    """Import TensorFlow once, keeping its load-time notices off the terminal (other stderr output stays),
    with INTRA_OP_THREADS.

    Imported lazily: only training and evaluation need it (several seconds).
    """
    if "tensorflow" in sys.modules:
        _set_threads(sys.modules["tensorflow"])  # (once; imported by someone else first)
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _TF_LOAD_NOISE.search(line)))
            sys.stderr.flush()
    _set_threads(tensorflow)
    return tensorflow


def import_keras():
    """Import Keras on the TensorFlow backend (lazily, see import_tensorflow)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import_tensorflow()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"ml.training needs the TensorFlow Keras backend, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}; unset it or set KERAS_BACKEND=tensorflow"
        )
    return keras


def build_model(spec: ModelSpec):
    """An uncompiled ``keras.Sequential`` whose weights follow :func:`tensor_names`."""
    keras = import_keras()
    layers: list[Any] = [keras.Input(shape=spec.input_shape)]
    if spec.arch == "cnn":
        for i, f in enumerate(spec.filters):
            layers.append(keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv_{i}"))
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool_{i}"))
    layers.append(keras.layers.Flatten(name="flatten"))
    for i, units in enumerate(spec.hidden):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"dense_{i}"))
        if spec.dropout > 0:
            layers.append(keras.layers.Dropout(spec.dropout, seed=i + 1, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(spec.num_classes, name="output"))
    model = keras.Sequential(layers, name=f"{spec.arch}_{spec.hash().hex()[:8]}")
    shapes = [tuple(w.shape) for w in model.weights]
    if shapes != tensor_shapes(spec):  # guards the pure layout above against Keras changes
        raise ModelSpecError(f"Keras built shapes {shapes}, expected {tensor_shapes(spec)}")
    return model
