"""`ape run federated_round` as a user runs it, on Anvil and on Ganache (separate node processes)."""
from __future__ import annotations

import json
from pathlib import Path

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


def test_federated_round_defaults_to_an_anvil_it_starts(tmp_path):
    """Without --network the federation runs on an Anvil that ape-foundry starts (the faster chain end to end,
    bench.rounds --part default), found next to the venv's Python even when the venv is not on PATH."""
    import os
    import subprocess

    from tests.nodes import ROOT, VENV_BIN, env

    e = env()
    e["PATH"] = os.pathsep.join(p for p in e["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    out = tmp_path / "out"
    res = subprocess.run([str(VENV_BIN / "ape"), "run", "federated_round", "--clients", "3", "--rounds", "1",
                          "--no-baseline", "--out", str(out)], cwd=ROOT, env=e, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["chain_id"] == 31337
