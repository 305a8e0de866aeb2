"""Secure aggregation core (ml/secagg.py): exact cancellation, threshold recovery, uniform masks, fixed-point FedAvg."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from ml import secagg as S
from ml.sealing import public_key_of

CTX = S.RoundContext(31337, "0x" + "c0" * 20, 4)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _h(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def addr(i: int) -> str:
    """Spread-out deterministic addresses, so that address order differs from creation order."""
    return to_checksum_address("0x" + _h("addr", i)[:20].hex())


def secrets(i: int, params: S.SecAggParams, tag: str = "") -> S.RoundSecrets:
    """Deterministic round secrets (the module draws them from os.urandom; fixed here for reproducibility)."""
    sk = _h("round-key", i, tag)
    return S.RoundSecrets(sk, public_key_of(sk), _h("seed", i, tag) if params.self_mask else None)


def registered(i: int) -> bytes:
    """A participant's long-term registered X25519 private key (shares are sealed to its public key)."""
    return _h("registered", i)


def holders_for(dealer: str, addresses: list[str]) -> list[S.Holder]:
    """Index = 1 + position in the round's participant list; the dealer's own slot is skipped."""
    return [S.Holder(j + 1, a, public_key_of(registered(j))) for j, a in enumerate(addresses) if a != dealer]


def deal_round(addresses: list[str], sec: dict[str, S.RoundSecrets], t: int):
    """Every participant deals; every holder opens what it got. -> (dealings, opened[holder][dealer])."""
    dealings = {a: S.share_round_secret(sec[a], a, holders_for(a, addresses), t, CTX)[0] for a in addresses}
    opened = {
        h: {d: S.open_share(registered(j), dealings[d], h, CTX) for d in addresses if d != h}
        for j, h in enumerate(addresses)
    }
    return dealings, opened


# --------------------------------------------------------------------------- masks cancel exactly


@st.composite
def rounds(draw):
    n = draw(st.integers(2, 8))
    t = draw(st.integers(2, max(2, n - 1)))
    sharing = n - 1 >= t  # a dealer needs at least t holders (n = 2 cannot share: no dropout possible)
    survivors = draw(st.integers(t, n)) if sharing else n
    order = draw(st.permutations(range(n)))
    params = S.SecAggParams(clip=1.0, scale_bits=8, ring_bits=draw(st.sampled_from(S.RING_BITS)), threshold=t,
                            self_mask=draw(st.booleans()))
    return n, params, sharing, sorted(order[survivors:]), draw(st.integers(1, 40)), draw(st.integers(0, 2**32 - 1))


@SETTINGS
@given(rounds())
def test_masks_cancel_for_any_participants_and_dropouts(case):
    n, params, sharing, dropped_ids, length, seed = case
    addresses = [addr(seed % 1000 * 10 + i) for i in range(n)]
    sec = {a: secrets(i, params, str(seed)) for i, a in enumerate(addresses)}
    public = {a: sec[a].public_key for a in addresses}
    rng = np.random.default_rng(seed)  # test data only; masks come from the module's AES-CTR
    q = {a: rng.integers(0, params.modulus, size=length, dtype=np.uint64) for a in addresses}
    masked = {a: S.mask_update(q[a], sec[a], a, {b: public[b] for b in addresses if b != a}, params, CTX)
              for a in addresses}
    dropped = [addresses[i] for i in dropped_ids]
    survivors = [a for a in addresses if a not in dropped]

    recovered, seeds = {}, {}
    if sharing:
        dealings, opened = deal_round(addresses, sec, params.threshold)
        # A survivor that does not reveal its own seed has it rebuilt from its holders' seed shares.
        late = survivors[:1] if params.self_mask and len(survivors) - 1 >= params.threshold else []
        reveals = {h: S.shares_to_reveal(opened[h], dropped, [s for s in late if s != h]) for h in survivors}
        for d in dropped:
            shares = [reveals[h][d] for h in survivors]
            assert all(s.kind == S.KIND_KEY for s in shares)
            assert all(S.check_revealed(s.value, s.salt, dealings[d].commitment(s.kind, s.index)) for s in shares)
            recovered[d] = S.reconstruct_secret(shares, params.threshold, public[d])
        for s_ in late:
            shares = [reveals[h][s_] for h in survivors if h != s_]
            assert all(s.kind == S.KIND_SEED for s in shares)
            seeds[s_] = S.reconstruct_seed(shares, params.threshold, dealings[s_].seed_commitment)
    if params.self_mask:
        for s_ in survivors:
            seeds.setdefault(s_, sec[s_].self_seed)  # revealed by the survivor itself, checked against keccak
            assert S.seed_commitment(seeds[s_]) == sec[s_].seed_commitment

    total = S.unmask_sum({a: masked[a] for a in survivors}, public, recovered, params, CTX,
                         seeds if params.self_mask else None)
    expected = [sum(int(q[a][j]) for a in survivors) % params.modulus for j in range(length)]
    assert total.dtype == np.uint64 and [int(x) for x in total] == expected


