"""`ape run verifier`: re-compute every proposed round and attest or dispute it.

A verifier holds its own X25519 key (every update is sealed to it as well as to the
aggregator), runs the very :func:`~ml.rounds.compute_round` the aggregator ran, and
compares outcomes. It attests only when its own outcome (model hash, rejected clients
with their reasons, excluded clients) equals the proposal's and the proposal's
evidence checks out: the blob's hash is the one proposed, it names exactly the
rejected clients with their reasons, and no disclosed key is forged or contradicted
by re-validating the update it opens. Otherwise it disputes with the digest of what it
computed, and says which client and which check. In a private job the same computation runs on
public data only (masked vectors, dealings, reveals); in a central-DP job the noise is re-derived
from the secret sealed in the proposal's evidence.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from eth_utils import keccak

from ..chain import ZERO32, ChainError, FLContract, Outcome, Phase, head_block
from ..evidence import Evidence, EvidenceFormatError, Verdict, check_rejection, reason_of
from ..models import ModelSpec
from ..rogue import check_rogue_verifier
from ..rounds import (
    DPSecretError,
    RoundComputation,
    RoundDP,
    compute_round,
    open_round_dp,
    outcome_of,
    round_recipients,
    validation_reason,
)
from ..sealing import SealContext
from ..store import BlobStore, BlobStoreError, FetchBudget
from ..timing import Timings
from .deploy import Job
from .lifecycle import Log, PartyError, Stop, chain_now, round_closed, run_until_done, short

ATTEST, DISPUTE = "attest", "dispute"
EVIDENCE_FETCH = FetchBudget(seconds=30.0, attempts=3, request_timeout=10.0)


@dataclass(frozen=True)
class Decision:
    """One verifier's decision on one proposal, with the reasons when it disputes."""

    round_id: int
    vote: str  # attest | dispute
    outcome: Outcome  # what the verifier computed (the proposal's evidence hash once it checked out)
    digest: bytes  # the digest of `outcome`: the proposal's when attesting
    reasons: tuple[str, ...] = ()
    sent: bool = False  # the vote is on chain (False: not sent, or someone closed the round first)
    note: str = ""

    def line(self, verifier: str = "") -> str:
        who = f"{short(verifier, 8)} " if verifier else ""
        if self.vote == ATTEST:
            what = f"round {self.round_id}: {who}attests {short(self.digest)} (re-computed the same outcome; " \
                   "evidence checks out)"
        else:
            what = f"round {self.round_id}: {who}disputes: " + "; ".join(self.reasons)
        return what + (f" [{self.note}]" if self.note else "")


def compare_outcomes(mine: Outcome, proposed: Outcome) -> list[str]:
    """What differs between the verifier's outcome and the proposal, one item per client or check."""
    problems: list[str] = []
    if mine.model_hash != proposed.model_hash:
        if proposed.model_hash == ZERO32:
            problems.append(f"model: the proposal has none, re-computed {short(mine.model_hash)}")
        elif mine.model_hash == ZERO32:
            problems.append(f"model: the proposal has {short(proposed.model_hash)}, re-computed none (below the "
                            "quorum)")
        else:
            problems.append(f"model: the proposal has {short(proposed.model_hash)}, re-computed "
                            f"{short(mine.model_hash)}")
    mine_rej = dict(zip(mine.rejected, mine.reasons))
    prop_rej = dict(zip(proposed.rejected, proposed.reasons))
    for client in sorted(set(mine_rej) | set(prop_rej), key=str.lower):
        a, b = mine_rej.get(client), prop_rej.get(client)
        if a == b:
            continue
        if a is None:
            problems.append(f"client {client}: the proposal rejects it ({_reason(b)}), its update is valid")
        elif b is None:
            problems.append(f"client {client}: its update is invalid ({_reason(a)}), the proposal does not reject it")
        else:
            problems.append(f"client {client}: the proposal rejects it for {_reason(b)}, re-checked: {_reason(a)}")
    for client in sorted(set(proposed.excluded) - set(mine.excluded), key=str.lower):
        problems.append(f"client {client}: the proposal excludes it, the strategy does not")
    for client in sorted(set(mine.excluded) - set(proposed.excluded), key=str.lower):
        problems.append(f"client {client}: the strategy excludes it, the proposal does not")
    return problems


