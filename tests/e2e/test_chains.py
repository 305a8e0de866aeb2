"""`ape run federated_round` as a user runs it, on Anvil and on Ganache (separate node processes)."""
from __future__ import annotations

import json

import pytest

from tests.nodes import ganache, run_ape

pytestmark = pytest.mark.slow


def _check_run(out, res):
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in report["rounds"]] == ["finalized", "finalized"]
    assert report["final_accuracy"] > 0.6
    assert "global model hash" in res.stdout
    return report


def test_federated_round_on_anvil(tmp_path):
    out = tmp_path / "out"
    res = run_ape(["run", "federated_round", "--network", "ethereum:local:foundry", "--clients", "3",
                   "--rounds", "2", "--no-baseline", "--out", str(out)])
    report = _check_run(out, res)
    assert report["chain_id"] == 31337


def test_federated_round_on_ganache(tmp_path):
    out = tmp_path / "out"
    with ganache() as url:
        res = run_ape(["run", "federated_round", "--network", f"ethereum:local:{url}", "--clients", "3",
                       "--rounds", "2", "--no-baseline", "--out", str(out)])
    report = _check_run(out, res)
    assert report["chain_id"] == 1337
