"""Accuracy against epsilon: central DP-FedAvg on digits (issue 14), with the non-private run as reference.

    .venv/bin/python -m bench.dp_accuracy [--quick] [--out bench/results] [--clip 1.0]

For each split (iid, dirichlet 0.5) and federation size (10 and 50 clients), 20 rounds of
in-process FedAvg (E = 1, the job's defaults) without DP, then the same with the aggregator's
central DP exactly as a DP job runs it (``ml.dp.central_dp_mean``: each change clipped to C, the
uniform mean, Gaussian noise of std z*C/n from a per-round seed) for z in {0.5, 1, 2}. Epsilon is
the cumulative one at delta = 1/N (N training samples) from ``ml.dp``'s RDP accountant (q = 1:
every client takes part in every round, as on chain). No chain here: the chain does not change a
model (tests/e2e/test_dp.py shows the committee re-computes DP rounds bit for bit); this measures
what the noise costs in accuracy.

The table gives the test accuracy after rounds 5, 10 and 20 with the epsilon spent by then; the
plot (dp_accuracy.png) draws accuracy against cumulative epsilon, one panel per split and size,
with the non-private run as a horizontal line. ``--quick`` runs a tiny version that checks itself
(tests/ml/test_ml_bench.py).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.ml_accuracy import SCHEMES, client_key
from ml import aggregation
from ml.aggregation import ClientUpdate
from ml.dp import Accountant, central_dp_mean, change_norm, default_delta, derive_seed
from ml.data import load_dataset
from ml.models import initial_weights, num_params, spec_for_dataset
from ml.partition import partition

SECRET = b"bench.dp_accuracy: a fixed noise secret (the aggregator's is derived from its key)"


@dataclass(frozen=True)
class Config:
    schemes: tuple[str, ...] = ("iid", "dirichlet(0.5)")
    clients: tuple[int, ...] = (10, 50)
    noises: tuple[float, ...] = (0.5, 1.0, 2.0)
    rounds: int = 20
    clip: float = 1.0
    seed: int = 0
    checkpoints: tuple[int, ...] = (5, 10, 20)
    quick: bool = False


QUICK = Config(schemes=("iid",), clients=(5,), noises=(1.0,), rounds=3, checkpoints=(1, 3), quick=True)


def run(spec: Any, ds: Any, parts: list[np.ndarray], rounds: int, seed: int, clip: float | None,
        noise: float) -> dict[str, Any]:
    """One federation: accuracy after each round, and each round's change norms before clipping."""
    from ml.training import evaluate, train_local

    weights = initial_weights(spec, seed)
    history, norms = [], []
    for r in range(rounds):
        updates = []
        for i, idx in enumerate(parts):
            res = train_local(spec, weights, ds.x_train[idx], ds.y_train[idx],
                              seed=seed * 1_000_003 + r * 1009 + i)
            updates.append(ClientUpdate(client_key(i), res.weights, res.num_samples))
        norms.append(float(np.median([change_norm(weights, u.weights) for u in updates])))
        if clip is None:
            weights = aggregation.fedavg(updates).weights
        else:
            seed_r = derive_seed(SECRET, "bench", r + 1) if noise > 0 else None
            weights = central_dp_mean(weights, [u.weights for u in updates], [u.num_samples for u in updates],
                                      clip, noise, seed_r).weights
        history.append(float(evaluate(spec, weights, ds.x_test, ds.y_test).accuracy))
    return dict(history=history, median_change_norm=norms)


def measure(cfg: Config, log=print) -> dict[str, Any]:
    ds = load_dataset("digits", seed=cfg.seed)
    spec = spec_for_dataset(ds)
    delta = default_delta(len(ds.y_train))
    rows = []
    for scheme in cfg.schemes:
        for n in cfg.clients:
            parts = partition(ds.y_train, n, seed=cfg.seed, **SCHEMES[scheme])
            for noise in (None, *cfg.noises):
                t0 = time.perf_counter()
                out = run(spec, ds, parts, cfg.rounds, cfg.seed, None if noise is None else cfg.clip, noise or 0.0)
                eps = (Accountant(noise, delta, rounds=cfg.rounds).history() if noise is not None
                       else [None] * cfg.rounds)
                rows.append(dict(partition=scheme, clients=n, noise=noise, clip=None if noise is None else cfg.clip,
                                 noise_std=None if noise is None else noise * cfg.clip / n,
                                 accuracy=out["history"], epsilon=eps,
                                 median_change_norm=out["median_change_norm"], seconds=time.perf_counter() - t0))
                log(f"  {scheme:<15} {n:>3} clients  " + ("no DP     " if noise is None else f"z = {noise:<5g} ")
                    + f"final accuracy {out['history'][-1]:.4f}"
                    + (f"  epsilon {eps[-1]:.3g}" if noise is not None else "")
                    + f"  ({rows[-1]['seconds']:.0f} s)")
    return dict(dataset="digits", train_samples=int(len(ds.y_train)), test_samples=int(len(ds.y_test)),
                num_params=num_params(spec), delta=delta, rounds=cfg.rounds, rows=rows)


