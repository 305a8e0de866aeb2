"""Constructor and client registry: register, topUp, requestExit, withdrawStake."""
import ape
import pytest
from .fl_helpers import (
    propose,
    AGGREGATOR_ROLE,
    BPS,
    DEFAULT_ADMIN_ROLE,
    ZERO32,
    ZERO_ADDRESS,
    ClientStatus,
    fees,
    head_time,
    key,
    set_time,
)

# ------------------------------------------------------------------ constructor


def test_constructor_state(fl, make_params, admin, aggregator, stranger):
    expected = make_params()
    p = fl.params()
    for name, value in expected.items():
        assert getattr(p, name) == value, name
    assert fl.latestModelHash() == expected["initialModelHash"]
    assert fl.AGGREGATOR_ROLE() == AGGREGATOR_ROLE
    assert fl.BPS() == BPS
    assert fl.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert fl.hasRole(AGGREGATOR_ROLE, aggregator)
    assert not fl.hasRole(AGGREGATOR_ROLE, admin)
    assert not fl.hasRole(DEFAULT_ADMIN_ROLE, aggregator)
    assert not fl.hasRole(AGGREGATOR_ROLE, stranger)
    assert fl.currentRound() == 0
    assert fl.activeClients() == 0
    assert fl.totalStaked() == fl.totalOwed() == fl.totalAllocated() == fl.rewardPool() == 0
    assert fl.balance == 0
    assert fl.getRound(0).phase == 0
    assert fl.canPropose(0) is False


@pytest.mark.parametrize("which", ["admin", "aggregator", "both"])
def test_constructor_zero_address(project, make_params, admin, aggregator, which):
    a = ZERO_ADDRESS if which in ("admin", "both") else admin
    g = ZERO_ADDRESS if which in ("aggregator", "both") else aggregator
    # OpenZeppelin's AccessControlDefaultAdminRules checks the admin first, in its constructor.
    error = "AccessControlInvalidDefaultAdmin" if a == ZERO_ADDRESS else "ZeroAddress"
    with ape.reverts(getattr(project.FederatedLearning, error)):
        admin.deploy(project.FederatedLearning, make_params(), dict(verifiers=[], keys=[], threshold=0), a, g, 3600)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(quorum=0), "quorum must be at least 1"),
        (dict(quorum=3, maxUpdatesPerRound=2), "maxUpdatesPerRound below quorum"),
        (dict(quorum=1001, maxUpdatesPerRound=0), "maxUpdatesPerRound below quorum"),  # 0 = the contract's 1000
        (dict(maxUpdatesPerRound=1001), "maxUpdatesPerRound above MAX_UPDATES_PER_ROUND"),
        (dict(gracePeriod=0), "gracePeriod is zero"),
        (dict(slashBps=BPS + 1), "slashBps above 10000"),
        (dict(submissionPeriod=0), "submissionPeriod is zero"),
        (dict(maxSamplesPerUpdate=0), "maxSamplesPerUpdate is zero"),
        (dict(minStake=0), "minStake is zero"),
        (dict(initialModelHash=ZERO32), "initialModelHash is zero"),
        (dict(aggregatorKey=ZERO32), "aggregatorKey is zero"),
    ],
)
def test_constructor_invalid_params(project, deploy, overrides, reason):
    with ape.reverts(project.FederatedLearning.InvalidParams, reason=reason):
        deploy(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(slashBps=BPS),  # the whole stake
        dict(slashBps=0),
        dict(quorum=3, maxUpdatesPerRound=3),  # cap == quorum
        dict(quorum=5, maxUpdatesPerRound=0),  # the contract's cap (MAX_UPDATES_PER_ROUND)
        dict(quorum=1000, maxUpdatesPerRound=1000),
        dict(unbondingPeriod=0, gracePeriod=1, rewardPerRound=0),
        dict(treasury=ZERO_ADDRESS, permissioned=True),
        dict(modelSpecHash=ZERO32, normBound=123),
    ],
)
def test_constructor_accepts_boundary_params(deploy, overrides):
    fl = deploy(**overrides)
    p = fl.params()
    for name, value in overrides.items():
        assert getattr(p, name) == value


# -------------------------------------------------------------------- register


