"""Private mode (secure aggregation) on chain: join, submit, reveal, propose, with their windows.

The participants are fixed by the joins before anything is revealed; a survivor reveals only after
submissions close; the aggregator proposes once every survivor revealed or the reveal deadline passed.
"""
import ape
import pytest

from .fl_helpers import ZERO32, commitment, key, model_hash, outcome, set_time

JOIN, SUBMIT, REVEAL = 300, 600, 200  # seconds (tests/conftest.py SUBMISSION is the submit window too)
PRIVATE = dict(privacy=1, secClip=1_000_000, secScaleBits=16, secRingBits=64, secThreshold=2,
               joinPeriod=JOIN, revealPeriod=REVEAL)


@pytest.fixture
def pfl(deploy):
    return deploy(**PRIVATE, submissionPeriod=SUBMIT)


@pytest.fixture
def three(pfl, clients, params):
    for i, c in enumerate(clients[:3]):
        pfl.register(key(i), sender=c, value=params.minStake)
    return clients[:3]


def join(fl, who, rid=1, i=0):
    return fl.joinRound(rid, key(100 + i), key(200 + i), f"dealing-{i}", sender=who)


@pytest.mark.parametrize("overrides, reason", [
    (dict(PRIVATE, privacy=2), "privacy must be 0 or 1"),
    (dict(PRIVATE, secRingBits=48), "secRingBits must be 16, 32 or 64"),
    (dict(PRIVATE, secThreshold=1), "secThreshold below 2"),
    (dict(PRIVATE, joinPeriod=0), "secClip, joinPeriod and revealPeriod must be set"),
    (dict(PRIVATE, secClip=0), "secClip, joinPeriod and revealPeriod must be set"),
    (dict(joinPeriod=10), "private-mode settings without privacy"),
    (dict(secThreshold=2), "private-mode settings without privacy"),
])
def test_private_params_are_checked(project, deploy, overrides, reason):
    with ape.reverts(project.FederatedLearning.InvalidParams, reason=reason):
        deploy(**overrides)


def test_a_robust_job_has_no_join_or_reveal(fl, clients, params, aggregator):
    fl.register(key(0), sender=clients[0], value=params.minStake)
    fl.startRound(sender=aggregator)
    with ape.reverts(fl.NotPrivate):
        fl.joinRound(1, key(1), key(2), "", sender=clients[0])
    with ape.reverts(fl.NotPrivate):
        fl.revealShares(1, key(2), "", sender=clients[0])


def test_a_private_round_from_join_to_proposal(pfl, three, aggregator, chain):
    a, b, c = three
    t0 = pfl.startRound(sender=aggregator).timestamp
    r = pfl.getRound(1)
    assert r.deadline == t0 + JOIN + SUBMIT
    v = pfl.roundView(1, a)
    assert (v.priv.joinDeadline, v.priv.revealDeadline, v.priv.joined) == (t0 + JOIN, t0 + JOIN + SUBMIT + REVEAL, 0)

    # only participants submit, and only once the participants are fixed
    tx = join(pfl, a, i=0)
    assert tx.events == [pfl.ClientJoined(1, a, key(100), key(200), "dealing-0")]
    with ape.reverts(pfl.AlreadyJoined, roundId=1, client=a):
        join(pfl, a, i=0)
    with ape.reverts(pfl.JoinStillOpen, joinDeadline=t0 + JOIN):
        pfl.submitUpdate(1, commitment(1, a), 100, "", sender=a)
    join(pfl, b, i=1)
    with ape.reverts(pfl.NotJoined, roundId=1, client=c):
        pfl.submitUpdate(1, commitment(1, c), 100, "", sender=c)  # c has not joined (yet)
    join(pfl, c, i=2)  # every eligible client joined: the participants are fixed at once (see below)
    assert pfl.roundView(1, a).priv.joined == 3
    assert pfl.getJoin(1, b).roundKey == key(101) and pfl.getJoin(1, b).dealing == key(201)

    pfl.submitUpdate(1, commitment(1, a), 100, "", sender=a)  # before the join deadline
    pfl.submitUpdate(1, commitment(1, b), 50, "", sender=b)
    # c dropped out: nobody reveals before the deadline, and the round cannot be proposed
    with ape.reverts(pfl.RevealNotOpen, roundId=1):
        pfl.revealShares(1, key(300), "reveal-a", sender=a)
    with ape.reverts(pfl.DeadlineNotReached):
        pfl.proposeRound(1, outcome(model_hash(1)), sender=aggregator)

    set_time(chain, r.deadline + 1)
    with ape.reverts(pfl.NotJoined, roundId=1, client=c):
        pfl.revealShares(1, key(302), "", sender=c)  # a dropped participant has nothing to reveal
    tx = pfl.revealShares(1, key(300), "reveal-a", sender=a)
    assert tx.events == [pfl.SharesRevealed(1, a, key(300), "reveal-a")]
    with ape.reverts(pfl.AlreadyRevealed, roundId=1, client=a):
        pfl.revealShares(1, key(300), "", sender=a)
    assert not pfl.canPropose(1)  # b has not revealed, and the reveal window is open
    pfl.revealShares(1, key(301), "reveal-b", sender=b)
    assert pfl.canPropose(1)  # every survivor revealed: no need to wait
    v = pfl.roundView(1, b)
    assert (v.priv.joined, v.priv.revealed, v.join.reveal) == (3, 2, key(301))
    pfl.proposeRound(1, outcome(model_hash(1)), sender=aggregator)
    assert pfl.getRound(1).acceptedWeight == 150


def test_the_reveal_window_closes_and_the_grace_period_counts_from_it(pfl, three, aggregator, chain, stranger):
    a, b, _ = three
    pfl.startRound(sender=aggregator)
    join(pfl, a, i=0)
    join(pfl, b, i=1)
    pr = pfl.roundView(1, a).priv
    set_time(chain, pr.joinDeadline + 1)  # c never joined: the join deadline fixes a and b
    with ape.reverts(pfl.JoinClosed, joinDeadline=pr.joinDeadline):
        join(pfl, three[2], i=2)
    pfl.submitUpdate(1, commitment(1, a), 100, "", sender=a)
    pfl.submitUpdate(1, commitment(1, b), 100, "", sender=b)  # both participants in: reveals open early
    pfl.revealShares(1, key(300), "", sender=a)
    set_time(chain, pr.revealDeadline + 1)
    with ape.reverts(pfl.RevealClosed, revealDeadline=pr.revealDeadline):
        pfl.revealShares(1, key(301), "", sender=b)
    assert pfl.canPropose(1)  # b did not reveal in time: the outcome may reject it
    cancel_time = pr.revealDeadline + pfl.params().gracePeriod
    with ape.reverts(pfl.GracePeriodNotOver, cancelTime=cancel_time):
        pfl.cancelRound(1, sender=stranger)
    set_time(chain, cancel_time + 1)
    pfl.cancelRound(1, sender=stranger)


def test_a_client_registered_after_the_start_joins_the_next_round(pfl, three, clients, params, aggregator):
    pfl.startRound(sender=aggregator)
    late = clients[5]
    pfl.register(key(5), sender=late, value=params.minStake)
    with ape.reverts(pfl.NotEligible, client=late):
        join(pfl, late, i=5)
    assert pfl.roundView(1, late).join.roundKey == ZERO32
