"""A private round from public data (ml/private.py): joins, masks, dropouts, reveals, faults.

Real X25519, AES-CTR and Shamir throughout; the expected models are FedAvg in fixed point computed
here from the plain updates, never from the masked ones.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from eth_utils import keccak, to_checksum_address

from ml import secagg as S
from ml.dp import clip_update, distributed_noise, distributed_sigma
from ml.private import Participant, Reveal, aggregate_private, holders_for, make_reveal
from ml.sealing import generate_keypair

CTX = S.RoundContext(31337, "0x" + "c1" * 20, 3)
PARAMS = S.SecAggParams(clip=1.0, scale_bits=20, ring_bits=64, threshold=2)
SHAPES = [(3, 4), (5,)]


def _addr(i: int) -> str:
    return to_checksum_address("0x" + hashlib.sha256(f"p{i}".encode()).digest()[:20].hex())


class Round:
    """n registered clients, all join; `dropped` never submit; everyone else masks, submits, reveals."""

    def __init__(self, n: int, dropped: set[int] = frozenset(), seed: int = 0, dp: tuple[float, float] | None = None):
        rng = np.random.default_rng(seed)
        self.base = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
        self.addresses = [_addr(i) for i in range(n)]
        self.registered = {a: generate_keypair() for a in self.addresses}
        self.keys = {a: k.public for a, k in self.registered.items()}
        self.blobs: dict[bytes, bytes] = {}
        self.secrets, self.dealings, self.parts = {}, {}, {}
        for a in self.addresses:  # join
            sec = S.new_round_secrets(PARAMS)
            dealing, _ = S.share_round_secret(sec, a, holders_for(a, self.keys), PARAMS.threshold, CTX)
            self.secrets[a], self.dealings[a] = sec, dealing
            self.parts[a] = Participant(a, sec.public_key, self._put(dealing.to_bytes()))
        self.updates = {}
        peers = {a: self.secrets[a].public_key for a in self.addresses}
        for i, a in enumerate(self.addresses):  # mask and submit
            if i in dropped:
                continue
            w = [b + rng.uniform(-0.5, 0.5, size=b.shape).astype(np.float32) for b in self.base]
            n_i = 10 + 7 * i
            self.updates[a] = (w, n_i)
            if dp is None:
                q = S.quantize(w, self.base, n_i, PARAMS)
            else:  # what Client._noised does: clip to C, weight 1, plus a discrete Gaussian share
                z, c = dp
                q = S.quantize(clip_update(self.base, w, c).weights, self.base, 1, PARAMS)
                sigma = distributed_sigma(z, c, PARAMS.scale_bits, q.size, PARAMS.threshold)
                noise = distributed_noise(q.size, sigma, bytes([i]) * 32)
                self.plain = getattr(self, "plain", {})
                self.plain[a] = S._reduce(q + noise.astype(np.uint64), PARAMS)
                q = self.plain[a]
            masked = S.mask_update(q, self.secrets[a], a, {p: k for p, k in peers.items() if p != a}, PARAMS, CTX)
            self.parts[a] = replace(self.parts[a], commitment=self._put(S.encode_vector(masked, PARAMS)), samples=n_i)
        self.dropped = [a for i, a in enumerate(self.addresses) if i in dropped]

    def _put(self, blob: bytes) -> bytes:
        h = keccak(blob)
        self.blobs[h] = blob
        return h

    def reveal_all(self, skip: set[str] = frozenset()) -> None:
        for a in self.addresses:
            if a in self.dropped or a in skip:
                continue
            rev = make_reveal(CTX.round_id, a, self.secrets[a], self.dealings, self.dropped,
                              self.registered[a].private, CTX)
            self.parts[a] = replace(self.parts[a], reveal_digest=self._put(rev.to_bytes()))

    def fetch(self, h: bytes, locator: str = "") -> bytes | None:
        return self.blobs.get(h)

    def run(self):
        return aggregate_private(self.base, list(self.parts.values()), self.fetch, PARAMS, CTX)

    def expected(self):
        """Fixed-point FedAvg of the survivors' plain updates (no masks anywhere)."""
        total = sum((S.quantize(w, self.base, n, PARAMS).astype(object) for w, n in self.updates.values()),
                    start=np.zeros(sum(int(np.prod(s)) for s in SHAPES), dtype=object))
        plain = np.array([int(x) % PARAMS.modulus for x in total], dtype=np.uint64)
        return S.aggregate(self.base, plain, sum(n for _, n in self.updates.values()), PARAMS)


@pytest.mark.parametrize("n, dropped", [(3, set()), (4, {1}), (5, {0, 3}), (5, {4})])
def test_the_aggregate_is_fedavg_for_any_dropouts_within_the_threshold(n, dropped):
    rnd = Round(n, dropped)
    rnd.reveal_all()
    res = rnd.run()
    assert res.faults == [] and res.note == ""
    assert sorted(res.dropped) == sorted(rnd.dropped)
    assert set(res.recovered) == set(rnd.dropped)
    for got, want in zip(res.weights, rnd.expected()):
        assert np.array_equal(got, want)
    # and it is FedAvg of the float updates within the fixed-point step
    w = sum(np.concatenate([x.ravel() for x in u]).astype(np.float64) * k for u, k in rnd.updates.values())
    fedavg = w / sum(k for _, k in rnd.updates.values())
    assert np.allclose(np.concatenate([x.ravel() for x in res.weights]), fedavg, atol=1e-5)


