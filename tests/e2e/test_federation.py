"""Whole rounds on the embedded chain: real contract, real Keras training, real sealing."""
from __future__ import annotations

import json

import ape
import pytest
from eth_utils import keccak

from ml import codec
from ml.rounds import collect_updates
from ml.chain import ChainError, FLContract, Phase, UpdateStatus
from ml.parties.client import Client, TrainConfig
from ml.parties.federation import Federation, FederationConfig, SimulatedCrash
from ml.sealing import SealContext, SealError, open_sealed, seal
from ml.store import LocalStore

WEI = 10**18


def small_cfg(tmp_path, **kw) -> FederationConfig:
    # workers=1: clients train in this process; a pool's start-up (each worker imports TensorFlow, ~10 s
    # here) would dominate these small runs. test_parallel_training_gives_the_same_models covers workers=2.
    base = dict(clients=3, rounds=2, out=tmp_path / "out", quiet=True, baseline=False, seed=1, workers=1)
    base.update(kw)
    return FederationConfig(**base)


def test_two_rounds_three_clients(tmp_path, chain):
    res = Federation(small_cfg(tmp_path, baseline=True)).run()
    fl = FLContract.at(res.address)
    store = LocalStore(res.out / "store")

    assert fl.current_round() == 2
    for r in (1, 2):
        info = fl.round(r)
        assert info.phase == Phase.FINALIZED
        assert info.submissions == 3 and info.accepted == 3
        # Weights recorded: the accepted weight is the sum of the clients' sample counts.
        subs = fl.submissions(r)
        assert info.accepted_weight == info.submitted_weight == sum(s.samples for s in subs)
        # The model hash on chain is the keccak of the stored global model blob.
        assert keccak(store.get(info.model_hash)) == info.model_hash
        # Every commitment has its blob in the store.
        for s in subs:
            assert keccak(store.get(s.commitment)) == s.commitment
        # Rewards: claimed by everyone (status Claimed), and the round's reward fully paid but dust.
        assert all(fl.update(r, s.client).status == UpdateStatus.CLAIMED for s in subs)
        assert info.reward == 10**17
        paid = fl.round(r).reward_claimed
        assert info.reward - 3 <= paid <= info.reward
    assert fl.round(2).base_model_hash == fl.round(1).model_hash
    assert fl.latest_model_hash() == res.final_model_hash
    # The run learned something real and wrote its outputs.
    assert res.final_accuracy > 0.6
    assert res.baseline_accuracy is not None and res.baseline_accuracy > 0.8
    for name in ("report.json", "rounds.csv", "accuracy.png", "final_model.keras", "final_model.hash"):
        assert (res.out / name).stat().st_size > 0
    report = json.loads((res.out / "report.json").read_text())
    assert report["final_model_hash"] == "0x" + res.final_model_hash.hex()
    assert [r["status"] for r in report["rounds"]] == ["finalized", "finalized"]
    assert all(c["reward"] > 0 for c in res.clients)


@pytest.mark.parametrize("attack,reason", [("nan", "non_finite"), ("tamper", "commitment_mismatch"),
                                           ("garbage", "cannot_open")])
def test_invalid_update_is_rejected_and_slashed(tmp_path, attack, reason):
    res = Federation(small_cfg(tmp_path, rounds=1, attackers=1, attack=attack)).run()
    fl = FLContract.at(res.address)
    attacker = res.clients[-1]["address"]
    assert res.rows[0].rejected == 1 and res.rows[0].accepted == 2
    assert res.rows[0].rejected_reasons == {attacker: reason}
    assert fl.update(1, attacker).status == UpdateStatus.REJECTED
    stake = fl.params().minStake
    assert fl.client(attacker).stake == stake - stake * 5000 // 10_000
    assert res.clients[-1]["slashed"] == stake // 2 and res.clients[-1]["reward"] == 0
    # The honest clients are paid, and the slash went to the pool.
    assert all(c["reward"] > 0 for c in res.clients[:-1])
    (ev,) = fl.events("UpdateRejected")
    assert str(ev.client) == attacker and int(ev.slashed) == stake // 2


