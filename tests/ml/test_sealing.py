"""Tests for ml.sealing (format 2): confidentiality is the library's job; these check the binding.

What matters for the federation is that a sealed update opens only with a
recipient's key *and* only for the (chain, contract, round, client) it was sealed
for, that any change is detected, that every recipient reaches the same verdict on
the same blob (a client cannot make its update readable by some recipients only),
and that a disclosed content key opens exactly its own update and cannot be forged.
Blobs that break the rules are built by hand from the raw primitives, which also
pins the format for other implementations.
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
    BODY_OVERHEAD,
    HEADER_SIZE,
    MAX_RECIPIENTS,
    MIN_SEALED_SIZE,
    PER_RECIPIENT_SIZE,
    KeyFileError,
    KeyFilePermissionWarning,
    Keypair,
    SealAuthenticationError,
    SealContext,
    SealContextError,
    SealError,
    SealEvidenceError,
    SealFormatError,
    SealKeyError,
    SealRecipientsError,
    generate_keypair,
    load_private_key,
    open_sealed,
    open_with_content_key,
    public_key_of,
    recipients_of,
    require_recipients,
    save_private_key,
    seal,
    sealed_overhead,
    unwrap_content_key,
)

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CONTEXT = SealContext(chain_id=31337, contract=CONTRACT, round_id=7, client=CLIENT)
KEYS = generate_keypair()
POOL = [generate_keypair() for _ in range(20)]  # aggregator first, then verifiers
UPDATE = b"canonical weights of client 1, round 7" * 3
OFFSET_ENTRIES = HEADER_SIZE


def publics(pairs: list[Keypair]) -> list[bytes]:
    return [pair.public for pair in pairs]


# --------------------------------------------------------------------------- the spec, by hand


def _hkdf(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def hand_seal(
    plaintext: bytes,
    recipients: list[bytes],
    ctx: SealContext,
    key: bytes,
    *,
    wrapped_keys: dict[int, bytes] | None = None,
    ephemeral_seed: bytes | None = None,
) -> bytes:
    """The documented construction with raw primitives; ``wrapped_keys`` wraps another K for some entries.

    ``ephemeral_seed`` replaces the key-derived ephemeral key by an arbitrary one
    (what a client that ignores the derivation rule would do).
    """
    aad = ctx.aad()
    seed = ephemeral_seed if ephemeral_seed is not None else _hkdf(key, b"chainfl-seal-v2/ephemeral" + aad)
    eph = X25519PrivateKey.from_private_bytes(seed)
    eph_pub = eph.public_key().public_bytes_raw()
    out = b"CFLS" + bytes([2]) + eph_pub + bytes([len(recipients)])
    for i, recipient in enumerate(recipients):
        kek = _hkdf(eph.exchange(X25519PublicKey.from_public_bytes(recipient)), b"chainfl-seal-v2/kek",
                    salt=eph_pub + recipient)
        wrapped = (wrapped_keys or {}).get(i, key)
        out += recipient + AESGCM(kek).encrypt(bytes(12), wrapped, aad + recipient)
    nonce = os.urandom(12)
    return out + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


# --------------------------------------------------------------------------- round trip


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=4096), n=st.integers(1, 6))
def test_round_trip(plaintext: bytes, n: int) -> None:
    pairs = POOL[:n]
    blob = seal(plaintext, publics(pairs), CONTEXT)
    assert len(blob) == len(plaintext) + sealed_overhead(n)
    assert recipients_of(blob) == publics(pairs)
    for pair in pairs:
        assert open_sealed(blob, pair.private, CONTEXT, recipients=publics(pairs)) == plaintext


@pytest.mark.parametrize("n", [1, 2, 3, 20])
def test_every_recipient_opens_and_nobody_else(n: int) -> None:
    pairs = POOL[:n]
    blob = seal(UPDATE, publics(pairs), CONTEXT)
    assert len(blob) == len(UPDATE) + HEADER_SIZE + 80 * n + 12 + 16
    assert recipients_of(blob) == publics(pairs)  # order kept
    keys = {unwrap_content_key(blob, pair.private, CONTEXT) for pair in pairs}
    assert len(keys) == 1  # one content key, wrapped n times
    for pair in pairs:
        assert open_sealed(blob, pair.private, CONTEXT) == UPDATE
    with pytest.raises(SealKeyError, match="not a recipient") as info:
        open_sealed(blob, KEYS.private, CONTEXT)
    assert info.value.reason == "key"
    assert "0x" + KEYS.public.hex() in str(info.value)


def test_overhead_constants() -> None:
    assert (HEADER_SIZE, PER_RECIPIENT_SIZE, BODY_OVERHEAD) == (38, 80, 28)
    assert MIN_SEALED_SIZE == sealed_overhead(1) == 146
    for n in (1, 2, 3, 20, MAX_RECIPIENTS):
        assert sealed_overhead(n) == HEADER_SIZE + 80 * n + 12 + 16
    for bad in (0, 256, -1, True, 1.0):
        with pytest.raises(ValueError):
            sealed_overhead(bad)  # type: ignore[arg-type]


def test_blob_layout_matches_the_documented_format() -> None:
    """Re-derive everything from the spec with raw primitives: pins the format for other implementations."""
    key = bytes(range(32))
    recipients = publics(POOL[:2])
    blob = seal(UPDATE, recipients, CONTEXT, content_key=key)
    assert blob[:4] == b"CFLS" and blob[4] == 2 and blob[37] == 2
    eph_priv = _hkdf(key, b"chainfl-seal-v2/ephemeral" + CONTEXT.aad())
    eph_pub = X25519PrivateKey.from_private_bytes(eph_priv).public_key().public_bytes_raw()
    assert blob[5:37] == eph_pub
    for i, pair in enumerate(POOL[:2]):
        entry = blob[38 + 80 * i : 38 + 80 * (i + 1)]
        assert entry[:32] == pair.public
        shared = X25519PrivateKey.from_private_bytes(pair.private).exchange(X25519PublicKey.from_public_bytes(eph_pub))
        kek = _hkdf(shared, b"chainfl-seal-v2/kek", salt=eph_pub + pair.public)
        assert AESGCM(kek).decrypt(bytes(12), entry[32:], CONTEXT.aad() + pair.public) == key
    nonce, body = blob[198:210], blob[210:]
    assert AESGCM(key).decrypt(nonce, body, CONTEXT.aad()) == UPDATE
    # And the hand-made blob opens with the library: the two agree on every byte but the nonce.
    by_hand = hand_seal(UPDATE, recipients, CONTEXT, key)
    assert by_hand[:198] == blob[:198]
    assert open_sealed(by_hand, POOL[1].private, CONTEXT) == UPDATE


def test_two_seals_of_the_same_update_differ() -> None:
    first, second = (seal(UPDATE, KEYS.public, CONTEXT) for _ in range(2))
    assert first != second
    assert first[5:37] != second[5:37]  # ephemeral public key (from a fresh content key)
    assert open_sealed(first, KEYS.private, CONTEXT) == open_sealed(second, KEYS.private, CONTEXT)


def test_keys_accepted_as_hex() -> None:
    blob = seal(UPDATE, KEYS.public_hex, CONTEXT)
    assert open_sealed(blob, "0x" + KEYS.private.hex(), CONTEXT) == UPDATE
    blob = seal(UPDATE, [pair.public_hex for pair in POOL[:2]], CONTEXT)
    assert open_sealed(blob, POOL[1].private, CONTEXT, recipients=[p.public_hex for p in POOL[:2]]) == UPDATE


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
    key = os.urandom(32)
    blob = seal(UPDATE, publics(POOL[:3]), CONTEXT, content_key=key)
    other = dataclasses.replace(CONTEXT, **change)
    for pair in POOL[:3]:
        with pytest.raises(SealAuthenticationError) as info:
            open_sealed(blob, pair.private, other)
        error = info.value
        assert error.reason == "authentication"
        message = str(error)
        for phrase in ("tampered", "(chain, contract, round, client)"):
            assert phrase in message
        assert other.describe() in message  # the context it was opened with
        assert "0x" + pair.public.hex() in message
    # Even the right content key does not open it there: the ephemeral key depends on the context.
    with pytest.raises(SealEvidenceError, match="another \\(chain, contract, round, client\\)"):
        open_with_content_key(blob, key, other)


def test_aad_is_canonical_fixed_width() -> None:
    aad = CONTEXT.aad()
    assert len(aad) == len(b"chainfl-seal-v2") + 32 + 20 + 32 + 20
    assert aad == (
        b"chainfl-seal-v2"
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


# --------------------------------------------------------------------------- tampering


def _region(index: int, n: int) -> str:
    if index < 5:
        return "magic/version"
    if index < 37:
        return "ephemeral"
    if index == 37:
        return "count"
    if index < HEADER_SIZE + 80 * n:
        return "recipient" if (index - HEADER_SIZE) % 80 < 32 else "wrapped"
    return "body"


def test_any_flipped_bit_is_detected_by_every_recipient() -> None:
    pairs = POOL[:2]
    blob = seal(b"small update", publics(pairs), CONTEXT)
    for index in range(len(blob)):
        region = _region(index, 2)
        for bit in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[index] ^= bit
            for pair in pairs:
                with pytest.raises(SealError) as info:
                    open_sealed(bytes(damaged), pair.private, CONTEXT)
                reason = info.value.reason
                if region == "magic/version":
                    assert reason == "format", (index, bit)
                elif region in ("ephemeral", "wrapped", "body"):
                    # ephemeral: the flipped top bit is a non-canonical encoding (format);
                    # any other flip changes the KEK salt, or the X25519 secret
                    assert reason in ("authentication", "content-key", "format"), (index, bit, reason)
                    if region != "ephemeral":
                        assert reason == "authentication", (index, bit, reason)
                else:  # count, recipient keys: parse errors or "not a recipient"
                    assert reason in ("format", "key", "authentication", "content-key"), (index, bit, reason)


def test_truncated_or_extended_blobs_are_detected() -> None:
    blob = seal(UPDATE, publics(POOL[:2]), CONTEXT)
    for damaged in (blob[:-1], blob + b"\x00", blob[: sealed_overhead(2)]):
        with pytest.raises(SealAuthenticationError, match="body"):
            open_sealed(damaged, POOL[0].private, CONTEXT)
    for damaged in (blob[: sealed_overhead(2) - 1], blob[:100], blob[:HEADER_SIZE]):
        with pytest.raises(SealFormatError, match="truncated"):
            open_sealed(damaged, POOL[0].private, CONTEXT)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "does not start with"),
        (b"CFL", "does not start with"),
        (b"PK\x03\x04" + bytes(100), "does not start with"),
        (b"CFLS", "truncated"),
        (b"CFLS\x02" + bytes(30), "truncated"),
        (b"CFLS\x02" + bytes(33) + bytes(200), "no recipients"),
        (b"CFLS\x02" + bytes(32) + b"\x02" + bytes(170), "truncated.*2 recipient"),
        (b"CFLS\x01" + bytes(80), "version 1.*no longer supported"),
        (b"CFLS\x03" + bytes(200), "version 3"),
        (b"CFLS\x02" + b"\xff" * 32 + b"\x01" + bytes(200), "ephemeral public key is not a canonical"),
        (b"CFLS\x02" + bytes(32) + b"\x01" + b"\xff" * 32 + bytes(200), "entry 1 of 1 holds a non-canonical"),
    ],
    ids=["empty", "short-magic", "zip", "no-version", "truncated", "no-recipients", "short-entries",
         "version-1", "version-3", "ephemeral-noncanonical", "recipient-noncanonical"],
)
def test_malformed_blobs_fail_with_format(blob: bytes, match: str) -> None:
    with pytest.raises(SealFormatError, match=match) as info:
        open_sealed(blob, KEYS.private, CONTEXT)
    assert info.value.reason == "format"
    with pytest.raises(SealFormatError, match=match):
        open_with_content_key(blob, bytes(32), CONTEXT)


def test_a_recipient_listed_twice_is_malformed() -> None:
    one = seal(UPDATE, publics(POOL[:2]), CONTEXT)
    doubled = one[:37] + b"\x03" + one[38:118] + one[38:]  # entry 1 repeated
    with pytest.raises(SealFormatError, match="more than once"):
        open_sealed(doubled, POOL[0].private, CONTEXT)


def test_bad_recipient_keys_are_refused() -> None:
    with pytest.raises(SealKeyError, match="32 bytes"):
        seal(UPDATE, KEYS.public[:31], CONTEXT)
    with pytest.raises(SealKeyError, match="#2 .*low-order"):
        seal(UPDATE, [KEYS.public, bytes(32)], CONTEXT)  # the all-zero point gives an all-zero secret
    with pytest.raises(SealKeyError, match="more than once"):
        seal(UPDATE, [KEYS.public, POOL[0].public, KEYS.public], CONTEXT)
    with pytest.raises(SealKeyError, match="not a canonical"):
        seal(UPDATE, b"\xff" * 32, CONTEXT)
    with pytest.raises(SealKeyError, match="1 to 255 recipients, got 0"):
        seal(UPDATE, [], CONTEXT)
    with pytest.raises(SealKeyError, match="1 to 255 recipients, got 256"):
        seal(UPDATE, [generate_keypair().public for _ in range(256)], CONTEXT)
    with pytest.raises(SealKeyError, match="sequence"):
        seal(UPDATE, 42, CONTEXT)  # type: ignore[arg-type]
    with pytest.raises(SealKeyError, match="content key must be 32 bytes"):
        seal(UPDATE, KEYS.public, CONTEXT, content_key=bytes(16))


def test_255_recipients_is_the_maximum() -> None:
    pairs = [generate_keypair() for _ in range(MAX_RECIPIENTS)]
    blob = seal(b"x", publics(pairs), CONTEXT)
    assert len(blob) == 1 + sealed_overhead(MAX_RECIPIENTS) and blob[37] == 255
    assert open_sealed(blob, pairs[-1].private, CONTEXT) == b"x"


# --------------------------------------------------------------------------- one verdict for all recipients


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_an_entry_wrapping_another_key_is_rejected_by_every_recipient(bad: int) -> None:
    """A client cannot make its update readable by some recipients and not others."""
    pairs = POOL[:3]
    key, other_key = os.urandom(32), os.urandom(32)
    blob = hand_seal(UPDATE, publics(pairs), CONTEXT, key, wrapped_keys={bad: other_key})
    for i, pair in enumerate(pairs):
        if i == bad:
            assert unwrap_content_key(blob, pair.private, CONTEXT) == other_key
            with pytest.raises(SealEvidenceError, match="not this blob's"):
                open_sealed(blob, pair.private, CONTEXT)
        else:  # its own entry is fine, yet it sees the seal as invalid
            assert unwrap_content_key(blob, pair.private, CONTEXT) == key
            with pytest.raises(SealAuthenticationError, match=f"entry {bad + 1} of 3 .*does not wrap"):
                open_sealed(blob, pair.private, CONTEXT)
    with pytest.raises(SealAuthenticationError, match=f"entry {bad + 1} of 3"):
        open_with_content_key(blob, key, CONTEXT)  # and so does anyone given K


@pytest.mark.parametrize("bad", [0, 2])
def test_a_corrupted_entry_is_rejected_by_every_recipient(bad: int) -> None:
    pairs = POOL[:3]
    blob = bytearray(seal(UPDATE, publics(pairs), CONTEXT))
    blob[HEADER_SIZE + 80 * bad + 32 + 5] ^= 0x40  # inside wrapped_bad
    for i, pair in enumerate(pairs):
        match = "entry for this key .* does not unwrap" if i == bad else f"entry {bad + 1} of 3"
        with pytest.raises(SealAuthenticationError, match=match):
            open_sealed(bytes(blob), pair.private, CONTEXT)


def test_an_ephemeral_key_not_derived_from_the_content_key_is_rejected_by_every_recipient() -> None:
    """A classic ECIES seal (random ephemeral key) cannot be checked by a key holder, so it is invalid."""
    pairs = POOL[:3]
    blob = hand_seal(UPDATE, publics(pairs), CONTEXT, os.urandom(32), ephemeral_seed=os.urandom(32))
    for pair in pairs:
        with pytest.raises(SealEvidenceError) as info:
            open_sealed(blob, pair.private, CONTEXT)
        assert info.value.reason == "content-key"


def test_leaving_out_a_required_recipient_is_invalid_for_everyone_who_checks() -> None:
    required = publics(POOL[:3])
    blob = seal(UPDATE, required[:2], CONTEXT)  # the last verifier left out
    with pytest.raises(SealKeyError, match="not a recipient"):
        open_sealed(blob, POOL[2].private, CONTEXT)
    for pair in POOL[:2]:
        assert open_sealed(blob, pair.private, CONTEXT) == UPDATE  # why recipients= matters
        with pytest.raises(SealRecipientsError, match="missing 0x") as info:
            open_sealed(blob, pair.private, CONTEXT, recipients=required)
        assert info.value.reason == "recipients"
    with pytest.raises(SealRecipientsError, match="another order"):
        require_recipients(seal(UPDATE, required[::-1], CONTEXT), required)
    with pytest.raises(SealRecipientsError, match="not required 0x"):
        require_recipients(seal(UPDATE, required + [KEYS.public], CONTEXT), required)
    require_recipients(seal(UPDATE, required, CONTEXT), required)


# --------------------------------------------------------------------------- the content key as evidence


def test_a_disclosed_key_opens_exactly_its_blob() -> None:
    pairs = POOL[:3]
    key = os.urandom(32)
    blob = seal(UPDATE, publics(pairs), CONTEXT, content_key=key)
    assert unwrap_content_key(blob, pairs[1].private, CONTEXT) == key
    assert open_with_content_key(blob, key, CONTEXT, recipients=publics(pairs)) == UPDATE
    # Another update of the same client (next seal, or a re-seal) has another key.
    another = seal(b"another update of the same client", publics(pairs), CONTEXT)
    with pytest.raises(SealEvidenceError, match="not this blob's"):
        open_with_content_key(another, key, CONTEXT)
    other_client = dataclasses.replace(CONTEXT, client=OTHER)
    with pytest.raises(SealEvidenceError):
        open_with_content_key(seal(UPDATE, publics(pairs), other_client), key, other_client)


def test_a_forged_key_is_detected_as_forged() -> None:
    blob = seal(UPDATE, publics(POOL[:3]), CONTEXT)
    for _ in range(5):
        with pytest.raises(SealEvidenceError, match="forged") as info:
            open_with_content_key(blob, os.urandom(32), CONTEXT)
        assert isinstance(info.value, SealAuthenticationError)
    with pytest.raises(SealKeyError, match="32 bytes"):
        open_with_content_key(blob, b"short", CONTEXT)
    with pytest.raises(SealKeyError, match="32 bytes"):
        open_with_content_key(blob, "0x" + "00" * 32, CONTEXT)  # type: ignore[arg-type]


def test_a_tampered_body_fails_for_the_key_holder_too() -> None:
    key = os.urandom(32)
    blob = bytearray(seal(UPDATE, publics(POOL[:2]), CONTEXT, content_key=key))
    blob[-20] ^= 1
    with pytest.raises(SealAuthenticationError, match="body .* does not open under the blob's content key"):
        open_with_content_key(bytes(blob), key, CONTEXT)


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
