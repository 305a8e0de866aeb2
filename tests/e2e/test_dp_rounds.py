"""Central differential privacy end to end (issue 14, robust mode): real training, contract and committee.

The job's promise (C, z, delta, budget) is on chain; the aggregator clips, averages and adds noise from
a seed committed at deployment and sealed to the committee, which re-computes every round bit for bit;
the run stops at the budget with a message, and the contract refuses the round after it.
"""
from __future__ import annotations

import csv

import dp_accounting
import pytest
from dp_accounting import rdp

from ml.chain import ChainError
from ml.evidence import Evidence
from ml.parties.federation import FederationError
from ml.rounds import DPSecretError, dp_seal_context
from ml.sealing import SealError, generate_keypair, load_private_key, open_sealed
from ml.verify import verify_round
from tests.e2e.helpers import check as _check
from tests.e2e.helpers import federate
from tests.e2e.helpers import open_job as _job

CLIP, NOISE, DELTA = 2.0, 1.2, 1e-3


def independent_epsilon(z: float, rounds: int, delta: float) -> float:
    """dp-accounting's own API, used directly (not through ml.dp)."""
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.GaussianDpEvent(z), rounds)
    return acc.get_epsilon(delta)


def run(tmp_path, **kw):
    return federate(tmp_path, dict(dp_clip=CLIP, dp_noise=NOISE, dp_delta=DELTA), **kw)


