"""ml.codec: canonical safetensors bytes, keccak-256, decode/validate errors with reason codes."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.codec import REASONS, InvalidUpdateError, decode, encode, hash_hex, keccak, validate
from ml.models import ModelSpec, initial_weights, tensor_names, tensor_shapes

CNN = ModelSpec("cnn", (8, 8, 1), 10, hidden=(16,), filters=(4, 8))
FAST = settings(max_examples=40, deadline=None)


def same(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("spec", [ModelSpec("mlp", (8, 8, 1), 10, hidden=(32,)), CNN], ids=["mlp", "cnn"])
def test_round_trip_in_layer_order(spec, random_weights):
    weights = random_weights(spec, 1)
    blob = encode(weights, tensor_names(spec))
    back = decode(blob, spec)
    assert same(back, weights)
    assert [w.shape for w in back] == tensor_shapes(spec)
    assert all(w.flags.writeable and w.flags.c_contiguous for w in back)
    assert encode(back, tensor_names(spec)) == blob


@FAST
@given(seed=st.integers(0, 2**32 - 1), values=st.sampled_from(["normal", "special"]))
def test_round_trip_bit_exact_for_any_float32(seed, values, small_spec):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(np.float32) for s in tensor_shapes(small_spec)]
    if values == "special":  # -0.0, subnormals and extremes survive bit for bit
        weights[1][:4] = np.array([-0.0, 1e-45, np.finfo(np.float32).max, np.finfo(np.float32).tiny], np.float32)
    back = decode(encode(weights, tensor_names(small_spec)), small_spec)
    assert all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in zip(weights, back))


def test_bytes_do_not_depend_on_tensor_order_or_byte_order(small_spec, random_weights):
    weights, names = random_weights(small_spec, 2), tensor_names(small_spec)
    blob = encode(weights, names)
    perm = [3, 1, 0, 2]
    assert encode([weights[i] for i in perm], [names[i] for i in perm]) == blob
    big_endian = [w.astype(">f4") for w in weights]
    assert encode(big_endian, names) == blob
    fortran = [np.asfortranarray(w) for w in weights]
    assert encode(fortran, names) == blob


def test_layout_is_safetensors_little_endian(small_spec, random_weights):
    """The documented format, so a verifier in another language can reproduce the bytes."""
    weights, names = random_weights(small_spec, 3), tensor_names(small_spec)
    blob = encode(weights, names)
    (header_len,) = struct.unpack("<Q", blob[:8])
    assert header_len % 8 == 0
    header = json.loads(blob[8 : 8 + header_len])
    assert "__metadata__" not in header
    assert list(header) == sorted(names)  # tensors sorted by name in the header and the data
    data = blob[8 + header_len :]
    offset = 0
    for name in sorted(names):
        w = weights[names.index(name)]
        info = header[name]
        assert info["dtype"] == "F32" and info["shape"] == list(w.shape)
        assert info["data_offsets"] == [offset, offset + w.nbytes]
        assert data[offset : offset + w.nbytes] == w.astype("<f4").tobytes()
        offset += w.nbytes
    assert offset == len(data)


def test_keccak_is_ethereum_keccak_not_sha3():
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak(b"").hex() == empty
    assert keccak(b"").hex() != hashlib.sha3_256(b"").hexdigest()
    assert hash_hex(b"abc") == "0x" + keccak(b"abc").hex()
    assert len(keccak(b"x" * 1000)) == 32


HASH_SCRIPT = """
from ml.codec import encode, hash_hex
from ml.models import ModelSpec, initial_weights, tensor_names
spec = ModelSpec.from_json({spec!r})
print(hash_hex(encode(initial_weights(spec, 1234), tensor_names(spec))), spec.hash_hex())
"""


def test_hash_is_stable_across_processes():
    spec = ModelSpec("cnn", (8, 8, 1), 10, hidden=(16,), filters=(4, 8))
    expected = f"{hash_hex(encode(initial_weights(spec, 1234), tensor_names(spec)))} {spec.hash_hex()}"
    outputs = set()
    for hashseed in ("0", "1"):  # different dict/str hashing in each child
        proc = subprocess.run(
            [sys.executable, "-c", HASH_SCRIPT.format(spec=spec.to_json())],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr
        outputs.add(proc.stdout.strip())
    assert outputs == {expected}


@FAST
@given(blob=st.binary(max_size=300))
def test_decode_garbage_raises_invalid_update(blob, small_spec):
    with pytest.raises(InvalidUpdateError) as err:
        decode(blob, small_spec)
    assert err.value.reason in REASONS


@FAST
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_decode_corrupted_blob_never_crashes(position, byte, small_spec):
    original = encode(initial_weights(small_spec, 0), tensor_names(small_spec))
    blob = bytearray(original)
    position %= len(blob)
    blob[position] = byte
    changed = bytes(blob) != original
    try:
        back = decode(bytes(blob), small_spec)
    except InvalidUpdateError as err:
        assert err.reason in ("decode", "names", "shape", "dtype")
    else:  # only a changed data byte (or no change) still decodes, to exactly those bytes
        assert not changed or position >= 8 + struct.unpack("<Q", blob[:8])[0]
        assert encode(back, tensor_names(small_spec)) == bytes(blob)


def test_decode_truncated_and_padded(small_spec):
    blob = encode(initial_weights(small_spec, 0), tensor_names(small_spec))
    for bad in (blob[:-4], blob + b"\0\0\0\0", b"", blob[:7]):
        with pytest.raises(InvalidUpdateError) as err:
            decode(bad, small_spec)
        assert err.value.reason == "decode"
    with pytest.raises(InvalidUpdateError, match="expected bytes"):
        decode("not bytes", small_spec)


def test_decode_rejects_non_canonical_encoding(small_spec):
    from safetensors.numpy import save

    weights, names = initial_weights(small_spec, 0), tensor_names(small_spec)
    with_metadata = save(dict(zip(names, weights)), metadata={"note": "same tensors"})
    assert decode(encode(weights, names), small_spec)  # the canonical one is fine
    with pytest.raises(InvalidUpdateError) as err:
        decode(with_metadata, small_spec)
    assert err.value.reason == "decode" and "canonical" in str(err.value)


def test_decode_for_another_spec(small_spec):
    blob = encode(initial_weights(small_spec, 0), tensor_names(small_spec))
    with pytest.raises(InvalidUpdateError) as err:
        decode(blob, ModelSpec("mlp", (8, 8, 1), 10, hidden=(33,)))
    assert err.value.reason == "shape"
    with pytest.raises(InvalidUpdateError) as err:
        decode(blob, CNN)
    assert err.value.reason == "names"


def test_decode_wrong_dtype_and_size(small_spec):
    from safetensors.numpy import save

    names = tensor_names(small_spec)
    as_f64 = save({n: w.astype(np.float64) for n, w in zip(names, initial_weights(small_spec, 0))})
    with pytest.raises(InvalidUpdateError) as err:
        decode(as_f64, small_spec)
    assert err.value.reason == "dtype"
    blob = encode(initial_weights(small_spec, 0), names)
    with pytest.raises(InvalidUpdateError) as err:
        decode(blob, small_spec, max_bytes=len(blob) - 1)
    assert err.value.reason == "size"
    assert decode(blob, small_spec, max_bytes=len(blob))


def test_encode_errors(small_spec):
    weights, names = initial_weights(small_spec, 0), tensor_names(small_spec)
    with pytest.raises(InvalidUpdateError, match="astype") as err:
        encode([w.astype(np.float64) for w in weights], names)
    assert err.value.reason == "dtype"
    with pytest.raises(InvalidUpdateError) as err:
        encode(weights, names[:-1])
    assert err.value.reason == "names"
    with pytest.raises(InvalidUpdateError) as err:
        encode(weights[:2], ["a", "a"])
    assert err.value.reason == "names"


def _bad(weights, i, value):
    out = [w.copy() for w in weights]
    out[i].flat[0] = value
    return out


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda w: _bad(w, 0, np.nan), "non_finite"),
        (lambda w: _bad(w, 3, np.inf), "non_finite"),
        (lambda w: _bad(w, 2, -np.inf), "non_finite"),
        (lambda w: w[:-1], "names"),
        (lambda w: w + [w[-1]], "names"),
        (lambda w: [w[0].T] + w[1:], "shape"),
        (lambda w: [w[0][:, :-1]] + w[1:], "shape"),
        (lambda w: [w[0].astype(np.float64)] + w[1:], "dtype"),
        (lambda w: [w[0].astype(np.float16)] + w[1:], "dtype"),
        (lambda w: [w[0].tolist()] + w[1:], "dtype"),
        (lambda w: dict(zip(["a", "b", "c", "d"], w)), "names"),
        (lambda w: w[0], "names"),
    ],
)
def test_validate_rejects(mutate, reason, small_spec):
    weights = initial_weights(small_spec, 0)
    with pytest.raises(InvalidUpdateError) as err:
        validate(mutate(weights), small_spec)
    assert err.value.reason == reason
    assert str(err.value).startswith(f"[{reason}] ")


def test_validate_accepts_good_weights_list_or_mapping(small_spec):
    weights = initial_weights(small_spec, 0)
    validate(weights, small_spec)
    validate(dict(zip(reversed(tensor_names(small_spec)), reversed(weights))), small_spec)
    size = sum(w.nbytes for w in weights)
    validate(weights, small_spec, max_bytes=size)
    with pytest.raises(InvalidUpdateError) as err:
        validate(weights, small_spec, max_bytes=size - 1)
    assert err.value.reason == "size"


def test_nan_message_counts_values(small_spec):
    weights = initial_weights(small_spec, 0)
    weights[0][:2, :3] = np.nan
    with pytest.raises(InvalidUpdateError, match="'dense_0/kernel' has 6 NaN"):
        validate(weights, small_spec)