def test_register(fl, params, clients):
    c = clients[0]
    tx = fl.register(key(0), sender=c, value=params.minStake)
    assert tx.events == [fl.ClientRegistered(c, params.minStake, key(0))]
    rec = fl.getClient(c)
    assert rec.stake == params.minStake
    assert rec.encryptionKey == key(0)
    assert rec.exitRequestedAt == 0
    assert rec.lastSubmittedRound == 0
    assert rec.status == ClientStatus.ACTIVE
    assert fl.activeClients() == 1
    assert fl.totalStaked() == params.minStake
    assert fl.balance == params.minStake


def test_register_above_minimum_and_many(fl, params, clients):
    total = 0
    for i, c in enumerate(clients[:5]):
        stake = params.minStake + i * 12345
        fl.register(key(i), sender=c, value=stake)
        total += stake
        assert fl.getClient(c).stake == stake
    assert fl.activeClients() == 5
    assert fl.totalStaked() == total == fl.balance


@pytest.mark.parametrize("short", [1, "all"])
def test_register_insufficient_stake(fl, params, clients, short):
    sent = 0 if short == "all" else params.minStake - short
    with ape.reverts(fl.InsufficientStake, sent=sent, minimum=params.minStake):
        fl.register(key(0), sender=clients[0], value=sent)
    assert fl.getClient(clients[0]).status == ClientStatus.NONE


def test_register_zero_key(fl, params, clients):
    with ape.reverts(fl.ZeroEncryptionKey):
        fl.register(ZERO32, sender=clients[0], value=params.minStake)


def test_register_twice(fl, params, clients):
    c = clients[0]
    fl.register(key(0), sender=c, value=params.minStake)
    with ape.reverts(fl.AlreadyRegistered, client=c):
        fl.register(key(1), sender=c, value=params.minStake)
    fl.requestExit(sender=c)
    with ape.reverts(fl.AlreadyRegistered, client=c):  # also while exiting
        fl.register(key(1), sender=c, value=params.minStake)


def test_register_gas_is_constant(fl, params, clients):
    # The first registration turns counters from zero to non-zero; after that O(1).
    # (Same key for all: calldata gas depends on the number of zero bytes.)
    gas = [fl.register(key(0), sender=c, value=params.minStake).gas_used for c in clients]
    assert len(set(gas[1:])) == 1, gas


# ----------------------------------------------------------------------- topUp


def test_top_up(fl, params, clients, register):
    c = clients[0]
    register(c)
    tx = fl.topUp(sender=c, value=7)
    assert tx.events == [fl.StakeToppedUp(c, 7, params.minStake + 7)]
    tx = fl.topUp(sender=c, value=10**18)
    assert tx.events == [fl.StakeToppedUp(c, 10**18, params.minStake + 7 + 10**18)]
    assert fl.getClient(c).stake == params.minStake + 7 + 10**18
    assert fl.totalStaked() == fl.balance == params.minStake + 7 + 10**18


def test_top_up_reverts(fl, clients, register):
    c = clients[0]
    with ape.reverts(fl.NotActive, client=c):
        fl.topUp(sender=c, value=1)
    register(c)
    with ape.reverts(fl.ZeroValue):
        fl.topUp(sender=c, value=0)
    fl.requestExit(sender=c)
    with ape.reverts(fl.NotActive, client=c):
        fl.topUp(sender=c, value=1)


# ----------------------------------------------------------------- requestExit


def test_request_exit(fl, params, clients, register, chain):
    a, b = clients[:2]
    register(a, b)
    tx = fl.requestExit(sender=a)
    t = tx.timestamp
    assert tx.events == [fl.ExitRequested(a, t + params.unbondingPeriod)]
    rec = fl.getClient(a)
    assert rec.status == ClientStatus.EXITING
    assert rec.exitRequestedAt == t
    assert rec.stake == params.minStake  # still held
    assert fl.activeClients() == 1
    assert fl.totalStaked() == 2 * params.minStake


def test_request_exit_reverts(fl, clients, register):
    c = clients[0]
    with ape.reverts(fl.NotActive, client=c):
        fl.requestExit(sender=c)
    register(c)
    fl.requestExit(sender=c)
    with ape.reverts(fl.NotActive, client=c):
        fl.requestExit(sender=c)


# --------------------------------------------------------------- withdrawStake


