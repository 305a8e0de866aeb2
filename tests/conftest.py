"""Shared fixtures: roles as Ape test accounts, a deployed job with default parameters."""
from __future__ import annotations

import pytest

ETHER = 10**18
MIN_STAKE = ETHER // 10  # 0.1 ETH
UNBONDING = 3600
SUBMISSION = 600
GRACE = 300
REWARD = ETHER  # 1 ETH per round
SLASH_BPS = 5000
MAX_SAMPLES = 10_000
# Receives slashed stake in the tests: an address nobody controls, so its balance only grows.
TREASURY = "0x7eA5000000000000000000000000000000007eA5"
ADMIN_DELAY = 3600  # seconds before a nominated admin can accept the role
ATTESTATION = 600  # seconds the committee has to attest a proposal
BOND = ETHER  # the aggregator's bond (needed to propose when there is a committee)


def committee(verifiers=(), threshold=None, keys=None) -> dict:
    """The Committee constructor argument; no verifiers = trusted-aggregator mode."""
    from eth_utils import keccak

    addrs = [getattr(v, "address", v) for v in verifiers]
    return dict(verifiers=addrs,
                keys=list(keys) if keys is not None else [keccak(text=f"verifier-key-{a}") for a in addrs],
                threshold=(len(addrs) if threshold is None else threshold))


def default_params(**overrides) -> dict:
    """Constructor parameters of FederatedLearning as a dict (Ape encodes it as the Params tuple); the
    DP and private-mode fields keep JobParams' defaults (off)."""
    from dataclasses import asdict

    from ml.chain import JobParams

    params = asdict(JobParams(
        minStake=MIN_STAKE,
        unbondingPeriod=UNBONDING,
        submissionPeriod=SUBMISSION,
        gracePeriod=GRACE,
        quorum=1,
        maxUpdatesPerRound=0,
        maxSamplesPerUpdate=MAX_SAMPLES,
        slashBps=SLASH_BPS,
        rewardPerRound=REWARD,
        normBound=0,
        modelSpecHash=b"\x11" * 32,
        initialModelHash=b"\x22" * 32,
        aggregatorKey=b"\x33" * 32,
        treasury=TREASURY,
        permissioned=False,
        attestationPeriod=ATTESTATION,
        aggregatorBond=BOND,
    ))
    params.update(overrides)
    return params


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def aggregator(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def funder(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def clients(accounts):
    return [accounts[i] for i in range(3, 13)]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[19]


@pytest.fixture
def deploy(project, admin, aggregator):
    """Deploys a job; keyword arguments override the default parameters."""

    def _deploy(admin_delay=ADMIN_DELAY, verifiers=(), threshold=None, **overrides):
        return admin.deploy(project.FederatedLearning, default_params(**overrides), committee(verifiers, threshold),
                            admin, aggregator, admin_delay)

    return _deploy


@pytest.fixture
def fl(deploy):
    return deploy()


# --------------------------------------------------------------------------
# Ganache support (added for the contract suite; the fixtures above are unchanged).
#
# Ape 0.8 talks to Ganache through its generic `node` provider (ape-ganache
# requires ape < 0.8), which assumes geth: snapshots use `debug_setHead` and
# time travel is "not implemented". Ganache has neither `debug_setHead` nor
# `evm_setNextBlockTimestamp`, so when the connected node says it is Ganache we
# give that provider instance Ganache's own methods:
#
# - snapshot/restore -> evm_snapshot/evm_revert (so every test is isolated);
# - set_timestamp(t) -> evm_mine({"timestamp": t}); with Ganache started with
#   `--miner.timestampIncrement 0` every later block keeps that timestamp until
#   the next time travel, so `chain.pending_timestamp = t` means "the next
#   transaction runs at exactly t", as on the embedded chain and Anvil. (Ganache
#   estimates gas and runs eth_call on the latest block, so an empty block at t
#   is what makes estimates agree with execution at boundaries.)
# - mine(n) -> evm_mine({"blocks": n}).
#
# Start Ganache like tests/contracts/test_chains.py does (GANACHE_ARGS there).
# --------------------------------------------------------------------------


def _is_ganache(provider) -> bool:
    try:
        return "ganache" in str(provider.make_request("web3_clientVersion", [])).lower()
    except Exception:  # noqa: BLE001 - any provider that cannot answer is not Ganache
        return False


def _adapt_ganache(provider) -> None:
    base = type(provider)
    if getattr(base, "_chainfl_ganache", False):
        return

    class GanacheAdapted(base):  # type: ignore[misc, valid-type]
        _chainfl_ganache = True

        def snapshot(self):
            return self.make_request("evm_snapshot", [])

        def restore(self, snapshot_id):
            if snapshot_id is None:
                return
            if isinstance(snapshot_id, int):
                snapshot_id = hex(snapshot_id)
            if not self.make_request("evm_revert", [snapshot_id]):
                from ape.exceptions import UnknownSnapshotError

                raise UnknownSnapshotError(snapshot_id)

        def set_timestamp(self, new_timestamp: int):
            self.make_request("evm_mine", [{"timestamp": int(new_timestamp)}])

        def mine(self, num_blocks: int = 1):
            self.make_request("evm_mine", [{"blocks": int(num_blocks)}])

    GanacheAdapted.__name__ = f"Ganache{base.__name__}"
    object.__setattr__(provider, "__class__", GanacheAdapted)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """Runs after Ape has connected the provider (end of collection), before any test."""
    from ape import networks

    provider = networks.active_provider
    if provider is not None and provider.is_connected and _is_ganache(provider):
        _adapt_ganache(provider)


# --------------------------------------------------------------------------
# `ape test --gas` on Anvil (added for the contract suite).
#
# With --gas, Ape also traces every view call (debug_traceCall, struct-log
# tracer) and reads its return data from the traced memory. Anvil leaves memory
# out of struct logs unless asked, so the return data comes back empty and Ape
# fails decoding views that return a struct (params(), getRound(), ...) with
# "TypeError: 'NoneType' object is not iterable". Ask for the memory.
# --------------------------------------------------------------------------


def pytest_configure(config):
    try:
        gas = config.getoption("--gas")
    except ValueError:  # not running under Ape's pytest plugin
        gas = False
    if gas:
        _trace_calls_with_memory()


def _trace_calls_with_memory() -> None:
    import ape_ethereum.trace as trace

    if getattr(trace.CallTrace, "_chainfl_memory", False):
        return

    def _debug_trace_call(self):
        arguments = [self.transaction, *self.arguments]
        if len(arguments) == 1:
            arguments.append("latest")  # Ape's default
        if len(arguments) == 2:
            arguments.append({"enableMemory": True})
        return self.provider.make_request("debug_traceCall", arguments)

    trace.CallTrace._debug_trace_call = _debug_trace_call
    trace.CallTrace._chainfl_memory = True
