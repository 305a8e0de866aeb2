"""Rewards: fundRewards, claimReward (mulDiv shares, dust), withdrawRewards (pull payment)."""
import ape
import pytest
from .fl_helpers import ZERO_ADDRESS, Phase, UpdateStatus, accounted, event_args, fees, mul_div, propose
from ..conftest import TREASURY


def _accounting_holds(fl):
    assert fl.balance == accounted(fl)


# ----------------------------------------------------------------- fundRewards


def test_fund_rewards(fl, funder, stranger):
    tx = fl.fundRewards(sender=funder, value=123)
    assert tx.events == [fl.RewardsFunded(funder, 123)]
    tx = fl.fundRewards(sender=stranger, value=10**18)  # anyone
    assert tx.events == [fl.RewardsFunded(stranger, 10**18)]
    assert fl.rewardPool() == 10**18 + 123 == fl.balance


def test_fund_rewards_zero(fl, funder):
    with ape.reverts(fl.ZeroValue):
        fl.fundRewards(sender=funder, value=0)


# ----------------------------------------------------------------- claimReward


@pytest.fixture
def finalized(fl, params, clients, register, start_round, submit, finalize, fund):
    """Round 1 finalized: a, b, c accepted with 1, 2 and 4 samples, d rejected, e excluded."""
    fund(3 * params.rewardPerRound)
    a, b, c, d, e = clients[:5]
    register(a, b, c, d, e)
    start_round()
    for who, n in ((a, 1), (b, 2), (c, 4), (d, 100), (e, 100)):
        submit(who, samples=n)
    finalize(rejected=[d], excluded=[e])
    return a, b, c, d, e


def test_claim_reward(fl, params, finalized):
    a, b, c, d, e = finalized
    reward = params.rewardPerRound
    assert fl.getRound(1).reward == reward
    assert fl.getRound(1).acceptedWeight == 7
    expected = mul_div(reward, 2, 7)
    assert fl.claimable(1, b) == expected
    tx = fl.claimReward(1, sender=b)
    assert tx.events == [fl.RewardClaimed(1, b, expected)]
    assert fl.owed(b) == expected
    assert fl.totalOwed() == expected
    assert fl.totalAllocated() == reward - expected
    assert fl.getUpdate(1, b).status == UpdateStatus.CLAIMED
    assert fl.claimable(1, b) == 0
    r = fl.getRound(1)
    assert r.claims == 1
    assert r.rewardClaimed == expected
    _accounting_holds(fl)


def test_claim_all_returns_dust_on_last_claim(fl, params, finalized):
    a, b, c, _, _ = finalized
    reward = params.rewardPerRound  # 10**18 is not divisible by 7: there is dust
    shares = {a: mul_div(reward, 1, 7), b: mul_div(reward, 2, 7), c: mul_div(reward, 4, 7)}
    dust = reward - sum(shares.values())
    assert dust > 0
    pool = fl.rewardPool()
    for who in (c, a):
        fl.claimReward(1, sender=who)
        assert fl.rewardPool() == pool  # no dust before the last claim
    fl.claimReward(1, sender=b)  # the last accepted client
    assert fl.rewardPool() == pool + dust
    assert fl.totalAllocated() == 0
    r = fl.getRound(1)
    assert r.rewardClaimed == reward - dust <= r.reward
    assert r.claims == 3
    for who, amount in shares.items():
        assert fl.owed(who) == amount
    _accounting_holds(fl)


