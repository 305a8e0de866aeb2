"""ml.dp: clipping bound, seeded noise scale and bits, RDP accounting against dp-accounting, budget, errors."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ml.dp import (
    NoiseStream,
    sample_discrete_gaussian,
    Accountant,
    BudgetExceeded,
    DPError,
    DPParams,
    central_dp_mean,
    change_norm,
    clip_update,
    default_delta,
    derive_seed,
    discrete_gaussian,
    epsilon,
    gaussian_noise,
    noise_std,
    seeded_rng,
)

REPO = Path(__file__).resolve().parents[2]
SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))

def measured_norm(base, out) -> float:
    """The change's L2 norm, computed here independently of ml.dp: exact float64 differences, fsum of squares."""
    return math.sqrt(math.fsum(
        float(v) ** 2 for b, o in zip(base, out)
        for v in (np.asarray(o, dtype=np.float64) - np.asarray(b, dtype=np.float64)).ravel()))


# --------------------------------------------------------------------------- clipping

SHAPES = st.lists(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), min_size=1, max_size=3)
# Any finite float32, which includes huge values near 3.4e38 and subnormals near 1.4e-45.
ANY_F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
SCALES = st.sampled_from([0.0, 1e-40, 1e-30, 1e-8, 1e-3, 1.0, 1e3, 1e8, 1e20, 1e37])
CLIPS = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([1e-45, 1e-38, 1e-6, 1.0, 3.0e38]))


@st.composite
def pair_any(draw):
    """Base and weights with arbitrary float32 entries (independent, so any change, up to ~6.8e38 per entry)."""
    shapes = draw(SHAPES)
    base = [draw(hnp.arrays(np.float32, s, elements=ANY_F32)) for s in shapes]
    weights = [draw(hnp.arrays(np.float32, s, elements=ANY_F32)) for s in shapes]
    return base, weights