def test_two_participants_masks_are_opposite():
    params = S.SecAggParams(1.0, 8, 64, 2, self_mask=False)
    a, b = addr(1), addr(2)
    sa, sb = secrets(1, params), secrets(2, params)
    ma = S.mask_for(sa.private_key, a, {b: sb.public_key}, 1000, params, CTX)
    mb = S.mask_for(sb.private_key, b, {a: sa.public_key}, 1000, params, CTX)
    assert ma.any() and np.array_equal(ma + mb, np.zeros(1000, np.uint64))
    assert S.pair_seed(sa.private_key, a, b, sb.public_key, CTX) == S.pair_seed(sb.private_key, b, a, sa.public_key, CTX)
    with_self = S.SecAggParams(1.0, 8, 64, 2)
    sa_self = secrets(1, with_self)
    q = np.arange(1000, dtype=np.uint64)
    masked = S.mask_update(q, sa_self, a, {b: sb.public_key}, with_self, CTX)
    assert np.array_equal(masked - ma - q, S.self_mask(sa_self.self_seed, a, 1000, with_self, CTX))
    with pytest.raises(S.SecAggError, match="not the one it published"):
        S.unmask_sum({a: masked}, {a: sa.public_key, b: sb.public_key}, {b: secrets(3, params).private_key}, with_self, CTX,
                     {a: sa_self.self_seed})
    other = S.RoundContext(CTX.chain_id, CTX.contract, CTX.round_id + 1)
    assert S.pair_seed(sa.private_key, a, b, sb.public_key, other) != S.pair_seed(sa.private_key, a, b, sb.public_key, CTX)


# --------------------------------------------------------------------------- threshold


def _dealt(n: int, t: int, params: S.SecAggParams):
    addresses = [addr(100 + i) for i in range(n)]
    sec = {a: secrets(i, params, "thr") for i, a in enumerate(addresses)}
    dealer = addresses[0]
    dealing, _ = S.share_round_secret(sec[dealer], dealer, holders_for(dealer, addresses), t, CTX)
    shares = [S.open_share(registered(j), dealing, h, CTX) for j, h in enumerate(addresses) if h != dealer]
    return sec[dealer], dealing, shares


