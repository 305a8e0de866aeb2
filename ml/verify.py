"""Re-checking a finalized round from the chain's record and the update store.

Anyone can run the public checks: the global model blob hashes to the model
hash on chain, every accepted update's blob is in the store under its
commitment, the recorded counts and weights add up, each accepted client's
reward is ``mulDiv(reward, samples, acceptedWeight)`` and each slash is
``slashBps`` of the client's stake at the time. With a committee, the
proposal's digest is re-derived from its logged outcome and at least m
verifiers attested it; every rejection is re-checked from the round's public
evidence (the disclosed content key opens exactly that update, which must fail
validation with the recorded reason; a forged key is refuted). A disputed
round is checked to have applied nothing. Whoever holds a sealing key the
updates were sealed to (the aggregator's or a verifier's) can also open
the sealed updates and re-compute the aggregation with
:func:`ml.rounds.compute_round` -- the very code the aggregator ran -- and
must get the same model hash bit for bit, and the same rejected and excluded
clients.

:func:`verify_round` returns a :class:`VerifyReport`: a list of checks, each
pass, fail (with what does not match) or skip (with why).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import codec
from .chain import ZERO32, FLContract, Phase, UpdateStatus
from .models import ModelSpec
from .store import BlobIntegrityError, BlobNotFoundError, BlobStore, BlobStoreError

PASS, FAIL, SKIP = "pass", "fail", "skip"
BPS = 10_000
ACCEPTED = (UpdateStatus.SUBMITTED, UpdateStatus.CLAIMED)
CLOSED_WITH_VERDICTS = (Phase.FINALIZED, Phase.FAILED)


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip
    detail: str


@dataclass
class VerifyReport:
    round_id: int
    address: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool | None, detail: str) -> Check:
        check = Check(name, SKIP if ok is None else PASS if ok else FAIL, detail)
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def summary(self) -> str:
        n = {s: sum(c.status == s for c in self.checks) for s in (PASS, FAIL, SKIP)}
        if self.ok:
            return f"round {self.round_id} checks out: {n[PASS]} check(s) passed, {n[SKIP]} skipped"
        return (f"round {self.round_id} does NOT check out: {n[FAIL]} check(s) failed "
                f"({', '.join(c.name for c in self.failed)}), {n[PASS]} passed, {n[SKIP]} skipped")

    def to_dict(self) -> dict[str, Any]:
        return dict(round_id=self.round_id, address=self.address, ok=self.ok,
                    checks=[c.__dict__ for c in self.checks])


def _hex(b: bytes | None) -> str:
    return "0x" + b.hex() if b is not None else "-"


def _mul_div(a: int, b: int, c: int) -> int:
    return a * b // c if c else 0


def _fetch(store: BlobStore, key: bytes, locator: str | None) -> tuple[bytes | None, str]:
    """(blob, "") or (None, why not)."""
    try:
        return store.get(key, locator or None), ""
    except BlobIntegrityError as exc:
        return None, (f"the stored blob hashes to {_hex(exc.actual)}, not {_hex(key)}: "
                      "it was altered after it was published")
    except BlobNotFoundError as exc:
        return None, f"not in the store ({exc.where})"
    except BlobStoreError as exc:
        return None, f"store error: {exc}"


def verify_round(
    fl: FLContract,
    store: BlobStore,
    spec: ModelSpec,
    round_id: int,
    *,
    chain_id: int,
    strategy: str,
    strategy_params: dict[str, Any] | None = None,
    private_key: bytes | None = None,
    initial_locator: str | None = None,
) -> VerifyReport:
    """Every check of a finalized round; see the module docstring."""
    rep = VerifyReport(round_id, fl.address)
    current = fl.current_round()
    if not 1 <= round_id <= current:
        rep.add("round finalized", False, f"round {round_id} was never started (the job is at round {current})")
        return rep
    info = fl.round(round_id)
    if info.phase not in CLOSED_WITH_VERDICTS:
        rep.add("round finalized", False, f"round {round_id} is {info.phase.name.lower()}: only finalized and "
                                          "failed rounds have verdicts (and a finalized one a model) to check")
        return rep
    params = fl.params(fresh=True)
    committee = fl.committee()
    proposal = fl.proposal(round_id)
    proposed = fl.proposed_outcome(round_id, proposal)
    failed = info.phase == Phase.FAILED
    if committee.disputed(info.phase, proposal):
        return _verify_disputed(rep, fl, store, spec, round_id, info, params, proposal, proposed, chain_id)
    _check_committee(rep, fl, round_id, committee, proposal, proposed, chain_id)
    fin = fl.round_logs("RoundFailed" if failed else "RoundFinalized", info)
    ev = fin[-1] if fin else None
    if failed:
        rep.add("round failed below the quorum", info.accepted < params.quorum and info.model_hash == ZERO32
                and info.reward == 0,
                f"failed with {info.accepted} accepted against a quorum of {params.quorum}: no model, no reward; "
                f"{info.rejected} rejected (slashed all the same), {info.excluded} excluded")
    else:
        rep.add("round finalized", True, f"finalized with model {_hex(info.model_hash)}; "
                                         f"{info.accepted} accepted, {info.rejected} rejected, {info.excluded} excluded")

    # -- the record is consistent with itself
    if ev is None:
        rep.add("RoundFailed event" if failed else "RoundFinalized event", False, "no such event for this round")
    elif failed:
        diffs = [f"{k}: event {a}, round record {b}" for k, a, b in (
            ("accepted", int(ev.accepted), info.accepted), ("rejected", int(ev.rejected), info.rejected),
            ("excluded", int(ev.excluded), info.excluded)) if a != b]
        rep.add("RoundFailed event", not diffs, "; ".join(diffs) or "matches the round record")
    else:
        diffs = [f"{k}: event {a}, round record {b}" for k, a, b in (
            ("modelHash", _hex(bytes(ev.modelHash)), _hex(info.model_hash)),
            ("accepted", int(ev.accepted), info.accepted),
            ("acceptedWeight", int(ev.acceptedWeight), info.accepted_weight),
            ("reward", int(ev.reward), info.reward)) if a != b]
        rep.add("RoundFinalized event", not diffs, "; ".join(diffs) or "matches the round record")

    # -- base model: the latest finalized model when the round started
    prev = next((r for r in range(round_id - 1, 0, -1) if fl.round(r).phase == Phase.FINALIZED), None)
    expected_base = fl.round(prev).model_hash if prev else params.initialModelHash
    rep.add("base model", info.base_model_hash == expected_base,
            f"round starts from {_hex(info.base_model_hash)}, "
            + (f"the model of round {prev}" if prev else "the job's initial model")
            + (" as it should" if info.base_model_hash == expected_base else f" is {_hex(expected_base)}"))

    # -- the global model blob
    model_blob, why = (None, "") if failed else _fetch(store, info.model_hash,
                                                        fl.model_locator(round_id))
    if failed:
        rep.add("global model blob", None, "a failed round records no model")
    elif model_blob is None:
        rep.add("global model blob", False, f"model {_hex(info.model_hash)}: {why}")
    else:
        rep.add("global model blob", True, f"keccak-256 of the stored blob ({len(model_blob):,} bytes) "
                                           f"= on-chain model hash {_hex(info.model_hash)}")
        try:
            weights = codec.decode(model_blob, spec)
            codec.validate(weights, spec)
            rep.add("global model decodes", True, f"{len(weights)} finite float32 tensors of the job's model spec")
        except codec.InvalidUpdateError as exc:
            rep.add("global model decodes", False, str(exc))

    # -- submissions, statuses, weights
    subs = fl.submissions(round_id, info)
    updates = {s.client: fl.update(round_id, s.client) for s in subs}
    problems = []
    if len(subs) != info.submissions:
        problems.append(f"{len(subs)} UpdateSubmitted events but the round records {info.submissions} submissions")
    if len(updates) != len(subs):
        problems.append("a client has more than one UpdateSubmitted event in the round")
    for s in subs:
        u = updates[s.client]
        if u.commitment != s.commitment or u.samples != s.samples:
            problems.append(f"{s.client}: event says {_hex(s.commitment)}/{s.samples} samples, "
                            f"storage {_hex(u.commitment)}/{u.samples}")
    accepted = [s for s in subs if updates[s.client].status in ACCEPTED]
    rejected = [s for s in subs if updates[s.client].status == UpdateStatus.REJECTED]
    excluded = [s for s in subs if updates[s.client].status == UpdateStatus.EXCLUDED]
    if len(rejected) != info.rejected or len(excluded) != info.excluded:
        problems.append(f"statuses give {len(rejected)} rejected / {len(excluded)} excluded, the round records "
                        f"{info.rejected} / {info.excluded}")
    weight = 0 if failed else sum(s.samples for s in accepted)  # a failed round weighs nobody
    if weight != info.accepted_weight:
        problems.append(f"accepted samples add up to {weight}, the round records acceptedWeight {info.accepted_weight}")
    if sum(s.samples for s in subs) != info.submitted_weight:
        problems.append(f"submitted samples add up to {sum(s.samples for s in subs)}, the round records "
                        f"{info.submitted_weight}")
    rep.add("submissions and weights", not problems, "; ".join(problems) or
            f"{len(subs)} submission(s), one per client; acceptedWeight {info.accepted_weight} = the accepted "
            "clients' samples")

    # -- every accepted commitment has its blob
    missing = []
    for s in accepted:
        blob, why = _fetch(store, s.commitment, s.locator)
        if blob is None:
            missing.append(f"{s.client}: {why}")
    rep.add("accepted update blobs", not missing, "; ".join(missing) or
            f"all {len(accepted)} accepted commitment(s) have their blob in the store")

    # -- rewards
    # (Claims come at any later block: they are checked from the statuses, not from RewardClaimed events,
    # so that the check reads the same few blocks however old the round is.)
    problems = []
    total = claimed = 0
    n_claimed = 0
    for s in accepted:
        due = 0 if failed else _mul_div(info.reward, s.samples, info.accepted_weight)
        total += due
        if updates[s.client].status == UpdateStatus.CLAIMED:
            claimed += due
            n_claimed += 1
        else:
            got = fl.claimable(round_id, s.client)
            if got != due:
                problems.append(f"{s.client} can claim {got} wei, mulDiv gives {due}")
    for s in rejected + excluded:
        if fl.claimable(round_id, s.client):
            problems.append(f"{s.client} was {updates[s.client].status.name.lower()} but is paid")
    if claimed != info.reward_claimed:
        problems.append(f"the claimed clients' shares add up to {claimed} wei, the round records "
                        f"{info.reward_claimed} claimed")
    if total > info.reward:
        problems.append(f"shares add up to {total} wei, more than the round's reward {info.reward}")
    if info.reward > params.rewardPerRound:
        problems.append(f"the round's reward {info.reward} is above rewardPerRound {params.rewardPerRound}")
    rep.add("rewards", not problems, "; ".join(problems) or
            f"reward {info.reward} wei; each accepted client's share = reward * samples / acceptedWeight "
            f"({n_claimed} claimed, {len(accepted) - n_claimed} claimable)")

    # -- slashes
    slashes = fl.round_logs("UpdateRejected", info)
    problems = []
    if {str(e.client) for e in slashes} != {s.client for s in rejected} or len(slashes) != len(rejected):
        problems.append(f"UpdateRejected events name {sorted(str(e.client) for e in slashes)}, the statuses "
                        f"{sorted(s.client for s in rejected)}")
    for e in slashes:
        before = int(e.stakeBefore)
        due = _mul_div(before, params.slashBps, BPS)
        if int(e.slashed) != due:
            problems.append(f"{e.client} lost {int(e.slashed)} wei; {params.slashBps} bps of its stake {before} "
                            f"is {due}")
    rep.add("slashes", not problems, "; ".join(problems) or
            (f"{len(slashes)} rejected update(s), each slashed {params.slashBps} bps of the stake it had"
             if slashes else "no update rejected, nobody slashed"))

    # -- every rejection, from its public evidence
    _check_evidence(rep, fl, store, spec, round_id, info, params, proposed, chain_id, subs, applied=True)

    # -- the privacy promise (public: the budget's round count is re-derived with dp-accounting)
    if params.dp is not None:
        _check_privacy(rep, params, round_id)

    # -- private mode: the whole aggregation from public data, no key at all
    if params.private:
        return _recompute_private(rep, fl, store, spec, round_id, info, prev, initial_locator, chain_id, failed,
                                  rejected, excluded)

    # -- re-computation from the sealed updates (needs a key they were sealed to)
    if private_key is None:
        rep.add("re-computation", None, "needs a sealing key the updates were sealed to (--key-file): the "
                                        "aggregator's or a verifier's"
                + ("; the DP noise seed is sealed to the same keys" if params.dp is not None else ""))
        return rep
    from .rounds import compute_round
    from .sealing import public_key_of

    if public_key_of(private_key) not in (params.aggregatorKey, *committee.keys):
        rep.add("re-computation", False, f"the key file's public key 0x{public_key_of(private_key).hex()} is "
                                         f"neither the job's aggregator key {_hex(params.aggregatorKey)} nor a "
                                         "verifier's")
        return rep
    try:
        # The base model, fetched with its published locator first (an IPFS store learns its CID).
        if prev is not None:
            store.get(info.base_model_hash, fl.model_locator(prev))
        else:
            store.get(info.base_model_hash, initial_locator)
        dp = _round_dp(store, params, proposed, private_key, chain_id, fl.address, round_id)
        comp = compute_round(fl, store, private_key, spec, round_id, chain_id=chain_id,
                             strategy=strategy, strategy_params=strategy_params, dp=dp)
    except Exception as exc:  # noqa: BLE001 - report any failure as a failed check
        rep.add("re-computation", False, f"could not re-compute: {type(exc).__name__}: {exc}")
        return rep
    problems = []
    if failed:
        if len(comp.accepted) >= params.quorum:
            problems.append(f"re-computation accepts {len(comp.accepted)} update(s), at the quorum "
                            f"{params.quorum}: the round should have a model, not fail")
    elif comp.model_hash != info.model_hash:
        problems.append(f"re-computed model {_hex(comp.model_hash)} differs from the on-chain {_hex(info.model_hash)}")
    got_rej = {r.client: r.reason for r in comp.rejected}
    problems += _verdict_problems(comp, got_rej, rejected, excluded, "excludes")
    reasons = "; rejected: " + ", ".join(f"{c} ({r})" for c, r in got_rej.items()) if got_rej else ""
    rep.add("re-computation", not problems, "; ".join(problems) or (
            f"{len(comp.valid)} opened update(s) valid, below the quorum {params.quorum}: the round fails{reasons}"
            if failed else
            f"{'central DP (clip, mean, seeded noise)' if params.dp is not None else strategy} over the "
            f"{len(comp.valid)} opened update(s) gives {_hex(comp.model_hash)}, bit for bit "
            f"the on-chain model hash{reasons}"))
    return rep


def _verdict_problems(comp: Any, got: dict[str, str], rejected: list, excluded: list, leaves_out: str) -> list[str]:
    """Where a re-computation's rejected and left-out clients differ from the chain's statuses."""
    problems = []
    if set(got) != {s.client for s in rejected}:
        problems.append(f"re-computation rejects {got or 'nobody'}, the chain "
                        f"{sorted(s.client for s in rejected) or 'nobody'}")
    if set(comp.excluded) != {s.client for s in excluded}:
        problems.append(f"re-computation {leaves_out} {sorted(comp.excluded) or 'nobody'}, the chain "
                        f"{sorted(s.client for s in excluded) or 'nobody'}")
    return problems


# --------------------------------------------------------------------------- private mode


def _recompute_private(rep: VerifyReport, fl: FLContract, store: BlobStore, spec: ModelSpec, round_id: int,
                       info: Any, prev: int | None, initial_locator: str | None, chain_id: int, failed: bool,
                       rejected: list, excluded: list) -> VerifyReport:
    """A private round re-computed by anyone: the masked vectors, dealings and reveals are public."""
    from .rounds import compute_round

    try:
        store.get(info.base_model_hash, fl.model_locator(prev) if prev is not None else initial_locator)
        comp = compute_round(fl, store, b"", spec, round_id, chain_id=chain_id, strategy="fedavg")
    except Exception as exc:  # noqa: BLE001 - report any failure as a failed check
        rep.add("re-computation", False, f"could not re-compute: {type(exc).__name__}: {exc}")
        return rep
    res = comp.private
    problems = []
    if failed:
        if comp.model_hash is not None:
            problems.append(f"the public data unmask to model {_hex(comp.model_hash)}: the round should not fail")
    elif comp.model_hash != info.model_hash:
        problems.append(f"re-computed model {_hex(comp.model_hash)} differs from the on-chain "
                        f"{_hex(info.model_hash)}" + (f" ({res.note})" if res.note else ""))
    got = {r.client: r.reason for r in comp.rejected}
    problems += _verdict_problems(comp, got, rejected, excluded, "leaves out")
    faults = "; faults: " + ", ".join(f"{c} ({r})" for c, r in got.items()) if got else ""
    rep.add("re-computation", not problems, "; ".join(problems) or (
        f"private mode, no key: {len(res.survivors)} masked vector(s) summed, {len(res.dropped)} dropout(s) "
        f"unmasked from the revealed shares; " + (f"no model ({res.note}){faults}" if failed else
                                                   f"the model hashes to {_hex(comp.model_hash)}, bit for bit "
                                                   f"the on-chain hash{faults}")))
    return rep


# --------------------------------------------------------------------------- differential privacy


def _check_privacy(rep: VerifyReport, params: Any, round_id: int) -> None:
    """A DP job's published promise: the rounds the budget allows (re-derived) and the epsilon spent by now."""
    from .dp import max_rounds

    dp = params.dp
    acc = dp.accountant(round_id)
    spent = f"epsilon {acc.spent:.4g} at delta {dp.delta:.3g} after round {round_id} (C = {dp.clip:g}, z = {dp.noise:g})"
    if dp.budget is None:
        rep.add("privacy budget", True, f"no budget; {spent}")
        return
    allowed = max_rounds(dp.noise, dp.delta, dp.budget)
    problems = []
    if allowed != params.dpMaxRounds:
        problems.append(f"the budget {dp.budget:g} allows {allowed} round(s), the contract records dpMaxRounds "
                        f"{params.dpMaxRounds}")
    if round_id > params.dpMaxRounds:
        problems.append(f"round {round_id} is past dpMaxRounds {params.dpMaxRounds}")
    rep.add("privacy budget", not problems, "; ".join(problems) or
            f"{spent}, within the budget {dp.budget:g} ({params.dpMaxRounds} round(s), re-derived)")


