"""Encryption of model updates to the aggregator and the verifiers ("sealing").

Updates travel through a store that anyone may read (a shared folder, IPFS), and
a client's weights leak information about its training data, so each update is
encrypted. The contract publishes the X25519 public keys (``bytes32``) of the
aggregator and of every verifier; each of them must be able to read every update,
and when the aggregator rejects one it discloses that update's *content key* as
evidence, so that anyone can re-check that one rejection and learn nothing about
any other update. The scheme (format version 2) is built from well-reviewed
primitives only (X25519, HKDF-SHA256, AES-256-GCM):

* a fresh random 32-byte content key ``K`` per blob;
* the body is ``AES-256-GCM(K, random 12-byte nonce, plaintext, aad=ctx.aad())``;
* the ephemeral X25519 private key is **derived from K**:
  ``eph_priv = HKDF-SHA256(K, salt=None, info=b"chainfl-seal-v2/ephemeral" + ctx.aad())``;
* per recipient ``R_i``: ``KEK_i = HKDF-SHA256(X25519(eph_priv, R_i), salt=eph_pub || R_i,
  info=b"chainfl-seal-v2/kek")`` and ``wrapped_i = AES-256-GCM(KEK_i, nonce=12 zero bytes,
  K, aad=ctx.aad() || R_i)`` (48 bytes). The zero nonce is safe: ``KEK_i`` is used
  for exactly one encryption (it depends on ``K``, the context and ``R_i``).

Why the ephemeral key is derived from K: anyone who holds K can recompute
``eph_priv`` and therefore *every* recipient's key-encryption key, so a holder of
K (a recipient that unwrapped it, or the public once K is disclosed as evidence)
checks that every recipient's entry wraps the same K and that the body opens
under it (:func:`open_with_content_key`). A client therefore cannot make its
update readable by some recipients and not by others: every honest recipient
that opens the blob runs the same complete check on the same (blob, K) and
reaches the same verdict. And a disclosed K cannot be forged by whoever
publishes the evidence: it must reproduce the blob's ephemeral public key.

The associated data is :meth:`SealContext.aad`: (chain id, contract, round,
client). A blob copied to another round, client, chain or deployment therefore
fails to open instead of being counted twice or credited to someone else --
the commitment on chain alone cannot prevent that, since a copier commits to
the same bytes.

Blob layout (fixed-size fields; the only count is ``n``)::

    b"CFLS" | version (1 byte, = 2) | eph_pub (32) | n (1 byte, 1..255)
          | n x ( R_i (32) | wrapped_i (48) )      # PER_RECIPIENT_SIZE = 80
          | nonce (12) | ciphertext + tag (>= 16)

so ``len(blob) == len(plaintext) + sealed_overhead(n)`` with
``sealed_overhead(n) = HEADER_SIZE (38) + 80 * n + 12 + 16``: 146 bytes for the
aggregator alone, 80 more per verifier.

Callers that know who the recipients must be (the aggregator and the job's
verifiers, in the contract's order) pass them as ``recipients=`` to
:func:`open_sealed` / :func:`open_with_content_key`: a blob that leaves out a
verifier is then invalid for *everyone*, not only for the verifier it leaves out.
"""

from __future__ import annotations

import hmac
import os
import stat
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

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
    "EPHEMERAL_INFO",
    "KEK_INFO",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "WRAPPED_KEY_SIZE",
    "PER_RECIPIENT_SIZE",
    "HEADER_SIZE",
    "BODY_OVERHEAD",
    "MAX_RECIPIENTS",
    "MIN_SEALED_SIZE",
    "SealError",
    "SealFormatError",
    "SealAuthenticationError",
    "SealEvidenceError",
    "SealRecipientsError",
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
    "unwrap_content_key",
    "open_with_content_key",
    "recipients_of",
    "require_recipients",
    "sealed_overhead",
]

