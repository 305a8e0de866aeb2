"""Off-chain attacks of the security review (issue 10), run end to end on the embedded chain."""
import pytest


# ---------------------------------------------------------------------------- M-2 and M-4 (off chain)


def _job_parts(res, accounts):
    """The finished federation's contract, store, spec, aggregator and a client factory (rounds go on by hand)."""
    import json

    from ml.aggregator import Aggregator
    from ml.chain import FLContract
    from ml.client import Client
    from ml.data import load_dataset
    from ml.models import ModelSpec
    from ml.sealing import load_private_key
    from ml.store import LocalStore

    dep = json.loads((res.out / "deployments.json").read_text())
    spec = ModelSpec.from_json(json.dumps(next(iter(dep.values()))["model_spec"]))
    fl = FLContract.at(res.address)
    store = LocalStore(res.out / "store")
    ds = load_dataset("digits", seed=1)
    agg = Aggregator(accounts[1], fl, store, load_private_key(res.out / "aggregator.key"), spec, None, None,
                     chain_id=res.chain_id)

    def client(i: int, n: int = 60) -> Client:
        sl = slice(i * n, (i + 1) * n)
        return Client(accounts[2 + i], fl, store, spec, ds.x_train[sl], ds.y_train[sl], chain_id=res.chain_id, seed=i)

    return fl, store, spec, agg, client


def test_m2_a_copied_commitment_is_rejected_as_the_copiers_and_the_victim_is_accepted(tmp_path, accounts):
    """The copier front-runs the victim's pending commitment (same blob, same locator). The contract
    lets both through (uniqueness is per client); the aggregator cannot open the copy as the copier's,
    because the seal binds the client: the copier is rejected and slashed, the victim accepted."""
    from ml.chain import UpdateStatus
    from ml.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=3, rounds=1, out=tmp_path / "out", quiet=True, baseline=False,
                                      seed=1)).run()
    fl, store, spec, agg, client = _job_parts(res, accounts)
    victim, copier = client(0), client(1)
    r = agg.open_round()
    base = victim.fetch_model(fl.round(r).base_model_hash)
    blob = victim._sealed_blob(base, r)
    commitment, locator = victim._store(blob)
    fl.submit(copier.account, r, commitment, 60, locator)  # the front-run
    victim._submit(r, base, commitment, locator, 60)  # used to revert CommitmentAlreadyUsed
    client(2).participate(r)
    stake = fl.client(copier.address).stake
    outcome = agg.finalize(r)
    assert outcome.status == "finalized"
    assert {x.client: x.reason for x in outcome.rejected} == {copier.address: "cannot_open"}
    assert fl.update(r, victim.address).status == UpdateStatus.SUBMITTED
    assert fl.client(copier.address).stake == stake // 2


def test_m2_a_client_whose_commitment_was_used_reseals_and_resubmits(tmp_path, accounts):
    """A client handed a blob it already committed to (a replay, e.g. a stale store after a restart)
    seals the update afresh and submits again while the round is open, instead of exiting."""
    from ml.chain import UpdateStatus
    from ml.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=2, rounds=1, out=tmp_path / "out", quiet=True, baseline=False,
                                      seed=1)).run()
    fl, store, spec, agg, client = _job_parts(res, accounts)
    c = client(0)
    old = fl.submissions(1)
    mine = next(s for s in old if s.client == c.address)
    r = agg.open_round()
    weights = c.fetch_model(fl.round(r).base_model_hash)
    commitment, _ = c._submit(r, weights, mine.commitment, mine.locator, 60)  # the round-1 commitment
    assert commitment != mine.commitment
    assert fl.update(r, c.address).commitment == commitment
    client(1).participate(r)
    outcome = agg.finalize(r)
    assert c.address in outcome.accepted and not outcome.rejected
    assert fl.update(r, c.address).status == UpdateStatus.SUBMITTED


@pytest.mark.parametrize("permissioned", [True, False])
def test_m4_inflated_sample_count(tmp_path, permissioned):
    """The inflator claims 100x its samples. A permissioned job refuses it (its allowance is its true
    count) and its weight stays out; an open job only caps it (the README says so)."""
    from ml.chain import FLContract
    from ml.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=3, rounds=1, out=tmp_path / "out", quiet=True, baseline=False, seed=1,
                                      attackers=1, attack="inflate", permissioned=permissioned)).run()
    fl = FLContract.at(res.address)
    subs = {s.client: s.samples for s in fl.submissions(1)}
    honest, inflator = res.clients[:2], res.clients[2]
    assert all(subs[c["address"]] == c["samples"] for c in honest)
    if permissioned:
        assert inflator["address"] not in subs  # AboveAllowance: never recorded
        assert fl.round(1).accepted_weight == sum(c["samples"] for c in honest)
    else:
        assert subs[inflator["address"]] == 100 * inflator["samples"]  # what an open job cannot prevent
