"""One round's computation: collect -> verify -> open -> validate -> aggregate.

:func:`compute_round` is a pure function of the chain's record, the store and
the sealing key: the aggregator runs it to finalize a round, and
`verify_round` runs the very same code later to re-compute the global model and
compare hashes bit for bit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from eth_utils import to_checksum_address

from . import codec
from .aggregation import AggregateResult, ClientUpdate, aggregate, check_norm
from .chain import FLContract, RoundInfo
from .models import ModelSpec, tensor_names
from .chain import ZERO32, Outcome
from .evidence import NO_KEY_REASONS, Evidence, RejectionEvidence, content_key_for_evidence, reason_code
from .chain import JobParams
from .dp import CentralDPResult, DPParams, central_dp_mean, noise_secret, round_seed, secret_commitment
from .sealing import SealContext, SealError, open_sealed, seal
from .store import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    BlobStoreError,
    FetchBudget,
    StoreUnhealthyError,
)
from .timing import Timings


class DPSecretError(ValueError):
    """A DP round's sealed noise secret is missing, does not open, or is not the committed one."""


@dataclass(frozen=True)
class RoundDP:
    """A DP round's noise: the job's promise, this round's seed and the sealed secret the evidence carries.

    The seed is derived from the aggregator's noise secret (committed on chain at deployment, so it
    cannot be re-drawn) and the round; the secret travels sealed to the aggregator and the committee
    in the round's evidence blob, so every verifier re-derives the noise and the public cannot.
    """

    params: DPParams
    seed: bytes | None = field(repr=False)  # None when z = 0 (clipping only)
    sealed_secret: bytes | None = field(default=None, repr=False)  # None when z = 0


def dp_seal_context(chain_id: int, contract: str, round_id: int) -> SealContext:
    """The noise secret is sealed to the job itself (the contract in the client field), per round."""
    return SealContext(chain_id=chain_id, contract=contract, round_id=round_id, client=contract)


def round_dp(params: JobParams, aggregator_private_key: bytes, recipients: list[bytes], *, chain_id: int,
             contract: str, round_id: int) -> RoundDP | None:
    """The aggregator's side: the round's seed from its own key, and the secret sealed to ``recipients``
    (None without central DP: no DP, or private mode, where the clients add the noise)."""
    dp = params.central_dp
    if dp is None:
        return None
    if not dp.private:
        return RoundDP(dp, None, None)
    secret = noise_secret(aggregator_private_key)
    if secret_commitment(secret) != params.dpSeedCommitment:
        raise DPSecretError("the aggregator's key does not give the noise secret committed on chain "
                            "(dpSeedCommitment): run the aggregator with the key file the job was deployed with")
    return RoundDP(dp, round_seed(secret, chain_id, contract, round_id),
                   seal(secret, recipients, dp_seal_context(chain_id, contract, round_id)))


def open_round_dp(params: JobParams, sealed: bytes | None, private_key: bytes, *, chain_id: int, contract: str,
                  round_id: int) -> RoundDP | None:
    """A verifier's side: the round's seed from the sealed secret in the proposal's evidence (checked;
    None without central DP)."""
    dp = params.central_dp
    if dp is None:
        return None
    if not dp.private:
        return RoundDP(dp, None, None)
    if not sealed:
        raise DPSecretError("the sealed noise secret is missing from the evidence: the noise cannot be re-derived")
    try:
        secret = open_sealed(sealed, private_key, dp_seal_context(chain_id, contract, round_id))
    except SealError as exc:
        raise DPSecretError(f"the sealed noise secret does not open with this key: {exc}") from None
    if secret_commitment(secret) != params.dpSeedCommitment:
        raise DPSecretError("the sealed noise secret is not the one committed on chain (dpSeedCommitment)")
    return RoundDP(dp, round_seed(secret, chain_id, contract, round_id), bytes(sealed))


class NormBoundError(ValueError):
    """An update that moves the model further than the job's published norm bound."""

    reason = "norm"


@dataclass(frozen=True)
class Rejection:
    """An update that is provably invalid: its client gets slashed."""

    client: str
    reason: str  # missing_blob, commitment_mismatch, cannot_open, decode, shape, non_finite, norm, ...
    detail: str
    content_key: bytes | None = field(default=None, repr=False)  # disclosed as evidence (content reasons)
    blob: bytes | None = field(default=None, repr=False, compare=False)  # the sealed blob, when it was fetched

    def evidence(self) -> RejectionEvidence:
        """This rejection as the public evidence records it."""
        key = None if self.reason in NO_KEY_REASONS else self.content_key
        return RejectionEvidence.create(self.client, self.reason, key, self.detail)


