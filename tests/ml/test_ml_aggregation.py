"""ml.aggregation: FedAvg and robust strategies, bit-reproducibility, robustness, validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.aggregation import (
    STRATEGIES,
    AggregateResult,
    AggregationError,
    ClientUpdate,
    UnknownStrategyError,
    aggregate,
    check_norm,
    fedavg,
    krum,
    krum_scores,
    l2_norm,
    median,
    multi_krum,
    trimmed_mean,
)

FAST = settings(max_examples=25, deadline=None)
SHAPES = [(3, 4), (4,), (2, 2, 2)]


def key(i: int) -> str:
    return "0x" + f"{i + 1:040x}"


def make_updates(n: int, seed: int, shapes=SHAPES, scale=1.0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [
        ClientUpdate(
            key(int(k)),
            [(scale * rng.standard_normal(s)).astype(np.float32) for s in shapes],
            int(rng.integers(1, 500)),
        )
        for k in rng.permutation(10 * n)[:n]  # keys not in input order
    ]


def params_for(name: str, n: int) -> dict:
    f = max(0, min(1, (n - 3) // 2))
    return {"trimmed_mean": {"beta": 0.2}, "krum": {"f": f}, "multi_krum": {"f": f}}.get(name, {})


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


@FAST
@given(n=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_fedavg_is_the_sample_weighted_mean(n, seed):
    updates = make_updates(n, seed)
    res = fedavg(updates)
    counts = np.array([u.num_samples for u in updates], dtype=np.float64)
    for i, w in enumerate(res.weights):
        stack = np.stack([u.weights[i].astype(np.float64) for u in updates])
        expected = (stack * counts.reshape(-1, *[1] * (stack.ndim - 1))).sum(axis=0) / counts.sum()
        assert w.dtype == np.float32
        np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-7)
    assert res.excluded == [] and sorted(res.included) == sorted(u.key for u in updates)
    assert res.included == sorted(res.included)  # reported in the canonical (key) order


@FAST
@given(
    name=st.sampled_from(sorted(STRATEGIES)),
    n=st.integers(3, 9),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_every_strategy_is_permutation_invariant_and_bit_identical(name, n, seed, data):
    updates = make_updates(n, seed, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3])))
    params = params_for(name, n)
    first = aggregate(name, updates, **params)
    order = data.draw(st.permutations(range(n)))
    shuffled = aggregate(name, [updates[i] for i in order], **params)
    repeat = aggregate(name, updates, **params)
    assert same(first.weights, shuffled.weights) and same(first.weights, repeat.weights)
    assert first.included == shuffled.included and first.excluded == shuffled.excluded
    assert all(w.dtype == np.float32 for w in first.weights)
    assert sorted(first.included + first.excluded) == sorted(u.key for u in updates)


def test_checksummed_and_lowercase_keys_order_alike():
    updates = make_updates(5, 1)
    mixed = [ClientUpdate(u.key.upper().replace("0X", "0x"), u.weights, u.num_samples) for u in updates]
    assert same(fedavg(updates).weights, fedavg(mixed).weights)
    assert [k.lower() for k in fedavg(mixed).included] == fedavg(updates).included


def test_median_and_trimmed_mean_small_examples():
    vals = [1.0, 2.0, 3.0, 10.0, -50.0]
    ups = [ClientUpdate(key(i), [np.array([v], np.float32)], 1) for i, v in enumerate(vals)]
    assert median(ups).weights[0][0] == 2.0
    assert median(ups[:4]).weights[0][0] == 2.5  # even n: mean of the two middle values
    assert trimmed_mean(ups, beta=0.2).weights[0][0] == pytest.approx(2.0)  # drops -50 and 10
    assert trimmed_mean(ups, beta=0.0).weights[0][0] == pytest.approx(np.mean(vals))
    assert median(ups).excluded == [] and trimmed_mean(ups).excluded == []


def test_strategies_ignore_sample_counts_where_documented():
    ups = [ClientUpdate(key(i), [np.array([float(i)], np.float32)], n) for i, n in enumerate([1, 1, 1000])]
    assert fedavg(ups).weights[0][0] == pytest.approx((0 + 1 + 2000) / 1002)
    assert median(ups).weights[0][0] == 1.0


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("block", [7, 1 << 18])  # many blocks with a ragged last one; one block
def test_fedavg_rounds_exactly_like_the_plain_float64_loop(monkeypatch, block, kernel):
    """The numba kernel (or its numpy fallback) and the blocking change speed only: every element is the
    float64 sum, in key order, of count * value, divided by the total count, cast to float32 once (what
    verify_round redoes, wherever it runs)."""
    import ml.aggregation as agg

    monkeypatch.setattr(agg, "_BLOCK", block)
    if kernel == "numpy":
        monkeypatch.setattr(agg, "_load_axpy", lambda: agg._axpy_numpy)
    else:
        from ml._kernels import axpy

        assert agg._load_axpy() is axpy
    rng = np.random.default_rng(7)
    shapes = [(5, 9), (31,), (2, 3, 4)]
    ups = [ClientUpdate(key(i), [(rng.standard_normal(s) * 10.0 ** rng.integers(-4, 4)).astype(np.float32)
                                 for s in shapes], int(rng.integers(1, 2**29 - 1))) for i in range(9)]
    total = float(sum(u.num_samples for u in ups))
    for i, w in enumerate(fedavg(ups[::-1]).weights):
        acc = np.zeros(shapes[i], np.float64)
        for u in sorted(ups, key=lambda u: u.key.lower()):
            acc = acc + float(u.num_samples) * u.weights[i].astype(np.float64)
        assert w.tobytes() == (acc / total).astype(np.float32).tobytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fedavg_names_the_client_with_non_finite_values(bad):
    ups = make_updates(4, 3)
    w = [x.copy() for x in ups[2].weights]
    w[1].flat[-1] = bad
    ups[2] = ClientUpdate(ups[2].key, w, 0)  # even with 0 samples: 0 * inf is NaN, still found
    with pytest.raises(AggregationError, match=rf"client {ups[2].key}: tensor 1 contains NaN or infinite"):
        fedavg(ups)


def test_fedavg_refuses_sample_counts_that_break_exact_products():
    ups = make_updates(3, 1)
    ups[0] = ClientUpdate(ups[0].key, ups[0].weights, 2**29)
    with pytest.raises(AggregationError, match=r"below 2\*\*29"):
        fedavg(ups)


def _attack_scenario(f: int, honest: int, seed: int):
    """Honest clients move the base by a common delta (norm 5) plus small noise; f attackers send -10x their delta."""
    rng = np.random.default_rng(seed)
    base = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    direction = [rng.standard_normal(s) for s in SHAPES]
    scale = 5.0 / np.sqrt(sum(float(np.sum(d * d)) for d in direction))  # |direction| = 5 for every seed,
    direction = [d * scale for d in direction]  # so FedAvg's poisoned distance is >= 11 * 5 * f / n > 5
    updates, honest_weights = [], []
    for i in range(honest + f):
        delta = [d + 0.05 * rng.standard_normal(d.shape) for d in direction]
        if i < honest:
            w = [(b + d).astype(np.float32) for b, d in zip(base, delta)]
            honest_weights.append(w)
        else:  # sign-flipped and boosted
            w = [(b - 10 * d).astype(np.float32) for b, d in zip(base, delta)]
        updates.append(ClientUpdate(key(i), w, 100))
    honest_mean = [np.mean([w[i] for w in honest_weights], axis=0) for i in range(len(SHAPES))]
    return updates, honest_mean, [key(i) for i in range(honest, honest + f)]


def _dist(a, b):
    return l2_norm(a, b)


@FAST
@given(f=st.integers(1, 3), extra=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_robust_strategies_keep_the_honest_result(f, extra, seed):
    honest = f + 3 + extra  # n = 2f + 3 + extra >= 2f + 3 (Krum's bound), attackers < half
    updates, honest_mean, attackers = _attack_scenario(f, honest, seed)
    n = len(updates)
    poisoned = _dist(fedavg(updates).weights, honest_mean)
    assert poisoned > 5.0  # FedAvg is dragged far away ...
    results = {
        "median": median(updates),
        "trimmed_mean": trimmed_mean(updates, beta=f / n + 1e-9),
        "krum": krum(updates, f=f),
        "multi_krum": multi_krum(updates, f=f),
    }
    for name, res in results.items():  # ... the robust ones stay close to the honest mean
        d = _dist(res.weights, honest_mean)
        assert d < 0.1 * poisoned and d < 0.5, (name, d, poisoned)
    assert set(results["krum"].excluded) >= set(attackers) and len(results["krum"].included) == 1
    assert set(results["multi_krum"].excluded) == set(attackers)


def test_krum_scores_and_tie_break():
    same_w = [np.zeros(3, np.float32)]
    ups = [ClientUpdate(key(i), same_w, 1) for i in (4, 2, 3, 0, 1)]
    res = krum(ups, f=1)
    assert res.included == [key(0)]  # all tied: the lowest key wins
    assert res.excluded == [key(i) for i in (1, 2, 3, 4)]
    far = ups + [ClientUpdate(key(9), [np.full(3, 100.0, np.float32)], 1)]
    scores = krum_scores(far, f=1)
    assert scores[key(9)] == max(scores.values()) and scores[key(0)] == 0.0
    assert krum(far, f=1).scores == scores


def test_multi_krum_m_and_weighting():
    ups = make_updates(7, 3)
    res = multi_krum(ups, f=2, m=3)
    assert len(res.included) == 3 and len(res.excluded) == 4
    chosen = [u for u in ups if u.key in res.included]
    assert same(res.weights, fedavg(chosen).weights)  # FedAvg over the selected
    assert same(multi_krum(ups, f=2, m=1).weights, krum(ups, f=2).weights)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda u: fedavg([]), "no updates"),
        (lambda u: fedavg(u[0]), "list of ClientUpdate"),
        (lambda u: fedavg([u[0], ClientUpdate(u[0].key.upper().replace("0X", "0x"), u[0].weights, 1)]), "duplicate client key"),
        (lambda u: fedavg([u[0], ClientUpdate(key(99), u[1].weights[:2], 1)]), "sent 2 tensors"),
        (lambda u: fedavg([u[0], ClientUpdate(key(99), [np.zeros((4, 3), np.float32)] + u[1].weights[1:], 1)]), "shape"),
        (lambda u: fedavg([u[0], ClientUpdate(key(99), [np.full((3, 4), np.nan, np.float32)] + u[1].weights[1:], 1)]), "NaN"),
        (lambda u: fedavg([ClientUpdate(key(1), u[0].weights, -1)]), "num_samples"),
        (lambda u: fedavg([ClientUpdate(key(1), u[0].weights, 0)]), "0 samples"),
        (lambda u: trimmed_mean(u, beta=0.5), "beta"),
        (lambda u: krum(u[:4], f=1), "n >= 2f \\+ 3"),
        (lambda u: multi_krum(u, f=1, m=0), "m must be"),
        (lambda u: aggregate("median", u, f=1), "does not take \\['f'\\]"),
        (lambda u: aggregate("krum", u), "needs parameter"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(AggregationError, match=match):
        call(make_updates(5, 0))


def test_unknown_strategy_lists_choices():
    with pytest.raises(UnknownStrategyError) as err:
        aggregate("mean", make_updates(3, 0))
    assert all(name in str(err.value) for name in STRATEGIES)
    assert isinstance(aggregate("fedavg", make_updates(3, 0)), AggregateResult)


def test_l2_norm_and_check_norm():
    base = [np.zeros((2,), np.float32), np.zeros((1, 1), np.float32)]
    w = [np.array([3.0, 0.0], np.float32), np.array([[4.0]], np.float32)]
    assert l2_norm(w, base) == 5.0 and l2_norm(w) == 5.0
    assert check_norm(w, base, 5.0) and not check_norm(w, base, 4.99)
    assert not check_norm([np.array([np.inf, 0], np.float32), w[1]], base, 1e30)
    with pytest.raises(AggregationError, match="same tensors"):
        l2_norm(w, base[:1])
    with pytest.raises(AggregationError, match="bound"):
        check_norm(w, base, -1)


def test_aggregation_does_not_import_keras():
    code = (
        "import sys, ml.aggregation, ml.codec, ml.models, ml.partition; "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
