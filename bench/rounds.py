"""Whole rounds through the contract: overhead split, scale, robustness.

    .venv/bin/python -m bench.rounds [--quick] [--part overhead|scale|robustness] [--out bench/results]

- overhead: 10 clients on digits, on the embedded chain and on Anvil: time per
  round split into training, evaluation, encode+seal+store, chain transactions
  and aggregation; overhead ratio = (round time - training - evaluation) / round time.
- scale: 10, 50 and 100 clients per round on Anvil: round time and gas per round.
- committee: 10 clients, 5 rounds, trusted mode against 2 verifiers (m = 2) and 3
  (m = 2), on the embedded chain and Anvil: round time and its ratio to trusted
  mode, gas per round; the bytes a seal adds per recipient.
- floor: on each chain, one round's transactions (startRound, 10 submitUpdate,
  proposeRound, 2 attest: what a federated_round round sends) sent three ways in one run: pre-signed raw transactions straight
  to the node (the floor), the same calls through our FLContract (its direct path), and
  the chain part of a real federated_round round (transactions and views);
  each as a ratio to the floor.
- default: `ape run federated_round` with its default settings (5 clients, 5 rounds,
  the centralized baseline) end to end, node start-up included, on the embedded
  chain and on an Anvil that ape-foundry starts: which should be the default.
- aging: 10 clients, 50 rounds, on the embedded chain and on Anvil: round time and
  chain time by round number (flat: no query grows with the job's age); a PNG plot.
- private: private mode (secure aggregation) against robust mode, same workload and seed, in one
  run, on the embedded chain and Anvil: round time and its ratio to robust mode, gas per round,
  the extra transactions per client (joinRound, revealShares) and their gas, with and without
  dropouts; the bytes of a masked update against a sealed one (bench.secagg times the masking).
- robustness: 10 clients with 0 to 4 attackers of each kind, for each strategy:
  final accuracy, attackers rejected (slashed) or excluded, honest clients
  wrongly excluded.

A benchmark asserts correctness (every round finalized, provably invalid
updates rejected), never a timing. Results go to OUT/rounds_<part>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ml.parties.federation import Federation, FederationConfig

CORE_PHASES = ("training", "evaluation", "encode_seal_store", "chain", "aggregation")


def _run(network: str, **cfg: Any):
    from ape import networks
    from ape.logging import logger

    logger.set_level("ERROR")
    with tempfile.TemporaryDirectory() as tmp, networks.parse_network_choice(network):
        cfg.setdefault("out", Path(tmp) / "out")
        cfg.setdefault("quiet", True)
        cfg.setdefault("baseline", False)
        cfg.setdefault("workers", 1)  # training in this process: these parts measure the chain (bench.parallel: workers)
        res = Federation(FederationConfig(**cfg)).run()
        assert all(r.status == "finalized" for r in res.rows), [r.status for r in res.rows]
        return res


def overhead(quick: bool) -> dict[str, Any]:
    rows = []
    nets = [("embedded", "ethereum:local:test"), ("anvil", "ethereum:local:foundry")]
    # Two workloads: the default (a small MLP, 1 local epoch: little training per round)
    # and more local work (a CNN, 5 epochs), since the overhead ratio depends on it.
    workloads = [("mlp E=1", dict(arch="mlp", epochs=1))] + ([] if quick else [("cnn E=5", dict(arch="cnn", epochs=5))])
    # Warm TensorFlow up first, so its start-up is not charged to the first chain measured.
    _run("ethereum:local:test", clients=2, rounds=1)
    for (label, net), (work, wcfg) in [(n, w) for w in workloads for n in nets]:
        res = _run(net, clients=4 if quick else 10, rounds=2 if quick else 5, **wcfg)
        per_round = [r for r in res.rows if r.status == "finalized"]
        total = sum(r.seconds for r in per_round)
        phases = {p: sum(r.phases.get(p, 0.0) for r in per_round) for p in CORE_PHASES}
        ml_time = phases["training"] + phases["evaluation"]
        rows.append(dict(
            chain=label, workload=work, rounds=len(per_round), round_seconds=total / len(per_round),
            **{f"{p}_s": v / len(per_round) for p, v in phases.items()},
            overhead_ratio=(total - ml_time) / total,
            chain_crypto_ratio=(phases["chain"] + phases["encode_seal_store"]) / total,
            gas_per_round=sum(r.gas for r in per_round) / len(per_round),
            final_accuracy=res.final_accuracy,
        ))
    return {"rows": rows, "target": "chain and crypto overhead under 10% of round time on the embedded chain"}


def scale(quick: bool) -> dict[str, Any]:
    rows = []
    for n in ((5, 10) if quick else (10, 50, 100)):
        t0 = time.perf_counter()
        res = _run("ethereum:local:foundry", clients=n, rounds=1 if quick else 2)
        per_round = [r for r in res.rows if r.status == "finalized"]
        rows.append(dict(
            clients=n, round_seconds=sum(r.seconds for r in per_round) / len(per_round),
            chain_s=sum(r.phases.get("chain", 0.0) for r in per_round) / len(per_round),
            gas_per_round=sum(r.gas for r in per_round) / len(per_round),
            gas_per_client=sum(r.gas for r in per_round) / len(per_round) / n,
            wall_s=time.perf_counter() - t0,
        ))
    return {"rows": rows}


def seal_overhead() -> dict[str, int]:
    """Bytes a sealed blob adds per recipient (the same plaintext sealed to 1, 2 and 4 keys)."""
    from ml.sealing import SealContext, generate_keypair, seal

    plain = bytes(10_000)
    ctx = SealContext(chain_id=1, contract="0x" + "11" * 20, round_id=1, client="0x" + "22" * 20)
    keys = [generate_keypair().public for _ in range(4)]
    sizes = {n: len(seal(plain, keys[:n], ctx)) for n in (1, 2, 4)}
    return dict(plaintext=len(plain), sealed_1=sizes[1], sealed_2=sizes[2], sealed_4=sizes[4],
                per_recipient=(sizes[4] - sizes[1]) // 3, fixed=sizes[1] - len(plain))


def committee(quick: bool) -> dict[str, Any]:
    """Round time with the committee against without it, same workload and seed, in one run."""
    rows = []
    nets = [("embedded", "ethereum:local:test")] + ([] if quick else [("anvil", "ethereum:local:foundry")])
    modes = [(0, 0), (2, 2)] + ([] if quick else [(3, 2)])
    _run("ethereum:local:test", clients=2, rounds=1, verifiers=0)  # warm TensorFlow up
    for label, net in nets:
        base = None
        for k, m in modes:
            res = _run(net, clients=4 if quick else 10, rounds=2 if quick else 5, verifiers=k, threshold=m or 1)
            per_round = [r for r in res.rows if r.status == "finalized"]
            sec = sum(r.seconds for r in per_round) / len(per_round)
            if base is None:
                base = (sec, res.final_model_hash)
            rows.append(dict(
                chain=label, committee="trusted (k=0)" if not k else f"k={k}, m={m}", round_seconds=sec,
                ratio_to_trusted=sec / base[0],
                chain_s=sum(r.phases.get("chain", 0.0) for r in per_round) / len(per_round),
                aggregation_s=sum(r.phases.get("aggregation", 0.0) for r in per_round) / len(per_round),
                gas_per_round=sum(r.gas for r in per_round) / len(per_round),
                same_model_as_trusted=res.final_model_hash == base[1],
            ))
    return {"rows": rows, "seal": seal_overhead(),
            "note": "the verifiers run in the federation's process, one after another: each re-opens, "
                    "re-validates and re-aggregates every update and sends one transaction"}


MNEMONIC = "test test test test test test test test test test test junk"  # ape-config.yaml's test mnemonic


def _keys(n: int) -> list[Any]:
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(n)]


def _one_round_three_ways(n_clients: int, n_verifiers: int = 2) -> dict[str, float]:
    """Seconds for one round's transactions, pre-signed raw (the floor) against FLContract, same node.

    The same transactions a federated_round round sends with its default committee: startRound, one
    submitUpdate per client, proposeRound, and one attest per verifier (m = k, as federated_round's
    default 2 of 2).
    """
    from ape import accounts, chain

    from ml.chain import Committee, FLContract, JobParams, Outcome

    params = JobParams(minStake=10**17, unbondingPeriod=3600, submissionPeriod=3600, gracePeriod=600, quorum=1,
                       maxUpdatesPerRound=0, maxSamplesPerUpdate=100_000, slashBps=5000, rewardPerRound=0,
                       normBound=0, modelSpecHash=b"\x11" * 32, initialModelHash=b"\x22" * 32,
                       aggregatorKey=b"\x33" * 32, aggregatorBond=10**17 if n_verifiers else 0)
    admin, agg = accounts.test_accounts[0], accounts.test_accounts[1]
    clients = [accounts.test_accounts[2 + i] for i in range(n_clients)]
    verifiers = [accounts.test_accounts[2 + n_clients + i] for i in range(n_verifiers)]
    committee = Committee(tuple(str(v.address) for v in verifiers), tuple(bytes([0x60 + i]) * 32 for i in
                                                                          range(n_verifiers)), n_verifiers)
    keys = _keys(2 + n_clients + n_verifiers)
    w3 = chain.provider.web3
    out: dict[str, float] = {}
    for way in ("floor", "ape"):
        fl = FLContract.deploy(admin, params, admin.address, agg.address, committee=committee)
        for c in clients:
            fl.register(c, b"\x44" * 32, params.minStake)
        if n_verifiers:
            fl.post_bond(agg, params.aggregatorBond)
        c = fl.contract
        calls = [(1, c.startRound.encode_input())]
        calls += [(2 + i, c.submitUpdate.encode_input(1, bytes([i + 1]) * 32, 100, f"loc-{i}"))
                  for i in range(n_clients)]
        outcome = Outcome.of(b"\x55" * 32, {}, [], model_locator="m")
        calls.append((1, c.proposeRound.encode_input(1, outcome.to_struct())))
        calls += [(2 + n_clients + i, c.attest.encode_input(1, outcome.to_struct())) for i in range(n_verifiers)]
        if way == "floor":
            chain_id = int(w3.eth.chain_id)
            fee = int(w3.eth.gas_price) * 2 + 10**9
            nonces = {i: w3.eth.get_transaction_count(keys[i].address) for i in {i for i, _ in calls}}
            raws = []
            for i, data in calls:  # signed before the clock starts: the floor is the node's own time
                tx = dict(to=fl.address, data=data, gas=2_000_000, nonce=nonces[i], chainId=chain_id, value=0,
                          maxFeePerGas=fee, maxPriorityFeePerGas=10**9, type=2)
                nonces[i] += 1
                raws.append(keys[i].sign_transaction(tx).raw_transaction)
            t0 = time.perf_counter()
            for raw in raws:
                h = w3.eth.send_raw_transaction(raw)
                assert w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.005).status == 1
            out["floor_s"] = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            fl.start_round(agg)
            for i, cl in enumerate(clients):
                fl.submit(cl, 1, bytes([i + 1]) * 32, 100, f"loc-{i}")
            fl.propose(agg, 1, outcome)
            for v in verifiers:
                fl.attest(v, 1, outcome)
            out["ape_s"] = time.perf_counter() - t0
        assert fl.round(1).phase.name == "FINALIZED"
    out["transactions"] = len(calls)
    return out


def floor(quick: bool) -> dict[str, Any]:
    """The physical floor of a round's chain time, against our path and a real round, in one run."""
    from ape import networks
    from ape.logging import logger

    logger.set_level("ERROR")
    n = 4 if quick else 10
    rows = []
    _run("ethereum:local:test", clients=2, rounds=1)  # warm TensorFlow up
    for label, net in [("embedded", "ethereum:local:test"), ("anvil", "ethereum:local:foundry")]:
        with networks.parse_network_choice(net):
            ways = _one_round_three_ways(n)
        res = _run(net, clients=n, rounds=2 if quick else 4)
        per = [r for r in res.rows if r.status == "finalized"][1:]  # round 1 pays first-use costs
        fed_chain = sum(r.phases.get("chain", 0.0) for r in per) / len(per)
        fed_round = sum(r.seconds for r in per) / len(per)
        views = sum(r.view_calls for r in per) / len(per)
        rows.append(dict(chain=label, transactions=ways["transactions"], floor_s=ways["floor_s"],
                         flcontract_tx_s=ways["ape_s"], flcontract_over_floor=ways["ape_s"] / ways["floor_s"],
                         round_chain_s=fed_chain, round_chain_over_floor=fed_chain / ways["floor_s"],
                         round_s=fed_round, chain_share_of_round=fed_chain / fed_round,
                         views_per_round=views, views_per_round_per_client=views / n))
    return {"rows": rows, "clients": n,
            "target": "a round's chain time within 3x of the floor (pre-signed raw transactions to the same node)",
            "note": "the floor sends the round's own transactions (startRound, one submitUpdate per client, "
                    "proposeRound, one attest per verifier of the default 2-of-2 committee); round_chain_s "
                    "is a federated_round round's chain phase: those transactions, its views and log reads"}


