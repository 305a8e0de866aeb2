"""Aggregation throughput against the machine's memory copy bandwidth, in one run.

    .venv/bin/python -m bench.throughput [--quick] [--out bench/results]

For 10 and 100 clients of 1M float32 parameters, each strategy's throughput is
the bytes of updates it consumes per second (n * 4 MB / time). Beside it, the
bandwidth of a numpy copy of the same bytes measured in the same run; the ratio
is what the target speaks of (FedAvg at least half of the copy bandwidth).
Each timing is the best of a few repeats. The benchmark also checks that every
strategy returns finite weights of the right shapes, bit-identical on a repeat.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from ml import aggregation
from ml.aggregation import ClientUpdate

STRATEGIES: dict[str, Callable[[list[ClientUpdate]], Any]] = {
    "fedavg": lambda u: aggregation.fedavg(u),
    "median": lambda u: aggregation.median(u),
    "trimmed_mean": lambda u: aggregation.trimmed_mean(u, beta=0.1),
    "multi_krum": lambda u: aggregation.multi_krum(u, f=max(1, len(u) // 10)),
}


def _updates(n: int, d: int, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    shapes = [(d // 2,), (d - d // 2,)]  # two tensors, as a model has several
    return [ClientUpdate(key=f"0x{i:040x}", weights=[rng.standard_normal(s, dtype=np.float32) for s in shapes],
                         num_samples=int(rng.integers(10, 1000))) for i in range(n)]


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes per second of np.copyto over a buffer of nbytes (the reference)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t, _ = _best(lambda: np.copyto(dst, src), repeats)
    return nbytes / t


def run(clients: tuple[int, ...], params: int, repeats: int) -> dict[str, Any]:
    rows = []
    for n in clients:
        ups = _updates(n, params)
        nbytes = n * params * 4
        copy_bps = copy_bandwidth(nbytes, repeats)
        for name, fn in STRATEGIES.items():
            reps = 1 if (name == "multi_krum" and n >= 100) else repeats
            t, res = _best(lambda: fn(ups), reps)
            again = fn(list(reversed(ups)))
            assert all(np.array_equal(a, b) for a, b in zip(res.weights, again.weights)), name
            assert all(np.isfinite(w).all() for w in res.weights), name
            assert [w.shape for w in res.weights] == [w.shape for w in ups[0].weights], name
            rows.append(dict(strategy=name, clients=n, params=params, seconds=t, mb_per_s=nbytes / t / 1e6,
                             copy_mb_per_s=copy_bps / 1e6, ratio_to_copy=(nbytes / t) / copy_bps))
    return {"rows": rows, "target": "FedAvg aggregation at least half of the memory copy bandwidth"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes that check correctness (CI)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = run((5, 8), 10_000, 2) if args.quick else run((10, 100), 1_000_000, 3)
    data.update(quick=args.quick, machine=dict(python=platform.python_version(), processor=platform.machine(),
                                                numpy=np.__version__))
    t = Table(title="Aggregation throughput (bytes of updates consumed per second)", title_justify="left")
    for col in ("strategy", "clients", "params", "seconds", "MB/s", "copy MB/s", "ratio to copy"):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in data["rows"]:
        t.add_row(r["strategy"], str(r["clients"]), f"{r['params']:,}", f"{r['seconds']:.3f}", f"{r['mb_per_s']:,.0f}",
                  f"{r['copy_mb_per_s']:,.0f}", f"{r['ratio_to_copy']:.3f}")
    Console(width=140).print(t)
    (args.out / f"throughput{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
