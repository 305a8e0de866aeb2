"""Harness for the multi-party tests: an Anvil node, a private Ape data folder with imported accounts,
and party processes (`ape run ...`) whose output goes to files in tmp_path, printed when a test fails."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.nodes import MNEMONIC, ROOT, VENV_BIN, env

NETWORK = "ethereum:local:foundry"
PASSPHRASE = "correct-horse-9"


def key_of(index: int) -> str:
    """The private key of the test mnemonic's account `index` (funded on Anvil, Ganache and the embedded chain)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def address_of(index: int) -> str:
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").address


def anvil_node():
    """Anvil (from npm, in .venv/bin) on a free port with the test mnemonic; always stopped."""
    from tests.nodes import anvil

    return anvil(missing=lambda msg: pytest.skip.Exception(msg))


class Party:
    """One `ape run ...` process; stdout and stderr go to `log`."""

    def __init__(self, name: str, args: list[str], log: Path, environ: dict[str, str]):
        self.name = name
        self.args = args
        self.log = log
        self._fh = open(log, "w")
        self.proc = subprocess.Popen([str(VENV_BIN / "ape"), *args], cwd=ROOT, env=environ, stdout=self._fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:.0f} s") from None
        self._fh.close()
        return rc

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """Waits until the log has a line matching `pattern` (regex); fails if the process exits first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text())
            if m:
                return m
            if not self.running():
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before logging {pattern!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not log {pattern!r} within {timeout:.0f} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: as if the machine lost power."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self._fh.close()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


class Parties:
    """Starts parties with a private Ape data folder and the Anvil host; remembers them for clean-up."""

    def __init__(self, tmp_path: Path, url: str):
        self.tmp = tmp_path
        self.url = url
        self.data_folder = tmp_path / "ape-data"  # nothing touches ~/.ape
        self.data_folder.mkdir(exist_ok=True)
        self.procs: list[Party] = []
        e = env()
        e.update(
            APE_DATA_FOLDER=str(self.data_folder),
            # ape-foundry connects `--network ethereum:local:foundry` to this running Anvil instead of
            # starting its own (the generic `ethereum:local:<uri>` provider signs with chain id 1337,
            # which Anvil (31337) refuses).
            APE_FOUNDRY_HOST=url,
            PYTHONUNBUFFERED="1",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        e.setdefault("SOLCX_BINARY_PATH", str(ROOT / ".venv" / "solcx"))
        self.env = e

    def import_accounts(self, aliases: dict[str, int]) -> None:
        """Imports test-mnemonic keys as encrypted Ape accounts, the way an operator would.

        The first alias goes through the CLI (`ape accounts import`, key and passphrase on stdin), the
        others through `ape_accounts.import_account_from_private_key` in one Python process (faster).
        Each process that uses one gets its passphrase from APE_ACCOUNTS_<alias>_PASSPHRASE.
        """
        items = list(aliases.items())
        alias, index = items[0]
        res = subprocess.run([str(VENV_BIN / "ape"), "accounts", "import", alias], cwd=self.tmp, env=self.env,
                             input=f"{key_of(index)}\n{PASSPHRASE}\n{PASSPHRASE}\n", text=True,
                             capture_output=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (self.data_folder / "accounts" / f"{alias}.json").exists()
        if len(items) > 1:
            lines = ["from ape_accounts import import_account_from_private_key as imp"]
            lines += [f"imp({a!r}, {PASSPHRASE!r}, {key_of(i)!r})" for a, i in items[1:]]
            res = subprocess.run([str(VENV_BIN / "python"), "-c", "\n".join(lines)], cwd=self.tmp, env=self.env,
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stdout + res.stderr
        for a, _ in items:
            self.env[f"APE_ACCOUNTS_{a}_PASSPHRASE"] = PASSPHRASE

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Party:
        p = Party(name, [str(a) for a in args], self.tmp / f"{name}.log", {**self.env, **(env or {})})
        self.procs.append(p)
        return p

    def run(self, name: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> tuple[int, str]:
        p = self.start(name, *args, env=env)
        rc = p.wait(timeout)
        return rc, p.text()

    def logs(self) -> str:
        out = []
        for p in self.procs:
            state = "running" if p.running() else f"exit {p.proc.returncode}"
            out.append(f"===== {p.name} ({state}): ape {' '.join(p.args)}\n{p.text()}")
        return "\n".join(out)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.running():
                p.kill()


@contextlib.contextmanager
def on_anvil(url: str) -> Iterator[None]:
    """Connects this (test) process to the same Anvil, to read what the parties did."""
    from ape import networks

    old = os.environ.get("APE_FOUNDRY_HOST")
    os.environ["APE_FOUNDRY_HOST"] = url
    try:
        with networks.parse_network_choice(NETWORK):
            yield
    finally:
        if old is None:
            os.environ.pop("APE_FOUNDRY_HOST", None)
        else:
            os.environ["APE_FOUNDRY_HOST"] = old


def alter_blob(path: Path) -> None:
    """Flips one bit at the end of a stored blob (a float of the last tensor)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


SIGINT, SIGTERM = signal.SIGINT, signal.SIGTERM
