"""Submission gas against model size, ours against a contract that stores the weights.

    .venv/bin/python -m bench.gas_size [--quick] [--out bench/results]

For models of about 2k, 100k and 1M parameters: real canonical weight blobs,
sealed to the aggregator, stored, and their keccak-256 committed with
FederatedLearning.submitUpdate (gas must not depend on the size); and
NaiveWeightsOnChain.submitUpdate (a test-only contract), which writes the weight
bytes into storage, for the sizes that fit in a block. Anvil, started here.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ml import codec
from ml.models import ModelSpec, initial_weights, num_params, tensor_names
from ml.sealing import SealContext, generate_keypair, seal
from ml.store import LocalStore

# Three MLPs on digits-shaped input (8x8x1, 10 classes) of about 2k, 100k and 1M parameters.
SPECS = {
    "2k": ModelSpec("mlp", (8, 8, 1), 10, hidden=(24,)),
    "100k": ModelSpec("mlp", (8, 8, 1), 10, hidden=(1024, 32)),
    "1M": ModelSpec("mlp", (8, 8, 1), 10, hidden=(1024, 900)),
}
BLOCK_GAS_LIMIT = 30_000_000


def measure(sizes: list[str]) -> dict:
    from ape import accounts, chain, networks, project
    from ape.logging import logger

    from bench.gas import ADMIN_DELAY, NO_COMMITTEE, PARAMS

    logger.set_level("ERROR")
    rows = []
    with networks.parse_network_choice("ethereum:local:foundry"), tempfile.TemporaryDirectory() as tmp:
        admin, agg = accounts.test_accounts[0], accounts.test_accounts[1]
        kp = generate_keypair()
        fl = admin.deploy(project.FederatedLearning, dict(PARAMS, aggregatorKey=kp.public), NO_COMMITTEE, admin, agg,
                          ADMIN_DELAY)
        naive = admin.deploy(project.NaiveWeightsOnChain)
        store = LocalStore(Path(tmp))
        clients = [accounts.test_accounts[3 + i] for i in range(len(sizes))]
        for c in clients:
            fl.register(b"\x01" * 32, sender=c, value=PARAMS["minStake"])
        warm = accounts.test_accounts[2]
        fl.register(b"\x01" * 32, sender=warm, value=PARAMS["minStake"])
        fl.startRound(sender=agg)
        # The round's first submission also initialises its totals: measure only later ones.
        fl.submitUpdate(1, b"\x09" * 32, 100, "warm-up", sender=warm)
        naive.submitUpdate(1, b"\x01" * 64, 100, sender=warm)
        for name, c in zip(sizes, clients):
            spec = SPECS[name]
            w = initial_weights(spec, 0)
            plain = codec.encode(w, tensor_names(spec))
            blob = seal(plain, kp.public, SealContext(chain.chain_id, fl.address, 1, c.address))
            key = store.put(blob)
            tx = fl.submitUpdate(1, key, 100, store.locator(key), sender=c)
            row = dict(model=name, params=num_params(spec), blob_bytes=len(blob), ours_gas=tx.gas_used)
            if len(plain) <= 24_000:  # larger weight vectors do not fit in one block's gas
                ntx = naive.submitUpdate(1, plain, 100, sender=c)
                row.update(naive_gas=ntx.gas_used, ratio=ntx.gas_used / tx.gas_used)
            else:
                est = 21_000 + 16 * len(plain) + 22_100 * (len(plain) // 32 + 2)
                row.update(naive_gas=None, ratio=None,
                           note=f"naive would need about {est / 1e6:,.0f}M gas (block limit 30M): impossible")
            rows.append(row)
    ours = [r["ours_gas"] for r in rows]
    assert max(ours) - min(ours) <= 200, f"submission gas depends on the model size: {ours}"
    return {"rows": rows, "target": "submission gas constant in model size and at least 100x below the naive "
                                    "baseline on the small model"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the 2k and 100k models")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = measure(["2k", "100k"] if args.quick else ["2k", "100k", "1M"])
    t = Table(title="submitUpdate gas against model size", title_justify="left")
    for c in ("model", "params", "sealed blob bytes", "ours", "naive (weights in storage)", "naive / ours"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in data["rows"]:
        t.add_row(r["model"], f"{r['params']:,}", f"{r['blob_bytes']:,}", f"{r['ours_gas']:,}",
                  f"{r['naive_gas']:,}" if r["naive_gas"] else r.get("note", "-"),
                  f"{r['ratio']:.1f}x" if r["ratio"] else "-")
    Console(width=160).print(t)
    (args.out / f"gas_size{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
