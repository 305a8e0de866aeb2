"""Fake IPFS servers on 127.0.0.1 for the store tests and the e2e attacks.

No IPFS daemon can be installed here, so :func:`serve_kubo` speaks the two
endpoints IpfsStore uses, as kubo does, and :func:`serve_hanging` is a server
that accepts connections and never answers (a locator pointing at a node that
is "up" but serves nothing). Both bind 127.0.0.1 only, hold a connection for a
bounded time at most, and stop themselves when the ``with`` block ends.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_HANG = 30.0
"""Seconds a hanging request is held at most (the test is over long before)."""


def raw_cid(data: bytes) -> str:
    """CIDv1 of a single raw block (what kubo returns for small files with cid-version=1)."""
    digest = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(digest).decode().lower().rstrip("=")


@dataclass
class FakeKubo:
    """State of the fake daemon; tests inspect it and switch its failure modes."""

    url: str = ""
    blocks: dict[str, bytes] = field(default_factory=dict)
    add_params: list[dict[str, list[str]]] = field(default_factory=list)
    cat_count: int = 0
    add_count: int = 0
    hang_cids: set[str] = field(default_factory=set)  # cat of these never answers
    hang_all: bool = False  # every request hangs (a wedged daemon)
    add_error: str | None = None  # add answers 500 with this message (say, a full disk)
    released: threading.Event = field(default_factory=threading.Event)

    def hang(self) -> None:
        """Holds the request until the server stops (or MAX_HANG), then drops it unanswered."""
        self.released.wait(MAX_HANG)


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
            if state.hang_all:
                state.hang()
                return
            if url.path == "/api/v0/add":
                state.add_count += 1
                if state.add_error is not None:
                    self._json(500, {"Message": state.add_error, "Code": 0, "Type": "error"})
                    return
                state.add_params.append(query)
                message = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                part = next(iter(message.iter_parts()))
                data = part.get_payload(decode=True)
                cid = raw_cid(data)
                state.blocks[cid] = data
                self._json(200, {"Name": part.get_filename(), "Hash": cid, "Size": str(len(data))})
            elif url.path == "/api/v0/cat":
                state.cat_count += 1
                cid = query.get("arg", [""])[0]
                if cid in state.hang_cids:
                    state.hang()
                    return
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


@contextmanager
def serve_kubo() -> Iterator[FakeKubo]:
    """A protocol-level fake of the kubo (go-ipfs) HTTP RPC API on 127.0.0.1.

    POST /api/v0/add (multipart upload, JSON answer with the CID in "Hash") and
    POST /api/v0/cat?arg=<cid> (raw bytes; HTTP 500 with a JSON "Message" for
    unknown CIDs). It is not a content-routing node: it serves only what was
    added to it, and hangs where the test tells it to.
    """
    state = FakeKubo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()  # hanging handlers return
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve_hanging(lifetime: float = 60.0) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a server that accepts every connection and never answers.

    Connections are held open (not even an HTTP status line is sent) until the
    ``with`` block ends or ``lifetime`` seconds pass, whichever comes first.
    """
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    end = time.monotonic() + lifetime

    def accept() -> None:
        while not stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            held.append(conn)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