@st.composite
def pair_scaled(draw):
    """Base of one magnitude, change of another: covers changes far below and far above an ulp of the base."""
    shapes = draw(SHAPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b_scale, d_scale = draw(SCALES), draw(SCALES)
    base = [(rng.standard_normal(s) * b_scale).astype(np.float32) for s in shapes]
    weights = [(b.astype(np.float64) + rng.standard_normal(s) * d_scale).astype(np.float32)
               for b, s in zip(base, shapes)]
    return base, weights


@settings(max_examples=150, deadline=None)
@given(pair=st.one_of(pair_any(), pair_scaled()), clip=CLIPS)
def test_clipped_change_never_exceeds_C(pair, clip):
    base, weights = pair
    out, norm = clip_update(base, weights, clip)
    assert [o.shape for o in out] == [b.shape for b in base]
    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in out)
    assert measured_norm(base, out) <= clip  # strict: no tolerance
    assert norm == pytest.approx(measured_norm(base, weights), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(pair=pair_scaled(), clip=st.floats(min_value=1e-6, max_value=1e6))
def test_change_within_C_is_returned_unchanged(pair, clip):
    base, weights = pair
    if change_norm(base, weights) > clip * (1 - 1e-6):
        weights = base  # nothing to check for this draw except the zero change
    out, _ = clip_update(base, weights, clip)
    assert all(o.tobytes() == w.tobytes() for o, w in zip(out, weights))


def test_zero_change():
    base = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    out, norm = clip_update(base, [b.copy() for b in base], 0.5)
    assert norm == 0.0
    assert all(o.tobytes() == b.tobytes() for o, b in zip(out, base))
    assert all(o is not b for o, b in zip(out, base))  # copies, so the caller can modify them


def test_clipping_keeps_direction_and_reaches_C():
    rng = np.random.default_rng(3)
    base = [np.zeros((30, 10), np.float32), np.zeros(10, np.float32)]
    weights = [rng.standard_normal(b.shape).astype(np.float32) * 50 for b in base]
    out, norm = clip_update(base, weights, 2.0)
    assert norm == pytest.approx(change_norm(base, weights))
    assert norm > 2.0
    got = measured_norm(base, out)
    assert 2.0 * (1 - 1e-6) <= got <= 2.0
    flat_in = np.concatenate([w.ravel() for w in weights]).astype(np.float64)
    flat_out = np.concatenate([o.ravel() for o in out]).astype(np.float64)
    assert flat_in @ flat_out / (np.linalg.norm(flat_in) * np.linalg.norm(flat_out)) > 1 - 1e-6


def test_change_below_an_ulp_of_base_rounds_toward_base():
    # An ulp of 1e6 in float32 is 0.0625: a clipped change of 1e-3 cannot be represented, and rounding to
    # nearest could move a coordinate by a whole ulp, 60 times C. Rounding toward base keeps it at 0.
    base = [np.full(4, 1e6, np.float32)]
    weights = [np.full(4, 1e6 + 1024, np.float32)]
    out, _ = clip_update(base, weights, 1e-3)
    assert out[0].tobytes() == base[0].tobytes()


@pytest.mark.parametrize("weights, message", [
    ([np.zeros(3, np.float32)], "weights have 1 tensors but the base model has 2"),
    ([np.zeros(3, np.float32), np.zeros(3, np.float32)], r"tensor 1 has shape \(3,\), the base model \(2,\)"),
    ([np.zeros(3, np.float32), np.array([0, np.nan], np.float32)], "tensor 1 contains NaN or infinite"),
    ([np.zeros(3, np.float32), np.array([0, np.inf], np.float32)], "tensor 1 contains NaN or infinite"),
    ([np.zeros(3, np.int32), np.zeros(2, np.float32)], "dtype int32, expected a float dtype"),
])
def test_clip_rejects_bad_weights(weights, message):
    base = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    with pytest.raises(DPError, match=message):
        clip_update(base, weights, 1.0)


@pytest.mark.parametrize("clip", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_clip_rejects_bad_C(clip):
    with pytest.raises(DPError, match="clip norm C must be"):
        clip_update([np.zeros(2, np.float32)], [np.ones(2, np.float32)], clip)


# --------------------------------------------------------------------------- noise

@pytest.mark.parametrize("z, clip, n", [(0.5, 1.0, 1), (1.0, 0.1, 3), (2.0, 3.0, 10)])
def test_noise_std_matches_zC_over_n(z, clip, n):
    # 4 seeds x 50,000 coordinates = N = 200,000 draws. The sample standard deviation of N normals has
    # standard error sigma / sqrt(2N) = 0.16% of sigma, the mean sigma / sqrt(N) = 0.22%: the 1% bound
    # on the std is 6 standard errors, the mean's 1% 4.5, so a correct sampler fails with probability
    # < 1e-5 for a random seed (and the seeds here are fixed, so the test is deterministic).
    # Updates with change norm <= C are not clipped, so out - (base + mean) is exactly the noise, up to
    # the final float32 rounding (relative 6e-8, negligible).
    rng = np.random.default_rng(0)
    base = [np.zeros(50_000, np.float32)]
    updates = []
    for _ in range(n):
        d = rng.standard_normal(50_000)
        updates.append([(d / np.linalg.norm(d) * clip * 0.5).astype(np.float32)])
    plain = central_dp_mean(base, updates, [1] * n, clip, 0.0, None).weights[0].astype(np.float64)
    draws = []
    for k in range(4):
        res = central_dp_mean(base, updates, [1] * n, clip, z, hashlib.sha256(bytes([k])).digest())
        assert res.noise_std == pytest.approx(z * clip / n)
        assert res.clipped == [False] * n
        draws.append(res.weights[0].astype(np.float64) - plain)
    noise = np.concatenate(draws)
    sigma = z * clip / n
    assert noise.std() == pytest.approx(sigma, rel=0.01)
    assert abs(noise.mean()) < 0.01 * sigma


def test_gaussian_noise_is_gaussian():
    from scipy import stats

    noise = gaussian_noise([(40_000,)], 2.5, SEED_A)[0]
    assert stats.kstest(noise / 2.5, "norm").pvalue > 1e-3  # fixed seed: deterministic
    assert gaussian_noise([(3, 2), (0,), (4,)], 0.0, SEED_A)[0].tolist() == [[0.0] * 2] * 3


def test_same_seed_same_bits_other_seed_other_noise():
    shapes = [(5, 7), (3,), (2, 2, 2)]
    a = gaussian_noise(shapes, 0.3, SEED_A)
    b = gaussian_noise(shapes, 0.3, bytearray(SEED_A))
    c = gaussian_noise(shapes, 0.3, SEED_B)
    assert [x.dtype for x in a] == [np.float64] * 3 and [x.shape for x in a] == shapes
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    assert all(not np.any(x == y) for x, y in zip(a, c))  # not a single coordinate in common


def test_noise_bits_are_the_same_in_another_process():
    code = ("import hashlib, sys; from ml.dp import gaussian_noise; "
            "print(hashlib.sha256(b''.join(a.tobytes() for a in "
            "gaussian_noise([(100, 10), (10,)], 0.7, bytes(range(32))))).hexdigest())")
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    here = hashlib.sha256(b"".join(a.tobytes() for a in gaussian_noise([(100, 10), (10,)], 0.7, SEED_A)))
    assert child.stdout.strip() == here.hexdigest()


def test_noised_model_is_bit_reproducible_and_seed_dependent():
    rng = np.random.default_rng(5)
    base = [rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    updates = [[(b + rng.standard_normal(b.shape) * s).astype(np.float32) for b in base] for s in (0.1, 1, 10)]
    one = central_dp_mean(base, updates, [10, 20, 30], 1.0, 1.0, SEED_A)
    two = central_dp_mean(base, [[w.copy() for w in u] for u in updates], [10, 20, 30], 1.0, 1.0, SEED_A)
    other = central_dp_mean(base, updates, [10, 20, 30], 1.0, 1.0, SEED_B)
    assert all(x.dtype == np.float32 for x in one.weights)
    assert b"".join(x.tobytes() for x in one.weights) == b"".join(x.tobytes() for x in two.weights)
    assert b"".join(x.tobytes() for x in one.weights) != b"".join(x.tobytes() for x in other.weights)


def test_mean_is_uniform_over_clipped_changes():
    # z = 0 leaves the clipped mean alone: it is the plain average of the clipped changes, whatever the
    # sample counts (a sample-weighted mean would let a client that claims many samples outweigh the
    # z*C/n noise; see central_dp_mean).
    rng = np.random.default_rng(6)
    base = [rng.standard_normal(20).astype(np.float32)]
    updates = [[(base[0] + rng.standard_normal(20) * s).astype(np.float32)] for s in (0.01, 5.0, 50.0)]
    clipped = [clip_update(base, u, 1.0).weights[0].astype(np.float64) - base[0] for u in updates]
    expected = (base[0].astype(np.float64) + sum(clipped) / 3).astype(np.float32)
    for counts in ([1, 1, 1], [1, 1000, 5], None):
        res = central_dp_mean(base, updates, counts, 1.0, 0.0, None)
        assert res.weights[0].tobytes() == expected.tobytes()
        assert res.clipped == [False, True, True]
        assert res.norms[0] < 1.0 < res.norms[1] < res.norms[2]


@pytest.mark.parametrize("kwargs, message", [
    (dict(updates=[]), "no accepted updates"),
    (dict(counts=[1]), "1 sample counts for 2 updates"),
    (dict(counts=[1, -1]), "sample count must be an integer >= 0"),
    (dict(seed=None), "noise seed must be exactly 32 bytes, got NoneType"),
    (dict(seed=b"short"), "noise seed must be exactly 32 bytes, got 5 bytes"),
    (dict(noise=-0.1), "noise multiplier z must be >= 0"),
    (dict(updates=[[np.zeros(3, np.float32)], [np.zeros(2, np.float32)]]), "update 1: .*shape"),
])
def test_central_dp_mean_rejects_bad_input(kwargs, message):
    args = dict(updates=[[np.zeros(3, np.float32)]] * 2, counts=[1, 1], noise=1.0, seed=SEED_A)
    args.update(kwargs)
    with pytest.raises(DPError, match=message):
        central_dp_mean([np.zeros(3, np.float32)], args["updates"], args["counts"], 1.0, args["noise"], args["seed"])


def test_derive_seed_separates_contexts():
    secret = bytes(range(32))
    s = derive_seed(secret, 31337, "0xabc", 4)
    assert len(s) == 32 and s == derive_seed(secret, 31337, "0xabc", 4)
    assert s != derive_seed(secret, 31337, "0xabc", 5)
    assert derive_seed(secret, "ab", "c") != derive_seed(secret, "a", "bc")  # length-prefixed
    with pytest.raises(DPError, match="at least 16 bytes"):
        derive_seed(b"short", 1)


# --------------------------------------------------------------------------- parameters

def test_params_and_default_delta():
    p = DPParams.for_samples(1.0, 1.1, 1797, budget=8.0)
    assert p.delta == 1 / 1797 and p.budget == 8.0 and p.sampling_rate == 1.0 and p.private
    assert p.noise_std(4) == pytest.approx(1.1 / 4) == noise_std(1.1, 1.0, 4)
    assert not DPParams(1.0, 0, 1e-5).private
    assert default_delta(1000) == 1e-3
    acc = p.accountant(rounds=3)
    assert (acc.noise, acc.delta, acc.budget, acc.rounds) == (1.1, 1 / 1797, 8.0, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip=0.0), r"clip norm C must be > 0, got 0\.0"),
    (dict(clip=float("nan")), "clip norm C must be a finite number"),
    (dict(clip="1"), "clip norm C must be a number, got '1'"),
    (dict(noise=-1), "noise multiplier z must be >= 0, got -1"),
    (dict(noise=True), "noise multiplier z must be a number, got True"),
    (dict(delta=0.0), r"delta must be > 0, got 0\.0"),
    (dict(delta=1.0), r"delta must be < 1, got 1\.0"),
    (dict(budget=0), "epsilon budget must be > 0, got 0"),
    (dict(budget=float("nan")), "epsilon budget must be a finite number"),
    (dict(sampling_rate=0.0), "sampling rate q must be > 0"),
    (dict(sampling_rate=1.5), "sampling rate q must be <= 1"),
])
def test_bad_params_are_one_line_dp_errors(kwargs, message):
    args = dict(clip=1.0, noise=1.0, delta=1e-5)
    args.update(kwargs)
    with pytest.raises(DPError, match=message) as info:
        DPParams(**args)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_default_delta_needs_two_samples():
    with pytest.raises(DPError, match="number of training samples N must be an integer >= 2, got 1"):
        default_delta(1)
    with pytest.raises(DPError, match="got 10.0"):
        DPParams.for_samples(1.0, 1.0, 10.0)


