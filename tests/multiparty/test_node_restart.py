"""The node restarts under running parties: with its state they carry on; without it they say so and stop.

The trial that filed issue 12 saw one client die on a reset connection (not retried) and every party
print 45 lines of traceback once Anvil came back without its state.
"""
from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from ml.parties import split_dataset
from tests.multiparty.harness import NETWORK, Parties, address_of
from tests.nodes import MNEMONIC, VENV_BIN, env, free_port, wait_for_rpc

pytestmark = [pytest.mark.slow, pytest.mark.anvil]


class RestartableAnvil:
    """Anvil on a fixed port, stopped (SIGINT: it writes its --state file) and started again."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tmp_path / "anvil-state.json"
        self.log = open(tmp_path / "anvil.log", "a")
        self.proc: subprocess.Popen | None = None

    def start(self, with_state: bool = True) -> None:
        exe = VENV_BIN / "anvil"
        if not exe.exists():
            pytest.skip("anvil is not installed: run `make setup`")
        args = [str(exe), "--port", str(self.port), "--mnemonic", MNEMONIC, "--accounts", "20"]
        if with_state:
            args += ["--state", str(self.state)]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env())
        wait_for_rpc(self.url, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_parties_ride_out_a_node_restart_and_name_a_lost_job(tmp_path, project):
    assert project.FederatedLearning.contract_type.name == "FederatedLearning"  # compiled once, here
    node = RestartableAnvil(tmp_path)
    node.start()
    parties = Parties(tmp_path, node.url)
    data = split_dataset("digits", 3, tmp_path / "data", seed=0)
    deployments, store, key = tmp_path / "deployments.json", tmp_path / "store", tmp_path / "agg.key"
    common = ["--network", NETWORK, "--deployments", deployments]
    try:
        rc, out = parties.run("deploy", "run", "deploy", *common, "--account", "TEST::0", "--aggregator",
                              address_of(1), "--aggregator-key-file", key, "--store", store, "--quorum", "2")
        assert rc == 0, out
        agg = parties.start("aggregator", "run", "aggregator", *common, "--account", "TEST::1", "--key-file", key,
                            "--min-clients", "3", "--poll", "1")  # no --rounds: it outlives the clients
        clients = [parties.start(f"client{i}", "run", "client", *common, "--account", f"TEST::{2 + i}",
                                 "--data", data["clients"][i], "--rounds", "2", "--poll", "1",
                                 "--epochs", str(1 if i == 0 else 40)) for i in range(3)]
        # Mid-round: client 0 has submitted, clients 1 and 2 are still training. The node goes away
        # for a few seconds and comes back with its state.
        clients[0].wait_for(r"round 1: submitted update", timeout=180)
        node.stop()
        time.sleep(4)
        node.start(with_state=True)
        agg.wait_for(r"round 1 finalized: 3 accepted", timeout=240)
        agg.wait_for(r"round 2 finalized: 3 accepted", timeout=240)
        for c in clients:
            assert c.wait(240) == 0, c.text()
        logs = {p.name: p.text() for p in (agg, *clients)}
        troubled = [n for n, t in logs.items() if "node or store unreachable" in t]
        assert troubled, "nobody noticed the node going away"
        for name, text in logs.items():
            assert "Traceback" not in text, f"{name}:\n{text}"
            for line in re.findall(r".*node or store unreachable.*", text):
                assert re.search(r"unreachable: connection (refused|reset) \(\w+\); retrying in \d+ s$", line), line
        assert all(len(re.findall(r"round [12]: submitted update", logs[c.name])) == 2 for c in clients)

        # Now the node restarts without its state: the aggregator (waiting in round 3) says the job is lost.
        agg.wait_for(r"round 3 started", timeout=120)
        node.stop()
        node.state.unlink()
        node.start(with_state=False)
        assert agg.wait(120) == 1, agg.text()
        tail = agg.text().strip().splitlines()[-1]
        assert "is no longer on the node" in tail and "ape run deploy" in tail and "--state" in tail, tail
        assert "Traceback" not in agg.text()
    finally:
        parties.stop_all()
        node.stop()
