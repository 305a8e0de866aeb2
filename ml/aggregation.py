"""Aggregation strategies as pure functions over numpy arrays (no Keras, no chain).

Every strategy is bit-reproducible: updates are first sorted by client key
(case-insensitive, so checksummed and lower-case addresses order alike),
arithmetic runs in float64 in that fixed order, and the result is cast to
float32 once at the end. (FedAvg's inner loop is a numba kernel that rounds
exactly like its numpy fallback, used where numba is not installed.) The same
set of updates therefore gives the same bytes in any input order, in any
process, which is what lets ``verify_round``
recompute a published global model and compare its hash.

* ``fedavg``: sample-weighted mean (McMahan et al. 2017).
* ``median``: coordinate-wise median (Yin et al. 2018).
* ``trimmed_mean``: coordinate-wise mean after dropping the ``beta`` fraction
  of largest and smallest values (Yin et al. 2018).
* ``krum`` / ``multi_krum``: keep the update(s) closest to their n - f - 2
  nearest neighbours (Blanchard et al. 2017); the others are excluded.

The robust strategies ignore ``num_samples`` in the robust step (a liar could
inflate it); multi-Krum then averages the selected updates by sample count,
like FedAvg, as Flower does.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Weights = list[np.ndarray]


class AggregationError(ValueError):
    """The updates or parameters cannot be aggregated; the message says what to change."""


class UnknownStrategyError(AggregationError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class ClientUpdate:
    """One client's trained weights; ``key`` is its address (hex) and fixes the order."""

    key: str
    weights: Weights
    num_samples: int


@dataclass
class AggregateResult:
    """The new global weights (float32) and which clients they are built from."""

    weights: Weights
    included: list[str]
    excluded: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # Krum scores, lower = more central


# --------------------------------------------------------------------------- validation


def _sorted_checked(updates: Sequence[ClientUpdate], check_finite: bool = True) -> list[ClientUpdate]:
    """Validate and return the updates sorted by key: the one fixed order all strategies use.

    check_finite=False leaves the NaN/inf check to the caller (FedAvg finds them in its sums, which
    saves a whole pass over the updates)."""
    if isinstance(updates, ClientUpdate) or not hasattr(updates, "__iter__"):
        raise AggregationError("updates must be a list of ClientUpdate records")
    updates = list(updates)
    if not updates:
        raise AggregationError("no updates to aggregate")
    seen: dict[str, str] = {}
    for u in updates:
        if not isinstance(u, ClientUpdate):
            raise AggregationError(f"updates must be ClientUpdate records, got {type(u).__name__}")
        if not isinstance(u.key, str) or not u.key:
            raise AggregationError(f"client key must be a non-empty string, got {u.key!r}")
        low = u.key.lower()
        if low in seen:
            raise AggregationError(f"duplicate client key {u.key!r} (also {seen[low]!r}); one update per client")
        seen[low] = u.key
        if isinstance(u.num_samples, bool) or not isinstance(u.num_samples, numbers.Integral) or u.num_samples < 0:
            raise AggregationError(f"client {u.key}: num_samples must be an integer >= 0, got {u.num_samples!r}")
    ordered = sorted(updates, key=lambda u: u.key.lower())
    ref = ordered[0]
    shapes = [np.shape(w) for w in ref.weights]
    if not shapes:
        raise AggregationError(f"client {ref.key} sent no weight tensors")
    for u in ordered:
        if len(u.weights) != len(shapes):
            raise AggregationError(
                f"client {u.key} sent {len(u.weights)} tensors but client {ref.key} sent {len(shapes)}; "
                "all updates must be for the same model"
            )
        for i, (w, shape) in enumerate(zip(u.weights, shapes)):
            if np.shape(w) != shape:
                raise AggregationError(
                    f"client {u.key}: tensor {i} has shape {np.shape(w)}, expected {shape} "
                    f"(as sent by {ref.key}); all updates must be for the same model"
                )
            arr = np.asarray(w)
            if not np.issubdtype(arr.dtype, np.floating):
                raise AggregationError(f"client {u.key}: tensor {i} has dtype {arr.dtype}, expected float32")
            if check_finite and not np.isfinite(arr).all():
                raise _non_finite(u.key, i)
    return ordered


def _non_finite(key: str, i: int) -> AggregationError:
    return AggregationError(f"client {key}: tensor {i} contains NaN or infinite values; "
                            "reject it with ml.codec.validate before aggregating")


def _keys(updates: list[ClientUpdate]) -> list[str]:
    return [u.key for u in updates]


def _stack(updates: list[ClientUpdate], i: int) -> np.ndarray:
    """Tensor ``i`` of every update, stacked as float32 (n, *shape) in key order."""
    return np.stack([np.asarray(u.weights[i], dtype=np.float32) for u in updates])


