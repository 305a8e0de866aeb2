"""Private mode end to end (issue 13): real training, secure aggregation, contract and committee.

Clients join (round key + dealing on chain), mask their updates pairwise and publish them; simulated
dropouts join and vanish; the survivors reveal; the aggregator, each verifier and anyone without a key
compute the same model; a tampered masked vector or reveal is caught by the public re-computation.
"""
from __future__ import annotations

import json

import pytest

from ml.chain import Phase, UpdateStatus
from ml.parties.federation import FederationError
from tests.e2e.helpers import check as _check
from tests.e2e.helpers import federate
from tests.e2e.helpers import open_job as _job
from tests.e2e.helpers import verify as _verify


def run(tmp_path, name="out", **kw):
    return federate(tmp_path, dict(clients=5, rounds=3, privacy="secagg"), name=name, **kw)


def test_private_rounds_with_dropouts_finalize_and_anyone_recomputes_them(tmp_path):
    res = run(tmp_path, dropouts=2)  # 5 join, 3 survive: t = 2 of them rebuild each dropped key
    fl, store, _ = _job(res)
    assert [r.status for r in res.rows] == ["finalized"] * 3
    assert all(r.attestations == 2 and r.accepted == 3 for r in res.rows)
    dropped = [c["address"] for c in res.clients[-2:]]
    for r in (1, 2, 3):
        assert fl.round_view(r).priv.joined == 5 and fl.round_view(r).priv.revealed == 3
        assert {fl.update(r, a).status for a in dropped} == {UpdateStatus.NONE}  # neither paid nor slashed
    for r in (1, 2, 3):
        rep = _verify(res, r)
        assert rep.ok, rep.checks
        check = _check(rep, "re-computation")
        assert check.status == "pass" and "no key" in check.detail and "2 dropout(s)" in check.detail

    # a tampered masked vector: the public re-computation no longer gives the recorded outcome
    survivor = res.clients[0]["address"]
    sub = next(s for s in fl.submissions(3) if s.client == survivor)
    path = store.path_for(sub.commitment)
    good = path.read_bytes()
    path.write_bytes(good[:-8] + bytes(8))
    rep = _verify(res, 3)
    assert not rep.ok and _check(rep, "re-computation").status == "fail"
    path.write_bytes(good)

    # a wrong reveal of a dropped participant's share: caught the same way
    reveal = fl.get_join(3, survivor).reveal
    rpath = store.path_for(reveal)
    doc = json.loads(rpath.read_bytes())
    doc["shares"][0]["value"] = "0x" + "00" * 32
    rpath.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    rep = _verify(res, 3)
    detail = _check(rep, "re-computation").detail
    assert not rep.ok and "bad_reveal" in detail and survivor in detail


@pytest.mark.parametrize("dropouts", [0, 2])
def test_private_accuracy_matches_robust_fedavg_with_the_same_seed(tmp_path, dropouts):
    """The same clients train (the same two stay away), the same seed: fixed point against float FedAvg."""
    private = run(tmp_path, "private", dropouts=dropouts)
    robust = run(tmp_path, "robust", privacy="robust", dropouts=dropouts)
    assert [r.accepted for r in private.rows] == [r.accepted for r in robust.rows] == [5 - dropouts] * 3
    assert abs(private.final_accuracy - robust.final_accuracy) <= 0.005, (private.final_accuracy,
                                                                          robust.final_accuracy)


def test_a_survivor_that_publishes_garbage_is_slashed_and_the_round_fails(tmp_path):
    res = run(tmp_path, rounds=1, attackers=1, attack="garbage")
    fl, _, _ = _job(res)
    attacker = res.clients[-1]["address"]
    assert fl.round(1).phase == Phase.FAILED
    assert res.rows[0].rejected_reasons == {attacker: "bad_vector"}
    assert fl.update(1, attacker).status == UpdateStatus.REJECTED
    honest = [c["address"] for c in res.clients[:-1]]
    assert {fl.update(1, a).status for a in honest} == {UpdateStatus.EXCLUDED}  # left out, not slashed
    assert res.report["committee"]["honest_clients_slashed"] == []
    assert _verify(res, 1).ok


@pytest.mark.parametrize("kw, message", [
    (dict(strategy="median"), "only FedAvg"),
    (dict(dropouts=4), "--dropouts must be between 0 and 3"),
    (dict(attackers=1, attack="signflip"), "undetected"),
    (dict(privacy="robust", dropouts=5), "--dropouts must be between 0 and 4"),
])
def test_private_settings_are_checked(tmp_path, kw, message):
    with pytest.raises(FederationError, match=message):
        run(tmp_path, **kw)


def test_a_survivor_that_does_not_reveal_is_slashed(tmp_path, monkeypatch):
    """The last client submits and then never reveals: after the reveal deadline the outcome rejects it
    (missing_reveal), the round fails without a model, the others are left out unpaid, not slashed."""
    from ml.parties.client import Client

    real = Client.reveal_private
    monkeypatch.setattr(Client, "reveal_private", lambda self, r: False if self.index == 3 else real(self, r))
    res = run(tmp_path, clients=4, rounds=1)
    fl, _, _ = _job(res)
    silent = res.clients[3]["address"]
    assert res.rows[0].rejected_reasons == {silent: "missing_reveal"}
    assert fl.round(1).phase == Phase.FAILED and fl.update(1, silent).status == UpdateStatus.REJECTED
    assert fl.client(silent).stake < fl.params().minStake  # slashed
    others = [c["address"] for c in res.clients[:3]]
    assert all(fl.client(a).stake == fl.params().minStake for a in others)
    assert {fl.update(1, a).status for a in others} == {UpdateStatus.EXCLUDED}
    rep = _verify(res, 1)
    assert rep.ok, rep.checks
