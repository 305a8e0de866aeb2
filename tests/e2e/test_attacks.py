"""Attacks of the security review (issue 10) run end to end: real contract, training, sealing and store code.

M-2: a copied commitment blocks nobody, and a client whose commitment was used re-seals.
M-4: an inflated sample count is refused in a permissioned job (an open job only caps it).
M-3: a client-chosen locator must not stop the aggregator. The aggregator's store
is an IpfsStore speaking HTTP to the fake kubo of tests/fake_ipfs.py (127.0.0.1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import keccak

from ml import codec
from ml.parties import Aggregator
from ml.rounds import round_fetch_budget
from ml.chain import FLContract, JobParams, Phase, UpdateStatus
from ml.parties.client import Client
from ml.data import load_dataset
from ml.parties.federation import Federation, FederationConfig
from ml.models import initial_weights, spec_for_dataset, tensor_names
from ml.sealing import generate_keypair
from ml.store import IpfsStore, StoreUnhealthyError
from tests.fake_ipfs import FakeKubo, raw_cid, serve_kubo

MIN_STAKE = 10**17
GRACE = 12  # seconds: the aggregator's fetch budget is a fraction of it
SLACK = 20.0  # generous: training is not timed, the fetches are bounded by the budget


@pytest.fixture
def kubo():
    with serve_kubo() as state:
        yield state


def test_m3_badlocator_attacker_is_rejected_missing_blob_and_slashed(tmp_path, kubo):
    """`ape run federated_round --attack badlocator --store <IPFS API>`: the locator `ipfs://x-y` used to
    make the store raise a spec error and the aggregator exit; now its client alone is rejected."""
    cfg = FederationConfig(clients=3, rounds=1, attackers=1, attack="badlocator", store=kubo.url,
                           out=tmp_path / "out", quiet=True, baseline=False, seed=1, workers=1)
    res = Federation(cfg).run()
    fl = FLContract.at(res.address)
    attacker = res.clients[-1]["address"]
    assert res.rows[0].status == "finalized"
    assert res.rows[0].rejected_reasons == {attacker: "missing_blob"}
    assert res.rows[0].accepted == 2
    assert fl.update(1, attacker).status == UpdateStatus.REJECTED
    stake = fl.params().minStake
    assert fl.client(attacker).stake == stake - stake * fl.params().slashBps // 10_000
    assert all(c["reward"] > 0 and c["slashed"] == 0 for c in res.clients[:-1])


@dataclass
class Job:
    fl: FLContract
    store: IpfsStore
    aggregator: Aggregator
    honest: list[Client]
    others: list[Any]  # registered accounts that submit by hand
    round_id: int


def _open_job(kubo: FakeKubo, accounts: Any, chain: Any, honest: int, others: int) -> Job:
    """A job with a short grace period on the fake IPFS store, clients registered, round 1 open."""
    store = IpfsStore(kubo.url, timeout=10)
    ds = load_dataset("digits", seed=1)
    spec = spec_for_dataset(ds, "mlp")
    init = store.put(codec.encode(initial_weights(spec, 1), tensor_names(spec)))
    keys = generate_keypair()
    params = JobParams(
        minStake=MIN_STAKE, unbondingPeriod=3600, submissionPeriod=600, gracePeriod=GRACE, quorum=1,
        maxUpdatesPerRound=0, maxSamplesPerUpdate=10**6, slashBps=5000, rewardPerRound=10**16, normBound=0,
        modelSpecHash=spec.hash(), initialModelHash=init, aggregatorKey=keys.public,
    )
    admin, agg = accounts[0], accounts[1]
    fl = FLContract.deploy(admin, params, admin.address, agg.address)
    fl.fund(admin, 10**17)
    clients = [Client(accounts[3 + i], fl, store, spec, ds.x_train[i * 60:(i + 1) * 60],
                      ds.y_train[i * 60:(i + 1) * 60], chain_id=chain.chain_id, seed=i) for i in range(honest)]
    extra = [accounts[3 + honest + i] for i in range(others)]
    for acc in [c.account for c in clients] + extra:
        fl.register(acc, generate_keypair().public, MIN_STAKE)
    round_id = fl.start_round(agg)
    aggregator = Aggregator(agg, fl, store, keys.private, spec, None, None, chain_id=chain.chain_id)
    return Job(fl, store, aggregator, clients, extra, round_id)


def _slashes(fl: FLContract) -> list[tuple[str, int]]:
    return [(str(ev.client), int(ev.slashed)) for ev in fl.events("UpdateRejected")]


def test_m3_hostile_and_unserved_locators_are_missing_blob_and_the_round_finalizes(kubo, accounts, chain):
    """One client records `ipfs://x-y`, another a well-formed CID that the node hangs on (it accepts the
    request and never answers). Within the fetch budget both are missing_blob and slashed, the honest
    clients are accepted, and the round finalizes long before anyone may cancel it."""
    job = _open_job(kubo, accounts, chain, honest=2, others=2)
    fl, r = job.fl, job.round_id
    for client in job.honest:
        client.participate(r)
    hostile, unserved = job.others
    fl.submit(hostile, r, keccak(b"withheld update"), 60, "ipfs://x-y")
    hung = b"an update nobody serves"
    kubo.hang_cids.add(raw_cid(hung))
    fl.submit(unserved, r, keccak(hung), 60, f"ipfs://{raw_cid(hung)}")
    assert fl.can_propose(r)

    t0 = time.monotonic()
    outcome = job.aggregator.propose(r)
    elapsed = time.monotonic() - t0

    assert outcome.status == "finalized" and fl.round(r).phase == Phase.FINALIZED
    assert {x.client: x.reason for x in outcome.rejected} == {hostile.address: "missing_blob",
                                                              unserved.address: "missing_blob"}
    assert all("\n" not in x.detail for x in outcome.rejected)
    assert sorted(outcome.accepted) == sorted(c.address for c in job.honest)
    assert kubo.cat_count >= 1 and elapsed < round_fetch_budget(GRACE) + SLACK
    slashed = MIN_STAKE * 5000 // 10_000
    assert sorted(_slashes(fl)) == sorted([(hostile.address, slashed), (unserved.address, slashed)])
    for acc in (hostile, unserved):
        assert fl.update(r, acc.address).status == UpdateStatus.REJECTED
        assert fl.client(acc.address).stake == MIN_STAKE - slashed
    for client in job.honest:
        assert fl.client(client.address).stake == MIN_STAKE
        assert fl.claimable(r, client.address) > 0


def test_m3_own_store_down_stops_in_one_line_slashes_nobody_and_the_round_can_resume(kubo, accounts, chain):
    """The aggregator's own IPFS node lost the round's blocks and cannot store anything (a full disk):
    that is not the clients' fault. The aggregator stops with one line saying so, nothing is slashed,
    the round stays open; once the node is repaired the same call finalizes it."""
    job = _open_job(kubo, accounts, chain, honest=2, others=0)
    fl, r = job.fl, job.round_id
    for client in job.honest:
        client.participate(r)
    base = fl.round(r).base_model_hash
    blocks = dict(kubo.blocks)
    kubo.blocks = {cid: data for cid, data in blocks.items() if keccak(data) == base}
    kubo.add_error = "mkdir /data/ipfs/blocks/CIQ: no space left on device"

    with pytest.raises(StoreUnhealthyError) as info:
        job.aggregator.propose(r)
    message = str(info.value)
    assert "\n" not in message
    assert "nobody slashed" in message and "no space left on device" in message and "Fix the store" in message
    assert fl.round(r).phase == Phase.OPEN
    assert _slashes(fl) == []
    assert all(fl.client(c.address).stake == MIN_STAKE for c in job.honest)

    kubo.blocks = blocks  # the operator repairs the node; the aggregator runs again
    kubo.add_error = None
    outcome = job.aggregator.propose(r)
    assert outcome.status == "finalized" and outcome.rejected == []
    assert sorted(outcome.accepted) == sorted(c.address for c in job.honest)
    assert _slashes(fl) == []


def test_m3_fetch_budget_ends_well_before_anyone_may_cancel():
    """A fraction of the grace period, capped; each blob a fair share of what is left."""
    from ml.rounds import blob_budget

    for grace in (4, 12, 60, 300, 600, 86_400):
        assert 0 < round_fetch_budget(grace) <= grace / 2
    assert round_fetch_budget(600) == 120.0 and round_fetch_budget(86_400) == 120.0
    assert round_fetch_budget(12) == 3.0
    assert round_fetch_budget(0) == 1.0  # never zero: no update could be fetched at all
    assert blob_budget(120.0, 4).seconds == 30.0
    assert blob_budget(120.0, 1).request_timeout == 30.0  # per request: capped
    assert blob_budget(0.0, 10).seconds == 0.25  # one quick look even when the budget is spent
    # A blob that uses up its whole share leaves every later blob at least as much.
    left, shares = 10.0, []
    for n in range(5, 0, -1):
        shares.append(blob_budget(left, n).seconds)
        left -= shares[-1]
    assert shares == sorted(shares) and abs(sum(shares) - 10.0) < 1e-9


def test_m3_party_says_in_one_line_that_its_own_store_is_down():
    """The aggregator process (ape run aggregator) pauses on its unhealthy store and says so; it retries."""
    from ml.rounds import own_store_down
    from ml.parties import Stop, run_until_done

    lines: list[str] = []
    calls = iter([StoreUnhealthyError(own_store_down(7, StoreUnhealthyError("disk full"))), None, "done"])

    def step():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert run_until_done(step, Stop(), lines.append) == "done"
    line, back = lines
    assert back == "working again after 1 failed attempt(s); carrying on"
    assert line.startswith("round 7 paused, nobody slashed: the aggregator's own store is unhealthy (disk full)")
    assert "checking again in 2 s" in line and "\n" not in line


# ---------------------------------------------------------------------------- M-2 and M-4 (off chain)


def _job_parts(res, accounts):
    """The finished federation's contract, store, spec, aggregator and a client factory (rounds go on by hand)."""
    import json

    from ml.parties import Aggregator
    from ml.chain import FLContract
    from ml.parties.client import Client
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
    from ml.parties.verifier import Verifier

    n = len(res.clients)
    verifiers = [Verifier(accounts[2 + n + i], fl, store, load_private_key(res.out / f"verifier-{i + 1}.key"), spec,
                          chain_id=res.chain_id) for i in range(len(fl.committee().verifiers))]

    def propose(r: int):
        """The aggregator proposes, each verifier decides and votes, the outcome settles."""
        outcome = agg.propose(r)
        for v in verifiers:
            if outcome.status == "proposed" and fl.round(r).phase.name == "PROPOSED":
                d = v.decide_and_vote(r)
                assert d.vote == "attest", d.line()
        return agg.settle(outcome)

    agg.propose_and_settle = propose

    def client(i: int, n: int = 60) -> Client:
        sl = slice(i * n, (i + 1) * n)
        return Client(accounts[2 + i], fl, store, spec, ds.x_train[sl], ds.y_train[sl], chain_id=res.chain_id, seed=i)

    return fl, store, spec, agg, client


