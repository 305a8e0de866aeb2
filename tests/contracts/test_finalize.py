"""finalizeRound: timing, verdicts (rejected / excluded), slashing, quorum, reward allocation."""
import ape
import pytest
from .fl_helpers import (
    ascending,
    propose,
    AGGREGATOR_ROLE,
    BPS,
    accounted,
    ZERO32,
    Phase,
    UpdateStatus,
    commitment,
    event_args,
    key,
    model_hash,
    mul_div,
    set_time,
)

MODEL = model_hash(1)


# ---------------------------------------------------------------------- timing


def test_finalize_deadline_boundary(fl, clients, register, start_round, submit, aggregator, chain):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)  # b is active and has not submitted: no early finalization
    deadline = fl.getRound(1).deadline
    set_time(chain, deadline)
    assert not fl.canPropose(1)
    with ape.reverts(fl.DeadlineNotReached, deadline=deadline):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    set_time(chain, deadline + 1)
    tx = propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    assert tx.timestamp == deadline + 1
    assert fl.getRound(1).phase == Phase.FINALIZED


def test_finalize_early_when_all_active_submitted(fl, clients, register, start_round, submit, aggregator):
    a, b, c = clients[:3]
    register(a, b, c)
    start_round()
    submit(a)
    submit(b)
    assert not fl.canPropose(1)
    with ape.reverts(fl.DeadlineNotReached):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    submit(c)
    assert fl.canPropose(1)
    tx = propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    assert tx.timestamp <= fl.getRound(1).deadline


def test_finalize_early_when_cap_reached(deploy, clients, aggregator):
    fl = deploy(maxUpdatesPerRound=2)
    for c in clients[:3]:
        fl.register(key(0), sender=c, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 5, "", sender=clients[0])
    assert not fl.canPropose(1)
    fl.submitUpdate(1, commitment(1, 1), 5, "", sender=clients[1])
    assert fl.canPropose(1)  # the third client can no longer submit anyway
    propose(fl, 1, MODEL, [], [], "", sender=aggregator)


def test_no_early_finalize_without_submissions(fl, aggregator, start_round, chain):
    start_round()  # nobody registered: zero active clients, zero submissions
    assert not fl.canPropose(1)
    with ape.reverts(fl.DeadlineNotReached):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    set_time(chain, fl.getRound(1).deadline + 1)
    with ape.reverts(fl.ModelBelowQuorum, accepted=0, quorum=1):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    tx = propose(fl, 1, ZERO32, [], [], "", sender=aggregator)  # no model: the round fails
    assert event_args(tx, "RoundFailed") == [dict(roundId=1, accepted=0, rejected=0, excluded=0)]
    assert fl.getRound(1).phase == Phase.FAILED


def test_no_early_finalize_when_a_submitter_exits(fl, clients, register, start_round, submit, aggregator, chain):
    """A submitter that requests exit no longer counts as an active client, and
    must not count as an active client's submission either: c is still active and
    may submit until the deadline."""
    a, b, c = clients[:3]
    register(a, b, c)
    start_round()
    submit(a)
    fl.requestExit(sender=a)  # activeClients 3 -> 2, submissions stays 1
    submit(b)  # submissions 2 == activeClients 2, yet c has not submitted
    assert not fl.canPropose(1)
    with ape.reverts(fl.DeadlineNotReached):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    submit(c)
    assert fl.canPropose(1)
    propose(fl, 1, MODEL, [], [], "", sender=aggregator)


def test_early_finalize_when_every_submitter_exited(fl, clients, register, start_round, submit, aggregator):
    a = clients[0]
    register(a)
    start_round()
    submit(a)
    fl.requestExit(sender=a)  # no active client left, one submission in
    assert fl.canPropose(1)
    propose(fl, 1, MODEL, [], [], "", sender=aggregator)


@pytest.mark.parametrize("who", ["admin", "stranger", "client"])
def test_finalize_requires_aggregator(fl, clients, register, start_round, submit, admin, stranger, who):
    register(clients[0])
    start_round()
    submit(clients[0])
    account = {"admin": admin, "stranger": stranger, "client": clients[0]}[who]
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=account, neededRole=AGGREGATOR_ROLE):
        propose(fl, 1, MODEL, [], [], "", sender=account)