@dataclass
class RoundComputation:
    round_id: int
    base_hash: bytes
    submitted: int
    valid: list[ClientUpdate]
    rejected: list[Rejection]
    result: AggregateResult | None = None
    model_blob: bytes | None = None
    base: list[np.ndarray] | None = field(default=None, repr=False)  # the round's base model weights
    dp: RoundDP | None = None  # a DP job's noise for this round (None: no DP)
    dp_result: CentralDPResult | None = field(default=None, repr=False)  # what clipping and noise did
    private: Any = field(default=None, repr=False)  # a private round's ml.private.PrivateResult

    @property
    def model_hash(self) -> bytes | None:
        return codec.keccak(self.model_blob) if self.model_blob is not None else None

    @property
    def excluded(self) -> list[str]:
        return list(self.result.excluded) if self.result else []

    @property
    def accepted(self) -> list[str]:
        return list(self.result.included) if self.result else []


@dataclass
class RoundOutcome:
    round_id: int
    status: str  # finalized | failed (below the quorum: verdicts applied, no model) | cancelled
    model_hash: bytes | None
    accepted: list[str]
    excluded: list[str]
    rejected: list[Rejection]
    loss: float = float("nan")
    accuracy: float = float("nan")
    gas: int = 0
    reward: int = 0
    note: str = ""
    samples: dict[str, int] = field(default_factory=dict)
    attestations: int = 0
    disputes: int = 0
    rogue: str = ""  # what a simulated rogue aggregator did to this round's proposal
    honest_accepted: list[str] = field(default_factory=list)  # accepted by the honest computation
    epsilon: float | None = None  # a DP job's cumulative epsilon after this round (None: no DP)
    noise_std: float = float("nan")  # the noise's per-coordinate standard deviation, z*C/n
    clipped: int = 0  # accepted updates whose change was scaled down to C


# How long the aggregator may spend fetching a round's update blobs (M-3). Once the
# grace period after the deadline is over anyone may cancel the round, and a cancelled
# round slashes nobody: fetches, hostile locators included, must end well before.
FETCH_BUDGET_FRACTION = 0.25  # of the job's grace period
FETCH_BUDGET_CAP = 120.0  # seconds, whatever the grace period
FETCH_BUDGET_FLOOR = 1.0  # seconds: with no time at all no update could be fetched
BLOB_ATTEMPTS = 3
BLOB_REQUEST_CAP = 30.0  # seconds per request
BLOB_SHARE_FLOOR = 0.25  # seconds: a blob the store holds comes back in milliseconds
HEALTH_TIMEOUT = 10.0  # seconds for the aggregator's check of its own store


def round_fetch_budget(grace_period: float, *, fraction: float = FETCH_BUDGET_FRACTION,
                       cap: float = FETCH_BUDGET_CAP, floor: float = FETCH_BUDGET_FLOOR) -> float:
    """Seconds for fetching all of a round's update blobs: a fraction of the grace period, capped.

    The rest of the grace period is left for verifying, aggregating, publishing
    the model and getting the finalize transaction mined.
    """
    return min(cap, max(floor, fraction * float(grace_period)))


def blob_budget(remaining: float, blobs_left: int, *, attempts: int = BLOB_ATTEMPTS,
                request_cap: float = BLOB_REQUEST_CAP, floor: float = BLOB_SHARE_FLOOR) -> FetchBudget:
    """One blob's fair share of what is left of the round's fetch budget.

    Each blob gets the time left divided by the blobs left, so a client whose
    locator hangs uses up only its own share: the blobs after it get at least as
    much as the first one did.
    """
    share = max(floor, remaining / max(1, blobs_left))
    return FetchBudget(seconds=share, attempts=attempts, request_timeout=min(request_cap, share))


def own_store_down(round_id: int, problem: BaseException) -> str:
    """The one line an aggregator says when its own store, not a client, is at fault."""
    return (f"round {round_id} paused, nobody slashed: the aggregator's own store is unhealthy ({problem}). "
            "Fix the store, then run the aggregator again: the round stays open until the grace period "
            "after its deadline is over (then anyone may cancel it, still slashing nobody)")


