"""Tests for ml.store: content addressing, integrity, atomic writes, IPFS protocol."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_ipfs import FakeKubo, raw_cid, serve_hanging, serve_kubo

from ml.store import (
    BlobConflictError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    FetchBudget,
    InvalidKeyError,
    IpfsStore,
    LocalStore,
    StoreIndexError,
    StoreSpecError,
    StoreUnavailableError,
    StoreUnhealthyError,
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

_raw_cid = raw_cid


@pytest.fixture
def kubo() -> Iterator[FakeKubo]:
    """The fake kubo HTTP RPC API of tests/fake_ipfs.py on 127.0.0.1 (no IPFS daemon here)."""
    with serve_kubo() as state:
        yield state


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


# --------------------------------------------------------------------------- untrusted locators (M-3)

HOSTILE_LOCATORS = [
    "ipfs://x-y",
    "ipfs://",
    "/ipfs/",
    "ipfs://" + "a" * 10_000,
    "ipfs://../../etc/passwd",
    "../../etc/passwd",
    "file:///etc/passwd",
    "file:../../etc/passwd",
    "file:" + "0" * 64,
    "ipfs://bafy\x00kreia",
    "\x00",
    "ipfs://\u0130\u212a",  # characters whose lower case changes length
    "IPFS://%2e%2e/%2e%2e",
    "http://169.254.169.254/latest/meta-data/",
    "ipfs://abc?arg=x&arg=y",
    "ipfs://abc/../../cat",
    "x" * 1_000_000,
    " \n\t ",
]


def _hostile_stores(tmp_path: Path, kubo: FakeKubo) -> list[BlobStore]:
    return [LocalStore(tmp_path / "blobs"), IpfsStore(kubo.url, timeout=5)]


@pytest.mark.parametrize("locator", HOSTILE_LOCATORS, ids=lambda x: repr(x)[:24])
def test_hostile_locator_is_just_a_missing_blob(tmp_path: Path, kubo: FakeKubo, locator: str) -> None:
    for store in _hostile_stores(tmp_path, kubo):
        with pytest.raises(BlobNotFoundError) as info:
            store.get(keccak(BLOB), locator)
        assert "\n" not in str(info.value) and len(str(info.value)) < 1000
        with pytest.raises(BlobNotFoundError):
            store.fetch(keccak(BLOB), locator, FetchBudget(seconds=2, backoff=0.01))
    # Nothing was written outside the store, and no file other than blobs inside it.
    assert list((tmp_path / "blobs").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs"]


def test_hostile_locator_cannot_replace_a_stored_blob(tmp_path: Path, kubo: FakeKubo) -> None:
    for store in _hostile_stores(tmp_path, kubo):
        key = store.put(BLOB)
        for locator in HOSTILE_LOCATORS:
            assert store.get(key, locator) == BLOB


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(locator=st.one_of(
    st.text(),
    st.text().map(lambda t: "ipfs://" + t),
    st.text().map(lambda t: "/ipfs/" + t),
    st.from_regex(r"ipfs://[A-Za-z0-9]{1,200}", fullmatch=True),
    st.binary().map(lambda b: b.decode("latin-1")),
))
def test_get_with_any_locator_raises_only_not_found(tmp_path: Path, kubo: FakeKubo, locator: str) -> None:
    """Whatever text a client records as its locator, get() says 'not found' and nothing else."""
    for store in _hostile_stores(tmp_path, kubo):
        try:
            store.get(keccak(BLOB), locator)
        except (BlobNotFoundError, BlobIntegrityError):
            pass
    assert not any((tmp_path / "blobs").iterdir())


def test_ipfs_locator_naming_other_content_is_integrity_not_crash(kubo: FakeKubo) -> None:
    other = b"someone else's update"
    store = IpfsStore(kubo.url, timeout=5)
    store.put(other)
    with pytest.raises(BlobIntegrityError):
        store.fetch(keccak(BLOB), f"ipfs://{_raw_cid(other)}")
    assert kubo.cat_count == 1  # wrong bytes are final: not asked again


# --------------------------------------------------------------------------- bounded fetch (M-3)

SLACK = 5.0  # generous: the point is "bounded", not a precise timing


def test_fetch_from_a_hanging_node_gives_up_within_the_budget() -> None:
    budget = FetchBudget(seconds=1.5, attempts=3, request_timeout=1.0)
    with serve_hanging() as url:
        store = IpfsStore(url, timeout=60)  # its own timeout is long: the budget must win
        t0 = time.monotonic()
        with pytest.raises(BlobNotFoundError, match="Gave up after") as info:
            store.fetch(keccak(BLOB), f"ipfs://{_raw_cid(BLOB)}", budget)
        elapsed = time.monotonic() - t0
    assert elapsed < budget.seconds + SLACK
    assert info.value.transient and "\n" not in str(info.value)


def test_fetch_of_a_cid_the_node_hangs_on_gives_up_within_the_budget(kubo: FakeKubo) -> None:
    kubo.hang_cids.add(_raw_cid(BLOB))
    budget = FetchBudget(seconds=1.0, attempts=5, request_timeout=0.5)
    store = IpfsStore(kubo.url, timeout=60)
    t0 = time.monotonic()
    with pytest.raises(BlobNotFoundError, match="Gave up after"):
        store.fetch(keccak(BLOB), f"ipfs://{_raw_cid(BLOB)}", budget)
    assert time.monotonic() - t0 < budget.seconds + SLACK
    assert 1 <= kubo.cat_count <= budget.attempts


def test_fetch_from_a_node_answering_500_retries_then_not_found(kubo: FakeKubo) -> None:
    budget = FetchBudget(seconds=5.0, attempts=3, request_timeout=2.0, backoff=0.05)
    store = IpfsStore(kubo.url, timeout=60)
    t0 = time.monotonic()
    with pytest.raises(BlobNotFoundError, match="3 attempt.*could not find") as info:
        store.fetch(keccak(BLOB), f"ipfs://{_raw_cid(BLOB)}", budget)
    assert time.monotonic() - t0 < budget.seconds + SLACK
    assert kubo.cat_count == 3
    assert "\n" not in str(info.value)


def test_fetch_of_a_malformed_locator_does_not_retry(kubo: FakeKubo) -> None:
    store = IpfsStore(kubo.url, timeout=5)
    with pytest.raises(BlobNotFoundError, match="does not hold a CID") as info:
        store.fetch(keccak(BLOB), "ipfs://x-y", FetchBudget(seconds=5))
    assert not info.value.transient and kubo.cat_count == 0


def test_fetch_returns_a_served_blob_at_once(kubo: FakeKubo) -> None:
    publisher = IpfsStore(kubo.url, timeout=5)
    key = publisher.put(BLOB)
    reader = IpfsStore(kubo.url, timeout=5)
    assert reader.fetch(key, publisher.locator(key), FetchBudget(seconds=2)) == BLOB
    assert kubo.cat_count == 1


def test_fetch_budget_is_checked() -> None:
    for bad in (dict(attempts=0), dict(seconds=-1), dict(request_timeout=0)):
        with pytest.raises(ValueError, match="budget"):
            FetchBudget(**bad)


def test_oversized_blob_is_not_read_to_the_end(kubo: FakeKubo) -> None:
    big = b"x" * 300_000
    IpfsStore(kubo.url, timeout=5).put(big)
    store = IpfsStore(kubo.url, timeout=5, max_blob_bytes=100_000)
    with pytest.raises(BlobNotFoundError, match="larger than"):
        store.fetch(keccak(big), f"ipfs://{_raw_cid(big)}", FetchBudget(seconds=2, attempts=1))


# --------------------------------------------------------------------------- health checks (M-3)


def test_local_store_health_check(local: LocalStore) -> None:
    local.health_check()
    assert local.has(blob_key(b"chainfl blob store health probe v1\n"))
    local.health_check()  # probing again changes nothing


def test_local_store_health_check_fails_when_the_folder_is_gone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blobs")
    (tmp_path / "blobs").rmdir()
    (tmp_path / "blobs").write_bytes(b"not a folder")
    with pytest.raises(StoreUnhealthyError, match="health check.*writable") as info:
        store.health_check()
    assert "\n" not in str(info.value)


def test_ipfs_health_check_passes_on_a_working_node(kubo: FakeKubo) -> None:
    IpfsStore(kubo.url, timeout=5).health_check(timeout=5)
    assert kubo.add_count == 1 and kubo.cat_count == 1


def test_ipfs_health_check_fails_on_a_full_disk(kubo: FakeKubo) -> None:
    kubo.add_error = "mkdir /data/ipfs/blocks/XY: no space left on device"
    with pytest.raises(StoreUnhealthyError, match="no space left"):
        IpfsStore(kubo.url, timeout=5).health_check(timeout=5)


def test_ipfs_health_check_fails_in_time_on_a_hanging_node() -> None:
    with serve_hanging() as url:
        t0 = time.monotonic()
        with pytest.raises(StoreUnhealthyError, match="health check.*did not answer"):
            IpfsStore(url, timeout=60).health_check(timeout=1.0)
        assert time.monotonic() - t0 < 1.0 + SLACK


def test_ipfs_health_check_fails_when_nobody_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnhealthyError, match="ipfs daemon"):
        IpfsStore(f"http://127.0.0.1:{port}", timeout=2, connect_timeout=1).health_check(timeout=2)