def test_any_t_shares_recover_and_fewer_fail():
    params = S.SecAggParams(1.0, 8, 64, 3)
    sec, dealing, shares = _dealt(6, 3, params)  # 5 holders, t = 3
    keys = [s[S.KIND_KEY] for s in shares]
    seeds = [s[S.KIND_SEED] for s in shares]
    for subset in itertools.combinations(range(5), 3):
        assert S.reconstruct_secret([keys[i] for i in subset], 3, sec.public_key) == sec.private_key
        assert S.reconstruct_seed([seeds[i] for i in subset], 3, dealing.seed_commitment) == sec.self_seed
    assert S.reconstruct_secret(keys, 3, sec.public_key) == sec.private_key  # more than t: the t lowest are used
    for subset in itertools.combinations(range(5), 2):
        with pytest.raises(S.SecAggError, match="cannot recover"):
            S.reconstruct_secret([keys[i] for i in subset], 3, sec.public_key)
        # Lying about t: pycryptodome silently interpolates garbage; the public key check catches it.
        with pytest.raises(S.SecAggError, match="do not rebuild the published round key"):
            S.reconstruct_secret([keys[i] for i in subset], 2, sec.public_key)
        with pytest.raises(S.SecAggError, match="do not rebuild the committed self-mask seed"):
            S.reconstruct_seed([seeds[i] for i in subset], 2, dealing.seed_commitment)
    forged = S.Share(S.KIND_KEY, keys[2].index, bytes(32), keys[2].salt)
    with pytest.raises(S.SecAggError, match="do not rebuild"):
        S.reconstruct_secret([keys[0], keys[1], forged], 3, sec.public_key)
    with pytest.raises(S.SecAggError, match="same index"):
        S.reconstruct_secret([keys[0], keys[0], keys[1]], 3, sec.public_key)
    with pytest.raises(S.SecAggError, match="kind"):
        S.reconstruct_secret([keys[0], keys[1], seeds[2]], 3, sec.public_key)


def test_shares_to_reveal_never_both_of_one_dealer():
    share_k, share_s = S.Share(S.KIND_KEY, 1, b"k" * 32, b"s" * 32), S.Share(S.KIND_SEED, 1, b"x" * 32, b"y" * 32)
    opened = {addr(1): {S.KIND_KEY: share_k, S.KIND_SEED: share_s}, addr(2): {S.KIND_KEY: share_k, S.KIND_SEED: share_s}}
    out = S.shares_to_reveal(opened, dropped=[addr(1)], unrevealed_survivors=[addr(2)])
    assert out[addr(1)].kind == S.KIND_KEY and out[addr(2)].kind == S.KIND_SEED
    with pytest.raises(S.SecAggError, match="both dropped and a survivor"):
        S.shares_to_reveal(opened, dropped=[addr(1)], unrevealed_survivors=[addr(1)])


# --------------------------------------------------------------------------- uniformity of masked vectors


def _lanes_uniform(vec: np.ndarray, word_bytes: int) -> list[float]:
    """p-values of chi-square uniformity over 256 byte values: all bytes, then each byte lane of a word."""
    raw = vec.astype(f"<u{word_bytes}").view(np.uint8).reshape(-1, word_bytes)
    samples = [raw.ravel()] + [raw[:, i] for i in range(word_bytes)]
    return [stats.chisquare(np.bincount(s, minlength=256)).pvalue for s in samples]


@pytest.mark.parametrize("ring_bits", [64, 32])
def test_masked_vector_is_uniform_and_independent_of_the_update(ring_bits):
    # Why this check is sound: masked = q + m mod 2**k with m the AES-CTR keystream, independent of q. If m is
    # uniform, q + m is uniform for *every* q (a one-time pad), so the masked bytes must (a) be uniform both for an
    # all-zero update and for a very structured one, lane by lane (a mask that only covered part of a word, or a
    # biased PRG, shows up in a lane), and (b) have the same distribution whatever the update's value at the same
    # coordinate (contingency test between the sign of q -- high bytes 0x00 vs 0xff -- and each masked byte).
    # Necessary conditions only; the proof is the PRG's security. Fixed keys: the p-values are deterministic.
    # The pairwise masks alone must do it: self masks are off here.
    params = S.SecAggParams(clip=1.0, scale_bits=20, ring_bits=ring_bits, threshold=2, self_mask=False)
    wb = params.word_bytes
    length = 400_000 // wb  # 400 KB of masked bytes
    me, peers = addr(7), {addr(8): secrets(8, params).public_key, addr(9): secrets(9, params).public_key}
    sec = secrets(7, params)
    base = [np.zeros(length, np.float32)]
    ramp = [np.linspace(-1.5, 1.5, length, dtype=np.float32)]  # clipped at +-1: very structured
    q_zero, q_ramp = S.quantize(base, base, 1, params), S.quantize(ramp, base, 3, params)
    m_zero = S.mask_update(q_zero, sec, me, peers, params, CTX)
    m_ramp = S.mask_update(q_ramp, sec, me, peers, params, CTX)
    alpha = 1e-3 / (2 * (1 + wb))  # Bonferroni over every test in this function
    assert min(_lanes_uniform(q_ramp, wb)) < 1e-12  # the test has power: the update itself is far from uniform
    assert min(_lanes_uniform(m_zero, wb)) > alpha
    assert min(_lanes_uniform(m_ramp, wb)) > alpha
    negative = (q_ramp >> np.uint64(ring_bits - 1)).astype(bool)
    raw = m_ramp.astype(f"<u{wb}").view(np.uint8).reshape(-1, wb)
    for lane in range(wb):
        table = np.stack([np.bincount(raw[negative, lane], minlength=256), np.bincount(raw[~negative, lane], minlength=256)])
        assert stats.chi2_contingency(table).pvalue > alpha
    # The same masks on two updates leak their difference exactly: one masked vector per round, never two.
    assert np.array_equal((m_ramp - m_zero) & np.uint64(params.modulus - 1), q_ramp)


