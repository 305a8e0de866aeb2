"""cancelRound: the aggregator at any time, anyone after deadline + grace period."""
import ape
import pytest
from .fl_helpers import Phase, UpdateStatus, commitment, key, set_time, propose


@pytest.fixture
def open_round(fl, params, clients, register, start_round, submit, fund):
    fund(params.rewardPerRound)
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a, samples=7)
    return a, b


def _nothing_moved(fl, params, a, b):
    assert fl.getClient(a).stake == fl.getClient(b).stake == params.minStake
    assert fl.rewardPool() == params.rewardPerRound
    assert fl.totalAllocated() == fl.totalOwed() == 0
    assert fl.latestModelHash() == params.initialModelHash
    assert fl.balance == fl.totalStaked() + fl.rewardPool()


def test_aggregator_cancels_any_time(fl, params, open_round, aggregator):
    a, b = open_round
    tx = fl.cancelRound(1, sender=aggregator)  # well before the deadline
    assert tx.timestamp < fl.getRound(1).deadline
    assert tx.events == [fl.RoundCancelled(1, aggregator)]
    r = fl.getRound(1)
    assert r.phase == Phase.CANCELLED
    assert r.reward == 0 and r.modelHash == b"\x00" * 32
    assert fl.getUpdate(1, a).status == UpdateStatus.SUBMITTED  # the record stays
    _nothing_moved(fl, params, a, b)


def test_anyone_cancels_after_grace_period(fl, params, open_round, stranger, chain):
    a, b = open_round
    deadline = fl.getRound(1).deadline
    cancel_time = deadline + params.gracePeriod
    set_time(chain, deadline + 1)
    with ape.reverts(fl.GracePeriodNotOver, cancelTime=cancel_time):
        fl.cancelRound(1, sender=stranger)
    set_time(chain, cancel_time)
    with ape.reverts(fl.GracePeriodNotOver, cancelTime=cancel_time):
        fl.cancelRound(1, sender=stranger)
    set_time(chain, cancel_time + 1)
    tx = fl.cancelRound(1, sender=stranger)
    assert tx.timestamp == cancel_time + 1
    assert tx.events == [fl.RoundCancelled(1, stranger)]
    assert fl.getRound(1).phase == Phase.CANCELLED
    _nothing_moved(fl, params, a, b)


def test_a_client_may_cancel_after_grace_period(fl, params, open_round, chain):
    a, _ = open_round
    set_time(chain, fl.getRound(1).deadline + params.gracePeriod + 1)
    tx = fl.cancelRound(1, sender=a)
    assert tx.events == [fl.RoundCancelled(1, a)]


def test_shortest_grace_period(deploy, clients, stranger, aggregator, chain):
    """A grace period of zero is refused (tests/contracts/test_registry.py): the aggregator always
    has at least one second after the deadline in which nobody else can cancel."""
    fl = deploy(gracePeriod=1)
    fl.startRound(sender=aggregator)
    deadline = fl.getRound(1).deadline
    set_time(chain, deadline + 1)
    with ape.reverts(fl.GracePeriodNotOver, cancelTime=deadline + 1):
        fl.cancelRound(1, sender=stranger)
    set_time(chain, deadline + 2)
    fl.cancelRound(1, sender=stranger)


def test_cancel_round_not_open(fl, open_round, finalize, aggregator, stranger, start_round):
    with ape.reverts(fl.RoundNotOpen, roundId=0):
        fl.cancelRound(0, sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=2):
        fl.cancelRound(2, sender=stranger)
    fl.cancelRound(1, sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=1):  # twice
        fl.cancelRound(1, sender=aggregator)
    a, b = open_round
    start_round()
    fl.submitUpdate(2, commitment(2, a.address), 5, "", sender=a)
    finalize()
    with ape.reverts(fl.RoundNotOpen, roundId=2):  # finalized
        fl.cancelRound(2, sender=aggregator)


def test_after_cancel(fl, params, open_round, aggregator, start_round):
    a, b = open_round
    fl.cancelRound(1, sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=1):
        propose(fl, 1, b"\x01" * 32, [], [], "", sender=aggregator)
    with ape.reverts(fl.RoundNotFinalized, roundId=1):
        fl.claimReward(1, sender=a)
    assert start_round() == 2
    assert fl.getRound(2).baseModelHash == params.initialModelHash
    used = fl.getUpdate(1, a).commitment
    with ape.reverts(fl.CommitmentAlreadyUsed, commitment=used):  # commitments stay used
        fl.submitUpdate(2, used, 5, "", sender=a)


def test_dead_aggregator_cannot_lock_stakes(fl, params, open_round, stranger, chain):
    """The aggregator disappears: after the grace period anyone cancels and stakes unlock."""
    a, _ = open_round
    t = fl.requestExit(sender=a).timestamp
    deadline = fl.getRound(1).deadline
    unlock = t + params.unbondingPeriod
    set_time(chain, max(unlock, deadline + params.gracePeriod + 1))
    with ape.reverts(fl.UpdatePending, roundId=1):
        fl.withdrawStake(sender=a)
    fl.cancelRound(1, sender=stranger)
    tx = fl.withdrawStake(sender=a)
    assert tx.events == [fl.StakeWithdrawn(a, params.minStake)]
