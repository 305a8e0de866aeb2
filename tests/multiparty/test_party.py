"""The party logic in one process on the embedded chain (fast), and its small helpers.

The multi-process tests (test_processes.py) show the same loops as separate `ape run` processes; here
the steps are driven one by one so the interesting cases are deterministic: a client that misses a
round and catches up on the next, a rejected (slashed) update and a top-up, verify_round's checks.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ml.chain import Phase, UpdateStatus
from ml.parties import (
    Abandoned,
    AggregatorOptions,
    AggregatorParty,
    ClientOptions,
    ClientParty,
    PartyError,
    Stop,
    deploy_job,
    load_npz,
    make_deploy_config,
    open_job,
    parse_duration,
    parse_eth,
    read_config_file,
    split_dataset,
)
from ml.sealing import load_private_key
from ml.verify import FAIL, verify_round

WEI = 10**18


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("text,wei", [(0.1, WEI // 10), ("0.1", WEI // 10), ("0.1 ether", WEI // 10),
                                      ("100 gwei", 100 * 10**9), ("5 wei", 5), (1, WEI), ("1e-3", WEI // 1000)])
def test_parse_eth(text, wei):
    assert parse_eth(text) == wei


@pytest.mark.parametrize("bad", ["ten", "1 btc", "0.5 wei", True, "-1"])
def test_parse_eth_rejects(bad):
    with pytest.raises(PartyError):
        parse_eth(bad)


@pytest.mark.parametrize("text,seconds", [(600, 600), ("600", 600), ("30s", 30), ("10m", 600), ("1h", 3600),
                                          ("2d", 172800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_deploy_config_file_then_options(tmp_path):
    yml = tmp_path / "job.yaml"
    yml.write_text("min-stake: 0.5\nsubmission_period: 5m\nstrategy: trimmed_mean\ntrim_beta: 0.1\nreward: 100 gwei\n")
    js = tmp_path / "job.json"
    js.write_text(json.dumps({"quorum": 2, "strategy": "multi_krum", "strategy_params": {"f": 2}}))
    cfg = make_deploy_config(read_config_file(yml), {"submission_period": "1h", "quorum": None})
    assert (cfg.min_stake, cfg.submission_period, cfg.reward) == (WEI // 2, 3600, 100 * 10**9)
    assert cfg.strategy == "trimmed_mean" and cfg.strategy_params == {"beta": 0.1}
    cfg = make_deploy_config(read_config_file(js), {"krum_f": None})
    assert cfg.quorum == 2 and cfg.strategy_params == {"f": 2}
    with pytest.raises(PartyError, match="unknown deploy setting 'stake'"):
        make_deploy_config({"stake": 1})
    with pytest.raises(PartyError, match="takes no parameter"):
        make_deploy_config({"strategy": "fedavg", "strategy_params": {"beta": 0.2}})
    with pytest.raises(PartyError, match="cap"):
        make_deploy_config({"quorum": 3, "cap": 2})


def test_split_writes_one_file_per_client(tmp_path):
    res = split_dataset("digits", 3, tmp_path, scheme="dirichlet", alpha=0.5, seed=1)
    xs = [load_npz(p) for p in res["clients"]]
    assert sum(len(x) for x, _ in xs) == len(res["dataset"].y_train)
    x, y = load_npz(res["eval"])
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.float32 and y.dtype == np.int64
    np.savez(tmp_path / "bad.npz", features=x)
    with pytest.raises(PartyError, match="needs 'x' and 'y'"):
        load_npz(tmp_path / "bad.npz")


def test_stop_interrupts_a_wait():
    stop = Stop()
    stop.event.set()
    assert stop.wait_for(lambda: False, timeout=60) is False  # returns at once, not after 60 s


def test_first_signal_stops_after_the_step_second_abandons_it():
    import os
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    said: list[str] = []
    try:
        stop = Stop().install(said.append)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.sleep(5) is True and stop.requested and stop.signal_name == "SIGTERM"
        assert "finishing the current step" in said[0]
        with pytest.raises(Abandoned):
            os.kill(os.getpid(), signal.SIGINT)
            stop.sleep(5)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------- the loops, step by step


def test_parties_step_by_step_on_the_embedded_chain(tmp_path, accounts, chain):
    files = split_dataset("digits", 3, tmp_path / "data", seed=0)
    cfg = make_deploy_config({"fund": 1, "reward": "0.01", "submission_period": "1h", "slash_bps": 5000})
    deps = tmp_path / "deployments.json"
    res = deploy_job(accounts[0], cfg, aggregator=str(accounts[1].address), key_file=tmp_path / "agg.key",
                     store=str(tmp_path / "store"), deployments=deps, log=lambda m: None)
    assert res.key_generated and (tmp_path / "agg.key").stat().st_mode & 0o077 == 0
    with pytest.raises(PartyError, match="--replace"):
        deploy_job(accounts[0], cfg, key_file=tmp_path / "agg.key", store=str(tmp_path / "store"),
                   deployments=deps)

    job = open_job(deps)
    key = load_private_key(tmp_path / "agg.key")
    logs: list[str] = []
    fast = dict(poll=0.01, max_poll=0.01)
    clients = [ClientParty(accounts[2 + i], job, *load_npz(f), ClientOptions(rounds=2, **fast), log=logs.append)
               for i, f in enumerate(files["clients"])]
    for c in clients:
        c._ensure_registered()
    agg = AggregatorParty(accounts[1], job, key, AggregatorOptions(rounds=2, advance_time=True, patience=0, **fast),
                          log=logs.append)
    with pytest.raises(PartyError, match="aggregator role"):
        AggregatorParty(accounts[2], job, key, AggregatorOptions(), log=logs.append)
    fl = job.fl

    # Round 1: client 0 is down; client 2 sends NaN weights (rejected and slashed); time runs out.
    clients[2].client.attack = "nan"
    r1 = agg.agg.open_round()
    for c in clients[1:]:
        assert c._step() is False
    agg._wait_and_finalize(r1, None)
    assert fl.round(r1).phase == Phase.FINALIZED and fl.round(r1).accepted == 1
    assert fl.update(r1, clients[0].address).status == UpdateStatus.NONE
    assert fl.update(r1, clients[2].address).status == UpdateStatus.REJECTED
    assert any("moved the dev chain's time past the deadline" in m for m in logs)
    assert f"round {r1}: missed by {clients[0].address[:10]}…" in logs  # the aggregator names who missed it

    # Round 2: client 0 catches up; client 2 (slashed below the minimum) tops up and takes part.
    clients[2].client.attack = None
    clients[2].opts.top_up = True
    r2 = agg.agg.open_round()
    for c in clients:
        for _ in range(3):  # a client that submitted last round first sees that round close, then takes part
            if r2 in c.submitted:
                break
            c._step()
        assert r2 in c.submitted
    assert fl.can_propose(r2)  # everyone is in: no need to wait for the deadline
    agg._wait_and_finalize(r2, None)
    for c in clients:
        c._settle()
        assert c._done(fl.current_round())
    assert [sorted(c.submitted) for c in clients] == [[2], [1, 2], [1, 2]]
    assert any("topped the stake up" in m for m in logs)
    assert fl.update(r1, clients[1].address).status == UpdateStatus.CLAIMED
    assert all(fl.update(r2, c.address).status == UpdateStatus.CLAIMED for c in clients)
    assert clients[1].received > clients[0].received > 0  # two rounds of rewards vs one

    # verify_round: the public checks and the re-computation pass for both rounds ...
    kw = dict(chain_id=job.chain_id, strategy=job.strategy, strategy_params=job.strategy_params)
    for r in (r1, r2):
        rep = verify_round(fl, job.store, job.spec, r, private_key=key, **kw)
        assert rep.ok, rep.checks
        assert [c.status for c in rep.checks if c.name == "re-computation"] == ["pass"]
    slash = next(c for c in verify_round(fl, job.store, job.spec, r1, **kw).checks if c.name == "slashes")
    assert slash.status == "pass" and "1 rejected" in slash.detail
    # ... and an update blob altered afterwards is caught by both.
    victim = fl.submissions(r2)[0]
    path = job.store.path_for(victim.commitment)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    rep = verify_round(fl, job.store, job.spec, r2, private_key=key, **kw)
    assert {c.name for c in rep.checks if c.status == FAIL} == {"accepted update blobs", "re-computation"}
    assert "does NOT check out" in rep.summary()


def test_waiting_line_names_the_missing_clients_and_the_time_left():
    from ml.parties.aggregator import waiting_line

    a, b = "0x" + "a1" * 20, "0x" + "b2" * 20
    assert waiting_line(36, 3, 4, [a], 95) == f"round 36: 3/4 update(s) in; waiting for {a[:10]}…; deadline in 95 s"
    line = waiting_line(2, 0, 7, [a, b] * 3 + [a], 7325, show=2)
    assert line.endswith("waiting for 0xa1a1a1a1…, 0xb2b2b2b2… and 5 more; deadline in 2 h 02 min")
    assert waiting_line(1, 2, 2, [], -5) == "round 1: 2/2 update(s) in; deadline passed"
    assert waiting_line(1, 0, 1, [], 600).endswith("deadline in 10 min 00 s")


def test_node_trouble_is_transient_however_wrapped_and_said_in_a_few_words():
    """What the trial saw: Ape's VirtualMachineError around a reset connection was not retried."""
    from ape.exceptions import ContractLogicError, VirtualMachineError

    from ml.chain import ChainError
    from ml.parties.lifecycle import is_transient, one_line

    reset = VirtualMachineError(str(("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))))
    wrapped = ChainError("submitUpdate by 0xabc", "VirtualMachineError", detail=str(reset), reverted=False)
    refused = RuntimeError("HTTPConnectionPool(host='127.0.0.1', port=8545): Max retries exceeded with url: / "
                           "(Caused by NewConnectionError(...: Failed to establish a new connection: "
                           "[Errno 111] Connection refused))")
    for exc in (reset, wrapped, refused, ConnectionResetError(104, "reset"), TimeoutError("read timed out")):
        assert is_transient(exc), exc
    assert one_line(reset) == one_line(wrapped) == "connection reset" and one_line(refused) == "connection refused"
    # A revert is the contract saying no, even if its text looked like trouble; a bug is a bug.
    assert not is_transient(ChainError("submitUpdate by 0xabc", "DeadlinePassed", {"deadline": 5}))
    assert not is_transient(ContractLogicError("execution reverted"))
    assert not is_transient(KeyError("phase"))
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("could not read the round") from inner
    except RuntimeError as outer:
        assert is_transient(outer)  # found through __cause__


def test_missed_line_names_clients_and_says_what_a_long_streak_costs():
    from ml.parties.aggregator import missed_line

    a, b = "0x" + "ab" * 20, "0x" + "cd" * 20
    assert missed_line(4, {a: 1}, [a]) == f"round 4: missed by {a[:10]}…"
    line = missed_line(9, {a: 3, b: 2}, [a, b])
    assert line.startswith(f"round 9: missed by {a[:10]}… (3 rounds in a row), {b[:10]}… (2 rounds in a row); ")
    assert "stays active" in line and "requestExit" in line


def test_a_dry_reward_pool_is_a_warning():
    from ml.parties.aggregator import pool_warning

    assert pool_warning(10**18, 10**16) is None and pool_warning(0, 0) is None
    assert "reward pool is empty" in pool_warning(0, 10**16) and "paid nothing" in pool_warning(0, 10**16)
    assert "holds 0.000000000000000066 ETH" in pool_warning(66, 10**16) and "paid less" in pool_warning(66, 10**16)


def test_a_client_party_reads_two_views_a_round_and_one_per_poll(tmp_path, accounts, chain):
    """`ape run client`'s reads, counted on its own FLContract: one view when a round opens (the round,
    its update, its stake, the sealing key), one when a poll sees the round close (kept, so that
    settling reads none); a poll with no new block reads no view at all."""
    files = split_dataset("digits", 2, tmp_path / "data", seed=0)
    cfg = make_deploy_config({"fund": 1, "reward": "0.01", "submission_period": "1h"})
    deps = tmp_path / "deployments.json"
    deploy_job(accounts[0], cfg, aggregator=str(accounts[1].address), key_file=tmp_path / "agg.key",
               store=str(tmp_path / "store"), deployments=deps, log=lambda m: None)
    agg_job, own_job = open_job(deps), open_job(deps)  # the client's reads alone on own_job.fl
    assert agg_job.fl is not own_job.fl
    fast = dict(poll=0.01, max_poll=0.01)
    me = ClientParty(accounts[2], own_job, *load_npz(files["clients"][0]), ClientOptions(rounds=3, **fast),
                     log=lambda m: None)
    me._ensure_registered()
    agg = AggregatorParty(accounts[1], agg_job, load_private_key(tmp_path / "agg.key"),
                          AggregatorOptions(rounds=3, advance_time=True, patience=0, **fast), log=lambda m: None)
    views = lambda: sum(own_job.fl.view_calls.values())  # noqa: E731
    per_round = []
    for r in (1, 2, 3):
        assert agg.agg.open_round() == r
        before = views()
        assert me._step() is False and r in me.submitted  # one view: the round opened; then it submits
        agg._wait_and_finalize(r, None)
        assert me._step() is False  # waits from the view read before submitting: one poll sees the round close
        per_round.append(views() - before)
    assert per_round == [3, 2, 2]  # round 1 also reads the committee (fixed at deployment: read once)
    before = views()
    assert me._step() is True  # round 3 closed: settled from the poll's view, done after one more view
    assert views() - before == 1
    assert all(agg_job.fl.update(r, me.address).status == UpdateStatus.CLAIMED for r in (1, 2, 3))
    assert me.received > 0 and own_job.fl.owed(me.address) == 0
    # No new block since the last look: a poll asks for the head only.
    before = views()
    me.opts.rounds = 0
    state_changed = []
    me.stop.wait_for(lambda: state_changed.append(1) or False, 0.05, 0.01, 0.01)
    assert views() == before