# --------------------------------------------------------------------------- fixed-point FedAvg


def test_hand_computed_fixed_point_fedavg():
    # clip 1, scale 2**4 = 16, 16-bit ring; q = rint(clip(delta) * n * 16), half to even.
    #   A, n=3 (x48): delta [0.25, -0.5, 2.0->1.0 | 0.03125]  -> [12, -24, 48 | 1.5->2]
    #   B, n=1 (x16): delta [-0.125, 0.0625, -3.0->-1.0 | 0.09375] -> [-2, 1, -16 | 1.5->2]
    #   C, n=2 (x32): delta [0.5, 0.0, 0.25 | 0.078125]        -> [16, 0, 8 | 2.5->2]
    #   sum = [26, -23, 40 | 6], N = 6, average delta = sum / (16 * 6) = sum / 96
    params = S.SecAggParams(clip=1.0, scale_bits=4, ring_bits=16, threshold=2)
    base = [np.array([0.5, -0.25, 1.0], np.float32), np.array([0.0], np.float32)]
    deltas = {"A": ([0.25, -0.5, 2.0], [0.03125], 3), "B": ([-0.125, 0.0625, -3.0], [0.09375], 1),
              "C": ([0.5, 0.0, 0.25], [0.078125], 2)}
    expected_q = {"A": [12, -24, 48, 2], "B": [-2, 1, -16, 2], "C": [16, 0, 8, 2]}
    q = {}
    for name, (d0, d1, n) in deltas.items():
        w = [base[0] + np.array(d0, np.float32), base[1] + np.array(d1, np.float32)]
        q[name] = S.quantize(w, base, n, params)
        assert [int(x) for x in q[name]] == [v % 2**16 for v in expected_q[name]]
    total = S.ring_sum(q.values(), params)
    assert [int(x) for x in total] == [26, 2**16 - 23, 40, 6]
    assert S.dequantize(total, 6, params).tolist() == [26 / 96, -23 / 96, 40 / 96, 6 / 96]
    new = S.aggregate(base, total, 6, params)
    assert new[0].dtype == np.float32 and new[0].shape == (3,) and new[1].shape == (1,)
    assert new[0].tolist() == [np.float32(0.5 + 26 / 96), np.float32(-0.25 - 23 / 96), np.float32(1.0 + 40 / 96)]
    assert new[1].tolist() == [0.0625]


@st.composite
def fedavg_cases(draw):
    ring_bits = draw(st.sampled_from(S.RING_BITS))
    max_scale = {16: 6, 32: 16, 64: 30}[ring_bits]  # keeps at least one sample in the ring for every clip below
    params = S.SecAggParams(clip=draw(st.sampled_from([0.5, 1.0, 0.3, 2.0])),
                            scale_bits=draw(st.integers(0, max_scale)), ring_bits=ring_bits, threshold=2)
    shapes = draw(st.lists(st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), min_size=1, max_size=3))
    f32 = st.floats(-4, 4, width=32, allow_nan=False)
    base = [np.array(draw(st.lists(f32, min_size=int(np.prod(s)), max_size=int(np.prod(s)))), np.float32).reshape(s)
            for s in shapes]
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        w = [np.array(draw(st.lists(f32, min_size=b.size, max_size=b.size)), np.float32).reshape(b.shape) for b in base]
        parts.append((w, draw(st.integers(1, 200))))
    return params, base, parts


