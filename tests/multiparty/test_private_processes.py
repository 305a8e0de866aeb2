"""Private mode with one `ape run` process per party on Anvil (issue 13): clients killed and restarted.

4 clients join round 1. One is killed before it submits, so the chain counts it as dropped. Another is
killed after joining too, and restarted: it finds its round secrets where it kept them and goes on. A
third is killed after submitting, and restarted: its reveal is still due, and it makes it. The
three survivors mask, submit and, once the aggregator moved the dev chain past the deadline, reveal
their shares of the dropped one; the round finalizes with 3 accepted, and anyone re-computes it without
any key.
"""
from __future__ import annotations

import pytest

from ml.parties import split_dataset
from tests.multiparty.harness import NETWORK, address_of

pytestmark = [pytest.mark.slow, pytest.mark.anvil]


def test_a_private_round_survives_clients_killed_after_joining_and_after_submitting(tmp_path, parties):
    data = split_dataset("digits", 4, tmp_path / "data", seed=0)
    config = tmp_path / "job.yaml"
    config.write_text("min_stake: 0.1\nsubmission_period: 1h\ngrace: 10m\nquorum: 2\nreward: 0.01 ether\nfund: 1\n"
                      "privacy: secagg\nsecagg_threshold: 2\njoin_period: 10m\nreveal_period: 10m\n")
    deployments, store, key = tmp_path / "deployments.json", tmp_path / "store", tmp_path / "aggregator.key"
    common = ["--network", NETWORK, "--deployments", deployments]
    rc, out = parties.run("deploy", "run", "deploy", *common, "--account", "TEST::0", "--config", config,
                          "--aggregator", address_of(1), "--aggregator-key-file", key, "--store", store)
    assert rc == 0, out
    assert "PRIVATE (secure aggregation): t = 2" in out

    agg = parties.start("aggregator", "run", "aggregator", *common, "--account", "TEST::1", "--key-file", key,
                        "--rounds", "1", "--min-clients", "4", "--advance-time", "--patience", "75", "--poll", "1")
    def client(i, name=None):
        return parties.start(name or f"client{i}", "run", "client", *common, "--account", f"TEST::{2 + i}",
                             "--data", data["clients"][i], "--rounds", "1", "--poll", "1")

    clients = [client(i) for i in range(4)]
    clients[3].wait_for(r"round 1: joined", timeout=240)
    clients[3].kill()  # joined, never submits: dropped
    clients[2].wait_for(r"round 1: joined", timeout=240)
    clients[2].kill()  # joined, killed before training: restarted below, it carries on
    clients[2] = client(2, "client2-restart")
    # (killed before or, rarely, just after its submission: either way it carries on with the kept secrets)
    clients[2].wait_for(r"round 1: (joined|submitted) before a restart; (its round secrets are back|revealing)",
                        timeout=240)
    clients[1].wait_for(r"round 1: submitted update", timeout=240)
    clients[1].kill()  # submitted, killed before it could reveal: restarted, it still reveals
    clients[1] = client(1, "client1-restart")
    clients[1].wait_for(r"round 1: submitted before a restart; revealing with the round secrets kept in", timeout=240)
    agg.wait_for(r"waiting for the survivors to reveal", timeout=240)
    agg.wait_for(r"round 1 finalized: 3 accepted", timeout=240)
    assert agg.wait(120) == 0, agg.text()
    for c in clients[:3]:
        assert c.wait(180) == 0, c.text()
        text = c.text()
        if c is clients[0]:  # (client 2 may have submitted before it was killed; client 1 had)
            assert "round 1: joined" in text and "round 1: submitted update" in text
        assert "round 1: revealed (own self-mask seed; shares of 1 dropped participant(s))" in text
        address = address_of(2 + clients.index(c))
        assert (tmp_path / f"client-{address}.key").exists()
        assert not list((tmp_path / f"client-{address}.rounds").glob("*"))  # revealed: secrets deleted

    check = parties.start("verify", "run", "verify_round", "1", *common)  # no key at all
    assert check.wait(120) == 0, check.text()
    text = " ".join(check.text().replace("│", " ").split())
    assert "round 1 checks out" in text and "private mode, no key: 3 masked vector(s) summed, 1 dropout(s)" in text
