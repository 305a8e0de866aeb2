"""The verifier committee: proposeRound, attest, dispute, expireProposal, bonds (issue 11).

Round lifecycle: Open --proposeRound--> Proposed --m attestations--> Finalized (or Failed below
the quorum, verdicts applied) | --k-m+1 disputes--> Failed (nothing applied, bond forfeited)
| --attestation period over--> Cancelled (nothing applied). k = 0: a proposal applies at once.
"""
import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from ..conftest import ATTESTATION, BOND, TREASURY, committee
from .fl_helpers import (
    AGGREGATOR_ROLE,
    ZERO32,
    Phase,
    UpdateStatus,
    accounted,
    ascending,
    event_args,
    model_hash,
    outcome,
    propose,
    set_time,
)

ETH = 10**18
STAKE = ETH // 10
MODEL = model_hash(1)


@pytest.fixture(scope="session")
def verifiers(accounts):
    return [accounts[13], accounts[14], accounts[15]]


@pytest.fixture
def job(deploy, verifiers, aggregator, clients, register, submit, chain):
    """k = 3 verifiers, m = 2; the aggregator bonded; round 1 with 3 submissions (c2 is the bad one)."""
    fl = deploy(verifiers=verifiers, threshold=2)
    fl.postBond(sender=aggregator, value=BOND)
    fl.fundRewards(sender=aggregator, value=ETH)
    a, b, c = clients[:3]
    for x in (a, b, c):
        fl.register(keccak(text=f"k{x.address}"), sender=x, value=STAKE)
    fl.startRound(sender=aggregator)
    for i, x in enumerate((a, b, c)):
        fl.submitUpdate(1, keccak(text=f"u{i}"), 100, "", sender=x)
    return fl


def _digest(fl, chain_id, round_id, o):
    """The digest written out independently of the contract: abi.encode of the same fields."""
    return keccak(encode(
        ["uint256", "address", "uint256", "bytes32", "address[]", "uint8[]", "address[]", "bytes32"],
        [chain_id, fl.address, round_id, o["modelHash"], o["rejected"], o["reasons"], o["excluded"],
         o["evidenceHash"]]))


# ----------------------------------------------------------------- deployment


@pytest.mark.parametrize("bad, reason", [
    (dict(threshold=0), "threshold must be in 1..k (0 when k = 0)"),
    (dict(threshold=4), "threshold must be in 1..k (0 when k = 0)"),
    (dict(keys=[b"\x01" * 32]), "one key per verifier"),
    (dict(keys=[b"\x01" * 32, ZERO32, b"\x02" * 32]), "verifier key is zero"),
])
def test_committee_parameters_are_checked(project, admin, aggregator, verifiers, make_params, bad, reason):
    c = committee(verifiers, threshold=2)
    c.update(bad)
    with ape.reverts(project.FederatedLearning.InvalidParams, reason=reason):
        admin.deploy(project.FederatedLearning, make_params(), c, admin, aggregator, 3600)


def test_committee_members_are_distinct_and_not_the_aggregator(project, admin, aggregator, verifiers, make_params):
    FL = project.FederatedLearning
    with ape.reverts(FL.InvalidParams, reason="verifier listed twice"):
        admin.deploy(FL, make_params(), committee([verifiers[0], verifiers[0]], 1), admin, aggregator, 3600)
    with ape.reverts(FL.InvalidParams, reason="the aggregator cannot be a verifier"):
        admin.deploy(FL, make_params(), committee([verifiers[0], aggregator], 1), admin, aggregator, 3600)
    with ape.reverts(FL.InvalidParams, reason="attestationPeriod is zero"):
        admin.deploy(FL, make_params(attestationPeriod=0), committee(verifiers, 2), admin, aggregator, 3600)
    with ape.reverts(FL.InvalidParams, reason="threshold must be in 1..k (0 when k = 0)"):
        admin.deploy(FL, make_params(), committee([], 1), admin, aggregator, 3600)


def test_committee_view_and_mode(job, fl, verifiers):
    c = job.committee()
    assert list(c.verifiers) == [v.address for v in verifiers]
    assert list(c.keys) == [keccak(text=f"verifier-key-{v.address}") for v in verifiers]
    assert c.threshold == 2
    assert not job.trustedAggregator()
    assert fl.trustedAggregator()  # the default fixture has no committee
    assert fl.committee().threshold == 0