_BLOCK = 1 << 18  # float64 elements per accumulation block (2 MiB): the fastest in bench/throughput.py
# Sample counts below 2**29 make every product count * float32 exact in float64 (24 + 29 bits <= 53),
# so a CPU that fuses the multiply and the add rounds exactly like one that does not.
MAX_EXACT_SAMPLES = 2**29


def _axpy_numpy(acc: np.ndarray, x: np.ndarray, scale: float) -> None:
    """acc += scale * float64(x): the numpy reference of ``ml._kernels.axpy`` (same bits, ~3x slower)."""
    acc += np.multiply(x, scale, dtype=np.float64)


def _load_axpy() -> Callable[[np.ndarray, np.ndarray, float], None]:
    try:
        from ._kernels import axpy  # numba: loaded (and compiled, then cached on disk) on first use
    except ImportError:  # an environment without numba still aggregates, to the same bytes
        return _axpy_numpy
    return axpy


def _weighted_mean(updates: list[ClientUpdate]) -> Weights:
    axpy = _load_axpy()
    total = sum(int(u.num_samples) for u in updates)
    if total <= 0:
        raise AggregationError("the updates report 0 samples in total; FedAvg needs num_samples > 0")
    for u in updates:
        if u.num_samples >= MAX_EXACT_SAMPLES:
            raise AggregationError(f"client {u.key}: num_samples {u.num_samples} must be below 2**29 "
                                   f"({MAX_EXACT_SAMPLES}) for a bit-reproducible weighted mean")
    out = []
    for i in range(len(updates[0].weights)):
        shape = np.shape(updates[0].weights[i])
        flats = [np.ascontiguousarray(u.weights[i], dtype=np.float32).reshape(-1) for u in updates]
        scales = [float(u.num_samples) for u in updates]
        size = flats[0].size
        result = np.empty(size, dtype=np.float32)
        # Cache-sized blocks: the float64 accumulator stays in cache while every
        # client's block streams through it once. Each element still sums its
        # clients in the fixed key order, so the result is bit-identical to the
        # plain loop, only faster (memory traffic ~ reading the updates once).
        block = min(size, _BLOCK)
        acc = np.empty(block, dtype=np.float64)
        for lo in range(0, size, block):
            hi = min(size, lo + block)
            a = acc[: hi - lo]
            a.fill(0.0)
            for f, s in zip(flats, scales):
                axpy(a, f[lo:hi], s)
            if not np.isfinite(a).all():  # a NaN or inf in any update reaches the sum (float32 * 2**29 * n < inf)
                bad = next(u for u, f in zip(updates, flats) if not np.isfinite(f[lo:hi]).all())
                raise _non_finite(bad.key, i)
            a /= float(total)
            result[lo:hi] = a
        out.append(result.reshape(shape))
    return out


# --------------------------------------------------------------------------- strategies


def fedavg(updates: Sequence[ClientUpdate]) -> AggregateResult:
    """Sample-weighted mean of the updates."""
    ordered = _sorted_checked(updates, check_finite=False)  # _weighted_mean finds NaN/inf in its sums
    return AggregateResult(weights=_weighted_mean(ordered), included=_keys(ordered), excluded=[])