def test_no_dust_when_exact(deploy, clients, aggregator, funder):
    fl = deploy(rewardPerRound=700)
    fl.fundRewards(sender=funder, value=700)
    for c in clients[:3]:
        fl.register(b"\x01" * 32, sender=c, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    for i, (c, n) in enumerate(zip(clients[:3], (1, 2, 4))):
        fl.submitUpdate(1, bytes([i + 1]) * 32, n, "", sender=c)
    propose(fl, 1, b"\x09" * 32, [], [], "", sender=aggregator)
    for c, amount in zip(clients[:3], (100, 200, 400)):
        tx = fl.claimReward(1, sender=c)
        assert event_args(tx, "RewardClaimed")[0]["amount"] == amount
    assert fl.rewardPool() == 0 and fl.totalAllocated() == 0 and fl.totalOwed() == 700


def test_claim_twice(fl, finalized):
    a = finalized[0]
    fl.claimReward(1, sender=a)
    with ape.reverts(fl.NothingToClaim, roundId=1, client=a):
        fl.claimReward(1, sender=a)


def test_rejected_excluded_and_outsiders_cannot_claim(fl, finalized, clients, stranger):
    _, _, _, d, e = finalized
    for who in (d, e, clients[5], stranger):
        with ape.reverts(fl.NothingToClaim, roundId=1, client=who):
            fl.claimReward(1, sender=who)
        assert fl.claimable(1, who) == 0


def test_claim_round_not_finalized(fl, clients, register, start_round, submit, aggregator):
    a = clients[0]
    with ape.reverts(fl.RoundNotFinalized, roundId=0):
        fl.claimReward(0, sender=a)
    with ape.reverts(fl.RoundNotFinalized, roundId=1):  # never started
        fl.claimReward(1, sender=a)
    register(a)
    start_round()
    submit(a)
    with ape.reverts(fl.RoundNotFinalized, roundId=1):  # open
        fl.claimReward(1, sender=a)
    assert fl.claimable(1, a) == 0
    fl.cancelRound(1, sender=aggregator)
    with ape.reverts(fl.RoundNotFinalized, roundId=1):  # cancelled
        fl.claimReward(1, sender=a)


def test_claim_with_empty_pool_pays_zero(fl, clients, register, start_round, submit, finalize):
    a = clients[0]
    register(a)
    start_round()
    submit(a)
    finalize()
    assert fl.getRound(1).reward == 0
    tx = fl.claimReward(1, sender=a)
    assert tx.events == [fl.RewardClaimed(1, a, 0)]
    assert fl.getUpdate(1, a).status == UpdateStatus.CLAIMED
    with ape.reverts(fl.NothingOwed, client=a):
        fl.withdrawRewards(sender=a)


def test_claims_across_rounds_accumulate(fl, params, clients, register, start_round, submit, finalize, fund):
    fund(10 * params.rewardPerRound)
    a, b = clients[:2]
    register(a, b)
    total = 0
    for rnd in range(1, 4):
        start_round()
        submit(a, samples=rnd)
        submit(b, samples=3)
        finalize()
        total += mul_div(params.rewardPerRound, rnd, rnd + 3)
    for rnd in range(1, 4):
        fl.claimReward(rnd, sender=a)
    assert fl.owed(a) == total
    _accounting_holds(fl)


def test_slashed_stake_goes_to_the_treasury_not_the_reward(fl, params, clients, register, start_round, submit,
                                                           finalize, stranger):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a, samples=10)
    submit(b, samples=10)
    finalize(rejected=[b])
    slashed = mul_div(params.minStake, params.slashBps, 10_000)
    assert fl.getRound(1).reward == 0  # the pool was empty, and a slash never fills it
    assert fl.rewardPool() == 0
    assert fl.treasuryOwed() == slashed
    assert fl.claimable(1, a) == 0
    _accounting_holds(fl)
    before = fl.provider.get_balance(TREASURY)
    tx = fl.withdrawTreasury(sender=stranger)  # anyone may send it on
    assert tx.events == [fl.TreasuryWithdrawn(TREASURY, slashed)]
    assert fl.provider.get_balance(TREASURY) == before + slashed
    assert fl.treasuryOwed() == 0
    _accounting_holds(fl)
    with ape.reverts(fl.NothingOwed, client=TREASURY):
        fl.withdrawTreasury(sender=stranger)


def test_slashed_stake_is_burned_without_treasury(deploy, params, clients, aggregator, chain, stranger):
    from .fl_helpers import commitment, key, set_time

    fl = deploy(treasury=ZERO_ADDRESS)
    a, b = clients[:2]
    for x in (a, b):
        fl.register(key(0), sender=x, value=params.minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 10, "", sender=a)
    fl.submitUpdate(1, commitment(1, 1), 10, "", sender=b)
    propose(fl, 1, b"\x44" * 32, [b], [], "", sender=aggregator)
    slashed = mul_div(params.minStake, params.slashBps, 10_000)
    assert fl.totalBurned() == slashed
    assert fl.treasuryOwed() == 0 and fl.rewardPool() == 0
    with ape.reverts(fl.NoTreasury):
        fl.withdrawTreasury(sender=stranger)
    _accounting_holds(fl)


def test_claim_gas_is_constant(fl, params, clients, register, start_round, submit, finalize, fund):
    fund(params.rewardPerRound)
    register(*clients)
    start_round()
    for c in clients:
        submit(c, samples=10)
    finalize()
    gas = [fl.claimReward(1, sender=c).gas_used for c in clients]
    # the first claim moves counters from zero; the last one also returns the dust
    assert len(set(gas[1:-1])) == 1, gas


# ------------------------------------------------------------- withdrawRewards


def test_withdraw_rewards(fl, params, finalized, chain):
    a, b, c, _, _ = finalized
    fl.claimReward(1, sender=b)
    amount = fl.owed(b)
    assert amount > 0
    before_client, before_contract = b.balance, fl.balance
    tx = fl.withdrawRewards(sender=b)
    assert tx.events == [fl.RewardsWithdrawn(b, amount)]
    assert b.balance == before_client + amount - fees(tx)
    assert fl.balance == before_contract - amount
    assert fl.owed(b) == 0
    assert fl.totalOwed() == 0
    _accounting_holds(fl)
    with ape.reverts(fl.NothingOwed, client=b):
        fl.withdrawRewards(sender=b)


