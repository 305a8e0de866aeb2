"""Accuracy of FedAvg vs centralized training on digits, and aggregation speed.

    .venv/bin/python -m bench.ml_accuracy [--quick] [--out bench/results]

Part 1: 10 clients, 10 rounds of in-process FedAvg (no chain) with E=1 and
E=5 local epochs, on IID, Dirichlet(0.5), Dirichlet(0.1) and shards splits,
against centralized training on the pooled data (same model, optimiser and
number of passes over the data as FedAvg with E=1). Reported per row: the
accuracy after the last round, its gap to centralized, and the first round
within 2 points of centralized (McMahan et al.'s rounds-to-target metric; the
target is that FedAvg on IID data gets there within the 10 rounds).

Part 2: wall time of each aggregation strategy for 10 and 100 clients of 1M
float32 parameters. Krum is O(n^2 d): about 5k pairwise distances of 1M
values at 100 clients.

``--quick`` runs a tiny version (< 30 s) that asserts correctness, not speed:
it is what tests/ml/test_ml_bench.py runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml import aggregation
from ml.aggregation import ClientUpdate
from ml.data import Dataset, load_dataset
from ml.models import ModelSpec, initial_weights, num_params, spec_for_dataset
from ml.partition import partition, summarize

SCHEMES: dict[str, dict[str, Any]] = {
    "iid": {"scheme": "iid"},
    "dirichlet(0.5)": {"scheme": "dirichlet", "alpha": 0.5},
    "dirichlet(0.1)": {"scheme": "dirichlet", "alpha": 0.1},
    "shards": {"scheme": "shards", "shards_per_client": 2},
}
TARGET_GAP = 0.02  # FedAvg on iid digits reaches centralized - 2 points within the rounds


@dataclass
class Config:
    clients: int = 10
    rounds: int = 10
    local_epochs: tuple[int, ...] = (1, 5)
    schemes: tuple[str, ...] = tuple(SCHEMES)
    seed: int = 0
    agg_clients: tuple[int, ...] = (10, 100)
    agg_params: int = 1_000_000
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Config(clients=5, rounds=3, local_epochs=(1,), schemes=("iid", "shards"), agg_clients=(5, 8), agg_params=10_000, quick=True)


def client_key(i: int) -> str:
    """A stand-in address: 0x00..01, 0x00..02, ..."""
    return "0x" + f"{i + 1:040x}"


def run_fedavg(
    spec: ModelSpec,
    dataset: Dataset,
    parts: list[np.ndarray],
    *,
    rounds: int,
    epochs: int,
    seed: int = 0,
    **train_kwargs: Any,
) -> list[float]:
    """In-process FedAvg; returns the global test accuracy after each round."""
    from ml.training import evaluate, train_local

    weights = initial_weights(spec, seed)
    history = []
    for r in range(rounds):
        updates = []
        for i, idx in enumerate(parts):
            res = train_local(
                spec,
                weights,
                dataset.x_train[idx],
                dataset.y_train[idx],
                epochs=epochs,
                seed=seed * 1_000_003 + r * 1009 + i,
                **train_kwargs,
            )
            updates.append(ClientUpdate(client_key(i), res.weights, res.num_samples))
        weights = aggregation.fedavg(updates).weights
        history.append(evaluate(spec, weights, dataset.x_test, dataset.y_test).accuracy)
    return history


def rounds_to_target(history: list[float], target: float) -> int | None:
    """First round (1-based) whose accuracy reaches ``target``; None if none did (McMahan et al.'s metric)."""
    return next((r + 1 for r, acc in enumerate(history) if acc >= target), None)


def accuracy_part(cfg: Config) -> dict[str, Any]:
    from ml.training import DEFAULT_CENTRALIZED_EPOCHS, centralized_baseline

    dataset = load_dataset("digits", seed=cfg.seed)
    spec = spec_for_dataset(dataset)
    central_epochs = cfg.rounds if cfg.quick else DEFAULT_CENTRALIZED_EPOCHS
    t0 = time.perf_counter()
    _, central = centralized_baseline(spec, dataset, epochs=central_epochs, seed=cfg.seed)
    out: dict[str, Any] = {
        "dataset": dataset.name,
        "train_samples": int(len(dataset.y_train)),
        "test_samples": int(len(dataset.y_test)),
        "model": spec.to_dict(),
        "num_params": num_params(spec),
        "clients": cfg.clients,
        "rounds": cfg.rounds,
        "centralized": {"epochs": central_epochs, "accuracy": central.accuracy, "seconds": time.perf_counter() - t0},
        "federated": [],
    }
    for name in cfg.schemes:
        params = SCHEMES[name]
        parts = partition(dataset.y_train, cfg.clients, seed=cfg.seed, **params)
        non_iid = summarize(dataset.y_train, parts, dataset.num_classes).non_iid
        for epochs in cfg.local_epochs:
            t0 = time.perf_counter()
            history = run_fedavg(spec, dataset, parts, rounds=cfg.rounds, epochs=epochs, seed=cfg.seed)
            out["federated"].append(
                {
                    "partition": name,
                    "non_iid": non_iid,
                    "local_epochs": epochs,
                    "accuracy": history[-1],
                    "history": history,
                    "gap": central.accuracy - history[-1],
                    "rounds_to_target": rounds_to_target(history, central.accuracy - TARGET_GAP),
                    "seconds": time.perf_counter() - t0,
                }
            )
    return out


def _random_updates(n: int, d: int, seed: int) -> list[ClientUpdate]:
    rows = max(1, int(round(d**0.5)))
    cols = d // rows
    shapes = [(rows, cols), (d - rows * cols,)] if d - rows * cols else [(rows, cols)]
    rng = np.random.default_rng(seed)
    return [
        ClientUpdate(client_key(i), [rng.standard_normal(s, dtype=np.float32) for s in shapes], int(rng.integers(10, 1000)))
        for i in range(n)
    ]


def strategy_params(name: str, n: int) -> dict[str, Any]:
    f = max(1, n // 10)
    return {"trimmed_mean": {"beta": 0.1}, "krum": {"f": f}, "multi_krum": {"f": f}}.get(name, {})


def timing_part(cfg: Config) -> list[dict[str, Any]]:
    rows = []
    for n in cfg.agg_clients:
        updates = _random_updates(n, cfg.agg_params, cfg.seed)
        for name in aggregation.STRATEGIES:
            params = strategy_params(name, n)
            t0 = time.perf_counter()
            result = aggregation.aggregate(name, updates, **params)
            seconds = time.perf_counter() - t0
            row = {"strategy": name, "clients": n, "params": cfg.agg_params, "seconds": seconds, **params}
            if cfg.quick:
                _check_strategy(name, updates, result, params)
                row["checked"] = True
            rows.append(row)
        del updates
    return rows


def _check_strategy(name: str, updates: list[ClientUpdate], result: aggregation.AggregateResult, params: dict) -> None:
    """Quick-mode correctness: order independence, bit-identical repeat, FedAvg = weighted mean."""
    again = aggregation.aggregate(name, list(reversed(updates)), **params)
    assert all(np.array_equal(a, b) for a, b in zip(result.weights, again.weights)), f"{name}: order changes result"
    assert all(w.dtype == np.float32 for w in result.weights), f"{name}: result is not float32"
    assert sorted(result.included + result.excluded) == sorted(u.key for u in updates), f"{name}: lost clients"
    if name == "fedavg":
        counts = np.array([u.num_samples for u in updates], dtype=np.float64)
        for i, w in enumerate(result.weights):
            expected = np.average(np.stack([u.weights[i] for u in updates]).astype(np.float64), axis=0, weights=counts)
            assert np.allclose(w, expected, atol=1e-6), "fedavg differs from the weighted mean"


def _check_accuracy(acc: dict[str, Any], quick: bool) -> None:
    assert 0.0 <= acc["centralized"]["accuracy"] <= 1.0
    for row in acc["federated"]:
        assert len(row["history"]) == acc["rounds"]
        assert all(0.0 <= a <= 1.0 for a in row["history"])
    iid = [r for r in acc["federated"] if r["partition"] == "iid"]
    floor = 0.6 if quick else 0.9  # far above chance (0.1)
    assert all(r["accuracy"] > floor for r in iid), f"FedAvg iid accuracy too low: {[r['accuracy'] for r in iid]}"


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 110)
    acc = result["accuracy"]
    central = acc["centralized"]["accuracy"]
    epochs = sorted({r["local_epochs"] for r in acc["federated"]})
    table = Table(
        title=f"{acc['dataset']}: test accuracy, {acc['clients']} clients x {acc['rounds']} rounds of FedAvg",
        caption=(
            f"centralized: {central:.4f} ({acc['centralized']['epochs']} epochs on the pooled data); "
            f"gap = centralized - FedAvg after the last round; rounds = first round within "
            f"{100 * TARGET_GAP:.0f} pt of centralized"
        ),
    )
    table.add_column("partition")
    table.add_column("non-IID (TV)", justify="right")
    for e in epochs:
        table.add_column(f"E={e} acc", justify="right")
        table.add_column(f"E={e} gap", justify="right")
        table.add_column(f"E={e} rounds", justify="right")
    for scheme in dict.fromkeys(r["partition"] for r in acc["federated"]):
        rows = {r["local_epochs"]: r for r in acc["federated"] if r["partition"] == scheme}
        cells = []
        for e in epochs:
            reached = rows[e]["rounds_to_target"]
            cells += [
                f"{rows[e]['accuracy']:.4f}",
                f"{100 * rows[e]['gap']:+.1f} pt",
                "-" if reached is None else str(reached),
            ]
        table.add_row(scheme, f"{rows[epochs[0]]['non_iid']:.3f}", *cells)
    console.print(table)

    timing = Table(title=f"Aggregation time (s), {result['timing'][0]['params']:,} float32 params/client")
    timing.add_column("strategy")
    ns = sorted({r["clients"] for r in result["timing"]})
    for n in ns:
        timing.add_column(f"{n} clients", justify="right")
    for name in dict.fromkeys(r["strategy"] for r in result["timing"]):
        cells = {r["clients"]: r["seconds"] for r in result["timing"] if r["strategy"] == name}
        timing.add_row(name, *[f"{cells[n]:.3f}" for n in ns])
    console.print(timing)
    console.print(result["verdict"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.ml_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (< 30 s) that asserts correctness")
    parser.add_argument("--out", default="bench/results", help="folder for ml_accuracy.json (default: bench/results)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = replace(QUICK if args.quick else Config(), seed=args.seed)

    started = time.perf_counter()
    acc = accuracy_part(cfg)
    _check_accuracy(acc, cfg.quick)
    timing = timing_part(cfg)
    iid = [r for r in acc["federated"] if r["partition"] == "iid"]
    met = bool(iid) and all(r["rounds_to_target"] is not None for r in iid)
    if cfg.quick:
        verdict = "quick mode: correctness checks passed (the accuracy target applies to the full run)"
    else:
        verdict = (
            f"target (FedAvg on iid reaches centralized - {100 * TARGET_GAP:.0f} pt within {cfg.rounds} rounds): "
            + ("met" if met else "NOT met")
            + " ("
            + ", ".join(f"E={r['local_epochs']}: round {r['rounds_to_target']}" for r in iid)
            + "); final-round iid gaps "
            + ", ".join(f"{100 * r['gap']:+.1f}" for r in iid)
            + " pt"
        )
    from ml.training import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE

    result = {
        "benchmark": "ml_accuracy",
        "quick": cfg.quick,
        "seed": cfg.seed,
        "hyperparameters": {"batch_size": DEFAULT_BATCH_SIZE, "learning_rate": DEFAULT_LEARNING_RATE, "optimizer": "sgd"},
        "accuracy": acc,
        "timing": timing,
        "target_met": met,
        "verdict": verdict,
        "seconds": time.perf_counter() - started,
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()},
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / ("ml_accuracy_quick.json" if cfg.quick else "ml_accuracy.json")
    out_file.write_text(json.dumps(result, indent=2) + "\n")
    render(result)
    print(f"wrote {out_file} in {result['seconds']:.1f} s")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