def test_signflip_attacker_excluded_by_krum(tmp_path):
    res = Federation(small_cfg(tmp_path, clients=5, rounds=1, attackers=1, attack="signflip",
                               strategy="multi_krum", krum_f=1)).run()
    fl = FLContract.at(res.address)
    attacker = res.clients[-1]["address"]
    assert fl.update(1, attacker).status == UpdateStatus.EXCLUDED
    assert res.rows[0].excluded == 1 and res.rows[0].rejected == 0
    assert fl.client(attacker).stake == fl.params().minStake  # excluded: not slashed
    assert res.clients[-1]["reward"] == 0


def test_norm_bound_rejects_scaled_update(tmp_path):
    res = Federation(small_cfg(tmp_path, rounds=1, attackers=1, attack="scale", norm_bound=20.0)).run()
    attacker = res.clients[-1]["address"]
    assert res.rows[0].rejected_reasons == {attacker: "norm"}


def test_resume_after_crash_continues_without_duplicates(tmp_path):
    cfg = small_cfg(tmp_path, crash_after_submissions=2)
    with pytest.raises(SimulatedCrash):
        Federation(cfg).run()
    dep = json.loads((cfg.out / "deployments.json").read_text())
    (address,) = [d["address"] for d in dep.values()]
    fl = FLContract.at(address)
    assert fl.current_round() == 2 and fl.round(2).phase == Phase.OPEN and fl.round(2).submissions == 3
    stakes = {c: fl.client(c).stake for c in (s.client for s in fl.submissions(2))}

    cfg.crash_after_submissions = None
    res = Federation(cfg).run()
    assert res.address == address  # the same job, not a new deployment
    assert fl.current_round() == 2
    info = fl.round(2)
    assert info.phase == Phase.FINALIZED and info.submissions == 3  # no duplicate submission
    assert len(fl.submissions(2)) == 3
    assert {c: fl.client(c).stake for c in stakes} == stakes  # no lost stake
    assert [r.status for r in res.rows] == ["finalized", "finalized"]


def test_blob_replayed_to_another_job_fails_to_open(tmp_path, project, accounts, chain):
    """A sealed update copied from one job (contract) to another cannot be opened there."""
    res = Federation(small_cfg(tmp_path, rounds=1)).run()
    fl_a = FLContract.at(res.address)
    store = LocalStore(res.out / "store")
    victim = fl_a.submissions(1)[0]
    blob = store.get(victim.commitment)

    # The same aggregator key, a second deployment; a copier submits the victim's blob there.
    params = fl_a.params()
    admin, agg = accounts[0], accounts[1]
    fl_b = FLContract.deploy(admin, params, admin.address, agg.address)
    copier = accounts[15]
    fl_b.register(copier, b"\x07" * 32, params.minStake)
    fl_b.start_round(agg)
    fl_b.submit(copier, 1, victim.commitment, victim.samples, victim.locator)

    from ml.sealing import load_private_key
    from ml.models import ModelSpec

    spec = ModelSpec.from_json(json.dumps(res.report["model_spec"]))
    base = codec.decode(store.get(params.initialModelHash), spec)
    valid, rejected, n = collect_updates(fl_b, store, load_private_key(res.out / "aggregator.key"), spec, 1,
                                         chain_id=chain.chain_id, base=base, norm_bound=None)
    assert n == 1 and valid == []
    assert [(r.client, r.reason) for r in rejected] == [(copier.address, "cannot_open")]
    # And at the sealing level, another round or client fails the same way.
    key = load_private_key(res.out / "aggregator.key")
    for ctx in (SealContext(chain.chain_id, fl_a.address, 2, victim.client),
                SealContext(chain.chain_id, fl_a.address, 1, copier.address)):
        with pytest.raises(SealError, match="another"):
            open_sealed(blob, key, ctx)
    assert open_sealed(blob, key, SealContext(chain.chain_id, fl_a.address, 1, victim.client))


def test_replayed_commitment_reverts_with_clear_error(tmp_path, accounts):
    res = Federation(small_cfg(tmp_path, rounds=1)).run()
    fl = FLContract.at(res.address)
    victim = fl.submissions(1)[0]
    agg = accounts[1]
    fl.start_round(agg)
    with pytest.raises(ChainError, match="CommitmentAlreadyUsed.*replay"):  # a client replays its own blob
        fl.submit(accounts[victim.client], 2, victim.commitment, victim.samples, "")


