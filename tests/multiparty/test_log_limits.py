"""Log reads behind a provider that refuses eth_getLogs over 2,000 blocks (ml.rpcproxy in front of a node).

The trial that filed issue 12 saw every party stop once the job was a few thousand blocks old. Here
the job is aged by mining 12,000 blocks at a time, and the proxy counts the eth_getLogs calls. The node
is Ganache: it mines 12,000 empty blocks in about 9 s, where Anvil takes minutes (its cost per block
grows with the chain).
"""
from __future__ import annotations

import contextlib

import pytest

from ml.chain import FLContract, JobParams, Outcome, Phase
from ml.logs import Cursor, EventReader, LogPager, LogQueryError
from ml.rpcproxy import RpcProxy
from tests.conftest import default_params
from tests.multiparty.harness import address_of
from tests.nodes import ganache, rpc

pytestmark = [pytest.mark.ganache]

AGE = 12_000  # blocks mined at a time: six times the proxy's limit


def _mine(url: str, blocks: int) -> None:
    rpc(url, "evm_mine", [{"blocks": blocks}], timeout=120)  # Ganache (timestampIncrement 0): no time passes


@contextlib.contextmanager
def on_node(url: str):
    """Connects this (test) process to the node at `url` through Ape's generic node provider."""
    from ape import networks

    with networks.parse_network_choice(f"ethereum:local:{url}"):
        yield


def _log_calls(proxy: RpcProxy) -> int:
    return proxy.counts.get("eth_getLogs", 0)


@pytest.fixture
def node():
    with ganache() as url:
        yield url


@pytest.fixture
def proxy(node):
    with RpcProxy(node, max_range=2000) as p:
        yield p