def _round_dp(store: BlobStore, params: Any, proposed: Any, private_key: bytes, chain_id: int, contract: str,
              round_id: int) -> Any:
    """A DP round's noise from the secret sealed in its evidence (None without DP); DPSecretError if it fails."""
    if params.dp is None:
        return None
    from .rounds import DPSecretError, open_round_dp

    sealed = None
    if params.dp.private:
        ev, why = _evidence(store, proposed) if proposed is not None and proposed.evidence_hash != ZERO32 else (
            None, "the proposal records no evidence blob")
        if ev is None:
            raise DPSecretError(f"the evidence blob with the sealed noise secret: {why}")
        sealed = ev.dp_secret
    return open_round_dp(params, sealed, private_key, chain_id=chain_id, contract=contract, round_id=round_id)


# --------------------------------------------------------------------------- committee and evidence


def _check_committee(rep: VerifyReport, fl: FLContract, round_id: int, committee: Any, proposal: Any,
                     proposed: Any, chain_id: int) -> None:
    """The proposal's digest re-derived from its logged outcome; m attestations (or trusted mode, said so)."""
    if proposed is None:
        rep.add("proposal", False, "no RoundProposed event for this round")
        return
    digest = proposed.digest(chain_id, fl.address, round_id)
    rep.add("proposal digest", digest == proposal.digest,
            f"keccak of the logged outcome = {_hex(digest)}"
            + (" = the digest on chain" if digest == proposal.digest else f", the chain has {_hex(proposal.digest)}"))
    if committee.trusted:
        rep.add("committee", None, "TRUSTED-AGGREGATOR mode: the job has no verifier committee, so nobody but the "
                                   "aggregator checked this proposal before it applied")
        return
    attested = [v for v in committee.verifiers if fl.vote_of(round_id, v) == 1]
    info = fl.round(round_id)
    ok = len(attested) >= committee.threshold or info.phase != Phase.FINALIZED
    rep.add("committee", ok and proposal.attestations == len(attested),
            f"{len(attested)} of {len(committee.verifiers)} verifier(s) attested (threshold {committee.threshold}), "
            f"{proposal.disputes} disputed")


