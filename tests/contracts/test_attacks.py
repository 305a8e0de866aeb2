"""The security review's findings (issue 10), each run as the attack and shown failing.

Test names carry the finding's id. Expected amounts are written out by hand
(0.1 ETH stakes, slashBps 5000, a 1 ETH reward), not computed from the contract's
formulas, so a wrong rule cannot agree with itself. Off-chain findings (M-2's
client behaviour, M-3) are in tests/e2e/test_attacks.py.
"""
import ape
import pytest

from ..conftest import TREASURY
from .fl_helpers import (
    propose,
    AGGREGATOR_ROLE,
    DEFAULT_ADMIN_ROLE,
    REGISTRAR_ROLE,
    ZERO32,
    Phase,
    UpdateStatus,
    accounted,
    commitment,
    event_args,
    key,
    model_hash,
    set_time,
)

ETH = 10**18
MODEL = model_hash(1)
STAKE = ETH // 10  # the default minimum stake
HALF_STAKE = ETH // 20  # what slashBps 5000 takes from it


def _past_deadline(fl, chain, round_id=None):
    rid = fl.currentRound() if round_id is None else round_id
    set_time(chain, fl.getRound(rid).deadline + 1)


# ------------------------------------------------------------------------- H-1


def test_h1_aggregator_gains_nothing_from_slashing_honest_clients(fl, clients, register, start_round, submit,
                                                                   aggregator, funder, chain):
    """h1, h2 honest; `mine` is the aggregator's own client. Rejecting h1 and h2 used to route both
    slashes into this round's reward, owed entirely to `mine`."""
    h1, h2, mine = clients[:3]
    fl.fundRewards(sender=funder, value=ETH)  # exactly one round's reward
    register(h1, h2, mine)
    start_round()
    for c in (h1, h2, mine):
        submit(c, samples=100)
    propose(fl, 1, MODEL, [h1, h2], [], "", sender=aggregator)

    # The slashes went to the treasury, not to the pool or the round.
    assert fl.treasuryOwed() == 100_000_000_000_000_000  # 2 x 0.05 ETH
    assert fl.rewardPool() == 0
    assert fl.getRound(1).reward == ETH  # only what was funded
    assert fl.claimable(1, mine) == ETH  # the whole funded reward, not a wei more
    fl.claimReward(1, sender=mine)
    assert fl.owed(mine) == 1_000_000_000_000_000_000
    assert fl.balance == accounted(fl)


def test_h1_unfunded_pool_pays_nothing_for_slashes(fl, clients, register, start_round, submit, aggregator):
    h1, mine = clients[:2]
    register(h1, mine)
    start_round()
    submit(h1, samples=100)
    submit(mine, samples=100)
    propose(fl, 1, MODEL, [h1], [], "", sender=aggregator)
    assert fl.getRound(1).reward == 0
    assert fl.claimable(1, mine) == 0
    assert fl.treasuryOwed() == 50_000_000_000_000_000
    # The treasury is fixed at deployment: no role can redirect it.
    assert fl.params().treasury == TREASURY


# ------------------------------------------------------------------------- M-1


def test_m1_bad_update_is_slashed_when_the_round_misses_the_quorum(deploy, clients, aggregator, chain):
    """Quorum 2, one honest and one NaN update: rejecting the NaN one used to revert
    QuorumNotReached, the round could only be cancelled, and the attacker left with its stake."""
    fl = deploy(quorum=2)
    honest, nan = clients[:2]
    for c in (honest, nan):
        fl.register(key(0), sender=c, value=STAKE)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, commitment(1, honest), 100, "", sender=honest)
    fl.submitUpdate(1, commitment(1, nan), 100, "", sender=nan)
    tx = propose(fl, 1, ZERO32, [nan], [], "", sender=aggregator)

    assert event_args(tx, "UpdateRejected") == [dict(roundId=1, client=nan.address, slashed=HALF_STAKE, reason=6,
                                                      stakeBefore=2 * HALF_STAKE)]
    assert event_args(tx, "RoundFailed") == [dict(roundId=1, accepted=1, rejected=1, excluded=0)]
    r = fl.getRound(1)
    assert r.phase == Phase.FAILED and r.reward == 0 and r.modelHash == ZERO32
    assert fl.latestModelHash() == fl.params().initialModelHash  # the latest model stays
    assert fl.getClient(nan).stake == 50_000_000_000_000_000
    assert fl.getClient(honest).stake == STAKE
    # The attacker leaves with half its stake, not all of it.
    t = fl.requestExit(sender=nan).timestamp
    set_time(chain, t + fl.params().unbondingPeriod)
    tx = fl.withdrawStake(sender=nan)
    assert event_args(tx, "StakeWithdrawn") == [dict(client=nan.address, amount=50_000_000_000_000_000)]


