"""Round lifecycle: startRound and submitUpdate."""
import ape
import pytest
from .fl_helpers import (
    AGGREGATOR_ROLE,
    ZERO32,
    ClientStatus,
    Phase,
    UpdateStatus,
    commitment,
    set_time,
)

# ------------------------------------------------------------------ startRound


def test_start_round(fl, params, aggregator):
    tx = fl.startRound(sender=aggregator)
    t = tx.timestamp
    assert tx.events == [fl.RoundStarted(1, params.initialModelHash, t + params.submissionPeriod)]
    assert fl.currentRound() == 1
    r = fl.getRound(1)
    assert r.baseModelHash == params.initialModelHash
    assert r.modelHash == ZERO32
    assert r.startedAt == t
    assert r.deadline == t + params.submissionPeriod
    assert r.phase == Phase.OPEN
    assert r.submissions == r.rejected == r.excluded == r.claims == 0
    assert r.submittedWeight == r.acceptedWeight == r.reward == r.rewardClaimed == 0


@pytest.mark.parametrize("who", ["admin", "stranger", "client"])
def test_start_round_requires_aggregator(fl, admin, stranger, clients, who):
    account = {"admin": admin, "stranger": stranger, "client": clients[0]}[who]
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=account, neededRole=AGGREGATOR_ROLE):
        fl.startRound(sender=account)


def test_start_round_while_open(fl, aggregator, start_round):
    start_round()
    with ape.reverts(fl.RoundStillOpen, roundId=1):
        fl.startRound(sender=aggregator)


def test_next_round_builds_on_finalized_model(fl, params, clients, register, start_round, submit, finalize, aggregator):
    register(clients[0])
    start_round()
    submit(clients[0])
    new_model = b"\x55" * 32
    finalize(model=new_model)
    assert fl.latestModelHash() == new_model
    tx = fl.startRound(sender=aggregator)
    assert tx.events == [fl.RoundStarted(2, new_model, tx.timestamp + params.submissionPeriod)]
    assert fl.getRound(2).baseModelHash == new_model


def test_next_round_after_cancel_keeps_model(fl, params, start_round, aggregator):
    start_round()
    fl.cancelRound(1, sender=aggregator)
    assert start_round() == 2
    assert fl.getRound(2).baseModelHash == params.initialModelHash
    assert fl.latestModelHash() == params.initialModelHash


# ---------------------------------------------------------------- submitUpdate


def test_submit(fl, clients, register, start_round):
    c = clients[0]
    register(c)
    rid = start_round()
    com = commitment(rid, c.address)
    tx = fl.submitUpdate(rid, com, 321, "ipfs://update-blob", sender=c)
    assert tx.events == [fl.UpdateSubmitted(rid, c, com, 321, "ipfs://update-blob")]
    u = fl.getUpdate(rid, c)
    assert u.commitment == com
    assert u.samples == 321
    assert u.status == UpdateStatus.SUBMITTED
    assert fl.commitmentUsed(c, com)
    assert not fl.commitmentUsed(clients[1], com)  # per client
    assert fl.getClient(c).lastSubmittedRound == rid
    r = fl.getRound(rid)
    assert r.submissions == 1
    assert r.submittedWeight == 321
    assert r.acceptedWeight == 0  # only set on finalize


def test_submit_accumulates_weight(fl, clients, register, start_round, submit):
    register(*clients[:4])
    start_round()
    for i, c in enumerate(clients[:4]):
        submit(c, samples=10 + i)
    r = fl.getRound(1)
    assert r.submissions == 4
    assert r.submittedWeight == 10 + 11 + 12 + 13
    assert fl.getUpdate(1, clients[4]).status == UpdateStatus.NONE


def test_submit_at_deadline_boundary(fl, clients, register, start_round, submit, chain):
    a, b = clients[:2]
    register(a, b)
    start_round()
    deadline = fl.getRound(1).deadline
    set_time(chain, deadline)  # still allowed: block.timestamp <= deadline
    assert submit(a).timestamp == deadline
    set_time(chain, deadline + 1)
    with ape.reverts(fl.DeadlinePassed, deadline=deadline):
        submit(b)


def test_submit_not_registered_or_exiting(fl, clients, register, start_round, submit):
    a, b = clients[:2]
    register(b)
    start_round()
    with ape.reverts(fl.NotActive, client=a):
        submit(a)
    fl.requestExit(sender=b)
    assert fl.getClient(b).status == ClientStatus.EXITING
    with ape.reverts(fl.NotActive, client=b):
        submit(b)