def check(result: dict[str, Any]) -> None:
    """What must hold whatever the machine: accuracies in [0, 1], epsilon growing with rounds, the
    reference well above chance, and more noise never spending more epsilon."""
    for row in result["rows"]:
        assert all(0.0 <= a <= 1.0 for a in row["accuracy"])
        if row["noise"] is None:
            assert row["accuracy"][-1] > 0.5, f"non-private reference too low: {row['accuracy']}"
        else:
            eps = row["epsilon"]
            assert all(a < b for a, b in zip(eps, eps[1:])), eps
    by = {}
    for row in result["rows"]:
        if row["noise"] is not None:
            by.setdefault((row["partition"], row["clients"]), []).append((row["noise"], row["epsilon"][-1]))
    for pairs in by.values():
        pairs.sort()
        assert all(e1 > e2 for (_, e1), (_, e2) in zip(pairs, pairs[1:])), pairs


def render(result: dict[str, Any], cfg: Config) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"digits: test accuracy (cumulative epsilon at delta {result['delta']:.2g}), central DP, "
                        f"C = {cfg.clip:g}",
                  caption="no DP = FedAvg weighted by samples; DP = clipped uniform mean + N(0, (z*C/n)^2)")
    table.add_column("split")
    table.add_column("clients", justify="right")
    table.add_column("z", justify="right")
    table.add_column("noise std", justify="right")
    for c in cfg.checkpoints:
        table.add_column(f"round {c}", justify="right")
    for row in result["rows"]:
        cells = []
        for c in cfg.checkpoints:
            acc, eps = row["accuracy"][c - 1], row["epsilon"][c - 1]
            cells.append(f"{acc:.3f}" + ("" if eps is None else f" (e={eps:.3g})"))
        table.add_row(row["partition"], str(row["clients"]), "no DP" if row["noise"] is None else f"{row['noise']:g}",
                      "-" if row["noise_std"] is None else f"{row['noise_std']:.3g}", *cells)
    console.print(table)


def plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    panels = list(dict.fromkeys((r["partition"], r["clients"]) for r in result["rows"]))
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (scheme, n) in zip(axes, panels):
        for row in (r for r in result["rows"] if (r["partition"], r["clients"]) == (scheme, n)):
            if row["noise"] is None:
                ax.axhline(row["accuracy"][-1], color="black", linestyle="--", label="no DP (final)")
            else:
                ax.plot(row["epsilon"], row["accuracy"], marker=".", label=f"z = {row['noise']:g}")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("cumulative epsilon")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.0, 1.02)
        ax.set_title(f"{scheme}, {n} clients")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.dp_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run that checks itself (tests)")
    parser.add_argument("--out", default="bench/results", help="folder for dp_accuracy.json and .png")
    parser.add_argument("--clip", type=float, default=None, help="clipping norm C [1.0]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = replace(QUICK if args.quick else Config(), seed=args.seed)
    if args.clip is not None:
        cfg = replace(cfg, clip=args.clip)
    started = time.perf_counter()
    result = measure(cfg)
    check(result)
    result.update(benchmark="dp_accuracy", quick=cfg.quick, seed=cfg.seed, clip=cfg.clip,
                  seconds=time.perf_counter() - started,
                  environment={"python": platform.python_version(), "numpy": np.__version__,
                               "machine": platform.machine()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "dp_accuracy_quick" if cfg.quick else "dp_accuracy"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / f"{stem}.png")
    render(result, cfg)
    print(f"wrote {out / stem}.json and .png in {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