# --------------------------------------------------------------------------- accounting

@pytest.mark.parametrize("z, rounds, q, delta", [
    (1.0, 10, 1.0, 1e-5),
    (0.5, 20, 1.0, 1e-5),
    (1.1, 100, 0.1, 1e-5),
    (2.0, 50, 0.05, 1e-6),
    (0.8, 7, 0.5, 1e-3),
])
def test_epsilon_matches_dp_accounting(z, rounds, q, delta):
    import dp_accounting
    from dp_accounting import rdp

    event = dp_accounting.GaussianDpEvent(z)
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(event, rounds)
    assert epsilon(z, rounds, q, delta) == pytest.approx(accountant.get_epsilon(delta), rel=1e-12)


def test_zero_out_relation_gives_the_same_numbers():
    # The module docstring claims add-or-remove and zero-out (REPLACE_SPECIAL) agree for these events.
    import dp_accounting
    from dp_accounting import rdp

    relation = dp_accounting.NeighboringRelation.REPLACE_SPECIAL
    for z, q in ((1.0, 1.0), (1.1, 0.1)):
        event = dp_accounting.GaussianDpEvent(z)
        if q < 1:
            event = dp_accounting.PoissonSampledDpEvent(q, event)
        accountant = rdp.RdpAccountant(neighboring_relation=relation)
        accountant.compose(event, 10)
        assert epsilon(z, 10, q, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)


