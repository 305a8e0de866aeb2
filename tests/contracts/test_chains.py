"""The contract suite on the other local chains: Anvil (ape-foundry) and Ganache.

Each test runs a smoke subset of tests/contracts in a subprocess
(`ape test ... --network ...`), the stateful test with fewer examples. The
full suite runs on either chain too:

    PATH=$PWD/.venv/bin:$PATH .venv/bin/ape test tests/contracts --network ethereum:local:foundry
    .venv/bin/ganache <GANACHE_ARGS below> --port 8545 &
    .venv/bin/ape test tests/contracts --network ethereum:local:http://127.0.0.1:8545

Ganache must run with `--miner.timestampIncrement 0` (see the Ganache notes in
tests/conftest.py: that is what makes `chain.pending_timestamp = t` exact).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MNEMONIC = "test test test test test test test test test test test junk"
GANACHE_ARGS = [
    "--wallet.mnemonic", MNEMONIC,
    "--wallet.totalAccounts", "20",
    "--wallet.defaultBalance", "100000",
    "--chain.chainId", "1337",
    "--chain.hardfork", "shanghai",
    "--miner.instamine", "eager",
    "--miner.timestampIncrement", "0",
    "--logging.quiet",
]  # fmt: skip
# Time travel on both sides of every boundary, ether in and out (balances, fees),
# re-entry, custom errors with arguments, and a short stateful run.
SMOKE = [
    "tests/contracts/test_cancel.py",
    "tests/contracts/test_reentrancy.py",
    "tests/contracts/test_rewards.py",
    "tests/contracts/test_registry.py::test_withdraw_stake_unbonding_boundary",
    "tests/contracts/test_registry.py::test_withdraw_stake_blocked_until_round_finalized",
    "tests/contracts/test_rounds.py::test_submit_at_deadline_boundary",
    "tests/contracts/test_rounds.py::test_stake_below_minimum_after_slash_then_top_up",
    "tests/contracts/test_finalize.py::test_finalize_deadline_boundary",
    "tests/contracts/test_finalize.py::test_rejected_slashed_excluded_untouched",
    "tests/contracts/test_finalize.py::test_invalid_verdict_duplicates",
    "tests/contracts/test_admin.py::test_contract_rejects_plain_ether",
    "tests/contracts/test_invariants.py",
]
SMOKE_FUZZ_EXAMPLES = "10"
TIMEOUT = 1200

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _only_from_the_embedded_chain(networks):
    # These tests start their own chains; from a session already on Anvil or
    # Ganache they would only repeat what that session runs.
    if networks.provider.name != "test":
        pytest.skip("multi-chain smoke runs start from the embedded-chain session")


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # anvil, ganache
    env["FL_FUZZ_EXAMPLES"] = SMOKE_FUZZ_EXAMPLES
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _which(name: str) -> str:
    path = shutil.which(name, path=_env()["PATH"])
    if path is None:
        pytest.skip(f"{name} is not installed (make setup links it into .venv/bin)")
    return path


def _run_ape_test(network: str) -> str:
    cmd = [str(VENV_BIN / "ape"), "test", *SMOKE, "--network", network, "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    summary = [ln for ln in out.splitlines() if " passed" in ln]
    assert summary and "failed" not in summary[-1] and "error" not in summary[-1], out[-3000:]
    return summary[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rpc(url: str, method: str, params=None):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.load(resp)["result"]


@pytest.mark.anvil
def test_contract_suite_on_anvil():
    _which("anvil")
    print(_run_ape_test("ethereum:local:foundry"))


@pytest.mark.ganache
def test_contract_suite_on_ganache(tmp_path):
    ganache = _which("ganache")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "ganache.log", "w")
    proc = subprocess.Popen(
        [ganache, "--server.port", str(port), "--server.host", "127.0.0.1", *GANACHE_ARGS],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole below
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "ganache.log").read_text()[-2000:]
            try:
                assert int(_rpc(url, "eth_chainId"), 16) == 1337
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        print(_run_ape_test(f"ethereum:local:{url}"))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()