def check_own_store(store: BlobStore, round_id: int, timeout: float = HEALTH_TIMEOUT) -> None:
    """Raises StoreUnhealthyError (one line, :func:`own_store_down`) unless the aggregator's store works."""
    try:
        store.health_check(timeout)
    except StoreUnhealthyError as exc:
        raise StoreUnhealthyError(own_store_down(round_id, exc)) from exc


def fetch_update_blob(store: BlobStore, commitment: bytes, locator: str | None, budget: FetchBudget,
                      round_id: int, health_timeout: float = HEALTH_TIMEOUT) -> bytes:
    """A client's sealed blob, within ``budget``; a blob that cannot be had is the client's fault
    (BlobNotFoundError) only once the aggregator's own store has passed its health check."""
    try:
        return store.fetch(commitment, locator, budget)
    except BlobNotFoundError:
        check_own_store(store, round_id, health_timeout)
        raise


def collect_updates(
    fl: FLContract,
    store: BlobStore,
    private_key: bytes,
    spec: ModelSpec,
    round_id: int,
    *,
    chain_id: int,
    base: list[np.ndarray],
    norm_bound: float | None,
    timings: Timings | None = None,
    fetch_budget: float | None = None,
    health_timeout: float = HEALTH_TIMEOUT,
    recipients: list[bytes] | None = None,
    info: RoundInfo | None = None,
) -> tuple[list[ClientUpdate], list[Rejection], int]:
    """Fetches, checks, opens and validates every update submitted in the round.

    Locators are untrusted: a blob that is malformed, unserved or not obtainable
    within the round's fetch budget (``fetch_budget`` seconds, by default
    :func:`round_fetch_budget` of the job's grace period) is ``missing_blob`` for its
    client. If the aggregator's own store fails its health check instead, this
    raises StoreUnhealthyError and blames (slashes) nobody.
    """
    timings = timings or Timings()
    with timings.measure("chain"):
        subs = fl.submissions(round_id, info)  # `info`: the round's record, if the caller has it
        if recipients is None:
            recipients = round_recipients(fl)
        total = fetch_budget if fetch_budget is not None else round_fetch_budget(fl.params().gracePeriod)
    spent = 0.0  # seconds spent fetching (and checking the store): opening and decoding do not count
    valid: list[ClientUpdate] = []
    rejected: list[Rejection] = []
    for i, sub in enumerate(subs):
        client = sub.client
        with timings.measure("encode_seal_store"):
            budget = blob_budget(total - spent, len(subs) - i)
            t0 = time.monotonic()
            try:
                blob = fetch_update_blob(store, sub.commitment, sub.locator or None, budget, round_id,
                                         health_timeout)
            except BlobNotFoundError as exc:
                rejected.append(Rejection(client, "missing_blob", str(exc)))
                continue
            except BlobIntegrityError as exc:
                rejected.append(Rejection(client, "commitment_mismatch", str(exc)))
                continue
            except BlobStoreError:
                # The aggregator's own store failed (unhealthy, index unwritable): not the client's fault.
                raise
            finally:
                spent += time.monotonic() - t0
            ctx = SealContext(chain_id=chain_id, contract=fl.address, round_id=round_id, client=client)
            try:
                plain = open_sealed(blob, private_key, ctx, recipients=recipients)
            except SealError as exc:
                rejected.append(Rejection(client, "cannot_open", str(exc),
                                          content_key_for_evidence(blob, private_key, ctx), blob))
                continue
            try:
                weights = decode_update(plain, spec, base, norm_bound)
            except (codec.InvalidUpdateError, NormBoundError) as exc:
                rejected.append(Rejection(client, exc.reason, str(exc), content_key_for_evidence(blob, private_key, ctx),
                                          blob))
                continue
        valid.append(ClientUpdate(key=client.lower(), weights=weights, num_samples=sub.samples))
    valid.sort(key=lambda u: u.key)  # the strategies sort too; this keeps logs and reports tidy
    return valid, rejected, len(subs)


def decode_update(plain: bytes, spec: ModelSpec, base: list[np.ndarray], norm_bound: float | None) -> list[np.ndarray]:
    """An opened update's weights, or InvalidUpdateError / NormBoundError with the reason it is rejected for.

    The one validation every party runs: the aggregator, each verifier, and anyone re-checking
    a rejection from its public evidence (:func:`validation_reason`).
    """
    weights = codec.decode(plain, spec)
    codec.validate(weights, spec)
    if norm_bound is not None and not check_norm(weights, base, norm_bound):
        raise NormBoundError(f"L2 norm of the update exceeds the published bound {norm_bound}")
    return weights