def test_round_reads_do_not_grow_with_age(node, proxy, tmp_path):
    """Submissions, verdicts, the proposal and the roster cursor read a few pages, at any job age."""
    from ape import accounts, chain

    with on_node(proxy.url):
        admin, agg, *clients = (accounts.test_accounts[i] for i in range(5))
        fl = FLContract.deploy(admin, JobParams(**default_params(quorum=1, slashBps=5000)), admin.address,
                               agg.address)
        for c in clients:
            fl.register(c, b"\x44" * 32, fl.params().minStake)
        cursor_file = tmp_path / "cursors.json"
        per_round = []
        for r in (1, 2, 3):
            _mine(node, AGE)  # the job ages 12,000 blocks between rounds
            before = _log_calls(proxy)
            assert fl.start_round(agg) == r
            for i, c in enumerate(clients):
                fl.submit(c, r, bytes([r, i + 1]) * 16, 10 + i, f"loc-{r}-{i}")
            subs = fl.submissions(r)
            assert [s.client for s in subs] == [c.address for c in clients]
            outcome = Outcome.of(b"\x55" * 32, {clients[0].address: 6}, [clients[1].address], model_locator=f"m{r}")
            fl.propose(agg, r, outcome)
            info = fl.round(r)
            assert info.phase == Phase.FINALIZED and info.closed_block == chain.blocks.height
            (slash,) = fl.round_logs("UpdateRejected", info)
            assert slash.client == clients[0].address and slash.stakeBefore * 5000 // 10_000 == slash.slashed
            assert [e.event_name for e in fl.round_logs(["UpdateRejected", "UpdateExcluded", "RoundFinalized"],
                                                        info)] == ["UpdateRejected", "UpdateExcluded",
                                                                   "RoundFinalized"]
            assert fl.model_locator(r) == f"m{r}"
            fl.top_up(clients[0], int(slash.slashed))  # back to the minimum, to submit next round
            # A roster that restarts each round from its saved cursor reads only the blocks since.
            cursor = Cursor.load(cursor_file, "ClientRegistered", fl.deploy_block)
            new = fl.logs("ClientRegistered", cursor.block, chain.blocks.height)
            cursor.advance(chain.blocks.height + 1, (str(e.client) for e in new))
            assert cursor.items == [c.address for c in clients]
            per_round.append(_log_calls(proxy) - before)
        # Rounds 2 and 3 cost the same number of queries although the job is 24,000 then 36,000 blocks old:
        # one for the submissions, two for the verdicts, one for the proposal, and the roster's read of
        # the 12,000 blocks mined since its cursor in pages of 2,000 (the limit the refusal named). Round 1
        # also paid the refusals that set the page size.
        assert per_round[1] == per_round[2] == 4 + -(-(AGE + 8) // 2000), per_round
        assert proxy.refused <= 2, proxy.refused
        # The whole-history audit still works behind the limit: in pages, each under 2,000 blocks.
        before = _log_calls(proxy)
        assert len(fl.events("UpdateSubmitted")) == 3 * len(clients)
        assert _log_calls(proxy) - before >= 3 * AGE // 2000


def test_pager_splits_on_a_result_size_refusal_and_names_a_single_block_refusal(node):
    """A size refusal splits that page only; a refusal of one block is a one-line error, not a loop."""
    from ape import accounts

    with on_node(node):
        admin, agg, c = (accounts.test_accounts[i] for i in range(3))
        fl = FLContract.deploy(admin, JobParams(**default_params()), admin.address, agg.address)
        fl.register(c, b"\x44" * 32, fl.params().minStake)
        _mine(node, 50)
        fl.top_up(c, 1)
        calls = []

        def picky(filt):  # refuses any answer of more than one log, like a result-size cap
            calls.append(filt)
            from ape import chain

            logs = chain.provider.web3.eth.get_logs(filt)
            if len(logs) > 1:
                raise ValueError({"code": -32005, "message": "query returned more than 1 results"})
            return logs

        reader = EventReader(fl.contract, LogPager(picky))
        logs = reader.read(["ClientRegistered", "StakeToppedUp"], fl.deploy_block, None)
        assert [e.event_name for e in logs] == ["ClientRegistered", "StakeToppedUp"]
        assert reader.pager.ceiling == 100_000  # a size refusal does not lower the page for good
        assert reader.pager.refusals >= 1

        def never(filt):
            raise ValueError({"code": -32005, "message": "block range is too large"})

        with pytest.raises(LogQueryError, match=r"refuses eth_getLogs even for block \d+"):
            EventReader(fl.contract, LogPager(never)).read("ClientRegistered", fl.deploy_block, None)


@pytest.mark.slow
def test_parties_behind_a_2000_block_limit_on_an_aged_job(tmp_path, node, proxy, project):
    """deploy, 12,000 blocks, then an aggregator, a verifier and 3 clients (separate processes, all through
    the proxy) run 2 rounds with 12,000 more blocks mined between them; verify_round checks both."""
    import re

    from ml.parties import split_dataset
    from tests.multiparty.harness import Parties

    assert project.FederatedLearning.contract_type.name == "FederatedLearning"  # compiled once, here
    parties = Parties(tmp_path, proxy.url)
    network = f"ethereum:local:{proxy.url}"
    data = split_dataset("digits", 3, tmp_path / "data", seed=0)
    deployments, store, key, vkey = (tmp_path / n for n in ("deployments.json", "store", "agg.key", "v.key"))
    common = ["--network", network, "--deployments", deployments]
    try:
        rc, out = parties.run("show-key", "run", "verifier", "--network", network, "--account", "TEST::5",
                              "--key-file", vkey, "--show-key")
        assert rc == 0, out
        member = re.search(r"(0x[0-9a-fA-F]{40}:0x[0-9a-f]{64})", out).group(1)
        rc, out = parties.run("deploy", "run", "deploy", *common, "--account", "TEST::0", "--aggregator",
                              address_of(1), "--aggregator-key-file", key, "--store", store, "--quorum", "2",
                              "--verifier", member, "--threshold", "1", "--fund", "1")
        assert rc == 0, out
        _mine(node, AGE)  # the job is 12,000 blocks old before anybody starts
        proxy.counts.clear()
        agg = parties.start("aggregator", "run", "aggregator", *common, "--account", "TEST::1", "--key-file", key,
                            "--eval-data", data["eval"], "--rounds", "2", "--min-clients", "3", "--poll", "1")
        ver = parties.start("verifier", "run", "verifier", *common, "--account", "TEST::5", "--key-file", vkey,
                            "--rounds", "2", "--poll", "1")
        clients = [parties.start(f"client{i}", "run", "client", *common, "--account", f"TEST::{2 + i}",
                                 "--data", data["clients"][i], "--rounds", "2", "--poll", "1") for i in range(3)]
        agg.wait_for(r"round 1 finalized: 3 accepted", timeout=300)
        first = _log_calls(proxy)
        _mine(node, AGE)  # 12,000 more blocks between the rounds
        agg.wait_for(r"round 2 finalized: 3 accepted", timeout=300)
        for p in (agg, ver, *clients):
            assert p.wait(240) == 0, p.text()
        second = _log_calls(proxy) - first
        check = parties.start("verify", "run", "verify_round", "all", *common)
        assert check.wait(180) == 0, check.text()
        assert "round 1 checks out" in check.text() and "round 2 checks out" in check.text()
        print(f"eth_getLogs: round 1 {first}, round 2 {second}, refused {proxy.refused}; "
              f"all calls {sum(proxy.counts.values())}")
        # Five parties, each reading a round's blocks and a cursor: a few dozen queries a round, not the
        # hundreds a scan from the deploy block takes at this age (36,000 blocks / 2,000 per page, per query).
        assert second <= 30, proxy.counts
    finally:
        parties.stop_all()
