"""Differential privacy for federated rounds: clipping, seeded noise, accounting (no chain, no Keras).

Central DP for robust mode follows server-side fixed clipping (McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models"; Flower's ``DifferentialPrivacyServerSideFixedClipping``):
clip each accepted update's change to L2 norm ``C``, average, add Gaussian noise of standard
deviation ``z * C / n``. Privacy spent is accounted with Google's ``dp-accounting`` (RDP).

What the guarantee covers here (say this wherever epsilon is reported):

* It protects a client's *update content* against whoever sees only the published models. The
  aggregator and the verifiers see individual updates and know the noise seed: central DP does not
  protect against them (private mode with distributed discrete Gaussian noise is for that).
* Who submitted in which round is public on chain. Amplification by sampling (``sampling_rate`` < 1)
  assumes the adversary does not know whether a client took part in a round, which is false for the
  chain's readers. ``q = 1`` (the default) is the sound choice for clients that take part every round;
  ``q < 1`` is offered to compare with Flower/TF-Privacy numbers, not as the job's promise.
* The relation is dp-accounting's add-or-remove-one client; for the Gaussian and the Poisson-sampled
  Gaussian events it gives the same numbers as zero-out (a client's change replaced by zero), which
  is the relation that fits public participation (tests check the two agree).

Everything is a pure function of its inputs, in a fixed order, with float64 arithmetic and one
rounding to the weights' dtype at the end, so a verifier re-computes a noised round bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import numbers
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

Weights = list[np.ndarray]

SEED_BYTES = 32
# Names how gaussian_noise turns a seed into noise; an evidence blob should record it (and the numpy
# version) so a verifier knows which generator to run. Bump it if the derivation ever changes.
NOISE_STREAM = "numpy-SeedSequence(seed)-PCG64-standard_normal-float64/v1"

# clip_update aims a little below C so that rounding in the norm (ours and any re-computation) can
# never push a clipped change above C; 2**-32 relative is far below anything that matters for training.
_CLIP_TARGET = 1.0 - 2.0**-32
_CLIP_CHECK = 1.0 - 2.0**-44


class DPError(ValueError):
    """Bad DP parameters or inputs; the message says what to change."""


class BudgetExceeded(DPError):
    """The next round would spend more privacy than the job's epsilon budget allows."""


# --------------------------------------------------------------------------- parameters


