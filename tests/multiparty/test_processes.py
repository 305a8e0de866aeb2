"""A real federation: one `ape run` process per party on Anvil, meeting only on the chain and the store.

Small settings (digits, 3 clients, 1 local epoch) so that each test takes about a minute and a half,
most of it starting Python, Ape and TensorFlow in each process.
"""
from __future__ import annotations

import re
import shutil
import stat

import pytest

from ml.parties import split_dataset
from tests.multiparty.harness import NETWORK, SIGINT, SIGTERM, address_of, alter_blob, on_anvil

pytestmark = [pytest.mark.slow, pytest.mark.anvil]

ROUND_TIME = re.compile(r"round (\d+) finalized: 3 accepted.*?round time ([0-9.]+) s")


def _job_files(tmp_path):
    data = split_dataset("digits", 3, tmp_path / "data", seed=0)
    config = tmp_path / "job.yaml"
    config.write_text("# job settings for `ape run deploy --config`\n"
                      "min_stake: 0.1\nsubmission_period: 1h\ngrace: 10m\nunbonding: 1h\nquorum: 2\n"
                      "slash_bps: 5000\nreward: 0.01 ether\nfund: 1\nseed: 0\nstrategy: fedavg\n")
    return data, config, tmp_path / "deployments.json", tmp_path / "store", tmp_path / "aggregator.key"


def _verify(parties, name, *args):
    return parties.start(name, "run", "verify_round", *args, "--network", NETWORK)


