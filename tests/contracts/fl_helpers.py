"""Plain helpers and constants for the FederatedLearning contract tests.

Imported by the test modules (`from .fl_helpers import ...`); fixtures live in
tests/contracts/conftest.py. Nothing here depends on which chain is connected.
"""
from __future__ import annotations

from contextlib import contextmanager
from enum import IntEnum

from eth_utils import keccak

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\x00" * 32
NEW_MODEL = b"\x44" * 32
BPS = 10_000
DEFAULT_ADMIN_ROLE = b"\x00" * 32
AGGREGATOR_ROLE = keccak(text="AGGREGATOR_ROLE")
REGISTRAR_ROLE = keccak(text="REGISTRAR_ROLE")
# bytes4(keccak256("ReentrancyGuardReentrantCall()"))
REENTRANT_CALL_SELECTOR = bytes.fromhex("3ee5aeb5")


class ClientStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    EXITING = 2


class Phase(IntEnum):
    NONE = 0
    OPEN = 1
    PROPOSED = 2
    FINALIZED = 3
    FAILED = 4
    CANCELLED = 5


class UpdateStatus(IntEnum):
    NONE = 0
    SUBMITTED = 1
    REJECTED = 2
    EXCLUDED = 3
    CLAIMED = 4


def key(i: int) -> bytes:
    """A non-zero 32-byte encryption key distinct per index."""
    return keccak(text=f"client-key-{i}")


def commitment(round_id: int, who, salt: int | str = 0) -> bytes:
    """A commitment unique per (round, client, salt), like keccak(sealed blob)."""
    return keccak(text=f"update-{round_id}-{who}-{salt}")


def model_hash(i: int) -> bytes:
    return keccak(text=f"model-{i}")


def mul_div(a: int, b: int, d: int) -> int:
    """OpenZeppelin Math.mulDiv with the default rounding (down)."""
    return a * b // d


def set_time(chain, timestamp: int) -> None:
    """The next transaction executes at exactly `timestamp` (embedded chain, Anvil, Ganache).

    Time only moves forward: `timestamp` must be later than the latest block."""
    head = chain.blocks.head.timestamp
    assert timestamp > head, f"cannot travel back: {timestamp} <= latest block {head}"
    chain.pending_timestamp = int(timestamp)


def head_time(chain) -> int:
    return chain.blocks.head.timestamp


@contextmanager
def isolated(chain):
    """Snapshot, run the block, roll back. Unlike `chain.isolate()` in Ape 0.8,
    this does not swallow exceptions (assertion errors) raised inside the block."""
    snapshot = chain.snapshot()
    try:
        yield
    finally:
        chain.restore(snapshot)


def fees(receipt) -> int:
    """Wei the sender paid for gas."""
    return receipt.total_fees_paid


def event_args(receipt, name: str) -> list[dict]:
    return [dict(log.event_arguments) for log in receipt.events if log.event_name == name]


def accounted(fl) -> int:
    """Every wei the contract owes someone: it never holds less (it may hold more: forced ether)."""
    return (fl.totalStaked() + fl.totalOwed() + fl.totalAllocated() + fl.rewardPool() + fl.treasuryOwed()
            + fl.totalBurned() + fl.totalBonded())


REASON_INVALID = 6  # non_finite in ml/evidence.py; any non-zero code will do for the contract


def address_of(who) -> str:
    return str(getattr(who, "address", who))


def ascending(addresses) -> list[str]:
    """Addresses as the contract wants verdict lists: strictly ascending as numbers."""
    return sorted((address_of(a) for a in addresses), key=lambda a: int(a, 16))


def outcome(model=None, rejected=(), excluded=(), *, reasons=None, evidence=b"\x00" * 32, evidence_locator="",
            locator="", sort=True) -> dict:
    """An Outcome tuple for proposeRound; lists sorted unless sort=False (to test the check)."""
    rej = ascending(rejected) if sort else [address_of(a) for a in rejected]
    exc = ascending(excluded) if sort else [address_of(a) for a in excluded]
    return dict(modelHash=ZERO32 if model is None else model, rejected=rej,
                reasons=list(reasons) if reasons is not None else [REASON_INVALID] * len(rej), excluded=exc,
                evidenceHash=evidence, evidenceLocator=evidence_locator, modelLocator=locator)


def propose(fl, round_id, model, rejected=(), excluded=(), locator="", *, sender, **kw):
    """proposeRound with a plain argument list (in trusted mode it applies at once, like finalizing)."""
    return fl.proposeRound(round_id, outcome(model, rejected, excluded, locator=locator, **kw), sender=sender)
