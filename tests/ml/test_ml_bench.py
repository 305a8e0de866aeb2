"""bench/ml_accuracy.py --quick: the tiny benchmark runs, checks itself and writes its JSON."""

from __future__ import annotations

import json


def test_quick_benchmark(tmp_path, capsys):
    from bench.ml_accuracy import main

    result = main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "ml_accuracy_quick.json").read_text())
    assert saved["quick"] is True and saved["accuracy"] == json.loads(json.dumps(result["accuracy"]))
    acc = saved["accuracy"]
    assert {r["partition"] for r in acc["federated"]} == {"iid", "shards"}
    iid = next(r for r in acc["federated"] if r["partition"] == "iid")
    assert iid["accuracy"] > 0.6 and len(iid["history"]) == acc["rounds"]
    assert iid["rounds_to_target"] is None or 1 <= iid["rounds_to_target"] <= acc["rounds"]
    assert 0.5 < acc["centralized"]["accuracy"] <= 1.0
    strategies = {r["strategy"] for r in saved["timing"]}
    assert strategies == {"fedavg", "median", "trimmed_mean", "krum", "multi_krum"}
    assert all(r["checked"] and r["seconds"] >= 0 for r in saved["timing"])
    out = capsys.readouterr().out
    assert "E=1 acc" in out and "multi_krum" in out and "correctness checks passed" in out


def test_quick_dp_accuracy_benchmark(tmp_path, capsys):
    """bench/dp_accuracy.py --quick: DP-FedAvg next to plain FedAvg, epsilon from the accountant."""
    from bench.dp_accuracy import main
    from ml.dp import epsilon

    result = main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "dp_accuracy_quick.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    ref, dp = saved["rows"]
    assert ref["noise"] is None and ref["accuracy"][-1] > 0.6
    assert dp["noise"] == 1.0 and dp["noise_std"] == 1.0 * saved["clip"] / 5
    assert dp["epsilon"] == [epsilon(1.0, r, 1.0, saved["delta"]) for r in (1, 2, 3)]
    assert (tmp_path / "dp_accuracy_quick.png").stat().st_size > 0
    assert "round 3" in capsys.readouterr().out