def test_submit_wrong_round(fl, clients, register, start_round, submit, finalize):
    c = clients[0]
    register(c)
    with ape.reverts(fl.NotCurrentRound, roundId=1, current=0):  # no round yet
        submit(c, round_id=1)
    with ape.reverts(fl.RoundNotOpen, roundId=0):  # "round 0" is current but never opened
        submit(c, round_id=0)
    start_round()
    with ape.reverts(fl.NotCurrentRound, roundId=2, current=1):  # future
        submit(c, round_id=2)
    submit(c)
    finalize()
    start_round()
    with ape.reverts(fl.NotCurrentRound, roundId=1, current=2):  # stale
        submit(c, round_id=1, salt=1)


def test_submit_round_closed(fl, clients, register, start_round, submit, finalize, aggregator):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    finalize()
    with ape.reverts(fl.RoundNotOpen, roundId=1):
        submit(b)
    start_round()
    fl.cancelRound(2, sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=2):
        submit(b)


def test_submit_twice(fl, clients, register, start_round, submit):
    c = clients[0]
    register(c)
    start_round()
    submit(c, salt=0)
    with ape.reverts(fl.AlreadySubmitted, roundId=1, client=c):
        submit(c, salt=1)


def test_submit_zero_commitment(fl, clients, register, start_round):
    c = clients[0]
    register(c)
    start_round()
    with ape.reverts(fl.ZeroCommitment):
        fl.submitUpdate(1, ZERO32, 10, "", sender=c)


def test_commitment_reuse(fl, clients, register, start_round, finalize):
    """A commitment is single-use per client (a replay); another client may commit to the same bytes
    (a copy it cannot open: the seal binds the client, so the copier is the one rejected)."""
    a, b = clients[:2]
    register(a, b)
    start_round()
    com = commitment(1, "shared")
    fl.submitUpdate(1, com, 10, "", sender=a)
    fl.submitUpdate(1, com, 10, "", sender=b)  # another client, same round: not blocked, not blocking
    finalize()
    start_round()
    with ape.reverts(fl.CommitmentAlreadyUsed, commitment=com):  # same client, a later round
        fl.submitUpdate(2, com, 10, "", sender=a)
    with ape.reverts(fl.CommitmentAlreadyUsed, commitment=com):
        fl.submitUpdate(2, com, 10, "", sender=b)
    assert fl.commitmentUsed(a, com) and fl.commitmentUsed(b, com)


def test_submit_samples_bounds(fl, params, clients, register, start_round, submit):
    a, b, c = clients[:3]
    register(a, b, c)
    start_round()
    with ape.reverts(fl.ZeroSamples):
        submit(a, samples=0)
    cap = params.maxSamplesPerUpdate
    with ape.reverts(fl.TooManySamples, samples=cap + 1, maximum=cap):
        submit(a, samples=cap + 1)
    with ape.reverts(fl.TooManySamples, samples=2**64 - 1, maximum=cap):
        submit(a, samples=2**64 - 1)
    submit(a, samples=cap)
    submit(b, samples=1)
    assert fl.getRound(1).submittedWeight == cap + 1


def test_round_full(deploy, clients, aggregator):
    fl = deploy(quorum=1, maxUpdatesPerRound=2)
    for c in clients[:3]:
        fl.register(b"\x01" * 32, sender=c, value=fl.params().minStake)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, 0), 5, "", sender=clients[0])
    fl.submitUpdate(1, commitment(1, 1), 5, "", sender=clients[1])
    with ape.reverts(fl.RoundFull, maxUpdates=2):
        fl.submitUpdate(1, commitment(1, 2), 5, "", sender=clients[2])
    assert fl.getRound(1).submissions == 2


def test_stake_below_minimum_after_slash_then_top_up(fl, params, clients, register, start_round, submit, finalize):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    submit(b)
    finalize(rejected=[a])  # 50% slash: a's stake is now below the minimum
    stake = params.minStake - params.minStake * params.slashBps // 10_000
    assert fl.getClient(a).stake == stake
    start_round()
    with ape.reverts(fl.StakeBelowMinimum, stake=stake, minimum=params.minStake):
        submit(a)
    fl.topUp(sender=a, value=params.minStake - stake - 1)
    with ape.reverts(fl.StakeBelowMinimum, stake=params.minStake - 1, minimum=params.minStake):
        submit(a)
    fl.topUp(sender=a, value=1)
    tx = submit(a)
    assert tx.events[0].event_name == "UpdateSubmitted"


def test_submit_gas_is_constant(fl, clients, register, start_round):
    register(*clients)
    start_round()
    # Commitments without zero bytes, so calldata costs the same for each.
    gas = [
        fl.submitUpdate(1, bytes([i + 1]) * 32, 100, "ipfs://x", sender=c).gas_used
        for i, c in enumerate(clients)
    ]
    # The first submission of a round turns the round counters from zero to non-zero.
    assert len(set(gas[1:])) == 1, gas
