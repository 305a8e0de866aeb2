"""Re-entry from the ether transfers (withdrawStake, withdrawRewards, withdrawTreasury, withdrawBond)
into every state-changing function of FederatedLearning (ReentrancyAttacker).

The first tests are the original ones (re-entering the two guarded client payouts). The
parametrized test below re-enters every state-changing function of the ABI from each of the four
transfers, with the attacker as client, admin, aggregator, registrar and treasury at once (so
that role checks do not hide the function's own logic), and asserts that the re-entry either
reverts with the expected error (ReentrancyGuardReentrantCall for the guarded functions, the
function's own check otherwise) or succeeds without breaking the accounting: the contract's
balance equals the sum of its accounting terms, the outer payout happens exactly once and the
attacker receives exactly it. The job has no verifier committee (the attacker, as aggregator,
cannot be a verifier): proposals apply at once, attest and dispute revert NotVerifier.
"""
import pytest
from eth_utils import keccak

from .fl_helpers import (
    AGGREGATOR_ROLE,
    REENTRANT_CALL_SELECTOR,
    REGISTRAR_ROLE,
    ZERO32,
    Phase,
    accounted,
    event_args,
    key,
    outcome,
    set_time,
)

MODE_NONE, MODE_STAKE, MODE_REWARDS = 0, 1, 2
ETH = 10**18


def _accounting_holds(fl):
    assert fl.balance == accounted(fl)


def _assert_blocked(attacker):
    assert attacker.reentryAttempts() == 1
    assert attacker.reentrySucceeded() == 0
    assert bytes(attacker.lastRevertData()) == REENTRANT_CALL_SELECTOR  # ReentrancyGuardReentrantCall()


def _attacker_with_reward(fl, params, attacker, clients, register, start_round, submit, finalize, fund, admin):
    """The attacker is an accepted client of round 1 with a claimed reward."""
    fund(params.rewardPerRound)
    attacker.register(key(1), sender=admin, value=params.minStake)
    register(clients[0])
    start_round()
    attacker.submit(1, b"\xaa" * 32, 30, sender=admin)
    submit(clients[0], samples=70)
    finalize()
    attacker.claim(1, sender=admin)
    owed = fl.owed(attacker)
    assert owed == params.rewardPerRound * 30 // 100
    return owed


def test_reenter_withdraw_stake(fl, params, attacker, admin, clients, register, chain):
    register(clients[0])  # someone else's stake is in the contract too
    attacker.register(key(1), sender=admin, value=params.minStake)
    attacker.setMode(MODE_STAKE, sender=admin)
    t = attacker.requestExit(sender=admin).timestamp
    set_time(chain, t + params.unbondingPeriod)
    assert attacker.balance == 0
    tx = attacker.withdrawStake(sender=admin)
    _assert_blocked(attacker)
    assert attacker.balance == params.minStake  # paid exactly once
    assert event_args(tx, "StakeWithdrawn") == [dict(client=attacker.address, amount=params.minStake)]
    assert fl.balance == fl.totalStaked() == params.minStake  # the other client's stake is intact
    _accounting_holds(fl)


def test_reenter_withdraw_rewards(fl, params, attacker, admin, clients, register, start_round, submit, finalize, fund):
    owed = _attacker_with_reward(fl, params, attacker, clients, register, start_round, submit, finalize, fund, admin)
    attacker.setMode(MODE_REWARDS, sender=admin)
    contract_before = fl.balance
    tx = attacker.withdrawRewards(sender=admin)
    _assert_blocked(attacker)
    assert attacker.balance == owed  # paid exactly once
    assert event_args(tx, "RewardsWithdrawn") == [dict(client=attacker.address, amount=owed)]
    assert fl.owed(attacker) == 0
    assert fl.balance == contract_before - owed
    _accounting_holds(fl)


def test_cross_function_reentry_blocked(fl, params, attacker, admin, clients, register, start_round, submit, finalize, fund, chain):
    """withdrawStake's transfer re-enters withdrawRewards (the attacker is owed a reward)."""
    owed = _attacker_with_reward(fl, params, attacker, clients, register, start_round, submit, finalize, fund, admin)
    attacker.setMode(MODE_REWARDS, sender=admin)
    t = attacker.requestExit(sender=admin).timestamp
    set_time(chain, t + params.unbondingPeriod)
    attacker.withdrawStake(sender=admin)
    _assert_blocked(attacker)
    assert attacker.balance == params.minStake  # only the stake
    assert fl.owed(attacker) == owed  # the reward is still owed, not paid
    _accounting_holds(fl)


