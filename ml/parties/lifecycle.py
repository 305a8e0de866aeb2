"""The shared lifecycle of every long-running party: errors, units, logging, signals,
retries with backoff, accounts and local data files."""
from __future__ import annotations


import math
import os
import re
import signal
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..chain import ChainError, WEI, is_dev_chain, wait_until
from ..models import ModelSpec


# Reverts that only mean "someone else moved first" (a race between parties):
# log them and carry on from the chain's state.
RACES = {"DeadlinePassed", "RoundNotOpen", "NotCurrentRound", "AlreadySubmitted", "RoundFull"}


class PartyError(RuntimeError):
    """A configuration or environment problem, explained for the user."""


class Abandoned(BaseException):
    """Raised by a second SIGINT/SIGTERM: give up the current step now."""


# --------------------------------------------------------------------------- units


_ETH_UNITS = {"wei": 0, "gwei": 9, "ether": 18, "eth": 18}


def parse_eth(value: Any, what: str = "amount") -> int:
    """Wei from ``0.1`` (ETH), ``"0.1"``, ``"0.1 ether"``, ``"100 gwei"`` or ``"5 wei"``."""
    if isinstance(value, bool):
        raise PartyError(f"{what} must be an amount of ETH, got {value!r}")
    text = str(value).strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", text)
    if not m or (m.group(2) and m.group(2) not in _ETH_UNITS):
        raise PartyError(f"{what}: cannot read {value!r}; write ETH as a number (0.1) or with a unit "
                         "(0.1 ether, 100 gwei, 5 wei)")
    try:
        amount = Decimal(m.group(1)) * (Decimal(10) ** _ETH_UNITS[m.group(2) or "ether"])
    except InvalidOperation:
        raise PartyError(f"{what}: cannot read {value!r}") from None
    if amount != amount.to_integral_value():
        raise PartyError(f"{what}: {value!r} is not a whole number of wei")
    return int(amount)


def _parse_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise PartyError(f"{what}: cannot read {value!r}; write true or false")


_SECONDS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, what: str = "duration") -> int:
    """Seconds from ``600``, ``"600"``, ``"10m"``, ``"1h"`` or ``"2d"``."""
    if isinstance(value, bool):
        raise PartyError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or value != int(value):
            raise PartyError(f"{what} must be a whole number of seconds >= 0, got {value!r}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]+)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in _SECONDS:
        raise PartyError(f"{what}: cannot read {value!r}; write seconds (600) or 30s, 10m, 1h, 2d")
    return int(m.group(1)) * _SECONDS[m.group(2)]


# --------------------------------------------------------------------------- output


class Log:
    """Timestamped lines on stdout (flushed: the parties usually run with their output in a file)."""

    def __init__(self, role: str, stream: Any = None):
        self.role = role
        self.stream = stream

    def __call__(self, message: str) -> None:
        stream = self.stream or sys.stdout
        print(f"{time.strftime('%H:%M:%S')} {self.role}: {message}", file=stream, flush=True)


def short(h: bytes | str | None, n: int = 10) -> str:
    if h is None:
        return "-"
    text = "0x" + h.hex() if isinstance(h, (bytes, bytearray)) else str(h)
    return text[: n + 2] + "…" if len(text) > n + 2 else text


def fmt_eth(wei: int) -> str:
    return f"{Decimal(wei) / WEI:f} ETH"


# --------------------------------------------------------------------------- stopping


class Stop:
    """SIGINT/SIGTERM: the first asks the loop to stop after its current step, a second abandons it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self._count = 0

    def install(self, log: Callable[[str], None]) -> "Stop":
        def handler(signum: int, _frame: Any) -> None:
            self._count += 1
            self.signal_name = signal.Signals(signum).name
            if self._count == 1:
                self.event.set()
                log(f"{self.signal_name} received: finishing the current step, then exiting "
                    "(send it again to abandon the step)")
            else:
                raise Abandoned(self.signal_name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)
        return self

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleeps, waking early on a stop request; True if stopping."""
        return self.event.wait(max(0.0, seconds))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = math.inf, poll: float = 0.5,
                 max_poll: float = 5.0) -> bool:
        """ml.chain.wait_until with backoff, interrupted by a stop request; True if predicate() held."""
        hit = wait_until(lambda: self.requested or predicate(), timeout, poll, max_poll, sleep=self.sleep)
        return hit and not self.requested