def _number(name: str, value: object, *, low: float | None = None, low_open: bool = False,
            high: float | None = None, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float in the given range, or a DPError naming the parameter and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DPError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise DPError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise DPError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise DPError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def _check_clip(clip: object) -> float:
    return _number("clip norm C", clip, low=0.0, low_open=True)


def _check_noise(noise: object) -> float:
    return _number("noise multiplier z", noise, low=0.0)


def _check_delta(delta: object) -> float:
    return _number("delta", delta, low=0.0, low_open=True, high=1.0, high_open=True)


def _check_rate(rate: object) -> float:
    return _number("sampling rate q", rate, low=0.0, low_open=True, high=1.0)


def _check_budget(budget: object) -> float | None:
    if budget is None:
        return None
    return _number("epsilon budget", budget, low=0.0, low_open=True, allow_inf=True)


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DPError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_delta(num_samples: int) -> float:
    """delta = 1/N for a job with N training samples (issue 14's default).

    Client-level DP's unit is a client, and the usual advice is delta well below 1/(number of
    clients); 1/N with N samples (>> clients) is smaller still, so it is on the safe side.
    """
    n = _check_count("number of training samples N", num_samples, 2)
    return 1.0 / n


def noise_std(noise: float, clip: float, num_updates: int) -> float:
    """Per-coordinate noise standard deviation on the mean of ``num_updates`` clipped changes: z*C/n."""
    return _check_noise(noise) * _check_clip(clip) / _check_count("number of accepted updates n", num_updates, 1)


@dataclass(frozen=True)
class DPParams:
    """A job's DP promise: what every client can read before it trains.

    ``clip`` C > 0 bounds each client's change (L2 over all tensors), ``noise`` z >= 0 is the noise
    multiplier (z = 0: no privacy), ``delta`` in (0, 1), ``budget`` an optional epsilon after which
    no further round starts, ``sampling_rate`` q in (0, 1] the fraction of clients selected per round
    (see the module docstring before using q < 1).
    """

    clip: float
    noise: float
    delta: float
    budget: float | None = None
    sampling_rate: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", _check_clip(self.clip))
        object.__setattr__(self, "noise", _check_noise(self.noise))
        object.__setattr__(self, "delta", _check_delta(self.delta))
        object.__setattr__(self, "budget", _check_budget(self.budget))
        object.__setattr__(self, "sampling_rate", _check_rate(self.sampling_rate))

    @classmethod
    def for_samples(cls, clip: float, noise: float, num_samples: int, budget: float | None = None,
                    sampling_rate: float = 1.0) -> DPParams:
        """Params with the default delta = 1/N for N training samples in the job."""
        return cls(clip, noise, default_delta(num_samples), budget, sampling_rate)

    @property
    def private(self) -> bool:
        """False when z = 0: clipping only, epsilon = inf."""
        return self.noise > 0

    def noise_std(self, num_updates: int) -> float:
        return noise_std(self.noise, self.clip, num_updates)

    def accountant(self, rounds: int = 0) -> Accountant:
        """The accountant of this job after ``rounds`` noised rounds (the chain knows how many)."""
        return Accountant(self.noise, self.delta, self.sampling_rate, self.budget, rounds)


# --------------------------------------------------------------------------- clipping


class Clipped(NamedTuple):
    """``base + clipped change`` (dtype of base) and the L2 norm of the change before clipping."""

    weights: Weights
    norm: float


def _checked_pair(base: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                  what: str = "weights") -> tuple[list[np.ndarray], list[np.ndarray]]:
    base = [np.asarray(b) for b in base]
    weights = [np.asarray(w) for w in weights]
    if not base:
        raise DPError("the base model has no tensors")
    if len(weights) != len(base):
        raise DPError(f"{what} have {len(weights)} tensors but the base model has {len(base)}")
    for i, (b, w) in enumerate(zip(base, weights)):
        if w.shape != b.shape:
            raise DPError(f"{what}: tensor {i} has shape {w.shape}, the base model {b.shape}")
        for name, a in (("base model", b), (what, w)):
            if not np.issubdtype(a.dtype, np.floating):
                raise DPError(f"{name}: tensor {i} has dtype {a.dtype}, expected a float dtype")
            if not np.isfinite(a).all():
                raise DPError(f"{name}: tensor {i} contains NaN or infinite values")
    return base, weights


def _global_norm(tensors: Sequence[np.ndarray]) -> float:
    """L2 norm over all float64 tensors, scaled by the largest entry so that no square overflows or underflows."""
    peak = max((float(np.max(np.abs(t))) for t in tensors if t.size), default=0.0)
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    return peak * math.sqrt(math.fsum(float(np.sum(np.square(t / peak))) for t in tensors))


def change_norm(base: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> float:
    """L2 norm of ``weights - base`` over all tensors, computed in float64 (exact differences of float32)."""
    base, weights = _checked_pair(base, weights)
    return _global_norm([np.subtract(w, b, dtype=np.float64) for b, w in zip(base, weights)])


def _toward_base(base: np.ndarray, b64: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``base + step`` in base's dtype, rounded toward base where rounding to nearest went past the target.

    Every coordinate's change then has magnitude <= |step|, so the rounding to float32 can only shrink
    the norm, however large base is against C (an ulp of base can be far larger than C).
    """
    out = (b64 + step).astype(base.dtype)
    past = np.abs(out.astype(np.float64) - b64) > np.abs(step)
    if past.any():
        out[past] = np.nextafter(out[past], base[past])
    return out


def clip_update(base: Sequence[np.ndarray], weights: Sequence[np.ndarray], clip: float) -> Clipped:
    """Clip the change ``weights - base`` to global L2 norm <= C (McMahan et al. 2018's flat clipping).

    Returns base + change * min(1, C/||change||) in base's dtype, and ||change|| before clipping.
    The returned change never exceeds C when measured in float64 from the returned arrays: the
    scaled change aims slightly below C (2**-32 relative), each coordinate is rounded toward base
    rather than to nearest, and the result is measured again before it is returned (falling back to
    the base itself, a zero change, if it ever were not). A change already within the target is
    returned as the weights themselves (a copy, same bits).
    """
    c = _check_clip(clip)
    base, weights = _checked_pair(base, weights)
    b64 = [b.astype(np.float64) for b in base]
    deltas = [np.subtract(w, b, dtype=np.float64) for b, w in zip(b64, weights)]
    norm = _global_norm(deltas)
    if not math.isfinite(norm):
        raise DPError("the change from the base model overflows float64; reject this update")
    target = c * _CLIP_TARGET
    same_dtype = all(w.dtype == b.dtype for b, w in zip(base, weights))
    if norm <= target and same_dtype:
        return Clipped([w.copy() for w in weights], norm)
    scale = min(1.0, target / norm) if norm > 0 else 1.0
    for _ in range(4):
        out = [_toward_base(b, b64_, d * scale) for b, b64_, d in zip(base, b64, deltas)]
        got = _global_norm([o.astype(np.float64) - b64_ for o, b64_ in zip(out, b64)])
        if got <= c * _CLIP_CHECK:
            return Clipped(out, norm)
        scale *= 0.5  # not reached in practice; keeps the promise if some rounding ever surprised us
    return Clipped([b.copy() for b in base], norm)


# --------------------------------------------------------------------------- noise


def _check_seed(seed: object) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        got = f"{len(seed)} bytes" if isinstance(seed, (bytes, bytearray)) else type(seed).__name__
        raise DPError(f"noise seed must be exactly {SEED_BYTES} bytes, got {got}")
    return bytes(seed)


def derive_seed(secret: bytes, *context: bytes | str | int) -> bytes:
    """A 32-byte noise seed bound to its context (e.g. chain id, contract, round): HMAC-SHA256 of a
    length-prefixed encoding, so different contexts never share noise and no context reveals the secret."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
        raise DPError("the secret behind a noise seed must be at least 16 bytes")
    msg = bytearray(b"chainfl/dp-noise/v1")
    for part in context:
        if isinstance(part, bool) or not isinstance(part, (bytes, bytearray, str, int)):
            raise DPError(f"seed context parts must be bytes, str or int, got {type(part).__name__}")
        raw = (part.encode() if isinstance(part, str)
               else part.to_bytes(32, "big", signed=True) if isinstance(part, int) else bytes(part))
        msg += len(raw).to_bytes(4, "big") + raw
    return hmac.new(bytes(secret), bytes(msg), hashlib.sha256).digest()


def gaussian_noise(shapes: Sequence[tuple[int, ...]], std: float, seed: bytes) -> Weights:
    """Gaussian noise N(0, std^2) per coordinate (float64), one array per shape, drawn in order from ``seed``.

    The seed (exactly 32 bytes, all used) goes through numpy's ``SeedSequence`` into ``PCG64``, and
    ``Generator.standard_normal`` (ziggurat) draws the values. Why numpy's generator and not a
    ChaCha20 keystream: what matters here is that any verifier gets the same bits. The ziggurat is
    scalar C code that needs only table look-ups and multiplications except on rare wedge/tail draws,
    whereas a Box-Muller transform on a keystream calls vectorised log/sin/cos for every value, and
    numpy's SIMD versions of those differ in the last bit between CPUs. Unpredictability comes from
    the seed, which the public never sees; the aggregator and verifiers know it by design, so a
    CSPRNG would protect against no one. The stream is a function of (seed, numpy version): numpy does
    not promise the same normals across versions, so verifiers run the locked numpy
    (see NOISE_STREAM).

    Known caveat (Mironov 2012, "On significance of the least significant bits for differential
    privacy"): floating-point Gaussian samples are not a true Gaussian; the set of reachable doubles
    near a value depends on the value, which can leak the noise-free input. Rounding mean + noise
    from float64 to float32 discards the lowest 29 bits, which hides most of that structure, but it is
    not a proof; the exact fix is noise in the integer domain (``discrete_gaussian``, private mode)
    or Mironov's snapping mechanism.
    """
    s = _number("noise standard deviation", std, low=0.0)
    gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(_check_seed(seed), "big"))))
    out = []
    for shape in shapes:
        shape = tuple(int(d) for d in shape)
        draw = gen.standard_normal(size=shape, dtype=np.float64)
        out.append(draw * s)
    return out


@dataclass
class CentralDPResult:
    """A noised global model and what a report or verifier needs to know about it."""

    weights: Weights      # base + mean of clipped changes + noise, in base's dtype
    noise_std: float      # z * C / n, per coordinate
    num_updates: int      # n
    norms: list[float]    # each update's change norm before clipping, in input order
    clipped: list[bool]   # whether that update was scaled down (norm > C)


def central_dp_mean(base: Sequence[np.ndarray], updates: Sequence[Sequence[np.ndarray]],
                    weights_by_samples: Sequence[int] | None, clip: float, noise: float,
                    seed: bytes | None) -> CentralDPResult:
    """Server-side fixed clipping: base + uniform mean of clipped changes + N(0, (z*C/n)^2) per coordinate.

    Uniform, not sample-weighted, on purpose. Noise z*C on a sum protects it when one client can move
    the sum by at most C. Each clipped change is <= C, so the plain sum qualifies and its mean gets
    z*C/n. In a sample-weighted mean, client i moves the result by up to C * n_i / sum(n) (twice that
    when the shares renormalise after adding or removing it), and clients choose the n_i they claim:
    a client claiming most of the samples has influence close to C, and the z*C/n noise would be n
    times too small. FedAvg weighting needs public, capped weights and a fixed denominator
    (McMahan et al. 2018, estimator f~_f with w_i = min(n_i / w_hat, 1)); that is not this function.
    ``weights_by_samples`` is taken so the call site matches FedAvg's, and checked (one non-negative
    integer per update), but it does not weight the mean; rewards still use the sample counts.

    ``updates`` must come in the fixed client order of ml.aggregation (sorted by key): changes are
    summed in float64 in that order and the result rounded once, so the same inputs and seed give the
    same bits. n = len(updates) is public on chain. ``seed`` may be None only when z = 0.
    """
    c = _check_clip(clip)
    z = _check_noise(noise)
    updates = list(updates)
    n = len(updates)
    if n == 0:
        raise DPError("no accepted updates to aggregate")
    if weights_by_samples is not None:
        counts = list(weights_by_samples)
        if len(counts) != n:
            raise DPError(f"{len(counts)} sample counts for {n} updates")
        for k in counts:
            _check_count("sample count", k, 0)
    base = [np.asarray(b) for b in base]
    _checked_pair(base, base, "base model")
    b64 = [b.astype(np.float64) for b in base]
    total = [np.zeros(b.shape, dtype=np.float64) for b in base]
    norms: list[float] = []
    for j, weights in enumerate(updates):
        try:
            clipped = clip_update(base, weights, c)
        except DPError as e:
            raise DPError(f"update {j}: {e}") from None
        norms.append(clipped.norm)
        for t, o, b in zip(total, clipped.weights, b64):
            t += o.astype(np.float64) - b
    std = z * c / n
    if z > 0:
        noise_arrays = gaussian_noise([b.shape for b in base], std, _check_seed(seed))
    else:
        noise_arrays = [np.zeros(b.shape, dtype=np.float64) for b in base]
    out = []
    for i, (b, b64_, t, e) in enumerate(zip(base, b64, total, noise_arrays)):
        r = (b64_ + t / n + e).astype(b.dtype)
        if not np.isfinite(r).all():
            raise DPError(f"tensor {i} of the noised model overflows {b.dtype}")
        out.append(r)
    return CentralDPResult(out, std, n, norms, [v > c for v in norms])


# --------------------------------------------------------------------------- accounting


class _AbslConvergenceFilter(logging.Filter):
    """dp-accounting warns for every fractional RDP order near 1 it cannot evaluate at small q and then
    drops that order (it is never the optimum there); the warnings would flood a party's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in str(record.msg)


_FILTER = _AbslConvergenceFilter()


def _dp_accounting():
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DPError("privacy accounting needs Google's dp-accounting: install requirements.lock") from e
    logger = logging.getLogger("absl")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return dp_accounting, rdp


@functools.lru_cache(maxsize=4096)
def _epsilon(noise: float, rounds: int, rate: float, delta: float) -> float:
    dpa, rdp = _dp_accounting()
    event = dpa.GaussianDpEvent(noise)
    if rate < 1.0:
        event = dpa.PoissonSampledDpEvent(rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(dpa.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def epsilon(noise: float, rounds: int, sampling_rate: float, delta: float) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds of the Gaussian mechanism with noise multiplier z.

    RDP accounting (dp-accounting's ``RdpAccountant``, default orders): the plain Gaussian event when
    q = 1, the Poisson-subsampled Gaussian when q < 1 (see the module docstring on q). z = 0 is no
    privacy: inf. Zero rounds: 0.
    """
    z = _check_noise(noise)
    t = _check_count("number of rounds", rounds, 0)
    q = _check_rate(sampling_rate)
    d = _check_delta(delta)
    if t == 0:
        return 0.0
    if z == 0:
        return math.inf
    return _epsilon(z, t, q, d)


@dataclass(frozen=True)
class Accountant:
    """Privacy spent by a job after ``rounds`` noised rounds, and whether one more round fits the budget.

    Epsilons do not add across rounds (RDP composes tighter): ``spent`` is the cumulative epsilon
    of all rounds, ``per_round`` that of one round alone. The aggregator builds one from the job's
    DPParams and the number of finished DP rounds, and calls ``check_next`` before starting a round.
    """

    noise: float
    delta: float
    sampling_rate: float = 1.0
    budget: float | None = None
    rounds: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", _check_noise(self.noise))
        object.__setattr__(self, "delta", _check_delta(self.delta))
        object.__setattr__(self, "sampling_rate", _check_rate(self.sampling_rate))
        object.__setattr__(self, "budget", _check_budget(self.budget))
        object.__setattr__(self, "rounds", _check_count("number of rounds", self.rounds, 0))

    def epsilon_after(self, rounds: int) -> float:
        return epsilon(self.noise, rounds, self.sampling_rate, self.delta)

    @property
    def per_round(self) -> float:
        return self.epsilon_after(1)

    @property
    def spent(self) -> float:
        return self.epsilon_after(self.rounds)

    @property
    def next_spent(self) -> float:
        return self.epsilon_after(self.rounds + 1)

    def history(self) -> list[float]:
        """Cumulative epsilon after each round 1..rounds (for the round table, report.json, plots)."""
        return [self.epsilon_after(r) for r in range(1, self.rounds + 1)]

    def advance(self, rounds: int = 1) -> Accountant:
        """The accountant after ``rounds`` more noised rounds."""
        more = _check_count("number of rounds", rounds, 0)
        return Accountant(self.noise, self.delta, self.sampling_rate, self.budget, self.rounds + more)

    def would_exceed(self, budget: float | None = None) -> bool:
        """Whether one more round takes cumulative epsilon strictly above ``budget`` (default: own budget).

        No budget: never. z = 0: above every finite budget (epsilon = inf).
        """
        b = self.budget if budget is None else _check_budget(budget)
        return b is not None and self.next_spent > b

    def check_next(self, budget: float | None = None) -> None:
        """Raise BudgetExceeded, with a one-line message for the user, if the next round would exceed the budget."""
        b = self.budget if budget is None else _check_budget(budget)
        if b is None or not self.would_exceed(b):
            return
        if self.noise == 0:
            raise BudgetExceeded(
                f"privacy budget epsilon {b:g} cannot be met: noise multiplier z = 0 gives no differential "
                "privacy (epsilon = inf); set z > 0 or drop the budget")
        raise BudgetExceeded(
            f"privacy budget reached: round {self.rounds + 1} would raise epsilon from {self.spent:.4g} to "
            f"{self.next_spent:.4g}, above the budget {b:g} at delta {self.delta:.3g} (z = {self.noise:g}, "
            f"q = {self.sampling_rate:g}); no further round starts")

    def describe(self) -> str:
        """One line for logs and tables."""
        if self.noise == 0:
            return "no differential privacy (noise multiplier z = 0): epsilon = inf"
        budget = "" if self.budget is None else f" of budget {self.budget:g}"
        return (f"epsilon {self.spent:.4g}{budget} at delta {self.delta:.3g} after {self.rounds} round(s) "
                f"(z = {self.noise:g}, q = {self.sampling_rate:g}, {self.per_round:.4g} for one round alone)")


def max_rounds(noise: float, delta: float, budget: float, sampling_rate: float = 1.0, limit: int = 10**6) -> int:
    """The most rounds whose cumulative epsilon stays within ``budget`` (0: not even one; capped at ``limit``).

    Epsilon grows with the number of rounds, so a binary search over it is exact. The deploy
    step writes this number on chain (``dpMaxRounds``): the contract itself then refuses the round
    after, and anyone can re-derive the number from the published z, delta and budget.
    """
    b = _check_budget(budget)
    if b is None:
        raise DPError("max_rounds needs a budget")
    acc = Accountant(noise, delta, sampling_rate)
    if acc.epsilon_after(1) > b:
        return 0
    lo, hi = 1, 2
    while hi <= limit and acc.epsilon_after(hi) <= b:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # epsilon_after(lo) <= b < epsilon_after(hi), or hi = limit + 1
        mid = (lo + hi) // 2
        if acc.epsilon_after(mid) <= b:
            lo = mid
        else:
            hi = mid
    return lo


# On-chain fixed point of the DP parameters (the contract's Params: dpClip, dpNoise, dpBudget in 1e-6,
# dpDelta in 1e-18). Every party reads the rounded values back from the chain, so all agree on them.
CLIP_UNIT = 10**6
NOISE_UNIT = 10**6
BUDGET_UNIT = 10**6
DELTA_UNIT = 10**18
_UINT64 = 2**64 - 1


@dataclass(frozen=True)
class ChainDP:
    """A job's DP parameters as the contract stores them (integers), with the rounds the budget allows."""

    dpClip: int
    dpNoise: int
    dpDelta: int
    dpBudget: int
    dpMaxRounds: int
    dpSeedCommitment: bytes

    def fields(self) -> dict[str, int | bytes]:
        return dict(dpClip=self.dpClip, dpNoise=self.dpNoise, dpDelta=self.dpDelta, dpBudget=self.dpBudget,
                    dpMaxRounds=self.dpMaxRounds, dpSeedCommitment=self.dpSeedCommitment)


def chain_dp(clip: float, noise: float, delta: float, budget: float | None, secret_commitment: bytes) -> ChainDP:
    """The on-chain form of a DP promise, or DPError (one line) when it cannot be kept.

    A budget that does not cover even one round is refused here, not at the first startRound.
    The noise seed commitment is recorded only when there is noise (z > 0).
    """
    params = DPParams(clip, noise, delta, budget)
    c, z = round(params.clip * CLIP_UNIT), round(params.noise * NOISE_UNIT)
    d = round(params.delta * DELTA_UNIT)
    if c < 1 or c > _UINT64:
        raise DPError(f"clipping norm C = {clip:g} does not fit the contract's 1e-6 fixed point (1e-6 .. 1.8e13)")
    if z > _UINT64 or not 0 < d < DELTA_UNIT:
        raise DPError(f"noise multiplier {noise:g} or delta {delta:g} does not fit the contract's fixed point")
    b = rounds = 0
    if params.budget is not None:
        b = round(params.budget * BUDGET_UNIT)
        if not 0 < b <= _UINT64:
            raise DPError(f"epsilon budget {budget:g} does not fit the contract's 1e-6 fixed point")
        if z == 0:
            raise DPError(f"epsilon budget {budget:g} cannot be met with noise multiplier z = 0 (epsilon = inf); "
                          "give --dp-noise above 0 or drop the budget")
        rounds = max_rounds(z / NOISE_UNIT, d / DELTA_UNIT, b / BUDGET_UNIT)
        if rounds == 0:
            one = epsilon(z / NOISE_UNIT, 1, 1.0, d / DELTA_UNIT)
            raise DPError(f"epsilon budget {budget:g} is below one round's epsilon {one:.4g} at delta {delta:.3g} "
                          f"with z = {noise:g}: raise the budget or the noise multiplier")
        rounds = min(rounds, 2**32 - 1)
    commitment = bytes(secret_commitment) if z else bytes(32)
    if z and (len(commitment) != 32 or commitment == bytes(32)):
        raise DPError("a DP job with noise needs the 32-byte commitment of the aggregator's noise secret")
    return ChainDP(c, z, d, b, rounds, commitment)


def job_fields(clip: float, noise: float, delta: float, budget: float | None, num_samples: int,
               aggregator_private_key: bytes) -> dict[str, int | bytes]:
    """The contract's DP fields of a job (empty when ``clip`` is 0): delta 0 means 1/N for N training
    samples, the noise secret is committed from the aggregator's key. DPError when the promise cannot
    be kept (what ``ape run deploy`` and ``federated_round`` both deploy)."""
    if not clip:
        return {}
    return chain_dp(clip, noise, delta or default_delta(num_samples), budget or None,
                    secret_commitment(noise_secret(aggregator_private_key))).fields()


def noise_secret(aggregator_private_key: bytes) -> bytes:
    """The aggregator's DP noise secret, derived from its sealing key (so it needs no file of its own).

    One-way: the secret, sealed to the committee each round, reveals nothing about the key. Fixed for
    the job (its keccak is on chain), so the aggregator cannot grind seeds for a noise it likes.
    """
    if not isinstance(aggregator_private_key, (bytes, bytearray)) or len(aggregator_private_key) != 32:
        raise DPError("the noise secret is derived from the aggregator's 32-byte X25519 private key")
    return hmac.new(bytes(aggregator_private_key), b"chainfl/dp-noise-secret/v1", hashlib.sha256).digest()


def secret_commitment(secret: bytes) -> bytes:
    """keccak-256 of the noise secret: what the contract records (dpSeedCommitment)."""
    from eth_utils import keccak

    return keccak(bytes(secret))


def round_seed(secret: bytes, chain_id: int, contract: str, round_id: int) -> bytes:
    """The noise seed of one round: bound to chain, contract and round (no two rounds share noise)."""
    return derive_seed(secret, "central-dp", chain_id, contract.lower(), round_id)


# --------------------------------------------------------------------------- discrete Gaussian (private mode)


def seeded_rng(seed: bytes) -> random.Random:
    """A reproducible randomness source for ``discrete_gaussian`` (tests, benchmarks).

    A client's real noise in private mode needs no reproducing and must be unpredictable: pass
    ``secrets.SystemRandom()`` there instead.
    """
    return random.Random(hashlib.sha256(b"chainfl/discrete-gaussian/v1" + _check_seed(seed)).digest())


def _bernoulli(p: Fraction, rng: random.Random) -> bool:
    return rng.randrange(p.denominator) < p.numerator


def _bernoulli_exp1(gamma: Fraction, rng: random.Random) -> bool:
    """Bernoulli(exp(-gamma)) for 0 <= gamma <= 1, exactly (CKS20 Algorithm 1)."""
    k = 1
    while _bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(gamma: Fraction, rng: random.Random) -> bool:
    """Bernoulli(exp(-gamma)) for gamma >= 0."""
    while gamma > 1:
        if not _bernoulli_exp1(Fraction(1), rng):
            return False
        gamma -= 1
    return _bernoulli_exp1(gamma, rng)


def _geometric_exp(gamma: Fraction, rng: random.Random) -> int:
    """Geometric(1 - exp(-gamma)) on {0, 1, ...}, for gamma = s/t > 0 (CKS20 Algorithm 2)."""
    s, t = gamma.numerator, gamma.denominator
    while True:
        u = rng.randrange(t)
        if _bernoulli_exp(Fraction(u, t), rng):
            break
    v = 0
    while _bernoulli_exp(Fraction(1), rng):
        v += 1
    return (v * t + u) // s


def _discrete_laplace(t: int, rng: random.Random) -> int:
    """P(y) proportional to exp(-|y|/t) on the integers (CKS20 Algorithm 2)."""
    while True:
        negative = _bernoulli(Fraction(1, 2), rng)
        magnitude = _geometric_exp(Fraction(1, t), rng)
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def discrete_gaussian(sigma2: float | Fraction, size: int, rng: random.Random) -> np.ndarray:
    """``size`` exact samples of the discrete Gaussian N_Z(0, sigma2) (Canonne, Kamath, Steinke 2020, Algorithm 3).

    P(x) is proportional to exp(-x^2 / (2 sigma2)) over the integers. Exact rational arithmetic, so no
    floating-point artefacts (the Mironov 2012 problem does not arise); for private mode, where each
    client adds its share of the noise in the integer domain before masking (Kairouz et al. 2021).
    Its variance is slightly below sigma2 (indistinguishable for sigma2 >= 1). Pure Python, tens of
    microseconds per sample: the reference for ``sample_discrete_gaussian``, which clients use.
    """
    if isinstance(sigma2, bool) or not isinstance(sigma2, (numbers.Real, Fraction)):
        raise DPError(f"discrete Gaussian variance must be a number, got {sigma2!r}")
    if not isinstance(sigma2, Fraction):
        _number("discrete Gaussian variance", sigma2, low=0.0)
    s2 = Fraction(sigma2)
    if s2 < 0:
        raise DPError(f"discrete Gaussian variance must be >= 0, got {sigma2!r}")
    count = _check_count("sample count", size, 0)
    out = np.zeros(count, dtype=np.int64)
    if s2 == 0:
        return out
    t = math.isqrt(math.floor(s2)) + 1  # floor(sigma) + 1
    for i in range(count):
        while True:
            y = _discrete_laplace(t, rng)
            if _bernoulli_exp((abs(y) - s2 / t) ** 2 / (2 * s2), rng):
                out[i] = y
                break
    return out


def distributed_sigma(noise: float, clip: float, scale_bits: int, dim: int, min_survivors: int) -> float:
    """Private mode's per-client discrete Gaussian standard deviation, in fixed-point units.

    The sum of any ``min_survivors`` clients' shares has standard deviation at least z times the
    sensitivity of the integer sum: a clipped change (L2 <= C) scaled by 2**s and rounded per
    coordinate moves the sum by at most C * 2**s + sqrt(d) / 2 (the rounding, as in Kairouz et al.
    2021). Each client adds N_Z(0, sigma^2) with sigma = z * sensitivity / sqrt(min_survivors); with
    more survivors the noise only grows. ``min_survivors`` is the fewest the round can finalize with
    (the Shamir threshold t: below it the dropouts cannot be recovered).
    """
    z = _check_noise(noise)
    c = _check_clip(clip)
    s = _check_count("scale bits", scale_bits, 0)
    d = _check_count("model dimension", dim, 1)
    m = _check_count("minimum survivors", min_survivors, 1)
    return z * (c * 2.0**s + math.sqrt(d) / 2) / math.sqrt(m)


class NoiseStream:
    """Uniform random numbers from AES-256-CTR under a 32-byte key (the ``cryptography`` package).

    A client's noise must be unpredictable to whoever sees the aggregate (it could be subtracted
    otherwise): keyed from ``os.urandom(32)`` it is a CSPRNG, not a Mersenne Twister; a fixed key
    makes it reproducible for tests and benchmarks.
    """

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._cipher = Cipher(algorithms.AES(_check_seed(key)), modes.CTR(bytes(16))).encryptor()

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` float64 uniforms in (0, 1], 53 random bits each (never 0: their log is finite)."""
        raw = np.frombuffer(self._cipher.update(bytes(8 * count)), dtype="<u8")
        return ((raw >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53


def sample_discrete_gaussian(sigma: float, size: int, stream: NoiseStream) -> np.ndarray:
    """``size`` samples of N_Z(0, sigma^2), vectorised: CKS20 Algorithm 3 over whole arrays.

    The same algorithm as ``discrete_gaussian`` (a discrete Laplace proposal of scale
    t = floor(sigma) + 1, accepted with probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))), with the
    proposal drawn as the difference of two geometric variables (floor(-t ln U)) and the acceptance
    compared in float64, as Google's distributed-DP implementation does (Kairouz et al. 2021). The
    float error in a probability is about 2^-50 relative: far below any delta a job promises. The
    exact rational sampler stays as the reference; tests compare both with the exact pmf.
    """
    sig = _number("noise standard deviation", sigma, low=0.0)
    count = _check_count("sample count", size, 0)
    out = np.zeros(count, dtype=np.int64)
    if sig == 0 or count == 0:
        return out
    s2 = sig * sig
    t = math.floor(sig) + 1
    filled, rate = 0, 0.5  # the acceptance rate: about 0.3 for sigma < 1, 0.7 and more from sigma = 2
    while filled < count:
        want = count - filled
        m = int(want / rate * 1.05) + 64
        u = stream.uniforms(3 * m)
        y = np.floor(-t * np.log(u[:m])).astype(np.int64) - np.floor(-t * np.log(u[m:2 * m])).astype(np.int64)
        accept = u[2 * m:] <= np.exp(-((np.abs(y) - s2 / t) ** 2) / (2 * s2))
        rate = max(float(accept.mean()), 0.05)
        got = y[accept][:want]
        out[filled:filled + got.size] = got
        filled += got.size
    return out


def distributed_noise(size: int, sigma: float, key: bytes) -> np.ndarray:
    """One client's share of private mode's noise: ``size`` discrete Gaussian integers of std ``sigma``,
    from AES-CTR randomness under ``key`` (``os.urandom(32)`` for real noise)."""
    return sample_discrete_gaussian(sigma, size, NoiseStream(key))