def test_the_aggregator_role_cannot_go_to_a_verifier(deploy, verifiers, admin):
    fl = deploy(verifiers=verifiers, threshold=2)
    with ape.reverts(fl.InvalidParams, reason="the aggregator cannot be a verifier"):
        fl.grantRole(AGGREGATOR_ROLE, verifiers[1], sender=admin)


# ---------------------------------------------------------------- proposing


def test_propose_needs_the_bond(deploy, verifiers, aggregator, clients, chain):
    fl = deploy(verifiers=verifiers, threshold=2)
    fl.register(keccak(text="k"), sender=clients[0], value=STAKE)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, keccak(text="u"), 100, "", sender=clients[0])
    with ape.reverts(fl.BondTooLow, bonded=0, required=BOND):
        propose(fl, 1, MODEL, sender=aggregator)
    with ape.reverts(fl.AccessControlUnauthorizedAccount):
        fl.postBond(sender=clients[0], value=BOND)
    tx = fl.postBond(sender=aggregator, value=BOND)
    assert tx.events == [fl.BondPosted(aggregator, BOND, BOND)]
    propose(fl, 1, MODEL, sender=aggregator)
    assert fl.balance == accounted(fl)


def test_a_proposal_applies_nothing_by_itself(job, aggregator, clients, chain):
    a, b, c = clients[:3]
    o = outcome(MODEL, rejected=[c])
    tx = job.proposeRound(1, o, sender=aggregator)
    digest = _digest(job, chain.chain_id, 1, o)
    assert job.outcomeDigest(1, o) == digest
    assert event_args(tx, "RoundProposed") == [dict(roundId=1, digest=digest, modelHash=MODEL, rejected=[c.address],
                                                     reasons=[6], excluded=[], evidenceHash=ZERO32,
                                                     evidenceLocator="", modelLocator="")]
    assert job.getRound(1).phase == Phase.PROPOSED
    assert job.getClient(c).stake == STAKE  # no slash yet
    assert job.latestModelHash() == job.params().initialModelHash
    assert job.treasuryOwed() == 0
    p = job.getProposal(1)
    assert (p.digest, p.modelHash, p.proposer, p.attestations, p.disputes) == (digest, MODEL, aggregator, 0, 0)
    # Proposed is not open: no second proposal, no cancel, no new round, no role change, no withdrawal.
    with ape.reverts(job.RoundNotOpen, roundId=1):
        job.proposeRound(1, o, sender=aggregator)
    with ape.reverts(job.RoundNotOpen, roundId=1):
        job.cancelRound(1, sender=aggregator)
    with ape.reverts(job.RoundStillOpen, roundId=1):
        job.startRound(sender=aggregator)


def test_nobody_can_cancel_a_pending_verdict(job, aggregator, clients, chain):
    """L-1 for good: the named client cannot cancel once an outcome is proposed, even after the grace period."""
    c = clients[2]
    job.proposeRound(1, outcome(MODEL, rejected=[c]), sender=aggregator)
    set_time(chain, job.getRound(1).deadline + job.params().gracePeriod + 1)
    with ape.reverts(job.RoundNotOpen, roundId=1):
        job.cancelRound(1, sender=c)
    job.requestExit(sender=c)
    set_time(chain, chain.blocks.head.timestamp + job.params().unbondingPeriod + 1)
    with ape.reverts(job.UpdatePending, roundId=1):
        job.withdrawStake(sender=c)


# ---------------------------------------------------------------- attesting


def test_m_attestations_apply_the_outcome(job, aggregator, clients, verifiers, chain):
    a, b, c = clients[:3]
    o = outcome(MODEL, rejected=[c])
    job.proposeRound(1, o, sender=aggregator)
    tx = job.attest(1, o, sender=verifiers[0])
    assert tx.events == [job.RoundAttested(1, verifiers[0], 1)]
    assert job.getRound(1).phase == Phase.PROPOSED  # 1 of m = 2: nothing yet
    assert job.getClient(c).stake == STAKE
    tx = job.attest(1, dict(o, evidenceLocator="", modelLocator="other"), sender=verifiers[2])  # locators: hints only
    assert event_args(tx, "UpdateRejected") == [dict(roundId=1, client=c.address, slashed=STAKE // 2, reason=6,
                                                      stakeBefore=STAKE)]
    assert event_args(tx, "RoundFinalized") == [dict(roundId=1, modelHash=MODEL, accepted=2, acceptedWeight=200,
                                                     reward=ETH)]
    assert job.getRound(1).phase == Phase.FINALIZED
    assert job.latestModelHash() == MODEL
    assert job.treasuryOwed() == 50_000_000_000_000_000
    assert job.claimable(1, a) == 500_000_000_000_000_000
    # the third verifier is too late to change anything
    with ape.reverts(job.NotProposed, roundId=1):
        job.attest(1, o, sender=verifiers[1])
    assert job.balance == accounted(job)


