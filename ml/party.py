"""The parties of a real federation, one process each: deploy, aggregator, client.

`ml.federation` plays every party in one process on a dev chain. Here each
party is its own long-running process, possibly on its own machine, that meets
the others only on the chain and in the update store:

* :func:`deploy_job` (``ape run deploy``): job parameters from options and/or a
  YAML/JSON file, the aggregator's sealing key (generated into a 0600 file
  unless given), the initial model blob in the store, the contract, and a
  record in the deployments file (keyed by network) that every other command
  reads.
* :class:`AggregatorParty` (``ape run aggregator``): start a round, wait until
  every active client is in (or the deadline), finalize, repeat.
* :class:`ClientParty` (``ape run client``): register if needed, wait for an
  open round it has not submitted to, train on its own ``.npz``, submit, claim
  its rewards and withdraw them, repeat.
* :func:`split_dataset` (``python -m ml.party split``): per-client ``.npz`` files
  and the aggregator's evaluation set, from a dataset and a partition.

Every party takes its state from the chain and the store, so it can be killed
at any point and restarted with the same command: a client never submits twice
to a round (it asks the chain first), an aggregator resumes the open round.
SIGINT/SIGTERM ask a party to finish the step it is in and exit 0; a second
signal abandons the step (safe for the same reason).
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import numpy as np
from eth_utils import to_checksum_address

from . import aggregation, codec
from .chain import (
    ChainError,
    ClientStatus,
    Deployment,
    FLContract,
    JobParams,
    Phase,
    UpdateStatus,
    WEI,
    ZERO_ADDRESS,
    DEFAULT_ADMIN_DELAY,
    is_dev_chain,
    load_deployment,
    network_name,
    save_deployment,
    wait_until,
)
from .models import ARCHS, ModelSpec, initial_weights, num_params, spec_for_dataset, tensor_names
from .store import BlobStore, open_store
from .training import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE  # TensorFlow loads lazily

STRATEGIES = tuple(aggregation.STRATEGIES)
MAX_UPDATES_PER_ROUND = 1000  # the contract's bound (FederatedLearning.MAX_UPDATES_PER_ROUND)
DEFAULT_DEPLOYMENTS = "deployments.json"
DEFAULT_KEY_FILE = "aggregator.key"
DEFAULT_STORE = "store"

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


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which a long-running party waits and tries again (node or store unreachable)."""
    from ape.exceptions import ProviderNotConnectedError

    from .store import StoreUnavailableError

    return (OSError, ProviderNotConnectedError, StoreUnavailableError)