@SETTINGS
@given(fedavg_cases())
def test_fixed_point_fedavg_matches_an_independent_computation(case):
    params, base, parts = case
    n_total = sum(n for _, n in parts)
    if n_total > params.max_total_samples():
        with pytest.raises(S.SecAggError, match="ring overflow"):
            S.aggregate(base, np.zeros(sum(b.size for b in base), np.uint64), n_total, params)
        return
    total = S.ring_sum([S.quantize(w, base, n, params) for w, n in parts], params)
    new = S.aggregate(base, total, n_total, params)
    # Independent: Python floats and ints, coordinate by coordinate (Python's round() is half to even).
    s = params.scale_bits
    for i, b in enumerate(base):
        for j in range(b.size):
            acc = 0
            for w, n in parts:
                d = float(w[i].ravel()[j]) - float(b.ravel()[j])
                acc += round(min(max(d, -params.clip), params.clip) * float(n * 2**s))
            assert abs(acc) < 2 ** (params.ring_bits - 1)
            want = np.float32(float(b.ravel()[j]) + float(acc) * 2.0**-s / n_total)
            assert new[i].ravel()[j].tobytes() == want.tobytes()


# --------------------------------------------------------------------------- tampering and context binding


def test_tampered_reveals_fail_check_revealed():
    params = S.SecAggParams(1.0, 8, 64, 2)
    _, dealing, shares = _dealt(4, 2, params)
    share = shares[0][S.KIND_KEY]
    commitment = dealing.commitment(S.KIND_KEY, share.index)
    assert S.check_revealed(share.value, share.salt, commitment)
    flipped = bytes([share.value[0] ^ 1]) + share.value[1:]
    assert not S.check_revealed(flipped, share.salt, commitment)
    assert not S.check_revealed(share.value, bytes(32), commitment)
    assert not S.check_revealed(share.value, share.salt, dealing.commitment(S.KIND_SEED, share.index))
    other = shares[1][S.KIND_KEY]  # another holder's genuine share is not this holder's
    assert not S.check_revealed(other.value, other.salt, commitment)
    assert not S.check_revealed(share.value[:16], share.salt, commitment)