def median(updates: Sequence[ClientUpdate]) -> AggregateResult:
    """Coordinate-wise median (mean of the two middle values when n is even)."""
    ordered = _sorted_checked(updates)
    n = len(ordered)
    out = []
    for i in range(len(ordered[0].weights)):
        s = np.sort(_stack(ordered, i), axis=0)
        if n % 2:
            out.append(s[n // 2].astype(np.float32))
        else:
            mid = (s[n // 2 - 1].astype(np.float64) + s[n // 2].astype(np.float64)) / 2.0
            out.append(mid.astype(np.float32))
    return AggregateResult(weights=out, included=_keys(ordered), excluded=[])


def trimmed_mean(updates: Sequence[ClientUpdate], beta: float = 0.1) -> AggregateResult:
    """Coordinate-wise mean after dropping floor(beta * n) values at each end.

    Tolerates up to floor(beta * n) arbitrary clients; beta must be < 0.5.
    """
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= beta < 0.5:
        raise AggregationError(f"trimmed_mean: beta must be in [0, 0.5), got {beta!r}")
    ordered = _sorted_checked(updates)
    n = len(ordered)
    k = int(math.floor(beta * n))
    out = []
    for i in range(len(ordered[0].weights)):
        s = np.sort(_stack(ordered, i), axis=0)[k : n - k].astype(np.float64)
        out.append((s.sum(axis=0) / float(n - 2 * k)).astype(np.float32))
    return AggregateResult(weights=out, included=_keys(ordered), excluded=[])


def _flat(u: ClientUpdate) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in u.weights])


def krum_scores(updates: Sequence[ClientUpdate], f: int) -> dict[str, float]:
    """Krum score per client: sum of squared L2 distances to its n - f - 2 nearest others."""
    ordered = _sorted_checked(updates)
    _check_f(len(ordered), f)
    return _krum_scores(ordered, f)


def _krum_scores(ordered: list[ClientUpdate], f: int) -> dict[str, float]:
    n = len(ordered)
    flats = [_flat(u) for u in ordered]
    buf = np.empty_like(flats[0])
    dist = np.zeros((n, n), dtype=np.float64)
    for i in range(n):  # O(n^2 d): each pair once, in key order
        for j in range(i + 1, n):
            np.subtract(flats[i], flats[j], out=buf)
            np.multiply(buf, buf, out=buf)
            dist[i, j] = dist[j, i] = float(buf.sum())
    closest = n - f - 2
    return {u.key: float(np.sum(np.sort(np.delete(dist[i], i))[:closest])) for i, u in enumerate(ordered)}


def _check_f(n: int, f: int) -> None:
    if isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 0:
        raise AggregationError(f"krum: f (number of Byzantine clients tolerated) must be an integer >= 0, got {f!r}")
    if n < 2 * f + 3:
        raise AggregationError(
            f"krum needs n >= 2f + 3 updates: got n={n} for f={f}; "
            f"lower f to at most {max((n - 3) // 2, 0)} or collect more updates"
        )


def _select(updates: list[ClientUpdate], scores: dict[str, float], m: int) -> list[ClientUpdate]:
    # Ties break by key order: the sort is stable and `updates` is already key-sorted.
    return sorted(updates, key=lambda u: scores[u.key])[:m]


def krum(updates: Sequence[ClientUpdate], f: int) -> AggregateResult:
    """The single update with the lowest Krum score; everyone else is excluded."""
    return multi_krum(updates, f, m=1)


def multi_krum(updates: Sequence[ClientUpdate], f: int, m: int | None = None) -> AggregateResult:
    """Sample-weighted mean of the ``m`` updates with the lowest Krum scores (default m = n - f)."""
    ordered = _sorted_checked(updates)
    n = len(ordered)
    _check_f(n, f)
    if m is None:
        m = n - f
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 1 <= m <= n:
        raise AggregationError(f"multi_krum: m must be an integer in 1..{n}, got {m!r}")
    scores = _krum_scores(ordered, f)
    chosen = {u.key for u in _select(ordered, scores, int(m))}
    selected = [u for u in ordered if u.key in chosen]  # back in key order for the sum
    if int(m) == 1:
        weights = [np.asarray(w, dtype=np.float32).copy() for w in selected[0].weights]
    else:
        weights = _weighted_mean(selected)
    return AggregateResult(
        weights=weights,
        included=_keys(selected),
        excluded=[u.key for u in ordered if u.key not in chosen],
        scores=scores,
    )


# --------------------------------------------------------------------------- norms


def l2_norm(weights: Sequence[np.ndarray], base: Sequence[np.ndarray] | None = None) -> float:
    """L2 norm over all tensors of ``weights`` (or of ``weights - base``), computed in float64."""
    weights = list(weights)
    if base is not None:
        base = list(base)
        if len(base) != len(weights) or any(np.shape(a) != np.shape(b) for a, b in zip(weights, base)):
            raise AggregationError(
                f"l2_norm: weights {[np.shape(w) for w in weights]} and base {[np.shape(b) for b in base]} "
                "must have the same tensors and shapes"
            )
    total = 0.0
    for i, w in enumerate(weights):
        d = np.asarray(w, dtype=np.float64)
        if base is not None:
            d = d - np.asarray(base[i], dtype=np.float64)
        total += float(np.sum(d * d))
    return math.sqrt(total)


def check_norm(update_weights: Sequence[np.ndarray], base_weights: Sequence[np.ndarray], bound: float) -> bool:
    """True when the update moved the model by at most ``bound`` (L2 over all tensors).

    A cheap first defence against scaled (boosted) updates.
    """
    if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or not bound >= 0:
        raise AggregationError(f"check_norm: bound must be a number >= 0, got {bound!r}")
    norm = l2_norm(update_weights, base_weights)
    return math.isfinite(norm) and norm <= bound


# --------------------------------------------------------------------------- registry

STRATEGIES: dict[str, Callable[..., AggregateResult]] = {
    "fedavg": fedavg,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
}


def aggregate(name: str, updates: Sequence[ClientUpdate], **params) -> AggregateResult:
    """Run strategy ``name`` from :data:`STRATEGIES` with its keyword parameters."""
    if name not in STRATEGIES:
        raise UnknownStrategyError(f"unknown aggregation strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    fn = STRATEGIES[name]
    accepted = [p for p in inspect.signature(fn).parameters if p != "updates"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise AggregationError(
            f"strategy {name!r} does not take {unknown}; it accepts {accepted or 'no parameters'}"
        )
    required = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name != "updates" and p.default is inspect.Parameter.empty and p.name not in params
    ]
    if required:
        raise AggregationError(f"strategy {name!r} needs parameter(s) {required}, e.g. aggregate({name!r}, updates, f=1)")
    return fn(updates, **params)