def test_withdraw_stake_unbonding_boundary(fl, params, clients, register, chain):
    c, other = clients[:2]
    register(other)
    register(c, stake=params.minStake + 5)
    t = fl.requestExit(sender=c).timestamp
    unlock = t + params.unbondingPeriod

    set_time(chain, unlock - 1)
    with ape.reverts(fl.StillUnbonding, unlockTime=unlock):
        fl.withdrawStake(sender=c)

    set_time(chain, unlock)
    before = c.balance
    tx = fl.withdrawStake(sender=c)
    assert tx.timestamp == unlock
    assert tx.events == [fl.StakeWithdrawn(c, params.minStake + 5)]
    assert c.balance == before + params.minStake + 5 - fees(tx)
    assert fl.totalStaked() == fl.balance == params.minStake
    rec = fl.getClient(c)
    assert rec.status == ClientStatus.NONE
    assert rec.stake == 0
    assert rec.encryptionKey == ZERO32
    assert rec.exitRequestedAt == 0
    assert fl.activeClients() == 1


def test_withdraw_stake_not_exiting(fl, clients, register):
    c = clients[0]
    with ape.reverts(fl.NotExiting, client=c):
        fl.withdrawStake(sender=c)
    register(c)
    with ape.reverts(fl.NotExiting, client=c):
        fl.withdrawStake(sender=c)


def test_withdraw_stake_once(fl, params, clients, register, chain):
    c = clients[0]
    register(c)
    t = fl.requestExit(sender=c).timestamp
    set_time(chain, t + params.unbondingPeriod + 100)
    fl.withdrawStake(sender=c)
    with ape.reverts(fl.NotExiting, client=c):
        fl.withdrawStake(sender=c)
    assert fl.balance == fl.totalStaked() == 0


def test_zero_unbonding_period(deploy, clients, chain):
    fl = deploy(unbondingPeriod=0)
    c = clients[0]
    fl.register(key(0), sender=c, value=fl.params().minStake)
    t = fl.requestExit(sender=c).timestamp
    set_time(chain, t + 1)
    fl.withdrawStake(sender=c)
    assert fl.getClient(c).status == ClientStatus.NONE


def test_register_again_after_withdraw(fl, params, clients, register, chain):
    c = clients[0]
    register(c)
    t = fl.requestExit(sender=c).timestamp
    set_time(chain, t + params.unbondingPeriod)
    fl.withdrawStake(sender=c)
    tx = fl.register(key(9), sender=c, value=params.minStake * 2)
    assert tx.events == [fl.ClientRegistered(c, params.minStake * 2, key(9))]
    rec = fl.getClient(c)
    assert rec.status == ClientStatus.ACTIVE and rec.stake == params.minStake * 2
    assert rec.exitRequestedAt == 0
    assert fl.activeClients() == 1


# --------------------------------------- withdrawStake vs an update in an open round


def _exit_with_pending_update(fl, params, c, register, start_round, submit, chain):
    register(c)
    rid = start_round()
    submit(c)
    t = fl.requestExit(sender=c).timestamp
    unlock = t + params.unbondingPeriod
    set_time(chain, unlock)  # unbonding is over (and the round deadline has passed)
    with ape.reverts(fl.UpdatePending, roundId=rid):
        fl.withdrawStake(sender=c)
    return rid


def test_withdraw_stake_blocked_until_round_finalized(
    fl, params, clients, register, start_round, submit, finalize, chain
):
    c, d = clients[:2]
    register(d)
    _exit_with_pending_update(fl, params, c, register, start_round, submit, chain)
    finalize()
    tx = fl.withdrawStake(sender=c)
    assert tx.events == [fl.StakeWithdrawn(c, params.minStake)]


def test_withdraw_stake_blocked_until_round_cancelled(
    fl, params, clients, register, start_round, submit, aggregator, chain
):
    c = clients[0]
    rid = _exit_with_pending_update(fl, params, c, register, start_round, submit, chain)
    fl.cancelRound(rid, sender=aggregator)
    tx = fl.withdrawStake(sender=c)
    assert tx.events == [fl.StakeWithdrawn(c, params.minStake)]


def test_withdraw_stake_not_blocked_by_a_round_without_own_update(
    fl, params, clients, register, start_round, submit, finalize, chain
):
    c, d = clients[:2]
    register(c, d)
    start_round()
    submit(c)
    submit(d)
    finalize()
    start_round()  # round 2 is open, c did not submit to it
    submit(d)
    t = fl.requestExit(sender=c).timestamp
    set_time(chain, t + params.unbondingPeriod)
    assert fl.getClient(c).lastSubmittedRound == 1
    fl.withdrawStake(sender=c)
    assert fl.getRound(2).phase == 1
