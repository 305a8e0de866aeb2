"""Tests for ml.sealing: confidentiality is the library's job; these check the binding.

What matters for the federation is that a sealed update opens only with the
aggregator key *and* only for the (chain, contract, round, client) it was sealed
for, that any change is detected, and that failures say which kind they are.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.sealing import (
    HEADER_SIZE,
    MIN_SEALED_SIZE,
    KeyFileError,
    KeyFilePermissionWarning,
    Keypair,
    SealAuthenticationError,
    SealContext,
    SealContextError,
    SealError,
    SealFormatError,
    SealKeyError,
    generate_keypair,
    load_private_key,
    open_sealed,
    public_key_of,
    save_private_key,
    seal,
)

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CONTEXT = SealContext(chain_id=31337, contract=CONTRACT, round_id=7, client=CLIENT)
KEYS = generate_keypair()
UPDATE = b"canonical weights of client 1, round 7" * 3


# --------------------------------------------------------------------------- round trip


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=4096))
def test_round_trip(plaintext: bytes) -> None:
    blob = seal(plaintext, KEYS.public, CONTEXT)
    assert len(blob) == MIN_SEALED_SIZE + len(plaintext)
    assert open_sealed(blob, KEYS.private, CONTEXT) == plaintext


def test_blob_layout_matches_the_documented_format() -> None:
    """Re-derive the key from the spec with raw primitives: pins the format for other implementations."""
    blob = seal(UPDATE, KEYS.public, CONTEXT)
    assert blob[:4] == b"CFLS" and blob[4] == 1
    ephemeral, nonce, body = blob[5:37], blob[37:49], blob[49:]
    assert HEADER_SIZE == 49
    shared = X25519PrivateKey.from_private_bytes(KEYS.private).exchange(
        X25519PublicKey.from_public_bytes(ephemeral)
    )
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + KEYS.public, info=b"chainfl-seal-v1"
    ).derive(shared)
    assert AESGCM(key).decrypt(nonce, body, CONTEXT.aad()) == UPDATE


def test_two_seals_of_the_same_update_differ() -> None:
    first, second = (seal(UPDATE, KEYS.public, CONTEXT) for _ in range(2))
    assert first != second
    assert first[5:37] != second[5:37]  # ephemeral public key
    assert first[37:49] != second[37:49]  # nonce
    assert open_sealed(first, KEYS.private, CONTEXT) == open_sealed(second, KEYS.private, CONTEXT)


def test_keys_accepted_as_hex() -> None:
    blob = seal(UPDATE, KEYS.public_hex, CONTEXT)
    assert open_sealed(blob, "0x" + KEYS.private.hex(), CONTEXT) == UPDATE


# --------------------------------------------------------------------------- context binding


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"contract": OTHER},
        {"round_id": 8},
        {"client": OTHER},
    ],
    ids=lambda change: next(iter(change)),
)
def test_blob_does_not_open_in_another_context(change: dict[str, object]) -> None:
    blob = seal(UPDATE, KEYS.public, CONTEXT)
    other = dataclasses.replace(CONTEXT, **change)
    with pytest.raises(SealAuthenticationError) as info:
        open_sealed(blob, KEYS.private, other)
    error = info.value
    assert error.reason == "authentication"
    message = str(error)
    for phrase in ("tampered", "another aggregator key", "(chain, contract, round, client)"):
        assert phrase in message
    assert other.describe() in message  # the context it was opened with
    assert "0x" + KEYS.public.hex() in message


def test_aad_is_canonical_fixed_width() -> None:
    aad = CONTEXT.aad()
    assert len(aad) == len(b"chainfl-seal-v1") + 32 + 20 + 32 + 20
    assert aad == (
        b"chainfl-seal-v1"
        + (31337).to_bytes(32, "big")
        + bytes.fromhex(CONTRACT[2:])
        + (7).to_bytes(32, "big")
        + bytes.fromhex(CLIENT[2:])
    )


def test_addresses_are_case_insensitive() -> None:
    lower = SealContext(31337, CONTRACT.lower(), 7, CLIENT.lower())
    upper = SealContext(31337, "0x" + CONTRACT[2:].upper(), 7, "0x" + CLIENT[2:].upper())
    assert lower == upper == CONTEXT
    assert lower.contract == CONTRACT and lower.client == CLIENT  # checksum form
    assert lower.aad() == CONTEXT.aad()
    assert open_sealed(seal(UPDATE, KEYS.public, lower), KEYS.private, upper) == UPDATE


@pytest.mark.parametrize(
    "fields",
    [
        {"contract": "0x1234"},
        {"client": "not an address"},
        {"round_id": -1},
        {"chain_id": 2**256},
        {"round_id": True},
        {"chain_id": "1"},
    ],
)
def test_invalid_context_fields_are_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"chain_id": 1, "contract": CONTRACT, "round_id": 0, "client": CLIENT}
    values.update(fields)
    with pytest.raises(SealContextError) as info:
        SealContext(**values)  # type: ignore[arg-type]
    assert info.value.reason == "context"
    assert next(iter(fields)) in str(info.value)


# --------------------------------------------------------------------------- tampering and keys


def test_any_flipped_bit_is_detected() -> None:
    blob = seal(b"small update", KEYS.public, CONTEXT)
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[index] ^= bit
            with pytest.raises(SealError) as info:
                open_sealed(bytes(damaged), KEYS.private, CONTEXT)
            expected = "format" if index < 5 else "authentication"
            assert info.value.reason == expected, (index, bit)


def test_truncated_or_extended_ciphertext_is_detected() -> None:
    blob = seal(UPDATE, KEYS.public, CONTEXT)
    for damaged in (blob[:-1], blob + b"\x00", blob[:MIN_SEALED_SIZE]):
        with pytest.raises(SealAuthenticationError):
            open_sealed(damaged, KEYS.private, CONTEXT)


def test_wrong_private_key_fails_authentication() -> None:
    blob = seal(UPDATE, KEYS.public, CONTEXT)
    with pytest.raises(SealAuthenticationError, match="another aggregator key"):
        open_sealed(blob, generate_keypair().private, CONTEXT)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "does not start with"),
        (b"CFL", "does not start with"),
        (b"PK\x03\x04" + bytes(100), "does not start with"),
        (b"CFLS\x01" + bytes(30), "truncated"),
        (b"CFLS\x02" + bytes(80), "version 2"),
    ],
    ids=["empty", "short-magic", "zip", "truncated", "version"],
)
def test_malformed_blobs_fail_with_format(blob: bytes, match: str) -> None:
    with pytest.raises(SealFormatError, match=match) as info:
        open_sealed(blob, KEYS.private, CONTEXT)
    assert info.value.reason == "format"


def test_bad_recipient_keys_are_refused() -> None:
    with pytest.raises(SealKeyError, match="32 bytes"):
        seal(UPDATE, KEYS.public[:31], CONTEXT)
    with pytest.raises(SealKeyError, match="low-order"):
        seal(UPDATE, bytes(32), CONTEXT)  # the all-zero point gives an all-zero secret


def test_public_key_of_matches_keypair() -> None:
    pair = generate_keypair()
    assert isinstance(pair, Keypair)
    assert len(pair.private) == len(pair.public) == 32
    assert public_key_of(pair.private) == pair.public
    assert pair.private.hex() not in repr(pair)


# --------------------------------------------------------------------------- key files


def test_save_and_load_private_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "aggregator.key"
    assert save_private_key(path, KEYS.private) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_private_key(path) == KEYS.private
    assert [p.name for p in path.parent.iterdir()] == ["aggregator.key"]  # no temp files


def test_saving_the_same_key_again_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.key"
    save_private_key(path, KEYS.private)
    save_private_key(path, KEYS.private)
    assert load_private_key(path) == KEYS.private


def test_a_different_existing_key_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.key"
    save_private_key(path, KEYS.private)
    with pytest.raises(KeyFileError, match="refusing to overwrite") as info:
        save_private_key(path, generate_keypair().private)
    assert KEYS.public.hex() in str(info.value)
    assert load_private_key(path) == KEYS.private


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no private key at .*generate_keypair"):
        load_private_key(tmp_path / "absent.key")


@pytest.mark.parametrize("content", [b"0x1234\n", b"", bytes(33), b"0x" + b"g" * 64])
def test_malformed_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not a private key file"):
        load_private_key(path)


def test_raw_32_byte_key_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "raw.key"
    path.write_bytes(KEYS.private)
    os.chmod(path, 0o600)
    assert load_private_key(path) == KEYS.private


def test_readable_key_file_warns(tmp_path: Path) -> None:
    path = save_private_key(tmp_path / "aggregator.key", KEYS.private)
    os.chmod(path, 0o644)
    with pytest.warns(KeyFilePermissionWarning, match="chmod 600"):
        assert load_private_key(path) == KEYS.private