MAGIC: Final = b"CFLS"
VERSION: Final = 2
INFO: Final = b"chainfl-seal-v2"
"""Domain separation: the prefix of every AAD (:meth:`SealContext.aad`)."""
EPHEMERAL_INFO: Final = b"chainfl-seal-v2/ephemeral"
"""HKDF info (followed by the context's AAD) deriving the ephemeral private key from K."""
KEK_INFO: Final = b"chainfl-seal-v2/kek"
"""HKDF info deriving a recipient's key-encryption key from its X25519 secret."""
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
WRAPPED_KEY_SIZE: Final = KEY_SIZE + TAG_SIZE
"""48: the content key encrypted under one recipient's KEK (zero nonce, not stored)."""
PER_RECIPIENT_SIZE: Final = KEY_SIZE + WRAPPED_KEY_SIZE
"""80: one recipient entry, its public key and its wrapped content key."""
HEADER_SIZE: Final = len(MAGIC) + 1 + KEY_SIZE + 1
"""38: magic, version, ephemeral public key and recipient count, before the entries."""
BODY_OVERHEAD: Final = NONCE_SIZE + TAG_SIZE
"""28: the body's nonce and GCM tag."""
MAX_RECIPIENTS: Final = 255
MIN_SEALED_SIZE: Final = HEADER_SIZE + PER_RECIPIENT_SIZE + BODY_OVERHEAD
"""146: an empty plaintext sealed to one recipient."""
_ZERO_NONCE: Final = bytes(NONCE_SIZE)
_FIELD_PRIME: Final = 2**255 - 19

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
    """The blob is well formed but does not open with this key and context.

    Also raised when a recipient entry does not wrap the content key, or the body
    does not open under it: the seal is then invalid for every recipient.
    """

    reason = "authentication"


class SealEvidenceError(SealAuthenticationError):
    """A content key does not reproduce the blob's ephemeral public key.

    Either the key is not this blob's (forged, or another update's), or it is
    checked in another (chain, contract, round, client) than it was sealed for.
    A recipient that unwraps such a key from its own entry holds an invalid seal.
    """

    reason = "content-key"


class SealRecipientsError(SealError):
    """The blob is not sealed to exactly the recipients the caller requires."""

    reason = "recipients"


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


class _Parsed(NamedTuple):
    size: int
    ephemeral_public: bytes
    entries: tuple[tuple[bytes, bytes], ...]  # (recipient public key, wrapped content key)
    nonce: bytes
    ciphertext: bytes

    @property
    def recipients(self) -> list[bytes]:
        return [recipient for recipient, _ in self.entries]


def sealed_overhead(n_recipients: int) -> int:
    """Bytes a sealed blob adds to its plaintext: ``HEADER_SIZE + 80 * n + 12 + 16``."""
    if isinstance(n_recipients, bool) or not isinstance(n_recipients, int) or not (
        1 <= n_recipients <= MAX_RECIPIENTS
    ):
        raise ValueError(f"a blob has 1 to {MAX_RECIPIENTS} recipients, not {n_recipients!r}")
    return HEADER_SIZE + PER_RECIPIENT_SIZE * n_recipients + BODY_OVERHEAD


def _check_context(context: object) -> None:
    if not isinstance(context, SealContext):
        raise SealContextError(f"context must be a SealContext, not {type(context).__name__}")


def _short(key: bytes) -> str:
    return "0x" + key[:4].hex() + "…"


def _is_canonical_point(raw: bytes) -> bool:
    """True for the one standard encoding of an X25519 u-coordinate (u < 2**255 - 19).

    X25519 ignores the top bit and reduces modulo p, so several byte strings name
    the same key. Only the canonical one is accepted, so that matching a
    recipient entry by its bytes gives the same answer for every party.
    """
    return int.from_bytes(raw, "little") < _FIELD_PRIME


def _recipient_list(recipients: bytes | str | Sequence[bytes | str]) -> list[bytes]:
    """One public key or a sequence of them, as distinct canonical 32-byte keys, order kept."""
    if isinstance(recipients, (bytes, bytearray, memoryview, str)):
        keys = [_key_bytes(recipients, "recipient public key")]
    else:
        try:
            items = list(recipients)
        except TypeError:
            raise SealKeyError(
                "recipients must be a 32-byte public key or a sequence of them, not "
                f"{type(recipients).__name__}"
            ) from None
        if not 1 <= len(items) <= MAX_RECIPIENTS:
            raise SealKeyError(f"a blob has 1 to {MAX_RECIPIENTS} recipients, got {len(items)}")
        keys = [_key_bytes(item, f"recipient public key #{i + 1}") for i, item in enumerate(items)]
    for i, key in enumerate(keys):
        if not _is_canonical_point(key):
            raise SealKeyError(
                f"recipient public key #{i + 1} (0x{key.hex()}) is not a canonical X25519 "
                "public key; check the keys published on chain"
            )
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise SealKeyError(f"recipient public key 0x{twice.hex()} is listed more than once")
    return keys