def test_finalize_round_not_open(fl, clients, register, start_round, submit, finalize, aggregator):
    with ape.reverts(fl.RoundNotOpen, roundId=0):
        propose(fl, 0, MODEL, [], [], "", sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=1):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    register(clients[0])
    start_round()
    submit(clients[0])
    finalize()
    with ape.reverts(fl.RoundNotOpen, roundId=1):  # already finalized
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    start_round()
    fl.cancelRound(2, sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=2):  # cancelled
        propose(fl, 2, MODEL, [], [], "", sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=3):  # never started
        propose(fl, 3, MODEL, [], [], "", sender=aggregator)


def test_finalize_zero_model_hash(fl, clients, register, start_round, submit, finalize):
    register(clients[0])
    start_round()
    submit(clients[0])
    with ape.reverts(fl.ZeroModelHash):
        finalize(model=ZERO32)


# ------------------------------------------------------------ success path


def test_finalize_all_accepted(fl, params, clients, register, start_round, submit, finalize, fund):
    fund(5 * params.rewardPerRound)
    register(*clients[:3])
    start_round()
    for i, c in enumerate(clients[:3]):
        submit(c, samples=100 * (i + 1))
    tx = finalize(model=MODEL, locator="ipfs://global-1")
    assert event_args(tx, "RoundFinalized") == [dict(roundId=1, modelHash=MODEL, accepted=3, acceptedWeight=600,
                                                     reward=params.rewardPerRound)]
    assert event_args(tx, "RoundProposed")[0]["modelLocator"] == "ipfs://global-1"
    r = fl.getRound(1)
    assert r.phase == Phase.FINALIZED
    assert r.modelHash == MODEL
    assert r.rejected == r.excluded == 0
    assert r.acceptedWeight == r.submittedWeight == 600
    assert r.reward == params.rewardPerRound
    assert fl.latestModelHash() == MODEL
    assert fl.totalAllocated() == params.rewardPerRound
    assert fl.rewardPool() == 4 * params.rewardPerRound
    for c in clients[:3]:
        assert fl.getUpdate(1, c).status == UpdateStatus.SUBMITTED  # accepted = still Submitted
    assert not fl.canPropose(1)


