"""Encryption of model updates to the aggregator ("sealing").

Updates travel through a store that anyone may read (a shared folder, IPFS), and
a client's weights leak information about its training data, so each update is
encrypted to the aggregator's public key, which the contract publishes as a
``bytes32``. The scheme is ECIES-like, from well-reviewed primitives only:

* a fresh (ephemeral) X25519 key per blob, agreed with the aggregator's key;
* HKDF-SHA256 of the shared secret (salt = ephemeral public || recipient public,
  info = ``b"chainfl-seal-v1"``) into a 32-byte AES key;
* AES-256-GCM with a random 12-byte nonce.

The associated data is :meth:`SealContext.aad`: (chain id, contract, round,
client). A blob copied to another round, client, chain or deployment therefore
fails to open instead of being counted twice or credited to someone else --
the commitment on chain alone cannot prevent that, since a copier commits to
the same bytes.

Blob layout (all fixed sizes, so no length fields are needed)::

    b"CFLS" | version (1 byte, = 1) | ephemeral public (32) | nonce (12) | ciphertext + tag (>= 16)
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import is_hex_address, to_checksum_address

__all__ = [
    "MAGIC",
    "VERSION",
    "INFO",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "HEADER_SIZE",
    "MIN_SEALED_SIZE",
    "SealError",
    "SealFormatError",
    "SealAuthenticationError",
    "SealKeyError",
    "SealContextError",
    "KeyFileError",
    "KeyFilePermissionWarning",
    "SealContext",
    "Keypair",
    "generate_keypair",
    "public_key_of",
    "save_private_key",
    "load_private_key",
    "seal",
    "open_sealed",
]

MAGIC: Final = b"CFLS"
VERSION: Final = 1
INFO: Final = b"chainfl-seal-v1"
"""Domain separation for both the HKDF info and the AAD prefix."""
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
HEADER_SIZE: Final = len(MAGIC) + 1 + KEY_SIZE + NONCE_SIZE
MIN_SEALED_SIZE: Final = HEADER_SIZE + TAG_SIZE
"""An empty plaintext still carries the 16-byte GCM tag."""

_UINT256_MAX: Final = 2**256 - 1


# --------------------------------------------------------------------------- errors


class SealError(Exception):
    """Base class; ``reason`` is a stable, machine-readable tag for callers.

    The aggregator maps ``reason`` to its decision (e.g. reject the update on
    "authentication") without parsing messages.
    """

    reason: str = "seal"


class SealFormatError(SealError):
    """The bytes are not a sealed blob of a version this code can open."""

    reason = "format"


class SealAuthenticationError(SealError):
    """The blob is well formed but does not open with this key and context."""

    reason = "authentication"


class SealKeyError(SealError, ValueError):
    """A key has the wrong size or is not a usable X25519 key."""

    reason = "key"


class SealContextError(SealError, ValueError):
    """A :class:`SealContext` field is out of range or not an address."""

    reason = "context"


class KeyFileError(SealError):
    """A private key file is missing, malformed, or would be overwritten."""

    reason = "key-file"


class KeyFilePermissionWarning(UserWarning):
    """A private key file is readable by other users."""


# --------------------------------------------------------------------------- context


def _address(value: str, what: str) -> str:
    """``value`` as a checksum address, so that case never changes the AAD."""
    if not isinstance(value, str) or not is_hex_address(value):
        raise SealContextError(
            f"{what} must be a 0x-prefixed 20-byte hex address, got {value!r}"
        )
    return to_checksum_address(value)


def _uint256(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT256_MAX:
        raise SealContextError(f"{what} must be an integer in [0, 2**256), got {value!r}")
    return value


@dataclass(frozen=True)
class SealContext:
    """Where a sealed update belongs: (chain, contract, round, client).

    Addresses are normalised to their checksum form on construction, so contexts
    built from lowercase event data and from checksummed account objects compare
    (and authenticate) equal.
    """

    chain_id: int
    contract: str
    round_id: int
    client: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain_id", _uint256(self.chain_id, "chain_id"))
        object.__setattr__(self, "contract", _address(self.contract, "contract"))
        object.__setattr__(self, "round_id", _uint256(self.round_id, "round_id"))
        object.__setattr__(self, "client", _address(self.client, "client"))

    def aad(self) -> bytes:
        """Canonical associated data: ``INFO | chain_id (32 BE) | contract (20) | round (32 BE) | client (20)``.

        Fixed-width fields (ABI-style) so that no two contexts share an encoding.
        """
        return (
            INFO
            + self.chain_id.to_bytes(32, "big")
            + bytes.fromhex(self.contract[2:])
            + self.round_id.to_bytes(32, "big")
            + bytes.fromhex(self.client[2:])
        )

    def describe(self) -> str:
        """One line for error messages."""
        return (
            f"chain_id={self.chain_id}, contract={self.contract}, "
            f"round_id={self.round_id}, client={self.client}"
        )


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keypair:
    """An X25519 key pair as raw bytes; ``public`` is what goes on chain as ``bytes32``.

    ``private`` is kept out of ``repr`` so it does not end up in logs or tracebacks.
    """

    private: bytes = field(repr=False)
    public: bytes

    @property
    def public_hex(self) -> str:
        """The public key as 0x-hex, the form passed to the contract constructor."""
        return "0x" + self.public.hex()


def _key_bytes(value: bytes | str, what: str) -> bytes:
    """32 raw key bytes from bytes-like values (``HexBytes`` included) or 0x-hex text."""
    if isinstance(value, str):
        text = value.strip()
        text = text[2:] if text[:2].lower() == "0x" else text
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise SealKeyError(f"{what} is not hex: {value!r}") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raise SealKeyError(f"{what} must be bytes or 0x-hex, not {type(value).__name__}")
    if len(raw) != KEY_SIZE:
        raise SealKeyError(f"{what} must be {KEY_SIZE} bytes (X25519), got {len(raw)}")
    return raw


def generate_keypair() -> Keypair:
    """A fresh random X25519 key pair (the aggregator's, typically)."""
    private = X25519PrivateKey.generate()
    return Keypair(private.private_bytes_raw(), private.public_key().public_bytes_raw())


def public_key_of(private: bytes | str) -> bytes:
    """The 32-byte public key of a 32-byte X25519 private key."""
    key = X25519PrivateKey.from_private_bytes(_key_bytes(private, "private key"))
    return key.public_key().public_bytes_raw()


def _parse_key_file(data: bytes, path: Path) -> bytes:
    """Key file contents: 0x-hex text (what we write) or exactly 32 raw bytes."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = None
    if text is not None:
        digits = text[2:] if text[:2].lower() == "0x" else text
        if len(digits) == 2 * KEY_SIZE:
            try:
                return bytes.fromhex(digits)
            except ValueError:
                pass
    if len(data) == KEY_SIZE:
        return data
    raise KeyFileError(
        f"{path} is not a private key file: expected 0x followed by {2 * KEY_SIZE} hex "
        f"digits (or {KEY_SIZE} raw bytes), found {len(data)} bytes. Is it the right "
        "file? Public keys and Ethereum account keystores are not accepted."
    )


def load_private_key(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte private key in ``path``; warns if other users can read it."""
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(
            f"no private key at {file}. Create one with generate_keypair() and "
            "save_private_key(), and publish its public key to the contract."
        ) from None
    except IsADirectoryError:
        raise KeyFileError(f"{file} is a folder, not a private key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {file}: {exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        warnings.warn(
            f"private key {file} is accessible by other users "
            f"(mode {stat.S_IMODE(mode):#o}); run `chmod 600 {file}`",
            KeyFilePermissionWarning,
            stacklevel=2,
        )
    return _parse_key_file(data, file)


def save_private_key(path: str | os.PathLike[str], private: bytes | str) -> Path:
    """Write ``private`` to ``path`` (mode 0o600, atomically); returns the path.

    Saving the key that is already there is a no-op. A *different* existing key is
    never overwritten: updates sealed to it could no longer be opened, and the
    public key on chain would no longer match.
    """
    raw = _key_bytes(private, "private key")
    public_key_of(raw)  # reject unusable keys before writing anything
    file = Path(path).expanduser()
    if file.exists():
        _check_same_key(file, raw)
        return file
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=file.parent, prefix=".tmp-key-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(("0x" + raw.hex() + "\n").encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # A hard link never replaces an existing file, unlike os.replace, so a
            # key written concurrently by another process is not clobbered.
            os.link(tmp, file)
        except FileExistsError:
            _check_same_key(file, raw)
        except OSError:
            if file.exists():  # pragma: no cover - only on filesystems without links
                _check_same_key(file, raw)
            else:  # pragma: no cover
                os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    return file


def _check_same_key(file: Path, raw: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeyFilePermissionWarning)
        existing = load_private_key(file)
    if existing != raw:
        raise KeyFileError(
            f"refusing to overwrite {file}: it holds a different private key "
            f"(public key 0x{public_key_of(existing).hex()}). Updates sealed to that "
            "key can only be opened with it; if you really mean to replace it, move "
            "the file aside first and publish the new public key."
        )


# --------------------------------------------------------------------------- seal / open


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=INFO,
    ).derive(shared)