def _content_key_bytes(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise SealKeyError(f"a content key must be {KEY_SIZE} bytes, not {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != KEY_SIZE:
        raise SealKeyError(f"a content key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def _ephemeral(content_key: bytes, context: SealContext) -> X25519PrivateKey:
    """``eph_priv = HKDF-SHA256(K, salt=None, info=EPHEMERAL_INFO + ctx.aad())``."""
    seed = HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=EPHEMERAL_INFO + context.aad()
    ).derive(content_key)
    return X25519PrivateKey.from_private_bytes(seed)


def _kek(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    """``KEK_i = HKDF-SHA256(X25519 secret, salt=eph_pub || R_i, info=KEK_INFO)``."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=ephemeral_public + recipient_public,
        info=KEK_INFO,
    ).derive(shared)


def _unwrap_entry(shared: bytes, ephemeral_public: bytes, recipient: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """K from one recipient entry, given the X25519 secret of (ephemeral, recipient); InvalidTag if not."""
    return AESGCM(_kek(shared, ephemeral_public, recipient)).decrypt(_ZERO_NONCE, wrapped, aad + recipient)


def seal(
    plaintext: bytes,
    recipients: bytes | str | Sequence[bytes | str],
    context: SealContext,
    *,
    content_key: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` to every key in ``recipients``, bound to ``context``.

    ``recipients`` is one 32-byte X25519 public key (bytes or 0x-hex) or a
    sequence of 1 to 255 distinct ones; their order is kept in the blob. Each
    call draws a new content key and nonce, so sealing the same update twice
    gives different blobs (and different commitments). ``content_key`` fixes K;
    it is meant for tests: never seal two updates under one key.

    The ephemeral key is derived from K (see the module docstring), so that
    anyone holding K can check that every recipient entry wraps the same K.
    """
    _check_context(context)
    keys = _recipient_list(recipients)
    key = os.urandom(KEY_SIZE) if content_key is None else _content_key_bytes(content_key)
    ephemeral = _ephemeral(key, context)
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    aad = context.aad()
    parts = [MAGIC, bytes([VERSION]), ephemeral_public, bytes([len(keys)])]
    for i, recipient in enumerate(keys):
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
        except ValueError:
            raise SealKeyError(
                f"recipient public key #{i + 1} (0x{recipient.hex()}) is not a usable X25519 "
                "key (low-order point); check the keys published on chain"
            ) from None
        kek = _kek(shared, ephemeral_public, recipient)
        parts += [recipient, AESGCM(kek).encrypt(_ZERO_NONCE, key, aad + recipient)]
    nonce = os.urandom(NONCE_SIZE)
    parts += [nonce, AESGCM(key).encrypt(nonce, bytes(plaintext), aad)]
    return b"".join(parts)


def _parse(blob: bytes) -> _Parsed:
    """The fields of a version-2 blob; :class:`SealFormatError` for anything else."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise SealFormatError(f"a sealed blob is bytes, not {type(blob).__name__}")
    data = bytes(blob)
    if data[: len(MAGIC)] != MAGIC:
        raise SealFormatError(
            f"not a sealed update: it does not start with {MAGIC!r} (starts with "
            f"{data[:len(MAGIC)]!r}, {len(data)} bytes). Was it stored unsealed, or is "
            "it another kind of blob (e.g. a global model)?"
        )
    if len(data) <= len(MAGIC):
        raise SealFormatError(f"sealed blob is truncated: {len(data)} bytes, no version byte")
    version = data[len(MAGIC)]
    if version != VERSION:
        hint = (
            " (single-recipient version-1 blobs are no longer supported: seal the update again)"
            if version == 1
            else "; upgrade chainfl (or the client that sealed it)"
        )
        raise SealFormatError(
            f"sealed blob has version {version}, this code opens version {VERSION} only{hint}"
        )
    if len(data) < HEADER_SIZE:
        raise SealFormatError(
            f"sealed blob is truncated: {len(data)} bytes, the header alone is {HEADER_SIZE}"
        )
    ephemeral_public = data[len(MAGIC) + 1 : len(MAGIC) + 1 + KEY_SIZE]
    count = data[HEADER_SIZE - 1]
    if count == 0:
        raise SealFormatError("sealed blob has no recipients: nobody can open it")
    needed = sealed_overhead(count)
    if len(data) < needed:
        raise SealFormatError(
            f"sealed blob is truncated: {len(data)} bytes, at least {needed} are needed "
            f"for {count} recipient(s) (header, entries, nonce and tag)"
        )
    if not _is_canonical_point(ephemeral_public):
        raise SealFormatError("sealed blob's ephemeral public key is not a canonical X25519 key")
    entries = []
    for i in range(count):
        offset = HEADER_SIZE + i * PER_RECIPIENT_SIZE
        recipient = data[offset : offset + KEY_SIZE]
        if not _is_canonical_point(recipient):
            raise SealFormatError(
                f"sealed blob's recipient entry {i + 1} of {count} holds a non-canonical "
                f"X25519 public key (0x{recipient.hex()})"
            )
        entries.append((recipient, data[offset + KEY_SIZE : offset + PER_RECIPIENT_SIZE]))
    keys = [recipient for recipient, _ in entries]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise SealFormatError(f"sealed blob lists recipient 0x{twice.hex()} more than once")
    body = HEADER_SIZE + count * PER_RECIPIENT_SIZE
    return _Parsed(
        size=len(data),
        ephemeral_public=ephemeral_public,
        entries=tuple(entries),
        nonce=data[body : body + NONCE_SIZE],
        ciphertext=data[body + NONCE_SIZE :],
    )


def recipients_of(blob: bytes) -> list[bytes]:
    """The recipients' public keys, in blob order (no key needed; :class:`SealFormatError` if malformed)."""
    return _parse(blob).recipients


def _require_recipients(parsed: _Parsed, recipients: bytes | str | Sequence[bytes | str]) -> None:
    expected = _recipient_list(recipients)
    if parsed.recipients == expected:
        return
    missing = [key for key in expected if key not in parsed.recipients]
    extra = [key for key in parsed.recipients if key not in expected]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(map(_short, missing)))
    if extra:
        parts.append("not required " + ", ".join(map(_short, extra)))
    raise SealRecipientsError(
        f"invalid seal: sealed to {len(parsed.entries)} recipient(s), not to exactly the "
        f"{len(expected)} required ones in their published order "
        f"({'; '.join(parts) or 'the same keys in another order'})"
    )


def require_recipients(blob: bytes, recipients: bytes | str | Sequence[bytes | str]) -> None:
    """Check, without any key, that ``blob`` is sealed to exactly ``recipients`` in that order.

    Raises :class:`SealFormatError` for a malformed blob and
    :class:`SealRecipientsError` for another recipient list.
    """
    _require_recipients(_parse(blob), recipients)


def _unwrap(parsed: _Parsed, private_key: bytes | str, context: SealContext) -> bytes:
    private = X25519PrivateKey.from_private_bytes(_key_bytes(private_key, "private key"))
    public = private.public_key().public_bytes_raw()
    wrapped = dict(parsed.entries).get(public)
    if wrapped is None:
        listed = ", ".join(_short(key) for key in parsed.recipients[:4])
        more = f" and {len(parsed.entries) - 4} more" if len(parsed.entries) > 4 else ""
        raise SealKeyError(
            f"this key (public key 0x{public.hex()}) is not a recipient of the sealed blob: "
            f"it was sealed to {len(parsed.entries)} other key(s) ({listed}{more}); check "
            "that the sealing client used the keys published on chain"
        )
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(parsed.ephemeral_public))
        return _unwrap_entry(shared, parsed.ephemeral_public, public, wrapped, context.aad())
    except (InvalidTag, ValueError):
        # ValueError: a low-order ephemeral key, which only a forged blob carries.
        raise SealAuthenticationError(
            f"sealed blob ({parsed.size} bytes) does not open: the entry for this key "
            f"(public key 0x{public.hex()}) does not unwrap, so the blob was either "
            "tampered with or sealed for another (chain, contract, round, client). "
            f"Opened with {context.describe()}."
        ) from None


def unwrap_content_key(blob: bytes, private_key: bytes | str, context: SealContext) -> bytes:
    """The content key K from the entry of ``private_key``'s public key (no other check).

    Raises :class:`SealFormatError` for a malformed blob, :class:`SealKeyError` if
    the key is not among the recipients and :class:`SealAuthenticationError` if
    its entry does not unwrap in ``context``. An unwrapped K still has to pass
    :func:`open_with_content_key` before the blob counts as valid.
    """
    _check_context(context)
    return _unwrap(_parse(blob), private_key, context)


def _open(
    parsed: _Parsed,
    content_key: bytes,
    context: SealContext,
    recipients: bytes | str | Sequence[bytes | str] | None,
) -> bytes:
    key = _content_key_bytes(content_key)
    ephemeral = _ephemeral(key, context)
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    if ephemeral_public != parsed.ephemeral_public:
        raise SealEvidenceError(
            "the content key is not this blob's: it does not reproduce the blob's ephemeral "
            "public key (a forged key, another update's key, or a blob sealed for another "
            f"(chain, contract, round, client)). Checked with {context.describe()}."
        )
    if recipients is not None:
        _require_recipients(parsed, recipients)
    aad = context.aad()
    for i, (recipient, wrapped) in enumerate(parsed.entries):
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
            unwrapped = _unwrap_entry(shared, ephemeral_public, recipient, wrapped, aad)
        except (InvalidTag, ValueError):
            unwrapped = b""
        if not hmac.compare_digest(unwrapped, key):
            raise SealAuthenticationError(
                f"invalid seal: recipient entry {i + 1} of {len(parsed.entries)} (public key "
                f"0x{recipient.hex()}) does not wrap the blob's content key, so not every "
                "recipient can open the update"
            )
    try:
        return AESGCM(key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise SealAuthenticationError(
            f"invalid seal: the body ({len(parsed.ciphertext)} bytes) does not open under the "
            "blob's content key: it was tampered with or sealed for another "
            f"(chain, contract, round, client). Opened with {context.describe()}."
        ) from None


def open_with_content_key(
    blob: bytes,
    content_key: bytes,
    context: SealContext,
    *,
    recipients: bytes | str | Sequence[bytes | str] | None = None,
) -> bytes:
    """The plaintext of ``blob``, after the full check anyone holding K can run.

    In order: the blob parses (:class:`SealFormatError`); K reproduces the
    blob's ephemeral public key (:class:`SealEvidenceError`: a forged or wrong
    key, or another context); if ``recipients`` is given, the blob is sealed to
    exactly those keys in that order (:class:`SealRecipientsError`); every
    recipient entry unwraps to K, and the body opens under K with the context as
    associated data (:class:`SealAuthenticationError`). The result depends only
    on (blob, K, context, recipients), so every party holding K agrees on it.
    """
    _check_context(context)
    return _open(_parse(blob), content_key, context, recipients)


def open_sealed(
    blob: bytes,
    recipient_private: bytes | str,
    context: SealContext,
    *,
    recipients: bytes | str | Sequence[bytes | str] | None = None,
) -> bytes:
    """Decrypt a blob made by :func:`seal` as one of its recipients, checking it fully.

    ``open_with_content_key(blob, unwrap_content_key(blob, key, context), context)``:
    the recipient unwraps K from its own entry, then runs the same complete check
    as anyone holding K, so every honest recipient reaches the same verdict on the
    same blob. Pass ``recipients`` (the aggregator and verifier keys, in the
    contract's order) to also refuse blobs that leave a required recipient out.

    Every failure is a :class:`SealError`; ``reason`` says which kind.
    """
    _check_context(context)
    parsed = _parse(blob)
    return _open(parsed, _unwrap(parsed, recipient_private, context), context, recipients)