def test_m1_quorum_one_every_update_invalid_or_excluded(fl, clients, register, start_round, submit, aggregator,
                                                        chain):
    a, b, c = clients[:3]
    register(a, b, c)
    start_round()
    for x in (a, b, c):
        submit(x)
    with ape.reverts(fl.ModelBelowQuorum, accepted=0, quorum=1):  # no model without the quorum
        propose(fl, 1, MODEL, [a, b], [c], "", sender=aggregator)
    propose(fl, 1, ZERO32, [a, b], [c], "", sender=aggregator)
    assert fl.getRound(1).phase == Phase.FAILED
    assert [fl.getClient(x).stake for x in (a, b, c)] == [HALF_STAKE, HALF_STAKE, STAKE]
    assert fl.treasuryOwed() == 100_000_000_000_000_000
    assert fl.getUpdate(1, c).status == UpdateStatus.EXCLUDED


# ------------------------------------------------------------------------- M-2


def test_m2_copied_commitment_blocks_nobody_and_slashes_the_copier(fl, clients, register, start_round,
                                                                   aggregator):
    """A copier front-runs the victim's pending commitment. It used to make the victim revert
    CommitmentAlreadyUsed; now uniqueness is per client, and the copy (sealed to the victim's
    identity) is rejected as the copier's."""
    victim, copier = clients[:2]
    register(victim, copier)
    start_round()
    pending = commitment(1, victim, "sealed")
    fl.submitUpdate(1, pending, 100, "store://victim", sender=copier)  # front-run
    fl.submitUpdate(1, pending, 100, "store://victim", sender=victim)  # still goes through
    # The aggregator cannot open the copy as the copier's (tests/e2e/test_attacks.py runs this off chain).
    propose(fl, 1, MODEL, [copier], [], "", sender=aggregator)
    assert fl.getUpdate(1, victim).status == UpdateStatus.SUBMITTED
    assert fl.getClient(copier).stake == HALF_STAKE
    assert fl.commitmentUsed(victim, pending) and fl.commitmentUsed(copier, pending)


def test_m2_a_client_still_cannot_replay_its_own_commitment(fl, clients, register, start_round, submit, finalize):
    a = clients[0]
    register(a)
    start_round()
    c = commitment(1, a)
    fl.submitUpdate(1, c, 100, "", sender=a)
    finalize()
    start_round()
    with ape.reverts(fl.CommitmentAlreadyUsed, commitment=c):
        fl.submitUpdate(2, c, 100, "", sender=a)


# ------------------------------------------------------------------------- M-4


@pytest.fixture
def permissioned(deploy):
    return deploy(permissioned=True)


def test_m4_permissioned_job_refuses_inflated_sample_counts(permissioned, admin, clients, aggregator):
    """A client claiming 10,000 samples against an honest 100 used to take 99% of the weight."""
    fl = permissioned
    honest, inflator = clients[:2]
    for c in (honest, inflator):
        tx = fl.admit(c, 100, sender=admin)  # the admin is the registrar at deployment
        assert tx.events == [fl.ClientAdmitted(c, 100)]
        fl.register(key(0), sender=c, value=STAKE)
    fl.startRound(sender=aggregator)
    with ape.reverts(fl.AboveAllowance, samples=10_000, allowance=100):
        fl.submitUpdate(1, commitment(1, inflator), 10_000, "", sender=inflator)
    with ape.reverts(fl.AboveAllowance, samples=101, allowance=100):
        fl.submitUpdate(1, commitment(1, inflator), 101, "", sender=inflator)
    fl.submitUpdate(1, commitment(1, inflator), 100, "", sender=inflator)  # at most its allowance
    fl.submitUpdate(1, commitment(1, honest), 100, "", sender=honest)
    assert fl.getRound(1).submittedWeight == 200


def test_m4_only_admitted_clients_register(permissioned, admin, clients, stranger):
    fl = permissioned
    with ape.reverts(fl.NotAdmitted, client=stranger):
        fl.register(key(0), sender=stranger, value=STAKE)
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=stranger, neededRole=REGISTRAR_ROLE):
        fl.admit(stranger, 100, sender=stranger)  # nobody admits itself
    with ape.reverts(fl.TooManySamples, samples=10_001, maximum=10_000):
        fl.admit(stranger, 10_001, sender=admin)  # an allowance is within the job's cap
    fl.admit(stranger, 100, sender=admin)
    fl.register(key(0), sender=stranger, value=STAKE)
    fl.admit(stranger, 0, sender=admin)  # revoked: it can no longer submit anything
    assert fl.allowance(stranger) == 0
    assert fl.hasRole(REGISTRAR_ROLE, admin)