def test_rejected_slashed_excluded_untouched(fl, params, clients, register, start_round, submit, finalize, fund):
    fund(params.rewardPerRound // 2)  # pool smaller than the reward
    a, b, c, d, e = clients[:5]
    register(a, b, c, d)
    register(e, stake=3 * params.minStake + 1)  # odd stake: slash rounds down
    start_round()
    samples = {a: 10, b: 20, c: 30, d: 40, e: 50}
    for who, n in samples.items():
        submit(who, samples=n)
    staked = fl.totalStaked()
    tx = finalize(rejected=[b, e], excluded=[d])

    slash_b = mul_div(params.minStake, params.slashBps, BPS)
    slash_e = mul_div(3 * params.minStake + 1, params.slashBps, BPS)
    assert sorted(event_args(tx, "UpdateRejected"), key=lambda d: d["client"]) == sorted([
        dict(roundId=1, client=b.address, slashed=slash_b, reason=6, stakeBefore=params.minStake),
        dict(roundId=1, client=e.address, slashed=slash_e, reason=6, stakeBefore=3 * params.minStake + 1),
    ], key=lambda d: d["client"])
    assert event_args(tx, "UpdateExcluded") == [dict(roundId=1, client=d.address)]
    pool = params.rewardPerRound // 2  # slashes never reach the pool
    reward = min(params.rewardPerRound, pool)
    accepted_weight = 10 + 30
    fin = event_args(tx, "RoundFinalized")
    assert fin == [
        dict(
            roundId=1,
            modelHash=fl.latestModelHash(),
            accepted=2,
            acceptedWeight=accepted_weight,
            reward=reward,
        )
    ]
    assert fl.getClient(b).stake == params.minStake - slash_b
    assert fl.getClient(e).stake == 3 * params.minStake + 1 - slash_e
    assert fl.getClient(d).stake == params.minStake  # excluded: not slashed
    assert fl.getClient(a).stake == params.minStake
    assert fl.totalStaked() == staked - slash_b - slash_e
    assert fl.rewardPool() == pool - reward
    assert fl.totalAllocated() == reward
    r = fl.getRound(1)
    assert (r.submissions, r.rejected, r.excluded) == (5, 2, 1)
    assert r.submittedWeight == 150
    assert r.acceptedWeight == accepted_weight
    assert fl.getUpdate(1, b).status == UpdateStatus.REJECTED
    assert fl.getUpdate(1, e).status == UpdateStatus.REJECTED
    assert fl.getUpdate(1, d).status == UpdateStatus.EXCLUDED
    # the evidence stays on chain
    assert fl.getUpdate(1, b).commitment == commitment(1, b.address)
    assert fl.commitmentUsed(b, commitment(1, b.address))
    # excluded and rejected are never paid
    assert fl.claimable(1, d) == fl.claimable(1, b) == 0
    assert fl.claimable(1, a) == mul_div(reward, 10, accepted_weight)
    assert fl.balance == accounted(fl)


@pytest.mark.parametrize("slash_bps", [0, 1, 3333, BPS])
def test_slash_fraction(deploy, clients, aggregator, chain, slash_bps):
    fl = deploy(slashBps=slash_bps)
    a, b = clients[:2]
    stake = fl.params().minStake + 999
    for c in (a, b):
        fl.register(key(0), sender=c, value=stake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 5, "", sender=a)
    fl.submitUpdate(1, commitment(1, 1), 5, "", sender=b)
    tx = propose(fl, 1, MODEL, [b], [], "", sender=aggregator)
    slashed = stake * slash_bps // BPS
    assert event_args(tx, "UpdateRejected") == [dict(roundId=1, client=b.address, slashed=slashed, reason=6,
                                                      stakeBefore=stake)]
    assert slashed <= stake
    assert fl.getClient(b).stake == stake - slashed
    # the slash goes to the treasury; the unfunded pool gives this round no reward
    assert fl.treasuryOwed() == slashed
    assert fl.getRound(1).reward == 0
    assert fl.rewardPool() == 0


def test_slash_whole_stake_then_withdraw_nothing(deploy, clients, aggregator, chain):
    fl = deploy(slashBps=BPS)
    a, b = clients[:2]
    for c in (a, b):
        fl.register(key(0), sender=c, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 5, "", sender=a)
    fl.submitUpdate(1, commitment(1, 1), 5, "", sender=b)
    propose(fl, 1, MODEL, [b], [], "", sender=aggregator)
    assert fl.getClient(b).stake == 0
    t = fl.requestExit(sender=b).timestamp
    set_time(chain, t + fl.params().unbondingPeriod)
    tx = fl.withdrawStake(sender=b)
    assert tx.events == [fl.StakeWithdrawn(b, 0)]


def test_exiting_client_can_still_be_slashed(fl, params, clients, register, start_round, submit, finalize, chain):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    submit(b)
    t = fl.requestExit(sender=b).timestamp  # exits while its update is pending
    finalize(rejected=[b])
    slashed = mul_div(params.minStake, params.slashBps, BPS)
    set_time(chain, t + params.unbondingPeriod)
    tx = fl.withdrawStake(sender=b)
    assert tx.events == [fl.StakeWithdrawn(b, params.minStake - slashed)]


# ----------------------------------------------------------- reward = min(...)


@pytest.mark.parametrize("pool_factor", [0, "half", 1, 3])
def test_reward_is_min_of_reward_per_round_and_pool(fl, params, clients, register, start_round, submit, finalize, fund, pool_factor):
    funded = params.rewardPerRound // 2 if pool_factor == "half" else params.rewardPerRound * pool_factor
    if funded:
        fund(funded)
    register(clients[0])
    start_round()
    submit(clients[0])
    tx = finalize()
    reward = min(params.rewardPerRound, funded)
    assert event_args(tx, "RoundFinalized")[0]["reward"] == reward
    assert fl.getRound(1).reward == reward
    assert fl.rewardPool() == funded - reward
    assert fl.totalAllocated() == reward


def test_reward_per_round_zero(deploy, clients, aggregator, funder):
    fl = deploy(rewardPerRound=0)
    fl.fundRewards(sender=funder, value=10**18)
    fl.register(key(0), sender=clients[0], value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 5, "", sender=clients[0])
    propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    assert fl.getRound(1).reward == 0
    assert fl.rewardPool() == 10**18
    fl.claimReward(1, sender=clients[0])
    assert fl.owed(clients[0]) == 0


# ---------------------------------------------------------------------- quorum


def test_quorum(deploy, clients, aggregator, chain):
    """Below the quorum a model is refused; the same verdicts with no model fail the round."""
    fl = deploy(quorum=2)
    a, b, c, d = clients[:4]
    for i, x in enumerate((a, b, c, d)):
        fl.register(key(0), sender=x, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    for i, x in enumerate((a, b, c, d)):
        fl.submitUpdate(1, commitment(1, i), 10, "", sender=x)
    with ape.reverts(fl.ModelBelowQuorum, accepted=1, quorum=2):
        propose(fl, 1, MODEL, [a, b], [c], "", sender=aggregator)
    with ape.reverts(fl.ModelBelowQuorum, accepted=1, quorum=2):
        propose(fl, 1, MODEL, [], [a, b, c], "", sender=aggregator)
    with ape.reverts(fl.ModelBelowQuorum, accepted=0, quorum=2):
        propose(fl, 1, MODEL, [a, b, c, d], [], "", sender=aggregator)
    with ape.reverts(fl.ZeroModelHash):  # at the quorum a model is required
        propose(fl, 1, ZERO32, [a], [b], "", sender=aggregator)
    # a refused finalize changes nothing
    assert fl.getUpdate(1, a).status == UpdateStatus.SUBMITTED
    assert fl.getClient(a).stake == fl.params().minStake
    tx = propose(fl, 1, MODEL, [a], [b], "", sender=aggregator)
    assert event_args(tx, "RoundFinalized")[0]["accepted"] == 2


def test_quorum_not_reached_after_deadline(deploy, clients, aggregator, chain):
    """One update against a quorum of two: the round fails with no model; nobody is paid."""
    fl = deploy(quorum=2)
    fl.fundRewards(sender=aggregator, value=10**18)
    a, b = clients[:2]
    for x in (a, b):
        fl.register(key(0), sender=x, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 10, "", sender=a)
    set_time(chain, fl.getRound(1).deadline + 1)
    tx = propose(fl, 1, ZERO32, [], [], "", sender=aggregator)
    assert event_args(tx, "RoundFailed") == [dict(roundId=1, accepted=1, rejected=0, excluded=0)]
    r = fl.getRound(1)
    assert r.phase == Phase.FAILED and r.reward == 0 and r.modelHash == ZERO32
    assert fl.latestModelHash() == fl.params().initialModelHash
    assert fl.rewardPool() == 10**18 and fl.totalAllocated() == 0
    assert fl.claimable(1, a) == 0
    with ape.reverts(fl.RoundNotFinalized, roundId=1):
        fl.claimReward(1, sender=a)
    fl.startRound(sender=aggregator)  # a failed round is closed: the next one can start
    assert fl.getRound(2).baseModelHash == fl.params().initialModelHash


# -------------------------------------------------------------- InvalidVerdict


@pytest.fixture
def three_submitted(fl, clients, register, start_round, submit):
    a, b, c, d = clients[:4]
    register(a, b, c, d)
    start_round()
    for x in (a, b, c):
        submit(x)
    return a, b, c, d  # d registered, did not submit


def test_invalid_verdict_non_submitter(fl, three_submitted, stranger, finalize):
    a, b, c, d = three_submitted
    with ape.reverts(fl.InvalidVerdict, client=d):
        finalize(rejected=[d])
    with ape.reverts(fl.InvalidVerdict, client=stranger):
        finalize(excluded=[stranger])
    with ape.reverts(fl.InvalidVerdict, client="0x0000000000000000000000000000000000000000"):
        finalize(rejected=["0x0000000000000000000000000000000000000000"])


def test_invalid_verdict_duplicates(fl, three_submitted, aggregator, chain):
    """Verdict lists are strictly ascending, so a duplicate (or any disorder) is refused."""
    a, b, c, _ = three_submitted
    set_time(chain, fl.getRound(1).deadline + 1)  # d did not submit: proposable after the deadline only
    lo, hi = ascending([a, b])
    with ape.reverts(fl.VerdictsNotSorted, client=lo):
        propose(fl, 1, MODEL, [lo, hi, lo], sender=aggregator, sort=False)
    with ape.reverts(fl.VerdictsNotSorted, client=lo):  # the first address out of order
        propose(fl, 1, MODEL, [hi, lo], sender=aggregator, sort=False)
    with ape.reverts(fl.VerdictsNotSorted, client=b.address):
        propose(fl, 1, MODEL, [], [b, b], sender=aggregator, sort=False)
    with ape.reverts(fl.ReasonsMismatch, rejected=1, reasons=0):
        propose(fl, 1, MODEL, [a], sender=aggregator, reasons=[])
    with ape.reverts(fl.ZeroReason, client=a.address):
        propose(fl, 1, MODEL, [a], sender=aggregator, reasons=[0])


def test_invalid_verdict_rejected_and_excluded(fl, three_submitted, finalize):
    a, b, c, _ = three_submitted
    with ape.reverts(fl.InvalidVerdict, client=c):  # both rejected and excluded
        finalize(rejected=[c], excluded=[c])
    # nothing stuck: a valid verdict still goes through
    finalize(rejected=[a], excluded=[b])
    assert fl.getRound(1).acceptedWeight == 100


def test_invalid_verdict_update_of_another_round(fl, clients, register, start_round, submit, finalize):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    submit(b)
    finalize()
    start_round()
    submit(a)
    with ape.reverts(fl.InvalidVerdict, client=b):  # b submitted in round 1 only
        finalize(rejected=[b])


# ------------------------------------------------------------------------ gas


def test_finalize_gas_independent_of_client_count(deploy, accounts, aggregator, funder):
    """O(rejected + excluded), not O(clients): equal gas with 2 or 12 submitters."""
    gas = []
    for n in (2, 12):
        fl = deploy()
        fl.fundRewards(sender=funder, value=10**19)
        for i in range(n):
            fl.register(key(0), sender=accounts[3 + i], value=fl.params().minStake)
        fl.startRound(sender=aggregator)
        for i in range(n):
            fl.submitUpdate(1, bytes([i + 1]) * 32, 10, "", sender=accounts[3 + i])
        gas.append(propose(fl, 1, MODEL, [], [], "", sender=aggregator).gas_used)
    assert gas[0] == gas[1], gas


def test_finalize_gas_linear_in_rejected(deploy, accounts, aggregator, funder):
    """Each rejection costs the same: 2, 4 and 6 rejections in fresh deployments."""
    costs = []
    for k in (2, 4, 6):
        fl = deploy()
        fl.fundRewards(sender=funder, value=10**19)
        for i in range(k + 1):
            fl.register(key(0), sender=accounts[3 + i], value=fl.params().minStake)
        fl.startRound(sender=aggregator)
        for i in range(k + 1):
            fl.submitUpdate(1, bytes([i + 1]) * 32, 10, "", sender=accounts[3 + i])
        rejected = [accounts[3 + i] for i in range(1, k + 1)]
        costs.append(propose(fl, 1, MODEL, rejected, [], "", sender=aggregator).gas_used)
    # equal up to calldata (zero bytes in the addresses cost 4 gas instead of 16)
    assert abs((costs[1] - costs[0]) - (costs[2] - costs[1])) <= 2 * 20 * 12, costs