def test_separate_processes_two_rounds_verified(tmp_path, parties):
    """deploy -> aggregator + 2 verifiers + 3 clients (encrypted accounts, autosign) -> 2 rounds, a verifier
    killed mid-round and restarted -> verify_round (no key, and a verifier's key); tampering fails."""
    data, config, deployments, store, key = _job_files(tmp_path)
    parties.import_accounts({"fl_admin": 0, "fl_aggregator": 1, "fl_client_0": 2, "fl_client_1": 3,
                             "fl_client_2": 4, "fl_verifier_0": 5, "fl_verifier_1": 6})
    common = ["--network", NETWORK, "--deployments", deployments]

    # A wrong passphrase is one line saying so, not a traceback (and nothing is sent).
    rc, out = parties.run("wrong-passphrase", "run", "client", *common, "--account", "fl_client_0", "--data",
                          data["clients"][0], env={"APE_ACCOUNTS_fl_client_0_PASSPHRASE": "not-it"})
    assert rc == 1 and "does not unlock account 'fl_client_0'" in out and "Traceback" not in out, out

    # Each verifier makes its own key and hands ADDRESS:KEY to the deployer.
    vkeys = [tmp_path / f"verifier-{i}.key" for i in range(2)]
    shows = [parties.start(f"show-key{i}", "run", "verifier", "--network", NETWORK, "--account", f"fl_verifier_{i}",
                           "--key-file", vkeys[i], "--show-key") for i in range(2)]
    assert [p.wait(120) for p in shows] == [0, 0], [p.text() for p in shows]
    members = [re.search(r"(0x[0-9a-fA-F]{40}:0x[0-9a-f]{64})", p.text()).group(1) for p in shows]
    assert [m.split(":")[0] for m in members] == [address_of(5), address_of(6)]
    assert stat.S_IMODE(vkeys[0].stat().st_mode) == 0o600

    rc, out = parties.run("deploy", "run", "deploy", *common, "--account", "fl_admin", "--config", config,
                          "--aggregator", address_of(1), "--aggregator-key-file", key, "--store", store,
                          "--verifier", members[0], "--verifier", members[1], "--threshold", "2")
    assert rc == 0, out
    assert "2 verifier(s), threshold 2" in out
    assert "generated into" in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip()[2:] not in out  # the private key is never printed

    agg = parties.start("aggregator", "run", "aggregator", *common, "--account", "fl_aggregator",
                        "--key-file", key, "--eval-data", data["eval"], "--min-clients", "3", "--poll", "1")
    def verifier(i, name):
        return parties.start(name, "run", "verifier", *common, "--account", f"fl_verifier_{i}",
                             "--key-file", vkeys[i], "--rounds", "2", "--poll", "1")

    v0, v1 = verifier(0, "verifier0"), verifier(1, "verifier1")
    clients = [parties.start(f"client{i}", "run", "client", *common, "--account", f"fl_client_{i}",
                             "--data", data["clients"][i], "--rounds", "2", "--poll", "1") for i in range(3)]
    # Verifier 0 dies while round 1 is open; the proposal waits for it (2 of 2 must attest).
    v0.wait_for(r"round 1 is open: waiting for its proposal")
    v0.kill()
    agg.wait_for(r"round 1 proposed \(digest 0x[0-9a-f]+…?\): waiting for the committee")
    v1.wait_for(r"round 1: attests")
    assert "round 1 finalized" not in agg.text()
    v0b = verifier(0, "verifier0-restart")
    v0b.wait_for(r"round 1: attests")
    agg.wait_for(r"round 1 finalized: 3 accepted")
    for v in (v0b, v1):
        assert v.wait(240) == 0, v.text()
        assert "round 2: attests" in v.text() and "exiting: round 2 is closed" in v.text()
    for c in clients:
        assert c.wait(240) == 0, c.text()
        text = c.text()
        assert "unlocked from APE_ACCOUNTS_" in text
        assert len(re.findall(r"round [12]: submitted update", text)) == 2
        assert len(re.findall(r"round [12]: claimed", text)) == 2
        assert "exiting: round 2 is closed" in text

    # The aggregator (no --rounds) has opened round 3 and waits: Ctrl-C stops it cleanly.
    agg.wait_for(r"round 3 started")
    agg.signal(SIGINT)
    assert agg.wait(60) == 0
    log = agg.text()
    assert "SIGINT received" in log and "exiting: stopped by SIGINT" in log
    times = {int(r): float(s) for r, s in ROUND_TIME.findall(log)}
    assert set(times) >= {1, 2}, log
    print(f"round times with separate processes: {times}")

    # Anyone can check rounds 1 and 2; the key holder re-computes them bit for bit.
    tampered = tmp_path / "store-copy"
    shutil.copytree(store, tampered)
    m = re.search(r"round 2 finalized: .*? model (0x[0-9a-f]+)", log)
    (model,) = [p for p in tampered.iterdir() if p.name.startswith(m.group(1)[2:].rstrip("…"))]
    alter_blob(model)
    checks = [
        _verify(parties, "verify", "1", "2", "--deployments", deployments, "--key-file", key),
        _verify(parties, "verify-tampered", "2", "--deployments", deployments, "--store", tampered),
        _verify(parties, "verify-verifier-key", "all", "--deployments", deployments, "--key-file", vkeys[1]),
    ]
    rcs = [p.wait(120) for p in checks]
    good, bad, by_verifier = (p.text() for p in checks)
    assert rcs[0] == 0, good
    assert re.search(r"round 1 checks out: 1[0-9] check\(s\) passed, 0 skipped", good), good
    assert re.search(r"round 2 checks out: 1[0-9] check\(s\) passed, 0 skipped", good), good
    assert "2 of 2 verifier(s) attested" in " ".join(re.sub("[│┃]", " ", good).split())
    assert rcs[2] == 0 and "round 2 checks out" in by_verifier, by_verifier
    assert rcs[1] == 1, bad
    assert "round 2 does NOT check out: 1 check(s) failed (global model blob)" in bad
    assert "altered after it was published" in " ".join(re.sub("[│┃]", " ", bad).split())