def test_attest_checks(job, aggregator, clients, verifiers, stranger, chain):
    o = outcome(MODEL)
    job.proposeRound(1, o, sender=aggregator)
    digest = job.getProposal(1).digest
    with ape.reverts(job.NotVerifier, account=stranger):
        job.attest(1, o, sender=stranger)
    with ape.reverts(job.NotVerifier, account=aggregator):
        job.attest(1, o, sender=aggregator)
    # another outcome (here: one more rejection) has another digest: attesting it reverts
    other = outcome(MODEL, rejected=[clients[0]])
    with ape.reverts(job.DigestMismatch, attested=_digest(job, chain.chain_id, 1, other), proposed=digest):
        job.attest(1, other, sender=verifiers[0])
    tx = job.attest(1, o, sender=verifiers[0])
    assert tx.events == [job.RoundAttested(1, verifiers[0], 1)]
    with ape.reverts(job.AlreadyVoted, roundId=1, verifier=verifiers[0]):
        job.attest(1, o, sender=verifiers[0])
    with ape.reverts(job.AlreadyVoted, roundId=1, verifier=verifiers[0]):
        job.dispute(1, b"\x01" * 32, sender=verifiers[0])
    with ape.reverts(job.NotProposed, roundId=2):
        job.attest(2, o, sender=verifiers[1])
    assert job.voteOf(1, verifiers[0]) == 1


def test_one_dispute_of_three_does_not_block_an_honest_round(job, aggregator, clients, verifiers):
    o = outcome(MODEL)
    job.proposeRound(1, o, sender=aggregator)
    tx = job.dispute(1, b"\x66" * 32, sender=verifiers[1])  # a malicious verifier
    assert tx.events == [job.RoundDisputed(1, verifiers[1], b"\x66" * 32, 1)]
    job.attest(1, o, sender=verifiers[0])
    job.attest(1, o, sender=verifiers[2])
    assert job.getRound(1).phase == Phase.FINALIZED
    assert job.bondOf(aggregator) == BOND


def test_k_minus_m_plus_one_disputes_fail_the_round_and_forfeit_the_bond(job, aggregator, clients, verifiers):
    """A rogue aggregator slashes an honest client: two honest verifiers of three dispute."""
    a = clients[0]
    o = outcome(MODEL, rejected=[a])
    job.proposeRound(1, o, sender=aggregator)
    digest = job.getProposal(1).digest
    with ape.reverts(job.DisputeMatchesProposal, digest=digest):
        job.dispute(1, digest, sender=verifiers[0])
    job.attest(1, o, sender=verifiers[1])  # the colluding verifier
    job.dispute(1, b"\x77" * 32, sender=verifiers[0])
    tx = job.dispute(1, ZERO32, sender=verifiers[2])
    assert event_args(tx, "ProposalRejected") == [dict(roundId=1, aggregator=aggregator.address,
                                                       bondForfeited=BOND)]
    assert job.getRound(1).phase == Phase.FAILED
    assert job.getClient(a).stake == STAKE  # the honest client keeps its stake
    assert job.getUpdate(1, a).status == UpdateStatus.SUBMITTED
    assert job.latestModelHash() == job.params().initialModelHash
    assert job.treasuryOwed() == BOND  # the bond to the treasury, not to anyone's reward
    assert job.rewardPool() == ETH and job.bondOf(aggregator) == 0
    assert job.balance == accounted(job)
    # without a new bond the aggregator cannot propose again
    job.startRound(sender=aggregator)
    with ape.reverts(job.BondTooLow, bonded=0, required=BOND):
        propose(job, 2, MODEL, sender=aggregator)