def test_m4_open_job_keeps_the_cap_and_has_no_registrar(fl, admin, clients, register, start_round):
    a = clients[0]
    register(a)
    start_round()
    with ape.reverts(fl.TooManySamples, samples=10_001, maximum=10_000):
        fl.submitUpdate(1, commitment(1, a), 10_001, "", sender=a)
    assert not fl.hasRole(REGISTRAR_ROLE, admin)
    with ape.reverts(fl.AccessControlUnauthorizedAccount):
        fl.admit(a, 100, sender=admin)


# ------------------------------------------------------------------------- L-1


def test_l1_zero_grace_period_is_refused(project, deploy):
    """Without a grace period anyone could cancel the instant the deadline passes, racing the verdict."""
    with ape.reverts(project.FederatedLearning.InvalidParams, reason="gracePeriod is zero"):
        deploy(gracePeriod=0)


def test_l1_a_named_client_cannot_cancel_before_the_verdict(fl, clients, register, start_round, submit,
                                                            aggregator, chain):
    """The client named in a pending rejection tries to cancel first: it can only once the grace
    period is over with no outcome recorded; within it the aggregator's verdict lands."""
    good, bad = clients[:2]
    register(good, bad)
    start_round()
    submit(good)
    submit(bad)
    deadline = fl.getRound(1).deadline
    grace = fl.params().gracePeriod
    set_time(chain, deadline + grace)  # the last second of the grace period
    with ape.reverts(fl.GracePeriodNotOver, cancelTime=deadline + grace):
        fl.cancelRound(1, sender=bad)
    propose(fl, 1, MODEL, [bad], [], "", sender=aggregator)
    with ape.reverts(fl.RoundNotOpen, roundId=1):  # an outcome is recorded: nobody cancels it
        fl.cancelRound(1, sender=bad)
    assert fl.getClient(bad).stake == HALF_STAKE


# ------------------------------------------------------------------------- L-2


def test_l2_sybils_cannot_fill_a_permissioned_round(deploy, admin, clients, accounts, aggregator):
    """With maxUpdatesPerRound = 2, two Sybils used to submit first and honest clients got RoundFull.
    In a permissioned job they cannot even register. (Open jobs: see the README next to --cap.)"""
    fl = deploy(permissioned=True, maxUpdatesPerRound=2)
    h1, h2 = clients[:2]
    sybils = accounts[15:17]
    for h in (h1, h2):
        fl.admit(h, 100, sender=admin)
        fl.register(key(0), sender=h, value=STAKE)
    fl.startRound(sender=aggregator)
    for s in sybils:
        with ape.reverts(fl.NotAdmitted, client=s):
            fl.register(key(0), sender=s, value=STAKE)
    fl.submitUpdate(1, commitment(1, h1), 100, "", sender=h1)
    fl.submitUpdate(1, commitment(1, h2), 100, "", sender=h2)
    assert fl.getRound(1).submissions == 2


# ------------------------------------------------------------------------- L-3


def test_l3_a_round_holds_at_most_max_updates(fl, project, deploy):
    """Verdict lists name distinct submitted updates, so a round's cap bounds them; the cap itself is
    bounded by MAX_UPDATES_PER_ROUND (bench/gas.py measures that all of them rejected fit in a block)."""
    assert fl.MAX_UPDATES_PER_ROUND() == 1000
    with ape.reverts(project.FederatedLearning.InvalidParams, reason="maxUpdatesPerRound above MAX_UPDATES_PER_ROUND"):
        deploy(maxUpdatesPerRound=1001)


def test_l3_verdict_gas_is_linear_and_bounded(fl, clients, register, start_round, submit, aggregator):
    """Gas per rejection, from two list lengths; 1000 of them stay far below a 30M block."""
    gas = {}
    for n in (2, 8):
        register(*clients[:n]) if n == 2 else register(*clients[2:n])
        start_round()
        for c in clients[:n]:
            submit(c, salt=n)
        tx = propose(fl, fl.currentRound(), ZERO32, clients[:n], [], "", sender=aggregator)
        gas[n] = tx.gas_used
        for c in clients[:n]:  # back to the minimum stake for the next list
            fl.topUp(sender=c, value=STAKE - fl.getClient(c).stake)
    per_rejection = (gas[8] - gas[2]) / 6
    assert 5_000 < per_rejection < 30_000, per_rejection
    assert gas[2] + 998 * per_rejection < 30_000_000


# ------------------------------------------------------------------------- L-4