def run_until_done(step: Callable[[], str | None], stop: "Stop", log: Callable[[str], None]) -> str:
    """Calls step() until it says why it is done or a signal stops the party; returns that reason.

    While the node or the store is unreachable, waits with exponential backoff (at most 30 s)
    and tries again: both parties follow the chain this way.
    """
    errors = transient_errors()
    failures = 0
    while not stop.requested:
        try:
            done = step()
            if done:
                return done
            failures = 0
        except errors as exc:
            from .store import StoreUnhealthyError

            failures += 1
            delay = min(30.0, 2.0 ** failures)
            if isinstance(exc, StoreUnhealthyError):  # the message says what is wrong and what to do
                log(f"{exc}; checking again in {delay:.0f} s")
            else:
                log(f"node or store unreachable ({type(exc).__name__}: {exc}); retrying in {delay:.0f} s")
            stop.sleep(delay)
    return f"stopped by {stop.signal_name}"


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors the commands report as one clear line (a configuration or environment problem), not a traceback."""
    from .data import DatasetError
    from .models import ModelSpecError
    from .partition import PartitionError
    from .sealing import KeyFileError
    from .store import BlobStoreError

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
    if passphrase:
        account.set_autosign(True, passphrase=passphrase)
        log(f"account {alias} ({account.address}) unlocked from {env}; signing unattended")
    elif sys.stdin.isatty():
        account.set_autosign(True)  # prompts for the passphrase once
        log(f"account {alias} ({account.address}) unlocked; signing unattended")
    else:
        raise PartyError(
            f"account {alias!r} is encrypted and this process runs unattended: set {env} to its passphrase "
            f"(e.g. `export {env}=...`; an alias with '-' cannot be a shell variable, prefer '_')"
        )


def _quiet_cached_key_warning() -> None:
    """Ape warns "Using cached key for <alias>" at every signature of an unlocked account: once is enough."""
    import logging

    class _Once(logging.Filter):
        seen = False

        def filter(self, record: logging.LogRecord) -> bool:
            if str(record.msg).startswith("Using cached key for"):
                if self.seen:
                    return False
                self.seen = True
            return True

    logging.getLogger("ape").addFilter(_Once())


def ensure_funds(account: Any, need: int, what: str) -> None:
    from ape import chain

    balance = int(chain.provider.get_balance(account.address))
    if balance < need:
        raise PartyError(f"{account.address} has {fmt_eth(balance)}, {what} needs about {fmt_eth(need)} plus gas; "
                         "fund the account (a faucet on a testnet)")


# --------------------------------------------------------------------------- data


def load_npz(path: str | os.PathLike[str], what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an .npz holding arrays ``x`` (features in [0, 1]) and ``y`` (class indices)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PartyError(f"{what} file {file} not found; write one with `python -m ml.party split ...`")
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
                         f"{tuple(spec.input_shape)}; split the job's dataset with `python -m ml.party split`")
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise PartyError(f"{file}: labels run from {y.min()} to {y.max()}, the job's model has "
                         f"{spec.num_classes} classes (0..{spec.num_classes - 1})")


def split_dataset(dataset: str, clients: int, out: str | os.PathLike[str], *, scheme: str = "iid",
                  alpha: float = 0.5, shards_per_client: int = 2, seed: int = 0,
                  data_path: str | None = None) -> dict[str, Any]:
    """Writes ``client-<i>.npz`` (its share of the training split) and ``eval.npz`` (the test split)."""
    from .data import load_dataset
    from .partition import partition, summarize

    ds = load_dataset(dataset, path=data_path, seed=seed)
    parts = partition(ds.y_train, clients, scheme, alpha=alpha, shards_per_client=shards_per_client, seed=seed)
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, idx in enumerate(parts):
        path = folder / f"client-{i}.npz"
        np.savez(path, x=ds.x_train[idx].astype(np.float32), y=ds.y_train[idx].astype(np.int64))
        files.append(path)
    eval_path = folder / "eval.npz"
    np.savez(eval_path, x=ds.x_test.astype(np.float32), y=ds.y_test.astype(np.int64))
    return dict(dataset=ds, clients=files, eval=eval_path,
                summary=summarize(ds.y_train, parts, ds.num_classes))


# --------------------------------------------------------------------------- the job


@dataclass
class DeployConfig:
    """Everything `ape run deploy` needs; amounts in wei, durations in seconds."""

    min_stake: int = WEI // 10
    unbonding: int = 3600
    submission_period: int = 600
    grace: int = 600
    quorum: int = 1
    cap: int = 0  # maxUpdatesPerRound, 0 = the contract's MAX_UPDATES_PER_ROUND (1000)
    max_samples: int = 100_000
    slash_bps: int = 5000
    reward: int = WEI // 100  # per round
    norm_bound: float = 0.0  # 0 = none published
    dataset: str = "digits"
    data_path: str | None = None
    arch: str = "mlp"
    seed: int = 0
    strategy: str = "fedavg"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    fund: int = 0  # wei put in the reward pool at deployment
    treasury: str = ZERO_ADDRESS  # receives slashed stake; the zero address burns it
    permissioned: bool = False  # clients need a registrar's admission with a sample allowance
    admin_delay: int = DEFAULT_ADMIN_DELAY  # seconds before a nominated admin may accept the role

    def check(self) -> None:
        if self.quorum < 1:
            raise PartyError("quorum must be at least 1")
        if self.cap and self.cap < self.quorum:
            raise PartyError(f"cap ({self.cap}) is below the quorum ({self.quorum})")
        if not 0 <= self.cap <= MAX_UPDATES_PER_ROUND:
            raise PartyError(f"cap must be in 0..{MAX_UPDATES_PER_ROUND} (a round's verdicts must fit in a block); "
                             f"got {self.cap}")
        if self.quorum > (self.cap or MAX_UPDATES_PER_ROUND):
            raise PartyError(f"quorum ({self.quorum}) is above the cap of {self.cap or MAX_UPDATES_PER_ROUND} updates")
        if self.grace < 1:
            raise PartyError("grace must be at least 1 s: the aggregator needs a window in which nobody else "
                             "can cancel the round")
        from eth_utils import is_address

        if not is_address(self.treasury):
            raise PartyError(f"treasury must be an address (0x followed by 40 hex digits), got {self.treasury!r}")
        if not 0 <= self.slash_bps <= 10_000:
            raise PartyError(f"slash_bps must be in 0..10000, got {self.slash_bps}")
        if self.submission_period < 1:
            raise PartyError("submission_period must be at least 1 s")
        if self.max_samples < 1:
            raise PartyError("max_samples must be at least 1")
        if self.min_stake <= 0:
            raise PartyError("min_stake must be above 0")
        if self.norm_bound < 0:
            raise PartyError("norm_bound must be >= 0 (0 = none)")
        if self.arch not in ARCHS:
            raise PartyError(f"arch must be one of {', '.join(ARCHS)}")
        if self.strategy not in STRATEGIES:
            raise PartyError(f"strategy must be one of {', '.join(STRATEGIES)}")

    def job_params(self, spec: ModelSpec, initial_hash: bytes, aggregator_key: bytes) -> JobParams:
        return JobParams(
            minStake=self.min_stake, unbondingPeriod=self.unbonding, submissionPeriod=self.submission_period,
            gracePeriod=self.grace, quorum=self.quorum, maxUpdatesPerRound=self.cap,
            maxSamplesPerUpdate=self.max_samples, slashBps=self.slash_bps, rewardPerRound=self.reward,
            normBound=int(round(self.norm_bound * 1e6)), modelSpecHash=spec.hash(),
            initialModelHash=initial_hash, aggregatorKey=aggregator_key,
            treasury=to_checksum_address(self.treasury), permissioned=self.permissioned,
        )


_ETH_FIELDS = {"min_stake", "reward", "fund"}
_DURATION_FIELDS = {"unbonding", "submission_period", "grace", "admin_delay"}
_INT_FIELDS = {"quorum", "cap", "max_samples", "slash_bps", "seed"}
# Shorthands for strategy parameters, as `ape run federated_round` names them.
_STRATEGY_SHORTHANDS = {"trim_beta": "beta", "krum_f": "f", "krum_m": "m"}


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML or JSON mapping of deploy settings (keys as the options, '-' or '_')."""
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as exc:
        raise PartyError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise their own errors
        kind = "JSON" if file.suffix.lower() == ".json" else "YAML"
        raise PartyError(f"config file {file} is not valid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PartyError(f"config file {file} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def make_deploy_config(*sources: dict[str, Any]) -> DeployConfig:
    """Defaults, overridden by each source in turn (the config file, then the command-line options).

    None values are skipped (an option that was not given)."""
    names = {f.name for f in fields(DeployConfig)}
    values: dict[str, Any] = {}
    strategy_params: dict[str, Any] = {}
    explicit: set[str] = set()  # keys given in strategy_params (shorthands may not apply to the strategy)
    for source in sources:
        for raw_key, value in source.items():
            if value is None:
                continue
            key = str(raw_key).replace("-", "_")
            if key in _STRATEGY_SHORTHANDS:
                strategy_params[_STRATEGY_SHORTHANDS[key]] = value
                continue
            if key == "strategy_params":
                if not isinstance(value, dict):
                    raise PartyError("strategy_params must be a mapping, e.g. {beta: 0.2}")
                strategy_params.update(value)
                explicit.update(value)
                continue
            if key not in names:
                allowed = sorted((names - {"strategy_params"}) | set(_STRATEGY_SHORTHANDS) | {"strategy_params"})
                raise PartyError(f"unknown deploy setting {raw_key!r}; known: {', '.join(allowed)}")
            try:
                if key in _ETH_FIELDS:
                    value = parse_eth(value, key)
                elif key in _DURATION_FIELDS:
                    value = parse_duration(value, key)
                elif key in _INT_FIELDS:
                    value = int(value)
                elif key == "norm_bound":
                    value = float(value)
                elif key == "permissioned":
                    value = _parse_bool(value, key)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                raise PartyError(f"deploy setting {key}: cannot read {value!r}") from None
            values[key] = value
    cfg = DeployConfig(**values)
    strategy = cfg.strategy
    allowed_params = {"fedavg": set(), "median": set(), "trimmed_mean": {"beta"}, "krum": {"f"},
                      "multi_krum": {"f", "m"}}[strategy] if strategy in STRATEGIES else set()
    unknown = sorted(explicit - allowed_params)
    if unknown:
        raise PartyError(f"strategy {strategy!r} takes no parameter(s) {unknown}; it takes "
                         f"{sorted(allowed_params) or 'none'}")
    cfg.strategy_params = {k: v for k, v in strategy_params.items() if k in allowed_params}
    if strategy == "trimmed_mean":
        cfg.strategy_params.setdefault("beta", 0.2)
    if strategy in ("krum", "multi_krum"):
        cfg.strategy_params.setdefault("f", 1)
    cfg.check()
    return cfg


@dataclass
class Job:
    """A deployed job as a party sees it: the record, the contract, the model spec and the store."""

    deployment: Deployment
    fl: FLContract
    spec: ModelSpec
    store: BlobStore
    chain_id: int
    network: str

    @property
    def strategy(self) -> str:
        return str(self.deployment.extra.get("strategy", "fedavg"))

    @property
    def strategy_params(self) -> dict[str, Any]:
        return dict(self.deployment.extra.get("strategy_params", {}) or {})

    def model_locator(self, model_hash: bytes) -> str | None:
        """Where a global model was published (RoundFinalized's locator, or the deployment's initial one)."""
        if model_hash == self.fl.params().initialModelHash:
            return self.deployment.extra.get("initial_model_locator")
        for ev in reversed(self.fl.events("RoundFinalized")):
            if bytes(ev.modelHash) == model_hash:
                return str(ev.locator)
        return None

    def prefetch_model(self, model_hash: bytes) -> bytes:
        """The verified global model blob, fetched with its published locator (IPFS learns the CID)."""
        return self.store.get(model_hash, self.model_locator(model_hash))


def open_job(deployments: str | os.PathLike[str], store: str | None = None, *, ipfs_index: str | None = None) -> Job:
    """The job recorded for the connected network, checked against the chain."""
    from ape import chain

    net = network_name()
    path = Path(deployments).expanduser()
    dep = load_deployment(path, net)
    if dep is None:
        known = sorted(json.loads(path.read_text())) if path.exists() else []
        raise PartyError(
            f"no deployment for {net} in {path}"
            + (f" (it has {', '.join(known)})" if known else " (the file does not exist)")
            + f"; deploy first with `ape run deploy --network {net} --account ...`, or pass --deployments"
        )
    if dep.chain_id != chain.chain_id:
        raise PartyError(f"{path} records the job on chain {dep.chain_id}, but the node is chain {chain.chain_id}; "
                         "wrong --network, or the node was restarted: deploy again")
    try:
        fl = FLContract.at(dep.address, deploy_block=dep.block)
    except ChainError as exc:
        raise PartyError(f"{exc} (address {dep.address} from {path}; a dev chain that was restarted loses its "
                         "contracts: deploy again)") from None
    spec = ModelSpec.from_json(json.dumps(dep.model_spec))
    if spec.hash() != fl.params().modelSpecHash:
        raise PartyError(f"the model spec in {path} does not hash to the contract's modelSpecHash: the file was edited")
    store_spec = store or dep.extra.get("store") or DEFAULT_STORE
    return Job(dep, fl, spec, open_store(str(store_spec), ipfs_index=ipfs_index), int(chain.chain_id), net)


@dataclass
class DeployResult:
    deployment: Deployment
    key_file: Path
    key_generated: bool
    replaced: str | None
    gas: int


def deploy_job(account: Any, cfg: DeployConfig, *, aggregator: str | None = None,
               key_file: str | os.PathLike[str] | None = None, store: str = DEFAULT_STORE,
               deployments: str | os.PathLike[str] = DEFAULT_DEPLOYMENTS, replace: bool = False,
               log: Callable[[str], None] = print) -> DeployResult:
    """Deploys a job and records it; the sealing key is read from, or generated into, `key_file`."""
    from ape import chain

    from .data import load_dataset
    from .sealing import generate_keypair, load_private_key, public_key_of, save_private_key

    net = network_name()
    dep_path = Path(deployments).expanduser()
    old = load_deployment(dep_path, net)
    replaced = None
    if old is not None:
        alive = old.chain_id == chain.chain_id and bool(chain.provider.get_code(old.address))
        if alive and not replace:
            raise PartyError(f"{dep_path} already records a job on {net} at {old.address} (block {old.block}); "
                             "pass --replace to deploy a new job in its place, or --deployments another file")
        replaced = old.address

    # The model the job trains: sized for the dataset, seeded initial weights in the store.
    ds = load_dataset(cfg.dataset, path=cfg.data_path, seed=cfg.seed)
    spec = spec_for_dataset(ds, cfg.arch)
    blob_store = open_store(store)
    initial_hash = blob_store.put(codec.encode(initial_weights(spec, cfg.seed), tensor_names(spec)))
    initial_locator = blob_store.locator(initial_hash)

    # The aggregator's sealing key: updates are encrypted to its public half.
    key_path = Path(key_file or DEFAULT_KEY_FILE).expanduser()
    generated = not key_path.exists()
    if generated:
        save_private_key(key_path, generate_keypair().private)  # mode 0600, never printed
    private = load_private_key(key_path)
    public = public_key_of(private)

    from eth_utils import is_address, to_checksum_address

    if aggregator is not None and not is_address(aggregator):
        raise PartyError(f"--aggregator must be an address (0x followed by 40 hex digits), got {aggregator!r}")
    aggregator = to_checksum_address(aggregator or str(account.address))
    params = cfg.job_params(spec, initial_hash, public)
    ensure_funds(account, cfg.fund, "deploying and funding the rewards")
    log(f"deploying from {account.address}: {spec.arch} for {cfg.dataset} ({num_params(spec):,} parameters), "
        f"initial model 0x{initial_hash.hex()[:10]}… in {blob_store}")
    fl = FLContract.deploy(account, params, str(account.address), aggregator, admin_delay=cfg.admin_delay)
    if cfg.fund:
        fl.fund(account, cfg.fund)
    dep = Deployment(
        network=net, chain_id=int(chain.chain_id), address=fl.address, block=fl.deploy_block,
        params=params.to_json(), model_spec=spec.to_dict(), aggregator=aggregator, admin=str(account.address),
        extra=dict(
            strategy=cfg.strategy, strategy_params=cfg.strategy_params, dataset=cfg.dataset, arch=cfg.arch,
            seed=cfg.seed, store=str(store), initial_model_locator=initial_locator,
            aggregator_public_key="0x" + public.hex(), model_spec_hash=spec.hash_hex(),
            num_params=num_params(spec), funded=cfg.fund, deployed_at=int(time.time()),
        ),
    )
    save_deployment(dep_path, dep)
    return DeployResult(dep, key_path, generated, replaced, fl.meter.total)


def admit_clients(account: Any, job: "Job", clients: list[str], samples: int,
                  log: Callable[[str], None] = print) -> None:
    """The registrar admits each client of a permissioned job with a sample allowance per update."""
    from eth_utils import is_address

    fl = job.fl
    params = fl.params()
    if not params.permissioned:
        raise PartyError(f"the job at {fl.address} is open (deployed without --permissioned): anyone with the stake "
                         "may register, there is nobody to admit")
    if not fl.has_role("registrar", str(account.address)):
        raise PartyError(f"{account.address} does not hold the registrar role of {fl.address}; the deploying admin "
                         "holds it, or whoever the admin granted it to")
    if not 0 <= samples <= params.maxSamplesPerUpdate:
        raise PartyError(f"--samples must be in 0..{params.maxSamplesPerUpdate} (the job's cap per update), "
                         f"got {samples}")
    bad = [c for c in clients if not is_address(c)]
    if bad:
        raise PartyError(f"not an address: {', '.join(bad)} (0x followed by 40 hex digits)")
    for c in clients:
        fl.admit(account, to_checksum_address(c), samples)
        log(f"{'revoked' if samples == 0 else 'admitted'} {to_checksum_address(c)}"
            + (f" with an allowance of {samples} samples per update" if samples else ""))


# --------------------------------------------------------------------------- aggregator


@dataclass
class AggregatorOptions:
    rounds: int = 0  # stop once the job's round `rounds` is closed; 0 = run until stopped
    min_clients: int = 1  # active clients needed before a round starts
    advance_time: bool = False  # dev chain: move time past the deadline after `patience`
    patience: float = 60.0  # seconds of real time to wait for every active client (with advance_time)
    poll: float = 0.5
    max_poll: float = 5.0


@dataclass
class RoundRecord:
    round_id: int
    status: str
    accepted: int
    rejected: int
    excluded: int
    accuracy: float
    seconds: float | None  # from startRound to finalizeRound (None for a round resumed after a restart)
    gas: int
    model_hash: str


class AggregatorParty:
    """The aggregator's loop. Holds the sealing key and (optionally) an evaluation set, nothing else."""

    def __init__(self, account: Any, job: Job, private_key: bytes, opts: AggregatorOptions,
                 eval_data: tuple[np.ndarray, np.ndarray] | None = None, stop: Stop | None = None,
                 log: Callable[[str], None] | None = None):
        from .aggregator import Aggregator
        from .sealing import public_key_of

        self.account = account
        self.job = job
        self.opts = opts
        self.stop = stop or Stop()
        self.log = log or Log("aggregator")
        fl = job.fl
        if not fl.has_role("aggregator", str(account.address)):
            raise PartyError(f"{account.address} does not hold the aggregator role of {fl.address} "
                             f"(the job's aggregator is {job.deployment.aggregator}); use that --account")
        on_chain = fl.params(fresh=True).aggregatorKey
        if public_key_of(private_key) != on_chain:
            raise PartyError(f"the key file holds public key 0x{public_key_of(private_key).hex()}, the contract "
                             f"expects 0x{on_chain.hex()}: use the key file `ape run deploy` wrote")
        if opts.advance_time and not is_dev_chain():
            raise PartyError("--advance-time works on a local dev chain only (Anvil, Ganache); on a real network "
                             "the aggregator waits for the deadline")
        x, y = eval_data if eval_data is not None else (None, None)
        if x is not None:
            check_data_fits(x, y, job.spec, "--eval-data")
        self.agg = Aggregator(account, fl, job.store, private_key, job.spec, x, y, chain_id=job.chain_id,
                              strategy=job.strategy, strategy_params=job.strategy_params)
        self.records: list[RoundRecord] = []

    # -- helpers
    def _done(self) -> bool:
        fl, n = self.job.fl, self.opts.rounds
        if not n:
            return False
        cur = fl.current_round()
        return cur > n or (cur == n and fl.round(n).phase != Phase.OPEN)

    def _wait(self, predicate: Callable[[], bool], timeout: float = math.inf) -> bool:
        return self.stop.wait_for(predicate, timeout, self.opts.poll, self.opts.max_poll)

    def run(self) -> str:
        """Runs rounds until --rounds are closed or a stop request; returns why it stopped."""
        fl = self.job.fl
        strategy = self.job.strategy + (f" {self.job.strategy_params}" if self.job.strategy_params else "")
        self.log(f"job {fl.address} on {self.job.network} (chain {self.job.chain_id}); strategy {strategy}; "
                 f"store {self.job.store}")
        if self.agg.x_eval is not None:
            from .models import import_keras

            import_keras()  # now rather than in the first round (evaluation needs Keras)
        def step() -> str | None:
            if self._done():
                return f"round {self.opts.rounds} is closed"
            self._one_round()
            return None

        return run_until_done(step, self.stop, self.log)

    def _one_round(self) -> None:
        fl = self.job.fl
        cur = fl.current_round()
        started: float | None = None
        gas0 = fl.meter.total  # this round's gas: startRound (unless resumed) + finalizeRound
        if cur and fl.round(cur).phase == Phase.OPEN:
            r = cur
            self.log(f"round {r} is open: resuming it")
        else:
            need = self.opts.min_clients
            if fl.active_clients() < need:
                self.log(f"waiting for {need} active client(s) (now {fl.active_clients()})")
                if not self._wait(lambda: fl.active_clients() >= need):
                    return
            gas0 = fl.meter.total
            r = self.agg.open_round()
            started = time.monotonic()
            info = fl.round(r)
            self.log(f"round {r} started on model {short(info.base_model_hash)}; deadline in "
                     f"{info.deadline - chain_now()} s; {fl.active_clients()} active client(s)")
        self._wait_and_finalize(r, started, gas0)

    def _wait_and_finalize(self, r: int, started: float | None, gas0: int | None = None) -> None:
        fl = self.job.fl
        info = fl.round(r)
        t0 = time.monotonic()
        seen = [-1]

        def ready() -> bool:
            n = fl.round(r).submissions
            if n != seen[0]:
                seen[0] = n
                self.log(f"round {r}: {n}/{fl.active_clients()} update(s) in")
            if fl.can_finalize(r) or chain_now() > info.deadline:
                return True
            return self.opts.advance_time and time.monotonic() - t0 >= self.opts.patience

        if not self._wait(ready):
            return  # stop requested while waiting: the round stays open for the next run
        waited = time.monotonic() - t0
        if not fl.can_finalize(r) and chain_now() <= info.deadline:
            advance_chain_past(info.deadline)
            self.log(f"round {r}: not every active client submitted within {self.opts.patience:g} s; "
                     "moved the dev chain's time past the deadline")
        t1 = time.monotonic()
        self.job.prefetch_model(info.base_model_hash)  # with its locator: an IPFS store learns the CID
        for attempt in range(10):
            try:
                outcome = self.agg.finalize(r)
                break
            except ChainError as exc:
                if exc.error_name == "RoundNotOpen":
                    self.log(f"round {r} was closed by someone else ({fl.round(r).phase.name.lower()})")
                    return
                if exc.error_name != "DeadlineNotReached" or attempt == 9:
                    raise
                self.stop.sleep(1.0)  # the node's clock is a little behind ours
        else:  # pragma: no cover
            return
        seconds = None if started is None else time.monotonic() - started
        gas = fl.meter.total - gas0 if gas0 is not None else outcome.gas
        rej = ", ".join(f"{short(x.client, 8)} ({x.reason})" for x in outcome.rejected) or "none"
        acc = "" if math.isnan(outcome.accuracy) else f"; accuracy {outcome.accuracy:.4f} on the evaluation set"
        total = "" if seconds is None else f"; round time {seconds:.1f} s"
        self.log(f"round {r} {outcome.status}: {len(outcome.accepted)} accepted, {len(outcome.rejected)} rejected "
                 f"[{rej}], {len(outcome.excluded)} excluded; model {short(outcome.model_hash)}{acc}; "
                 f"aggregator gas {gas:,}{total} (waiting {waited:.1f} s, aggregating {time.monotonic() - t1:.1f} s)"
                 + (f"; {outcome.note}" if outcome.note else ""))
        self.records.append(RoundRecord(
            r, outcome.status, len(outcome.accepted), len(outcome.rejected), len(outcome.excluded), outcome.accuracy,
            seconds, gas, "0x" + outcome.model_hash.hex() if outcome.model_hash else "",
        ))


# --------------------------------------------------------------------------- client


@dataclass
class ClientOptions:
    rounds: int = 0  # stop once the job's round `rounds` is closed (and paid); 0 = run until stopped
    stake: int | None = None  # wei to stake when registering; None = the job's minimum
    top_up: bool = False  # top the stake up to the minimum after a slash
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    mu: float = 0.0
    seed: int | None = None  # training seed; None = derived from the address
    poll: float = 0.5
    max_poll: float = 5.0


class ClientParty:
    """A data holder's loop. Holds its account and its own data file, nothing else."""

    def __init__(self, account: Any, job: Job, x: np.ndarray, y: np.ndarray, opts: ClientOptions,
                 stop: Stop | None = None, log: Callable[[str], None] | None = None, data_name: str = "data"):
        from .client import Client, TrainConfig

        check_data_fits(x, y, job.spec, data_name)
        self.account = account
        self.address = str(account.address)
        self.job = job
        self.opts = opts
        self.stop = stop or Stop()
        self.log = log or Log(f"client {self.address[:8]}")
        seed = opts.seed if opts.seed is not None else int(self.address, 16) % 4000  # seed * 1_000_003 + round < 2**32
        self.client = Client(account, job.fl, job.store, job.spec, x, y,
                             train=TrainConfig(opts.epochs, opts.batch_size, opts.learning_rate, opts.mu),
                             chain_id=job.chain_id, seed=seed)
        self.submitted: set[int] = set()  # rounds this client has an update in
        self.settled: set[int] = set()  # of those, rounds whose reward question is closed
        self.missed: set[int] = set()
        self.received = 0

    def warm_up(self) -> None:
        """Imports TensorFlow before the first round, so that a round does not wait for it."""
        from .models import import_keras

        import_keras()

    def _ensure_registered(self) -> None:
        fl = self.job.fl
        params = fl.params()
        info = fl.client(self.address)
        if params.permissioned:
            allowance = fl.allowance(self.address)
            if allowance == 0:
                raise PartyError(f"{fl.address} is a permissioned job and {self.address} is not admitted: ask its "
                                 f"registrar to run `ape run admit --client {self.address} --samples "
                                 f"{len(self.client.x)}`")
            if len(self.client.x) > allowance:
                raise PartyError(f"the registrar admitted {self.address} for {allowance} samples per update, but "
                                 f"its data has {len(self.client.x)}: ask for a larger allowance, or train on a file "
                                 f"of at most {allowance} samples")
        if info.status == ClientStatus.NONE:
            stake = self.opts.stake if self.opts.stake is not None else params.minStake
            if stake < params.minStake:
                raise PartyError(f"--stake {fmt_eth(stake)} is below the job's minimum stake "
                                 f"{fmt_eth(params.minStake)}")
            ensure_funds(self.account, stake, "registering")
            from .sealing import generate_keypair

            fl.register(self.account, generate_keypair().public, stake)
            self.log(f"registered with a stake of {fmt_eth(stake)}")
        elif info.status == ClientStatus.EXITING:
            raise PartyError(f"{self.address} has requested exit from this job; it can no longer submit updates")
        else:
            self.log(f"already registered (stake {fmt_eth(info.stake)})")
        # Rounds this client already took part in (a restart continues from here).
        self.submitted = {int(ev.roundId) for ev in fl.events("UpdateSubmitted", client=self.address)}
        if self.submitted:
            self.log(f"already submitted to round(s) {', '.join(map(str, sorted(self.submitted)))} (found on chain); "
                     "never submitting to them again")

    def _done(self, cur: int) -> bool:
        n = self.opts.rounds
        if not n or cur < n:
            return False
        return cur > n or self.job.fl.round(n).phase != Phase.OPEN

    def run(self) -> str:
        if not (self.opts.rounds and self._done(self.job.fl.current_round())):
            self.warm_up()  # before registering: a registered client is one ready to train
        self._ensure_registered()
        def step() -> str | None:
            if not self._step():
                return None
            self._settle()
            return f"round {self.opts.rounds} is closed"

        return run_until_done(step, self.stop, self.log)

    def _step(self) -> bool:
        """One look at the chain: take part in the open round if we can, claim what is due; True when done."""
        fl = self.job.fl
        cur = fl.current_round()
        info = fl.round(cur) if cur else None
        if info is not None and info.phase == Phase.OPEN and cur not in self.submitted and cur not in self.missed \
                and not (self.opts.rounds and cur > self.opts.rounds):
            self._take_part(cur, info)
            return False
        self._settle()
        if self._done(cur):
            return True
        state = (cur, info.phase if info else None)

        def changed() -> bool:
            c = fl.current_round()
            return (c, fl.round(c).phase if c else None) != state

        if info is None or info.phase != Phase.OPEN or cur in self.submitted:
            what = f"round {cur} to close" if info is not None and info.phase == Phase.OPEN else "the next round"
            self.log(f"waiting for {what}")
        self.stop.wait_for(changed, math.inf, self.opts.poll, self.opts.max_poll)
        return False

    def _take_part(self, r: int, info: Any) -> None:
        fl = self.job.fl
        u = fl.update(r, self.address)
        if u.status != UpdateStatus.NONE:
            self.submitted.add(r)
            self.log(f"round {r}: already submitted (commitment {short(u.commitment)}); not submitting again")
            return
        if chain_now() > info.deadline:
            self.missed.add(r)
            self.log(f"round {r}: its deadline has passed; taking part in the next round")
            return
        params = fl.params(fresh=True)  # the aggregator key may have been rotated between rounds
        stake = fl.client(self.address).stake
        if stake < params.minStake:
            if not self.opts.top_up:
                self.missed.add(r)
                self.log(f"round {r}: stake {fmt_eth(stake)} is below the minimum {fmt_eth(params.minStake)} after "
                         "a slash; restart with --top-up (or call topUp) to take part again")
                return
            fl.top_up(self.account, params.minStake - stake)
            self.log(f"topped the stake up by {fmt_eth(params.minStake - stake)}")
        self.job.prefetch_model(info.base_model_hash)  # with its locator, so an IPFS store can find it
        self.log(f"round {r}: training on {len(self.client.x)} samples ({self.opts.epochs} epoch(s)) "
                 f"from model {short(info.base_model_hash)}")
        t0 = time.monotonic()
        gas0 = fl.meter.total
        try:
            res = self.client.participate(r)
        except ChainError as exc:
            if exc.error_name not in RACES:
                raise
            self.missed.add(r)
            self.log(f"round {r}: could not submit ({exc.error_name}: {exc}); taking part in the next round")
            return
        if res.skipped:
            self.log(f"round {r}: nothing submitted ({res.skipped})")
            if res.skipped == "already submitted":
                self.submitted.add(r)
            else:
                self.missed.add(r)
            return
        self.submitted.add(r)
        self.log(f"round {r}: submitted update {short(res.commitment)} ({res.samples} samples, train loss "
                 f"{res.train_loss:.4f}, gas {fl.meter.total - gas0:,}) in {time.monotonic() - t0:.1f} s")

    def _settle(self) -> None:
        """Claims the reward of every finalized round this client was accepted in, then withdraws."""
        fl = self.job.fl
        claimed = 0
        for r in sorted(self.submitted - self.settled):
            phase = fl.round(r).phase
            if phase == Phase.OPEN:
                continue
            if phase == Phase.FINALIZED:
                status = fl.update(r, self.address).status
                if status == UpdateStatus.SUBMITTED and fl.claimable(r, self.address) > 0:
                    try:
                        amount = fl.claim(self.account, r)
                        claimed += amount
                        self.log(f"round {r}: claimed {fmt_eth(amount)}")
                    except ChainError as exc:
                        if exc.error_name != "NothingToClaim":
                            raise
                elif status in (UpdateStatus.REJECTED, UpdateStatus.EXCLUDED):
                    self.log(f"round {r}: the update was {status.name.lower()}; no reward")
            self.settled.add(r)
        if fl.owed(self.address) > 0:
            try:
                amount = fl.withdraw_rewards(self.account)
            except ChainError as exc:
                if exc.error_name != "NothingOwed":
                    raise
            else:
                self.received += amount
                self.log(f"withdrew {fmt_eth(amount)} of rewards")


# --------------------------------------------------------------------------- python -m ml.party split


def main(argv: list[str] | None = None) -> None:
    import click

    @click.group()
    def cli() -> None:
        """Helpers for the multi-party federation (no chain needed)."""

    @cli.command()
    @click.option("--dataset", default="digits", show_default=True,
                  help="digits (bundled), mnist (a local mnist.npz, see --data-path), or a .npz/.csv file")
    @click.option("--data-path", default=None, help="Path of mnist.npz or of your .npz/.csv")
    @click.option("--clients", type=int, default=3, show_default=True, help="Number of client files")
    @click.option("--partition", "scheme", type=click.Choice(["iid", "dirichlet", "shards"]), default="iid",
                  show_default=True)
    @click.option("--alpha", type=float, default=0.5, show_default=True, help="Dirichlet concentration")
    @click.option("--shards-per-client", type=int, default=2, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/test split and partition")
    @click.option("--out", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
                  help="Folder for client-<i>.npz and eval.npz")
    def split(dataset, data_path, clients, scheme, alpha, shards_per_client, seed, out):
        """Write one .npz (x, y) per client and the aggregator's eval.npz."""
        from rich.console import Console

        res = split_dataset(dataset, clients, out, scheme=scheme, alpha=alpha,
                            shards_per_client=shards_per_client, seed=seed, data_path=data_path)
        console = Console()
        console.print(res["summary"].to_rich_table(title=f"{dataset}: {scheme} partition over {clients} clients"))
        for path in res["clients"]:
            console.print(f"client data      {path}")
        console.print(f"evaluation set   {res['eval']} ({len(res['dataset'].y_test)} samples, for the aggregator)")

    cli.main(args=argv, prog_name="python -m ml.party", standalone_mode=True)


if __name__ == "__main__":
    main()
