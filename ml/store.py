"""Content-addressed blob store for model weights and sealed updates.

The contract records only keccak-256 commitments, never weights. A blob is
therefore fetched by its commitment and accepted only if its keccak-256 matches:
the store (a shared folder, an IPFS node) has to be available, never trusted.

keccak-256 here is Ethereum's (original Keccak padding, via ``eth_utils.keccak``),
the digest Solidity's ``keccak256`` computes. ``hashlib.sha3_256`` is the NIST
variant and gives different digests, so it must not be used for keys.

Two stores share one interface (:class:`BlobStore`):

* :class:`LocalStore` -- a folder, one file per blob named by its key; the default,
  and enough when all parties share a filesystem (one process, one machine, NFS).
* :class:`IpfsStore` -- a kubo (go-ipfs) node through its HTTP API, for parties on
  different machines.

:func:`open_store` builds one from a command-line string.
"""

from __future__ import annotations

import abc
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self, TypeAlias

import requests
from eth_utils import keccak

__all__ = [
    "KEY_SIZE",
    "KeyLike",
    "BlobStoreError",
    "InvalidKeyError",
    "BlobNotFoundError",
    "BlobIntegrityError",
    "BlobConflictError",
    "StoreUnavailableError",
    "StoreUnhealthyError",
    "IpfsApiError",
    "StoreIndexError",
    "StoreSpecError",
    "blob_key",
    "normalize_key",
    "key_hex",
    "FetchBudget",
    "BlobStore",
    "LocalStore",
    "IpfsStore",
    "open_store",
]

KEY_SIZE: Final = 32
"""Bytes in a key: a keccak-256 digest, the ``bytes32`` the contract records."""

KeyLike: TypeAlias = bytes | bytearray | memoryview | str
"""A key as 32 raw bytes (``HexBytes`` from Ape included) or a 0x-prefixed hex string."""

_TEMP_PREFIX: Final = ".tmp-"
_INDEX_FORMAT: Final = "chainfl-ipfs-index-v1"
_DEFAULT_IPFS_API: Final = "http://127.0.0.1:5001"
_MAX_CID_CHARS: Final = 128
"""Longer than any CID kubo makes (a CIDv1 of a sha2-512 block is about 110 characters)."""
_MAX_SHOWN: Final = 80
"""Characters of an untrusted string (a locator, a server's message) quoted in an error."""
HEALTH_PROBE: Final = b"chainfl blob store health probe v1\n"
"""The blob a health check puts and gets back: constant, so probing never grows a store."""


# --------------------------------------------------------------------------- errors


class BlobStoreError(Exception):
    """Base class: catch this to handle every store failure in one place."""


class InvalidKeyError(BlobStoreError, ValueError):
    """A key is not 32 bytes or 64 hex digits; usually a truncated or mistyped hash."""


class BlobNotFoundError(BlobStoreError, LookupError):
    """No blob under a key in this store.

    ``key`` is the 32-byte key and ``where`` says where the store looked, so the
    message can point at the wrong folder or the missing locator. ``transient``
    says whether asking again might help (a node that could not serve it now),
    as opposed to a locator that can never name a blob. The message is one line.
    """

    def __init__(self, key: bytes, where: str, hint: str, *, transient: bool = False) -> None:
        self.key = key
        self.where = where
        self.transient = transient
        self.hint = hint
        super().__init__(one_line(f"blob {key_hex(key)} not found in {where}. {hint}", 600))


class BlobIntegrityError(BlobStoreError):
    """A stored blob does not hash to its key: it was corrupted or tampered with.

    Raised instead of returning the bytes, because a caller that trusted them
    would aggregate, or publish, something nobody committed to on chain.
    """

    def __init__(self, key: bytes, actual: bytes, where: str) -> None:
        self.key = key
        self.actual = actual
        self.where = where
        super().__init__(
            f"blob in {where} should hash to {key_hex(key)} but hashes to "
            f"{key_hex(actual)}: it was corrupted or tampered with after it was "
            "stored. Do not use it; fetch the blob again from the party that "
            "published it (or delete the damaged copy and put the original again)."
        )