# --------------------------------------------------------------------------- chain helpers


def chain_now() -> int:
    """The timestamp the next block will (about) have: what deadlines are compared with."""
    from ape import chain

    try:
        return int(chain.pending_timestamp)
    except Exception:  # noqa: BLE001 - nodes without a pending block: the latest one, or the clock
        return max(int(chain.blocks.head.timestamp), int(time.time()))


def confirmed_now(fl: Any) -> int:
    """chain_now(), or with confirmations the timestamp of the block that many below the head: a deadline
    counts as passed once a block after it is confirmed (submissions before it can no longer be reorged in)."""
    if not getattr(fl, "confirmations", 0):
        return chain_now()
    from ape import chain

    return int(chain.blocks[max(0, chain.blocks.height - fl.confirmations)].timestamp)


def advance_chain_past(timestamp: int) -> None:
    """On a local dev chain, mine a block just after `timestamp` (Anvil, the embedded chain, Ganache)."""
    from ape import chain
    from ape.exceptions import APINotImplementedError

    if not is_dev_chain():
        raise PartyError("--advance-time moves the clock of a local dev chain only")
    try:
        if chain.pending_timestamp <= timestamp:
            chain.pending_timestamp = timestamp + 1
        chain.mine()
        return
    except APINotImplementedError:
        pass
    # Ape's generic node provider (used for Ganache) has no time travel: ask the node directly.
    provider = chain.provider
    try:
        provider.make_request("evm_mine", [{"timestamp": int(timestamp) + 1}])
    except Exception:  # noqa: BLE001 - not Ganache: the common hardhat/anvil-style methods
        delta = int(timestamp) + 1 - int(chain.blocks.head.timestamp)
        if delta > 0:
            provider.make_request("evm_increaseTime", [delta])
        provider.make_request("evm_mine", [])