def _reason(code: int) -> str:
    try:
        return reason_of(int(code))
    except ValueError:
        return f"code {code}"


def check_evidence(proposed: Outcome, blob: bytes | None, comp: RoundComputation, spec: ModelSpec, *,
                   chain_id: int, contract: str, recipients: list[bytes], norm_bound: float | None,
                   dp_sealed: bool = False) -> list[str]:
    """Problems with a proposal's evidence blob (empty when it checks out).

    Called once the verdicts agree. The blob must hash to the proposal's evidence hash, be
    canonical evidence of this round naming exactly the rejected clients with their reasons, and
    each disclosed key must survive :func:`ml.evidence.check_rejection` (a forged key or a
    valid update it opens is refuted). Reasons with nothing public to check were re-checked by
    this verifier's own computation. ``dp_sealed``: the round's noise secret travels in the evidence
    (a DP job with noise), so the blob must exist even when nobody is rejected.
    """
    if not proposed.rejected and not dp_sealed:
        return [] if proposed.evidence_hash == ZERO32 else ["evidence: a hash is proposed but nobody is rejected"]
    if blob is None:
        return [f"evidence: the blob {short(proposed.evidence_hash)} could not be fetched from "
                f"{proposed.evidence_locator or 'the store'}"]
    if keccak(blob) != proposed.evidence_hash:
        return [f"evidence: the blob does not hash to the proposed {short(proposed.evidence_hash)}"]
    try:
        ev = Evidence.decode(blob)
    except EvidenceFormatError as exc:
        return [f"evidence: {exc}"]
    if ev.round_id != comp.round_id:
        return [f"evidence: it is for round {ev.round_id}, not {comp.round_id}"]
    if dp_sealed != (ev.dp_secret is not None):
        return ["evidence: " + ("the DP round's sealed noise secret is missing" if dp_sealed else
                                "it carries a noise secret although the job has no DP noise")]
    problems = []
    named = {r.client: r for r in ev.rejections}
    for client, code in zip(proposed.rejected, proposed.reasons):
        rec = named.pop(client, None)
        if rec is None:
            problems.append(f"client {client}: rejected without evidence")
        elif rec.code != code:
            problems.append(f"client {client}: evidence says {rec.reason}, the proposal {_reason(code)}")
    for client in named:
        problems.append(f"client {client}: evidence for a client the proposal does not reject")
    blobs = {r.client: r.blob for r in comp.rejected}
    base = comp.base or []
    for rec in ev.rejections:
        if rec.client not in blobs:
            continue
        ctx = SealContext(chain_id=chain_id, contract=contract, round_id=comp.round_id, client=rec.client)
        check = check_rejection(rec, blobs[rec.client], ctx, lambda p: validation_reason(p, spec, base, norm_bound),
                                recipients=recipients)
        if check.verdict is Verdict.REFUTED:
            problems.append(f"client {rec.client}: {check.explanation}")
    return problems