def _evidence(store: BlobStore, proposed: Any) -> tuple[Any, str]:
    from .evidence import Evidence, EvidenceFormatError

    blob, why = _fetch(store, proposed.evidence_hash, proposed.evidence_locator)
    if blob is None:
        return None, why
    try:
        return Evidence.decode(blob), ""
    except EvidenceFormatError as exc:
        return None, str(exc)


def _check_evidence(rep: VerifyReport, fl: FLContract, store: BlobStore, spec: ModelSpec, round_id: int, info: Any,
                    params: Any, proposed: Any, chain_id: int, subs: list, *, applied: bool) -> list[str]:
    """Re-checks each proposed rejection from the public evidence; returns the refuted ones' lines."""
    from .evidence import Verdict, check_rejection
    from .rounds import round_recipients, validation_reason
    from .sealing import SealContext

    name = "rejection evidence"
    dp_sealed = params.noise_sealed
    if proposed is not None and not proposed.rejected and dp_sealed:
        ev, why = _evidence(store, proposed) if proposed.evidence_hash != ZERO32 else (None, "no evidence hash")
        problem = (f"the evidence blob {_hex(proposed.evidence_hash)}: {why}" if ev is None else
                   f"the evidence blob is for round {ev.round_id}" if ev.round_id != round_id else
                   "the evidence carries no sealed noise secret" if ev.dp_secret is None else "")
        rep.add(name, not problem, problem or "no rejection to check; the evidence carries the round's noise secret, "
                                              "sealed to the aggregator and the committee")
        return []
    if proposed is None or not proposed.rejected:
        rep.add(name, None if proposed is None else proposed.evidence_hash == ZERO32,
                "no rejection to check" if proposed is None or proposed.evidence_hash == ZERO32
                else "an evidence hash is recorded although nobody is rejected")
        return []
    ev, why = _evidence(store, proposed)
    if ev is None:
        rep.add(name, False, f"the evidence blob {_hex(proposed.evidence_hash)}: {why}")
        return []
    if ev.round_id != round_id:
        rep.add(name, False, f"the evidence blob is for round {ev.round_id}")
        return []
    base_blob, why = _fetch(store, info.base_model_hash, None)
    if base_blob is None:
        rep.add(name, False, f"the base model {_hex(info.base_model_hash)}: {why}")
        return []
    base = codec.decode(base_blob, spec)
    by_client = {s.client: s for s in subs}
    recipients = round_recipients(fl)
    lines, refuted, private = [], [], 0
    for client, code in zip(proposed.rejected, proposed.reasons):
        rec = ev.for_client(client)
        if rec is None or rec.code != code:
            refuted.append(f"{client}: {'no evidence' if rec is None else 'evidence says ' + rec.reason}")
            continue
        sub = by_client.get(client)
        blob = None
        if sub is not None:
            blob, _ = _fetch(store, sub.commitment, sub.locator)
        ctx = SealContext(chain_id=chain_id, contract=fl.address, round_id=round_id, client=client)
        check = check_rejection(rec, blob, ctx, lambda p: validation_reason(p, spec, base, params.norm_bound),
                                recipients=recipients)
        if check.verdict is Verdict.REFUTED:
            refuted.append(f"{client}: {check.explanation}")
        elif check.verdict is Verdict.NOT_PUBLIC:
            private += 1
            lines.append(f"{client}: {check.explanation}")
        else:
            lines.append(f"{client}: {check.explanation}")
    confirmed = len(proposed.rejected) - len(refuted) - private
    rep.add(name, not refuted if applied else None,
            ("REFUTED " + "; ".join(refuted) + ("; " if lines else "") if refuted else "")
            + f"{confirmed} confirmed from public data, {private} checkable by the verifiers only"
            + (": " + "; ".join(lines) if lines else ""))
    return refuted


