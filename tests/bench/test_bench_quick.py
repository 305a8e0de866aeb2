"""The benchmarks keep working: each part runs in quick mode and checks its own results (never timings)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.nodes import ROOT, env

pytestmark = pytest.mark.slow


def _bench(module: str, out) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", module, "--quick", "--out", str(out)], cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res


def test_throughput_quick(tmp_path):
    _bench("bench.throughput", tmp_path)
    rows = json.loads((tmp_path / "throughput_quick.json").read_text())["rows"]
    assert {r["strategy"] for r in rows} == {"fedavg", "median", "trimmed_mean", "multi_krum"}
    assert all(r["mb_per_s"] > 0 and r["copy_mb_per_s"] > 0 for r in rows)


def test_accuracy_quick(tmp_path):
    _bench("bench.accuracy", tmp_path)
    data = json.loads((tmp_path / "accuracy_quick.json").read_text())
    assert {r["algorithm"] for r in data["rows"]} == {"fedavg", "fedprox"}
    assert (tmp_path / "accuracy_iid.png").stat().st_size > 0
    iid = [r for r in data["rows"] if r["partition"] == "iid" and r["algorithm"] == "fedavg"][0]
    assert iid["final_accuracy"] > 0.8


def test_rounds_quick(tmp_path):
    """Overhead on the embedded chain and Anvil, scale on Anvil, robustness: every round finalizes."""
    _bench("bench.rounds", tmp_path)
    over = json.loads((tmp_path / "rounds_overhead_quick.json").read_text())["rows"]
    assert {r["chain"] for r in over} == {"embedded", "anvil"}
    for r in over:
        assert 0 < r["overhead_ratio"] < 1 and r["gas_per_round"] > 0
    # The chain does the same work whatever runs it: gas per round is the same on both.
    assert abs(over[0]["gas_per_round"] - over[1]["gas_per_round"]) / over[0]["gas_per_round"] < 0.01
    committee = json.loads((tmp_path / "rounds_committee_quick.json").read_text())
    assert [r["committee"] for r in committee["rows"]] == ["trusted (k=0)", "k=2, m=2"]
    # the committee attests the very outcome the aggregator computed: the same model bit for bit
    assert all(r["same_model_as_trusted"] for r in committee["rows"])
    assert committee["rows"][1]["gas_per_round"] > committee["rows"][0]["gas_per_round"]
    from ml.sealing import sealed_overhead

    seal = committee["seal"]  # measured on real blobs, against the format's own arithmetic
    assert seal["per_recipient"] == sealed_overhead(2) - sealed_overhead(1) == 80
    assert seal["sealed_1"] - seal["plaintext"] == sealed_overhead(1)
    floor = json.loads((tmp_path / "rounds_floor_quick.json").read_text())["rows"]
    assert {r["chain"] for r in floor} == {"embedded", "anvil"}
    for r in floor:  # every way sent the same round and finalized it; a floor is a floor
        # startRound, 4 submitUpdate, proposeRound and the 2-of-2 committee's attestations
        assert r["transactions"] == 8 and 0 < r["floor_s"] and r["flcontract_over_floor"] > 0
    aging = json.loads((tmp_path / "rounds_aging_quick.json").read_text())
    assert [len(aging["series"][c]["round_seconds"]) for c in ("embedded", "anvil")] == [4, 4]
    default = json.loads((tmp_path / "rounds_default_quick.json").read_text())["rows"]
    assert [r["chain"] for r in default] == ["embedded", "anvil (auto-started)"] and default[0]["ratio_to_embedded"] == 1
    assert (tmp_path / "rounds_aging_quick.png").stat().st_size > 0
    robust = json.loads((tmp_path / "rounds_robustness_quick.json").read_text())["rows"]
    nan = [r for r in robust if r["attack"] == "nan"]
    assert nan and all(r["rejected"] == r["attackers"] for r in nan)
    krum = [r for r in robust if r["strategy"] == "multi_krum" and r["attack"] == "signflip"]
    assert krum and krum[0]["excluded"] >= 1
    private = json.loads((tmp_path / "rounds_private_quick.json").read_text())
    robust_row, no_drop, one_drop = private["rows"]
    assert [r["mode"] for r in private["rows"]] == ["robust", "secagg", "secagg"]
    # 3 clients: each joins and reveals (6 more transactions); with 1 dropout it joins only (4 more)
    assert (no_drop["extra_txs_per_round"], one_drop["extra_txs_per_round"]) == (6, 4)
    assert no_drop["join_gas"] > 0 and no_drop["reveal_gas"] > 0 and robust_row["join_gas"] == 0
    assert no_drop["final_accuracy"] == pytest.approx(robust_row["final_accuracy"], abs=0.005)
    blobs = private["blobs"]  # a 64-bit ring takes 8 bytes a parameter, a sealed float32 update 4
    assert blobs["masked_bytes_64"] == 14 + 8 * blobs["params"] and 1.9 < blobs["masked_to_sealed_64"] < 2.1


def test_gas_size_quick(tmp_path):
    """Submission gas does not grow with the model; the naive contract's does (Anvil)."""
    _bench("bench.gas_size", tmp_path)
    rows = json.loads((tmp_path / "gas_size_quick.json").read_text())["rows"]
    # Constant up to calldata: each commitment is a fresh keccak, and a zero byte of it costs 4 gas, not 16
    # (buckets of 100 gas failed when two runs straddled a boundary: 129,6xx against 129,7xx).
    gas = [r["ours_gas"] for r in rows]
    assert max(gas) - min(gas) <= 200, gas
    assert rows[0]["naive_gas"] > 10 * rows[0]["ours_gas"]


def test_gas_quick(tmp_path):
    """Every function measured on Anvil; register, submit, propose and claim do not grow with clients."""
    _bench("bench.gas", tmp_path)
    data = json.loads((tmp_path / "gas_quick.json").read_text())
    assert data["problems"] == [] and data["constant_in_clients"] is True
    assert {"register", "submitUpdate", "proposeRound", "claimReward", "withdrawRewards"} <= {
        r["function"] for r in data["rows"]}


def test_secagg_quick(tmp_path):
    """Masking, unmasking with a dropout, and share sizes: correct at small sizes (it asserts exactness)."""
    _bench("bench.secagg", tmp_path)
    d = json.loads((tmp_path / "secagg_quick.json").read_text())
    assert {(r["ring_bits"], r["participants"]) for r in d["client"]} == {(64, 3), (32, 3), (64, 5), (32, 5)}
    assert all(r["client_s"] > 0 for r in d["client"]) and d["unmask"] and d["sizes"]
    assert [r["params"] for r in d["noise"]] == [10_000] and d["noise"][0]["vectorised_s"] > 0