def round_closed(fl: Any, n: int, current: int | None = None, phase: Any = None) -> bool:
    """Whether the job's round n is closed (decided, failed or cancelled): when a party run with
    --rounds n is done. n = 0 never closes (run until stopped). ``current`` (and the current round's
    ``phase``) save view calls."""
    from ..chain import Phase

    if not n:
        return False
    cur = fl.current_round() if current is None else current
    if cur != n:
        return cur > n
    return (phase if phase is not None else fl.round(n).phase) not in (Phase.OPEN, Phase.PROPOSED)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which a long-running party waits and tries again (node or store unreachable)."""
    from ape.exceptions import ProviderNotConnectedError

    from ..store import StoreUnavailableError

    return (OSError, ProviderNotConnectedError, StoreUnavailableError)


# How node trouble reads once Ape or web3 has wrapped it (a VirtualMachineError around a reset
# connection, a ProviderError around a refused one, a gateway's 502/503/429).
_NODE_TROUBLE = re.compile(
    r"Connection (aborted|refused|reset)|ConnectionResetError|ConnectionRefusedError|RemoteDisconnected"
    r"|Max retries exceeded|Failed to establish a new connection|Read timed out|timed out|ProviderNotConnected"
    r"|Bad Gateway|Service Unavailable|Gateway Time-?out|Too Many Requests|\b(502|503|504|429)\b.*(error|http)"
    r"|not connected|BrokenPipe|EOF occurred", re.I)


def is_transient(exc: BaseException) -> bool:
    """Whether an error only means the node (or the store) is unreachable for now: wait and try again.

    Looks through the chain of wrapped exceptions, since Ape reports a reset connection during a
    transaction as a VirtualMachineError and our ChainError carries its text.
    """
    errors = transient_errors()
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, errors):
            return True
        if isinstance(e, ChainError) and e.reverted:
            continue  # the contract said no: not the node's fault
        if _NODE_TROUBLE.search(str(e)):
            return True
        stack += [e.__cause__, e.__context__, *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]]
    return False


_TROUBLE_NAMES = [  # what a wrapped connection error means, in a few words
    (re.compile(r"Connection refused|NewConnectionError|Failed to establish", re.I), "connection refused"),
    (re.compile(r"Connection reset|ConnectionResetError|Connection aborted|RemoteDisconnected|BrokenPipe", re.I),
     "connection reset"),
    (re.compile(r"timed out|Timeout", re.I), "timed out"),
    (re.compile(r"Too Many Requests|\b429\b", re.I), "rate limited (429)"),
    (re.compile(r"Bad Gateway|Service Unavailable|Gateway Time-?out|\b50[234]\b", re.I), "gateway error"),
]


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An error as one short line for a log: a connection problem by name, anything else its message, shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for rx, name in _TROUBLE_NAMES:
        if rx.search(text):
            return name
    return text if len(text) <= limit else text[:limit - 1] + "…"


def job_lost(fl: Any) -> str | None:
    """Why the job is gone from the node (None while its contract is there, or if the node does not answer).

    A dev chain restarted without its state (Anvil without --state) has lost every contract.
    """
    from ape import chain

    try:
        code = chain.provider.get_code(fl.address)
    except Exception:  # noqa: BLE001 - the node does not answer: that is not a lost job (yet)
        return None
    if code:
        return None
    return (f"the job's contract {fl.address} is no longer on the node: the chain was reset (a dev chain "
            "restarted without its state, e.g. Anvil without --state) or this is another network. Deploy "
            "again (ape run deploy), or restart the node with the state it had (anvil --state FILE)")


def run_until_done(step: Callable[[], str | None], stop: "Stop", log: Callable[[str], None],
                   fl: Any = None) -> str:
    """Calls step() until it says why it is done or a signal stops the party; returns that reason.

    While the node or the store is unreachable (refused, reset or timed-out connections, a node that
    restarts), waits with exponential backoff (at most 30 s) and tries again, one line per problem:
    every step starts from the chain's state, so a step cut short is simply done again. If the job's
    contract is gone from the node (`fl` given), stops with one line saying what to do.
    """
    failures = 0
    while not stop.requested:
        try:
            done = step()
            if done:
                return done
            if failures:
                log(f"working again after {failures} failed attempt(s); carrying on")
            failures = 0
        except Exception as exc:  # noqa: BLE001 - sorted below: lost job, transient, or a real error
            from ..store import StoreUnhealthyError

            lost = job_lost(fl) if fl is not None else None
            if lost:
                raise PartyError(lost) from None
            if not is_transient(exc):
                raise
            failures += 1
            delay = min(30.0, 2.0 ** failures)
            if isinstance(exc, StoreUnhealthyError):  # the message says what is wrong and what to do
                log(f"{exc}; checking again in {delay:.0f} s")
            else:
                log(f"node or store unreachable: {one_line(exc)} ({type(exc).__name__}); retrying in {delay:.0f} s")
            stop.sleep(delay)
    return f"stopped by {stop.signal_name}"


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors the commands report as one clear line (a configuration or environment problem), not a traceback."""
    from ..data import DatasetError
    from ..models import ModelSpecError
    from ..partition import PartitionError
    from ..sealing import KeyFileError
    from ..store import BlobStoreError

    return (PartyError, ChainError, KeyFileError, BlobStoreError, DatasetError, ModelSpecError, PartitionError)


def run_party(make: Callable[[], Any], log: Callable[[str], None]) -> tuple[Any, str] | None:
    """Builds a party with make() and runs it: (party, why it stopped), or None when a second signal
    abandoned the step. The commands' edge: a user error becomes one line (click), not a traceback."""
    import click

    try:
        party = make()
        return party, party.run()
    except user_errors() as exc:
        raise click.ClickException(str(exc)) from None
    except Abandoned as exc:
        log(f"{exc} received again: abandoned the current step; the chain holds the state, run the same "
            "command to continue")
        return None


