"""Tests for ml.store: content addressing, integrity, atomic writes, IPFS protocol."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from eth_utils import keccak

from ml.store import (
    BlobConflictError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    InvalidKeyError,
    IpfsStore,
    LocalStore,
    StoreIndexError,
    StoreSpecError,
    StoreUnavailableError,
    blob_key,
    key_hex,
    normalize_key,
    open_store,
)

BLOB = b"global model, round 3"


# --------------------------------------------------------------------------- keys


def test_blob_key_is_ethereum_keccak_not_sha3() -> None:
    # keccak256("") as Solidity computes it; NIST SHA3-256("") differs.
    expected = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert blob_key(b"").hex() == expected
    assert hashlib.sha3_256(b"").hexdigest() != expected


def test_keys_accepted_as_bytes_or_hex() -> None:
    raw = keccak(BLOB)
    for form in (raw, bytearray(raw), "0x" + raw.hex(), "0X" + raw.hex().upper(), raw.hex()):
        assert normalize_key(form) == raw
    assert key_hex(raw) == "0x" + raw.hex()


@pytest.mark.parametrize("bad", [b"\x00" * 31, "0x1234", "0x" + "zz" * 32, 42])
def test_bad_keys_are_refused_with_the_expected_size(bad: object) -> None:
    with pytest.raises(InvalidKeyError, match="32|64|bytes or a 0x-hex"):
        normalize_key(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- LocalStore


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blobs")


def test_round_trip(local: LocalStore) -> None:
    key = local.put(BLOB)
    assert key == keccak(BLOB)
    assert local.has(key)
    assert local.get(key) == BLOB
    assert local.path_for(key).name == key.hex()


def test_empty_blob_round_trip(local: LocalStore) -> None:
    assert local.get(local.put(b"")) == b""


def test_get_and_has_accept_hex_keys(local: LocalStore) -> None:
    key = local.put(BLOB)
    assert local.get("0x" + key.hex()) == BLOB
    assert local.get(key.hex().upper()) == BLOB
    assert local.has("0x" + key.hex())


def test_put_is_idempotent(local: LocalStore) -> None:
    key = local.put(BLOB)
    mtime = local.path_for(key).stat().st_mtime_ns
    assert local.put(BLOB) == key
    assert local.path_for(key).stat().st_mtime_ns == mtime
    assert [p.name for p in local.folder.iterdir()] == [key.hex()]


def test_conflicting_file_under_a_key_is_refused(local: LocalStore) -> None:
    key = local.put(BLOB)
    local.path_for(key).write_bytes(b"tampered")
    with pytest.raises(BlobConflictError, match="modified outside the store") as info:
        local.put(BLOB)
    assert str(local.path_for(key)) in str(info.value)
    assert local.path_for(key).read_bytes() == b"tampered"  # evidence is kept


def test_tampered_file_is_detected_on_get(local: LocalStore) -> None:
    key = local.put(BLOB)
    path = local.path_for(key)
    damaged = bytearray(path.read_bytes())
    damaged[0] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(BlobIntegrityError, match="tampered") as info:
        local.get(key)
    assert info.value.key == key
    assert info.value.actual == keccak(bytes(damaged))
    assert key_hex(key) in str(info.value) and str(path) in str(info.value)


def test_missing_blob_error_names_the_key_and_the_folder(local: LocalStore) -> None:
    key = keccak(b"never stored")
    assert not local.has(key)
    with pytest.raises(BlobNotFoundError) as info:
        local.get(key)
    message = str(info.value)
    assert key_hex(key) in message
    assert str(local.path_for(key)) in message
    assert "same store folder" in message


def test_writes_leave_no_temp_files(local: LocalStore) -> None:
    keys = {local.put(bytes([i]) * i) for i in range(20)}
    assert sorted(p.name for p in local.folder.iterdir()) == sorted(k.hex() for k in keys)


def test_failed_write_leaves_no_temp_file(local: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("ml.store.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        local.put(BLOB)
    assert list(local.folder.iterdir()) == []
    assert not local.has(keccak(BLOB))


def test_concurrent_puts_of_the_same_blob(local: LocalStore) -> None:
    errors: list[BaseException] = []

    def put() -> None:
        try:
            local.put(BLOB)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in local.folder.iterdir()] == [keccak(BLOB).hex()]


def test_local_locator_does_not_leak_paths(local: LocalStore) -> None:
    key = local.put(BLOB)
    assert local.locator(key) == "file:" + key.hex()
    assert local.get(key, locator=local.locator(key)) == BLOB


def test_store_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(Exception, match="not a folder|cannot create"):
        LocalStore(tmp_path / "f")


# --------------------------------------------------------------------------- open_store


def test_open_store_specs(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "a"), f"file:{tmp_path / 'b'}", f"file://{tmp_path / 'c'}"):
        store = open_store(spec)
        assert isinstance(store, LocalStore)
        assert isinstance(store, BlobStore)
    assert (tmp_path / "c").is_dir()
    ipfs = open_store("http://127.0.0.1:5001/", ipfs_index=tmp_path / "index.json")
    assert isinstance(ipfs, IpfsStore)
    assert ipfs.api_url == "http://127.0.0.1:5001"
    assert isinstance(open_store("https://ipfs.example/api/v0"), IpfsStore)


@pytest.mark.parametrize("spec", ["", "  ", "ipfs://bafkqaaa", "s3://bucket/x", "file:"])
def test_open_store_refuses_unknown_specs(spec: str) -> None:
    with pytest.raises(StoreSpecError):
        open_store(spec)


# --------------------------------------------------------------------------- IPFS fake


def _raw_cid(data: bytes) -> str:
    """CIDv1 of a single raw block (what kubo returns for small files with cid-version=1)."""
    digest = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(digest).decode().lower().rstrip("=")


@dataclass
class FakeKubo:
    """State of the fake daemon; tests inspect and corrupt it."""

    url: str = ""
    blocks: dict[str, bytes] = field(default_factory=dict)
    add_params: list[dict[str, list[str]]] = field(default_factory=list)
    cat_count: int = 0


def _handler(state: FakeKubo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:  # keep test output clean
            pass

        def _json(self, status: int, body: dict[str, object]) -> None:
            payload = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            # kubo answers GET on the RPC API with 405 since v0.5.
            self._json(405, {"Message": "405 - Method Not Allowed", "Code": 0, "Type": "error"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if url.path == "/api/v0/add":
                state.add_params.append(query)
                message = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                part = next(iter(message.iter_parts()))
                data = part.get_payload(decode=True)
                cid = _raw_cid(data)
                state.blocks[cid] = data
                self._json(200, {"Name": part.get_filename(), "Hash": cid, "Size": str(len(data))})
            elif url.path == "/api/v0/cat":
                state.cat_count += 1
                cid = query.get("arg", [""])[0]
                if cid not in state.blocks:
                    self._json(500, {
                        "Message": f"block was not found locally (offline): ipld: could not find {cid}",
                        "Code": 0,
                        "Type": "error",
                    })
                    return
                data = state.blocks[cid]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._json(404, {"Message": "404 page not found", "Code": 0, "Type": "error"})

    return Handler


@pytest.fixture
def kubo() -> Iterator[FakeKubo]:
    """A protocol-level fake of the kubo (go-ipfs) HTTP RPC API on 127.0.0.1.

    No IPFS daemon can be installed in this environment, so this fake speaks the
    two endpoints IpfsStore uses, as kubo does: POST /api/v0/add (multipart
    upload, JSON answer with the CID in "Hash") and POST /api/v0/cat?arg=<cid>
    (raw bytes; HTTP 500 with a JSON "Message" for unknown CIDs). It is not a
    content-routing node: it serves only what was added to it.
    """
    state = FakeKubo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_ipfs_round_trip_pins_with_cid_v1(kubo: FakeKubo) -> None:
    with open_store(kubo.url) as store:
        key = store.put(BLOB)
        assert key == keccak(BLOB)
        assert kubo.add_params == [{"pin": ["true"], "cid-version": ["1"]}]
        cid = _raw_cid(BLOB)
        assert store.locator(key) == f"ipfs://{cid}"
        assert store.has(key) and store.has("0x" + key.hex())
        assert store.get(key) == BLOB
        assert store.get(key.hex()) == BLOB


def test_ipfs_index_file_survives_restart(kubo: FakeKubo, tmp_path: Path) -> None:
    index = tmp_path / "ipfs-index.json"
    key = IpfsStore(kubo.url, index, timeout=5).put(BLOB)
    document = json.loads(index.read_text())
    assert document["entries"] == {key_hex(key): _raw_cid(BLOB)}
    reopened = IpfsStore(kubo.url, index, timeout=5)
    assert reopened.has(key)
    assert reopened.get(key) == BLOB
    assert [p.name for p in tmp_path.iterdir()] == [index.name]  # no temp files


def test_ipfs_get_by_locator_hint_then_remembers(kubo: FakeKubo, tmp_path: Path) -> None:
    publisher = IpfsStore(kubo.url, timeout=5)
    key = publisher.put(BLOB)
    locator = publisher.locator(key)

    reader = IpfsStore(kubo.url, tmp_path / "reader.json", timeout=5)
    assert not reader.has(key)
    with pytest.raises(BlobNotFoundError, match="ipfs://<cid>"):
        reader.get(key)
    assert reader.get(key, locator=locator) == BLOB
    assert reader.has(key) and reader.locator(key) == locator
    assert IpfsStore(kubo.url, tmp_path / "reader.json").has(key)


def test_ipfs_detects_tampered_content(kubo: FakeKubo) -> None:
    store = IpfsStore(kubo.url, timeout=5)
    key = store.put(BLOB)
    kubo.blocks[_raw_cid(BLOB)] = b"something else"
    with pytest.raises(BlobIntegrityError, match=_raw_cid(BLOB)):
        store.get(key)


def test_ipfs_locator_pointing_at_other_content_is_rejected(kubo: FakeKubo) -> None:
    store = IpfsStore(kubo.url, timeout=5)
    store.put(b"other blob")
    wrong = f"ipfs://{_raw_cid(b'other blob')}"
    with pytest.raises(BlobIntegrityError):
        store.get(keccak(BLOB), locator=wrong)
    assert not store.has(keccak(BLOB))


def test_ipfs_unknown_cid_is_not_found(kubo: FakeKubo) -> None:
    store = IpfsStore(kubo.url, timeout=5)
    with pytest.raises(BlobNotFoundError, match="could not find"):
        store.get(keccak(BLOB), locator=f"ipfs://{_raw_cid(BLOB)}")


def test_ipfs_locator_of_unknown_key(kubo: FakeKubo) -> None:
    with pytest.raises(BlobNotFoundError, match="put it first"):
        IpfsStore(kubo.url).locator(keccak(BLOB))


def test_ipfs_non_ipfs_locator_is_explained(kubo: FakeKubo) -> None:
    with pytest.raises(BlobNotFoundError, match="not an IPFS locator"):
        IpfsStore(kubo.url).get(keccak(BLOB), locator="file:" + keccak(BLOB).hex())


def test_corrupt_index_file_is_reported(tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    index.write_text("{not json")
    with pytest.raises(StoreIndexError, match="delete it"):
        IpfsStore("http://127.0.0.1:5001", index)


def test_unreachable_api_says_url_and_ipfs_daemon() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    store = IpfsStore(url, timeout=2, connect_timeout=2)
    with pytest.raises(StoreUnavailableError) as info:
        store.put(BLOB)
    assert url in str(info.value)
    assert "ipfs daemon" in str(info.value)


def test_ipfs_url_must_be_http() -> None:
    with pytest.raises(StoreSpecError, match="http://"):
        IpfsStore("127.0.0.1:5001")