def seal(plaintext: bytes, recipient_public: bytes | str, context: SealContext) -> bytes:
    """Encrypt ``plaintext`` to ``recipient_public``, bound to ``context``.

    Every call uses a new ephemeral key and nonce, so sealing the same update
    twice gives different blobs (and different commitments).
    """
    if not isinstance(context, SealContext):
        raise SealContextError(f"context must be a SealContext, not {type(context).__name__}")
    recipient = _key_bytes(recipient_public, "recipient public key")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError:
        raise SealKeyError(
            f"recipient public key 0x{recipient.hex()} is not a usable X25519 key "
            "(low-order point); check the aggregator key published on chain"
        ) from None
    key = _derive_key(shared, ephemeral_public, recipient)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(plaintext), context.aad())
    return MAGIC + bytes([VERSION]) + ephemeral_public + nonce + ciphertext


def open_sealed(blob: bytes, recipient_private: bytes | str, context: SealContext) -> bytes:
    """Decrypt a blob made by :func:`seal`, checking it was sealed for ``context``.

    Raises :class:`SealFormatError` ("format") for bytes that are not a sealed
    blob, and :class:`SealAuthenticationError` ("authentication") when the key or
    context is wrong or any byte was changed; GCM cannot tell these apart.
    """
    if not isinstance(context, SealContext):
        raise SealContextError(f"context must be a SealContext, not {type(context).__name__}")
    data = bytes(blob)
    if data[: len(MAGIC)] != MAGIC:
        raise SealFormatError(
            f"not a sealed update: it does not start with {MAGIC!r} (starts with "
            f"{data[:len(MAGIC)]!r}, {len(data)} bytes). Was it stored unsealed, or is "
            "it another kind of blob (e.g. a global model)?"
        )
    if len(data) < MIN_SEALED_SIZE:
        raise SealFormatError(
            f"sealed blob is truncated: {len(data)} bytes, at least {MIN_SEALED_SIZE} "
            "are needed (header and tag)"
        )
    version = data[len(MAGIC)]
    if version != VERSION:
        raise SealFormatError(
            f"sealed blob has version {version}, this code opens version {VERSION} "
            "only; upgrade chainfl (or the client that sealed it)"
        )
    offset = len(MAGIC) + 1
    ephemeral_public = data[offset : offset + KEY_SIZE]
    nonce = data[offset + KEY_SIZE : HEADER_SIZE]
    ciphertext = data[HEADER_SIZE:]

    private = X25519PrivateKey.from_private_bytes(_key_bytes(recipient_private, "private key"))
    recipient_public = private.public_key().public_bytes_raw()
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _derive_key(shared, ephemeral_public, recipient_public)
        return AESGCM(key).decrypt(nonce, ciphertext, context.aad())
    except (InvalidTag, ValueError):
        # ValueError: a low-order ephemeral key, which only a forged blob carries.
        raise SealAuthenticationError(
            f"sealed blob ({len(data)} bytes) does not open: it was either tampered "
            f"with, sealed to another aggregator key (this key's public key is "
            f"0x{recipient_public.hex()}), or sealed for another (chain, contract, "
            f"round, client). Opened with {context.describe()}."
        ) from None