def test_epsilon_by_hand_for_z1_10_rounds():
    # One Gaussian round with noise multiplier z has RDP alpha / (2 z^2) at order alpha; 10 rounds add up
    # to 5 alpha for z = 1. dp-accounting converts RDP to (epsilon, delta) with Canonne-Kamath-Steinke 2020
    # Prop. 12: eps = rdp + log(1 - 1/alpha) - log(delta alpha) / (alpha - 1), minimised over its default
    # orders. Evaluated here in plain Python, and once by hand (python3, the same formula): 19.0536 at
    # alpha = 2.5. The classic conversion (Mironov 2017, Prop. 3) min 5 alpha + log(1/delta)/(alpha - 1)
    # = 20.17 at alpha = 1 + sqrt(log(1e5)/5) is looser, an upper bound.
    delta = 1e-5
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
    by_hand = min(5 * a + math.log1p(-1 / a) - math.log(delta * a) / (a - 1) for a in orders if a > 1.01)
    got = epsilon(1.0, 10, 1.0, delta)
    assert got == pytest.approx(by_hand, rel=1e-12)
    assert got == pytest.approx(19.0536, abs=1e-4)
    a = 1 + math.sqrt(math.log(1 / delta) / 5)
    assert got < 5 * a + math.log(1 / delta) / (a - 1) == pytest.approx(20.17, abs=0.01)