class Verifier:
    """One committee member: decides on proposals from its own re-computation, and votes."""

    def __init__(self, account: Any, fl: FLContract, store: BlobStore, private_key: bytes, spec: ModelSpec, *,
                 chain_id: int, strategy: str = "fedavg", strategy_params: dict[str, Any] | None = None,
                 rogue: str | None = None, timings: Timings | None = None):
        self.account = account
        self.fl = fl
        self.store = store
        self.private_key = private_key
        self.spec = spec
        self.chain_id = chain_id
        self.strategy = strategy
        self.strategy_params = dict(strategy_params or {})
        self.rogue = check_rogue_verifier(rogue) if rogue else None
        self.timings = timings or Timings()

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _evidence_blob(self, proposed: Outcome) -> bytes | None:
        if proposed.evidence_hash == ZERO32:
            return None
        try:
            return self.store.fetch(proposed.evidence_hash, proposed.evidence_locator or None, EVIDENCE_FETCH)
        except BlobStoreError:
            return None

    def decide(self, round_id: int) -> Decision:
        """Re-computes the round and compares it with the proposal (no transaction)."""
        fl = self.fl
        with self.timings.measure("chain"):
            view = fl.round_view(round_id, self.address)  # the round and its proposal in one call
            proposal = view.proposal
            proposed = fl.proposed_outcome(round_id, proposal)
            params = fl.params()
        if proposed is None:
            raise PartyError(f"round {round_id} has no proposal to decide on")
        if self.rogue == "attest_all":
            return Decision(round_id, ATTEST, proposed, proposal.digest, note="rogue verifier: attests unchecked")
        if self.rogue == "dispute_all":
            bogus = keccak(b"rogue verifier disputes everything" + round_id.to_bytes(32, "big"))
            return Decision(round_id, DISPUTE, proposed, bogus, ("rogue verifier: disputes every proposal",))
        evidence = self._evidence_blob(proposed)
        dp_sealed = params.noise_sealed
        try:
            dp = self._round_dp(params, evidence, round_id)
        except DPSecretError as exc:
            # Without the committed secret nobody can re-derive the noise: the model is unverifiable.
            mine = Outcome(ZERO32, proposed.rejected, proposed.reasons, proposed.excluded, ZERO32)
            return Decision(round_id, DISPUTE, mine, mine.digest(self.chain_id, fl.address, round_id),
                            (f"dp: {exc}",))
        comp = compute_round(fl, self.store, self.private_key, self.spec, round_id, chain_id=self.chain_id,
                             strategy=self.strategy, strategy_params=self.strategy_params, timings=self.timings,
                             info=view.round, dp=dp)
        mine = outcome_of(comp, params.quorum)
        problems = compare_outcomes(mine, proposed)
        if not problems:
            problems = check_evidence(proposed, evidence, comp, self.spec,
                                      chain_id=self.chain_id, contract=fl.address, recipients=round_recipients(fl),
                                      norm_bound=params.norm_bound, dp_sealed=dp_sealed)
        if not problems:
            agreed = Outcome(mine.model_hash, mine.rejected, mine.reasons, mine.excluded, proposed.evidence_hash)
            digest = agreed.digest(self.chain_id, fl.address, round_id)
            if digest == proposal.digest:
                return Decision(round_id, ATTEST, agreed, digest)
            problems = ["digest: the same outcome hashes to another digest (another chain or contract?)"]
        return Decision(round_id, DISPUTE, mine, mine.digest(self.chain_id, fl.address, round_id), tuple(problems))

    def _round_dp(self, params: Any, evidence: bytes | None, round_id: int) -> RoundDP | None:
        """A DP round's noise, re-derived from the secret sealed in the proposal's evidence (None: no DP, or
        private mode, where the clients add the noise before masking)."""
        if params.central_dp is None:
            return None
        sealed = None
        if evidence is None and params.noise_sealed:
            raise DPSecretError("the proposal's evidence blob (where the sealed noise secret travels) could not be "
                                "fetched: the noise cannot be re-derived")
        if evidence is not None:
            try:
                sealed = Evidence.decode(evidence).dp_secret
            except EvidenceFormatError as exc:
                raise DPSecretError(f"the evidence blob is malformed ({exc})") from None
        return open_round_dp(params, sealed, self.private_key, chain_id=self.chain_id, contract=self.fl.address,
                             round_id=round_id)

    def vote(self, decision: Decision) -> Decision:
        """Sends the decision; a round someone else closed first is a note, not an error."""
        from dataclasses import replace

        try:
            with self.timings.measure("chain"):
                if decision.vote == ATTEST:
                    self.fl.attest(self.account, decision.round_id, decision.outcome)
                else:
                    self.fl.dispute(self.account, decision.round_id, decision.digest)
        except ChainError as exc:
            if exc.error_name in ("NotProposed", "AlreadyVoted", "ProposalExpired"):
                return replace(decision, note=f"not sent: {exc.error_name} (the round moved on)")
            raise
        return replace(decision, sent=True)

    def decide_and_vote(self, round_id: int) -> Decision:
        return self.vote(self.decide(round_id))


# --------------------------------------------------------------------------- the party


@dataclass
class VerifierOptions:
    rounds: int = 0  # stop once the job's round `rounds` is closed; 0 = run until stopped
    poll: float = 0.5
    max_poll: float = 5.0
    rogue: str | None = None  # a simulated malicious verifier (ml.rogue.ROGUE_VERIFIER_MODES)


