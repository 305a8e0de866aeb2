"""Re-entry through the ether transfers of withdrawStake and withdrawRewards (ReentrancyAttacker)."""
from .fl_helpers import REENTRANT_CALL_SELECTOR, event_args, key, set_time

MODE_NONE, MODE_STAKE, MODE_REWARDS = 0, 1, 2


def _accounting_holds(fl):
    assert fl.balance == fl.totalStaked() + fl.totalOwed() + fl.totalAllocated() + fl.rewardPool()


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