def default_chain(quick: bool) -> dict[str, Any]:
    """End to end with federated_round's defaults, connection (Anvil's start-up) included, in one run."""
    rows = []
    _run("ethereum:local:test", clients=2, rounds=1)  # warm TensorFlow up
    for label, net in [("embedded", "ethereum:local:test"), ("anvil (auto-started)", "ethereum:local:foundry")]:
        t0 = time.perf_counter()
        res = _run(net, clients=2 if quick else 5, rounds=1 if quick else 5, baseline=True, workers="auto")
        rows.append(dict(chain=label, wall_s=time.perf_counter() - t0,
                         rounds_s=sum(r.seconds for r in res.rows), final_accuracy=res.final_accuracy))
    for r in rows:
        r["ratio_to_embedded"] = r["wall_s"] / rows[0]["wall_s"]
    return {"rows": rows, "target": "the default chain of federated_round is the faster of the two end to end"}


def _node_cost_by_height(network: str, n_clients: int, blocks: int) -> dict[str, float]:
    """The node's own time for one round's pre-signed transactions on a fresh chain, and again after
    `blocks` more blocks (the height an aging run ends at): how much of a long run's growth is the node's."""
    from ape import chain, networks

    with networks.parse_network_choice(network):
        young = _one_round_three_ways(n_clients)["floor_s"]
        chain.mine(blocks)
        old = _one_round_three_ways(n_clients)["floor_s"]
    return {"young_s": young, "old_s": old}