@dataclass
class VerifierRecord:
    round_id: int
    vote: str
    sent: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


class VerifierParty:
    """The verifier's loop: wait for a proposal it has not voted on, decide, vote, repeat."""

    def __init__(self, account: Any, job: Job, private_key: bytes, opts: VerifierOptions, stop: Stop | None = None,
                 log: Callable[[str], None] | None = None):
        from ..sealing import public_key_of

        self.account = account
        self.job = job
        self.opts = opts
        self.stop = stop or Stop()
        self.log = log or Log("verifier")
        fl = job.fl
        committee = fl.committee()
        me = str(account.address)
        if committee.trusted:
            raise PartyError(f"the job at {fl.address} has no verifier committee (trusted-aggregator mode): "
                             "there is nothing to verify; deploy with --verifier ADDRESS:KEY")
        if me not in committee.verifiers:
            raise PartyError(f"{me} is not one of the job's verifiers ({', '.join(committee.verifiers)}); use the "
                             "--account the job was deployed with")
        key = committee.keys[committee.verifiers.index(me)]
        if public_key_of(private_key) != key:
            raise PartyError(f"the key file holds public key 0x{public_key_of(private_key).hex()}, the contract "
                             f"records 0x{key.hex()} for {me}: use this verifier's own key file")
        self.verifier = Verifier(account, fl, job.store, private_key, job.spec, chain_id=job.chain_id,
                                 strategy=job.strategy, strategy_params=job.strategy_params, rogue=opts.rogue)
        self.records: list[VerifierRecord] = []

    def _look(self) -> Any:
        """One view: the current round, as of `confirmations` blocks ago (a proposal is acted on once it
        has its confirmations), with its proposal."""
        return self.job.fl.round_view(0, self.verifier.address, confirmed=True)

    def _done(self, view: Any) -> bool:
        return round_closed(self.job.fl, self.opts.rounds, view.round_id, view.round.phase if view.round_id else None)

    def _pending(self, view: Any) -> int | None:
        """The current round, if its proposal awaits this verifier's vote and can still take it."""
        fl, cur = self.job.fl, view.round_id
        if not cur or view.round.phase != Phase.PROPOSED:
            return None
        if chain_now() > view.proposal.proposed_at + fl.params().attestationPeriod:
            return None
        if fl.vote_of(cur, self.verifier.address):
            return None
        return cur

    def run(self) -> str:
        fl = self.job.fl
        c = fl.committee()
        self.log(f"job {fl.address} on {self.job.network} (chain {self.job.chain_id}); verifier "
                 f"{self.verifier.address}, one of {len(c.verifiers)} (threshold {c.threshold}); "
                 f"strategy {self.job.strategy}" + (f"; ROGUE: {self.opts.rogue}" if self.opts.rogue else ""))
        announced = [None]

        def step() -> str | None:
            head = [head_block()]
            view = self._look()
            if self._done(view):
                return f"round {self.opts.rounds} is closed"
            r = self._pending(view)
            if r is None:
                cur = view.round_id
                state = (cur, view.round.phase if cur else None)
                if announced[0] != state:
                    announced[0] = state
                    if cur and state[1] == Phase.OPEN:
                        self.log(f"round {cur} is open: waiting for its proposal")
                    else:
                        self.log(f"waiting for the next round's proposal (round {cur or '-'} is "
                                 f"{state[1].name.lower() if cur else 'not started'})")

                def changed() -> bool:
                    now = head_block()
                    if now == head[0]:
                        return False  # no new block: nothing can have changed (no view read)
                    head[0] = now
                    v = self._look()
                    return self._pending(v) is not None or self._done(v) or \
                        (v.round_id, v.round.phase if v.round_id else None) != state

                self.stop.wait_for(changed, math.inf, self.opts.poll, self.opts.max_poll)
                return None
            t0 = time.monotonic()
            decision = self.verifier.decide_and_vote(r)
            self.log(decision.line())
            self.records.append(VerifierRecord(r, decision.vote, decision.sent, list(decision.reasons),
                                               time.monotonic() - t0))
            return None

        return run_until_done(step, self.stop, self.log, self.job.fl)