def test_too_many_dropouts_leave_no_model_and_slash_nobody():
    rnd = Round(4, {0, 1, 2})  # one survivor: one share of each dropped key, t = 2
    rnd.reveal_all()
    res = rnd.run()
    assert res.weights is None and res.faults == []
    assert "cannot be recovered" in res.note


@pytest.mark.parametrize("fault", ["missing_blob", "commitment_mismatch", "bad_vector", "missing_reveal",
                                   "bad_reveal_seed", "bad_reveal_share", "bad_reveal_withheld"])
def test_a_faulty_survivor_is_named_and_the_round_has_no_model(fault):
    rnd = Round(4, {2})
    bad = rnd.addresses[3]
    p = rnd.parts[bad]
    reason = fault.split("_seed")[0].split("_share")[0].split("_withheld")[0]
    if fault == "missing_blob":
        del rnd.blobs[p.commitment]
    elif fault == "commitment_mismatch":
        rnd.blobs[p.commitment] = rnd.blobs[p.commitment][:-1] + b"\x00"
    elif fault == "bad_vector":
        short = S.encode_vector(np.zeros(3, dtype=np.uint64), PARAMS)
        rnd.parts[bad] = replace(p, commitment=rnd._put(short))
    rnd.reveal_all(skip={bad} if fault == "missing_reveal" else set())
    if fault.startswith("bad_reveal"):
        rev = Reveal.from_bytes(rnd.blobs[rnd.parts[bad].reveal_digest])
        if fault == "bad_reveal_seed":
            rev = replace(rev, self_seed=bytes(32))
        elif fault == "bad_reveal_share":
            d, s = rev.shares[0]
            rev = replace(rev, shares=((d, S.Share(s.kind, s.index, bytes(32), s.salt)),))
        else:
            rev = replace(rev, shares=())
        rnd.parts[bad] = replace(rnd.parts[bad], reveal_digest=rnd._put(rev.to_bytes()))
    res = rnd.run()
    assert res.weights is None
    assert [(f.client, f.reason) for f in res.faults] == [(bad, reason)]


def test_fewer_than_t_colluders_and_the_public_see_only_masked_vectors():
    """What an aggregator plus t - 1 = 1 client holds (every public blob, that client's secrets) does not
    give another survivor's update: its masked vector minus everything the coalition can compute
    still carries the pairwise masks with the honest others, and its self mask."""
    rnd = Round(3)
    rnd.reveal_all()
    a, b, c = rnd.addresses
    masked_b = S.decode_vector(rnd.blobs[rnd.parts[b].commitment], PARAMS, 17)
    w_b, n_b = rnd.updates[b]
    q_b = S.quantize(w_b, rnd.base, n_b, PARAMS)
    # the colluder a removes its own pairwise mask with b: b's mask with c remains (a does not hold it)
    seed_ab = S.pair_seed(rnd.secrets[a].private_key, a, b, rnd.secrets[b].public_key, CTX)
    assert len(seed_ab) == 32
    mine = S.mask_for(rnd.secrets[a].private_key, a, {b: rnd.secrets[b].public_key}, 17, PARAMS, CTX)
    residue = (masked_b.astype(object) + mine.astype(object)) % PARAMS.modulus  # a's part cancelled
    assert not np.array_equal(np.array(residue, dtype=np.uint64), q_b)
    # the coalition's single share of c's key does not rebuild it
    share = S.open_share(rnd.registered[a].private, rnd.dealings[c], a, CTX)[S.KIND_KEY]
    with pytest.raises(S.SecAggError):
        S.reconstruct_secret([share], PARAMS.threshold, rnd.secrets[c].public_key)


def test_distributed_dp_round_is_the_mean_of_the_noised_vectors_and_the_noise_has_the_promised_scale():
    """Each survivor clips to C, quantizes with weight 1 and adds its discrete Gaussian share: the public
    aggregate is exactly the uniform mean of the noised vectors, and the noise on the sum is at least
    z times the sum's sensitivity (it is sized for t survivors; more survivors only add noise)."""
    z, c = 1.0, 0.5
    rnd = Round(5, {1}, dp=(z, c))
    rnd.reveal_all()
    res = aggregate_private(rnd.base, list(rnd.parts.values()), rnd.fetch, PARAMS, CTX, uniform=True)
    assert res.faults == [] and res.total_samples == 4
    total = np.zeros(17, dtype=np.uint64)
    for v in rnd.plain.values():
        total = S._reduce(total + v, PARAMS)
    for got, want in zip(res.weights, S.aggregate(rnd.base, total, 4, PARAMS)):
        assert np.array_equal(got, want)
    # the scale, on many coordinates: 4 shares sum to std sigma * 2 = z * sensitivity * sqrt(4 / t)
    dim = 20_000
    sigma = distributed_sigma(z, c, PARAMS.scale_bits, dim, PARAMS.threshold)
    sensitivity = c * 2**PARAMS.scale_bits + dim**0.5 / 2
    assert sigma == pytest.approx(z * sensitivity / 2**0.5)
    summed = sum(distributed_noise(dim, sigma, bytes([9, k]) * 16).astype(np.float64) for k in range(4))
    assert summed.std() == pytest.approx(2 * sigma, rel=0.03)
    assert summed.std() >= 0.97 * z * sensitivity
