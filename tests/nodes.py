"""Local chain processes for tests: pick a free port, wait until the node answers, always stop it."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
MNEMONIC = "test test test test test test test test test test test junk"


def env() -> dict[str, str]:
    """The environment `make` gives: the venv's bin (ape, anvil, ganache) first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None, timeout: float = 2.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())["result"]


def wait_for_rpc(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the node at {url} exited with code {proc.returncode} before answering")
        try:
            rpc(url, "eth_chainId")
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {timeout:.0f} s")


GANACHE_ARGS = [
    "--wallet.mnemonic", MNEMONIC,
    "--wallet.totalAccounts", "20",
    "--wallet.defaultBalance", "100000",
    "--chain.chainId", "1337",
    "--miner.timestampIncrement", "0",
    "--logging.quiet",
]


@contextlib.contextmanager
def node(name: str, args_for_port, *, missing=RuntimeError) -> Iterator[str]:
    """Starts a local chain binary (from npm, linked into .venv/bin) on a free port; yields its URL.

    `args_for_port(port)` gives the command-line arguments; the node is always stopped.
    """
    exe = shutil.which(name, path=env()["PATH"])
    if exe is None:
        raise missing(f"{name} is not installed: run `make setup`")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([exe, *args_for_port(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    try:
        wait_for_rpc(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ganache(extra: list[str] | None = None):
    """Ganache with the test mnemonic and 20 funded accounts."""
    return node("ganache", lambda port: ["--server.port", str(port), *GANACHE_ARGS, *(extra or [])])


def anvil(extra: list[str] | None = None, missing=RuntimeError):
    """Anvil with the test mnemonic and 20 funded accounts."""
    return node("anvil", lambda port: ["--port", str(port), "--mnemonic", MNEMONIC, "--accounts", "20",
                                       *(extra or [])], missing=missing)


def run_ape(args: list[str], timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Runs the project's `ape` as a user would, capturing its output."""
    return subprocess.run([str(VENV_BIN / "ape"), *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)
