"""A JSON-RPC proxy that behaves like a hosted provider, to try a job against one locally.

    python -m ml.rpcproxy --upstream http://127.0.0.1:8545 --port 8546 --max-range 2000

forwards every request to the node, refuses ``eth_getLogs`` over more than
``--max-range`` blocks the way hosted providers do (error -32005), and counts the
calls by method. Point the parties at it (``APE_FOUNDRY_HOST=http://127.0.0.1:8546``)
to see that they keep working, and how many log queries a round costs:
``proxy_stats`` (a JSON-RPC method of the proxy itself) returns the counts and
``proxy_reset`` clears them. ``proxy_down`` / ``proxy_up`` make it refuse connections
(the node "restarting") and serve again.
"""
from __future__ import annotations

import argparse
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RpcProxy:
    """The proxy server; `start()` serves from a thread, `url` is where to point parties."""

    def __init__(self, upstream: str, max_range: int | None = 2000, host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream
        self.max_range = max_range
        self.counts: dict[str, int] = {}
        self.refused = 0
        self.down = False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if proxy.down:
                    self.close_connection = True
                    self.connection.close()  # the client sees a reset / refused connection
                    return
                try:
                    req = json.loads(body)
                except ValueError:
                    self._reply({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
                    return
                if isinstance(req, list):
                    self._reply([proxy.handle(r) for r in req])
                else:
                    self._reply(proxy.handle(req))

            def _reply(self, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RpcProxy":
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "RpcProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests
    def _forward(self, req: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(req).encode()
        http = urllib.request.Request(self.upstream, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(http, timeout=60) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            return {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32603, "message": f"upstream: {exc}"}}

    def _block(self, tag: Any) -> int:
        if isinstance(tag, str) and tag.startswith("0x"):
            return int(tag, 16)
        if tag in (None, "latest", "pending", "safe", "finalized"):
            res = self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})
            return int(res.get("result", "0x0"), 16)
        return 0  # "earliest"

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        method = str(req.get("method"))
        rid = req.get("id")
        if method == "proxy_stats":
            with self._lock:
                return {"jsonrpc": "2.0", "id": rid, "result": {"counts": dict(self.counts), "refused": self.refused}}
        if method == "proxy_reset":
            with self._lock:
                self.counts.clear()
                self.refused = 0
            return {"jsonrpc": "2.0", "id": rid, "result": True}
        if method in ("proxy_down", "proxy_up"):
            self.down = method == "proxy_down"
            return {"jsonrpc": "2.0", "id": rid, "result": True}
        with self._lock:
            self.counts[method] = self.counts.get(method, 0) + 1
        if method == "eth_getLogs" and self.max_range:
            filt = (req.get("params") or [{}])[0] or {}
            if "blockHash" not in filt:
                lo, hi = self._block(filt.get("fromBlock", "latest")), self._block(filt.get("toBlock", "latest"))
                if hi - lo + 1 > self.max_range:
                    with self._lock:
                        self.refused += 1
                    return {"jsonrpc": "2.0", "id": rid, "error": {
                        "code": -32005,
                        "message": f"block range is too large: {hi - lo + 1} > {self.max_range} blocks"}}
        return self._forward(req)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ml.rpcproxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", default="http://127.0.0.1:8545", help="the node to forward to")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8546, help="port to listen on")
    ap.add_argument("--max-range", type=int, default=2000,
                    help="refuse eth_getLogs over more blocks than this, as hosted providers do (0: no limit)")
    args = ap.parse_args(argv)
    proxy = RpcProxy(args.upstream, args.max_range or None, args.host, args.port)
    print(f"forwarding {proxy.url} -> {args.upstream}; eth_getLogs limited to "
          f"{args.max_range or 'any number of'} blocks (Ctrl-C stops)", flush=True)
    try:
        proxy.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server.server_close()


if __name__ == "__main__":
    main()