def test_attacker_without_reentry_is_an_ordinary_client(fl, params, attacker, admin, chain):
    attacker.register(key(1), sender=admin, value=params.minStake)
    t = attacker.requestExit(sender=admin).timestamp
    set_time(chain, t + params.unbondingPeriod)
    attacker.withdrawStake(sender=admin)
    assert attacker.reentryAttempts() == 0
    assert attacker.balance == params.minStake


# ------------------------------------------------- every function from every transfer

STAKE = ETH // 10
HALF = ETH // 20  # what slashBps 5000 takes from a 0.1 ETH stake
ROUND1_SHARE = 500000000000000000  # round 1: A and h1 accepted with 100 samples each, 1 ETH reward
ROUND2_SHARE = 500000000000000000  # round 2: the same
BOND = ETH // 5  # the attacker's aggregator bond (not needed to propose without a committee)
NO_COMMITTEE = dict(verifiers=[], keys=[], threshold=0)
NEW_KEY = b"\x55" * 32

# The outer transfers: the function the attacker calls, the event of its payout, the amount.
OUTERS = {
    "withdrawStake": ("StakeWithdrawn", STAKE),
    "withdrawRewards": ("RewardsWithdrawn", ROUND1_SHARE),
    "withdrawTreasury": ("TreasuryWithdrawn", HALF),
    "withdrawBond": ("BondWithdrawn", BOND),
}

GUARDED = {"withdrawStake", "withdrawRewards", "withdrawTreasury", "withdrawBond"}