def prepare_account(account: Any, log: Callable[[str], None]) -> None:
    """Lets an unattended process sign: autosign with the passphrase from APE_ACCOUNTS_<alias>_PASSPHRASE.

    Ape's test accounts (``TEST::0``) sign without a passphrase. An imported
    account (``ape accounts import``) is encrypted: with the environment variable
    set it is unlocked without a prompt; in a terminal without it, Ape asks for
    the passphrase once; with neither, the process stops with what to set.
    """
    if not hasattr(account, "set_autosign"):
        return
    _quiet_cached_key_warning()
    alias = getattr(account, "alias", None) or "?"
    env = f"APE_ACCOUNTS_{alias}_PASSPHRASE"
    passphrase = os.environ.get(env)
    from ape.exceptions import AccountsError

    wrong = (f"the passphrase {'in ' + env if passphrase else 'given'} does not unlock account {alias!r} "
             f"({account.address}): set the right one, or `ape accounts change-password {alias}`")
    if passphrase:
        try:
            account.set_autosign(True, passphrase=passphrase)
        except AccountsError:
            raise PartyError(wrong) from None
        log(f"account {alias} ({account.address}) unlocked from {env}; signing unattended")
    elif sys.stdin.isatty():
        try:
            account.set_autosign(True)  # prompts for the passphrase once
        except AccountsError:
            raise PartyError(wrong) from None
        log(f"account {alias} ({account.address}) unlocked; signing unattended")
    else:
        raise PartyError(
            f"account {alias!r} is encrypted and this process runs unattended: set {env} to its passphrase "
            f"(e.g. `export {env}=...`; an alias with '-' cannot be a shell variable, prefer '_')"
        )


def _quiet_cached_key_warning() -> None:
    """Ape warns "Using cached key for <alias>" at every signature of an unlocked account; the party has
    said once that it signs unattended, which is the same thing."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("Using cached key for")

    logging.getLogger("ape").addFilter(_Drop())  # Ape's logger (ape.logging.logger) is this one


def max_fee_per_gas() -> int:
    """What a transaction may pay per gas now, as the node sees it (Ape reserves gas limit times this)."""
    from ape import chain

    provider = chain.provider
    try:
        return int(provider.base_fee) * 2 + int(provider.priority_fee)
    except Exception:  # noqa: BLE001 - a node without EIP-1559 fields (or without eth_maxPriorityFeePerGas)
        return int(provider.gas_price)


def ensure_funds(account: Any, value: int, what: str, gas: int = 0) -> None:
    """Stops with one line when the account cannot pay `value` plus up to `gas` at today's fee."""
    from ape import chain

    balance = int(chain.provider.get_balance(account.address))
    reserve = gas * max_fee_per_gas() if gas else 0
    if balance < value + reserve:
        parts = f" ({fmt_eth(value)} + up to {fmt_eth(reserve)} of gas at the current fee)" if reserve else ""
        raise PartyError(f"{account.address} has {fmt_eth(balance)}; {what} needs {fmt_eth(value + reserve)}{parts}; "
                         "fund the account (a faucet on a testnet)")


# --------------------------------------------------------------------------- data


def load_npz(path: str | os.PathLike[str], what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an .npz holding arrays ``x`` (features in [0, 1]) and ``y`` (class indices)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PartyError(f"{what} file {file} not found; write one with `python -m ml.parties.split ...`")
    try:
        with np.load(file, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise PartyError(f"{file} has arrays {sorted(data.files)}; it needs 'x' and 'y'")
            x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"]).astype(np.int64)
    except (OSError, ValueError) as exc:
        raise PartyError(f"{file} is not a readable .npz file: {exc}") from None
    if len(x) != len(y):
        raise PartyError(f"{file}: x has {len(x)} rows but y has {len(y)}")
    if len(x) == 0:
        raise PartyError(f"{file} holds no samples")
    return x, y


def check_data_fits(x: np.ndarray, y: np.ndarray, spec: ModelSpec, file: str) -> None:
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise PartyError(f"{file}: samples have shape {tuple(x.shape[1:])} but the job's model takes "
                         f"{tuple(spec.input_shape)}; split the job's dataset with `python -m ml.parties.split`")
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise PartyError(f"{file}: labels run from {y.min()} to {y.max()}, the job's model has "
                         f"{spec.num_classes} classes (0..{spec.num_classes - 1})")
