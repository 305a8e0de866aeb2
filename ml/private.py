"""Private mode's round protocol on top of :mod:`ml.secagg`: reveals, and the round's aggregate from public data.

A private round (issue 13) runs: join (round key + dealing digest on chain, the dealing public) ->
mask and submit (the masked vector public, its keccak on chain) -> reveal (each survivor: its own
self-mask seed and its key share of every participant the chain counts as dropped; keccak of the
reveal blob on chain) -> anyone computes the aggregate. This module holds the records and the pure
computation: no chain, no store. :func:`aggregate_private` takes the round's public record and the
blobs fetched for it (None where a blob could not be had) and returns the model, or the provable
faults with their evidence, which are the same for the aggregator, every verifier and
``verify_round`` without any key.

Fault rules (a survivor is a participant that submitted):

* its masked vector is missing (``missing_blob``), is not the committed blob (``commitment_mismatch``)
  or not one vector of the model's length in the job's ring (``bad_vector``);
* it did not reveal (``missing_reveal``), or its reveal is missing, malformed, not the committed
  blob, names the wrong survivor or round, holds a seed that is not its committed one, a share
  that fails the dealer's commitment, or lacks a share it holds of a dropped participant
  (``bad_reveal``); its own dealing must be fetchable and its own (``bad_dealing``).

Any such fault leaves the sum un-maskable, so the round records no model: the outcome rejects the
faulty survivors (slashed), the round fails, nobody else loses anything. A dropped participant
(joined, never submitted) is neither paid nor slashed; the round fails without a model if fewer
than t valid shares of its key are revealed (the note says so).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_utils import keccak, to_checksum_address

from . import secagg as S
from .secagg import Dealing, Holder, RoundContext, RoundSecrets, SecAggError, SecAggParams, Share

REVEAL_VERSION = 1


class PrivateRoundError(ValueError):
    """A private round's record or blobs are unusable; the message says which and why."""


# --------------------------------------------------------------------------- holders


def holders_for(dealer: str, registered: Mapping[str, bytes]) -> list[Holder]:
    """Who a dealer gives shares to: every other registered client with its registered key, by address.

    The chain is the PKI: the keys come from the registry, never through the aggregator. Indices
    are 1.. in ascending address order; each dealing lists its own, so a later registration changes
    nobody's earlier dealing.
    """
    me = to_checksum_address(dealer)
    others = sorted((to_checksum_address(a) for a in registered if to_checksum_address(a) != me),
                    key=lambda a: int(a, 16))
    keys = {to_checksum_address(a): bytes(k) for a, k in registered.items()}
    return [Holder(i + 1, a, keys[a]) for i, a in enumerate(others)]


# --------------------------------------------------------------------------- reveals