def _inner_calls(fl, h1, h3, attacker):
    """Every state-changing function: (calldata, value, round state needed before the outer call).

    Round states: None = no round open (round 2 finalized is the latest), "fresh" = round 3 just
    opened, "ready" = round 3 with h1's update, past its deadline (proposable)."""
    a = attacker.address
    return {
        "register": (fl.register.encode_input(key(7)), STAKE, None),
        "topUp": (fl.topUp.encode_input(), ETH // 100, None),
        "requestExit": (fl.requestExit.encode_input(), 0, None),
        "withdrawStake": (fl.withdrawStake.encode_input(), 0, None),
        "submitUpdate": (fl.submitUpdate.encode_input(3, keccak(text="reentrant update"), 10, ""), 0, "fresh"),
        # A robust-mode job: private mode's join and reveal refuse (NotPrivate) before anything else.
        "joinRound": (fl.joinRound.encode_input(3, key(9), key(8), ""), 0, "fresh"),
        "revealShares": (fl.revealShares.encode_input(3, key(8), ""), 0, "fresh"),
        # Rejects the only update: the round fails and h1's slash goes to the treasury (the attacker).
        "proposeRound": (fl.proposeRound.encode_input(3, outcome(ZERO32, [h1.address])), 0, "ready"),
        # No committee: nobody is a verifier, and no round is ever left Proposed.
        "attest": (fl.attest.encode_input(2, outcome(ZERO32, [])), 0, None),
        "dispute": (fl.dispute.encode_input(2, ZERO32), 0, None),
        "expireProposal": (fl.expireProposal.encode_input(2), 0, None),
        "postBond": (fl.postBond.encode_input(), ETH // 100, None),
        "withdrawBond": (fl.withdrawBond.encode_input(1), 0, None),
        "cancelRound": (fl.cancelRound.encode_input(3), 0, "fresh"),
        "startRound": (fl.startRound.encode_input(), 0, None),
        "fundRewards": (fl.fundRewards.encode_input(), ETH // 100, None),
        "claimReward": (fl.claimReward.encode_input(2), 0, None),
        "claimRewards": (fl.claimRewards.encode_input([2]), 0, None),
        "withdrawRewards": (fl.withdrawRewards.encode_input(), 0, None),
        "withdrawTreasury": (fl.withdrawTreasury.encode_input(), 0, None),
        "admit": (fl.admit.encode_input(h3.address, 500), 0, None),
        "setAggregatorKey": (fl.setAggregatorKey.encode_input(NEW_KEY), 0, None),
        "grantRole": (fl.grantRole.encode_input(AGGREGATOR_ROLE, h3.address), 0, None),
        "revokeRole": (fl.revokeRole.encode_input(REGISTRAR_ROLE, a), 0, None),
        "renounceRole": (fl.renounceRole.encode_input(AGGREGATOR_ROLE, a), 0, None),
        "beginDefaultAdminTransfer": (fl.beginDefaultAdminTransfer.encode_input(h3.address), 0, None),
        "cancelDefaultAdminTransfer": (fl.cancelDefaultAdminTransfer.encode_input(), 0, None),
        # The base state began a transfer of the admin role to the attacker itself, long due.
        "acceptDefaultAdminTransfer": (fl.acceptDefaultAdminTransfer.encode_input(), 0, None),
        "changeDefaultAdminDelay": (fl.changeDefaultAdminDelay.encode_input(10), 0, None),
        "rollbackDefaultAdminDelay": (fl.rollbackDefaultAdminDelay.encode_input(), 0, None),
    }


INNER_NAMES = [
    "register", "topUp", "requestExit", "withdrawStake", "submitUpdate", "joinRound", "revealShares",
    "proposeRound", "attest", "dispute",
    "expireProposal", "cancelRound", "postBond", "withdrawBond", "startRound", "fundRewards", "claimReward", "claimRewards", "withdrawRewards", "withdrawTreasury", "admit",
    "setAggregatorKey", "grantRole", "revokeRole", "renounceRole", "beginDefaultAdminTransfer",
    "cancelDefaultAdminTransfer", "acceptDefaultAdminTransfer", "changeDefaultAdminDelay",
    "rollbackDefaultAdminDelay",
]


def _expected(outer, inner):
    """The re-entry's outcome: "ok" or the custom error it must revert with."""
    if inner in GUARDED:
        return "ReentrancyGuardReentrantCall"
    if inner in ("attest", "dispute"):
        return "NotVerifier"
    if inner == "expireProposal":
        return "NotProposed"
    if inner in ("joinRound", "revealShares"):
        return "NotPrivate"
    if outer == "withdrawStake":
        # The attacker's record is already cleared (checks-effects-interactions): it may register
        # again, but it is no longer an active client.
        return {"topUp": "NotActive", "requestExit": "NotActive", "submitUpdate": "NotActive"}.get(inner, "ok")
    return {"register": "AlreadyRegistered"}.get(inner, "ok")


def _build(project, make_params, chain, admin, funder, clients, outer):
    """A permissioned job whose admin, aggregator, registrar and treasury is the attacker A, which is
    also a client. Round 1 (A, h1, h2; h2 rejected: 0.05 ETH for the treasury) and round 2 (A, h1)
    are finalized with a 1 ETH reward each; A claimed round 1 (owed 0.5 ETH), not round 2. A has
    bonded 0.2 ETH as the aggregator."""
    h1, h2, h3 = clients[:3]
    attacker = admin.deploy(project.ReentrancyAttacker, "0x0000000000000000000000000000000000000000")
    params = make_params(quorum=1, treasury=attacker.address, permissioned=True)
    fl = admin.deploy(project.FederatedLearning, params, NO_COMMITTEE, attacker, attacker, 1)  # admin delay 1 s
    attacker.setTarget(fl, sender=admin)

    def A(data, value=0):
        return attacker.exec(data, sender=admin, value=value)

    def past_deadline(rid):
        set_time(chain, fl.getRound(rid).deadline + 1)

    A(fl.beginDefaultAdminTransfer.encode_input(attacker.address))  # to itself: acceptable later
    for who in (attacker, h1, h2):
        A(fl.admit.encode_input(who.address, 1000))
    A(fl.register.encode_input(key(1)), value=STAKE)
    for i, who in enumerate((h1, h2)):
        fl.register(key(10 + i), sender=who, value=STAKE)
    fl.fundRewards(sender=funder, value=2 * ETH)
    A(fl.startRound.encode_input())
    A(fl.submitUpdate.encode_input(1, keccak(text="A-1"), 100, ""))
    fl.submitUpdate(1, keccak(text="h1-1"), 100, "", sender=h1)
    fl.submitUpdate(1, keccak(text="h2-1"), 100, "", sender=h2)
    past_deadline(1)
    A(fl.proposeRound.encode_input(1, outcome(keccak(text="model-1"), [h2.address])))
    A(fl.startRound.encode_input())
    A(fl.submitUpdate.encode_input(2, keccak(text="A-2"), 100, ""))
    fl.submitUpdate(2, keccak(text="h1-2"), 100, "", sender=h1)
    past_deadline(2)
    A(fl.proposeRound.encode_input(2, outcome(keccak(text="model-2"))))
    A(fl.claimReward.encode_input(1))
    assert fl.owed(attacker) == ROUND1_SHARE and fl.claimable(2, attacker) == ROUND2_SHARE
    assert fl.treasuryOwed() == HALF
    A(fl.postBond.encode_input(), value=BOND)
    assert fl.bondOf(attacker) == fl.totalBonded() == BOND
    if outer == "withdrawStake":
        t = A(fl.requestExit.encode_input()).timestamp
        set_time(chain, t + params["unbondingPeriod"])
    admin.transfer(attacker, ETH)  # pocket money for re-entries that carry value
    return fl, attacker


@pytest.fixture(scope="module")
def jobs(project, chain, accounts):
    """One base state per outer transfer, built once for the module (each test rolls back to it)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_chainfl_root_conftest_reentrancy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    chain.pending_timestamp = chain.blocks.head.timestamp + 86_400  # see conftest: clock ahead
    admin, funder, clients = accounts[0], accounts[2], [accounts[i] for i in range(3, 13)]
    return {
        outer: _build(project, module.default_params, chain, admin, funder, clients, outer) for outer in OUTERS
    }


def test_every_state_changing_function_is_re_entered(fl):
    abi = fl.contract_type.abi
    mutating = {x.name for x in abi if x.type == "function" and x.stateMutability not in ("view", "pure")}
    assert mutating == set(INNER_NAMES)


def _error_name(fl, data: bytes) -> str:
    selector = bytes(data[:4])
    for err in fl.contract_type.errors:
        if keccak(text=err.selector)[:4] == selector:  # canonical "Name(type,...)"
            return err.name
    return f"unknown revert {bytes(data).hex()}"


@pytest.mark.parametrize("inner", INNER_NAMES)
@pytest.mark.parametrize("outer", list(OUTERS))
def test_reentry_from_every_transfer(jobs, outer, inner, chain, accounts, admin):
    fl, attacker = jobs[outer]
    h1, h3 = accounts[3], accounts[5]
    data, value, round_state = _inner_calls(fl, h1, h3, attacker)[inner]

    def A(call_data):
        return attacker.exec(call_data, sender=admin)

    if round_state is not None:
        A(fl.startRound.encode_input())
        assert fl.currentRound() == 3
        if round_state == "ready":
            fl.submitUpdate(3, keccak(text="h1-3"), 100, "", sender=h1)
            set_time(chain, fl.getRound(3).deadline + 1)
    attacker.setReentry(data, value, sender=admin)

    event_name, amount = OUTERS[outer]
    contract_before, attacker_before = fl.balance, attacker.balance
    staked_before, treasury_owed_before = fl.totalStaked(), fl.treasuryOwed()
    pool_before, owed_before = fl.rewardPool(), fl.owed(attacker)
    bonded_before = fl.totalBonded()
    if outer == "withdrawBond":  # the attacker has no shorthand for it
        tx = A(fl.withdrawBond.encode_input(BOND))
    else:
        tx = getattr(attacker, outer)(sender=admin)

    assert attacker.reentryAttempts() == 1
    ok = attacker.reentrySucceeded() == 1
    outcome = "ok" if ok else _error_name(fl, bytes(attacker.lastRevertData()))
    assert outcome == _expected(outer, inner)
    if inner in GUARDED:
        assert bytes(attacker.lastRevertData()) == REENTRANT_CALL_SELECTOR

    # The outer payout happened exactly once, for exactly its amount.
    payouts = [log for log in tx.events
               if log.event_name in ("StakeWithdrawn", "RewardsWithdrawn", "TreasuryWithdrawn", "BondWithdrawn")]
    assert [log.event_name for log in payouts] == [event_name]
    assert payouts[0].event_arguments["amount"] == amount
    spent = value if ok else 0
    assert attacker.balance == attacker_before + amount - spent
    assert fl.balance == contract_before - amount + spent
    _accounting_holds(fl)

    # What the re-entry did, if it succeeded, is what the function does outside a re-entry.
    slash = HALF if (ok and inner == "proposeRound") else 0
    stake_in = value if ok and inner in ("register", "topUp") else 0
    stake_out = STAKE if outer == "withdrawStake" else 0
    assert fl.totalStaked() == staked_before - stake_out + stake_in - slash
    assert fl.rewardPool() == pool_before + (value if ok and inner == "fundRewards" else 0)
    treasury_out = HALF if outer == "withdrawTreasury" else 0
    assert fl.treasuryOwed() == treasury_owed_before - treasury_out + slash
    owed_out = ROUND1_SHARE if outer == "withdrawRewards" else 0
    assert fl.owed(attacker) == owed_before - owed_out + (ROUND2_SHARE if ok and inner in ("claimReward", "claimRewards") else 0)
    bond_out = BOND if outer == "withdrawBond" else 0
    bond_in = value if ok and inner == "postBond" else 0
    assert fl.totalBonded() == fl.bondOf(attacker) == bonded_before - bond_out + bond_in
    if ok and inner == "register":
        assert fl.getClient(attacker).stake == STAKE and fl.getClient(attacker).status == 1
    if ok and inner == "proposeRound":
        assert fl.getRound(3).phase == Phase.FAILED
    if ok and inner == "acceptDefaultAdminTransfer":
        assert fl.defaultAdmin() == attacker.address
    # A second payout cannot follow: the outer function's record is cleared.
    if outer == "withdrawStake" and not (ok and inner == "register"):
        assert fl.getClient(attacker).stake == 0
    if outer == "withdrawTreasury" and not (ok and inner == "proposeRound"):
        assert fl.treasuryOwed() == 0
    if outer == "withdrawBond" and not (ok and inner == "postBond"):
        assert fl.bondOf(attacker) == 0