def test_a_share_opens_only_for_its_holder_and_round():
    params = S.SecAggParams(1.0, 8, 64, 2)
    addresses = [addr(200 + i) for i in range(4)]
    dealer = addresses[0]
    dealing, content_keys = S.share_round_secret(secrets(0, params), dealer, holders_for(dealer, addresses), 2, CTX)
    h1, h2 = addresses[1], addresses[2]
    assert S.open_share(registered(1), dealing, h1, CTX)[S.KIND_KEY].index == 2
    with pytest.raises(S.SecAggError, match="not a recipient"):
        S.open_share(registered(2), dealing, h1, CTX)  # holder 2's key on holder 1's share
    for ctx in (S.RoundContext(CTX.chain_id, CTX.contract, CTX.round_id + 1),
                S.RoundContext(CTX.chain_id, "0x" + "c1" * 20, CTX.round_id),
                S.RoundContext(CTX.chain_id + 1, CTX.contract, CTX.round_id)):
        with pytest.raises(S.SecAggError, match="does not open"):
            S.open_share(registered(1), dealing, h1, ctx)
    # Share blobs swapped between holders: the blob is sealed to the other holder's key.
    swapped = S.Dealing(dealing.dealer, dealing.public_key, 2, dealing.seed_commitment, dealing.holders,
                        dealing.key_commitments, dealing.seed_commitments,
                        (dealing.encrypted[1], dealing.encrypted[0]) + dealing.encrypted[2:])
    with pytest.raises(S.SecAggError):
        S.open_share(registered(1), swapped, h1, CTX)
    with pytest.raises(S.SecAggError, match="not sealed to its registered key"):
        S.check_dealing(swapped, params, dealer, dealing.public_key, holders_for(dealer, addresses))
    # A complaint judged by anyone: the dealer discloses the content key of that one blob.
    assert S.open_disclosed_share(content_keys[1], dealing, h2, CTX) == S.open_share(registered(2), dealing, h2, CTX)
    with pytest.raises(S.SecAggError, match="does not open"):
        S.open_disclosed_share(content_keys[0], dealing, h2, CTX)
    # The canonical blob round-trips, and its digest (on chain) covers every byte.
    blob = dealing.to_bytes()
    assert len(blob) == S.dealing_size(3) and S.Dealing.from_bytes(blob) == dealing
    S.check_dealing(S.Dealing.from_bytes(blob), params, dealer, dealing.public_key, holders_for(dealer, addresses))
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert S.Dealing.from_bytes(tampered).digest != dealing.digest
    with pytest.raises(S.SecAggError, match="does not open"):
        S.open_share(registered(3), S.Dealing.from_bytes(tampered), addresses[3], CTX)
    with pytest.raises(S.SecAggError, match="bytes"):
        S.Dealing.from_bytes(blob[:-1])
    with pytest.raises(S.SecAggError, match="threshold"):
        S.check_dealing(dealing, S.SecAggParams(1.0, 8, 64, 3), dealer, dealing.public_key,
                        holders_for(dealer, addresses))


# --------------------------------------------------------------------------- parameters and inputs


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip=0.0), "clip must be a positive finite number"),
    (dict(clip=-1.0), "clip must be a positive finite number"),
    (dict(clip=float("nan")), "clip must be a positive finite number"),
    (dict(clip=float("inf")), "clip must be a positive finite number"),
    (dict(clip="1"), "clip must be a positive finite number"),
    (dict(scale_bits=-1), r"scale_bits must be in \[0, 62\]"),
    (dict(scale_bits=1.5), "scale_bits must be an integer"),
    (dict(ring_bits=48), r"ring_bits must be one of \(16, 32, 64\)"),
    (dict(ring_bits=128), "ring_bits must be one of"),
    (dict(threshold=1), "threshold must be >= 2"),
    (dict(threshold=True), "threshold must be an integer"),
    (dict(self_mask="yes"), "self_mask must be True or False"),
    (dict(clip=1.0, scale_bits=40, ring_bits=32), "ring overflow: .* leaves no room for one sample"),
])
def test_bad_params_are_refused_in_one_line(kwargs, message):
    args = dict(clip=1.0, scale_bits=16, ring_bits=64, threshold=2) | kwargs
    with pytest.raises(S.SecAggError, match=message) as info:
        S.SecAggParams(**args)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_ring_overflow_is_refused_and_the_bound_counts_rounding():
    # clip * 2**s = 17.5: each one-sample participant at +clip rounds to 18 (half to even).
    params = S.SecAggParams(clip=35 / 32, scale_bits=4, ring_bits=16, threshold=2)
    limit = params.max_total_samples()
    assert limit == S.max_total_samples(params) == 1820  # 1820 * 18 = 32760 < 2**15 <= 1821 * 18
    one = [np.array([1.5], np.float32)], [np.array([0.0], np.float32)]
    q = S.quantize(*one, 1, params)
    assert int(q[0]) == 18
    assert S.dequantize(S.ring_sum([q] * limit, params), limit, params)[0] > 0
    # The bound without the rounding term (N * clip * 2**s < 2**15, i.e. N <= 1872) would let the sum wrap:
    wrapped = S.ring_sum([q] * 1872, params)
    assert int(wrapped[0]) == (1872 * 18) % 2**16 and int(wrapped[0]) >= 2**15  # read back as negative
    with pytest.raises(S.SecAggError, match=r"ring overflow: 1821 samples exceed the 1820"):
        params.check_total_samples(limit + 1)
    with pytest.raises(S.SecAggError, match="ring overflow"):
        S.quantize(*one, limit + 1, params)
    with pytest.raises(S.SecAggError, match="ring overflow"):
        S.aggregate(one[1], wrapped, 1872, params)
    big = S.SecAggParams(clip=1.0, scale_bits=16, ring_bits=64)
    assert S.SecAggParams(clip=1.0, scale_bits=16, ring_bits=32).max_total_samples() == 32767
    assert big.max_total_samples() > 10**14