def test_dp_rounds_are_attested_accounted_and_stop_at_the_budget(tmp_path):
    eps = [independent_epsilon(NOISE, r, DELTA) for r in (1, 2, 3)]
    budget = (eps[1] + eps[2]) / 2  # room for two rounds, not three
    res = run(tmp_path, rounds=4, dp_budget=budget)
    fl, store, spec = _job(res)
    p = fl.params()
    assert (p.dpClip, p.dpNoise, p.dpDelta, p.dpMaxRounds) == (2_000_000, 1_200_000, 10**15, 2)

    # two rounds, each re-computed and attested by both verifiers; then the budget's message, no crash
    assert [r.status for r in res.rows] == ["finalized", "finalized"]
    assert [r.attestations for r in res.rows] == [2, 2]
    assert res.report["stopped"].startswith("privacy budget reached: 2 round(s) spent epsilon")
    assert [r.epsilon for r in res.rows] == pytest.approx(eps[:2], rel=1e-9)
    assert res.report["privacy"]["epsilon"] == pytest.approx(eps[1], rel=1e-9)
    assert res.report["privacy"]["max_rounds"] == 2
    with open(res.out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epsilon"]) for r in rows] == pytest.approx(eps[:2], rel=1e-5)
    assert (res.out / "accuracy_epsilon.png").stat().st_size > 0
    # the noise is z*C/n on the mean of the 3 accepted updates
    assert res.rows[0].noise_std == pytest.approx(NOISE * CLIP / 3)

    # the contract itself refuses a third round, whoever asks
    from ape import accounts

    with pytest.raises(ChainError) as exc:
        fl.start_round(accounts.test_accounts[1])
    assert exc.value.error_name == "PrivacyBudgetSpent"

    # the public checks the promise; only a holder of a key the round was sealed to re-computes the noise
    rep = verify_round(fl, store, spec, 2, chain_id=res.chain_id, strategy="fedavg")
    assert rep.ok, rep.checks
    assert _check(rep, "privacy budget").status == "pass"
    assert _check(rep, "rejection evidence").status == "pass"
    assert _check(rep, "re-computation").status == "skip"
    for who in ("verifier-1.key", "aggregator.key"):
        rep = verify_round(fl, store, spec, 2, chain_id=res.chain_id, strategy="fedavg",
                           private_key=load_private_key(res.out / who))
        assert _check(rep, "re-computation").status == "pass", rep.checks

    # the sealed secret is in the evidence; someone outside the committee cannot open it
    evidence = Evidence.decode(store.get(fl.proposed_outcome(1).evidence_hash))
    assert evidence.dp_secret is not None and evidence.rejections == ()
    with pytest.raises(SealError):
        open_sealed(evidence.dp_secret, generate_keypair().private, dp_seal_context(res.chain_id, fl.address, 1))


def test_an_aggregator_that_grinds_the_noise_is_disputed(tmp_path):
    """Noise from a seed the aggregator picked gives another model: both verifiers dispute it."""
    res = run(tmp_path, rounds=2, rogue_aggregator="grind_noise", rogue_rounds=(1,))
    assert [r.status for r in res.rows] == ["disputed", "finalized"]
    assert res.rows[0].disputes >= 1 and res.rows[0].attestations == 0 and res.rows[1].attestations == 2
    fl, _, _ = _job(res)
    assert res.report["committee"]["honest_clients_slashed"] == []
    assert fl.total_burned() == 10**17  # the bond


def test_a_proposal_without_the_sealed_secret_is_disputed(tmp_path, monkeypatch):
    """Evidence that does not carry the committed secret: the noise cannot be re-derived, so no attestation."""
    import ml.rounds as rounds

    real = rounds.evidence_of

    def without_secret(comp):
        ev = real(comp)
        return Evidence(ev.round_id, ev.rejections)  # a blob, without the secret

    monkeypatch.setattr("ml.rounds.evidence_of", without_secret)  # the outcome's evidence hash
    monkeypatch.setattr("ml.parties.aggregator.evidence_of", without_secret)  # the blob it stores
    from ml.parties.verifier import Verifier

    decisions = []
    real_decide = Verifier.decide
    monkeypatch.setattr(Verifier, "decide", lambda self, r: decisions.append(real_decide(self, r)) or decisions[-1])
    res = run(tmp_path, rounds=1)
    assert res.rows[0].status == "disputed"
    assert decisions[0].vote == "dispute"
    assert decisions[0].reasons == ("dp: the sealed noise secret is missing from the evidence: the noise cannot be "
                                    "re-derived",)


def test_dp_settings_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(FederationError, match="--strategy median is not a mean"):
        run(tmp_path, strategy="median")
    with pytest.raises(FederationError, match="need --dp-clip"):
        run(tmp_path, dp_clip=0.0)
    with pytest.raises(FederationError, match="below one round's epsilon"):
        run(tmp_path, dp_budget=independent_epsilon(NOISE, 1, DELTA) / 2)
    with pytest.raises(DPSecretError):
        rounds_dp_with_a_foreign_key(tmp_path)


def rounds_dp_with_a_foreign_key(tmp_path):
    """The aggregator's noise secret comes from its deploy-time key: another key cannot make DP rounds."""
    from ml.chain import JobParams
    from ml.dp import chain_dp, noise_secret, secret_commitment
    from ml.rounds import round_dp

    mine, other = generate_keypair(), generate_keypair()
    fields = chain_dp(CLIP, NOISE, DELTA, None, secret_commitment(noise_secret(mine.private))).fields()
    params = JobParams(minStake=1, unbondingPeriod=1, submissionPeriod=1, gracePeriod=1, quorum=1,
                       maxUpdatesPerRound=0, maxSamplesPerUpdate=1, slashBps=0, rewardPerRound=0, normBound=0,
                       modelSpecHash=b"\x11" * 32, initialModelHash=b"\x22" * 32, aggregatorKey=mine.public,
                       **fields)
    assert round_dp(params, mine.private, [mine.public], chain_id=1, contract="0x" + "ab" * 20, round_id=1)
    round_dp(params, other.private, [other.public], chain_id=1, contract="0x" + "ab" * 20, round_id=1)


def test_distributed_dp_in_private_mode_stops_at_the_budget_and_verifies_without_a_key(tmp_path):
    """Private mode with DP: each client clips, adds its discrete Gaussian share and masks; the committee
    attests, the budget stops the run, and anyone re-computes each round without any key."""
    eps = [independent_epsilon(NOISE, r, DELTA) for r in (1, 2, 3)]
    res = run(tmp_path, clients=3, rounds=3, privacy="secagg", dp_budget=(eps[1] + eps[2]) / 2)
    fl, store, spec = _job(res)
    assert fl.params().private and fl.params().dpMaxRounds == 2
    assert [r.status for r in res.rows] == ["finalized", "finalized"] and [r.attestations for r in res.rows] == [2, 2]
    assert res.report["stopped"].startswith("privacy budget reached")
    assert res.report["privacy"]["mechanism"].startswith("distributed discrete Gaussian")
    assert [r.epsilon for r in res.rows] == pytest.approx(eps[:2], rel=1e-9)
    for r in (1, 2):
        rep = verify_round(fl, store, spec, r, chain_id=res.chain_id, strategy="fedavg")  # no key
        assert rep.ok, rep.checks
        assert _check(rep, "re-computation").status == "pass" and _check(rep, "privacy budget").status == "pass"
    with pytest.raises(FederationError, match="--secagg-clip"):
        run(tmp_path, privacy="secagg", sec_clip=1.0, dp_clip=3.0)