def validation_reason(plain: bytes, spec: ModelSpec, base: list[np.ndarray], norm_bound: float | None) -> str | None:
    """:func:`decode_update` as ml.evidence.check_rejection wants it: the rejection reason, or None if valid."""
    try:
        decode_update(plain, spec, base, norm_bound)
    except (codec.InvalidUpdateError, NormBoundError) as exc:
        return exc.reason
    return None


def round_recipients(fl: FLContract) -> list[bytes]:
    """Who every update must be sealed to: the aggregator, then each verifier, in the contract's order.

    A blob that leaves one out is ``cannot_open``: a client must not be able to hide its
    update from the committee that checks the aggregator.
    """
    return [fl.params().aggregatorKey, *fl.committee().keys]


def evidence_of(comp: "RoundComputation") -> Evidence | None:
    """The round's public evidence: one record per rejection, and a DP round's sealed noise secret
    (None when nobody is rejected and there is no secret)."""
    sealed = comp.dp.sealed_secret if comp.dp is not None else None
    if not comp.rejected and sealed is None:
        return None
    return Evidence(comp.round_id, tuple(r.evidence() for r in comp.rejected), sealed)


def outcome_of(comp: "RoundComputation", quorum: int, *, evidence_locator: str = "",
               model_locator: str = "") -> Outcome:
    """The outcome the aggregator proposes and every verifier re-derives from the same computation.

    Below the quorum there is no model (zero hash); the evidence hash is zero iff nobody is rejected.
    """
    evidence = evidence_of(comp)
    model = comp.model_hash if comp.result is not None and len(comp.accepted) >= quorum else None
    return Outcome.of(
        model or ZERO32, {r.client: reason_code(r.reason) for r in comp.rejected}, comp.excluded,
        evidence.hash() if evidence is not None else ZERO32, evidence_locator, model_locator if model else "",
    )