def test_withdraw_rewards_nothing_owed(fl, stranger, finalized):
    a = finalized[0]
    with ape.reverts(fl.NothingOwed, client=stranger):
        fl.withdrawRewards(sender=stranger)
    with ape.reverts(fl.NothingOwed, client=a):  # accepted but not claimed yet
        fl.withdrawRewards(sender=a)


def test_withdraw_rewards_after_leaving(fl, params, finalized, chain):
    """Claiming and withdrawing rewards does not require staying registered."""
    a = finalized[0]
    t = fl.requestExit(sender=a).timestamp
    chain.pending_timestamp = t + params.unbondingPeriod
    fl.withdrawStake(sender=a)
    fl.claimReward(1, sender=a)
    amount = fl.owed(a)
    before = a.balance
    tx = fl.withdrawRewards(sender=a)
    assert a.balance == before + amount - fees(tx)
    _accounting_holds(fl)


def test_claim_rewards_of_several_rounds_in_one_transaction(fl, clients, funder, register, start_round, submit,
                                                            finalize):
    """claimRewards credits exactly what claimReward would, round by round, and names a round with nothing."""
    import ape

    fl.fundRewards(sender=funder, value=3 * fl.params().rewardPerRound)  # all three rounds paid in full
    a, b = clients[:2]
    register(a, b)
    for _ in range(3):
        start_round()
        submit(a, samples=30)
        submit(b, samples=10)
        finalize()
    reward = fl.getRound(1).reward
    assert reward > 0 and fl.getRound(2).reward == fl.getRound(3).reward == reward
    tx = fl.claimRewards([1, 3], sender=a)
    # written out by hand: a holds 30 of 40 samples in each round
    share = reward * 30 // 40
    assert [(e.roundId, e.amount) for e in tx.events] == [(1, share), (3, share)]
    assert fl.owed(a) == 2 * share
    with ape.reverts(fl.NothingToClaim, roundId=1, client=a.address):
        fl.claimRewards([2, 1], sender=a)  # round 1 is claimed: nothing changes, round 2 included
    assert fl.getUpdate(2, a).status != 4  # still unclaimed
    one = fl.claimReward(2, sender=a)
    assert one.events[0].amount == share and fl.owed(a) == 3 * share
    assert fl.claimRewards([], sender=b).events == []


# ------------------------------------------------------------------ roundView


def test_round_view_before_any_round(fl, params, clients):
    v = fl.roundView(0, clients[0])
    assert v.roundId == 0 and v.currentRound == 0
    assert v.round.phase == Phase.NONE and v.proposal.proposer == ZERO_ADDRESS
    assert v.update.status == UpdateStatus.NONE and v.client.stake == 0
    assert v.canPropose is False and v.claimable == 0 and v.owed == 0
    assert v.aggregatorKey == params.aggregatorKey


def test_round_view_is_what_a_client_needs(fl, params, finalized, start_round, submit, fund):
    a, b, c, d, e = finalized  # round 1: a, b, c accepted with 1, 2 and 4 samples of 7; d rejected
    fl.claimReward(1, sender=b)
    start_round()
    submit(a, samples=5)
    pool = fl.rewardPool()
    # The current round (0 asks for it) and a's part in it.
    v = fl.roundView(0, a)
    assert (v.roundId, v.currentRound) == (2, 2)
    assert v.round.phase == Phase.OPEN and v.round.submissions == 1 and v.round.submittedWeight == 5
    assert (v.update.samples, v.update.status) == (5, UpdateStatus.SUBMITTED)
    assert v.client.stake == params.minStake and v.client.lastSubmittedRound == 2
    assert v.canPropose is False  # b, c, e have not submitted and the deadline is ahead
    assert v.rewardPool == pool and v.aggregatorKey == params.aggregatorKey
    # A past round: its verdicts and rewards, per party. 1 of 7 and 4 of 7 samples, by hand.
    reward = params.rewardPerRound
    va, vb, vc, vd = (fl.roundView(1, who) for who in (a, b, c, d))
    assert va.roundId == 1 and va.currentRound == 2 and va.round.phase == Phase.FINALIZED
    assert reward == 10**18  # 1 ETH a round
    assert va.claimable == 142_857_142_857_142_857 and vc.claimable == 571_428_571_428_571_428
    assert vb.claimable == 0 and vb.update.status == UpdateStatus.CLAIMED and vb.owed == 285_714_285_714_285_714
    assert vd.claimable == 0 and vd.update.status == UpdateStatus.REJECTED
    assert params.minStake == 10**17 and params.slashBps == 5000
    assert vd.client.stake == 5 * 10**16  # half of 0.1 ETH slashed
    assert va.proposal == fl.getProposal(1) and va.round == fl.getRound(1)