def test_killed_parties_restart_without_loss(tmp_path, parties):
    """A client killed after submitting, one killed while training, the aggregator killed after some
    submissions: all restarted, nothing lost, every update counted once (Ape test accounts, TEST::n)."""
    data, config, deployments, store, key = _job_files(tmp_path)
    common = ["--network", NETWORK, "--deployments", deployments]
    rc, out = parties.run("deploy", "run", "deploy", *common, "--account", "TEST::0", "--config", config,
                          "--aggregator", address_of(1), "--aggregator-key-file", key, "--store", store)
    assert rc == 0, out

    def aggregator(name):
        return parties.start(name, "run", "aggregator", *common, "--account", "TEST::1", "--key-file", key,
                             "--rounds", "2", "--min-clients", "3", "--poll", "1")

    def client(i, name, epochs=1):
        return parties.start(name, "run", "client", *common, "--account", f"TEST::{2 + i}",
                             "--data", data["clients"][i], "--rounds", "2", "--poll", "1", "--epochs", str(epochs))

    agg = aggregator("aggregator")
    c0, c1 = client(0, "client0"), client(1, "client1")
    c2 = client(2, "client2", epochs=100_000)  # would train for an hour: killed while training

    # client 0 submits to round 1, then dies.
    first = c0.wait_for(r"round 1: submitted update (0x[0-9a-f]+)").group(1)
    c0.kill()
    # client 1 submits; the aggregator sees 2 of 3 updates and dies before finalizing.
    c1.wait_for(r"round 1: submitted update")
    agg.wait_for(r"round 1: 2/3 update")
    agg.kill()
    # client 2 is still training: it dies too.
    c2.wait_for(r"round 1: training")
    c2.kill()
    assert "round 1: submitted" not in c2.text()

    # Everyone comes back. Client 0's first restart gets SIGTERM while starting up: it exits cleanly (0).
    c0b = client(0, "client0-restart1")
    c2b = client(2, "client2-restart")
    agg2 = aggregator("aggregator-restart")
    c0b.wait_for(r"client .*: job 0x")
    c0b.signal(SIGTERM)
    assert c0b.wait(120) == 0, c0b.text()
    assert "SIGTERM received" in c0b.text() and "exiting: stopped by SIGTERM" in c0b.text()
    # Its next restart finds its round-1 update on chain and does not submit again.
    c0c = client(0, "client0-restart2")
    c0c.wait_for(r"already submitted to round\(s\) 1 ")
    agg2.wait_for(r"round 1 is open: resuming it")
    c2b.wait_for(r"round 1: submitted update")
    agg2.wait_for(r"round 1 finalized: 3 accepted")
    for p in (agg2, c0c, c1, c2b):
        assert p.wait(240) == 0, p.text()
    assert "round 2 finalized: 3 accepted" in agg2.text()
    assert "round 1: submitted" not in c0c.text() and "round 2: submitted" in c0c.text()
    assert "round 1: claimed" in c0c.text()  # the reward of the update it sent before dying

    # What the chain recorded: one update per client per round, client 0's first one kept.
    from ml.chain import FLContract, Phase, UpdateStatus, load_deployment

    dep = load_deployment(deployments, NETWORK)
    with on_anvil(parties.url):
        fl = FLContract.at(dep.address, deploy_block=dep.block)
        clients = [address_of(2 + i) for i in range(3)]
        for r in (1, 2):
            info = fl.round(r)
            assert info.phase == Phase.FINALIZED and info.submissions == 3 and info.accepted == 3
            subs = fl.submissions(r)
            assert sorted(s.client for s in subs) == sorted(clients)
            assert all(fl.update(r, c).status == UpdateStatus.CLAIMED for c in clients)
        assert fl.update(1, clients[0]).commitment.hex().startswith(first[2:].rstrip("…"))
        stake = fl.params().minStake
        assert all(fl.client(c).stake == stake for c in clients)  # nobody lost stake

    check = parties.start("verify", "run", "verify_round", "all", *common, "--key-file", key)
    assert check.wait(120) == 0, check.text()
    assert "round 1 checks out" in check.text() and "round 2 checks out" in check.text()