def _verify_disputed(rep: VerifyReport, fl: FLContract, store: BlobStore, spec: ModelSpec, round_id: int,
                     info: Any, params: Any, proposal: Any, proposed: Any, chain_id: int) -> VerifyReport:
    """A proposal the committee disputed: the round failed, nothing applied, the bond forfeited."""
    committee = fl.committee()
    rep.add("round disputed", True,
            f"{proposal.disputes} of {len(committee.verifiers)} verifier(s) disputed the proposal (it takes "
            f"{committee.disputes_to_fail}); the round failed with nothing applied")
    subs = fl.submissions(round_id, info)
    statuses = {s.client: fl.update(round_id, s.client).status for s in subs}
    applied = [c for c, st in statuses.items() if st != UpdateStatus.SUBMITTED]
    slashes = fl.round_logs("UpdateRejected", info)
    rep.add("nothing applied", not applied and not slashes and info.model_hash == ZERO32 and info.reward == 0,
            "no slash, no exclusion, no model, no reward" if not applied and not slashes else
            f"verdicts applied to {applied} despite the dispute")
    forfeits = fl.round_logs("ProposalRejected", info)
    rep.add("bond forfeited", bool(forfeits),
            f"{int(forfeits[-1].bondForfeited)} wei of {forfeits[-1].aggregator}'s bond to "
            + ("the treasury" if not params.burns_slashes else "nobody (burned)") if forfeits
            else "no ProposalRejected event")
    if proposed is not None:
        digest = proposed.digest(chain_id, fl.address, round_id)
        rep.add("proposal digest", digest == proposal.digest, f"keccak of the logged outcome = {_hex(digest)}")
        refuted = _check_evidence(rep, fl, store, spec, round_id, info, params, proposed, chain_id, subs,
                                  applied=False)
        if refuted:
            rep.add("why it was disputed", True, "the proposal's own evidence is refuted: " + "; ".join(refuted))
    return rep
