"""Weights <-> canonical bytes, their keccak-256 commitment, and update validation.

The format is safetensors (https://github.com/huggingface/safetensors) with no
metadata: an 8-byte little-endian header length, a JSON header of names,
dtypes, shapes and offsets, then the raw little-endian float32 data. It is
byte-stable: the library writes header keys sorted (by dtype alignment, then
name) whatever the dict order, so the same arrays always give the same bytes
and the same hash. Tensors sit in the file in name order; :func:`decode`
returns them in layer order using the spec's names.

:func:`decode` also re-encodes what it read and rejects any blob that is not
byte-identical to the canonical encoding (extra metadata, reordered or padded
header), so one set of weights has exactly one commitment.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ml.models import ModelSpec, tensor_names, tensor_shapes

DTYPE = np.dtype("<f4")
REASONS = ("decode", "names", "shape", "dtype", "non_finite", "size")


class InvalidUpdateError(ValueError):
    """An update blob or weight list is unusable. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidUpdateError reason {reason!r}")
        super().__init__(f"[{reason}] {message}")
        self.reason = reason
        self.message = message


def keccak(blob: bytes) -> bytes:
    """Ethereum keccak-256 (not NIST SHA3-256): what the contract stores as a commitment."""
    from eth_utils import keccak as _keccak

    return _keccak(primitive=bytes(blob))


def hash_hex(blob: bytes) -> str:
    """``0x``-prefixed hex of :func:`keccak`."""
    return "0x" + keccak(blob).hex()


def encode(weights: Sequence[np.ndarray], names: Sequence[str]) -> bytes:
    """Canonical bytes of float32 ``weights`` named by ``names`` (same order, e.g. ``tensor_names(spec)``)."""
    weights, names = list(weights), list(names)
    if len(weights) != len(names):
        raise InvalidUpdateError("names", f"got {len(weights)} tensors but {len(names)} names")
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise InvalidUpdateError("names", f"names must be unique non-empty strings, got {names}")
    tensors = {}
    for name, w in zip(names, weights):
        arr = np.asarray(w)
        if arr.dtype.kind != "f" or arr.dtype.itemsize != 4:
            raise InvalidUpdateError(
                "dtype", f"tensor {name!r} has dtype {arr.dtype}; only float32 is encoded (use .astype(np.float32))"
            )
        tensors[name] = np.ascontiguousarray(arr, dtype=DTYPE)
    from safetensors.numpy import save

    return save(tensors, metadata=None)


def decode(blob: bytes, spec: ModelSpec, *, max_bytes: int | None = None) -> list[np.ndarray]:
    """Weights in layer order from a canonical blob; raises :class:`InvalidUpdateError`, never anything else.

    Structure is checked here (format, names, shapes, dtype, canonical bytes);
    call :func:`validate` for finiteness.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidUpdateError("decode", f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if max_bytes is not None and len(blob) > max_bytes:
        raise InvalidUpdateError("size", f"blob is {len(blob)} bytes, above the limit of {max_bytes}")
    names = tensor_names(spec)
    try:
        from safetensors.numpy import load

        tensors = load(blob)
    except Exception as exc:  # SafetensorError, OSError, ValueError, ...: all mean "not our format"
        raise InvalidUpdateError("decode", f"not a safetensors blob ({type(exc).__name__}: {exc})") from None
    if set(tensors) != set(names):
        raise InvalidUpdateError(
            "names",
            f"tensor names {sorted(tensors)} do not match the model spec's {sorted(names)}",
        )
    weights = [tensors[name] for name in names]
    for name, w in zip(names, weights):
        if w.dtype != DTYPE:
            raise InvalidUpdateError("dtype", f"tensor {name!r} has dtype {w.dtype}, expected float32")
    _check_shapes(weights, spec)
    if encode(weights, names) != blob:
        raise InvalidUpdateError(
            "decode", "blob is valid safetensors but not the canonical encoding (metadata or header differ)"
        )
    return [np.array(w, dtype=np.float32, copy=True) for w in weights]


def validate(
    weights: Sequence[np.ndarray] | Mapping[str, np.ndarray], spec: ModelSpec, *, max_bytes: int | None = None
) -> None:
    """Raise :class:`InvalidUpdateError` unless ``weights`` fit ``spec``: names/count, shapes, float32, finite, size.

    ``weights`` is a list in layer order, or a mapping from tensor name to array.
    """
    names = tensor_names(spec)
    if isinstance(weights, Mapping):
        if set(weights) != set(names):
            missing = sorted(set(names) - set(weights))
            extra = sorted(set(weights) - set(names))
            raise InvalidUpdateError("names", f"tensor names differ from the spec: missing {missing}, unexpected {extra}")
        weights = [weights[n] for n in names]
    elif isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise InvalidUpdateError("names", "weights must be a list of arrays in layer order (or a name -> array mapping)")
    weights = list(weights)
    if len(weights) != len(names):
        raise InvalidUpdateError("names", f"expected {len(names)} tensors ({', '.join(names)}), got {len(weights)}")
    for name, w in zip(names, weights):
        if not isinstance(w, np.ndarray):
            raise InvalidUpdateError("dtype", f"tensor {name!r} is a {type(w).__name__}, expected a numpy float32 array")
        if w.dtype.kind != "f" or w.dtype.itemsize != 4:
            raise InvalidUpdateError("dtype", f"tensor {name!r} has dtype {w.dtype}, expected float32")
    _check_shapes(weights, spec)
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral):
            raise TypeError(f"max_bytes must be an integer, got {max_bytes!r}")
        size = sum(w.nbytes for w in weights)
        if size > max_bytes:
            raise InvalidUpdateError("size", f"weights take {size} bytes, above the limit of {max_bytes}")
    for name, w in zip(names, weights):
        if not np.isfinite(w).all():
            bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
            raise InvalidUpdateError("non_finite", f"tensor {name!r} has {bad} NaN or infinite values")


def _check_shapes(weights: list[np.ndarray], spec: ModelSpec) -> None:
    for name, w, shape in zip(tensor_names(spec), weights, tensor_shapes(spec)):
        if tuple(w.shape) != shape:
            raise InvalidUpdateError("shape", f"tensor {name!r} has shape {tuple(w.shape)}, the spec needs {shape}")