def test_krum_f_is_lowered_when_rejections_leave_few_updates():
    """Krum needs n >= 2f + 3: the aggregator lowers f (deterministically) instead of failing the round."""
    from ml.rounds import effective_strategy

    assert effective_strategy("multi_krum", {"f": 4}, 10) == ("multi_krum", {"f": 3})
    assert effective_strategy("krum", {"f": 2}, 7) == ("krum", {"f": 2})
    assert effective_strategy("krum", {"f": 2}, 5) == ("krum", {"f": 1})
    assert effective_strategy("multi_krum", {"f": 1}, 2) == ("fedavg", {})
    assert effective_strategy("trimmed_mean", {"beta": 0.2}, 2) == ("trimmed_mean", {"beta": 0.2})


def test_krum_round_with_rejections_still_finalizes(tmp_path):
    """5 clients, krum f=1, 2 NaN attackers: 3 valid updates allow only f=0, and the round finalizes."""
    res = Federation(small_cfg(tmp_path, clients=5, rounds=1, attackers=2, attack="nan", strategy="krum",
                               krum_f=1)).run()
    assert res.rows[0].status == "finalized" and res.rows[0].rejected == 2


@pytest.mark.slow
def test_parallel_training_gives_the_same_models(tmp_path):
    """--workers 2 trains the chosen clients in two processes: every round's model, and so the final one,
    is bit-identical to --workers 1 (the CNN, whose float sums depend on TensorFlow's thread settings)."""
    seq = Federation(small_cfg(tmp_path / "seq", clients=4, arch="cnn", workers=1)).run()
    par = Federation(small_cfg(tmp_path / "par", clients=4, arch="cnn", workers=2)).run()
    assert [r.status for r in par.rows] == ["finalized", "finalized"]
    assert [r.model_hash for r in par.rows] == [r.model_hash for r in seq.rows]
    assert len({r.model_hash for r in par.rows}) == 2 and all(r.model_hash for r in par.rows)
    assert par.final_model_hash == seq.final_model_hash
    assert [r.accepted for r in par.rows] == [4, 4]
    assert (seq.report["training_workers"], par.report["training_workers"]) == (1, 2)
    assert par.report["config"]["workers"] == 2


@pytest.mark.slow
def test_workers_auto_moves_to_workers_mid_run_with_the_same_models(tmp_path, monkeypatch):
    """--workers auto trains round 1 here, starts workers when round 1 says they pay off (here: always,
    the start-up estimate set to 0) and moves to them once ready (here: waited for, so the switch is at
    round 2): the models are those of --workers 1, bit for bit."""
    import ml.parallel

    monkeypatch.setattr(ml.parallel, "WORKER_STARTUP_ESTIMATE", 0.0)
    monkeypatch.setattr(ml.parallel.TrainingPool, "ready", lambda self: self.wait_ready() >= 0)
    lines: list[str] = []
    fed = Federation(small_cfg(tmp_path / "auto", clients=4, arch="cnn", rounds=3, workers="auto"))
    fed.log = lambda *a: lines.append(" ".join(map(str, a)))
    auto = fed.run()
    seq = Federation(small_cfg(tmp_path / "seq", clients=4, arch="cnn", rounds=3, workers=1)).run()
    assert [r.model_hash for r in auto.rows] == [r.model_hash for r in seq.rows]
    assert any("starting 2 worker processes in the background" in m for m in lines), lines
    assert any("local training now on 2 worker processes" in m for m in lines), lines
    assert auto.report["training_workers"] == 2 and auto.report["config"]["workers"] == "auto"


def test_workers_pay_off_only_when_they_save_more_than_their_start_up():
    from ml.parallel import workers_pay_off

    # 2 workers halve a round's training at best: 0.1 s a round over 10 rounds saves 0.5 s.
    assert not workers_pay_off(0.1, 10, 2, startup=8.0)
    assert workers_pay_off(2.0, 10, 2, startup=8.0)  # saves 10 s
    assert not workers_pay_off(2.0, 7, 2, startup=8.0)  # saves 7 s
    assert not workers_pay_off(100.0, 10, 1, startup=8.0)  # one process: nothing to split
    assert not workers_pay_off(100.0, 0, 2, startup=8.0)  # no round left