def test_m2_a_copied_commitment_is_rejected_as_the_copiers_and_the_victim_is_accepted(tmp_path, accounts):
    """The copier front-runs the victim's pending commitment (same blob, same locator). The contract
    lets both through (uniqueness is per client); the aggregator cannot open the copy as the copier's,
    because the seal binds the client: the copier is rejected and slashed, the victim accepted."""
    from ml.chain import UpdateStatus
    from ml.parties.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=3, rounds=1, out=tmp_path / "out", quiet=True, baseline=False,
                                      seed=1, workers=1)).run()
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
    outcome = agg.propose_and_settle(r)
    assert outcome.status == "finalized"
    assert {x.client: x.reason for x in outcome.rejected} == {copier.address: "cannot_open"}
    assert fl.update(r, victim.address).status == UpdateStatus.SUBMITTED
    assert fl.client(copier.address).stake == stake // 2


def test_m2_a_client_whose_commitment_was_used_reseals_and_resubmits(tmp_path, accounts):
    """A client handed a blob it already committed to (a replay, e.g. a stale store after a restart)
    seals the update afresh and submits again while the round is open, instead of exiting."""
    from ml.chain import UpdateStatus
    from ml.parties.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=2, rounds=1, out=tmp_path / "out", quiet=True, baseline=False,
                                      seed=1, workers=1)).run()
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
    outcome = agg.propose_and_settle(r)
    assert outcome.status == "finalized"
    assert c.address in outcome.accepted and not outcome.rejected
    assert fl.update(r, c.address).status == UpdateStatus.SUBMITTED


@pytest.mark.parametrize("permissioned", [True, False])
def test_m4_inflated_sample_count(tmp_path, permissioned):
    """The inflator claims 100x its samples. A permissioned job refuses it (its allowance is its true
    count) and its weight stays out; an open job only caps it (the README says so)."""
    from ml.chain import FLContract
    from ml.parties.federation import Federation, FederationConfig

    res = Federation(FederationConfig(clients=3, rounds=1, out=tmp_path / "out", quiet=True, baseline=False, seed=1,
                                      workers=1, attackers=1, attack="inflate", permissioned=permissioned)).run()
    fl = FLContract.at(res.address)
    subs = {s.client: s.samples for s in fl.submissions(1)}
    honest, inflator = res.clients[:2], res.clients[2]
    assert all(subs[c["address"]] == c["samples"] for c in honest)
    if permissioned:
        assert inflator["address"] not in subs  # AboveAllowance: never recorded
        assert fl.round(1).accepted_weight == sum(c["samples"] for c in honest)
    else:
        assert subs[inflator["address"]] == 100 * inflator["samples"]  # what an open job cannot prevent