def test_epsilon_sanity():
    assert epsilon(1.0, 0, 1.0, 1e-5) == 0.0
    assert epsilon(0.0, 1, 1.0, 1e-5) == math.inf
    by_rounds = [epsilon(1.0, t, 1.0, 1e-5) for t in (1, 2, 5, 20)]
    assert by_rounds == sorted(by_rounds) and len(set(by_rounds)) == 4
    by_noise = [epsilon(z, 10, 1.0, 1e-5) for z in (0.5, 1.0, 2.0, 4.0)]
    assert by_noise == sorted(by_noise, reverse=True) and len(set(by_noise)) == 4
    assert epsilon(1.0, 10, 0.1, 1e-5) < epsilon(1.0, 10, 0.5, 1e-5) < epsilon(1.0, 10, 1.0, 1e-5)
    assert epsilon(1.0, 10, 1.0, 1e-3) < epsilon(1.0, 10, 1.0, 1e-5)  # a larger delta buys a smaller epsilon


def test_epsilon_rejects_bad_arguments():
    with pytest.raises(DPError, match="number of rounds must be an integer >= 0, got -1"):
        epsilon(1.0, -1, 1.0, 1e-5)
    with pytest.raises(DPError, match="sampling rate q must be > 0"):
        epsilon(1.0, 1, 0.0, 1e-5)
    with pytest.raises(DPError, match="delta must be < 1"):
        epsilon(1.0, 1, 1.0, 2.0)


def test_accountant_refuses_the_round_that_would_exceed_the_budget():
    budget = epsilon(1.0, 5, 1.0, 1e-5)  # exactly five rounds fit
    acc = Accountant(1.0, 1e-5, budget=budget)
    for r in range(5):
        assert not acc.would_exceed()
        acc.check_next()
        acc = acc.advance()
    assert acc.rounds == 5 and acc.spent == budget
    assert acc.would_exceed() and acc.would_exceed(budget) and not acc.would_exceed(budget * 10)
    with pytest.raises(BudgetExceeded, match=r"privacy budget reached: round 6 would raise epsilon from "
                       r"[\d.]+ to [\d.]+, above the budget [\d.]+ at delta 1e-05") as info:
        acc.check_next()
    assert "\n" not in str(info.value) and isinstance(info.value, DPError)
    history = acc.history()
    assert len(history) == 5 and history == sorted(history) and history[-1] == acc.spent
    assert acc.per_round == history[0] and acc.per_round < acc.spent < acc.per_round * 5  # RDP beats adding up
    assert "after 5 round(s)" in acc.describe()


def test_accountant_without_noise_or_budget():
    none = Accountant(0.0, 1e-5, budget=100.0)
    assert none.next_spent == math.inf and none.would_exceed()
    with pytest.raises(BudgetExceeded, match="z = 0 gives no differential privacy"):
        none.check_next()
    assert none.describe() == "no differential privacy (noise multiplier z = 0): epsilon = inf"
    unbounded = Accountant(0.0, 1e-5, rounds=3)
    assert not unbounded.would_exceed() and unbounded.spent == math.inf
    unbounded.check_next()  # no budget: never refuses


# --------------------------------------------------------------------------- discrete Gaussian

@pytest.mark.parametrize("sigma2", [Fraction(1, 2), 9])
def test_discrete_gaussian_variance(sigma2):
    # Exact variance of N_Z(0, sigma2) by summing its pmf over |x| <= 200 (the rest is below 1e-900 here).
    xs = np.arange(-200, 201, dtype=np.float64)
    p = np.exp(-xs**2 / (2 * float(sigma2)))
    var = float((xs**2 * p).sum() / p.sum())
    # n = 6000 samples: the sample variance has standard error sqrt((m4 - var^2)/n) ~ var * sqrt(2/n) = 1.8%
    # of var (m4 = 3 var^2 for a Gaussian, a little more for sigma2 < 1); 8% is > 4 standard errors.
    # The mean's standard error is sqrt(var/n); 5 of them bound it.
    samples = discrete_gaussian(sigma2, 6000, seeded_rng(SEED_A))
    assert samples.dtype == np.int64
    assert samples.var() == pytest.approx(var, rel=0.08)
    assert abs(samples.mean()) < 5 * math.sqrt(var / 6000)