def test_an_expired_proposal_cancels_the_round(job, aggregator, clients, verifiers, stranger, chain):
    o = outcome(MODEL, rejected=[clients[0]])
    job.proposeRound(1, o, sender=aggregator)
    p = job.getProposal(1)
    expires = p.proposedAt + ATTESTATION
    set_time(chain, expires - 1)
    with ape.reverts(job.ProposalNotExpired, expiresAt=expires):
        job.expireProposal(1, sender=stranger)
    set_time(chain, expires)
    job.attest(1, o, sender=verifiers[0])  # the last second still counts
    set_time(chain, expires + 1)
    with ape.reverts(job.ProposalExpired, expiredAt=expires):
        job.attest(1, o, sender=verifiers[1])
    tx = job.expireProposal(1, sender=stranger)
    assert tx.events == [job.ProposalExpiredCancelled(1), job.RoundCancelled(1, stranger)]
    assert job.getRound(1).phase == Phase.CANCELLED
    assert job.getClient(clients[0]).stake == STAKE and job.bondOf(aggregator) == BOND
    with ape.reverts(job.NotProposed, roundId=1):
        job.expireProposal(1, sender=stranger)


def test_bond_withdrawal(job, aggregator, verifiers):
    o = outcome(MODEL)
    job.proposeRound(1, o, sender=aggregator)
    with ape.reverts(job.ProposalPending, roundId=1):
        job.withdrawBond(BOND, sender=aggregator)
    job.attest(1, o, sender=verifiers[0])
    job.attest(1, o, sender=verifiers[1])
    with ape.reverts(job.NothingOwed, client=aggregator):
        job.withdrawBond(BOND + 1, sender=aggregator)
    before = aggregator.balance
    tx = job.withdrawBond(BOND, sender=aggregator)
    assert tx.events == [job.BondWithdrawn(aggregator, BOND)]
    assert aggregator.balance == before + BOND - tx.total_fees_paid
    assert job.totalBonded() == 0 and job.balance == accounted(job)


def test_below_quorum_attested_outcome_fails_with_its_slashes(deploy, verifiers, aggregator, clients, chain):
    fl = deploy(verifiers=verifiers, threshold=2, quorum=2)
    fl.postBond(sender=aggregator, value=BOND)
    a, b = clients[:2]
    for x in (a, b):
        fl.register(keccak(text="k"), sender=x, value=STAKE)
    fl.startRound(sender=aggregator)
    fl.submitUpdate(1, keccak(text="a"), 10, "", sender=a)
    fl.submitUpdate(1, keccak(text="b"), 10, "", sender=b)
    o = outcome(None, rejected=[b])
    fl.proposeRound(1, o, sender=aggregator)
    fl.attest(1, o, sender=verifiers[0])
    tx = fl.attest(1, o, sender=verifiers[1])
    assert event_args(tx, "RoundFailed") == [dict(roundId=1, accepted=1, rejected=1, excluded=0)]
    assert fl.getClient(b).stake == STAKE // 2 and fl.bondOf(aggregator) == BOND


def test_attest_gas_does_not_grow_with_the_verdicts(deploy, verifiers, aggregator, clients, chain):
    """Only the attestation that completes m pays for applying the verdicts (the others for their calldata)."""
    gas = {}
    for n in (0, 6):
        fl = deploy(verifiers=verifiers, threshold=2)
        fl.postBond(sender=aggregator, value=BOND)
        for i, x in enumerate(clients[:8]):
            fl.register(keccak(text=f"k{i}"), sender=x, value=STAKE)
        fl.startRound(sender=aggregator)
        for i, x in enumerate(clients[:8]):
            fl.submitUpdate(1, keccak(text=f"u{i}"), 10, "", sender=x)
        o = outcome(MODEL, rejected=clients[:n])
        fl.proposeRound(1, o, sender=aggregator)
        gas[n] = (fl.attest(1, o, sender=verifiers[0]).gas_used, fl.attest(1, o, sender=verifiers[1]).gas_used)
    # a non-final attestation pays ~ calldata and hashing for each verdict; the m-th also applies it
    assert gas[6][0] - gas[0][0] < 6 * 3_000
    assert gas[6][1] - gas[0][1] > 6 * 10_000


def test_trusted_mode_applies_at_once_and_needs_no_bond(fl, aggregator, clients, register, submit, chain):
    a, b = clients[:2]
    register(a, b)
    fl.startRound(sender=aggregator)
    submit(a)
    submit(b)
    tx = propose(fl, 1, MODEL, [b], sender=aggregator)
    assert [e.event_name for e in tx.events] == ["RoundProposed", "UpdateRejected", "RoundFinalized"]
    assert fl.getRound(1).phase == Phase.FINALIZED
    assert fl.getClient(b).stake == STAKE // 2
