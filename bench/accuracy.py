"""Centralized against FedAvg and FedProx on digits, for every partition.

    .venv/bin/python -m bench.accuracy [--quick] [--out bench/results]

10 clients, E local epochs per round, R rounds, in process (the chain adds no
numerics: the same aggregation code runs there). For each partition: final
accuracy and the number of rounds to reach 95% of the centralized accuracy,
and a plot per partition (accuracy per round, centralized as a line).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.ml_accuracy import SCHEMES, run_fedavg
from ml.data import load_dataset
from ml.models import spec_for_dataset
from ml.partition import partition, summarize


def rounds_to(history: list[float], target: float) -> int | None:
    return next((i + 1 for i, a in enumerate(history) if a >= target), None)


def run(clients: int, rounds: int, epochs: int, mu: float, schemes: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    from ml.training import centralized_baseline

    ds = load_dataset("digits", seed=seed)
    spec = spec_for_dataset(ds)
    _, central = centralized_baseline(spec, ds, epochs=rounds * epochs, seed=seed)
    target = 0.95 * central.accuracy
    rows = []
    for name in schemes:
        parts = partition(ds.y_train, clients, seed=seed, **SCHEMES[name])
        non_iid = summarize(ds.y_train, parts, ds.num_classes).non_iid
        for algo, m in (("fedavg", 0.0), ("fedprox", mu)):
            hist = run_fedavg(spec, ds, parts, rounds=rounds, epochs=epochs, seed=seed, mu=m)
            assert all(0.0 <= a <= 1.0 for a in hist)
            rows.append(dict(partition=name, non_iid=non_iid, algorithm=algo, mu=m, final_accuracy=hist[-1],
                             rounds_to_95pct=rounds_to(hist, target), history=hist))
    return dict(centralized=central.accuracy, centralized_epochs=rounds * epochs, target=target, clients=clients,
                rounds=rounds, local_epochs=epochs, rows=rows)


def plot(data: dict[str, Any], out: Path) -> list[Path]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    paths = []
    for name in dict.fromkeys(r["partition"] for r in data["rows"]):
        fig = Figure(figsize=(6.4, 4.0), dpi=110)
        ax = fig.subplots()
        for r in (r for r in data["rows"] if r["partition"] == name):
            ax.plot(range(1, len(r["history"]) + 1), r["history"], marker=".", label=f"{r['algorithm']} (mu={r['mu']})")
        ax.axhline(data["centralized"], color="tab:red", linestyle="--", label="centralized")
        ax.axhline(data["target"], color="gray", linestyle=":", label="95% of centralized")
        ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1.02), title=f"digits, {name}, {data['clients']} clients")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower right")
        fig.tight_layout()
        p = out / f"accuracy_{name.replace('(', '_').replace(')', '').replace('.', '')}.png"
        fig.savefig(p)
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings that check correctness (CI)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--mu", type=float, default=0.01, help="FedProx proximal term")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.quick:
        data = run(4, 2, 1, args.mu, ("iid", "shards"))
    else:
        data = run(10, 20, 5, args.mu, tuple(SCHEMES))
    data.update(quick=args.quick, seconds=time.perf_counter() - t0, python=platform.python_version())
    plots = plot(data, args.out)
    t = Table(title=f"Accuracy on digits: centralized {data['centralized']:.4f} "
                    f"({data['centralized_epochs']} epochs); target 95% = {data['target']:.4f}", title_justify="left")
    for c in ("partition", "non-IID (TV)", "algorithm", "final accuracy", "gap (points)", "rounds to 95%"):
        t.add_column(c, justify="left" if c in ("partition", "algorithm") else "right")
    for r in data["rows"]:
        t.add_row(r["partition"], f"{r['non_iid']:.3f}", r["algorithm"], f"{r['final_accuracy']:.4f}",
                  f"{100 * (data['centralized'] - r['final_accuracy']):+.2f}",
                  str(r["rounds_to_95pct"]) if r["rounds_to_95pct"] else f"> {data['rounds']}")
    Console(width=140).print(t)
    (args.out / f"accuracy{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    print("plots: " + ", ".join(str(p) for p in plots))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