@dataclass(frozen=True)
class Reveal:
    """What a survivor publishes after submissions close: its self-mask seed and, for each dropped
    dealer it holds a share of, that key share. Never a seed share: a survivor's own seed is revealed
    by itself (so no one ever holds both kinds of one participant's shares)."""

    round_id: int
    survivor: str
    self_seed: bytes | None = field(repr=False)
    shares: tuple[tuple[str, Share], ...] = ()  # (dropped dealer, its key share), ascending by dealer
    # (dropped dealer, the content key of the share blob it sealed to this survivor, or None when the
    # survivor's entry does not even unwrap): the share does not open, and anyone can check the claim
    complaints: tuple[tuple[str, bytes | None], ...] = ()

    def __post_init__(self) -> None:
        comp = tuple((to_checksum_address(d), None if k is None else bytes(k)) for d, k in self.complaints)
        if [int(d, 16) for d, _ in comp] != sorted({int(d, 16) for d, _ in comp}):
            raise PrivateRoundError("a reveal's complaints must be one per dealer, ascending by address")
        object.__setattr__(self, "complaints", comp)
        object.__setattr__(self, "survivor", to_checksum_address(self.survivor))
        items = tuple((to_checksum_address(d), s) for d, s in self.shares)
        if [int(d, 16) for d, _ in items] != sorted({int(d, 16) for d, _ in items}):
            raise PrivateRoundError("a reveal's shares must be one per dealer, ascending by address")
        if any(s.kind != S.KIND_KEY for _, s in items):
            raise PrivateRoundError("a reveal carries key shares of dropped participants only")
        if self.self_seed is not None and len(self.self_seed) != 32:
            raise PrivateRoundError("a self-mask seed is 32 bytes")
        object.__setattr__(self, "shares", items)

    def to_bytes(self) -> bytes:
        doc = {
            "complaints": [{"content_key": None if k is None else "0x" + k.hex(), "dealer": d}
                           for d, k in self.complaints],
            "round_id": self.round_id,
            "self_seed": None if self.self_seed is None else "0x" + self.self_seed.hex(),
            "shares": [{"dealer": d, "index": s.index, "salt": "0x" + s.salt.hex(), "value": "0x" + s.value.hex()}
                       for d, s in self.shares],
            "survivor": self.survivor,
            "version": REVEAL_VERSION,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> bytes:
        return keccak(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Reveal:
        try:
            doc = json.loads(bytes(data).decode())
            if doc.get("version") != REVEAL_VERSION:
                raise PrivateRoundError(f"reveal version {doc.get('version')!r}, this code reads {REVEAL_VERSION}")
            hexb = (lambda v: bytes.fromhex(v.removeprefix("0x")))  # noqa: E731
            shares = tuple((x["dealer"], Share(S.KIND_KEY, int(x["index"]), hexb(x["value"]), hexb(x["salt"])))
                           for x in doc["shares"])
            seed = None if doc["self_seed"] is None else hexb(doc["self_seed"])
            complaints = tuple((x["dealer"], None if x["content_key"] is None else hexb(x["content_key"]))
                               for x in doc["complaints"])
            rev = cls(int(doc["round_id"]), doc["survivor"], seed, shares, complaints)
        except PrivateRoundError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, SecAggError) as exc:
            raise PrivateRoundError(f"the reveal blob is malformed: {exc}") from None
        if rev.to_bytes() != bytes(data):
            raise PrivateRoundError("the reveal blob is not in canonical form")
        return rev


def make_reveal(round_id: int, survivor: str, secrets: RoundSecrets, dealings: Mapping[str, Dealing],
                dropped: Sequence[str], holder_private_key: bytes, ctx: RoundContext) -> Reveal:
    """A survivor's reveal: opens its share of each dropped dealer's dealing (sealed to its registered key)."""
    from .sealing import SealError, unwrap_content_key

    opened, complaints = {}, {}
    me = to_checksum_address(survivor)
    for d in dropped:
        dealing = dealings.get(to_checksum_address(d))
        if dealing is None or not any(h.address == me for h in dealing.holders):
            continue  # no dealing to open, or this survivor holds no share of d
        try:
            opened[d] = S.open_share(holder_private_key, dealing, me, ctx)
        except SecAggError:  # the dealer's fault: say so with the blob's key, so anyone can check it
            blob = dealing.encrypted[dealing.position(me)]
            try:
                complaints[to_checksum_address(d)] = unwrap_content_key(blob, holder_private_key,
                                                                         ctx.seal_context(dealing.dealer))
            except SealError:
                complaints[to_checksum_address(d)] = None
    shares = S.shares_to_reveal(opened, dropped)
    order = (lambda kv: int(kv[0], 16))  # noqa: E731
    return Reveal(round_id, me, secrets.self_seed, tuple(sorted(shares.items(), key=order)),
                  tuple(sorted(complaints.items(), key=order)))


def complaint_holds(dealing: Dealing, holder: str, content_key: bytes | None, ctx: RoundContext) -> bool:
    """Whether a holder's complaint that its share of ``dealing`` does not open is true.

    With the content key anyone re-runs the opening: a key that does not reproduce the blob's
    ephemeral key is forged (the complaint fails), a blob that opens to the committed shares means
    the share should have been revealed (it fails too); anything else is the dealer's fault. Without
    a key (the holder's entry does not unwrap) the claim cannot be checked publicly: it is accepted,
    which costs liveness (the share does not count), never an honest party's stake.
    """
    from .sealing import SealError, SealEvidenceError, open_with_content_key

    if content_key is None:
        return True
    pos = dealing.position(holder)
    try:
        payload = open_with_content_key(dealing.encrypted[pos], content_key, ctx.seal_context(dealing.dealer),
                                        recipients=[dealing.holders[pos].public_key])
    except SealEvidenceError:
        return False  # not this blob's key
    except SealError:
        return True  # the key is right and the blob does not open: the dealer sealed garbage
    try:
        S._read_payload(payload, dealing, pos)
    except SecAggError:
        return True
    return False


# --------------------------------------------------------------------------- the round's aggregate


@dataclass(frozen=True)
class Participant:
    """One participant of a private round, as the chain records it (events and storage)."""

    address: str
    round_key: bytes
    dealing_digest: bytes
    dealing_locator: str = ""
    commitment: bytes | None = None  # its masked vector's keccak (None: it did not submit: dropped)
    samples: int = 0
    locator: str = ""
    reveal_digest: bytes | None = None  # None: it did not reveal
    reveal_locator: str = ""

    @property
    def survivor(self) -> bool:
        return self.commitment is not None


@dataclass(frozen=True)
class Fault:
    client: str
    reason: str  # missing_blob | commitment_mismatch | bad_vector | missing_reveal | bad_reveal | bad_dealing
    detail: str


@dataclass
class PrivateResult:
    """The round's aggregate (None when it cannot be unmasked) and why."""

    weights: list[np.ndarray] | None
    survivors: list[str]
    dropped: list[str]
    faults: list[Fault]
    total_samples: int
    note: str = ""
    recovered: dict[str, bytes] = field(default_factory=dict, repr=False)  # dropped -> rebuilt round key


Fetch = Callable[[bytes, str], "bytes | None"]  # (keccak, locator) -> the blob, or None


def _dealing(p: Participant, blob: bytes | None) -> tuple[Dealing | None, str]:
    if blob is None:
        return None, "its dealing blob could not be fetched"
    if keccak(blob) != p.dealing_digest:
        return None, "its dealing blob is not the one committed at join"
    try:
        dealing = Dealing.from_bytes(blob)
    except SecAggError as exc:
        return None, f"its dealing is malformed: {exc}"
    if dealing.dealer != p.address or dealing.public_key != p.round_key:
        return None, "its dealing is another participant's, or for another round key"
    return dealing, ""


def aggregate_private(base: Sequence[np.ndarray], participants: Sequence[Participant], fetch: Fetch,
                      params: SecAggParams, ctx: RoundContext, uniform: bool = False) -> PrivateResult:
    """The round's new model from public data only, or the provable faults (see the module docstring).

    ``fetch(keccak, locator)`` returns a blob checked against nothing (this function checks each
    against its commitment), or None when it cannot be had. ``uniform`` (a DP job): each survivor
    quantized its clipped change with weight 1, so the sum is divided by the survivors, not the samples.
    """
    length = sum(int(np.asarray(b).size) for b in base)
    parts = sorted(participants, key=lambda p: int(p.address, 16))
    survivors = [p for p in parts if p.survivor]
    dropped = [p for p in parts if not p.survivor]
    faults: list[Fault] = []
    dealings: dict[str, Dealing] = {}
    dealing_problem: dict[str, str] = {}
    for p in parts:
        d, why = _dealing(p, fetch(p.dealing_digest, p.dealing_locator))
        if d is None:
            dealing_problem[p.address] = why
        else:
            dealings[p.address] = d
    masked: dict[str, np.ndarray] = {}
    seeds: dict[str, bytes] = {}
    key_shares: dict[str, list[Share]] = {p.address: [] for p in dropped}
    for p in survivors:
        blob = fetch(p.commitment, p.locator)
        if blob is None:
            faults.append(Fault(p.address, "missing_blob", "its masked vector could not be fetched"))
            continue
        if keccak(blob) != p.commitment:
            faults.append(Fault(p.address, "commitment_mismatch", "the blob served is not the committed one"))
            continue
        try:
            masked[p.address] = S.decode_vector(blob, params, length)
        except SecAggError as exc:
            faults.append(Fault(p.address, "bad_vector", str(exc)))
            continue
        if p.address in dealing_problem:
            faults.append(Fault(p.address, "bad_dealing", dealing_problem[p.address]))
            continue
        problem = _check_reveal(p, fetch, dealings, dropped, params, ctx, seeds, key_shares)
        if problem is not None:
            faults.append(problem)
    survivors_ok = [p.address for p in survivors if p.address in masked and not any(f.client == p.address
                                                                                    for f in faults)]
    total = len(survivors) if uniform else sum(p.samples for p in survivors)
    result = PrivateResult(None, [p.address for p in survivors], [p.address for p in dropped], faults, total)
    if faults:
        result.note = (f"{len(faults)} survivor(s) at fault: the sum cannot be unmasked, the round records no "
                       "model (the faulty are slashed)")
        return result
    if not survivors_ok:
        result.note = "nobody submitted"
        return result
    for p in dropped:
        dealing = dealings.get(p.address)
        shares = key_shares[p.address]
        try:
            if dealing is None:
                raise SecAggError(dealing_problem[p.address])
            result.recovered[p.address] = S.reconstruct_secret(shares, params.threshold, p.round_key)
        except SecAggError as exc:
            result.note = (f"dropped participant {p.address} cannot be recovered ({len(shares)} valid share(s), "
                           f"t = {params.threshold}: {exc}); the round records no model, nobody is slashed for it")
            return result
    try:
        params.check_total_samples(total)
        plain = S.unmask_sum(masked, {p.address: p.round_key for p in parts}, result.recovered, params, ctx,
                             seeds if params.self_mask else None)
        result.weights = S.aggregate(base, plain, total, params)
    except SecAggError as exc:
        result.note = f"the sum cannot be unmasked: {exc}"
    return result


def _check_reveal(p: Participant, fetch: Fetch, dealings: Mapping[str, Dealing], dropped: Sequence[Participant],
                  params: SecAggParams, ctx: RoundContext, seeds: dict[str, bytes],
                  key_shares: dict[str, list[Share]]) -> Fault | None:
    """A survivor's reveal, checked against the commitments; records its seed and shares when valid."""
    if p.reveal_digest is None:
        return Fault(p.address, "missing_reveal", "it did not reveal its shares before the reveal deadline")
    blob = fetch(p.reveal_digest, p.reveal_locator)
    if blob is None or keccak(blob) != p.reveal_digest:
        return Fault(p.address, "bad_reveal", "its reveal blob " + ("could not be fetched" if blob is None else
                                                                      "is not the one committed on chain"))
    try:
        rev = Reveal.from_bytes(blob)
    except PrivateRoundError as exc:
        return Fault(p.address, "bad_reveal", str(exc))
    if rev.survivor != p.address or rev.round_id != ctx.round_id:
        return Fault(p.address, "bad_reveal", "the reveal is for another survivor or round")
    own = dealings[p.address]
    if params.self_mask:
        if rev.self_seed is None or S.seed_commitment(rev.self_seed) != own.seed_commitment:
            return Fault(p.address, "bad_reveal", "its self-mask seed is not the one committed in its dealing")
    by_dealer = dict(rev.shares)
    complaints = dict(rev.complaints)
    valid: dict[str, Share] = {}
    for d in dropped:
        dealing = dealings.get(d.address)
        if dealing is None or not any(h.address == p.address for h in dealing.holders):
            continue
        holder = next(h for h in dealing.holders if h.address == p.address)
        share = by_dealer.pop(d.address, None)
        if share is None:
            if d.address not in complaints:
                return Fault(p.address, "bad_reveal", f"it reveals neither its share of dropped {d.address} nor "
                                                      "a complaint about it")
            if not complaint_holds(dealing, p.address, complaints[d.address], ctx):
                return Fault(p.address, "bad_reveal", f"its complaint about {d.address}'s share is false (the "
                                                      "key is forged, or the share opens)")
            continue  # the dealer's fault: t other shares may suffice
        if share.index != holder.index or not S.check_revealed(share.value, share.salt,
                                                               dealing.commitment(S.KIND_KEY, share.index)):
            return Fault(p.address, "bad_reveal", f"its share of {d.address} fails the dealer's commitment")
        valid[d.address] = share
    if by_dealer:
        return Fault(p.address, "bad_reveal", f"it reveals shares of {sorted(by_dealer)[0]}, not a dropped "
                                              "participant it holds a share of")
    if params.self_mask:
        seeds[p.address] = rev.self_seed
    for d, share in valid.items():
        key_shares[d].append(share)
    return None
