"""Private-mode (secure aggregation) costs of ml/secagg.py, in one run.

    .venv/bin/python -m bench.secagg [--quick] [--out bench/results]

For 1M float32 parameters and 10 and 100 participants, in a 64- and a 32-bit ring:
one participant's time to quantize and mask its update (n - 1 pairwise masks plus
its self mask), the time to unmask a sum with one dropout (sum the n - 1 survivors'
vectors, remove the dropped participant's masks with each survivor and every
survivor's self mask), the Shamir costs (deal to n - 1 holders, rebuild one key
from t shares) and the bytes: a masked vector takes ring_bits / 8 bytes per
parameter (8 at 64 bits, twice a float32 plaintext; 4 at 32 bits, the same), plus
a 14-byte header (the robust-mode column is the float32 data sealed to the aggregator
and 2 verifiers, without the safetensors header). The ring capacity table says how many samples a job may total
before a 32-bit ring could overflow. Each timing is the best of a few repeats.

Correctness (asserted, never timings): at 10 participants (and in --quick) a whole
round runs for real -- deal, open, mask, reveal, rebuild, unmask -- and the unmasked
sum equals the plain sum bit for bit, and the new model is FedAvg within the
fixed-point error. At 100 participants the survivors' masked vectors are random
stand-ins (their content does not change the time) to keep the run short.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils import to_checksum_address
from rich.console import Console
from rich.table import Table

from bench.throughput import _best  # fastest of a few runs: the same rule as the throughput bench
from ml import secagg as S
from ml.sealing import generate_keypair, sealed_overhead

CTX = S.RoundContext(31337, "0x" + "5a" * 20, 1)
CLIP, SCALE_BITS = 1.0, 16


def _addresses(n: int) -> list[str]:
    return [to_checksum_address(f"0x{(i * 0x9E3779B97F4A7C15 + 1) % 2**160:040x}") for i in range(n)]


def _model(params_count: int, rng: np.random.Generator) -> list[np.ndarray]:
    shapes = [(params_count // 2,), (params_count - params_count // 2,)]  # two tensors, as a model has several
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def whole_round(n: int, params_count: int, params: S.SecAggParams, seed: int = 0) -> dict[str, Any]:
    """A real round with one dropout; asserts exactness and FedAvg. Returns the shares' costs and sizes."""
    rng = np.random.default_rng(seed)  # test data only; masks come from the module's AES-CTR
    addresses = _addresses(n)
    registered = {a: generate_keypair() for a in addresses}
    secrets = {a: S.new_round_secrets(params) for a in addresses}
    holders = {a: [S.Holder(i + 1, b, registered[b].public) for i, b in enumerate(addresses) if b != a]
               for a in addresses}
    deal_s, dealings = float("inf"), {}
    for a in addresses:
        t0 = time.perf_counter()
        dealings[a] = S.share_round_secret(secrets[a], a, holders[a], params.threshold, CTX)[0]
        deal_s = min(deal_s, time.perf_counter() - t0)
        S.check_dealing(S.Dealing.from_bytes(dealings[a].to_bytes()), params, a, secrets[a].public_key, holders[a])
    base = _model(params_count, rng)
    samples = {a: int(rng.integers(10, 1000)) for a in addresses}
    weights = {a: [(b + rng.normal(0, 0.05, b.shape)).astype(np.float32) for b in base] for a in addresses}
    public = {a: secrets[a].public_key for a in addresses}
    q = {a: S.quantize(weights[a], base, samples[a], params) for a in addresses}
    masked = {a: S.mask_update(q[a], secrets[a], a, {b: public[b] for b in addresses if b != a}, params, CTX)
              for a in addresses}
    dropped = addresses[n // 2]
    survivors = [a for a in addresses if a != dropped]
    shares = []
    for a in survivors:
        opened = S.open_share(registered[a].private, dealings[dropped], a, CTX)
        share = S.shares_to_reveal({dropped: opened}, [dropped])[dropped]
        assert S.check_revealed(share.value, share.salt, dealings[dropped].commitment(share.kind, share.index))
        shares.append(share)
    rebuild_s, key = _best(lambda: S.reconstruct_secret(shares, params.threshold, public[dropped]), 1)
    total = S.unmask_sum({a: masked[a] for a in survivors}, public, {dropped: key}, params, CTX,
                         {a: secrets[a].self_seed for a in survivors})
    assert np.array_equal(total, S.ring_sum([q[a] for a in survivors], params)), "unmasked sum != plain sum"
    n_total = sum(samples[a] for a in survivors)
    new = S.aggregate(base, total, n_total, params)
    fedavg = [sum(samples[a] * weights[a][i].astype(np.float64) for a in survivors) / n_total for i in range(len(base))]
    bound = len(survivors) / (2 * n_total * 2**params.scale_bits)  # rounding of each q, then float32
    assert all(np.abs(x - y).max() <= bound + 1e-6 * (1 + np.abs(y).max()) for x, y in zip(new, fedavg))
    return dict(deal_s=deal_s, rebuild_s=rebuild_s, dealing_bytes=len(dealings[addresses[0]].to_bytes()))


def client_cost(n: int, params_count: int, params: S.SecAggParams, repeats: int) -> dict[str, Any]:
    """One participant's quantize + mask with n - 1 peers (and its self mask)."""
    rng = np.random.default_rng(1)
    addresses = _addresses(n)
    me, peers = addresses[0], {a: generate_keypair().public for a in addresses[1:]}
    secrets = S.new_round_secrets(params)
    base = _model(params_count, rng)
    weights = [(b + rng.normal(0, 0.05, b.shape)).astype(np.float32) for b in base]
    tq, q = _best(lambda: S.quantize(weights, base, 100, params), repeats)
    tm, _ = _best(lambda: S.mask_update(q, secrets, me, peers, params, CTX), repeats)
    return dict(ring_bits=params.ring_bits, participants=n, params=params_count, masks=n - 1 + params.self_mask,
                quantize_s=tq, mask_s=tm, client_s=tq + tm)


def noise_cost(params_count: int, params: S.SecAggParams, repeats: int, exact_samples: int = 2000) -> dict[str, Any]:
    """Distributed DP: one client's discrete Gaussian share (z = 1) for the whole model, vectorised against
    the exact rational sampler (timed on ``exact_samples`` draws and scaled to the model)."""
    from fractions import Fraction

    from ml.dp import discrete_gaussian, distributed_noise, distributed_sigma, seeded_rng

    sigma = distributed_sigma(1.0, CLIP, params.scale_bits, params_count, params.threshold)
    fast, _ = _best(lambda: distributed_noise(params_count, sigma, bytes(32)), repeats)
    t0 = time.perf_counter()
    discrete_gaussian(Fraction(sigma) ** 2, exact_samples, seeded_rng(bytes(32)))
    exact = (time.perf_counter() - t0) * params_count / exact_samples
    return dict(params=params_count, sigma=sigma, vectorised_s=fast, exact_s_scaled=exact, speedup=exact / fast)


def unmask_cost(n: int, params_count: int, params: S.SecAggParams, repeats: int) -> dict[str, Any]:
    """Unmask a sum of n - 1 survivors with one dropout (stand-in vectors: content does not change the time)."""
    rng = np.random.default_rng(2)
    addresses = _addresses(n)
    dropped, survivors = addresses[0], addresses[1:]
    secrets = {a: S.new_round_secrets(params) for a in addresses}
    pool = [rng.integers(0, params.modulus, params_count, dtype=np.uint64) for _ in range(min(8, len(survivors)))]
    masked = {a: pool[i % len(pool)] for i, a in enumerate(survivors)}
    public = {a: secrets[a].public_key for a in survivors}
    seeds = {a: secrets[a].self_seed for a in survivors}
    t, _ = _best(lambda: S.unmask_sum(masked, public, {dropped: secrets[dropped].private_key}, params, CTX, seeds),
                 repeats)
    tsum, _ = _best(lambda: S.ring_sum(masked.values(), params), repeats)
    return dict(ring_bits=params.ring_bits, participants=n, dropouts=1, params=params_count, unmask_s=t,
                of_which_sum_s=tsum, masks_recomputed=len(survivors) * (1 + params.self_mask))


def shares_cost(n: int, params: S.SecAggParams, measured: dict[str, Any] | None) -> dict[str, Any]:
    holders = n - 1
    t = params.threshold
    if measured is None:  # 100 participants: deal once and rebuild once, no whole round
        addresses = _addresses(n)
        secrets = S.new_round_secrets(params)
        keys = {a: generate_keypair() for a in addresses[1:]}
        hs = [S.Holder(i + 2, a, keys[a].public) for i, a in enumerate(addresses[1:])]
        deal_s, (dealing, _) = _best(lambda: S.share_round_secret(secrets, addresses[0], hs, t, CTX), 1)
        shares = [S.open_share(keys[h.address].private, dealing, h.address, CTX)[S.KIND_KEY] for h in hs[:t]]
        rebuild_s, _ = _best(lambda: S.reconstruct_secret(shares, t, secrets.public_key), 1)
        measured = dict(deal_s=deal_s, rebuild_s=rebuild_s, dealing_bytes=len(dealing.to_bytes()))
    assert measured["dealing_bytes"] == S.dealing_size(holders, params.self_mask)
    return dict(participants=n, threshold=t, holders=holders, deal_s=measured["deal_s"], rebuild_s=measured["rebuild_s"],
                dealing_bytes=measured["dealing_bytes"], share_blob_bytes=S.encrypted_share_size(params.self_mask),
                reveal_bytes_per_share=2 + 32 + 32)


def sizes(params_count: int) -> list[dict[str, Any]]:
    rows = []
    for ring_bits in (64, 32):
        p = S.SecAggParams(CLIP, SCALE_BITS, ring_bits)
        masked = S.vector_blob_size(params_count, p)
        rows.append(dict(ring_bits=ring_bits, params=params_count, masked_bytes=masked, float32_bytes=4 * params_count,
                         ratio_to_float32=masked / (4 * params_count),
                         sealed_robust_k2_bytes=4 * params_count + sealed_overhead(3)))
    return rows


def capacity() -> list[dict[str, Any]]:
    rows = []
    for ring_bits, clip, scale_bits in [(32, 1.0, 16), (32, 1.0, 14), (32, 0.1, 16), (32, 0.5, 12), (64, 1.0, 16),
                                        (64, 1.0, 24), (64, 10.0, 32)]:
        p = S.SecAggParams(clip, scale_bits, ring_bits)
        rows.append(dict(ring_bits=ring_bits, clip=clip, scale_bits=scale_bits, max_total_samples=p.max_total_samples(),
                         step_per_sample=2.0**-scale_bits))
    return rows


def run(params_count: int, clients: tuple[int, ...], repeats: int, real_round_max: int) -> dict[str, Any]:
    client, unmask, shares = [], [], []
    for n in clients:
        measured = None
        for ring_bits in (64, 32):
            params = S.SecAggParams(CLIP, SCALE_BITS, ring_bits, threshold=n // 2 + 1)
            if n <= real_round_max:
                measured = whole_round(n, params_count, params)
            client.append(client_cost(n, params_count, params, repeats))
            unmask.append(unmask_cost(n, params_count, params, repeats))
        shares.append(shares_cost(n, S.SecAggParams(CLIP, SCALE_BITS, 64, threshold=n // 2 + 1), measured))
    noise = [noise_cost(params_count, S.SecAggParams(CLIP, SCALE_BITS, 64, threshold=clients[0] // 2 + 1), repeats)]
    return dict(client=client, unmask=unmask, shares=shares, noise=noise, sizes=sizes(params_count), capacity=capacity(),
                settings=dict(clip=CLIP, scale_bits=SCALE_BITS, threshold="n // 2 + 1", self_mask=True),
                target="client time to mask 1M parameters with 10 and 100 participants; bytes vs float32")


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(*(f"{v:.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                    else str(v) for v in r.values()))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes that check correctness (CI)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = run(10_000, (3, 5), 1, 5) if args.quick else run(1_000_000, (10, 100), 3, 10)
    data.update(quick=args.quick, machine=dict(python=platform.python_version(), processor=platform.machine(),
                                                numpy=np.__version__))
    console = Console(width=160)
    console.print(_table("One participant: quantize + mask (n - 1 pairwise masks + 1 self mask)", data["client"]))
    console.print(_table("Unmask a sum with one dropout (anyone, public data only)", data["unmask"]))
    console.print(_table("Shamir shares of the round key and self-mask seed (64-bit ring)", data["shares"]))
    console.print(_table("Distributed DP: one client's discrete Gaussian noise share (z = 1, 64-bit ring)", data["noise"]))
    console.print(_table("Bytes of one update (masked vector blob vs float32 plaintext)", data["sizes"]))
    console.print(_table("Ring capacity: largest total samples per round (clip, scale_bits)", data["capacity"]))
    (args.out / f"secagg{'_quick' if args.quick else ''}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