def test_bad_inputs_are_refused():
    params = S.SecAggParams(1.0, 8, 32, 2)
    base = [np.zeros(3, np.float32)]
    with pytest.raises(S.SecAggError, match="not float32"):
        S.quantize([np.zeros(3)], base, 1, params)
    with pytest.raises(S.SecAggError, match="shape"):
        S.quantize([np.zeros(4, np.float32)], base, 1, params)
    with pytest.raises(S.SecAggError, match="non-finite"):
        S.quantize([np.array([0, np.nan, 0], np.float32)], base, 1, params)
    with pytest.raises(S.SecAggError, match="total sample count must be >= 1"):
        S.quantize(base, base, 0, params)
    with pytest.raises(S.SecAggError, match="values >= 2\\*\\*32"):
        S.ring_sum([np.array([2**32], np.uint64)], params)
    with pytest.raises(S.SecAggError, match="coordinates"):
        S.aggregate(base, np.zeros(4, np.uint64), 1, params)
    zero, one = bytes(32), (1).to_bytes(32, "little")
    with pytest.raises(S.SecAggError, match="low-order"):
        S.check_public_key(zero)
    with pytest.raises(S.SecAggError, match="low-order"):
        S.check_public_key(one)
    with pytest.raises(S.SecAggError, match="not a canonical"):
        S.check_public_key(b"\xff" * 32)
    pk = secrets(1, params).public_key
    with pytest.raises(S.SecAggError, match="same round public key"):
        S.check_participants({addr(1): pk, addr(2): pk})
    with pytest.raises(S.SecAggError, match="among its own peers"):
        S.mask_for(secrets(1, params).private_key, addr(1), {addr(1): pk}, 3, params, CTX)
    with pytest.raises(S.SecAggError, match="self-mask seed"):
        S.mask_update(np.zeros(3, np.uint64), S.RoundSecrets(secrets(1, params).private_key, pk), addr(1),
                      {addr(2): secrets(2, params).public_key}, params, CTX)
    with pytest.raises(S.SecAggError, match="exactly the survivors"):
        S.unmask_sum({addr(1): np.zeros(3, np.uint64)}, {addr(1): pk}, {}, params, CTX, {})
    with pytest.raises(S.SecAggError, match="at least 2 holders"):
        S.share_round_secret(secrets(1, params), addr(1), holders_for(addr(1), [addr(1), addr(2)]), 2, CTX)
    with pytest.raises(S.SecAggError, match="20-byte hex address"):
        S.RoundContext(1, "0x1234", 1)


@pytest.mark.parametrize("ring_bits", S.RING_BITS)
def test_vector_wire_format(ring_bits):
    params = S.SecAggParams(1.0, 8, ring_bits, 2)
    v = np.array([0, 1, params.modulus - 1, 12345], np.uint64)
    blob = S.encode_vector(v, params)
    assert len(blob) == S.vector_blob_size(4, params) == 14 + 4 * ring_bits // 8
    assert np.array_equal(S.decode_vector(blob, params, 4), v)
    with pytest.raises(S.SecAggError, match="coordinates"):
        S.decode_vector(blob, params, 5)
    with pytest.raises(S.SecAggError, match="coordinates"):
        S.decode_vector(blob[:-1], params, 4)
    other = S.SecAggParams(1.0, 8, 64 if ring_bits != 64 else 32, 2)
    with pytest.raises(S.SecAggError, match="ring"):
        S.decode_vector(blob, other, 4)
