"""The verifier committee end to end (issue 11): real training, sealing, contract and verifiers.

No single party decides a round: a rogue aggregator's proposal is disputed and applies nothing
(nobody honest slashed, its bond forfeited), one rogue verifier of three cannot block an honest
round nor pass a dishonest one, and every rejection checks out from its public evidence.
"""
from __future__ import annotations


import pytest

from ml.chain import Phase, UpdateStatus
from ml.evidence import Evidence, RejectionEvidence, Verdict, check_rejection
from ml.rounds import round_recipients, validation_reason
from ml.sealing import SealContext, load_private_key
from tests.e2e.helpers import check as _check
from tests.e2e.helpers import federate
from tests.e2e.helpers import open_job as _job
from tests.e2e.helpers import verify as _verify

WEI = 10**18


def run(tmp_path, **kw):
    return federate(tmp_path, **kw)


@pytest.mark.parametrize("mode", ["slash_honest", "wrong_model", "exclude_honest"])
def test_a_rogue_aggregator_fails_its_round_and_slashes_nobody(tmp_path, mode):
    res = run(tmp_path, rounds=2, rogue_aggregator=mode, rogue_rounds=(1,))
    fl, _, _ = _job(res)
    assert [r.status for r in res.rows] == ["disputed", "finalized"]
    assert res.rows[0].disputes >= 1 and res.rows[0].attestations == 0
    assert res.rows[1].attestations == 2
    # nothing of the rogue proposal applied: every update of round 1 is still just submitted
    assert fl.round(1).phase == Phase.FAILED and fl.round(1).model_hash == b"\x00" * 32
    assert {fl.update(1, c["address"]).status for c in res.clients} == {UpdateStatus.SUBMITTED}
    # no honest client slashed; the bond (0.1 ETH) forfeited, burned without a treasury
    stake = fl.params().minStake
    assert all(fl.client(c["address"]).stake == stake for c in res.clients)
    assert res.report["committee"]["disputed_rounds"] == [1]
    assert res.report["committee"]["bond_forfeited"] == WEI // 10
    assert res.report["committee"]["honest_clients_slashed"] == []
    assert fl.total_burned() == WEI // 10
    # round 2 starts again from the initial model, and anyone can check both rounds without a key
    assert fl.round(2).base_model_hash == fl.params().initialModelHash
    rep1, rep2 = _verify(res, 1), _verify(res, 2)
    assert rep1.ok and rep2.ok, (rep1.checks, rep2.checks)
    assert _check(rep1, "round disputed").status == "pass" and _check(rep1, "nothing applied").status == "pass"
    if mode == "slash_honest":  # the forged NaN claim is refuted from public data alone
        assert "forged content key" in _check(rep1, "why it was disputed").detail


@pytest.mark.parametrize("rogue_verifier, rogue_aggregator, status", [
    ("dispute_all", None, "finalized"),  # cannot block an honest round: 2 of 3 attest
    ("dispute_all", "slash_honest", "disputed"),
    ("attest_all", None, "finalized"),
    ("attest_all", "wrong_model", "disputed"),  # cannot pass a dishonest one: 2 of 3 dispute
])
def test_one_rogue_verifier_of_three(tmp_path, rogue_verifier, rogue_aggregator, status):
    res = run(tmp_path, verifiers=3, threshold=2, rogue_verifier=rogue_verifier,
              rogue_aggregator=rogue_aggregator)
    fl, _, _ = _job(res)
    assert res.rows[0].status == status
    stake = fl.params().minStake
    attacker_free = all(fl.client(c["address"]).stake == stake for c in res.clients)
    assert attacker_free  # nobody honest was slashed either way
    rogue = fl.committee().verifiers[0]
    assert fl.vote_of(1, rogue) == (2 if rogue_verifier == "dispute_all" else 1)


def test_trusted_mode_is_flagged(tmp_path):
    res = run(tmp_path, verifiers=0)
    fl, _, _ = _job(res)
    assert fl.committee().trusted and res.report["trusted_aggregator"] is True
    assert res.rows[0].committee == "trusted"
    rep = _verify(res, 1)
    assert rep.ok and "TRUSTED-AGGREGATOR" in _check(rep, "committee").detail


@pytest.mark.parametrize("attack, norm_bound, reason, public", [
    ("nan", 0.0, "non_finite", True),
    ("scale", 20.0, "norm", True),
    ("tamper", 0.0, "commitment_mismatch", False),  # no key to show: the verifiers fetched it themselves
])
def test_rejection_evidence_checks_out_publicly_and_a_forged_key_does_not(tmp_path, attack, norm_bound, reason,
                                                                          public):
    res = run(tmp_path, attackers=1, attack=attack, norm_bound=norm_bound)
    fl, store, spec = _job(res)
    attacker = res.clients[-1]["address"]
    assert res.rows[0].status == "finalized" and res.rows[0].rejected_reasons == {attacker: reason}
    assert res.rows[0].attestations == 2  # the committee agreed with the rejection
    rep = _verify(res, 1)  # no key at all
    assert rep.ok, rep.checks
    ev_check = _check(rep, "rejection evidence")
    assert ("1 confirmed from public data" if public else "1 checkable by the verifiers only") in ev_check.detail
    # a verifier's key re-computes the whole round
    rep = _verify(res, 1, load_private_key(res.out / "verifier-1.key"))
    assert _check(rep, "re-computation").status == "pass"
    if not public:
        return
    # the same evidence with a forged content key is refuted
    proposed = fl.proposed_outcome(1)
    evidence = Evidence.decode(store.get(proposed.evidence_hash))
    rec = evidence.for_client(attacker)
    forged = RejectionEvidence(rec.client, rec.reason, bytes(32 - 1) + b"\x01", rec.detail)
    sub = next(s for s in fl.submissions(1) if s.client == attacker)
    ctx = SealContext(chain_id=res.chain_id, contract=fl.address, round_id=1, client=attacker)
    from ml import codec

    base = codec.decode(store.get(fl.round(1).base_model_hash), spec)
    validate = lambda p: validation_reason(p, spec, base, fl.params().norm_bound)  # noqa: E731
    blob = store.get(sub.commitment)
    assert check_rejection(rec, blob, ctx, validate, recipients=round_recipients(fl)).verdict is Verdict.CONFIRMED
    got = check_rejection(forged, blob, ctx, validate, recipients=round_recipients(fl))
    assert got.verdict is Verdict.REFUTED and "forged" in got.explanation