def test_l4_client_slashed_below_minimum_does_not_block_early_finalize(fl, clients, register, start_round,
                                                                        submit, aggregator, chain):
    a, b, slashed = clients[:3]
    register(a, b, slashed)
    start_round()
    for c in (a, b, slashed):
        submit(c)
    propose(fl, 1, MODEL, [slashed], [], "", sender=aggregator)
    assert fl.getClient(slashed).stake < fl.params().minStake  # active, but cannot submit
    assert fl.eligibleClients() == 2
    start_round()
    submit(a, round_id=2)
    assert not fl.canPropose(2)
    submit(b, round_id=2)
    assert fl.canPropose(2)  # used to wait for the slashed client forever (until the deadline)
    propose(fl, 2, model_hash(2), [], [], "", sender=aggregator)


def test_l4_fresh_registration_does_not_block_early_finalize(fl, clients, register, start_round, submit,
                                                              aggregator):
    a, b, late = clients[:3]
    register(a, b)
    start_round()
    submit(a)
    submit(b)
    assert fl.canPropose(1)
    register(late)  # front-runs the early finalize
    assert fl.canPropose(1)
    submit(late)  # it may still take part, but it never counted
    propose(fl, 1, MODEL, [], [], "", sender=aggregator)
    assert fl.getClient(late).countedFrom == 2
    start_round()  # from the next round on it counts
    assert fl.getRound(2).eligible == 3


def test_l4_top_up_counts_from_the_next_round(fl, params, clients, register, start_round, submit, aggregator):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    submit(b)
    propose(fl, 1, MODEL, [b], [], "", sender=aggregator)
    start_round()
    fl.topUp(sender=b, value=HALF_STAKE)  # back at the minimum, mid-round
    assert fl.eligibleClients() == 2 and fl.getRound(2).eligible == 1
    submit(a, round_id=2)
    assert fl.canPropose(2)
    submit(b, round_id=2)
    r = fl.getRound(2)
    assert (r.submissions, r.eligibleSubmitted) == (2, 1)


def test_l4_an_eligible_client_still_counts(fl, clients, register, start_round, submit, aggregator):
    a, b = clients[:2]
    register(a, b)
    start_round()
    submit(a)
    assert not fl.canPropose(1)
    with ape.reverts(fl.DeadlineNotReached):
        propose(fl, 1, MODEL, [], [], "", sender=aggregator)


# ------------------------------------------------------------------------- I-1


def test_i1_forced_ether_breaks_no_accounting(fl, project, admin, clients, register, start_round, submit,
                                               aggregator, chain):
    register(clients[0])
    forcer = admin.deploy(project.ForceSend)
    with ape.reverts():
        admin.transfer(fl.address, 1)  # plain ether is refused...
    forcer.force(fl.address, sender=admin, value=1)  # ...but selfdestruct cannot be
    assert fl.balance == accounted(fl) + 1
    start_round()
    submit(clients[0])
    propose(fl, 1, ZERO32, [clients[0]], [], "", sender=aggregator)
    assert fl.balance >= accounted(fl)
    t = fl.requestExit(sender=clients[0]).timestamp
    set_time(chain, t + fl.params().unbondingPeriod)
    fl.withdrawStake(sender=clients[0])  # everyone is still paid
    fl.withdrawTreasury(sender=admin)
    assert fl.balance == 1 and accounted(fl) == 0


# ------------------------------------------------------------------------- admin


def test_admin_cannot_change_roles_while_a_round_is_open(fl, admin, aggregator, start_round):
    """The admin used to be able to grant itself the aggregator role mid-round."""
    start_round()
    with ape.reverts(fl.RoundStillOpen, roundId=1):
        fl.grantRole(AGGREGATOR_ROLE, admin, sender=admin)
    with ape.reverts(fl.RoundStillOpen, roundId=1):
        fl.revokeRole(AGGREGATOR_ROLE, aggregator, sender=admin)
    fl.cancelRound(1, sender=aggregator)
    fl.grantRole(AGGREGATOR_ROLE, admin, sender=admin)  # between rounds: allowed
    assert fl.hasRole(AGGREGATOR_ROLE, admin)


def test_admin_transfer_is_two_step_with_a_delay(fl, admin, stranger, chain):
    with ape.reverts(fl.AccessControlEnforcedDefaultAdminRules):
        fl.grantRole(DEFAULT_ADMIN_ROLE, stranger, sender=admin)
    tx = fl.beginDefaultAdminTransfer(stranger, sender=admin)
    schedule = event_args(tx, "DefaultAdminTransferScheduled")[0]["acceptSchedule"]
    assert schedule == tx.timestamp + 3600  # the deployment's delay
    with ape.reverts(fl.AccessControlEnforcedDefaultAdminDelay, schedule=schedule):
        fl.acceptDefaultAdminTransfer(sender=stranger)
    set_time(chain, schedule + 1)
    fl.acceptDefaultAdminTransfer(sender=stranger)
    assert fl.defaultAdmin() == stranger and not fl.hasRole(DEFAULT_ADMIN_ROLE, admin)