class BlobConflictError(BlobStoreError):
    """A file already sits under a key but holds different bytes.

    Keys are hashes of contents, so two different blobs never share a key; a
    conflict means the existing file was modified outside the store. The store
    refuses to overwrite it silently so that the damage is noticed.
    """

    def __init__(self, key: bytes, path: Path, actual: bytes) -> None:
        self.key = key
        self.path = path
        super().__init__(
            f"cannot put blob {key_hex(key)}: {path} already exists with different "
            f"contents (which hash to {key_hex(actual)}), so it was modified outside "
            "the store. Inspect it, move it aside or delete it, then put the blob again."
        )


class StoreUnavailableError(BlobStoreError):
    """The store's backend cannot be reached (IPFS daemon down, wrong URL, timeout)."""


class StoreUnhealthyError(StoreUnavailableError):
    """A store failed its own health check (:meth:`BlobStore.health_check`).

    Raised to say "my store is down", never "your blob is missing": a party that
    gets it stops (or waits) and blames nobody.
    """


class IpfsApiError(BlobStoreError):
    """The IPFS API answered, but with an error or an unexpected response."""


class StoreIndexError(BlobStoreError):
    """The keccak -> CID index file of an :class:`IpfsStore` cannot be read or written."""


class StoreSpecError(BlobStoreError, ValueError):
    """A store specification given to :func:`open_store` is not understood."""


# --------------------------------------------------------------------------- keys


def blob_key(blob: bytes) -> bytes:
    """The key of ``blob``: its Ethereum keccak-256, as the contract would compute it."""
    return keccak(bytes(blob))


def normalize_key(key: KeyLike) -> bytes:
    """``key`` as 32 raw bytes; accepts bytes-like values and (0x-)hex strings.

    Keys arrive as ``HexBytes`` from contract events, as hex from command lines and
    JSON, and as ``bytes`` from :func:`blob_key`; one normal form avoids two files
    (or index entries) for the same blob.
    """
    if isinstance(key, str):
        text = key.strip()
        digits = text[2:] if text[:2].lower() == "0x" else text
        if len(digits) != 2 * KEY_SIZE or not re.fullmatch(r"[0-9a-fA-F]*", digits):
            raise InvalidKeyError(
                f"key {key!r} is not a keccak-256 hash: expected 0x followed by "
                f"{2 * KEY_SIZE} hex digits (got {len(digits)} characters)"
            )
        return bytes.fromhex(digits)
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) != KEY_SIZE:
            raise InvalidKeyError(
                f"key has {len(raw)} bytes, expected {KEY_SIZE} (a keccak-256 hash); "
                "pass the commitment itself, not the blob or a truncated hash"
            )
        return raw
    raise InvalidKeyError(
        f"key must be bytes or a 0x-hex string, not {type(key).__name__}"
    )