def effective_strategy(strategy: str, params: dict[str, Any] | None, n: int) -> tuple[str, dict[str, Any]]:
    """The strategy actually run on n valid updates: a deterministic rule, so verification agrees.

    Krum needs n >= 2f + 3: when rejections leave fewer updates, f is lowered to
    what n allows, and below 3 updates the round falls back to FedAvg rather
    than failing the whole round.
    """
    params = dict(params or {})
    if strategy in ("krum", "multi_krum"):
        if n < 3:
            return "fedavg", {}
        params["f"] = max(0, min(int(params.get("f", 1)), (n - 3) // 2))
        if "m" in params and params["m"] is not None:
            params["m"] = min(int(params["m"]), n)
    return strategy, params


def compute_round(
    fl: FLContract,
    store: BlobStore,
    private_key: bytes,
    spec: ModelSpec,
    round_id: int,
    *,
    chain_id: int,
    strategy: str,
    strategy_params: dict[str, Any] | None = None,
    timings: Timings | None = None,
    info: RoundInfo | None = None,
    dp: RoundDP | None = None,
) -> RoundComputation:
    """Everything the aggregator decides about a round, re-computable by an auditor (`info`: the round's
    record, if the caller has just read it once its submissions are in; `dp`: a DP job's noise, from
    :func:`round_dp` or :func:`open_round_dp`)."""
    timings = timings or Timings()
    with timings.measure("chain"):
        info = info if info is not None else fl.round(round_id)
        params = fl.params()
    base_blob = store.get(info.base_model_hash)
    base = codec.decode(base_blob, spec)
    if params.private:  # secure aggregation: everything public, no key
        return compute_private_round(fl, store, spec, round_id, base, chain_id=chain_id, info=info,
                                     timings=timings)
    valid, rejected, submitted = collect_updates(
        fl, store, private_key, spec, round_id, chain_id=chain_id, base=base,
        norm_bound=params.norm_bound, timings=timings, info=info,
    )
    if params.dp is not None and dp is None:
        raise DPSecretError(f"round {round_id} of a DP job needs its noise (RoundDP) to be computed")
    comp = RoundComputation(round_id, info.base_model_hash, submitted, valid, rejected, base=base, dp=dp)
    return aggregate_updates(comp, spec, strategy, strategy_params, timings)


def aggregate_updates(comp: RoundComputation, spec: ModelSpec, strategy: str,
                      strategy_params: dict[str, Any] | None = None, timings: Timings | None = None) -> RoundComputation:
    """The strategy over the round's valid updates: the result and the model blob (in place; returns comp)."""
    timings = timings or Timings()
    comp.result = comp.model_blob = None
    if not comp.valid:
        return comp
    strategy, params = effective_strategy(strategy, strategy_params, len(comp.valid))
    with timings.measure("aggregation"):
        if comp.dp is not None:
            result = _central_dp(comp)
        else:
            result = aggregate(strategy, comp.valid, **params)
    # Keys are lower-case addresses: give the chain checksummed ones (no second event query).
    comp.result = AggregateResult(
        weights=result.weights,
        included=[to_checksum_address(k) for k in result.included],
        excluded=[to_checksum_address(k) for k in result.excluded],
    )
    with timings.measure("encode_seal_store"):
        comp.model_blob = codec.encode(comp.result.weights, tensor_names(spec))
    return comp


def _central_dp(comp: RoundComputation) -> AggregateResult:
    """Server-side fixed clipping and Gaussian noise over the valid updates, in the fixed client order."""
    assert comp.dp is not None and comp.base is not None
    ordered = sorted(comp.valid, key=lambda u: u.key)
    dp = comp.dp.params
    res = central_dp_mean(comp.base, [u.weights for u in ordered], [u.num_samples for u in ordered],
                          dp.clip, dp.noise, comp.dp.seed)
    comp.dp_result = res
    return AggregateResult(weights=res.weights, included=[u.key for u in ordered], excluded=[])


def public_fetcher(store: BlobStore, total_seconds: float) -> Callable[[bytes, str], bytes | None]:
    """Fetch for ml.private.aggregate_private: the blob, b"" when the served bytes are not the committed
    ones, None when it cannot be had (within the round's fetch budget, shared like collect_updates')."""
    spent = [0.0]

    def fetch(key: bytes, locator: str = "") -> bytes | None:
        budget = blob_budget(total_seconds - spent[0], 1)
        t0 = time.monotonic()
        try:
            return store.fetch(key, locator or None, budget)
        except BlobNotFoundError:
            return None
        except BlobIntegrityError:
            return b""
        finally:
            spent[0] += time.monotonic() - t0

    return fetch


def compute_private_round(fl: FLContract, store: BlobStore, spec: ModelSpec, round_id: int,
                          base: list[np.ndarray], *, chain_id: int, info: RoundInfo | None = None,
                          timings: Timings | None = None) -> RoundComputation:
    """A private round from public data only (ml.private): the same for the aggregator, each verifier and
    verify_round without a key. Faults are rejections without a key (nothing is sealed); any fault or an
    unrecoverable dropout leaves no model."""
    from .private import aggregate_private
    from .secagg import RoundContext

    timings = timings or Timings()
    with timings.measure("chain"):
        info = info if info is not None else fl.round(round_id)
        params = fl.params()
        parts = fl.participants(round_id, info)
    secagg = params.secagg
    fetch = public_fetcher(store, round_fetch_budget(params.gracePeriod))
    with timings.measure("aggregation"):
        res = aggregate_private(base, parts, fetch, secagg, RoundContext(chain_id, fl.address, round_id),
                                uniform=params.dp is not None)
    survivors = [p for p in parts if p.survivor]
    rejected = [Rejection(f.client, f.reason, f.detail) for f in res.faults]
    bad = {f.client for f in res.faults}
    valid = [ClientUpdate(key=p.address.lower(), weights=[], num_samples=p.samples) for p in survivors
             if p.address not in bad]
    comp = RoundComputation(round_id, info.base_model_hash, len(survivors), valid, rejected, base=base)
    comp.private = res
    honest = [to_checksum_address(u.key) for u in valid]
    if res.weights is not None:
        comp.result = AggregateResult(weights=res.weights, included=honest)
        with timings.measure("encode_seal_store"):
            comp.model_blob = codec.encode(res.weights, tensor_names(spec))
    elif honest:
        # No model (a fault, or a dropout nobody can recover): the honest survivors are left out, neither
        # paid nor slashed, so that the round closes as Failed with only the faulty slashed.
        comp.result = AggregateResult(weights=[], included=[], excluded=honest)
    return comp