def test_discrete_gaussian_seeded_and_validated():
    a = discrete_gaussian(4, 50, seeded_rng(SEED_A))
    assert a.tolist() == discrete_gaussian(4, 50, seeded_rng(SEED_A)).tolist()
    assert a.tolist() != discrete_gaussian(4, 50, seeded_rng(SEED_B)).tolist()
    assert discrete_gaussian(0, 3, seeded_rng(SEED_A)).tolist() == [0, 0, 0]
    with pytest.raises(DPError, match="discrete Gaussian variance must be >= 0"):
        discrete_gaussian(-1, 3, seeded_rng(SEED_A))
    with pytest.raises(DPError, match="noise seed must be exactly 32 bytes"):
        seeded_rng(b"x")


def _pmf(sigma: float, xs: np.ndarray) -> np.ndarray:
    """N_Z(0, sigma^2)'s probabilities, written out: exp(-x^2 / 2 sigma^2) normalised over |x| <= 40 sigma + 40."""
    span = np.arange(-int(40 * sigma) - 40, int(40 * sigma) + 41, dtype=np.float64)
    return np.exp(-xs.astype(np.float64) ** 2 / (2 * sigma**2)) / np.exp(-span**2 / (2 * sigma**2)).sum()


@pytest.mark.parametrize("sigma", [0.4, 1.0, 3.7, 25.0])
def test_vectorised_sampler_follows_the_discrete_gaussian_pmf(sigma):
    from scipy.stats import chi2

    n = 200_000
    got = sample_discrete_gaussian(sigma, n, NoiseStream(SEED_A))
    assert got.dtype == np.int64 and got.size == n
    # Pearson's chi-square against the pmf, bins with an expected count >= 20, the two tails pooled.
    xs = np.arange(-int(8 * sigma) - 8, int(8 * sigma) + 9)
    expected = n * _pmf(sigma, xs)
    keep = expected >= 20
    observed = np.array([(got == x).sum() for x in xs[keep]], dtype=np.float64)
    tail_obs, tail_exp = n - observed.sum(), n - expected[keep].sum()
    stat = ((observed - expected[keep]) ** 2 / expected[keep]).sum()
    if tail_exp >= 20:
        stat += (tail_obs - tail_exp) ** 2 / tail_exp
        dof = keep.sum()
    else:
        assert tail_obs <= 10 + 5 * tail_exp  # nothing where there is (almost) no mass
        dof = keep.sum() - 1
    assert stat < chi2.ppf(1 - 1e-4, dof), (stat, dof)


def test_vectorised_sampler_matches_the_exact_one_and_is_keyed():
    # Same distribution as the exact rational sampler (its variance, by hand, within sampling error) ...
    sigma = 6.0
    fast = sample_discrete_gaussian(sigma, 60_000, NoiseStream(SEED_A))
    exact = discrete_gaussian(Fraction(36), 6_000, seeded_rng(SEED_A))
    assert fast.var() == pytest.approx(36.0, rel=0.03) and exact.var() == pytest.approx(36.0, rel=0.08)
    assert abs(fast.mean()) < 5 * sigma / math.sqrt(60_000)
    # ... reproducible under one key, different under another, and the stream goes on between calls.
    stream = NoiseStream(SEED_A)
    first = sample_discrete_gaussian(sigma, 1000, stream)
    assert first.tolist() == sample_discrete_gaussian(sigma, 1000, NoiseStream(SEED_A)).tolist()
    assert first.tolist() != sample_discrete_gaussian(sigma, 1000, stream).tolist()
    assert first.tolist() != sample_discrete_gaussian(sigma, 1000, NoiseStream(SEED_B)).tolist()
    u = NoiseStream(SEED_B).uniforms(100_000)
    assert u.min() > 0 and u.max() <= 1 and abs(u.mean() - 0.5) < 0.005
    assert sample_discrete_gaussian(0.0, 4, stream).tolist() == [0, 0, 0, 0]
    with pytest.raises(DPError, match="noise standard deviation"):
        sample_discrete_gaussian(-1.0, 3, stream)
    with pytest.raises(DPError, match="noise seed must be exactly 32 bytes"):
        NoiseStream(b"short")