def aging(quick: bool, out: Path | None = None) -> dict[str, Any]:
    """Round time against the round number: the first rounds against the last ones, in one run."""
    rounds = 4 if quick else 50
    nets = [("embedded", "ethereum:local:test"), ("anvil", "ethereum:local:foundry")]
    _run("ethereum:local:test", clients=2, rounds=1)  # warm TensorFlow up
    rows, series = [], {}
    for label, net in nets:
        res = _run(net, clients=3 if quick else 10, rounds=rounds)
        per = [r for r in res.rows if r.status == "finalized"]
        secs = [r.seconds for r in per]
        chain_s = [r.phases.get("chain", 0.0) for r in per]
        k = max(1, len(per) // 10)  # first and last tenth (5 rounds of 50)
        first, last = sum(secs[1:k + 1]) / k, sum(secs[-k:]) / k  # round 1 pays the first compilations
        first_c, last_c = sum(chain_s[1:k + 1]) / k, sum(chain_s[-k:]) / k
        series[label] = dict(round_seconds=secs, chain_seconds=chain_s)
        node = _node_cost_by_height(net, 3 if quick else 10, len(per) * (15 if not quick else 8))
        rows.append(dict(chain=label, rounds=len(per), first_round_s=first, last_round_s=last,
                         last_over_first=last / first, first_chain_s=first_c, last_chain_s=last_c,
                         chain_last_over_first=last_c / first_c if first_c else float("nan"),
                         node_floor_young_s=node["young_s"], node_floor_old_s=node["old_s"],
                         node_floor_old_over_young=node["old_s"] / node["young_s"],
                         chain_growth_over_node_growth=(last_c / first_c) / (node["old_s"] / node["young_s"])
                         if first_c else float("nan")))
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, d in series.items():
            ax.plot(range(1, len(d["round_seconds"]) + 1), d["round_seconds"], label=f"{label}: round")
            ax.plot(range(1, len(d["chain_seconds"]) + 1), d["chain_seconds"], "--", label=f"{label}: chain part")
        ax.set_xlabel("round")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.set_title("Round time by round number (10 clients, digits MLP)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"rounds_aging{'_quick' if quick else ''}.png", dpi=120)
        plt.close(fig)
    return {"rows": rows, "series": series,
            "target": "rounds 1-50 flat: the last rounds take no longer than the first (ratio about 1)",
            "note": "node_floor_*: the same round's transactions pre-signed and sent raw on a fresh chain and "
                    "after as many blocks as the run mined; chain_growth_over_node_growth about 1 means the "
                    "chain part grew only as much as the node's own cost did"}


ONLY_STRATEGIES: list[str] = []  # --strategy: rerun robustness for some strategies only
PARTIAL: Path | None = None  # where robustness writes its rows as they come (a long part)


def _partial(rows: list[dict[str, Any]]) -> None:
    if PARTIAL is not None:
        PARTIAL.write_text(json.dumps({"rows": rows, "partial": True}, indent=2))


def robustness(quick: bool) -> dict[str, Any]:
    strategies = ("fedavg", "multi_krum") if quick else ("fedavg", "median", "trimmed_mean", "multi_krum")
    strategies = tuple(ONLY_STRATEGIES) or strategies
    attacks = ("signflip", "nan") if quick else ("signflip", "scale", "labelflip", "nan", "tamper")
    counts = (2,) if quick else (1, 2, 3, 4)
    rounds = 1 if quick else 5
    rows = []
    for strategy in strategies:
        # Krum tolerates f with n >= 2f + 3: f = 3 of 10; trimmed mean cuts 40% at each end.
        params = {"krum_f": 3, "trim_beta": 0.4} if not quick else {"krum_f": 2, "trim_beta": 0.3}
        clean = _run("ethereum:local:test", clients=10, rounds=rounds, strategy=strategy, **params)
        rows.append(dict(strategy=strategy, attack="none", attackers=0, final_accuracy=clean.final_accuracy,
                         rejected=0, excluded=0, honest_excluded=_honest_excluded(clean), drop_points=0.0))
        for attack in attacks:
            for k in counts:
                res = _run("ethereum:local:test", clients=10, rounds=rounds, strategy=strategy, attackers=k,
                           attack=attack, **params)
                bad = [c for c in res.clients if c["role"] != "honest"]
                rejected = sum(c["rejected"] for c in bad)
                if attack in ("nan", "tamper"):
                    # Provably invalid: each is rejected and slashed, never accepted (after the
                    # first slash its stake is below the minimum, so it cannot submit again).
                    assert all(c["rejected"] >= 1 and c["accepted"] == 0 and c["slashed"] > 0 for c in bad), bad
                rows.append(dict(
                    strategy=strategy, attack=attack, attackers=k, final_accuracy=res.final_accuracy,
                    rejected=rejected, excluded=sum(c["excluded"] for c in bad),
                    honest_excluded=_honest_excluded(res),
                    drop_points=100 * (clean.final_accuracy - res.final_accuracy),
                ))
                _partial(rows)
    return {"rows": rows, "rounds": rounds,
            "target": "a robust strategy with 2 of 10 sign-flip attackers within 3 accuracy points of the clean run"}


def _honest_excluded(res) -> int:
    return sum(c["excluded"] for c in res.clients if c["role"] == "honest")


def private(quick: bool) -> dict[str, Any]:
    """Private mode against robust mode on the same workload and seed, in one run."""
    from ml import codec, secagg
    from ml.data import load_dataset
    from ml.models import initial_weights, num_params, spec_for_dataset, tensor_names
    from ml.sealing import sealed_overhead

    n, rounds = (3, 1) if quick else (10, 5)
    nets = [("embedded", "ethereum:local:test")] + ([] if quick else [("anvil", "ethereum:local:foundry")])
    modes = [("robust", 0), ("secagg", 0), ("secagg", 1 if quick else 3)]
    _run("ethereum:local:test", clients=2, rounds=1, verifiers=0)  # warm TensorFlow up
    rows = []
    for label, net in nets:
        base = None
        for mode, drop in modes:
            res = _run(net, clients=n, rounds=rounds, privacy=mode, dropouts=drop)
            done = [r for r in res.rows if r.status == "finalized"]
            sec = sum(r.seconds for r in done) / len(done)
            gas, calls = res.gas_by_function, res.report["calls_by_function"]
            round_fns = ("startRound", "joinRound", "submitUpdate", "revealShares", "proposeRound", "attest")
            txs = sum(calls.get(fn, 0) for fn in round_fns) / rounds
            if base is None:
                base = (sec, txs)
            per = (lambda fn: gas.get(fn, 0) / calls[fn] if calls.get(fn) else 0)  # noqa: E731
            rows.append(dict(
                chain=label, mode=mode, dropouts=drop, round_seconds=sec, ratio_to_robust=sec / base[0],
                chain_s=sum(r.phases.get("chain", 0.0) for r in done) / len(done),
                aggregation_s=sum(r.phases.get("aggregation", 0.0) for r in done) / len(done),
                encode_seal_store_s=sum(r.phases.get("encode_seal_store", 0.0) for r in done) / len(done),
                txs_per_round=txs, extra_txs_per_round=txs - base[1],
                gas_per_round=sum(r.gas for r in done) / len(done),
                join_gas=per("joinRound"), reveal_gas=per("revealShares"), submit_gas=per("submitUpdate"),
                final_accuracy=res.final_accuracy,
            ))
    ds = load_dataset("digits", seed=0)
    spec = spec_for_dataset(ds)
    plain = len(codec.encode(initial_weights(spec, 0), tensor_names(spec)))
    params = secagg.SecAggParams(4.0, 20, 64, 2)
    blob = dict(params=num_params(spec), sealed_bytes=plain + sealed_overhead(3),
                masked_bytes_64=secagg.vector_blob_size(num_params(spec), params),
                masked_bytes_32=secagg.vector_blob_size(num_params(spec), secagg.SecAggParams(4.0, 8, 32, 2)),
                dealing_bytes_per_holder=secagg.dealing_size(2, True) - secagg.dealing_size(1, True))
    blob["masked_to_sealed_64"] = blob["masked_bytes_64"] / blob["sealed_bytes"]
    return {"rows": rows, "blobs": blob,
            "note": f"{n} clients, {rounds} round(s), digits MLP, 2 verifiers; every party in one process"}


PARTS = {"overhead": overhead, "scale": scale, "committee": committee, "floor": floor, "default": default_chain, "aging": aging,
         "robustness": robustness, "private": private}


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    if not rows:
        return t
    for k in rows[0]:
        t.add_column(k, justify="left" if isinstance(rows[0][k], str) else "right")
    for r in rows:
        t.add_row(*[f"{v:,.4f}" if isinstance(v, float) and abs(v) < 100 else
                    f"{v:,.0f}" if isinstance(v, (int, float)) else str(v) for v in r.values()])
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings that check correctness (CI)")
    ap.add_argument("--part", choices=sorted(PARTS), action="append", help="run only these parts (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON results")
    ap.add_argument("--strategy", action="append", default=[], help="robustness: only these strategies (repeatable)")
    args = ap.parse_args(argv)
    ONLY_STRATEGIES[:] = args.strategy
    args.out.mkdir(parents=True, exist_ok=True)
    global PARTIAL
    PARTIAL = args.out / f"rounds_robustness{'_quick' if args.quick else ''}.partial.json"
    console = Console(width=160)
    for name in args.part or list(PARTS):
        t0 = time.perf_counter()
        data = PARTS[name](args.quick, args.out) if name == "aging" else PARTS[name](args.quick)
        data.update(part=name, quick=args.quick, seconds=time.perf_counter() - t0,
                    machine=dict(python=platform.python_version(), processor=platform.machine()))
        console.print(_table(f"rounds: {name}", data["rows"]))
        (args.out / f"rounds_{name}{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
