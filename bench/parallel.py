"""Parallel local training in federated_round: workers=1 against workers=2, in one run.

    .venv/bin/python -m bench.parallel [--quick] [--out bench/results]

10 clients on digits, on the embedded chain, each workload with --workers 1 and
--workers 2: the training phase per round (the wall time of training every chosen
client), the whole round, the run's wall time, and the part of the workers'
start-up that the run waited for (each worker imports TensorFlow and builds the
model once per run, while the parent registers the clients). speedup = workers=1's time /
workers=2's time (above 1: parallel is faster). Two workloads, because the gain
depends on how much training there is to share: the digits MLP at E=1 (milliseconds
per client) and the CNN at E=5.

Asserts correctness, never a timing: every round finalizes and every round's model
hash with workers=2 equals workers=1's (bit-identical). Results go to OUT/parallel.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


WORKLOADS = {"mlp E=1": dict(arch="mlp", epochs=1), "cnn E=5": dict(arch="cnn", epochs=5)}


def _run(**cfg: Any) -> Any:
    """One federated_round run on the embedded chain, quiet, in a temporary folder.

    Imports here, not at the top: each spawned worker imports this module again (it is __main__)."""
    from ape import networks
    from ape.logging import logger

    from ml.parties.federation import Federation, FederationConfig

    logger.set_level("ERROR")
    with tempfile.TemporaryDirectory() as tmp, networks.parse_network_choice("ethereum:local:test"):
        res = Federation(FederationConfig(out=Path(tmp) / "out", quiet=True, baseline=False, **cfg)).run()
    assert all(r.status == "finalized" for r in res.rows), [r.status for r in res.rows]
    return res


def _measure(workload: str, workers: int, clients: int, rounds: int) -> tuple[dict[str, Any], list[str]]:
    t0 = time.perf_counter()
    res = _run(clients=clients, rounds=rounds, workers=workers, **WORKLOADS[workload])
    wall = time.perf_counter() - t0
    training = [r.phases.get("training", 0.0) for r in res.rows]
    waited = res.timings.get("training", 0.0) - sum(training)  # training time outside the rounds
    row = dict(workload=workload, workers=workers, clients=clients, rounds=len(res.rows),
               training_s_per_round=sum(training) / len(training),
               round_s=sum(r.seconds for r in res.rows) / len(res.rows),
               startup_wait_s=max(0.0, waited), run_wall_s=wall)
    return row, [r.model_hash for r in res.rows]


def _warm_up(workloads: list[str]) -> None:
    """TensorFlow imported and each model traced here first, so workers=1 is not charged for it."""
    from ml.data import load_dataset
    from ml.models import spec_for_dataset
    from ml.training import warm_up

    ds = load_dataset("digits")
    for w in workloads:
        warm_up(spec_for_dataset(ds, WORKLOADS[w]["arch"]))


def measure(quick: bool) -> dict[str, Any]:
    workloads = ["mlp E=1"] if quick else list(WORKLOADS)
    clients, rounds = (3, 1) if quick else (10, 3)
    _warm_up(workloads)
    rows, speedups = [], []
    for w in workloads:
        seq, seq_hashes = _measure(w, 1, clients, rounds)
        par, par_hashes = _measure(w, 2, clients, rounds)
        assert par_hashes == seq_hashes, f"{w}: workers=2 gave other models than workers=1"
        rows += [seq, par]
        speedups.append(dict(
            workload=w, training_speedup=seq["training_s_per_round"] / par["training_s_per_round"],
            round_speedup=seq["round_s"] / par["round_s"], run_speedup=seq["run_wall_s"] / par["run_wall_s"],
            startup_wait_s=par["startup_wait_s"], bit_identical=True))
    return {"rows": rows, "speedups": speedups, "cpus": os.cpu_count(),
            "target": "training phase faster with 2 workers than with 1, models bit-identical"}


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for k in rows[0]:
        t.add_column(k, justify="left" if isinstance(rows[0][k], str) else "right")
    for r in rows:
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r.values()])
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings that check correctness (CI)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = measure(args.quick)
    data.update(quick=args.quick, seconds=time.perf_counter() - t0,
                machine=dict(python=platform.python_version(), processor=platform.machine()))
    console = Console(width=160)
    console.print(_table("parallel: federated_round with --workers 1 and 2", data["rows"]))
    console.print(_table("parallel: speed-up of --workers 2 (workers=1 time / workers=2 time)", data["speedups"]))
    (args.out / f"parallel{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