def key_hex(key: KeyLike) -> str:
    """``key`` as 0x-prefixed lowercase hex, the form used in messages and JSON."""
    return "0x" + normalize_key(key).hex()


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line of at most ``limit`` characters: errors may quote what others sent."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown(value: object) -> str:
    """An untrusted value quoted for a message: its repr, cut short (a locator may be megabytes)."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


# --------------------------------------------------------------------------- fetch budget


@dataclass(frozen=True)
class FetchBudget:
    """How hard :meth:`BlobStore.fetch` tries: attempts, seconds in all, seconds per request.

    A blob named by another party (a client's update) may never come: its locator
    may point nowhere, or at a node that accepts the connection and never
    answers. The budget bounds both the number of tries and the wall time, so
    the caller always gets an answer in time to act on it.
    """

    seconds: float = 30.0
    attempts: int = 3
    request_timeout: float = 15.0  # per request; the time left in the budget caps it
    backoff: float = 0.2  # seconds before the second attempt, doubled after each

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.seconds < 0 or self.request_timeout <= 0 or self.backoff < 0:
            raise ValueError(f"{self} is not a usable budget: attempts >= 1, seconds >= 0, timeout > 0")


# --------------------------------------------------------------------------- interface


class BlobStore(abc.ABC):
    """A content-addressed store: blobs are put and fetched by their keccak-256.

    Every implementation verifies on :meth:`get` that the bytes hash to the key,
    so callers may rely on ``keccak(store.get(k)) == k`` without checking again.
    """

    @abc.abstractmethod
    def put(self, blob: bytes) -> bytes:
        """Store ``blob`` and return its key (32 bytes). Putting it again is a no-op."""

    @abc.abstractmethod
    def get(self, key: KeyLike, locator: str | None = None) -> bytes:
        """The blob under ``key``, verified against it.

        ``locator`` is the hint recorded on chain next to the key (see
        :meth:`locator`); stores that can find a blob from the key alone ignore it.
        Raises :class:`BlobNotFoundError` or :class:`BlobIntegrityError`.
        """

    @abc.abstractmethod
    def has(self, key: KeyLike) -> bool:
        """Whether this store holds (or knows where to find) the blob under ``key``."""

    @abc.abstractmethod
    def locator(self, key: KeyLike) -> str:
        """A string that tells another party where to fetch the blob under ``key``.

        It is recorded in contract events, so it must be short and must not depend
        on this machine's paths.
        """

    def get_within(self, key: KeyLike, locator: str | None, seconds: float) -> bytes:
        """One :meth:`get` that gives up after about ``seconds``.

        Stores whose reads cannot hang (a local folder) need not override it.
        """
        return self.get(key, locator)

    def fetch(self, key: KeyLike, locator: str | None = None, budget: FetchBudget = FetchBudget()) -> bytes:
        """A blob another party named: ``locator`` is untrusted and the time is bounded.

        Transient failures (node unreachable, timeout, an error answer) are tried
        again within ``budget``; a locator that can never work is not. Any failure
        caused by the blob or its locator ends as :class:`BlobNotFoundError` (one
        line saying why) or :class:`BlobIntegrityError` (wrong bytes); only a
        fault of this store's own files (say its index) escapes as another
        :class:`BlobStoreError`. Whether this store itself is down is for
        :meth:`health_check` to say.
        """
        raw = normalize_key(key)
        start = time.monotonic()
        deadline = start + budget.seconds
        last: BlobStoreError | None = None
        attempts = 0
        while attempts < budget.attempts:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            try:
                return self.get_within(raw, locator, min(left, budget.request_timeout))
            except BlobNotFoundError as exc:
                if not exc.transient:
                    raise
                last = exc
            except (StoreUnavailableError, IpfsApiError) as exc:
                last = exc
            pause = min(budget.backoff * 2 ** (attempts - 1), deadline - time.monotonic())
            if attempts < budget.attempts and pause > 0:
                time.sleep(pause)
        if isinstance(last, BlobNotFoundError):
            why = one_line(f"{last.where}: {last.hint}")
        else:
            why = one_line(last) if last is not None else "no time left to ask"
        raise BlobNotFoundError(
            raw,
            repr(self),
            f"Gave up after {attempts} attempt(s) in {time.monotonic() - start:.1f} s "
            f"(budget {budget.seconds:g} s, {budget.attempts} attempts): {why}",
            transient=True,
        )

    def health_check(self, timeout: float = 10.0) -> None:
        """Raises :class:`StoreUnhealthyError` unless this store can put and get a blob right now.

        A party runs it on its own store before it blames anyone else for a
        missing blob. The default puts :data:`HEALTH_PROBE` and reads it back.
        """
        try:
            key = self.put(HEALTH_PROBE)
            ok = self.get_within(key, None, timeout) == HEALTH_PROBE
        except BlobStoreError as exc:
            raise StoreUnhealthyError(f"{self!r} failed its health check: {one_line(exc)}") from exc
        except OSError as exc:
            raise StoreUnhealthyError(f"{self!r} failed its health check: {exc}") from exc
        if not ok:  # pragma: no cover - get verifies the hash
            raise StoreUnhealthyError(f"{self!r} failed its health check: the probe came back different")

    def close(self) -> None:
        """Release connections; a no-op for stores that hold none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _verified(key: bytes, blob: bytes, where: str) -> bytes:
        """``blob`` if it hashes to ``key``; the one check every ``get`` must make."""
        actual = keccak(blob)
        if actual != key:
            raise BlobIntegrityError(key, actual, where)
        return blob


# --------------------------------------------------------------------------- local folder


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; best effort, as some platforms cannot open folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    A temp file in the same folder (so the rename cannot cross filesystems) is
    written, fsynced and renamed over ``path``; a crash leaves at worst a
    ``.tmp-*`` file that never looks like a key.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class LocalStore(BlobStore):
    """Blobs as files in one folder, each named by the lowercase hex of its key.

    Flat rather than sharded: a federation stores a few blobs per client per
    round, far below the point where a folder gets slow, and a flat layout is
    easy to inspect with ``ls``.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BlobStoreError(
                f"blob store folder {self.folder} exists but is not a folder; "
                "choose another path for the store"
            ) from None
        except OSError as exc:
            raise BlobStoreError(
                f"cannot create blob store folder {self.folder}: {exc.strerror}; "
                "choose a writable path for the store"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.folder)!r})"

    def path_for(self, key: KeyLike) -> Path:
        """The file that holds (or would hold) the blob under ``key``."""
        return self.folder / normalize_key(key).hex()

    def put(self, blob: bytes) -> bytes:
        data = bytes(blob)
        key = keccak(data)
        path = self.path_for(key)
        if path.exists():
            existing = path.read_bytes()
            if existing != data:
                raise BlobConflictError(key, path, keccak(existing))
            return key
        _atomic_write(path, data)
        return key

    def get(self, key: KeyLike, locator: str | None = None) -> bytes:
        """The verified blob under ``key``; ``locator`` is ignored (the key is the file name)."""
        raw = normalize_key(key)
        path = self.path_for(raw)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(
                raw,
                f"local store {self.folder} (looked for {path})",
                "It was never put in this store: check that every party uses the "
                "same store folder, or copy the blob here from the party that "
                "published it.",
            ) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob file {path}: {exc.strerror}") from exc
        return self._verified(raw, blob, str(path))

    def has(self, key: KeyLike) -> bool:
        return self.path_for(key).is_file()

    def locator(self, key: KeyLike) -> str:
        """``file:<hex>``: the file name inside the store folder, never an absolute path."""
        return "file:" + normalize_key(key).hex()

    def health_check(self, timeout: float = 10.0) -> None:
        """The folder still exists, and a probe blob can be written to it and read back."""
        try:
            super().health_check(timeout)
        except StoreUnhealthyError as exc:
            raise StoreUnhealthyError(
                f"{exc}; check that {self.folder} exists, is writable and its disk has room"
            ) from exc.__cause__


# --------------------------------------------------------------------------- IPFS


def _cid_from_locator(locator: object) -> tuple[str | None, str]:
    """(CID, "") from ``ipfs://<cid>`` or ``/ipfs/<cid>``, else (None, why it names no CID).

    Locators come from contract events, written by whoever submitted: any text at
    all. Only an ASCII-alphanumeric CID of sane length is ever sent to the node;
    nothing here raises.
    """
    if not isinstance(locator, str):
        return None, f"locator {shown(locator)} is not text"
    text = locator.strip()
    for prefix in ("ipfs://", "/ipfs/"):
        if text[: len(prefix)].lower() == prefix:
            cid = text[len(prefix):].strip("/")
            if len(cid) > _MAX_CID_CHARS or not re.fullmatch(r"[A-Za-z0-9]+", cid):
                return None, f"locator {shown(locator)} does not hold a CID (expected ipfs://<cid>)"
            return cid, ""
    return None, f"locator {shown(locator)} is not an IPFS locator; open the store it names"


class IpfsStore(BlobStore):
    """Blobs in IPFS through a kubo node's HTTP API (``/api/v0/add`` and ``/api/v0/cat``).

    IPFS addresses content by CID, not by keccak-256, so the store keeps a
    keccak -> CID index: in memory, and in a JSON file when ``index_path`` is
    given so that it survives restarts. A party that never put a blob learns its
    CID from the locator (``ipfs://<cid>``) recorded on chain; :meth:`get` takes
    it as a hint and remembers it once the blob is verified.

    Blobs are added with ``pin=true`` (kubo's garbage collector must not drop a
    round's updates) and ``cid-version=1``.
    """

    def __init__(
        self,
        api_url: str = _DEFAULT_IPFS_API,
        index_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_blob_bytes: int = 1 << 30,
    ) -> None:
        url = api_url.strip().rstrip("/")
        if url.endswith("/api/v0"):
            url = url[: -len("/api/v0")]
        if not url.lower().startswith(("http://", "https://")):
            raise StoreSpecError(
                f"IPFS API URL {api_url!r} must start with http:// or https://, "
                f"e.g. {_DEFAULT_IPFS_API}"
            )
        self.api_url = url
        self.index_path = Path(index_path).expanduser() if index_path is not None else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_blob_bytes = max_blob_bytes  # a CID named by someone else may be huge
        self._session = requests.Session()
        self._index: dict[bytes, str] = self._read_index() if self.index_path else {}

    def __repr__(self) -> str:
        return f"IpfsStore({self.api_url!r}, index_path={self.index_path!r})"

    def close(self) -> None:
        """Close the HTTP session's pooled connections to the daemon."""
        self._session.close()

    # ---- index

    def _read_index(self) -> dict[bytes, str]:
        """The index file's entries; empty if the file does not exist yet."""
        assert self.index_path is not None
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreIndexError(
                f"cannot read IPFS index {self.index_path}: {exc.strerror}"
            ) from exc
        try:
            document = json.loads(text)
            if document.get("format") != _INDEX_FORMAT:
                raise ValueError(f"format is not {_INDEX_FORMAT!r}")
            entries = document["entries"]
            return {normalize_key(k): str(v) for k, v in entries.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreIndexError(
                f"IPFS index {self.index_path} is not a valid index ({exc}). "
                "It is only a cache of keccak -> CID: fix it or delete it; blobs stay "
                "in IPFS and can be fetched again with their ipfs:// locators."
            ) from exc

    def _remember(self, key: bytes, cid: str) -> None:
        """Record ``key -> cid``; merged into the file so concurrent users lose nothing."""
        if self._index.get(key) == cid:
            return
        self._index[key] = cid
        if self.index_path is None:
            return
        merged = self._read_index()
        merged.update(self._index)
        self._index = merged
        document = {
            "format": _INDEX_FORMAT,
            "entries": {key_hex(k): v for k, v in sorted(merged.items())},
        }
        data = (json.dumps(document, indent=1) + "\n").encode()
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.index_path, data)
        except OSError as exc:
            raise StoreIndexError(
                f"cannot write IPFS index {self.index_path}: {exc.strerror}"
            ) from exc

    def cid_of(self, key: KeyLike) -> str | None:
        """The CID this store knows for ``key``, or ``None``."""
        return self._index.get(normalize_key(key))

    # ---- HTTP

    def _post(
        self, endpoint: str, params: dict[str, str], *, seconds: float | None = None, **kwargs: Any
    ) -> requests.Response:
        """POST to ``/api/v0/<endpoint>`` (kubo refuses GET) with clear network errors.

        ``seconds`` (default: the store's timeout) bounds the connect and each read.
        """
        url = f"{self.api_url}/api/v0/{endpoint}"
        read = self.timeout if seconds is None else max(0.01, seconds)
        try:
            response = self._session.post(
                url, params=params, timeout=(min(self.connect_timeout, read), read), **kwargs
            )
        except requests.Timeout as exc:
            raise StoreUnavailableError(
                f"the IPFS API at {self.api_url} did not answer /api/v0/{endpoint} "
                f"within {read:g}s. For cat this usually means no reachable "
                "node has the content; for large blobs raise the timeout."
            ) from exc
        except requests.RequestException as exc:
            raise StoreUnavailableError(
                f"cannot reach the IPFS API at {self.api_url} ({type(exc).__name__}). "
                "Is the IPFS daemon running? Start it with `ipfs daemon`, or pass the "
                f"URL of its API (by default {_DEFAULT_IPFS_API})."
            ) from exc
        if response.status_code != 200:
            try:
                message = _api_message(response)
            finally:
                response.close()
            raise IpfsApiError(
                f"IPFS API {url} failed with HTTP {response.status_code}: {one_line(message)}"
            )
        return response

    def _cat(self, cid: str, seconds: float | None) -> bytes:
        """The bytes of ``cid``, read in chunks so that neither a slow trickle nor a huge
        blob can hold the caller past ``seconds`` or :attr:`max_blob_bytes`."""
        deadline = None if seconds is None else time.monotonic() + seconds
        response = self._post("cat", {"arg": cid}, seconds=seconds, stream=True)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if size > self.max_blob_bytes:
                    raise IpfsApiError(
                        f"CID {cid} is larger than this store accepts ({self.max_blob_bytes} bytes)"
                    )
                chunks.append(chunk)
                if deadline is not None and time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"the IPFS API at {self.api_url} did not finish sending CID {cid} "
                        f"within {seconds:g}s"
                    )
        except requests.RequestException as exc:
            raise StoreUnavailableError(
                f"the IPFS API at {self.api_url} stopped while sending CID {cid} "
                f"({type(exc).__name__}); try again, or check the daemon"
            ) from exc
        finally:
            response.close()
        return b"".join(chunks)

    # ---- BlobStore

    def put(self, blob: bytes) -> bytes:
        data = bytes(blob)
        key = keccak(data)
        response = self._post(
            "add",
            {"pin": "true", "cid-version": "1"},
            files={"file": (key.hex(), data, "application/octet-stream")},
        )
        self._remember(key, _cid_from_add_response(response))
        return key

    def get(self, key: KeyLike, locator: str | None = None) -> bytes:
        """The verified blob; ``locator`` (``ipfs://<cid>``) is used when the index lacks it.

        A locator that names no CID, whatever its text, is :class:`BlobNotFoundError`.
        """
        return self._get(normalize_key(key), locator, None)

    def get_within(self, key: KeyLike, locator: str | None, seconds: float) -> bytes:
        """:meth:`get` with every request (and the whole read) bounded by ``seconds``."""
        return self._get(normalize_key(key), locator, seconds)

    def _get(self, raw: bytes, locator: str | None, seconds: float | None) -> bytes:
        cid = self._index.get(raw)
        why = ""
        if cid is None and locator:
            cid, why = _cid_from_locator(locator)
        if cid is None:
            where = "the IPFS index" + (f" {self.index_path}" if self.index_path else " (in memory)")
            hint = (
                f"{why[0].upper()}{why[1:]}."
                if why
                else "IPFS finds blobs by CID: pass the locator recorded on chain "
                "(ipfs://<cid>) or use the index file of the party that put it."
            )
            raise BlobNotFoundError(raw, where, hint)
        try:
            content = self._cat(cid, seconds)
        except IpfsApiError as exc:
            raise BlobNotFoundError(
                raw,
                f"IPFS at {self.api_url} (CID {cid})",
                f"The node could not serve it: {exc}",
                transient=True,
            ) from exc
        blob = self._verified(raw, content, f"IPFS CID {cid} via {self.api_url}")
        self._remember(raw, cid)
        return blob

    def health_check(self, timeout: float = 10.0) -> None:
        """The API answers within ``timeout``: a probe blob is added and read back."""
        deadline = time.monotonic() + timeout
        try:
            response = self._post(
                "add",
                {"pin": "true", "cid-version": "1"},
                seconds=timeout,
                files={"file": ("probe", HEALTH_PROBE, "application/octet-stream")},
            )
            cid = _cid_from_add_response(response)
            ok = self._cat(cid, max(0.01, deadline - time.monotonic())) == HEALTH_PROBE
        except BlobStoreError as exc:
            raise StoreUnhealthyError(
                f"IPFS store at {self.api_url} failed its health check: {one_line(exc)}"
            ) from exc
        if not ok:
            raise StoreUnhealthyError(
                f"IPFS store at {self.api_url} failed its health check: the probe blob "
                f"came back different (CID {cid}); check the daemon and its repository"
            )

    def has(self, key: KeyLike) -> bool:
        """Whether the index knows a CID for ``key``.

        The daemon is not asked: ``cat`` of an absent CID makes kubo search the
        network until the timeout. Availability is checked (and integrity
        verified) by :meth:`get`.
        """
        return normalize_key(key) in self._index

    def locator(self, key: KeyLike) -> str:
        """``ipfs://<cid>`` for a blob this store has put or fetched."""
        raw = normalize_key(key)
        cid = self._index.get(raw)
        if cid is None:
            raise BlobNotFoundError(
                raw,
                "the IPFS index",
                "Only blobs this store has put or fetched have a known CID: put it first.",
            )
        return f"ipfs://{cid}"


def _api_message(response: requests.Response) -> str:
    """kubo's error text (JSON ``Message``), or the start of the body."""
    try:
        return str(response.json()["Message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason or "no details"


def _cid_from_add_response(response: requests.Response) -> str:
    """The CID in kubo's ``add`` answer: newline-delimited JSON, last object with a Hash."""
    for line in reversed(response.text.strip().splitlines()):
        try:
            cid = json.loads(line).get("Hash")
        except (ValueError, AttributeError):
            continue
        if cid:
            return str(cid)
    raise IpfsApiError(
        f"IPFS add answered without a CID (body starts {response.text[:200]!r}); "
        "is the URL that of a kubo HTTP API (port 5001), not of a gateway (port 8080)?"
    )


# --------------------------------------------------------------------------- factory


def open_store(spec: str, *, ipfs_index: str | os.PathLike[str] | None = None) -> BlobStore:
    """A store from a command-line string.

    * ``path/to/folder`` or ``file:path/to/folder`` (``file:///abs`` too) -> :class:`LocalStore`
    * ``http://host:5001`` or ``https://...`` -> :class:`IpfsStore` (index in ``ipfs_index``)

    Note that ``file:<hex>`` *locators* name a blob inside a store, while a
    ``file:`` *spec* names the store's folder.
    """
    text = spec.strip()
    lower = text.lower()
    if not text:
        raise StoreSpecError(
            "empty store: give a folder path, file:<folder>, or an IPFS API URL "
            f"such as {_DEFAULT_IPFS_API}"
        )
    if lower.startswith(("http://", "https://")):
        return IpfsStore(text, index_path=ipfs_index)
    if lower.startswith("ipfs://"):
        raise StoreSpecError(
            f"{spec!r} is a blob locator, not a store: give the IPFS API URL, "
            f"e.g. {_DEFAULT_IPFS_API}"
        )
    if lower.startswith("file://"):
        folder = text[len("file://"):]
    elif lower.startswith("file:"):
        folder = text[len("file:"):]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise StoreSpecError(
            f"unknown store {spec!r}: use a folder path, file:<folder>, or an IPFS "
            f"API URL such as {_DEFAULT_IPFS_API}"
        )
    else:
        folder = text
    if not folder:
        raise StoreSpecError(f"store {spec!r} names no folder: write file:<folder>")
    return LocalStore(folder)
