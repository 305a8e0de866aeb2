"""`make bench`: every benchmark part, each of which also runs alone.

    .venv/bin/python -m bench [--quick] [--out bench/results]
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

PARTS = ["bench.gas", "bench.gas_size", "bench.throughput", "bench.accuracy", "bench.ml_accuracy", "bench.rounds",
         "bench.parallel", "bench.secagg", "bench.dp_accuracy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings that check correctness (CI)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    failed = []
    for name in PARTS:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"   skipped: {exc}")
            continue
        try:
            rc = mod.main((["--quick"] if args.quick else []) + ["--out", str(args.out)])
        except Exception as exc:  # a failed check in one part must not hide the others
            print(f"   FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            rc = 1
        rc = rc if isinstance(rc, int) else 0  # some parts return their results
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        if rc:
            failed.append(name)
    from bench.summary import write_summary

    print(f"summary: {write_summary(args.out, quick=args.quick)}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
